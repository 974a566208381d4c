//! Byte layout of segment summaries: what a closed segment contributes to the index, written
//! once when the segment is closed, so that opening the archive reads a few hundred bytes
//! per segment instead of the segment. Pure (bytes in, bytes out), like [`super::format`].
//!
//! # Layout (summary format version 1), file `seg-NNNNNNNN.idx`
//! Little-endian, strings `[u32 len][UTF-8]`, as in segments.
//!
//! - **Header** (64 bytes): `"XMPPDAIX" [u32 version][u64 seq][u64 first_id]
//!   [u64 segment_len][u64 next_id][u64 last_frame][8 bytes: last frame header][u32 crc32c]`,
//!   the CRC covering the bytes before it. `seq` and `first_id` repeat the segment's header;
//!   `segment_len` is its file length; `last_frame` the offset of its last frame (0 if it
//!   has none) and the 8 bytes its header (`[u32 len][u32 crc32c]`) copied: what the loader
//!   compares with the segment (a length and two small reads) before trusting the summary.
//!   `next_id` is the store's next id once the segment was closed.
//! - **Frames** as in segments (`[u32 len][u32 crc32c][payload]`, payload = `[u32 len][record]`
//!   runs), each under [`SUMMARY_FRAME_BYTES`] of payload so that one read window holds one.
//! - **Records**:
//!   - `1` account: `[str account][u8 kinds][u64 deleted_below][u64 delivered_up_to]`, then
//!     if `kinds` has [`kind::ENTRY`] the account's [`SegEntry`] for the segment:
//!     `[u64 first_id][u64 last_id][u64 min_ts][u64 max_ts][u64 last_offline_id][u64 start]
//!     [u64 end][u64 bloom_lo][u64 bloom_hi][u64 n_archived][u64 n_offline]`.
//!     [`kind::DELIVERED`] / [`kind::DELETED`]: the segment holds that account's
//!     `OfflineDelivered` (highest `up_to` given) / `AccountDeleted` (highest `below_id`
//!     given; the field is 0 without the bit, and so is `delivered_up_to`).
//!   - `2` offline: `[u64 frame]` then `([str account][u64 id])*` to the end of the record:
//!     OFFLINE messages in the frame at `frame` that no marker in the segment covers (the
//!     candidates for pending offline delivery; a marker never covers a message written
//!     after it, so later segments may cover them, earlier ones cannot).
//!   - `3` end: `[u64 accounts][u64 offline_items]`, the numbers of the above.
//!
//!   Account records come first, names strictly ascending; then offline records, ids
//!   strictly ascending; then exactly one end record, the last record of the file.
//!
//! The summary has its own version: summaries are derived data, so one this build does not
//! read (older or newer) is not an error: the segment is scanned and the summary rewritten.

use std::fmt;

use super::format::{EncodeError, MAX_ACCOUNT_BYTES, SEGMENT_HEADER_BYTES};
use super::index::SegEntry;
use crate::storage::codec::{
    DecodeError, FRAME_HEADER_BYTES, HeaderError, HeaderReader, HeaderWriter, MAX_RECORD_BYTES,
    Reader, put_u32_at, seal_frame,
};

pub const SUMMARY_FORMAT_VERSION: u32 = 1;
pub const SUMMARY_MAGIC: [u8; 8] = *b"XMPPDAIX";
pub const SUMMARY_HEADER_BYTES: usize = 8 + 4 + 5 * 8 + 8 + 4;

/// A frame is sealed once its payload reaches this; with the largest record (an account
/// record with a 1023-byte name, or an offline record at its cap) it stays under the
/// 64 KiB read window, so reading a summary never needs more than one window.
pub const SUMMARY_FRAME_BYTES: usize = 56 * 1024;

/// An offline record is closed once it reaches this (another is started for the same frame).
const OFFLINE_RECORD_BYTES: usize = 4 * 1024;

/// The fewest bytes a segment spends on a record naming an account, besides the name: an
/// `OfflineDelivered` (`[u32 len]`, tag, `[u32 len]`, `u64`). Each account a summary lists
/// has at least one such record in its segment.
pub const MIN_SEGMENT_RECORD_BYTES: u64 = 4 + 1 + 4 + 8;

/// The fewest bytes a message record takes in a segment, besides its account name.
pub const MIN_SEGMENT_MESSAGE_BYTES: u64 = 4 + 1 + 8 + 8 + 1 + 3 * 4;

