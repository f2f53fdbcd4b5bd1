//! Shared by the registry-import tests and the cargo-fuzz targets in `collector/fuzz`
//! (feature `testing`, which only the crate's own dev-dependency and the fuzz crate turn
//! on; never in a release build): the checks every import must pass, and workbooks built
//! in code.

pub mod import_checks;
pub mod workbook;
