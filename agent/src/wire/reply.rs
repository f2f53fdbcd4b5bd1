//! The answers a leak probe can get, read from a received frame or IPv4 packet through
//! the layers of this module. [`Reply::parse`] is the one checked constructor the leak
//! listener applies to internet traffic: truncated or hostile bytes give `None`, never a
//! panic. Fuzzed by `agent/fuzz` (`cargo fuzz run reply_parse`).

use std::net::Ipv4Addr;

use super::ethernet::{ETHERTYPE_IPV4, Frame};
use super::ipv4::{self, PROTO_ICMP, PROTO_TCP};
use super::{icmp, tcp};

/// A received IPv4 packet that may answer a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An ICMP echo reply and its payload.
    EchoReply {
        from: Ipv4Addr,
        to: Ipv4Addr,
        payload: Vec<u8>,
    },
    /// An ICMP error (3 unreachable, 5 redirect, 11 time exceeded) from `from`, quoting
    /// the start of the packet that caused it.
    IcmpError {
        from: Ipv4Addr,
        to: Ipv4Addr,
        icmp_type: u8,
        quoted: Quoted,
    },
    /// A TCP segment with SYN-ACK or RST set, acknowledging `ack`.
    TcpAnswer {
        from: Ipv4Addr,
        to: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        ack: u32,
        rst: bool,
    },
}

/// The packet an ICMP error quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// The transport header and as much of its payload as was quoted.
    pub transport: Vec<u8>,
}

impl Reply {
    /// Parses an Ethernet frame; `None` unless it is an IPv4 packet of a kind that can
    /// answer a probe. Never panics on any input.
    pub fn parse(frame: &[u8]) -> Option<Reply> {
        let f = Frame::parse(frame)?;
        if f.repr.ethertype != ETHERTYPE_IPV4 {
            return None;
        }
        Reply::parse_ip(f.payload)
    }

    /// Parses an IPv4 packet (as a raw IP socket gives it).
    pub fn parse_ip(p: &[u8]) -> Option<Reply> {
        let ip = ipv4::Packet::parse(p)?;
        let (from, to) = (ip.repr.src, ip.repr.dst);
        match ip.repr.protocol {
            PROTO_ICMP => match icmp::Repr::parse(ip.payload)? {
                icmp::Repr::EchoReply { data, .. } => Some(Reply::EchoReply {
                    from,
                    to,
                    payload: data.to_vec(),
                }),
                icmp::Repr::Error { kind, quoted, .. } => {
                    let inner = ipv4::Packet::parse_quoted(quoted)?;
                    Some(Reply::IcmpError {
                        from,
                        to,
                        icmp_type: kind,
                        quoted: Quoted {
                            src: inner.repr.src,
                            dst: inner.repr.dst,
                            proto: inner.repr.protocol,
                            transport: inner.payload.to_vec(),
                        },
                    })
                }
                icmp::Repr::EchoRequest { .. } => None,
            },
            PROTO_TCP => {
                let t = tcp::Repr::parse(ip.payload)?;
                let rst = t.has(tcp::RST);
                if !((t.has(tcp::SYN) && t.has(tcp::ACK)) || rst) {
                    return None;
                }
                Some(Reply::TcpAnswer {
                    from,
                    to,
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                    ack: t.ack,
                    rst,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Mac, ethernet, ipv4::PROTO_UDP, udp};
    use super::*;

    const HOST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 23);
    const LISTENER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);

    fn ip(protocol: u8, src: Ipv4Addr, dst: Ipv4Addr) -> ipv4::Repr {
        ipv4::Repr {
            src,
            dst,
            protocol,
            ttl: 63,
            ident: 1,
        }
    }

    fn frame(packet: &[u8]) -> Vec<u8> {
        ethernet::Repr {
            dst: Mac([2, 0, 0, 0, 0, 1]),
            src: Mac([2, 0, 0, 0, 0, 2]),
            ethertype: ETHERTYPE_IPV4,
        }
        .emit(packet)
    }

    #[test]
    fn an_echo_reply_parses_from_a_frame_and_from_a_packet() {
        let echo = icmp::Repr::EchoReply {
            ident: 1,
            seq: 2,
            data: b"signed",
        }
        .emit();
        let packet = ip(PROTO_ICMP, HOST, LISTENER).emit(&echo);
        let want = Reply::EchoReply {
            from: HOST,
            to: LISTENER,
            payload: b"signed".to_vec(),
        };
        assert_eq!(Reply::parse_ip(&packet), Some(want.clone()));
        assert_eq!(Reply::parse(&frame(&packet)), Some(want));
    }

    #[test]
    fn a_port_unreachable_quotes_the_udp_probe() {
        let probe_ip = ip(PROTO_UDP, LISTENER, HOST);
        let probe = probe_ip.emit(
            &udp::Repr {
                src_port: 0xc001,
                dst_port: 33434,
            }
            .emit(&probe_ip, b"x"),
        );
        let error = icmp::Repr::Error {
            kind: icmp::UNREACHABLE,
            code: 3,
            quoted: &probe,
        }
        .emit();
        let r = Reply::parse_ip(&ip(PROTO_ICMP, HOST, LISTENER).emit(&error)).expect("parses");
        let Reply::IcmpError { icmp_type, quoted, .. } = r else {
            panic!("not an error: {r:?}")
        };
        assert_eq!(
            (icmp_type, quoted.src, quoted.dst, quoted.proto),
            (3, LISTENER, HOST, PROTO_UDP)
        );
        assert_eq!(quoted.transport, probe[20..].to_vec());
    }

    #[test]
    fn only_a_syn_ack_or_a_rst_is_a_tcp_answer() {
        let tip = ip(PROTO_TCP, HOST, LISTENER);
        for (flags, answers) in [
            (tcp::SYN | tcp::ACK, true),
            (tcp::RST, true),
            (tcp::RST | tcp::ACK, true),
            (tcp::SYN, false),
            (tcp::ACK, false),
        ] {
            let seg = tcp::Repr {
                src_port: 443,
                dst_port: 0xc123,
                seq: 5,
                ack: 77,
                flags,
                window: 0,
            }
            .emit(&tip);
            let r = Reply::parse_ip(&tip.emit(&seg));
            assert_eq!(r.is_some(), answers, "flags {flags:#x}");
            if let Some(Reply::TcpAnswer { ack, rst, .. }) = r {
                assert_eq!((ack, rst), (77, flags & tcp::RST != 0));
            }
        }
    }

    #[test]
    fn other_frames_are_not_answers() {
        let echo = icmp::Repr::EchoRequest {
            ident: 1,
            seq: 2,
            data: b"",
        }
        .emit();
        let packet = ip(PROTO_ICMP, HOST, LISTENER).emit(&echo);
        assert_eq!(Reply::parse_ip(&packet), None, "an echo request");
        let mut arp = frame(&packet);
        arp[13] = 0x06;
        assert_eq!(Reply::parse(&arp), None, "not IPv4");
        for n in 0..frame(&packet).len() {
            let _ = Reply::parse(&frame(&packet)[..n]);
        }
    }
}
