#![no_main]
//! Any bytes: parsing never panics; whatever parses re-emits to the same 42 bytes; a reply
//! to us must carry our addresses.

use std::net::Ipv4Addr;

use kaohe_agent::wire::Mac;
use kaohe_agent::wire::arp::{ArpFrame, FRAME_LEN, OP_REPLY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(f) = ArpFrame::parse(data) {
        assert_eq!(&f.emit()[..], &data[..FRAME_LEN]);
        let ours = Mac([2, 0x6b, 0x68, 1, 0, 10]);
        let our_ip = Ipv4Addr::new(10, 1, 0, 10);
        if f.is_reply_to(&ours, our_ip) {
            assert_eq!((f.op, f.target_ip, f.target_mac), (OP_REPLY, our_ip, ours));
        }
    }
});
