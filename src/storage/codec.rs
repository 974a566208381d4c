//! Binary encoding of the store's files: records, checksummed frames and file headers.
//!
//! Everything here is pure (bytes in, bytes out) so that it can be tested and fuzzed
//! without a file system; [`super::file`] does the I/O.
//!
//! # Layout (format version 1)
//! All integers are little-endian whatever the host (`to_le_bytes`), so a store written on
//! an x86 PC can be copied to a big-endian MIPS router and back.
//!
//! - A **string** is `[u32 len][len bytes of UTF-8]`, a **byte string** `[u32 len][bytes]`;
//!   `len` is at most [`MAX_FIELD_BYTES`]. An **optional string** is a `0` byte, or a `1`
//!   byte and the string. A **list** is `[u32 count][items]`, `count` at most
//!   [`MAX_LIST_ITEMS`]. A **bool** is one byte, `0` or `1`.
//! - A **record** is a tag byte ([`tag`]) followed by its fields in declaration order.
//!   An encoded record is at most [`MAX_RECORD_BYTES`].
//! - A **frame** is `[u32 len][u32 crc32c][payload]`: `len` counts the payload bytes, the
//!   CRC-32C covers the four `len` bytes and the payload (so a zeroed or garbled length is
//!   caught too), and the payload is one or more `[u32 record_len][record]`.
//! - A **log header** is `"XMPPDLOG" [u32 version][u64 generation][u32 crc32c]`, a
//!   **snapshot header** `"XMPPDSNP" [u32 version][u64 generation][u64 records][u32 crc32c]`;
//!   the CRC covers the header bytes before it. The version follows the magic directly so
//!   that a later version may change everything after it.
//!
//! # Evolving the format
//! A new kind of record gets a new tag and bumps [`FORMAT_VERSION`], so that an older build
//! refuses the newer files with "unsupported version" instead of "unknown tag"; decoding
//! stays able to read every older version. The size caps are decoding limits, not layout:
//! raising one (say, for offline messages larger than 64 KiB) does not change the format.

use std::fmt;
use std::ops::RangeInclusive;

use crate::db::{MamDefault, MamPrefs, Record, RosterItem, Subscription};
use crate::sasl::{Credentials, ScramKeys};

/// Version written in every file header; readers refuse files of a later version.
/// Version 2 added the issue 7 record kinds (tags 32 and up, see `codec_personal.rs`).
pub const FORMAT_VERSION: u32 = 2;

/// Oldest version this build still reads: a newer build reads every older version.
pub const OLDEST_READABLE_VERSION: u32 = 1;

// Issue 7: personal data records; a child module so it shares the reader and writers.
#[path = "codec_personal.rs"]
mod personal;

/// Largest string or byte string in a record. Every text the server stores is far smaller
/// (JID parts are at most 1023 bytes, RFC 7622 §3); the cap exists so that a damaged length
/// can never make the loader allocate more than this.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Largest list (roster groups) in a record, for the same reason.
pub const MAX_LIST_ITEMS: usize = 4096;

/// Largest encoded record, tag included.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// `[u32 len][u32 crc32c]` before every frame payload.
pub const FRAME_HEADER_BYTES: usize = 8;

/// A frame holds at least one record: a `u32` record length and a tag byte.
pub const MIN_FRAME_PAYLOAD: usize = 4 + 1;

/// Large enough for one record of [`MAX_RECORD_BYTES`] and its length prefix, so every
/// valid record fits a frame; also the most the loader ever buffers for one frame.
pub const MAX_FRAME_PAYLOAD: usize = 4 + MAX_RECORD_BYTES;

pub const LOG_MAGIC: [u8; 8] = *b"XMPPDLOG";
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"XMPPDSNP";
pub const LOG_HEADER_BYTES: usize = 8 + 4 + 8 + 4;
pub const SNAPSHOT_HEADER_BYTES: usize = 8 + 4 + 8 + 8 + 4;

/// One tag byte per [`Record`] variant. `0` is never a tag, so zero-filled data (a file
/// extended by a crash before its data blocks were written) cannot decode as a record.
pub mod tag {
    pub const USER_SET: u8 = 1;
    pub const USER_DELETE: u8 = 2;
    pub const ROSTER_SET: u8 = 3;
    pub const ROSTER_DELETE: u8 = 4;
    pub const PENDING_IN_SET: u8 = 5;
    pub const PENDING_IN_DELETE: u8 = 6;
    /// XEP-0313 preferences (tags from 64 on belong to delivery features).
    pub const MAM_PREFS: u8 = 64;
}

// ---------------------------------------------------------------------------------------
// CRC-32C
// ---------------------------------------------------------------------------------------

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of iSCSI
/// (RFC 3720 §12.1) and ext4 metadata. Chosen over CRC-32 (IEEE) for its better error
/// detection at the record sizes used here. A 1 KiB table, byte at a time: a snapshot of a
/// few MiB checks in well under a second on a router core, with no dependency.
const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// Continues a CRC-32C: `crc32c_update(crc32c(a), b) == crc32c(a ++ b)`.
pub fn crc32c_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in bytes {
        c = CRC32C_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c_update(0, bytes)
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why bytes do not decode. Offsets count from the start of the slice given to the decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a field that starts at `offset`.
    Truncated {
        offset: usize,
    },
    /// A tag this build does not know (written by a newer build, or damage).
    UnknownTag {
        offset: usize,
        tag: u8,
    },
    /// A length or count over its cap, or one that does not fit the enclosing data.
    TooLong {
        offset: usize,
        len: u64,
        max: u64,
    },
    InvalidUtf8 {
        offset: usize,
    },
    /// A flag or enum byte outside its range.
    InvalidValue {
        offset: usize,
        what: &'static str,
        value: u8,
    },
    /// Bytes left over after a complete record, inside its length-prefixed slot.
    TrailingBytes {
        offset: usize,
    },
}

