#![no_main]
//! Any text as a period (as a URL's `?period=` or `--period` gives it): never a panic, and
//! what parses prints back to itself with its days in order.

use libfuzzer_sys::fuzz_target;

use kaohe_rubric::testing::period as period_checks;

fuzz_target!(|data: &[u8]| {
    period_checks::check_period(&String::from_utf8_lossy(data));
});
