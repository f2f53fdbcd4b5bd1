#![no_main]
//! Any bytes that are not a ZIP, imported as a registry CSV: never a panic, and
//! `check_import`'s rules (limits, no NUL, export imports back to the same entries).

use kaohe_collector::xlsx::is_xlsx;
use libfuzzer_sys::fuzz_target;

use kaohe_collector::testing::import_checks;

fuzz_target!(|data: &[u8]| {
    if !is_xlsx(data) {
        import_checks::check_import(data);
    }
});