impl DecodeError {
    pub fn offset(&self) -> usize {
        match *self {
            DecodeError::Truncated { offset }
            | DecodeError::UnknownTag { offset, .. }
            | DecodeError::TooLong { offset, .. }
            | DecodeError::InvalidUtf8 { offset }
            | DecodeError::InvalidValue { offset, .. }
            | DecodeError::TrailingBytes { offset } => offset,
        }
    }

    /// The same error with its offset moved by `base` (to report a file position).
    pub(in crate::storage) fn shifted(self, base: usize) -> DecodeError {
        let at = |offset: usize| offset.saturating_add(base);
        match self {
            DecodeError::Truncated { offset } => DecodeError::Truncated { offset: at(offset) },
            DecodeError::UnknownTag { offset, tag } => DecodeError::UnknownTag {
                offset: at(offset),
                tag,
            },
            DecodeError::TooLong { offset, len, max } => DecodeError::TooLong {
                offset: at(offset),
                len,
                max,
            },
            DecodeError::InvalidUtf8 { offset } => DecodeError::InvalidUtf8 { offset: at(offset) },
            DecodeError::InvalidValue {
                offset,
                what,
                value,
            } => DecodeError::InvalidValue {
                offset: at(offset),
                what,
                value,
            },
            DecodeError::TrailingBytes { offset } => {
                DecodeError::TrailingBytes { offset: at(offset) }
            }
        }
    }
}

/// Describes the fault without its offset (the file layer reports the offset itself).
impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { .. } => write!(f, "data ends inside a field"),
            DecodeError::UnknownTag { tag, .. } => write!(f, "unknown record tag {tag}"),
            DecodeError::TooLong { len, max, .. } => {
                write!(f, "length {len} exceeds the limit {max}")
            }
            DecodeError::InvalidUtf8 { .. } => write!(f, "string is not valid UTF-8"),
            DecodeError::InvalidValue { what, value, .. } => {
                write!(f, "invalid {what} value {value}")
            }
            DecodeError::TrailingBytes { .. } => write!(f, "bytes left over after a record"),
        }
    }
}

/// Why a record cannot be encoded: it would exceed a cap the decoder enforces, and writing
/// it would make the store unloadable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    FieldTooLong { len: usize },
    TooManyItems { count: usize },
    RecordTooLong { len: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong { len } => write!(
                f,
                "a record field of {len} bytes exceeds the {MAX_FIELD_BYTES}-byte limit"
            ),
            EncodeError::TooManyItems { count } => write!(
                f,
                "a record list of {count} items exceeds the {MAX_LIST_ITEMS}-item limit"
            ),
            EncodeError::RecordTooLong { len } => write!(
                f,
                "a record of {len} bytes exceeds the {MAX_RECORD_BYTES}-byte limit"
            ),
        }
    }
}

/// Why a file header is refused. Offsets are from the start of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    Truncated { len: usize },
    BadMagic,
    UnsupportedVersion { version: u32 },
    BadChecksum { offset: usize },
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// Appends the encoding of `record` to `out`. On error `out` is left as it was.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_record_fields(record, out).and_then(|()| {
        let len = out.len() - start;
        if len > MAX_RECORD_BYTES {
            Err(EncodeError::RecordTooLong { len })
        } else {
            Ok(())
        }
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_record_fields(record: &Record, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match record {
        Record::UserSet { user, credentials } => {
            out.push(tag::USER_SET);
            put_str(out, user)?;
            put_credentials(out, credentials)?;
        }
        Record::UserDelete { user } => {
            out.push(tag::USER_DELETE);
            put_str(out, user)?;
        }
        Record::RosterSet {
            user,
            ver,
            jid,
            item,
        } => {
            out.push(tag::ROSTER_SET);
            put_str(out, user)?;
            out.extend_from_slice(&ver.to_le_bytes());
            put_str(out, jid)?;
            put_roster_item(out, item)?;
        }
        Record::RosterDelete { user, ver, jid } => {
            out.push(tag::ROSTER_DELETE);
            put_str(out, user)?;
            out.extend_from_slice(&ver.to_le_bytes());
            put_str(out, jid)?;
        }
        Record::PendingInSet { user, jid, status } => {
            out.push(tag::PENDING_IN_SET);
            put_str(out, user)?;
            put_str(out, jid)?;
            put_opt_str(out, status.as_deref())?;
        }
        Record::PendingInDelete { user, jid } => {
            out.push(tag::PENDING_IN_DELETE);
            put_str(out, user)?;
            put_str(out, jid)?;
        }
        Record::MamPrefs { user, prefs } => {
            out.push(tag::MAM_PREFS);
            put_str(out, user)?;
            out.push(match prefs.default {
                MamDefault::Always => 0,
                MamDefault::Never => 1,
                MamDefault::Roster => 2,
            });
            put_str_list(out, &prefs.always)?;
            put_str_list(out, &prefs.never)?;
        }
        Record::Personal { user, change } => personal::encode_personal(user, change, out)?,
        Record::Server { change } => personal::encode_server(change, out)?,
    }
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), EncodeError> {
    if bytes.len() > MAX_FIELD_BYTES {
        return Err(EncodeError::FieldTooLong { len: bytes.len() });
    }
    // Cannot truncate: MAX_FIELD_BYTES < u32::MAX.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    put_bytes(out, s.as_bytes())
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), EncodeError> {
    match s {
        None => {
            out.push(0);
            Ok(())
        }
        Some(s) => {
            out.push(1);
            put_str(out, s)
        }
    }
}

