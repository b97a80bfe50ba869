//! The wire format of one frame, as a pure encode/decode pair.
//!
//! On the socket every frame is a 4-byte big-endian length followed by that
//! many bytes. Those bytes start with a fixed header (kind, call id, and a
//! few kind-specific fields) and end with the body, which is the
//! bincode-encoded message and is never copied again after decoding: the
//! body is a slice of the buffer the frame was read into.
//!
//! ```text
//! kind u8 | id u64 LE | kind-specific header | body ...
//! Request     : timeout_ms u32 | name_len u8 | name | message
//! OneWay      :                  name_len u8 | name | message
//! StreamOpen  : credit u32     | name_len u8 | name | message
//! Response    : status u8 | message (ok) or UTF-8 error text
//! StreamItem  : message
//! StreamEnd   : status u8 | empty (ok) or UTF-8 error text
//! Cancel      : -
//! Credit      : credit u32
//! Ping / Pong : -
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::StatusCode;

/// Bytes of the length prefix in front of every frame.
pub(crate) const LEN_PREFIX: usize = 4;
/// The largest header any frame kind carries (kind, id, u32, name length,
/// a 255-byte name), rounded up. A frame may be at most this plus the
/// configured message limit.
pub(crate) const MAX_HEADER: usize = 512;

/// What a frame is for. The numbers are on the wire: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Request = 1,
    OneWay = 2,
    StreamOpen = 3,
    Response = 4,
    StreamItem = 5,
    StreamEnd = 6,
    Cancel = 7,
    Credit = 8,
    Ping = 9,
    Pong = 10,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::OneWay,
            3 => Kind::StreamOpen,
            4 => Kind::Response,
            5 => Kind::StreamItem,
            6 => Kind::StreamEnd,
            7 => Kind::Cancel,
            8 => Kind::Credit,
            9 => Kind::Ping,
            10 => Kind::Pong,
            _ => return None,
        })
    }
}

/// The header of an outgoing frame; the body is written after it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Header<'a> {
    Request {
        id: u64,
        timeout_ms: u32,
        service: &'a str,
    },
    OneWay {
        service: &'a str,
    },
    StreamOpen {
        id: u64,
        credit: u32,
        service: &'a str,
    },
    Response {
        id: u64,
        status: StatusCode,
    },
    StreamItem {
        id: u64,
    },
    StreamEnd {
        id: u64,
        status: StatusCode,
    },
    Cancel {
        id: u64,
    },
    Credit {
        id: u64,
        credit: u32,
    },
    Ping {
        id: u64,
    },
    Pong {
        id: u64,
    },
}

/// A decoded incoming frame. `service` and `body` are slices of the read
/// buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Request {
        id: u64,
        timeout_ms: u32,
        service: Bytes,
        body: Bytes,
    },
    OneWay {
        service: Bytes,
        body: Bytes,
    },
    StreamOpen {
        id: u64,
        credit: u32,
        service: Bytes,
        body: Bytes,
    },
    Response {
        id: u64,
        status: StatusCode,
        body: Bytes,
    },
    StreamItem {
        id: u64,
        body: Bytes,
    },
    StreamEnd {
        id: u64,
        status: StatusCode,
        body: Bytes,
    },
    Cancel {
        id: u64,
    },
    Credit {
        id: u64,
        credit: u32,
    },
    Ping {
        id: u64,
    },
    Pong {
        id: u64,
    },
}

/// Why bytes could not be decoded as a frame. Any of these means the peer
/// does not speak this protocol (or is hostile): the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
    #[error("service name is not UTF-8")]
    BadServiceName,
    #[error("service name longer than 255 bytes")]
    ServiceNameTooLong,
    #[error("{kind:?} frame carries {len} unexpected trailing bytes")]
    Trailing { kind: Kind, len: usize },
}

/// Starts a frame in `dst`: reserves the length prefix and writes the
/// header. Write the body with `dst.put_*` (or a `Writer`), then call
/// [`finish`].
pub(crate) fn begin(dst: &mut BytesMut, header: Header<'_>) -> Result<usize, FrameError> {
    let start = dst.len();
    dst.put_u32(0);
    match header {
        Header::Request {
            id,
            timeout_ms,
            service,
        } => {
            put_head(dst, Kind::Request, id);
            dst.put_u32_le(timeout_ms);
            put_name(dst, service)?;
        }
        Header::OneWay { service } => {
            put_head(dst, Kind::OneWay, 0);
            put_name(dst, service)?;
        }
        Header::StreamOpen {
            id,
            credit,
            service,
        } => {
            put_head(dst, Kind::StreamOpen, id);
            dst.put_u32_le(credit);
            put_name(dst, service)?;
        }
        Header::Response { id, status } => {
            put_head(dst, Kind::Response, id);
            dst.put_u8(status as u8);
        }
        Header::StreamItem { id } => put_head(dst, Kind::StreamItem, id),
        Header::StreamEnd { id, status } => {
            put_head(dst, Kind::StreamEnd, id);
            dst.put_u8(status as u8);
        }
        Header::Cancel { id } => put_head(dst, Kind::Cancel, id),
        Header::Credit { id, credit } => {
            put_head(dst, Kind::Credit, id);
            dst.put_u32_le(credit);
        }
        Header::Ping { id } => put_head(dst, Kind::Ping, id),
        Header::Pong { id } => put_head(dst, Kind::Pong, id),
    }
    Ok(start)
}