/// A summary longer than this multiple of its segment's frame bytes (plus the fixed parts)
/// cannot be genuine: an account record takes under 7 times the segment bytes it stands
/// for, an offline item less than the message it stands for. Refused before it is read.
pub const MAX_SUMMARY_BYTES_PER_SEGMENT_BYTE: u64 = 8;

pub fn max_summary_bytes(segment_len: u64) -> u64 {
    let frames = segment_len.saturating_sub(SEGMENT_HEADER_BYTES as u64);
    frames
        .saturating_mul(MAX_SUMMARY_BYTES_PER_SEGMENT_BYTE)
        .saturating_add((SUMMARY_HEADER_BYTES + 2 * FRAME_HEADER_BYTES + 64) as u64)
}

pub mod tag {
    pub const ACCOUNT: u8 = 1;
    pub const OFFLINE: u8 = 2;
    pub const END: u8 = 3;
}

/// What an account record says about the segment.
pub mod kind {
    pub const DELIVERED: u8 = 1;
    pub const DELETED: u8 = 2;
    pub const ENTRY: u8 = 4;
    pub const ALL: u8 = DELIVERED | DELETED | ENTRY;
}

// ---------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SummaryHeader {
    pub seq: u64,
    pub first_id: u64,
    pub segment_len: u64,
    pub next_id: u64,
    pub last_frame: u64,
    pub last_frame_header: [u8; FRAME_HEADER_BYTES],
}

