#![no_main]
//! Any bytes as a DNS answer to a query: never panics, and counts only with our id and QR set.

use kaohe_agent::isolation::is_dns_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let id = u16::from_be_bytes([data[0], data[1]]);
        assert_eq!(is_dns_reply(data, id), data.len() >= 12 && data[2] & 0x80 != 0);
        assert!(!is_dns_reply(data, id.wrapping_add(1)));
    }
});
