//! The message format (all integers little-endian).
//!
//! ```text
//! hello:  0x01 | version u8 | mode u8 | parties u8 | job fingerprint [32] | set size u64
//! points: 0x02 | stream u8 | origin u16 | count u32 | count × 32-byte compressed points
//! tags:   0x03 | stream u8 | origin u16 | count u32 | count × 12-byte tags
//! end:    0x04 | stream u8 | origin u16 | 0u32      | total items of the stream u64
//! index:  0x05 | stream u8 | origin u16 | count u32 | count × u64 positions
//! ```
//!
//! A *stream* is a sequence of `points` or `tags` chunks ended by `end`; `origin` is the
//! index (in the job's party list) of the party whose set the stream carries. Points and
//! tags are pseudorandom, so the chunks are not compressed (lz4 gains nothing on them).

use crate::crypto::{POINT_LEN, TAG_LEN, Tag};
use crate::error::PsiError;

/// Protocol version carried in the hello message (2: the multi-party routing of the
/// crate docs; version 1 let the initiator finish a peer's set).
pub const VERSION: u8 = 2;

const HELLO: u8 = 1;
const POINTS: u8 = 2;
const TAGS: u8 = 3;
const END: u8 = 4;
const INDICES: u8 = 5;
const HEADER: usize = 8;

/// Stream kinds of tag messages (points streams use the round number, 1..n-1). Two
/// parties: a party's own fully masked set, returned to it.
pub const STREAM_OWN: u8 = 0x80;
/// Three or more parties: a fully masked set, from its finisher to the combiner.
pub const STREAM_SET: u8 = 0x81;
/// Three or more parties: the result, from the combiner to the initiator (`index`
/// messages with positions in the initiator's send order, or only an `end` carrying
/// the intersection's size).
pub const STREAM_RESULT: u8 = 0x83;

/// A decoded message borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Opening message: job parameters and the sender's set size.
    Hello {
        /// Protocol version.
        version: u8,
        /// Output mode byte.
        mode: u8,
        /// Number of parties.
        parties: u8,
        /// Fingerprint of the job configuration.
        fingerprint: [u8; 32],
        /// The sender's number of distinct IDs.
        set_size: u64,
    },
    /// A chunk of compressed points.
    Points {
        /// Stream.
        stream: u8,
        /// Origin party index.
        origin: u16,
        /// `count × 32` bytes.
        data: &'a [u8],
    },
    /// A chunk of tags.
    Tags {
        /// Stream.
        stream: u8,
        /// Origin party index.
        origin: u16,
        /// `count × 12` bytes.
        data: &'a [u8],
    },
    /// A chunk of positions (`count × 8` bytes, little-endian u64).
    Indices {
        /// Stream.
        stream: u8,
        /// Origin party index.
        origin: u16,
        /// `count × 8` bytes.
        data: &'a [u8],
    },
    /// End of a stream.
    End {
        /// Stream.
        stream: u8,
        /// Origin party index.
        origin: u16,
        /// Items sent in the stream.
        total: u64,
    },
}

/// What the items of a stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items {
    /// `points` messages.
    Points,
    /// `tags` messages.
    Tags,
    /// `index` messages.
    Indices,
}

/// The next message of a stream, as its receiver wants it.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// A chunk's payload.
    Data(&'a [u8]),
    /// The end, with the number of items the sender says it sent.
    End(u64),
}

/// Decodes `m` from `peer` as the next message of the stream (`stream`, `origin`) of
/// `items`; anything else is [`PsiError::Malformed`] ("unexpected message {context}").
pub fn decode_chunk<'a>(
    peer: &str,
    m: &'a [u8],
    items: Items,
    stream: u8,
    origin: usize,
    context: &str,
) -> Result<Chunk<'a>, PsiError> {
    let ours = |s: u8, o: u16| s == stream && o as usize == origin;
    match decode(peer, m)? {
        Msg::Points {
            stream: s,
            origin: o,
            data,
        } if items == Items::Points && ours(s, o) => Ok(Chunk::Data(data)),
        Msg::Tags {
            stream: s,
            origin: o,
            data,
        } if items == Items::Tags && ours(s, o) => Ok(Chunk::Data(data)),
        Msg::Indices {
            stream: s,
            origin: o,
            data,
        } if items == Items::Indices && ours(s, o) => Ok(Chunk::Data(data)),
        Msg::End {
            stream: s,
            origin: o,
            total,
        } if ours(s, o) => Ok(Chunk::End(total)),
        _ => Err(PsiError::malformed(
            peer,
            format!("unexpected message {context}"),
        )),
    }
}

/// Encodes a hello message.
pub fn hello(mode: u8, parties: u8, fingerprint: &[u8; 32], set_size: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(44);
    m.extend_from_slice(&[HELLO, VERSION, mode, parties]);
    m.extend_from_slice(fingerprint);
    m.extend_from_slice(&set_size.to_le_bytes());
    m
}

fn header(kind: u8, stream: u8, origin: u16, count: usize, payload: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + payload);
    m.push(kind);
    m.push(stream);
    m.extend_from_slice(&origin.to_le_bytes());
    // Chunks hold at most a few thousand items; the cast cannot truncate.
    m.extend_from_slice(&(count as u32).to_le_bytes());
    m
}

/// Encodes a chunk of concatenated compressed points.
pub fn points(stream: u8, origin: u16, data: &[u8]) -> Vec<u8> {
    let mut m = header(POINTS, stream, origin, data.len() / POINT_LEN, data.len());
    m.extend_from_slice(data);
    m
}