impl SummaryHeader {
    pub fn encode(&self) -> [u8; SUMMARY_HEADER_BYTES] {
        let mut out = [0; SUMMARY_HEADER_BYTES];
        let mut w = HeaderWriter::new(&mut out, SUMMARY_MAGIC, SUMMARY_FORMAT_VERSION);
        for field in [
            self.seq,
            self.first_id,
            self.segment_len,
            self.next_id,
            self.last_frame,
        ] {
            w.put(&field.to_le_bytes());
        }
        w.put(&self.last_frame_header);
        w.finish();
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SummaryHeader, HeaderError> {
        let versions = SUMMARY_FORMAT_VERSION..=SUMMARY_FORMAT_VERSION;
        let mut r = HeaderReader::new(bytes, SUMMARY_MAGIC, versions, SUMMARY_HEADER_BYTES)?;
        let header = SummaryHeader {
            seq: r.u64(),
            first_id: r.u64(),
            segment_len: r.u64(),
            next_id: r.u64(),
            last_frame: r.u64(),
            last_frame_header: r.u64().to_le_bytes(),
        };
        r.check()?;
        Ok(header)
    }

    /// Whether the fields agree with each other (not yet with the segment).
    fn consistent(&self) -> Result<(), Invalid> {
        let no_frame = self.segment_len == SEGMENT_HEADER_BYTES as u64
            && self.last_frame == 0
            && self.last_frame_header == [0; FRAME_HEADER_BYTES];
        let frame_len = u64::from(u32::from_le_bytes(
            self.last_frame_header
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 4]),
        ));
        let last_frame_ends_the_file = self.last_frame >= SEGMENT_HEADER_BYTES as u64
            && self
                .last_frame
                .checked_add(FRAME_HEADER_BYTES as u64 + frame_len)
                == Some(self.segment_len);
        if !(no_frame || last_frame_ends_the_file) {
            return Err(Invalid("the last frame does not end the segment"));
        }
        if self.next_id < self.first_id {
            return Err(Invalid("next id below the first id"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// One account's part in a segment (see the layout). The entry's `seq` is the summary's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountSummary<'a> {
    pub account: &'a str,
    pub kinds: u8,
    pub deleted_below: u64,
    pub delivered_up_to: u64,
    pub entry: Option<SegEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryRecord<'a> {
    Account(AccountSummary<'a>),
    /// `items` is the rest of the record, `([str account][u64 id])*`, checked by the
    /// decoder: read it with [`offline_items`].
    Offline {
        frame: u64,
        items: &'a [u8],
    },
    End {
        accounts: u64,
        offline_items: u64,
    },
}

pub fn encode_account(a: &AccountSummary<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if a.account.len() > MAX_ACCOUNT_BYTES {
        return Err(EncodeError::FieldTooLong {
            field: "account",
            len: a.account.len(),
            max: MAX_ACCOUNT_BYTES,
        });
    }
    out.push(tag::ACCOUNT);
    put_str(out, a.account);
    let kinds = (a.kinds & !kind::ENTRY) | if a.entry.is_some() { kind::ENTRY } else { 0 };
    out.push(kinds);
    out.extend_from_slice(&a.deleted_below.to_le_bytes());
    out.extend_from_slice(&a.delivered_up_to.to_le_bytes());
    if let Some(e) = &a.entry {
        for field in [
            e.first_id,
            e.last_id,
            e.min_ts,
            e.max_ts,
            e.last_offline_id,
            e.start,
            e.end,
            e.with_bloom[0],
            e.with_bloom[1],
            u64::from(e.n_archived),
            u64::from(e.n_offline),
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Callers checked the length against a cap far below u32::MAX.
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_offline_item(out: &mut Vec<u8>, account: &str, id: u64) {
    put_str(out, account);
    out.extend_from_slice(&id.to_le_bytes());
}

/// Decodes exactly one record of a summary of segment `seq`.
pub fn decode_record(bytes: &[u8], seq: u64) -> Result<SummaryRecord<'_>, DecodeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLong {
            offset: 0,
            len: bytes.len() as u64,
            max: MAX_RECORD_BYTES as u64,
        });
    }
    let mut r = Reader::new(bytes, 0);
    let record = match r.u8()? {
        tag::ACCOUNT => SummaryRecord::Account(decode_account(&mut r, seq)?),
        tag::OFFLINE => {
            let frame = r.u64()?;
            let items = bytes.get(r.pos..).unwrap_or(&[]);
            let start = r.pos;
            for item in offline_items(items) {
                item.map_err(|e| e.shifted(start))?;
            }
            r.pos = bytes.len();
            SummaryRecord::Offline { frame, items }
        }
        tag::END => SummaryRecord::End {
            accounts: r.u64()?,
            offline_items: r.u64()?,
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

fn decode_account<'a>(r: &mut Reader<'a>, seq: u64) -> Result<AccountSummary<'a>, DecodeError> {
    let account = r.str(MAX_ACCOUNT_BYTES)?;
    let kinds_offset = r.pos;
    let kinds = r.u8()?;
    if kinds & !kind::ALL != 0 || kinds == 0 {
        return Err(DecodeError::InvalidValue {
            offset: kinds_offset,
            what: "summary account kinds",
            value: kinds,
        });
    }
    let deleted_below = r.u64()?;
    let delivered_up_to = r.u64()?;
    let entry = if kinds & kind::ENTRY != 0 {
        let mut field = || r.u64();
        let (first_id, last_id, min_ts, max_ts, last_offline_id) =
            (field()?, field()?, field()?, field()?, field()?);
        let (start, end, bloom_lo, bloom_hi) = (field()?, field()?, field()?, field()?);
        let count_offset = r.pos;
        let count = |n: u64, at: usize| {
            u32::try_from(n).map_err(|_| DecodeError::TooLong {
                offset: at,
                len: n,
                max: u64::from(u32::MAX),
            })
        };
        let n_archived = count(r.u64()?, count_offset)?;
        let n_offline = count(r.u64()?, count_offset + 8)?;
        Some(SegEntry {
            seq,
            first_id,
            last_id,
            min_ts,
            max_ts,
            last_offline_id,
            start,
            end,
            with_bloom: [bloom_lo, bloom_hi],
            n_archived,
            n_offline,
        })
    } else {
        None
    };
    Ok(AccountSummary {
        account,
        kinds: kinds & !kind::ENTRY,
        deleted_below,
        delivered_up_to,
        entry,
    })
}

/// The `(account, id)` items of an offline record. Stops after the first error.
pub fn offline_items(bytes: &[u8]) -> OfflineItems<'_> {
    OfflineItems {
        bytes,
        pos: 0,
        failed: false,
    }
}

pub struct OfflineItems<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for OfflineItems<'a> {
    type Item = Result<(&'a str, u64), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let mut r = Reader::new(self.bytes, self.pos);
        let item = r.str(MAX_ACCOUNT_BYTES).and_then(|a| Ok((a, r.u64()?)));
        self.pos = r.pos;
        self.failed = item.is_err();
        Some(item)
    }
}

// ---------------------------------------------------------------------------------------
// Encoding a whole summary, a frame at a time
// ---------------------------------------------------------------------------------------

/// Builds a summary in frames under [`SUMMARY_FRAME_BYTES`]; the caller writes out the
/// sealed frames as they fill ([`SummaryEncoder::sealed`]), so that the buffer stays about
/// one frame however many accounts and offline messages the segment holds.
pub struct SummaryEncoder {
    out: Vec<u8>,
    /// Where the open frame starts in `out`; everything before it is sealed.
    frame_start: usize,
    /// The open offline record: its start in `out` and its frame.
    offline: Option<(usize, u64)>,
    accounts: u64,
    offline_items: u64,
}

impl SummaryEncoder {
    pub fn new(header: &SummaryHeader) -> SummaryEncoder {
        let mut out = header.encode().to_vec();
        let frame_start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        SummaryEncoder {
            out,
            frame_start,
            offline: None,
            accounts: 0,
            offline_items: 0,
        }
    }

    /// Adds an account record; all must come before the first offline item.
    pub fn account(&mut self, a: &AccountSummary<'_>) -> Result<(), EncodeError> {
        self.close_offline_record();
        let record_start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        if let Err(e) = encode_account(a, &mut self.out) {
            self.out.truncate(record_start);
            return Err(e);
        }
        self.end_record(record_start);
        self.accounts += 1;
        Ok(())
    }

    /// Adds an offline item; items must come in id order (so in frame order).
    pub fn offline_item(&mut self, frame: u64, account: &str, id: u64) -> Result<(), EncodeError> {
        if account.len() > MAX_ACCOUNT_BYTES {
            return Err(EncodeError::FieldTooLong {
                field: "account",
                len: account.len(),
                max: MAX_ACCOUNT_BYTES,
            });
        }
        match self.offline {
            Some((start, f)) if f == frame && self.out.len() - start < OFFLINE_RECORD_BYTES => {}
            _ => {
                self.close_offline_record();
                self.offline = Some((self.out.len(), frame));
                self.out.extend_from_slice(&[0; 4]);
                self.out.push(tag::OFFLINE);
                self.out.extend_from_slice(&frame.to_le_bytes());
            }
        }
        put_offline_item(&mut self.out, account, id);
        self.offline_items += 1;
        Ok(())
    }

    fn close_offline_record(&mut self) {
        if let Some((start, _)) = self.offline.take() {
            self.end_record(start);
        }
    }

    /// Fills in the length of the record at `record_start`, and seals the frame if full.
    fn end_record(&mut self, record_start: usize) {
        // Cannot truncate: records are capped far below u32::MAX.
        let len = self.out.len() - record_start - 4;
        put_u32_at(&mut self.out, record_start, len as u32);
        if self.out.len() - self.frame_start - FRAME_HEADER_BYTES >= SUMMARY_FRAME_BYTES {
            self.seal_and_open();
        }
    }

    fn seal_and_open(&mut self) {
        seal_frame(&mut self.out, self.frame_start);
        self.frame_start = self.out.len();
        self.out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    }

    /// The bytes ready to be written (header and sealed frames).
    pub fn sealed(&self) -> &[u8] {
        self.out.get(..self.frame_start).unwrap_or(&[])
    }

    /// Forgets the bytes [`SummaryEncoder::sealed`] returned (they were written).
    pub fn consume_sealed(&mut self) {
        let consumed = self.frame_start;
        self.out.drain(..consumed);
        self.frame_start = 0;
        if let Some((start, _)) = &mut self.offline {
            *start -= consumed;
        }
    }

    /// Adds the end record and returns the rest of the summary.
    pub fn finish(mut self) -> Vec<u8> {
        self.close_offline_record();
        let record_start = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        self.out.push(tag::END);
        self.out.extend_from_slice(&self.accounts.to_le_bytes());
        self.out
            .extend_from_slice(&self.offline_items.to_le_bytes());
        let len = self.out.len() - record_start - 4;
        put_u32_at(&mut self.out, record_start, len as u32);
        seal_frame(&mut self.out, self.frame_start);
        self.out
    }
}

// ---------------------------------------------------------------------------------------
// Checking a whole summary before anything of it is used
// ---------------------------------------------------------------------------------------

/// Why a summary is not used (it is then rebuilt from its segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Accounts,
    Offline,
    Ended,
}

/// Checks the records of a summary in order, so that a summary is applied only once all
/// of it is known good: what it says must be something its segment could hold.
pub struct SummaryChecker {
    header: SummaryHeader,
    phase: Phase,
    previous_account: String,
    previous_id: u64,
    accounts: u64,
    offline_items: u64,
    /// Segment bytes the accounts and offline items listed so far stand for at least.
    account_bytes: u64,
    item_bytes: u64,
}

impl SummaryChecker {
    pub fn new(header: SummaryHeader) -> Result<SummaryChecker, Invalid> {
        header.consistent()?;
        Ok(SummaryChecker {
            header,
            phase: Phase::Accounts,
            previous_account: String::new(),
            previous_id: 0,
            accounts: 0,
            offline_items: 0,
            account_bytes: 0,
            item_bytes: 0,
        })
    }

