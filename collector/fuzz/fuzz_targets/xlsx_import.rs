#![no_main]
//! Any workbook: the import never panics or aborts, and holds `check_import`'s rules. The
//! first byte picks what the rest is: the whole file, the first sheet's XML inside a good
//! workbook, or its shared-string table (so that the fuzzer reaches the XML without having
//! to discover ZIP first).

use kaohe_collector::xlsx::is_xlsx;
use libfuzzer_sys::fuzz_target;
use zip::CompressionMethod;

use kaohe_collector::testing::{import_checks, workbook};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if is_xlsx(rest) {
                import_checks::check_import(rest);
            }
        }
        1 => {
            import_checks::check_import(&workbook::workbook(rest, None, CompressionMethod::Stored));
        }
        _ => {
            let sheet = workbook::shared_string_sheet();
            import_checks::check_import(&workbook::workbook(
                sheet.as_bytes(),
                Some(rest),
                CompressionMethod::Stored,
            ));
        }
    }
});
