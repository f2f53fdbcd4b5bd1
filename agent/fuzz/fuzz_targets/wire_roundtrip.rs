#![no_main]
//! Any bytes through each wire parser: none panics, and what parses emits back to the
//! bytes it was read from (IPv4 without options, ICMP, TCP without options).

use kaohe_agent::wire::{icmp, ipv4, tcp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(p) = ipv4::Packet::parse(data)
        && p.header_len == ipv4::HEADER_LEN
        && usize::from(p.total_len) == data.len()
        && data[1] == 0
        && data[6..8] == [0x40, 0]
    {
        let again = p.repr.emit(p.payload);
        assert_eq!(&again[12..], &data[12..]);
        assert_eq!(&again[..10], &data[..10]);
    }
    let _ = ipv4::Packet::parse_quoted(data);
    if let Some(m) = icmp::Repr::parse(data) {
        let again = m.emit();
        assert_eq!(icmp::Repr::parse(&again), Some(m));
    }
    if let Some(t) = tcp::Repr::parse(data) {
        assert_eq!(tcp::Repr::parse(&t.emit(&ipv4::Repr {
            src: [10, 0, 0, 1].into(),
            dst: [10, 0, 0, 2].into(),
            protocol: ipv4::PROTO_TCP,
            ttl: 64,
            ident: 0,
        })), Some(t));
    }
});