/// Patches the length prefix of the frame begun at `start`. Returns the
/// frame's length without its prefix.
pub(crate) fn finish(dst: &mut BytesMut, start: usize) -> usize {
    let len = dst.len() - start - LEN_PREFIX;
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    dst[start..start + LEN_PREFIX].copy_from_slice(&len32.to_be_bytes());
    len
}

/// Encodes a frame with a ready-made body in one call.
pub(crate) fn encode(header: Header<'_>, body: &[u8]) -> Result<Bytes, FrameError> {
    let mut dst = BytesMut::with_capacity(LEN_PREFIX + 32 + body.len());
    let start = begin(&mut dst, header)?;
    dst.put_slice(body);
    finish(&mut dst, start);
    Ok(dst.freeze())
}

fn put_head(dst: &mut BytesMut, kind: Kind, id: u64) {
    dst.put_u8(kind as u8);
    dst.put_u64_le(id);
}

fn put_name(dst: &mut BytesMut, name: &str) -> Result<(), FrameError> {
    let len = u8::try_from(name.len()).map_err(|_| FrameError::ServiceNameTooLong)?;
    dst.put_u8(len);
    dst.put_slice(name.as_bytes());
    Ok(())
}

impl Frame {
    /// Decodes one frame (without its length prefix).
    pub(crate) fn decode(mut src: Bytes) -> Result<Frame, FrameError> {
        let total = src.len();
        if total < 9 {
            return Err(FrameError::Truncated(total));
        }
        let kind_byte = src.get_u8();
        let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        let id = src.get_u64_le();
        let need = |src: &Bytes, n: usize| {
            if src.remaining() < n {
                Err(FrameError::Truncated(total))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            Kind::Request => {
                need(&src, 4)?;
                let timeout_ms = src.get_u32_le();
                let service = take_name(&mut src, total)?;
                Frame::Request {
                    id,
                    timeout_ms,
                    service,
                    body: src,
                }
            }
            Kind::OneWay => {
                let service = take_name(&mut src, total)?;
                Frame::OneWay { service, body: src }
            }
            Kind::StreamOpen => {
                need(&src, 4)?;
                let credit = src.get_u32_le();
                let service = take_name(&mut src, total)?;
                Frame::StreamOpen {
                    id,
                    credit,
                    service,
                    body: src,
                }
            }
            Kind::Response => {
                need(&src, 1)?;
                let status = take_status(&mut src)?;
                Frame::Response {
                    id,
                    status,
                    body: src,
                }
            }
            Kind::StreamItem => Frame::StreamItem { id, body: src },
            Kind::StreamEnd => {
                need(&src, 1)?;
                let status = take_status(&mut src)?;
                Frame::StreamEnd {
                    id,
                    status,
                    body: src,
                }
            }
            Kind::Cancel => {
                no_trailing(kind, &src)?;
                Frame::Cancel { id }
            }
            Kind::Credit => {
                need(&src, 4)?;
                let credit = src.get_u32_le();
                no_trailing(kind, &src)?;
                Frame::Credit { id, credit }
            }
            Kind::Ping => {
                no_trailing(kind, &src)?;
                Frame::Ping { id }
            }
            Kind::Pong => {
                no_trailing(kind, &src)?;
                Frame::Pong { id }
            }
        };
        Ok(frame)
    }
}

fn take_name(src: &mut Bytes, total: usize) -> Result<Bytes, FrameError> {
    if src.remaining() < 1 {
        return Err(FrameError::Truncated(total));
    }
    let len = src.get_u8() as usize;
    if src.remaining() < len {
        return Err(FrameError::Truncated(total));
    }
    let name = src.split_to(len);
    std::str::from_utf8(&name).map_err(|_| FrameError::BadServiceName)?;
    Ok(name)
}

fn take_status(src: &mut Bytes) -> Result<StatusCode, FrameError> {
    let b = src.get_u8();
    StatusCode::from_u8(b).ok_or(FrameError::UnknownStatus(b))
}

fn no_trailing(kind: Kind, src: &Bytes) -> Result<(), FrameError> {
    if src.is_empty() {
        Ok(())
    } else {
        Err(FrameError::Trailing {
            kind,
            len: src.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(header: Header<'_>, body: &[u8]) -> Frame {
        let bytes = encode(header, body).unwrap();
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(
            len,
            bytes.len() - LEN_PREFIX,
            "length prefix covers the frame"
        );
        Frame::decode(bytes.slice(LEN_PREFIX..)).unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let b = Bytes::from_static(b"payload");
        assert_eq!(
            roundtrip(
                Header::Request {
                    id: 7,
                    timeout_ms: 1500,
                    service: "gcs.kv"
                },
                &b
            ),
            Frame::Request {
                id: 7,
                timeout_ms: 1500,
                service: Bytes::from_static(b"gcs.kv"),
                body: b.clone()
            }
        );
        assert_eq!(
            roundtrip(Header::OneWay { service: "x" }, &b),
            Frame::OneWay {
                service: Bytes::from_static(b"x"),
                body: b.clone()
            }
        );
        assert_eq!(
            roundtrip(
                Header::StreamOpen {
                    id: u64::MAX,
                    credit: 64,
                    service: ""
                },
                &[]
            ),
            Frame::StreamOpen {
                id: u64::MAX,
                credit: 64,
                service: Bytes::new(),
                body: Bytes::new()
            }
        );
        assert_eq!(
            roundtrip(
                Header::Response {
                    id: 1,
                    status: StatusCode::Internal
                },
                b"boom"
            ),
            Frame::Response {
                id: 1,
                status: StatusCode::Internal,
                body: Bytes::from_static(b"boom")
            }
        );
        assert_eq!(
            roundtrip(Header::StreamItem { id: 2 }, &b),
            Frame::StreamItem { id: 2, body: b }
        );
        assert_eq!(
            roundtrip(
                Header::StreamEnd {
                    id: 3,
                    status: StatusCode::Ok
                },
                &[]
            ),
            Frame::StreamEnd {
                id: 3,
                status: StatusCode::Ok,
                body: Bytes::new()
            }
        );
        assert_eq!(
            roundtrip(Header::Cancel { id: 4 }, &[]),
            Frame::Cancel { id: 4 }
        );
        assert_eq!(
            roundtrip(Header::Credit { id: 5, credit: 9 }, &[]),
            Frame::Credit { id: 5, credit: 9 }
        );
        assert_eq!(
            roundtrip(Header::Ping { id: 6 }, &[]),
            Frame::Ping { id: 6 }
        );
        assert_eq!(
            roundtrip(Header::Pong { id: 6 }, &[]),
            Frame::Pong { id: 6 }
        );
    }

    #[test]
    fn header_never_exceeds_the_reserved_room() {
        let name = "n".repeat(255);
        let bytes = encode(
            Header::Request {
                id: 1,
                timeout_ms: 1,
                service: &name,
            },
            &[],
        )
        .unwrap();
        assert!(bytes.len() - LEN_PREFIX <= MAX_HEADER);
    }

    #[test]
    fn overlong_service_name_is_refused() {
        let name = "n".repeat(256);
        assert_eq!(
            encode(Header::OneWay { service: &name }, &[]).unwrap_err(),
            FrameError::ServiceNameTooLong
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(
            Frame::decode(Bytes::from_static(b"\x01")),
            Err(FrameError::Truncated(1))
        );
        let mut unknown = vec![99u8];
        unknown.extend_from_slice(&[0; 8]);
        assert_eq!(
            Frame::decode(Bytes::from(unknown)),
            Err(FrameError::UnknownKind(99))
        );
        let mut status = vec![Kind::Response as u8];
        status.extend_from_slice(&[0; 8]);
        status.push(200);
        assert_eq!(
            Frame::decode(Bytes::from(status)),
            Err(FrameError::UnknownStatus(200))
        );
        let mut name = vec![Kind::OneWay as u8];
        name.extend_from_slice(&[0; 8]);
        name.extend_from_slice(&[2, 0xff, 0xfe]);
        assert_eq!(
            Frame::decode(Bytes::from(name)),
            Err(FrameError::BadServiceName)
        );
        let mut short_name = vec![Kind::OneWay as u8];
        short_name.extend_from_slice(&[0; 8]);
        short_name.extend_from_slice(&[10, b'a']);
        assert_eq!(
            Frame::decode(Bytes::from(short_name.clone())),
            Err(FrameError::Truncated(short_name.len()))
        );
        let mut trailing = vec![Kind::Ping as u8];
        trailing.extend_from_slice(&[0; 8]);
        trailing.push(1);
        assert!(matches!(
            Frame::decode(Bytes::from(trailing)),
            Err(FrameError::Trailing { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::decode(Bytes::from(bytes));
        }

        #[test]
        fn request_round_trips(id: u64, timeout_ms: u32, name in "[a-z.]{0,40}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let frame = roundtrip(Header::Request { id, timeout_ms, service: &name }, &body);
            prop_assert_eq!(frame, Frame::Request { id, timeout_ms, service: Bytes::from(name.into_bytes()), body: Bytes::from(body) });
        }
    }
}
