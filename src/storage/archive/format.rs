//! Byte layout of archive segments. Pure (bytes in, bytes out), so it can be tested and
//! fuzzed without a file system.
//!
//! # Layout (archive format version 1)
//! All integers are little-endian whatever the host, as in [`crate::storage::codec`]: an
//! archive written on a PC can be copied to a big-endian MIPS router.
//!
//! - A **segment header** is `"XMPPDARC" [u32 version][u64 seq][u64 first_id][u32 crc32c]`,
//!   the CRC covering the bytes before it. `seq` repeats the number in the file name (a
//!   copied or renamed file is caught); `first_id` is the id the next message had when the
//!   segment was started, so the id counter survives even when every message is gone.
//! - **Frames** are exactly those of the account store (`[u32 len][u32 crc32c][payload]`,
//!   payload = one or more `[u32 record_len][record]`), checked with the same
//!   [`FrameHeader`] and [`crate::storage::codec::payload_is_tiled`].
//! - A **record** is a tag byte and its fields; a **string** is `[u32 len][UTF-8]` with a
//!   per-field cap (below):
//!   - `1` message: `[u64 id][u64 ts_ms][u8 flags][str account][str with][str stanza]`
//!     (the short fields first, so that a scan filters without touching the stanza);
//!   - `2` offline delivered: `[str account][u64 up_to]`;
//!   - `3` account deleted: `[str account][u64 below_id]`: the account's messages with a
//!     smaller id are gone. The id is written explicitly (the store's next id when the
//!     record was appended) so that the record means the same wherever it is read.
//!
//! Flags outside [`KNOWN_FLAGS`] are refused on both sides: a new flag is a new format
//! version, so that an older build refuses the files instead of misreading them.

use std::fmt;
use std::ops::Range;

use crate::archive::{ArchiveRecord, ArchivedMessage, flags};
use crate::limits::{JID_PART_MAX_BYTES, MAX_ARCHIVED_JID_BYTES, MAX_ARCHIVED_STANZA_BYTES};
use crate::storage::codec::{
    DecodeError, FRAME_HEADER_BYTES, HeaderError, HeaderReader, HeaderWriter, MAX_FRAME_PAYLOAD,
    MAX_RECORD_BYTES, Reader, put_u32_at, seal_frame,
};

/// Version in every segment header; other versions are refused.
pub const ARCHIVE_FORMAT_VERSION: u32 = 1;

pub const SEGMENT_MAGIC: [u8; 8] = *b"XMPPDARC";
pub const SEGMENT_HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;

/// Record tags. `0` is never a tag, so zero-filled data cannot decode as a record.
pub mod tag {
    pub const MESSAGE: u8 = 1;
    pub const OFFLINE_DELIVERED: u8 = 2;
    pub const ACCOUNT_DELETED: u8 = 3;
}

pub const KNOWN_FLAGS: u8 = flags::ARCHIVED | flags::OFFLINE | flags::OUTGOING;

/// Field caps: decoding limits (a damaged length never allocates more) and encoding
/// checks (a record the decoder would refuse is never written).
pub const MAX_ACCOUNT_BYTES: usize = JID_PART_MAX_BYTES;
pub const MAX_WITH_BYTES: usize = MAX_ARCHIVED_JID_BYTES;
pub const MAX_STANZA_BYTES: usize = MAX_ARCHIVED_STANZA_BYTES;

/// Fixed bytes of a message record besides its three strings: tag, id, timestamp, flags,
/// three string lengths. With the record length in the frame payload: 4 more.
#[cfg(test)]
pub const MESSAGE_FIXED_BYTES: usize = 1 + 8 + 8 + 1 + 3 * 4;