fn put_str_list(out: &mut Vec<u8>, list: &[String]) -> Result<(), EncodeError> {
    if list.len() > MAX_LIST_ITEMS {
        return Err(EncodeError::TooManyItems { count: list.len() });
    }
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for s in list {
        put_str(out, s)?;
    }
    Ok(())
}

fn put_credentials(out: &mut Vec<u8>, c: &Credentials) -> Result<(), EncodeError> {
    put_bytes(out, &c.salt)?;
    out.extend_from_slice(&c.iterations.to_le_bytes());
    out.extend_from_slice(&c.sha1.stored_key);
    out.extend_from_slice(&c.sha1.server_key);
    out.extend_from_slice(&c.sha256.stored_key);
    out.extend_from_slice(&c.sha256.server_key);
    Ok(())
}

fn put_roster_item(out: &mut Vec<u8>, item: &RosterItem) -> Result<(), EncodeError> {
    put_opt_str(out, item.name.as_deref())?;
    if item.groups.len() > MAX_LIST_ITEMS {
        return Err(EncodeError::TooManyItems {
            count: item.groups.len(),
        });
    }
    out.extend_from_slice(&(item.groups.len() as u32).to_le_bytes());
    for group in &item.groups {
        put_str(out, group)?;
    }
    out.push(subscription_byte(item.subscription));
    out.push(u8::from(item.ask));
    Ok(())
}

fn subscription_byte(s: Subscription) -> u8 {
    match s {
        Subscription::None => 0,
        Subscription::To => 1,
        Subscription::From => 2,
        Subscription::Both => 3,
    }
}

/// Decodes exactly one record: `bytes` must hold it and nothing else.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLong {
            offset: 0,
            len: bytes.len() as u64,
            max: MAX_RECORD_BYTES as u64,
        });
    }
    let mut r = Reader { bytes, pos: 0 };
    let tag_offset = r.pos;
    let record = match r.u8()? {
        tag::USER_SET => Record::UserSet {
            user: r.string()?,
            credentials: r.credentials()?,
        },
        tag::USER_DELETE => Record::UserDelete { user: r.string()? },
        tag::ROSTER_SET => Record::RosterSet {
            user: r.string()?,
            ver: r.u64()?,
            jid: r.string()?,
            item: r.roster_item()?,
        },
        tag::ROSTER_DELETE => Record::RosterDelete {
            user: r.string()?,
            ver: r.u64()?,
            jid: r.string()?,
        },
        tag::PENDING_IN_SET => Record::PendingInSet {
            user: r.string()?,
            jid: r.string()?,
            status: r.opt_string()?,
        },
        tag::PENDING_IN_DELETE => Record::PendingInDelete {
            user: r.string()?,
            jid: r.string()?,
        },
        tag::MAM_PREFS => {
            let user = r.string()?;
            let offset = r.pos;
            let default = match r.u8()? {
                0 => MamDefault::Always,
                1 => MamDefault::Never,
                2 => MamDefault::Roster,
                value => {
                    return Err(DecodeError::InvalidValue {
                        offset,
                        what: "archiving default",
                        value,
                    });
                }
            };
            let always = r.string_list()?;
            let never = r.string_list()?;
            Record::MamPrefs {
                user,
                prefs: MamPrefs {
                    default,
                    always,
                    never,
                },
            }
        }
        t if personal::owns_tag(t) => personal::decode(t, &mut r, tag_offset)?,
        unknown => {
            return Err(DecodeError::UnknownTag {
                offset: tag_offset,
                tag: unknown,
            });
        }
    };
    r.finish(record)
}

/// A cursor that never reads past its slice: every shortfall is `Truncated`. The archive
/// (`archive/format.rs`) reads its records with it too.
pub(in crate::storage) struct Reader<'a> {
    bytes: &'a [u8],
    pub(in crate::storage) pos: usize,
}

impl<'a> Reader<'a> {
    pub(in crate::storage) fn new(bytes: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { bytes, pos }
    }

