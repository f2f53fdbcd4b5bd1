//! Kaohe's core: the assessment rubric as data, the evidence schema agents report in,
//! the unit registry (备案) format, and the pure scoring engine.
//!
//! This crate does no I/O: parsers take text or bytes, the engine takes values and
//! returns values. Reading files, clocks and sockets belong to the binaries.

pub mod bounds;
pub mod enrolment;
pub mod evidence;
pub mod period;
pub mod registry;
pub mod rollup;
pub mod rubric;
pub mod scoring;
#[cfg(feature = "testing")]
pub mod testing;
pub mod toml_error;

pub use evidence::{Report, SCHEMA_VERSION};
pub use period::Period;
pub use registry::{Registry, UnitProfile};
pub use rubric::Rubric;
pub use scoring::{ScoreInput, Sheet, score};
