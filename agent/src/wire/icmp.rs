//! ICMP messages (RFC 792) the leak probes send and get: echo request and reply, and the
//! errors that quote a packet (3 unreachable, 5 redirect, 11 time exceeded).

use super::{be16, checksum};

pub const ECHO_REPLY: u8 = 0;
pub const UNREACHABLE: u8 = 3;
pub const REDIRECT: u8 = 5;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
/// Type, code, checksum and the four bytes that depend on the type.
pub const HEADER_LEN: usize = 8;

/// A checked view of an ICMP message the agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// An error of type `kind` (3, 5 or 11) quoting the start of the packet that caused it.
    Error {
        kind: u8,
        code: u8,
        quoted: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// `None` unless a complete header of a kind above (an echo with code 0). The
    /// checksum is not checked: the kernel that delivered the packet did.
    pub fn parse(b: &'a [u8]) -> Option<Repr<'a>> {
        let (kind, code) = (*b.first()?, *b.get(1)?);
        let rest = b.get(HEADER_LEN..)?;
        match kind {
            ECHO_REPLY | ECHO_REQUEST if code == 0 => {
                let (ident, seq) = (be16(b, 4)?, be16(b, 6)?);
                Some(if kind == ECHO_REPLY {
                    Repr::EchoReply { ident, seq, data: rest }
                } else {
                    Repr::EchoRequest { ident, seq, data: rest }
                })
            }
            UNREACHABLE | REDIRECT | TIME_EXCEEDED => Some(Repr::Error {
                kind,
                code,
                quoted: rest,
            }),
            _ => None,
        }
    }

    /// The message with its checksum; `parse` gives back `self`. (A redirect's gateway
    /// field is written as zero.)
    pub fn emit(&self) -> Vec<u8> {
        let (head, data): ([u8; HEADER_LEN], &[u8]) = match *self {
            Repr::EchoRequest { ident, seq, data } | Repr::EchoReply { ident, seq, data } => {
                let kind = if matches!(self, Repr::EchoReply { .. }) {
                    ECHO_REPLY
                } else {
                    ECHO_REQUEST
                };
                let [i0, i1] = ident.to_be_bytes();
                let [s0, s1] = seq.to_be_bytes();
                ([kind, 0, 0, 0, i0, i1, s0, s1], data)
            }
            Repr::Error { kind, code, quoted } => ([kind, code, 0, 0, 0, 0, 0, 0], quoted),
        };
        let mut m = Vec::with_capacity(HEADER_LEN + data.len());
        m.extend_from_slice(&head);
        m.extend_from_slice(data);
        let c = checksum(&[&m]);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_and_parse_are_a_pair() {
        for r in [
            Repr::EchoRequest {
                ident: 1,
                seq: 2,
                data: b"abc",
            },
            Repr::EchoReply {
                ident: 0xffff,
                seq: 0,
                data: b"",
            },
            Repr::Error {
                kind: TIME_EXCEEDED,
                code: 0,
                quoted: &[0x45, 0, 0, 20],
            },
        ] {
            let bytes = r.emit();
            assert_eq!(checksum(&[&bytes]), 0, "{r:?}");
            assert_eq!(Repr::parse(&bytes), Some(r));
        }
    }

    #[test]
    fn a_fixed_echo_reply_parses() {
        let b = [0, 0, 0xf7, 0xfc, 0, 1, 0, 2, b'h', b'i'];
        assert_eq!(
            Repr::parse(&b),
            Some(Repr::EchoReply {
                ident: 1,
                seq: 2,
                data: b"hi"
            })
        );
    }

    #[test]
    fn truncated_or_unknown_messages_are_rejected() {
        let good = Repr::EchoReply {
            ident: 1,
            seq: 2,
            data: b"x",
        }
        .emit();
        for n in 0..HEADER_LEN {
            assert_eq!(Repr::parse(&good[..n]), None, "truncated to {n}");
        }
        let mut code = good.clone();
        code[1] = 1;
        assert_eq!(Repr::parse(&code), None, "an echo reply has code 0");
        let mut kind = good;
        kind[0] = 13; // timestamp
        assert_eq!(Repr::parse(&kind), None);
    }
}
