//! Helpers shared by the registry-import tests (and, by path, the cargo-fuzz targets in
//! `collector/fuzz`): the checks every import must pass, and workbooks built in code.

pub mod import_checks;
pub mod workbook;
