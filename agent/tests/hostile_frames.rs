//! Hostile and truncated frames never crash the parsers and never count as replies.
//! A seeded, bounded mutation run on stable Rust; `agent/fuzz` has the cargo-fuzz targets
//! for longer runs.

use std::net::Ipv4Addr;

use kaohe_agent::isolation::{dns_query, is_dns_reply};
use kaohe_agent::leak::{Addressing, Kind, Signer, Stamp, probe_frame};
use kaohe_agent::wire::Mac;
use kaohe_agent::wire::arp::{ArpFrame, FRAME_LEN, OP_REPLY};
use kaohe_agent::wire::reply::Reply;

use kaohe_rubric::testing::rng::Rng;

/// `base` cut or padded with zeros to a random length below its own plus `extra`, with up
/// to three random bytes changed.
fn mutate(rng: &mut Rng, base: &[u8], extra: usize) -> Vec<u8> {
    let len = (rng.next_u64() % (base.len() + extra) as u64) as usize;
    let mut buf: Vec<u8> = (0..len).map(|i| base.get(i).copied().unwrap_or(0)).collect();
    for _ in 0..(rng.next_u64() % 4) {
        if !buf.is_empty() {
            let at = (rng.next_u64() % buf.len() as u64) as usize;
            buf[at] = rng.next_u64() as u8;
        }
    }
    buf
}

const OURS: Mac = Mac([0x02, 0x6b, 0x68, 0x01, 0x00, 0x0a]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);

#[test]
fn mutated_arp_frames_never_panic_and_only_true_replies_match() {
    let reply = ArpFrame {
        eth_dst: OURS,
        eth_src: Mac([2, 0, 0, 0, 0, 1]),
        op: OP_REPLY,
        sender_mac: Mac([2, 0, 0, 0, 0, 1]),
        sender_ip: Ipv4Addr::new(10, 1, 0, 21),
        target_mac: OURS,
        target_ip: OUR_IP,
    }
    .emit();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0u32;
    for _ in 0..200_000 {
        let buf = mutate(&mut rng, &reply, 30);
        if let Some(f) = ArpFrame::parse(&buf) {
            // Whatever parsed must re-emit to the same 42 bytes: nothing was invented.
            assert_eq!(&f.emit()[..], &buf[..FRAME_LEN]);
            if f.is_reply_to(&OURS, OUR_IP) {
                accepted += 1;
                assert_eq!((f.op, f.target_ip, f.target_mac), (OP_REPLY, OUR_IP, OURS));
            }
        }
    }
    assert!(accepted > 0, "some unmutated replies must still be accepted");
}

#[test]
fn random_bytes_are_never_a_dns_reply_to_our_query_unless_they_say_so() {
    let mut rng = Rng(42);
    for _ in 0..100_000 {
        let len = (rng.next_u64() % 64) as usize;
        let buf: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let id = u16::from_be_bytes([buf.first().copied().unwrap_or(0), buf.get(1).copied().unwrap_or(0)]);
        let claimed = is_dns_reply(&buf, id);
        assert_eq!(claimed, buf.len() >= 12 && buf[2] & 0x80 != 0);
        assert!(!is_dns_reply(&buf, id.wrapping_add(1)) || buf.len() < 2);
    }
    assert!(!is_dns_reply(&dns_query(1), 1));
}

#[test]
fn mutated_answers_never_panic_and_never_verify_under_another_key() {
    let signer = Signer::new(b"lab-department-leak-key");
    let stranger = Signer::new(b"someone-elses-key!!");
    let frames: Vec<Vec<u8>> = [Kind::Icmp, Kind::Udp(33434), Kind::Tcp(443)]
        .into_iter()
        .map(|kind| {
            let stamp = Stamp {
                unit: "lab-b2".into(),
                target: Ipv4Addr::new(10, 2, 0, 23),
                kind,
                nonce: 7,
                at: 1_800_000_000,
            };
            let a = Addressing {
                src_mac: OURS,
                dst_mac: Mac([2, 0, 0, 0, 0, 1]),
                src_ip: Ipv4Addr::new(203, 0, 113, 99),
                dst_ip: stamp.target,
                ttl: 64,
            };
            probe_frame(&signer, &a, &stamp)
        })
        .collect();
    let units = ["lab-b2".to_string()];
    let mut rng = Rng(7);
    for _ in 0..50_000 {
        let base = &frames[(rng.next_u64() % 3) as usize];
        let buf = mutate(&mut rng, base, 8);
        if let Some(r) = Reply::parse(&buf) {
            assert!(stranger.answered(&r, &units, 1_800_000_000, 3).is_none());
            let _ = signer.answered(&r, &units, 1_800_000_000, 3);
        }
    }
}