    fn frame_bytes(&self) -> u64 {
        self.header
            .segment_len
            .saturating_sub(SEGMENT_HEADER_BYTES as u64)
    }

    pub fn check(&mut self, record: &SummaryRecord<'_>) -> Result<(), Invalid> {
        match (self.phase, record) {
            (Phase::Accounts, SummaryRecord::Account(a)) => self.check_account(a),
            (Phase::Accounts | Phase::Offline, SummaryRecord::Offline { frame, items }) => {
                self.phase = Phase::Offline;
                self.check_offline(*frame, items)
            }
            (
                Phase::Accounts | Phase::Offline,
                SummaryRecord::End {
                    accounts,
                    offline_items,
                },
            ) => {
                self.phase = Phase::Ended;
                if (*accounts, *offline_items) == (self.accounts, self.offline_items) {
                    Ok(())
                } else {
                    Err(Invalid("the end record's counts differ from the records"))
                }
            }
            (Phase::Ended, _) => Err(Invalid("records after the end record")),
            (Phase::Offline, SummaryRecord::Account(_)) => {
                Err(Invalid("an account record after the offline records"))
            }
        }
    }

    /// The summary ended: the end record must have been the last.
    pub fn finish(&self) -> Result<(), Invalid> {
        if self.phase == Phase::Ended {
            Ok(())
        } else {
            Err(Invalid("no end record"))
        }
    }

