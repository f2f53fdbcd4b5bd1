//! Property checks and a seeded generator shared by the tests and the cargo-fuzz targets (feature `testing`, which
//! only the crate's own dev-dependency and `rubric/fuzz` turn on; never in a release build).

pub mod period;
pub mod rng;