// ---------------------------------------------------------------------------------------
// Segment header
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    pub first_id: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0; SEGMENT_HEADER_BYTES];
        let mut w = HeaderWriter::new(&mut out, SEGMENT_MAGIC, ARCHIVE_FORMAT_VERSION);
        w.put(&self.seq.to_le_bytes());
        w.put(&self.first_id.to_le_bytes());
        w.finish();
        out
    }

    /// Magic and version are checked before the length, so that a file of another version
    /// (whose header may differ in size) is reported as such.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let versions = ARCHIVE_FORMAT_VERSION..=ARCHIVE_FORMAT_VERSION;
        let mut r = HeaderReader::new(bytes, SEGMENT_MAGIC, versions, SEGMENT_HEADER_BYTES)?;
        let seq = r.u64();
        let first_id = r.u64();
        r.check()?;
        Ok(SegmentHeader { seq, first_id })
    }
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// A record borrowed from a frame payload (decoding) or from an [`ArchiveRecord`]
/// (encoding): scans and the index work on this, and only messages that end up in an
/// answer are copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordView<'a> {
    Message(MessageView<'a>),
    OfflineDelivered { account: &'a str, up_to: u64 },
    AccountDeleted { account: &'a str, below_id: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub id: u64,
    pub ts_ms: u64,
    pub flags: u8,
    pub account: &'a str,
    pub with: &'a str,
    pub stanza: &'a str,
}

impl<'a> MessageView<'a> {
    pub fn of(m: &'a ArchivedMessage) -> MessageView<'a> {
        MessageView {
            id: m.id,
            ts_ms: m.ts_ms,
            flags: m.flags,
            account: &m.account,
            with: &m.with,
            stanza: &m.stanza,
        }
    }

    pub fn to_owned_message(self) -> ArchivedMessage {
        ArchivedMessage {
            id: self.id,
            account: self.account.to_owned(),
            ts_ms: self.ts_ms,
            with: self.with.to_owned(),
            flags: self.flags,
            stanza: self.stanza.to_owned(),
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Why a batch cannot be appended. Nothing is written when this happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    UnknownFlags {
        flags: u8,
    },
    /// Ids must increase across the whole archive (queries and the index rely on it).
    IdNotIncreasing {
        id: u64,
        next: u64,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong { field, len, max } => {
                write!(
                    f,
                    "archive {field} of {len} bytes exceeds the {max}-byte limit"
                )
            }
            EncodeError::UnknownFlags { flags } => {
                write!(f, "archive message flags {flags:#04x} include unknown bits")
            }
            EncodeError::IdNotIncreasing { id, next } => {
                write!(
                    f,
                    "archive message id {id} is below the next free id {next}"
                )
            }
        }
    }
}

/// Appends the encoding of one record to `out`; on error `out` is left as it was.
pub fn encode_record(record: &RecordView<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_record_fields(record, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_record_fields(record: &RecordView<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match *record {
        RecordView::Message(m) => {
            if m.flags & !KNOWN_FLAGS != 0 {
                return Err(EncodeError::UnknownFlags { flags: m.flags });
            }
            out.push(tag::MESSAGE);
            out.extend_from_slice(&m.id.to_le_bytes());
            out.extend_from_slice(&m.ts_ms.to_le_bytes());
            out.push(m.flags);
            put_str(out, "account", m.account, MAX_ACCOUNT_BYTES)?;
            put_str(out, "with", m.with, MAX_WITH_BYTES)?;
            put_str(out, "stanza", m.stanza, MAX_STANZA_BYTES)?;
        }
        RecordView::OfflineDelivered { account, up_to } => {
            out.push(tag::OFFLINE_DELIVERED);
            put_str(out, "account", account, MAX_ACCOUNT_BYTES)?;
            out.extend_from_slice(&up_to.to_le_bytes());
        }
        RecordView::AccountDeleted { account, below_id } => {
            out.push(tag::ACCOUNT_DELETED);
            put_str(out, "account", account, MAX_ACCOUNT_BYTES)?;
            out.extend_from_slice(&below_id.to_le_bytes());
        }
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str, max: usize) -> Result<(), EncodeError> {
    if s.len() > max {
        return Err(EncodeError::FieldTooLong {
            field,
            len: s.len(),
            max,
        });
    }
    // Cannot truncate: every cap is far below u32::MAX.
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Decodes exactly one record: `bytes` must hold it and nothing else.
pub fn decode_record(bytes: &[u8]) -> Result<RecordView<'_>, DecodeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLong {
            offset: 0,
            len: bytes.len() as u64,
            max: MAX_RECORD_BYTES as u64,
        });
    }
    let mut r = Reader::new(bytes, 0);
    let record = match r.u8()? {
        tag::MESSAGE => {
            let id = r.u64()?;
            let ts_ms = r.u64()?;
            let flags_offset = r.pos;
            let flags = r.u8()?;
            if flags & !KNOWN_FLAGS != 0 {
                return Err(DecodeError::InvalidValue {
                    offset: flags_offset,
                    what: "message flags",
                    value: flags,
                });
            }
            RecordView::Message(MessageView {
                id,
                ts_ms,
                flags,
                account: r.str(MAX_ACCOUNT_BYTES)?,
                with: r.str(MAX_WITH_BYTES)?,
                stanza: r.str(MAX_STANZA_BYTES)?,
            })
        }
        tag::OFFLINE_DELIVERED => RecordView::OfflineDelivered {
            account: r.str(MAX_ACCOUNT_BYTES)?,
            up_to: r.u64()?,
        },
        tag::ACCOUNT_DELETED => RecordView::AccountDeleted {
            account: r.str(MAX_ACCOUNT_BYTES)?,
            below_id: r.u64()?,
        },
        unknown => {
            return Err(DecodeError::UnknownTag {
                offset: 0,
                tag: unknown,
            });
        }
    };
    r.finish(record)
}

/// The records of a frame payload whose CRC has been checked, each with its offset in
/// the payload. Error offsets count from the start of the payload; iteration stops after
/// the first error.
pub struct PayloadRecords<'a> {
    payload: &'a [u8],
    pos: usize,
    failed: bool,
}

pub fn payload_records(payload: &[u8]) -> PayloadRecords<'_> {
    PayloadRecords {
        payload,
        pos: 0,
        failed: false,
    }
}

impl<'a> Iterator for PayloadRecords<'a> {
    type Item = Result<(usize, RecordView<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.payload.len() {
            return None;
        }
        let result = self.next_record();
        self.failed = result.is_err();
        Some(result)
    }
}

impl<'a> PayloadRecords<'a> {
    fn next_record(&mut self) -> Result<(usize, RecordView<'a>), DecodeError> {
        let mut r = Reader::new(self.payload, self.pos);
        let (record_offset, bytes) = r.length_prefixed_record()?;
        self.pos = r.pos;
        let record = decode_record(bytes).map_err(|e| e.shifted(record_offset))?;
        Ok((record_offset, record))
    }
}

// ---------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------

/// One frame of an encoded batch: its byte range in the buffer and the records it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameSpan {
    pub bytes: Range<usize>,
    pub records: Range<usize>,
}

/// Encodes an append: as few frames as possible (one for any batch under 1 MiB), each
/// whole records. `next_id` is the store's next free id: message ids must be at least
/// that and it moves past each; an `AccountDeleted` takes it as its `below_id`; an
/// `OfflineDelivered` is clamped below it (a marker then only ever concerns messages
/// written before it, which is what lets old segments be deleted first; see the store's
/// doc). On error `out`, `spans` and `next_id` are left as they were.
pub fn encode_batch(
    records: &[ArchiveRecord],
    next_id: &mut u64,
    out: &mut Vec<u8>,
    spans: &mut Vec<FrameSpan>,
) -> Result<(), EncodeError> {
    let (start, spans_start, id_before) = (out.len(), spans.len(), *next_id);
    let result = encode_batch_unchecked(records, next_id, out, spans);
    if result.is_err() {
        out.truncate(start);
        spans.truncate(spans_start);
        *next_id = id_before;
    }
    result
}

/// The view under which `record` is written, given the next free id before it.
pub fn view_for_append(record: &ArchiveRecord, next_id: u64) -> RecordView<'_> {
    match record {
        ArchiveRecord::Message(m) => RecordView::Message(MessageView::of(m)),
        ArchiveRecord::OfflineDelivered { account, up_to } => RecordView::OfflineDelivered {
            account,
            up_to: (*up_to).min(next_id.saturating_sub(1)),
        },
        ArchiveRecord::AccountDeleted { account } => RecordView::AccountDeleted {
            account,
            below_id: next_id,
        },
    }
}