    fn check_account(&mut self, a: &AccountSummary<'_>) -> Result<(), Invalid> {
        let h = &self.header;
        if self.accounts > 0 && a.account.as_bytes() <= self.previous_account.as_bytes() {
            return Err(Invalid("account names out of order"));
        }
        self.previous_account.clear();
        self.previous_account.push_str(a.account);
        self.accounts += 1;
        self.account_bytes = self
            .account_bytes
            .saturating_add(MIN_SEGMENT_RECORD_BYTES + a.account.len() as u64);
        if self.account_bytes > self.frame_bytes() {
            return Err(Invalid("more accounts than the segment can hold"));
        }
        let deleted = a.kinds & kind::DELETED != 0;
        let delivered = a.kinds & kind::DELIVERED != 0;
        if a.kinds == 0 && a.entry.is_none() {
            return Err(Invalid("an account record saying nothing"));
        }
        if deleted && !(h.first_id..=h.next_id).contains(&a.deleted_below)
            || !deleted && a.deleted_below != 0
        {
            return Err(Invalid("deletion id out of range"));
        }
        if delivered && a.delivered_up_to >= h.next_id || !delivered && a.delivered_up_to != 0 {
            return Err(Invalid("delivery id out of range"));
        }
        match &a.entry {
            Some(e) => self.check_entry(e, a.deleted_below),
            None => Ok(()),
        }
    }

    fn check_entry(&self, e: &SegEntry, deleted_below: u64) -> Result<(), Invalid> {
        let h = &self.header;
        let ids_ok = e.first_id >= h.first_id.max(deleted_below)
            && e.first_id <= e.last_id
            && e.last_id < h.next_id;
        let span = e.last_id - e.first_id.min(e.last_id);
        let counts_ok = u64::from(e.n_archived) <= span.saturating_add(1)
            && u64::from(e.n_offline) <= span.saturating_add(1);
        let offline_ok = if e.n_offline == 0 {
            e.last_offline_id == 0
        } else {
            (e.first_id..=e.last_id).contains(&e.last_offline_id)
        };
        let bytes_ok =
            e.start >= SEGMENT_HEADER_BYTES as u64 && e.start < e.end && e.end <= h.segment_len;
        if ids_ok && counts_ok && offline_ok && bytes_ok && e.min_ts <= e.max_ts {
            Ok(())
        } else {
            Err(Invalid("an entry out of range"))
        }
    }