    /// `value`, decoded from the whole slice: bytes left over mean damage.
    pub(in crate::storage) fn finish<T>(&self, value: T) -> Result<T, DecodeError> {
        if self.pos != self.bytes.len() {
            return Err(DecodeError::TrailingBytes { offset: self.pos });
        }
        Ok(value)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let truncated = DecodeError::Truncated { offset: self.pos };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let slice = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let offset = self.pos;
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError::Truncated { offset })
    }

    pub(in crate::storage) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(in crate::storage) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u32` length or count, checked against its cap before anything is allocated.
    fn bounded_len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let len = self.u32()?;
        match usize::try_from(len) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(DecodeError::TooLong {
                offset,
                len: u64::from(len),
                max: max as u64,
            }),
        }
    }

    fn byte_string(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.bounded_len(MAX_FIELD_BYTES)?;
        self.take(len)
    }

    /// A UTF-8 string of at most `max` bytes, borrowed from the input.
    pub(in crate::storage) fn str(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let len = self.bounded_len(max)?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { offset })
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.str(MAX_FIELD_BYTES).map(str::to_owned)
    }

    /// The next `[u32 len][record]` of a frame payload (the slice this reader holds): the
    /// record's offset and bytes. A length running past the payload is `TooLong`.
    pub(in crate::storage) fn length_prefixed_record(
        &mut self,
    ) -> Result<(usize, &'a [u8]), DecodeError> {
        let len_offset = self.pos;
        let len = self.bounded_len(MAX_RECORD_BYTES)?;
        let record_offset = self.pos;
        let remaining = self.bytes.len().saturating_sub(record_offset);
        let bytes = self.take(len).map_err(|_| DecodeError::TooLong {
            offset: len_offset,
            len: len as u64,
            max: remaining as u64,
        })?;
        Ok((record_offset, bytes))
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidValue {
                offset,
                what,
                value,
            }),
        }
    }

    fn string_list(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.bounded_len(MAX_LIST_ITEMS)?;
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(self.string()?);
        }
        Ok(v)
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        if self.flag("option flag")? {
            Ok(Some(self.string()?))
        } else {
            Ok(None)
        }
    }

    fn credentials(&mut self) -> Result<Credentials, DecodeError> {
        Ok(Credentials {
            salt: self.byte_string()?.to_vec(),
            iterations: self.u32()?,
            sha1: ScramKeys {
                stored_key: self.array()?,
                server_key: self.array()?,
            },
            sha256: ScramKeys {
                stored_key: self.array()?,
                server_key: self.array()?,
            },
        })
    }

    fn roster_item(&mut self) -> Result<RosterItem, DecodeError> {
        let name = self.opt_string()?;
        let count = self.bounded_len(MAX_LIST_ITEMS)?;
        // No `with_capacity(count)`: each group needs at least 4 more bytes, so a damaged
        // count ends in `Truncated` after at most a record's worth of pushes.
        let mut groups = Vec::new();
        for _ in 0..count {
            groups.push(self.string()?);
        }
        let offset = self.pos;
        let subscription = match self.u8()? {
            0 => Subscription::None,
            1 => Subscription::To,
            2 => Subscription::From,
            3 => Subscription::Both,
            value => {
                return Err(DecodeError::InvalidValue {
                    offset,
                    what: "subscription",
                    value,
                });
            }
        };
        let ask = self.flag("ask flag")?;
        Ok(RosterItem {
            name,
            groups,
            subscription,
            ask,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// Appends `records` to `out` as frames: as few as possible, each holding whole records
/// and at most [`MAX_FRAME_PAYLOAD`] bytes of payload. One append of ordinary size is one
/// frame, which is what lets the loader tell an interrupted append from damage (see
/// `file.rs`). On error `out` is left as it was. Returns the number of frames written.
pub fn encode_frames(records: &[Record], out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = out.len();
    let result = encode_frames_unchecked(records, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_frames_unchecked(records: &[Record], out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    if records.is_empty() {
        return Ok(0);
    }
    let mut frames = 1;
    let mut frame_start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    for record in records {
        let record_start = out.len();
        out.extend_from_slice(&[0; 4]);
        encode_record(record, out)?;
        let record_len = out.len() - record_start - 4;
        // Cannot truncate: encode_record keeps records under MAX_RECORD_BYTES.
        put_u32_at(out, record_start, record_len as u32);
        let payload_len = out.len() - frame_start - FRAME_HEADER_BYTES;
        if payload_len > MAX_FRAME_PAYLOAD {
            // This record does not fit: close the frame before it, open one for it. A frame
            // is never empty because one record always fits an empty frame.
            let moved = out.split_off(record_start);
            seal_frame(out, frame_start);
            frame_start = out.len();
            out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
            out.extend_from_slice(&moved);
            frames += 1;
        }
    }
    seal_frame(out, frame_start);
    Ok(frames)
}

pub(in crate::storage) fn put_u32_at(out: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
}

/// Fills in the length and CRC of the frame whose header starts at `frame_start`.
pub(in crate::storage) fn seal_frame(out: &mut [u8], frame_start: usize) {
    let payload_start = frame_start + FRAME_HEADER_BYTES;
    let len = (out.len() - payload_start) as u32;
    let len_bytes = len.to_le_bytes();
    let crc = crc32c_update(crc32c(&len_bytes), out.get(payload_start..).unwrap_or(&[]));
    put_u32_at(out, frame_start, len);
    put_u32_at(out, frame_start + 4, crc);
}

/// The header of a frame, read before its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: u32,
    pub crc: u32,
}

impl FrameHeader {
    pub fn parse(bytes: [u8; FRAME_HEADER_BYTES]) -> FrameHeader {
        let [a, b, c, d, e, f, g, h] = bytes;
        FrameHeader {
            len: u32::from_le_bytes([a, b, c, d]),
            crc: u32::from_le_bytes([e, f, g, h]),
        }
    }

    /// The payload length if it is one a writer can produce.
    pub fn payload_len(&self) -> Option<usize> {
        usize::try_from(self.len)
            .ok()
            .filter(|n| (MIN_FRAME_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(n))
    }

    pub fn matches(&self, payload: &[u8]) -> bool {
        crc32c_update(crc32c(&self.len.to_le_bytes()), payload) == self.crc
    }
}

/// Whether `payload` is exactly covered by `[u32 len][record]` runs with lengths in range,
/// as every payload a writer produces is. One step per record, no checksum: it lets the
/// search of a damaged log for intact frames skip the CRC at almost every byte offset.
pub fn payload_is_tiled(payload: &[u8]) -> bool {
    let mut pos = 0usize;
    while pos < payload.len() {
        let len = match payload.get(pos..pos + 4).and_then(|b| b.try_into().ok()) {
            Some(b) => u32::from_le_bytes(b),
            None => return false,
        };
        match usize::try_from(len) {
            Ok(n) if (1..=MAX_RECORD_BYTES).contains(&n) => pos += 4 + n,
            _ => return false,
        }
    }
    pos == payload.len()
}

/// Decodes the records of a frame payload whose CRC has been checked, handing each to
/// `each`. Error offsets count from the start of the payload.
pub fn decode_frame_payload(
    payload: &[u8],
    mut each: impl FnMut(Record),
) -> Result<u64, DecodeError> {
    let mut r = Reader::new(payload, 0);
    let mut count = 0;
    while r.pos < payload.len() {
        let (record_offset, bytes) = r.length_prefixed_record()?;
        each(decode_record(bytes).map_err(|e| e.shifted(record_offset))?);
        count += 1;
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// File headers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHeader {
    pub generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub generation: u64,
    /// How many records follow, so that a snapshot cut short at a frame boundary is caught.
    pub records: u64,
}

impl LogHeader {
    pub fn encode(&self) -> [u8; LOG_HEADER_BYTES] {
        let mut out = [0; LOG_HEADER_BYTES];
        let mut w = HeaderWriter::new(&mut out, LOG_MAGIC, FORMAT_VERSION);
        w.put(&self.generation.to_le_bytes());
        w.finish();
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogHeader, HeaderError> {
        let mut r = HeaderReader::new(bytes, LOG_MAGIC, READABLE_VERSIONS, LOG_HEADER_BYTES)?;
        let generation = r.u64();
        r.check()?;
        Ok(LogHeader { generation })
    }
}

impl SnapshotHeader {
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_BYTES] {
        let mut out = [0; SNAPSHOT_HEADER_BYTES];
        let mut w = HeaderWriter::new(&mut out, SNAPSHOT_MAGIC, FORMAT_VERSION);
        w.put(&self.generation.to_le_bytes());
        w.put(&self.records.to_le_bytes());
        w.finish();
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotHeader, HeaderError> {
        let mut r = HeaderReader::new(
            bytes,
            SNAPSHOT_MAGIC,
            READABLE_VERSIONS,
            SNAPSHOT_HEADER_BYTES,
        )?;
        let generation = r.u64();
        let records = r.u64();
        r.check()?;
        Ok(SnapshotHeader {
            generation,
            records,
        })
    }
}

const READABLE_VERSIONS: RangeInclusive<u32> = OLDEST_READABLE_VERSION..=FORMAT_VERSION;

/// Writes magic, version, fields, then the CRC of everything before it. The archive's
/// segment header (`archive/format.rs`) has the same shape.
pub(in crate::storage) struct HeaderWriter<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl<'a> HeaderWriter<'a> {
    pub(in crate::storage) fn new(
        out: &'a mut [u8],
        magic: [u8; 8],
        version: u32,
    ) -> HeaderWriter<'a> {
        let mut w = HeaderWriter { out, pos: 0 };
        w.put(&magic);
        w.put(&version.to_le_bytes());
        w
    }

    pub(in crate::storage) fn put(&mut self, bytes: &[u8]) {
        if let Some(slot) = self.out.get_mut(self.pos..self.pos + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }

    pub(in crate::storage) fn finish(mut self) {
        let crc = crc32c(self.out.get(..self.pos).unwrap_or(&[]));
        self.put(&crc.to_le_bytes());
    }
}

/// Reads a header of a known size: magic and version are checked on creation, the fields
/// are read in order, and `check` verifies the trailing CRC.
pub(in crate::storage) struct HeaderReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> HeaderReader<'a> {
    pub(in crate::storage) fn new(
        bytes: &'a [u8],
        magic: [u8; 8],
        versions: RangeInclusive<u32>,
        size: usize,
    ) -> Result<HeaderReader<'a>, HeaderError> {
        // The magic and version are checked before the length, so that a file of a newer
        // version with a longer or shorter header is reported as such.
        match bytes.get(..8) {
            Some(m) if m == magic => {}
            Some(_) => return Err(HeaderError::BadMagic),
            None => return Err(HeaderError::Truncated { len: bytes.len() }),
        }
        let version = match bytes.get(8..12).and_then(|v| v.try_into().ok()) {
            Some(v) => u32::from_le_bytes(v),
            None => return Err(HeaderError::Truncated { len: bytes.len() }),
        };
        if !versions.contains(&version) {
            return Err(HeaderError::UnsupportedVersion { version });
        }
        match bytes.get(..size) {
            Some(header) => Ok(HeaderReader {
                bytes: header,
                pos: 12,
            }),
            None => Err(HeaderError::Truncated { len: bytes.len() }),
        }
    }

    /// Reads a field; the caller checked the header's length in `new`.
    pub(in crate::storage) fn u64(&mut self) -> u64 {
        let value = self
            .bytes
            .get(self.pos..self.pos + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        self.pos += 8;
        value
    }

    pub(in crate::storage) fn check(&self) -> Result<(), HeaderError> {
        let bad = HeaderError::BadChecksum { offset: self.pos };
        let stored: [u8; 4] = self
            .bytes
            .get(self.pos..self.pos + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(bad.clone())?;
        let computed = crc32c(self.bytes.get(..self.pos).unwrap_or(&[]));
        if u32::from_le_bytes(stored) == computed {
            Ok(())
        } else {
            Err(bad)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn creds(b: u8) -> Credentials {
        Credentials {
            salt: vec![b; 16],
            iterations: 4096,
            sha1: ScramKeys {
                stored_key: [b; 20],
                server_key: [b.wrapping_add(1); 20],
            },
            sha256: ScramKeys {
                stored_key: [b.wrapping_add(2); 32],
                server_key: [b.wrapping_add(3); 32],
            },
        }
    }

    /// One of every variant, with Unicode, empty strings, empty and non-empty options and
    /// lists, and every subscription state.
    pub(crate) fn sample_records() -> Vec<Record> {
        vec![
            Record::UserSet {
                user: "alice".into(),
                credentials: creds(7),
            },
            Record::UserSet {
                user: String::new(),
                credentials: Credentials {
                    salt: Vec::new(),
                    iterations: 0,
                    ..creds(0)
                },
            },
            Record::UserDelete {
                user: "jürgen".into(),
            },
            Record::RosterSet {
                user: "alice".into(),
                ver: u64::MAX,
                jid: "бoб@例え.テスト".into(),
                item: RosterItem {
                    name: Some("Bob 🐟".into()),
                    groups: vec!["Friends".into(), String::new(), "Ärzte".into()],
                    subscription: Subscription::Both,
                    ask: true,
                },
            },
            Record::RosterSet {
                user: "a".into(),
                ver: 0,
                jid: String::new(),
                item: RosterItem {
                    name: Some(String::new()),
                    groups: Vec::new(),
                    subscription: Subscription::None,
                    ask: false,
                },
            },
            Record::RosterSet {
                user: "a".into(),
                ver: 1,
                jid: "c@x".into(),
                item: RosterItem {
                    name: None,
                    groups: vec!["g".into()],
                    subscription: Subscription::To,
                    ask: false,
                },
            },
            Record::RosterSet {
                user: "a".into(),
                ver: 2,
                jid: "d@x".into(),
                item: RosterItem {
                    subscription: Subscription::From,
                    ..RosterItem::default()
                },
            },
            Record::RosterDelete {
                user: "alice".into(),
                ver: 42,
                jid: "bob@localhost".into(),
            },
            Record::PendingInSet {
                user: "alice".into(),
                jid: "eve@localhost".into(),
                status: Some("Hi! ☺".into()),
            },
            Record::PendingInSet {
                user: "alice".into(),
                jid: "mallory@localhost".into(),
                status: None,
            },
            Record::PendingInDelete {
                user: "alice".into(),
                jid: "eve@localhost".into(),
            },
        ]
    }

    fn encoded(record: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(encode_record(record, &mut out), Ok(()));
        out
    }

    #[test]
    fn crc32c_matches_published_check_values() {
        // The catalogue check value for CRC-32C, and RFC 3720 §B.4 vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(crc32c(&descending), 0x113F_DB5C);
        assert_eq!(crc32c_update(crc32c(b"1234"), b"56789"), 0xE306_9283);
    }

    #[test]
    fn every_record_variant_round_trips() {
        for record in sample_records() {
            let bytes = encoded(&record);
            assert_eq!(decode_record(&bytes), Ok(record));
        }
    }

    #[test]
    fn golden_bytes_are_little_endian() {
        let record = Record::RosterDelete {
            user: "al".into(),
            ver: 0x0102_0304_0506_0708,
            jid: "é".into(),
        };
        assert_eq!(
            encoded(&record),
            [
                4, // tag
                2, 0, 0, 0, b'a', b'l', // user
                8, 7, 6, 5, 4, 3, 2, 1, // ver
                2, 0, 0, 0, 0xC3, 0xA9, // jid
            ]
        );
        let record = Record::PendingInSet {
            user: "u".into(),
            jid: String::new(),
            status: Some("s".into()),
        };
        assert_eq!(
            encoded(&record),
            [5, 1, 0, 0, 0, b'u', 0, 0, 0, 0, 1, 1, 0, 0, 0, b's']
        );
        let record = Record::UserSet {
            user: "u".into(),
            credentials: Credentials {
                salt: vec![0xAA],
                iterations: 0x0001_0203,
                ..creds(0)
            },
        };
        let bytes = encoded(&record);
        assert_eq!(
            bytes.get(..15),
            Some(&[1, 1, 0, 0, 0, b'u', 1, 0, 0, 0, 0xAA, 3, 2, 1, 0][..])
        );
        assert_eq!(bytes.len(), 15 + 20 + 20 + 32 + 32);
    }

    #[test]
    fn golden_frame_and_headers() {
        let mut out = Vec::new();
        let records = [Record::UserDelete { user: "a".into() }];
        assert_eq!(encode_frames(&records, &mut out), Ok(1));
        let payload = [6, 0, 0, 0, 2, 1, 0, 0, 0, b'a'];
        let mut crc_input = vec![10, 0, 0, 0];
        crc_input.extend_from_slice(&payload);
        let crc = crc32c(&crc_input).to_le_bytes();
        let mut expected = vec![10, 0, 0, 0];
        expected.extend_from_slice(&crc);
        expected.extend_from_slice(&payload);
        assert_eq!(out, expected);

        let header = LogHeader {
            generation: 0x0102_0304_0506_0708,
        }
        .encode();
        assert_eq!(
            header.get(..20),
            Some(&b"XMPPDLOG\x02\x00\x00\x00\x08\x07\x06\x05\x04\x03\x02\x01"[..])
        );
        assert_eq!(
            header.get(20..),
            Some(&crc32c(&header[..20]).to_le_bytes()[..])
        );
        let snapshot = SnapshotHeader {
            generation: 3,
            records: 0x0A0B,
        }
        .encode();
        assert_eq!(snapshot.get(..12), Some(&b"XMPPDSNP\x02\x00\x00\x00"[..]));
        assert_eq!(
            snapshot.get(20..28),
            Some(&[0x0B, 0x0A, 0, 0, 0, 0, 0, 0][..])
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for record in sample_records() {
            let bytes = encoded(&record);
            for cut in 0..bytes.len() {
                let prefix = bytes.get(..cut).unwrap_or(&[]);
                assert!(decode_record(prefix).is_err(), "{record:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encoded(&Record::UserDelete { user: "a".into() });
        bytes.push(0);
        assert_eq!(
            decode_record(&bytes),
            Err(DecodeError::TrailingBytes { offset: 6 })
        );
    }

    #[test]
    fn every_bit_flip_decodes_or_fails_without_panicking() {
        // Flips inside strings can yield another valid record: that is what the frame CRC
        // is for (see `every_bit_flip_in_a_frame_is_detected`). Here: no panic, and no
        // success that claims bytes it did not consume.
        for record in sample_records() {
            let bytes = encoded(&record);
            for i in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                if let Some(b) = damaged.get_mut(i / 8) {
                    *b ^= 1 << (i % 8);
                }
                if let Ok(other) = decode_record(&damaged) {
                    assert_eq!(encoded(&other), damaged);
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_in_a_frame_is_detected() {
        let mut frame = Vec::new();
        assert_eq!(encode_frames(&sample_records(), &mut frame), Ok(1));
        let check = |bytes: &[u8]| -> bool {
            let header: [u8; 8] = match bytes.get(..8).and_then(|h| h.try_into().ok()) {
                Some(h) => h,
                None => return false,
            };
            let header = FrameHeader::parse(header);
            match header.payload_len() {
                Some(n) if bytes.len() == 8 + n => header.matches(&bytes[8..]),
                _ => false,
            }
        };
        assert!(check(&frame));
        for i in 0..frame.len() * 8 {
            let mut damaged = frame.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(!check(&damaged), "flip of bit {i} not detected");
        }
    }

    #[test]
    fn unknown_tag_is_named() {
        assert_eq!(
            decode_record(&[9, 0, 0, 0, 0]),
            Err(DecodeError::UnknownTag { offset: 0, tag: 9 })
        );
        assert_eq!(
            decode_record(&[0]),
            Err(DecodeError::UnknownTag { offset: 0, tag: 0 })
        );
        assert_eq!(
            decode_record(&[9]).map_err(|e| e.to_string()),
            Err("unknown record tag 9".to_string())
        );
    }

    #[test]
    fn invalid_utf8_and_flags_are_refused() {
        assert_eq!(
            decode_record(&[2, 1, 0, 0, 0, 0xFF]),
            Err(DecodeError::InvalidUtf8 { offset: 1 })
        );
        // PendingInSet with option flag 2.
        assert_eq!(
            decode_record(&[5, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
            Err(DecodeError::InvalidValue {
                offset: 9,
                what: "option flag",
                value: 2
            })
        );
    }

    #[test]
    fn huge_lengths_are_refused_before_allocating() {
        assert_eq!(
            decode_record(&[2, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(DecodeError::TooLong {
                offset: 1,
                len: u64::from(u32::MAX),
                max: MAX_FIELD_BYTES as u64
            })
        );
        // A roster item claiming the maximum group count with no bytes behind it.
        let mut bytes = vec![3, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&(MAX_LIST_ITEMS as u32).to_le_bytes());
        assert!(matches!(
            decode_record(&bytes),
            Err(DecodeError::Truncated { .. })
        ));
        bytes.truncate(bytes.len() - 4);
        bytes.extend_from_slice(&(MAX_LIST_ITEMS as u32 + 1).to_le_bytes());
        assert!(matches!(
            decode_record(&bytes),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn oversized_fields_are_not_encoded() {
        let mut out = vec![0xEE];
        let big = Record::UserDelete {
            user: "x".repeat(MAX_FIELD_BYTES + 1),
        };
        assert_eq!(
            encode_record(&big, &mut out),
            Err(EncodeError::FieldTooLong {
                len: MAX_FIELD_BYTES + 1
            })
        );
        assert_eq!(out, [0xEE]);
        let at_limit = Record::UserDelete {
            user: "x".repeat(MAX_FIELD_BYTES),
        };
        let bytes = encoded(&at_limit);
        assert_eq!(decode_record(&bytes), Ok(at_limit));
        let many = Record::RosterSet {
            user: "a".into(),
            ver: 0,
            jid: "b".into(),
            item: RosterItem {
                groups: vec![String::new(); MAX_LIST_ITEMS + 1],
                ..RosterItem::default()
            },
        };
        assert_eq!(
            encode_frames(&[many], &mut out),
            Err(EncodeError::TooManyItems {
                count: MAX_LIST_ITEMS + 1
            })
        );
        assert_eq!(out, [0xEE]);
    }

    #[test]
    fn oversized_records_are_not_encoded() {
        // 16 groups of 64 KiB: every field is within its cap, the record is over 1 MiB.
        let record = Record::RosterSet {
            user: "a".into(),
            ver: 0,
            jid: "b".into(),
            item: RosterItem {
                groups: vec!["g".repeat(MAX_FIELD_BYTES); 16],
                ..RosterItem::default()
            },
        };
        let mut out = Vec::new();
        assert!(matches!(
            encode_record(&record, &mut out),
            Err(EncodeError::RecordTooLong { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn large_batches_split_into_frames_of_whole_records() {
        // 15 groups of 64 KiB: just under 1 MiB per record, so two never share a frame.
        let record = Record::RosterSet {
            user: "a".into(),
            ver: 0,
            jid: "b".into(),
            item: RosterItem {
                groups: vec!["g".repeat(MAX_FIELD_BYTES); 15],
                ..RosterItem::default()
            },
        };
        let small = Record::UserDelete { user: "z".into() };
        // [small, big] [big] [big, small]
        let records = [small.clone(), record.clone(), record.clone(), record, small];
        let mut out = Vec::new();
        assert_eq!(encode_frames(&records, &mut out), Ok(3));
        let mut decoded = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let header = FrameHeader::parse(rest[..8].try_into().unwrap_or([0; 8]));
            let n = header.payload_len().unwrap_or(usize::MAX);
            let payload = &rest[8..8 + n];
            assert!(header.matches(payload));
            assert_eq!(
                decode_frame_payload(payload, |r| decoded.push(r)).map(|c| c > 0),
                Ok(true)
            );
            rest = &rest[8 + n..];
        }
        assert_eq!(decoded, records);
    }

    #[test]
    fn written_payloads_are_tiled_and_shifted_ones_are_not() {
        let mut frame = Vec::new();
        assert_eq!(encode_frames(&sample_records(), &mut frame), Ok(1));
        let payload = &frame[FRAME_HEADER_BYTES..];
        assert!(payload_is_tiled(payload));
        assert!(!payload_is_tiled(&payload[1..]));
        assert!(!payload_is_tiled(&payload[..payload.len() - 1]));
        assert!(!payload_is_tiled(&[0, 0, 0, 0, 1]));
        assert!(payload_is_tiled(&[]));
    }

    #[test]
    fn frame_payload_errors_carry_payload_offsets() {
        let mut payload = vec![6, 0, 0, 0, 2, 1, 0, 0, 0, b'a'];
        payload.extend_from_slice(&[2, 0, 0, 0, 9, 0]);
        let mut seen = Vec::new();
        assert_eq!(
            decode_frame_payload(&payload, |r| seen.push(r)),
            Err(DecodeError::UnknownTag { offset: 14, tag: 9 })
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(
            decode_frame_payload(&[9, 0, 0, 0, 2], |_| ()),
            Err(DecodeError::TooLong {
                offset: 0,
                len: 9,
                max: 1
            })
        );
    }

    #[test]
    fn headers_round_trip_and_refuse_damage() {
        let log = LogHeader { generation: 7 };
        let bytes = log.encode();
        assert_eq!(LogHeader::decode(&bytes), Ok(log));
        let snap = SnapshotHeader {
            generation: 9,
            records: 12,
        };
        let sbytes = snap.encode();
        assert_eq!(SnapshotHeader::decode(&sbytes), Ok(snap));
        assert_eq!(SnapshotHeader::decode(&bytes), Err(HeaderError::BadMagic));
        assert_eq!(
            LogHeader::decode(&bytes[..10]),
            Err(HeaderError::Truncated { len: 10 })
        );
        let mut newer = bytes;
        newer[8] = 3;
        assert_eq!(
            LogHeader::decode(&newer),
            Err(HeaderError::UnsupportedVersion { version: 3 })
        );
        for i in 12..bytes.len() {
            let mut damaged = bytes;
            damaged[i] ^= 0x10;
            assert_eq!(
                LogHeader::decode(&damaged),
                Err(HeaderError::BadChecksum { offset: 20 })
            );
        }
    }
}