fn encode_batch_unchecked(
    records: &[ArchiveRecord],
    next_id: &mut u64,
    out: &mut Vec<u8>,
    spans: &mut Vec<FrameSpan>,
) -> Result<(), EncodeError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut frame = FrameSpan {
        bytes: out.len()..out.len(),
        records: 0..0,
    };
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    for (i, record) in records.iter().enumerate() {
        let view = view_for_append(record, *next_id);
        if let RecordView::Message(m) = view {
            if m.id < *next_id || m.id == u64::MAX {
                return Err(EncodeError::IdNotIncreasing {
                    id: m.id,
                    next: *next_id,
                });
            }
            *next_id = m.id + 1;
        }
        let record_start = out.len();
        out.extend_from_slice(&[0; 4]);
        encode_record(&view, out)?;
        // Cannot truncate, nor exceed MAX_RECORD_BYTES: the field caps sum to far less.
        let record_len = out.len() - record_start - 4;
        put_u32_at(out, record_start, record_len as u32);
        let payload_len = out.len() - frame.bytes.start - FRAME_HEADER_BYTES;
        if payload_len > MAX_FRAME_PAYLOAD && i > frame.records.start {
            // Close the frame before this record and open one for it; one record always
            // fits an empty frame.
            let moved = out.split_off(record_start);
            frame.bytes.end = out.len();
            frame.records.end = i;
            seal_frame(out, frame.bytes.start);
            spans.push(frame);
            frame = FrameSpan {
                bytes: out.len()..out.len(),
                records: i..i,
            };
            out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
            out.extend_from_slice(&moved);
        }
    }
    frame.bytes.end = out.len();
    frame.records.end = records.len();
    seal_frame(out, frame.bytes.start);
    spans.push(frame);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec::{self, FrameHeader};

    pub(crate) fn message(id: u64, account: &str, with: &str, flags: u8) -> ArchivedMessage {
        ArchivedMessage {
            id,
            account: account.into(),
            ts_ms: 1_700_000_000_000 + id,
            with: with.into(),
            flags,
            stanza: format!("<message to='{account}@h' from='{with}'><body>{id}</body></message>"),
        }
    }

    fn samples() -> Vec<ArchivedMessage> {
        vec![
            message(1, "alice", "bob@localhost", flags::ARCHIVED),
            ArchivedMessage {
                id: u64::MAX - 1,
                account: "jürgen".into(),
                ts_ms: u64::MAX,
                with: "бoб@例え.テスト".into(),
                flags: KNOWN_FLAGS,
                stanza: "<message><body>Grüße 🐟 ☺</body></message>".into(),
            },
            ArchivedMessage {
                id: 0,
                account: String::new(),
                ts_ms: 0,
                with: String::new(),
                flags: 0,
                stanza: String::new(),
            },
        ]
    }

    fn encoded(view: &RecordView<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(encode_record(view, &mut out), Ok(()));
        out
    }

    fn sample_views(messages: &[ArchivedMessage]) -> Vec<RecordView<'_>> {
        let mut views: Vec<RecordView<'_>> = messages
            .iter()
            .map(|m| RecordView::Message(MessageView::of(m)))
            .collect();
        views.push(RecordView::OfflineDelivered {
            account: "zoë",
            up_to: 0x0102_0304_0506_0708,
        });
        views.push(RecordView::AccountDeleted {
            account: "",
            below_id: u64::MAX,
        });
        views
    }

    #[test]
    fn every_record_kind_round_trips() {
        let messages = samples();
        for view in sample_views(&messages) {
            let bytes = encoded(&view);
            assert_eq!(decode_record(&bytes), Ok(view));
        }
        for m in &messages {
            assert_eq!(&MessageView::of(m).to_owned_message(), m);
        }
    }

    #[test]
    fn golden_bytes_are_little_endian() {
        let m = ArchivedMessage {
            id: 0x0102_0304_0506_0708,
            account: "al".into(),
            ts_ms: 0x1112_1314_1516_1718,
            with: "é".into(),
            flags: flags::ARCHIVED | flags::OUTGOING,
            stanza: "<m/>".into(),
        };
        assert_eq!(
            encoded(&RecordView::Message(MessageView::of(&m))),
            [
                1, // tag
                8, 7, 6, 5, 4, 3, 2, 1, // id
                0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // ts
                5,    // flags
                2, 0, 0, 0, b'a', b'l', // account
                2, 0, 0, 0, 0xC3, 0xA9, // with
                4, 0, 0, 0, b'<', b'm', b'/', b'>', // stanza
            ]
        );
        assert_eq!(
            encoded(&RecordView::OfflineDelivered {
                account: "a",
                up_to: 0x0A0B
            }),
            [2, 1, 0, 0, 0, b'a', 0x0B, 0x0A, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encoded(&RecordView::AccountDeleted {
                account: "",
                below_id: 258
            }),
            [3, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        let header = SegmentHeader {
            seq: 0x0102,
            first_id: 0x0A0B_0C0D,
        }
        .encode();
        assert_eq!(
            header.get(..28),
            Some(
                &b"XMPPDARC\x01\x00\x00\x00\x02\x01\x00\x00\x00\x00\x00\x00\x0D\x0C\x0B\x0A\x00\x00\x00\x00"[..]
            )
        );
        assert_eq!(
            header.get(28..),
            Some(&codec::crc32c(&header[..28]).to_le_bytes()[..])
        );
    }

    #[test]
    fn golden_frame_matches_the_account_store_framing() {
        let m = message(7, "a", "b", flags::ARCHIVED);
        let mut next = 1;
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        assert_eq!(
            encode_batch(
                &[ArchiveRecord::Message(m.clone())],
                &mut next,
                &mut out,
                &mut spans
            ),
            Ok(())
        );
        assert_eq!(next, 8);
        let record = encoded(&RecordView::Message(MessageView::of(&m)));
        let mut payload = (record.len() as u32).to_le_bytes().to_vec();
        payload.extend_from_slice(&record);
        let len = (payload.len() as u32).to_le_bytes();
        let crc = codec::crc32c_update(codec::crc32c(&len), &payload);
        let mut expected = len.to_vec();
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&payload);
        assert_eq!(out, expected);
        assert_eq!(
            spans,
            [FrameSpan {
                bytes: 0..out.len(),
                records: 0..1
            }]
        );
        // The account store's checks accept it.
        let header = FrameHeader::parse(out[..8].try_into().unwrap_or([0; 8]));
        assert_eq!(header.payload_len(), Some(payload.len()));
        assert!(header.matches(&out[8..]));
        assert!(codec::payload_is_tiled(&out[8..]));
    }

    #[test]
    fn batches_assign_marker_ids_and_refuse_ids_going_back() {
        let records = [
            ArchiveRecord::Message(message(5, "a", "b", flags::OFFLINE)),
            ArchiveRecord::OfflineDelivered {
                account: "a".into(),
                up_to: 99,
            },
            ArchiveRecord::AccountDeleted {
                account: "a".into(),
            },
            ArchiveRecord::Message(message(9, "a", "b", flags::ARCHIVED)),
        ];
        let mut next = 3;
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        assert_eq!(
            encode_batch(&records, &mut next, &mut out, &mut spans),
            Ok(())
        );
        assert_eq!(next, 10);
        let payload = &out[FRAME_HEADER_BYTES..];
        let views: Vec<_> = payload_records(payload)
            .map(|r| r.map(|(_, v)| v))
            .collect();
        assert_eq!(views.len(), 4);
        assert_eq!(
            views[1],
            Ok(RecordView::OfflineDelivered {
                account: "a",
                up_to: 5
            })
        );
        assert_eq!(
            views[2],
            Ok(RecordView::AccountDeleted {
                account: "a",
                below_id: 6
            })
        );

        let before = out.clone();
        let mut next = 10;
        let again = [
            ArchiveRecord::Message(message(10, "a", "b", 1)),
            records[0].clone(),
        ];
        assert_eq!(
            encode_batch(&again, &mut next, &mut out, &mut spans),
            Err(EncodeError::IdNotIncreasing { id: 5, next: 11 })
        );
        assert_eq!((out, next, spans.len()), (before, 10, 1));
    }

    #[test]
    fn oversized_fields_and_unknown_flags_are_refused() {
        let mut m = message(1, "a", "b", flags::ARCHIVED);
        m.stanza = "x".repeat(MAX_STANZA_BYTES + 1);
        let mut out = vec![0xEE];
        assert_eq!(
            encode_record(&RecordView::Message(MessageView::of(&m)), &mut out),
            Err(EncodeError::FieldTooLong {
                field: "stanza",
                len: MAX_STANZA_BYTES + 1,
                max: MAX_STANZA_BYTES
            })
        );
        assert_eq!(out, [0xEE]);
        m.stanza.pop();
        let bytes = encoded(&RecordView::Message(MessageView::of(&m)));
        assert!(
            matches!(decode_record(&bytes), Ok(RecordView::Message(v)) if v.stanza.len() == MAX_STANZA_BYTES)
        );
        m.account = "a".repeat(MAX_ACCOUNT_BYTES + 1);
        assert!(matches!(
            encode_record(&RecordView::Message(MessageView::of(&m)), &mut out),
            Err(EncodeError::FieldTooLong {
                field: "account",
                ..
            })
        ));
        let bad = message(1, "a", "b", 8);
        assert_eq!(
            encode_record(&RecordView::Message(MessageView::of(&bad)), &mut out),
            Err(EncodeError::UnknownFlags { flags: 8 })
        );
        let mut bytes = encoded(&RecordView::Message(MessageView::of(&message(
            1, "a", "b", 1,
        ))));
        bytes[17] = 0x81;
        assert_eq!(
            decode_record(&bytes),
            Err(DecodeError::InvalidValue {
                offset: 17,
                what: "message flags",
                value: 0x81
            })
        );
    }

    #[test]
    fn large_batches_split_into_frames_of_whole_records() {
        let mut big = message(1, "a", "b", flags::ARCHIVED);
        big.stanza = "x".repeat(MAX_STANZA_BYTES);
        let records: Vec<ArchiveRecord> = (1..=6)
            .map(|id| ArchiveRecord::Message(ArchivedMessage { id, ..big.clone() }))
            .collect();
        let mut next = 1;
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        assert_eq!(
            encode_batch(&records, &mut next, &mut out, &mut spans),
            Ok(())
        );
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].records, 0..3);
        assert_eq!(spans[1].records, 3..6);
        assert_eq!(spans[1].bytes.end, out.len());
        let mut ids = Vec::new();
        for span in &spans {
            let frame = &out[span.bytes.clone()];
            let header = FrameHeader::parse(frame[..8].try_into().unwrap_or([0; 8]));
            assert!(header.payload_len().is_some());
            assert!(header.matches(&frame[8..]));
            for r in payload_records(&frame[8..]) {
                if let Ok((_, RecordView::Message(m))) = r {
                    ids.push(m.id);
                }
            }
        }
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let messages = samples();
        for view in sample_views(&messages) {
            let bytes = encoded(&view);
            for cut in 0..bytes.len() {
                assert!(
                    decode_record(&bytes[..cut]).is_err(),
                    "{view:?} cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                decode_record(&longer),
                Err(DecodeError::TrailingBytes {
                    offset: bytes.len()
                })
            );
        }
    }

    #[test]
    fn every_bit_flip_decodes_or_fails_without_panicking() {
        let messages = samples();
        for view in sample_views(&messages) {
            let bytes = encoded(&view);
            for i in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[i / 8] ^= 1 << (i % 8);
                if let Ok(other) = decode_record(&damaged) {
                    assert_eq!(encoded(&other), damaged);
                }
                for r in payload_records(&damaged) {
                    let _ = r;
                }
            }
        }
        let header = SegmentHeader {
            seq: 3,
            first_id: 9,
        }
        .encode();
        assert_eq!(
            SegmentHeader::decode(&header),
            Ok(SegmentHeader {
                seq: 3,
                first_id: 9
            })
        );
        for i in 0..header.len() * 8 {
            let mut damaged = header;
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(SegmentHeader::decode(&damaged).is_err(), "flip {i}");
        }
        for cut in 0..header.len() {
            assert!(SegmentHeader::decode(&header[..cut]).is_err());
        }
    }

    #[test]
    fn huge_lengths_and_unknown_tags_are_refused() {
        assert_eq!(
            decode_record(&[2, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::TooLong {
                offset: 1,
                len: u64::from(u32::MAX),
                max: MAX_ACCOUNT_BYTES as u64
            })
        );
        assert_eq!(
            decode_record(&[0]),
            Err(DecodeError::UnknownTag { offset: 0, tag: 0 })
        );
        assert_eq!(
            decode_record(&[4, 0]),
            Err(DecodeError::UnknownTag { offset: 0, tag: 4 })
        );
        assert_eq!(
            decode_record(&[2, 1, 0, 0, 0, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::InvalidUtf8 { offset: 1 })
        );
        // Payload errors carry payload offsets, and iteration stops at the first.
        let mut payload = vec![13, 0, 0, 0];
        payload.extend_from_slice(&encoded(&RecordView::AccountDeleted {
            account: "",
            below_id: 1,
        }));
        payload.extend_from_slice(&[2, 0, 0, 0, 9, 0]);
        let all: Vec<_> = payload_records(&payload).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], Err(DecodeError::UnknownTag { offset: 21, tag: 9 }));
        assert!(matches!(
            payload_records(&[9, 0, 0, 0, 2]).next(),
            Some(Err(DecodeError::TooLong {
                offset: 0,
                len: 9,
                max: 1
            }))
        ));
        assert_eq!(
            SegmentHeader::decode(b"XMPPDARC\x02\x00\x00\x00"),
            Err(HeaderError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            SegmentHeader::decode(b"XMPPDLOG\x01\x00\x00\x00"),
            Err(HeaderError::BadMagic)
        );
    }
}