/// Encodes a chunk of tags.
pub fn tags(stream: u8, origin: u16, data: &[Tag]) -> Vec<u8> {
    let mut m = header(TAGS, stream, origin, data.len(), data.len() * TAG_LEN);
    for t in data {
        m.extend_from_slice(t);
    }
    m
}

/// Encodes a chunk of positions.
pub fn indices(stream: u8, origin: u16, data: &[u64]) -> Vec<u8> {
    let mut m = header(INDICES, stream, origin, data.len(), data.len() * 8);
    for i in data {
        m.extend_from_slice(&i.to_le_bytes());
    }
    m
}

/// Decodes the positions of an `index` chunk.
pub fn positions(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    data.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        u64::from_le_bytes(b)
    })
}

/// Encodes the end of a stream.
pub fn end(stream: u8, origin: u16, total: u64) -> Vec<u8> {
    let mut m = header(END, stream, origin, 0, 8);
    m.extend_from_slice(&total.to_le_bytes());
    m
}

/// Decodes a message from `peer`; anything inconsistent is [`PsiError::Malformed`].
pub fn decode<'a>(peer: &str, m: &'a [u8]) -> Result<Msg<'a>, PsiError> {
    let bad = |why: &str| PsiError::malformed(peer, why.to_string());
    match m.first() {
        Some(&HELLO) => {
            if m.len() != 44 {
                return Err(bad("hello of the wrong length"));
            }
            let mut fingerprint = [0u8; 32];
            fingerprint.copy_from_slice(&m[4..36]);
            let mut size = [0u8; 8];
            size.copy_from_slice(&m[36..44]);
            Ok(Msg::Hello {
                version: m[1],
                mode: m[2],
                parties: m[3],
                fingerprint,
                set_size: u64::from_le_bytes(size),
            })
        }
        Some(&kind @ (POINTS | TAGS | END | INDICES)) => {
            if m.len() < HEADER {
                return Err(bad("message shorter than its header"));
            }
            let stream = m[1];
            let origin = u16::from_le_bytes([m[2], m[3]]);
            let count = u32::from_le_bytes([m[4], m[5], m[6], m[7]]) as usize;
            let body = &m[HEADER..];
            match kind {
                END => {
                    if body.len() != 8 {
                        return Err(bad("end marker of the wrong length"));
                    }
                    let mut total = [0u8; 8];
                    total.copy_from_slice(body);
                    let total = u64::from_le_bytes(total);
                    Ok(Msg::End {
                        stream,
                        origin,
                        total,
                    })
                }
                POINTS => {
                    if count.checked_mul(POINT_LEN) != Some(body.len()) {
                        return Err(bad("points chunk length does not match its count"));
                    }
                    Ok(Msg::Points {
                        stream,
                        origin,
                        data: body,
                    })
                }
                INDICES => {
                    if count.checked_mul(8) != Some(body.len()) {
                        return Err(bad("index chunk length does not match its count"));
                    }
                    Ok(Msg::Indices {
                        stream,
                        origin,
                        data: body,
                    })
                }
                _ => {
                    if count.checked_mul(TAG_LEN) != Some(body.len()) {
                        return Err(bad("tags chunk length does not match its count"));
                    }
                    Ok(Msg::Tags {
                        stream,
                        origin,
                        data: body,
                    })
                }
            }
        }
        Some(k) => Err(bad(&format!("unknown message kind {k}"))),
        None => Err(bad("empty message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let h = hello(2, 3, &[7; 32], 99);
        assert_eq!(
            decode("p", &h).unwrap(),
            Msg::Hello {
                version: VERSION,
                mode: 2,
                parties: 3,
                fingerprint: [7; 32],
                set_size: 99
            }
        );
        let p = points(1, 2, &[5u8; 64]);
        assert_eq!(
            decode("p", &p).unwrap(),
            Msg::Points {
                stream: 1,
                origin: 2,
                data: &[5u8; 64]
            }
        );
        let t = tags(STREAM_OWN, 0, &[[1u8; TAG_LEN], [2u8; TAG_LEN]]);
        assert!(matches!(decode("p", &t).unwrap(), Msg::Tags { data, .. } if data.len() == 24));
        let x = indices(STREAM_RESULT, 1, &[3, 1 << 40]);
        match decode("p", &x).unwrap() {
            Msg::Indices {
                stream: STREAM_RESULT,
                origin: 1,
                data,
            } => assert_eq!(positions(data).collect::<Vec<_>>(), vec![3, 1 << 40]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode("p", &end(1, 2, 5)).unwrap(),
            Msg::End {
                stream: 1,
                origin: 2,
                total: 5
            }
        );
        assert_eq!(
            decode_chunk("p", &t, Items::Tags, STREAM_OWN, 0, "x").unwrap(),
            Chunk::Data(&[[1u8; TAG_LEN], [2u8; TAG_LEN]].concat())
        );
        assert_eq!(
            decode_chunk("p", &end(1, 2, 5), Items::Points, 1, 2, "x").unwrap(),
            Chunk::End(5)
        );
        for (items, stream, origin) in
            [(Items::Points, STREAM_OWN, 0), (Items::Tags, STREAM_OWN, 1)]
        {
            assert!(matches!(
                decode_chunk("p", &t, items, stream, origin, "x"),
                Err(PsiError::Malformed { reason, .. }) if reason == "unexpected message x"
            ));
        }
        for garbage in [
            &[][..],
            &[9],
            &[2, 1, 0],
            &p[..p.len() - 1],
            &h[..10],
            &x[..x.len() - 3],
        ] {
            assert!(matches!(
                decode("p", garbage),
                Err(PsiError::Malformed { .. })
            ));
        }
    }
}
