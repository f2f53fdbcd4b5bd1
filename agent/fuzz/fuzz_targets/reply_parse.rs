#![no_main]
//! Any bytes as a frame heard by the leak listener (the one parser exposed to internet
//! traffic): parsing never panics; checking a parsed answer never panics and never
//! verifies under a key that signed nothing; what parses as an answer parses the same
//! from its IPv4 packet alone.

use kaohe_agent::leak::Signer;
use kaohe_agent::wire::reply::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(reply) = Reply::parse(data) else {
        return;
    };
    assert_eq!(Reply::parse_ip(&data[14..]), Some(reply.clone()));
    let units = ["lab-b2".to_string()];
    let _ = Signer::new(b"lab-department-leak-key").answered(&reply, &units, 1_800_000_000, 3);
    if let Reply::EchoReply { payload, .. } = &reply {
        // A signed payload needs at least magic, fields and a 16-byte tag.
        assert!(payload.len() >= 35 || Signer::new(b"k").verify_payload(payload).is_none());
    }
});