    fn check_offline(&mut self, frame: u64, items: &[u8]) -> Result<(), Invalid> {
        let h = self.header;
        if frame < SEGMENT_HEADER_BYTES as u64 || frame >= h.segment_len {
            return Err(Invalid("an offline frame outside the segment"));
        }
        let mut any = false;
        for item in offline_items(items) {
            let (account, id) = item.map_err(|_| Invalid("an offline item does not decode"))?;
            any = true;
            if id < h.first_id || id >= h.next_id || id <= self.previous_id {
                return Err(Invalid("offline ids out of range or order"));
            }
            self.previous_id = id;
            self.offline_items += 1;
            self.item_bytes = self
                .item_bytes
                .saturating_add(MIN_SEGMENT_MESSAGE_BYTES + account.len() as u64);
            if self.item_bytes > self.frame_bytes() {
                return Err(Invalid("more offline messages than the segment can hold"));
            }
        }
        if any {
            Ok(())
        } else {
            Err(Invalid("an empty offline record"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec::{self, FrameHeader};

    fn header() -> SummaryHeader {
        SummaryHeader {
            seq: 7,
            first_id: 100,
            segment_len: 10_000,
            next_id: 200,
            last_frame: 8_992,
            last_frame_header: [0xE8, 0x03, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD],
        }
    }

    fn entry() -> SegEntry {
        SegEntry {
            seq: 7,
            first_id: 100,
            last_id: 150,
            min_ts: 5,
            max_ts: 9,
            last_offline_id: 140,
            start: 32,
            end: 9_000,
            with_bloom: [1, 2],
            n_archived: 40,
            n_offline: 3,
        }
    }

    fn alice() -> AccountSummary<'static> {
        AccountSummary {
            account: "alice",
            kinds: kind::DELIVERED,
            deleted_below: 0,
            delivered_up_to: 120,
            entry: Some(entry()),
        }
    }

    /// The records of a whole summary, after its header; panics on a bad frame.
    fn records(bytes: &[u8], seq: u64) -> Vec<SummaryRecord<'_>> {
        let mut out = Vec::new();
        let mut pos = SUMMARY_HEADER_BYTES;
        while pos < bytes.len() {
            let h = FrameHeader::parse(bytes[pos..pos + 8].try_into().unwrap_or([0; 8]));
            let len = h.payload_len().unwrap_or(0);
            let payload = &bytes[pos + 8..pos + 8 + len];
            assert!(h.matches(payload), "frame at {pos}");
            let mut r = Reader::new(payload, 0);
            while r.pos < payload.len() {
                let (_, record) = r.length_prefixed_record().unwrap_or((0, &[]));
                out.push(decode_record(record, seq).unwrap_or(SummaryRecord::End {
                    accounts: u64::MAX,
                    offline_items: u64::MAX,
                }));
            }
            pos += 8 + len;
        }
        out
    }

    #[test]
    fn golden_header_and_records() {
        let h = header().encode();
        let mut expected = b"XMPPDAIX\x01\x00\x00\x00".to_vec();
        for v in [7u64, 100, 10_000, 200, 8_992] {
            expected.extend_from_slice(&v.to_le_bytes());
        }
        expected.extend_from_slice(&[0xE8, 0x03, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD]);
        let crc = codec::crc32c(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(h.to_vec(), expected);
        assert_eq!(SummaryHeader::decode(&h), Ok(header()));

        let mut out = Vec::new();
        let marker_only = AccountSummary {
            account: "b",
            kinds: kind::DELETED,
            deleted_below: 0x0102,
            delivered_up_to: 0,
            entry: None,
        };
        assert_eq!(encode_account(&marker_only, &mut out), Ok(()));
        assert_eq!(
            out,
            [
                1, // tag
                1, 0, 0, 0, b'b', // account
                2,    // kinds
                2, 1, 0, 0, 0, 0, 0, 0, // deleted_below
                0, 0, 0, 0, 0, 0, 0, 0, // delivered_up_to
            ]
        );
        out.clear();
        assert_eq!(encode_account(&alice(), &mut out), Ok(()));
        assert_eq!(out.len(), 1 + 4 + 5 + 1 + 16 + 11 * 8);
        assert_eq!(out[10], kind::DELIVERED | kind::ENTRY);
        assert_eq!(&out[27..35], &100u64.to_le_bytes());
        assert_eq!(&out[out.len() - 8..], &3u64.to_le_bytes());

        let mut enc = SummaryEncoder::new(&header());
        assert_eq!(enc.account(&marker_only), Ok(()));
        assert_eq!(enc.offline_item(500, "a", 0x0A0B), Ok(()));
        let bytes = enc.finish();
        let mut payload = Vec::new();
        payload.extend_from_slice(&23u32.to_le_bytes());
        payload.extend_from_slice(&[
            1, 1, 0, 0, 0, b'b', 2, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        payload.extend_from_slice(&22u32.to_le_bytes());
        payload.extend_from_slice(&[
            2, // tag
            0xF4, 1, 0, 0, 0, 0, 0, 0, // frame 500
            1, 0, 0, 0, b'a', // account
            0x0B, 0x0A, 0, 0, 0, 0, 0, 0, // id
        ]);
        payload.extend_from_slice(&17u32.to_le_bytes());
        payload.extend_from_slice(&[3, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let len = (payload.len() as u32).to_le_bytes();
        let mut expected = header().encode().to_vec();
        expected.extend_from_slice(&len);
        expected
            .extend_from_slice(&codec::crc32c_update(codec::crc32c(&len), &payload).to_le_bytes());
        expected.extend_from_slice(&payload);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn summaries_round_trip_in_frames_under_the_window() {
        let names: Vec<String> = (0..300)
            .map(|i| format!("{i:04}{}", "x".repeat(MAX_ACCOUNT_BYTES - 4)))
            .collect();
        let mut h = header();
        h.segment_len = 1 << 20;
        h.next_id = 100_000;
        h.last_frame = h.segment_len - 1000;
        h.last_frame_header = [0xE0, 0x03, 0, 0, 1, 2, 3, 4];
        let mut enc = SummaryEncoder::new(&h);
        let mut written = Vec::new();
        for name in &names {
            let a = AccountSummary {
                account: name,
                ..alice()
            };
            assert_eq!(enc.account(&a), Ok(()));
            if enc.sealed().len() > 32 * 1024 {
                written.extend_from_slice(enc.sealed());
                enc.consume_sealed();
            }
        }
        for id in 100..3100u64 {
            assert_eq!(enc.offline_item(32 + id / 10 * 64, "bob", id), Ok(()));
        }
        written.extend_from_slice(&enc.finish());
        let mut pos = SUMMARY_HEADER_BYTES;
        let mut frames = 0;
        while pos < written.len() {
            let fh = FrameHeader::parse(written[pos..pos + 8].try_into().unwrap_or([0; 8]));
            let len = fh.payload_len().unwrap_or(usize::MAX);
            assert!(len + 8 <= crate::storage::disk::READ_WINDOW_BYTES, "{len}");
            pos += 8 + len;
            frames += 1;
        }
        assert_eq!(pos, written.len());
        assert!(frames > 5, "{frames}");
        let all = records(&written, 7);
        let mut checker = SummaryChecker::new(h).unwrap_or_else(|e| panic!("{e}"));
        let mut accounts = Vec::new();
        let mut items = Vec::new();
        for r in &all {
            assert_eq!(checker.check(r), Ok(()), "{r:?}");
            match r {
                SummaryRecord::Account(a) => accounts.push(a.account.to_owned()),
                SummaryRecord::Offline { frame, items: i } => {
                    for item in offline_items(i) {
                        let (account, id) = item.unwrap_or(("?", 0));
                        assert_eq!((account, *frame), ("bob", 32 + id / 10 * 64));
                        items.push(id);
                    }
                }
                SummaryRecord::End {
                    accounts,
                    offline_items,
                } => assert_eq!((*accounts, *offline_items), (300, 3000)),
            }
        }
        assert_eq!(checker.finish(), Ok(()));
        assert_eq!(accounts, names);
        assert_eq!(items, (100..3100).collect::<Vec<_>>());
        assert!(matches!(
            all[0],
            SummaryRecord::Account(AccountSummary { entry: Some(e), .. }) if e == entry()
        ));
    }

    #[test]
    fn every_bit_flip_and_truncation_of_a_record_fails_or_decodes_without_panicking() {
        let mut bytes = Vec::new();
        assert_eq!(encode_account(&alice(), &mut bytes), Ok(()));
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut], 7).is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            if let Ok(SummaryRecord::Account(a)) = decode_record(&damaged, 7) {
                let mut again = Vec::new();
                assert_eq!(encode_account(&a, &mut again), Ok(()));
                assert_eq!(again, damaged, "flip {i}: {a:?}");
            }
        }
        let h = header().encode();
        for i in 0..h.len() * 8 {
            let mut damaged = h;
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(SummaryHeader::decode(&damaged).is_err(), "flip {i}");
        }
        let mut newer = h;
        newer[8] = 2;
        assert_eq!(
            SummaryHeader::decode(&newer),
            Err(HeaderError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            decode_record(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0], 7),
            Err(DecodeError::Truncated { offset: 13 })
        );
        assert_eq!(
            decode_record(&[9], 7),
            Err(DecodeError::UnknownTag { offset: 0, tag: 9 })
        );
    }

    #[test]
    fn the_checker_refuses_what_the_segment_cannot_hold() {
        let check = |h: SummaryHeader, records: &[SummaryRecord<'_>]| -> Result<(), Invalid> {
            let mut c = SummaryChecker::new(h)?;
            for r in records {
                c.check(r)?;
            }
            c.finish()
        };
        let end = |accounts, offline_items| SummaryRecord::End {
            accounts,
            offline_items,
        };
        let good = [SummaryRecord::Account(alice()), end(1, 0)];
        assert_eq!(check(header(), &good), Ok(()));
        assert!(check(header(), &[SummaryRecord::Account(alice())]).is_err());
        assert!(check(header(), &[SummaryRecord::Account(alice()), end(2, 0)]).is_err());
        assert!(check(header(), &[good[0], good[0], end(2, 0)]).is_err());
        assert!(check(header(), &[good[0], end(1, 0), end(1, 0)]).is_err());
        let mut bad_header = header();
        bad_header.last_frame = 9_001;
        assert!(check(bad_header, &good).is_err());
        bad_header = header();
        bad_header.next_id = 99;
        assert!(check(bad_header, &good).is_err());
        let with_entry = |f: fn(&mut SegEntry)| {
            let mut e = entry();
            f(&mut e);
            let a = AccountSummary {
                entry: Some(e),
                ..alice()
            };
            check(header(), &[SummaryRecord::Account(a), end(1, 0)])
        };
        assert_eq!(with_entry(|_| {}), Ok(()));
        assert!(with_entry(|e| e.first_id = 99).is_err());
        assert!(with_entry(|e| e.last_id = 200).is_err());
        assert!(with_entry(|e| e.end = 10_001).is_err());
        assert!(with_entry(|e| e.start = 31).is_err());
        assert!(with_entry(|e| e.n_archived = 52).is_err());
        assert!(with_entry(|e| e.last_offline_id = 0).is_err());
        assert!(with_entry(|e| e.min_ts = 10).is_err());
        let delivered_too_far = AccountSummary {
            delivered_up_to: 200,
            ..alice()
        };
        assert!(
            check(
                header(),
                &[SummaryRecord::Account(delivered_too_far), end(1, 0)]
            )
            .is_err()
        );
        // Many accounts in a small segment: each needs a record there.
        let mut small = header();
        small.segment_len = SEGMENT_HEADER_BYTES as u64 + 40;
        small.last_frame = SEGMENT_HEADER_BYTES as u64;
        small.last_frame_header = [32, 0, 0, 0, 0, 0, 0, 0];
        let marker = |account| {
            SummaryRecord::Account(AccountSummary {
                account,
                kinds: kind::DELIVERED,
                deleted_below: 0,
                delivered_up_to: 150,
                entry: None,
            })
        };
        assert_eq!(check(small, &[marker("a"), marker("b"), end(2, 0)]), Ok(()));
        assert!(check(small, &[marker("a"), marker("b"), marker("c"), end(3, 0)]).is_err());
        // Offline items: ids ascending, within the segment's ids and bytes.
        let mut items = Vec::new();
        put_offline_item(&mut items, "a", 150);
        put_offline_item(&mut items, "a", 151);
        let offline = |frame, items| SummaryRecord::Offline { frame, items };
        assert_eq!(
            check(header(), &[good[0], offline(40, &items[..]), end(1, 2)]),
            Ok(())
        );
        assert!(check(header(), &[good[0], offline(10_000, &items[..]), end(1, 2)]).is_err());
        assert!(
            check(
                header(),
                &[
                    good[0],
                    offline(40, &items[..]),
                    offline(50, &items[..]),
                    end(1, 4)
                ]
            )
            .is_err()
        );
        assert!(check(header(), &[offline(40, &items[..]), good[0], end(1, 2)]).is_err());
        assert!(check(header(), &[good[0], offline(40, &[]), end(1, 0)]).is_err());
        assert!(max_summary_bytes(SEGMENT_HEADER_BYTES as u64) < 200);
    }
}
