//! The message archive on disk: XEP-0313 (MAM) and XEP-0160 (offline storage) in one
//! structure, so that a message is written to flash once (types in [`crate::archive`]).
//!
//! # Files in the archive directory (0700; every file 0600: private correspondence)
//! - `lock`: an exclusive `flock` held for the life of the [`ArchiveStore`].
//! - `seg-00000001`, `seg-00000002`, …: append-only segments, each a header and frames of
//!   records (byte layout in [`format`]; frames are those of [`super::codec`]). Only the
//!   newest segment is appended to; a segment is closed once the next append would take
//!   it past `segment_bytes`, and is never rewritten: space comes back by deleting whole
//!   segment files. No message is ever copied to another file, so each message costs one
//!   flash write.
//! - `seg-00000001.idx`, …: the **summary** of each closed segment (byte layout in
//!   [`summary`]): what the segment adds to the index (see "Opening" below).
//! - `seg-….tmp`, `seg-….idx.tmp`: a segment or summary being created (temp + fsync +
//!   rename); deleted on open, as are summaries without their segment and the newest
//!   segment's (only closed segments have one).
//!
//! # Opening
//! What opening reads does not grow with the archive's bytes: the newest segment (at most
//! `segment_bytes`) frame by frame, as it may end in a torn append; a small summary and
//! two small reads per closed segment; the frames holding offline messages still pending
//! (which the core holds in memory anyway). Each closed
//! segment's share of the index ([`index::SegmentInfo`], its [`index::SegEntry`] per
//! account, the markers it holds per account) and the OFFLINE messages in it that none of
//! its markers covers (id and frame) come from its summary, written once when it was
//! closed. Before a summary is used it is checked against its segment with a file length,
//! a 32-byte read of the segment header and an 8-byte read of the last frame's header
//! (which holds the frame's CRC), and then read whole (every frame's CRC, every record
//! checked against what the segment could hold) before any of it is applied. A summary
//! that is missing (a crash after the segment was closed, before the summary was written;
//! an archive written by an older build), torn, damaged, stale, of another format version
//! or longer than any summary of its segment is not an error: the segment is read as
//! before and its summary written again (logged: one info line for missing ones, a warning
//! per invalid one). Last, the offline messages still pending (their markers may be in
//! later segments) are read, each frame holding one once: open reads what it returns.
//!
//! Summaries are files beside their segment rather than a trailer frame in it: a closed
//! segment then stays exactly as appended and never rewritten (so damage at its end is
//! still corruption, not a torn trailer), a summary is replaced atomically by rename, and
//! an older build simply ignores the files.
//!
//! Measured (`scripts/measure-archive-open`: 40 MB in 41 segments of 1 MiB, 100 accounts,
//! 10 messages per append; x86, warm page cache): 5 ms, against 140 ms when every segment
//! was read; 20 ms (against 174 ms) with 839 offline messages pending, one in each of 839
//! frames all through the archive. The first open without summaries (after an upgrade)
//! reads everything and writes 40 summaries, each fsynced: 0.3 to 0.5 s there, once.
//!
//! # What is visible
//! An account's message is visible to its MAM queries if it has the ARCHIVED flag, its
//! account was not deleted after it, it is not older than `max_age_ms`, and it is among
//! the account's newest `max_messages_per_account` ARCHIVED messages on disk. An OFFLINE
//! message is pending (returned in [`ArchiveLoad::offline`]) if no `OfflineDelivered`
//! covers it, its account was not deleted after it, it is not older than `max_age_ms`,
//! and it is among the account's newest `max_messages_per_account` OFFLINE messages.
//! **Offline messages are subject to retention like the others: one dropped by the count,
//! age or total-size limit is gone**, and is not returned at the next open (the core may
//! still hold it in memory until then). Retention by count and age is computed, not
//! stored: lowering a limit hides messages at once; raising it again before their
//! segment is deleted shows them again.
//!
//! # Reclaiming space
//! - A closed segment in which nothing is visible or pending any more is deleted.
//!   A segment holding an `OfflineDelivered`/`AccountDeleted` marker hides messages in
//!   older segments, so it is deleted only once it is the oldest: a marker never outlives
//!   the messages it hides. (Markers only concern messages written before them: an
//!   `AccountDeleted` carries the next id at the time; an `OfflineDelivered` is clamped
//!   below it.) Checked by [`ArchiveStore::enforce_retention`], at open, and (without the
//!   age rule, which needs the clock) when a segment is closed.
//! - Total size: before a new segment is started, the oldest segments are deleted while
//!   the existing ones plus a full new one would pass `max_total_bytes`, or the number of
//!   segments would pass [`ArchiveStore::max_segments`]. Visible and pending messages go
//!   with them: the disk bound wins.
//! - The newest segment is never deleted: its header keeps the id counter, so ids are
//!   never reused even when every message is gone.
//!
//! # Memory bound
//! The index holds, per segment, a [`index::SegmentInfo`]; per account, its floors and
//! name; per (account, segment) holding that account's messages, one [`index::SegEntry`]
//! (id and time range, counts, a Bloom filter of `with`, the byte range to read). Never
//! anything per message. With `S = max_segments()` (at most `CAP_ARCHIVE_SEGMENTS`) and
//! `A` the accounts with messages in the archive (local accounts, so at most
//! `max_accounts`; a deleted account's entries go at once, its name and floors stay until
//! its marker's segment is deleted):
//!
//! `index bytes ≤ S × ARCHIVE_INDEX_BYTES_PER_SEGMENT
//!              + A × (ARCHIVE_INDEX_BYTES_PER_ACCOUNT + 1023 + S × ARCHIVE_INDEX_BYTES_PER_ENTRY)`
//!
//! ([`index_bytes_bound`]; with the defaults, 65 segments and 100 accounts: about 730 KiB
//! worst case). `S` is enforced when segments are started; tests pin the struct sizes
//! under the constants and check [`ArchiveStore::index_bytes`] against the formula.
//! The summaries do not change this: the index they rebuild is the one reading the
//! segments would (tests compare the two), and a summary naming more accounts than its
//! segment has bytes for records is refused.
//! A query holds one read window (64 KiB, or one frame if larger) and its page; `open`
//! holds one window (summaries are written in frames under 56 KiB so that one holds a
//! frame), where each possibly pending offline message is (24 bytes, at most
//! `max_messages_per_account` per account), then the pending offline messages themselves
//! (as many at most: the core holds the same in memory). Writing a summary, when a
//! segment is closed, holds one window, about one summary frame and a pointer per account.
//!
//! # Crash safety
//! The rules of `storage::file`: one append is one frame (batches over 1 MiB, which
//! group commit of ordinary stanzas does not produce, become several frames, each
//! written and fdatasynced in turn so that only the last can be torn), written with one
//! positioned write and one fdatasync. At open, a damaged frame at the end of the newest
//! segment with no intact frame after it is a torn tail: dropped, the file truncated, the
//! bytes reported in [`ArchiveLoad::torn_tail_bytes`]. Damage followed by an intact frame,
//! damage anywhere in a closed segment that is read (its last append was synced before
//! the next segment was created), a bad header, or a good checksum around a record that
//! does not decode is [`StoreError::Corrupt`] naming the file and offset, and nothing is
//! touched. A failed append (ENOSPC, EIO) is cut away (truncate + fdatasync) before the
//! error is returned; if even that fails, appends are refused until the store is reopened
//! (the load then drops the half frame as a torn tail). Deleting segments is followed by a
//! directory fsync; a segment's summary is deleted just before it.
//!
//! A segment's summary is written when the segment is closed: after its last append was
//! fdatasynced, before the next segment is created, as a temp file, fsynced, renamed (the
//! new segment's directory fsync makes the rename durable). Failing to write it fails
//! nothing: it costs a read of that segment at the next open.
//!
//! **What summaries change for damage.** A closed segment with a good summary is not read
//! at open, so damage inside it (a flipped bit on flash) is no longer found at open but
//! when a query, or the pending offline messages at open, reads the frame: every frame is
//! checked (CRC, records) whenever it is read, so that read fails with
//! [`StoreError::Corrupt`] naming the file and the frame; it never panics nor returns data
//! from the damaged frame. The MAM layer answers such a query with an
//! `internal-server-error` IQ error (`net/persist.rs` → `Core::archive_answer`) and the
//! store goes on serving the other frames and appending. Damage in the segment's header or
//! at its end (the last frame's header) is still found at open. The trade-off: an
//! administrator learns of bit rot in old messages from the log when a client first asks
//! for them rather than at start-up; deleting the `.idx` files makes the next open read
//! and check everything, as before.

mod format;
mod index;
mod load;
mod query;
mod segment;
mod summary;
#[cfg(test)]
mod tests;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use self::format::{FrameSpan, RecordView, SegmentHeader};
use self::index::Index;
use self::load::{Closing, Loader, OpenReport};
use super::StoreError;
use super::disk::{self, Fault, io_error};
use crate::archive::{ArchivePage, ArchiveQuery, ArchiveRecord, ArchivedMessage};
use crate::limits::{
    ARCHIVE_INDEX_BYTES_PER_ACCOUNT, ARCHIVE_INDEX_BYTES_PER_ENTRY,
    ARCHIVE_INDEX_BYTES_PER_SEGMENT, CAP_ARCHIVE_SEGMENT_BYTES, CAP_ARCHIVE_SEGMENTS,
    JID_PART_MAX_BYTES, MIN_ARCHIVE_SEGMENT_BYTES,
};

pub use self::format::{ARCHIVE_FORMAT_VERSION, SEGMENT_HEADER_BYTES};
pub use self::summary::SUMMARY_FORMAT_VERSION;

use crate::limits::STORE_KEEP_BUFFER_BYTES as KEEP_BUFFER_BYTES;

/// Retention and size bounds of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Messages kept per account (oldest hidden first, then reclaimed).
    pub max_messages_per_account: usize,
    /// Messages older than this are dropped (0: no age limit).
    pub max_age_ms: u64,
    /// Total bytes of segment files; the oldest segment goes when a new one would pass it.
    pub max_total_bytes: u64,
    /// Size at which a segment is closed and a new one started.
    pub segment_bytes: u64,
}

impl ArchiveLimits {
    /// The limits the store works with: `segment_bytes` within
    /// [`MIN_ARCHIVE_SEGMENT_BYTES`, `CAP_ARCHIVE_SEGMENT_BYTES`] and at most half the
    /// total (the newest segment is never deleted, so two must fit).
    pub fn normalised(self) -> ArchiveLimits {
        let half_total = (self.max_total_bytes / 2).max(MIN_ARCHIVE_SEGMENT_BYTES);
        ArchiveLimits {
            segment_bytes: self
                .segment_bytes
                .clamp(MIN_ARCHIVE_SEGMENT_BYTES, CAP_ARCHIVE_SEGMENT_BYTES)
                .min(half_total),
            ..self
        }
    }

    /// Segment files kept at most (see the memory bound in the module doc).
    pub fn max_segments(&self) -> usize {
        let n = self.normalised();
        let by_size = n
            .max_total_bytes
            .div_ceil(n.segment_bytes)
            .saturating_add(1);
        usize::try_from(by_size)
            .unwrap_or(usize::MAX)
            .clamp(2, CAP_ARCHIVE_SEGMENTS)
    }

    /// Messages older than the returned timestamp are expired (0: none).
    fn cutoff_ts(&self, now_ms: u64) -> u64 {
        if self.max_age_ms == 0 {
            0
        } else {
            now_ms.saturating_sub(self.max_age_ms)
        }
    }
}

/// Worst-case bytes of the index for `accounts` accounts (see the module doc).
pub fn index_bytes_bound(limits: &ArchiveLimits, accounts: usize) -> usize {
    let segments = limits.max_segments();
    segments * ARCHIVE_INDEX_BYTES_PER_SEGMENT
        + accounts
            * (ARCHIVE_INDEX_BYTES_PER_ACCOUNT
                + JID_PART_MAX_BYTES
                + segments * ARCHIVE_INDEX_BYTES_PER_ENTRY)
}

/// What opening the archive found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveLoad {
    /// The id the next message must have (one more than the highest ever written).
    pub next_id: u64,
    /// Offline messages not yet delivered (after retention), all accounts, in id order:
    /// so per account oldest first. Reading them is the only read of closed segments at
    /// open: a damaged frame holding one fails the open ([`StoreError::Corrupt`]).
    pub offline: Vec<ArchivedMessage>,
    /// Bytes of an unfinished last record dropped (a crash during a write).
    pub torn_tail_bytes: u64,
}

enum Active {
    /// No segment yet: the first append creates one.
    None,
    /// `len` is the end of the last good frame; appends write there. `last_frame` is
    /// where that frame starts (0: none yet), for the segment's summary.
    Open {
        seq: u64,
        file: File,
        len: u64,
        last_frame: u64,
    },
    /// A failed append could not be cut away: appends are refused until reopen.
    Poisoned { seq: u64 },
}

pub struct ArchiveStore {
    dir: PathBuf,
    /// Holds the exclusive lock until dropped.
    _lock: File,
    limits: ArchiveLimits,
    index: Index,
    active: Active,
    next_id: u64,
    /// Reused between appends and queries so that neither allocates every time.
    buf: Vec<u8>,
    spans: Vec<FrameSpan>,
    read_buf: Vec<u8>,
    fault: Fault,
    /// How the last open loaded the segments.
    #[cfg_attr(not(test), allow(dead_code))]
    opened: OpenReport,
}

impl ArchiveStore {
    /// Opens (creating if needed) the archive in `dir`, takes its lock, rebuilds the index
    /// (closed segments from their summaries, the newest segment and any closed one without
    /// a usable summary by reading it), applies retention, then reads the pending offline
    /// messages.
    pub fn open(
        dir: &Path,
        limits: ArchiveLimits,
        now_ms: u64,
    ) -> Result<(ArchiveStore, ArchiveLoad), StoreError> {
        disk::create_private_dir(dir)?;
        let lock = disk::take_lock(&dir.join(disk::LOCK_FILE))?;
        let limits = limits.normalised();
        let fault = Fault::default();
        let seqs = segment::list_segments(dir)?;
        let mut index = Index::default();
        let mut loader = Loader::new(limits.max_messages_per_account);
        let mut active = Active::None;
        for (i, &seq) in seqs.iter().enumerate() {
            if i + 1 < seqs.len() {
                load::load_closed_segment(dir, seq, &mut index, &mut loader, fault)?;
            } else {
                let s = load::scan_segment(dir, seq, true, &mut index, &mut loader)?;
                active = Active::Open {
                    seq,
                    file: s.file,
                    len: s.len,
                    last_frame: s.last_frame,
                };
            }
        }
        let report = loader.report;
        if report.summaries_written > 0 {
            // The renames of the summaries just written (a lost one costs only a read).
            disk::sync_dir(dir)?;
        }
        if report.summaries_missing > 0 {
            log::info!(
                "{}: {} closed segments had no summary (a crash right after a segment \
                 was closed, or an archive from an older build): read them instead",
                dir.display(),
                report.summaries_missing,
            );
        }
        if let Some(e) = &loader.summary_write_error {
            let failed =
                report.summaries_missing + report.summaries_invalid - report.summaries_written;
            log::warn!(
                "{}: {failed} segment summaries could not be written (first: {e}); \
                 those segments will be read again at the next open",
                dir.display()
            );
        }
        let mut store = ArchiveStore {
            dir: dir.to_path_buf(),
            _lock: lock,
            limits,
            index,
            active,
            next_id: loader.next_id,
            buf: Vec::new(),
            spans: Vec::new(),
            read_buf: std::mem::take(loader.read_buf()),
            fault,
            opened: report,
        };
        store.enforce_retention(now_ms)?;
        let offline = load::read_pending_offline(
            dir,
            &store.index,
            std::mem::take(&mut loader.offline),
            store.limits.cutoff_ts(now_ms),
            &mut store.read_buf,
        )?;
        if store.read_buf.capacity() > KEEP_BUFFER_BYTES {
            store.read_buf = Vec::new();
        }
        let load = ArchiveLoad {
            next_id: store.next_id,
            offline,
            torn_tail_bytes: loader.torn_tail_bytes,
        };
        Ok((store, load))
    }

    /// Appends records with one write and one fsync (see "Crash safety" for batches over
    /// 1 MiB). Message ids must be at least [`ArchiveStore::next_id`] and increase; a batch
    /// breaking that, or a field over its cap, is refused whole with
    /// `io::ErrorKind::InvalidInput` and nothing is written.
    pub fn append(&mut self, records: &[ArchiveRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        if let Active::Poisoned { seq } = self.active {
            return Err(StoreError::Io {
                path: segment::segment_path(&self.dir, seq),
                error: io::Error::other(
                    "an earlier failed append could not be undone; reopen the archive",
                ),
            });
        }
        let mut next_id = self.next_id;
        self.buf.clear();
        self.spans.clear();
        format::encode_batch(records, &mut next_id, &mut self.buf, &mut self.spans).map_err(
            |e| StoreError::Io {
                path: self.dir.clone(),
                error: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            },
        )?;
        self.make_room(self.buf.len() as u64)?;
        let fault = self.fault;
        let Active::Open {
            seq,
            file,
            len,
            last_frame,
        } = &mut self.active
        else {
            return Err(StoreError::Io {
                path: self.dir.clone(),
                error: io::Error::other("no segment is open"),
            });
        };
        let (seq, base) = (*seq, *len);
        let path = segment::segment_path(&self.dir, seq);
        for span in &self.spans {
            let bytes = self.buf.get(span.bytes.clone()).unwrap_or(&[]);
            if let Err(error) =
                disk::write_and_sync(file, base + span.bytes.start as u64, bytes, fault)
            {
                if segment::truncate_and_sync(file, base, fault).is_err() {
                    self.active = Active::Poisoned { seq };
                }
                return Err(StoreError::Io { path, error });
            }
        }
        *len = base + self.buf.len() as u64;
        if let Some(span) = self.spans.last() {
            *last_frame = base + span.bytes.start as u64;
        }
        if let Some(info) = self.index.segments.get_mut(&seq) {
            info.bytes = *len;
        }
        self.index_batch(records, seq, base);
        self.next_id = next_id;
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Applies a written batch to the index, with the views it was encoded from.
    fn index_batch(&mut self, records: &[ArchiveRecord], seq: u64, base: u64) {
        let mut next_id = self.next_id;
        for span in &self.spans {
            let frame = base + span.bytes.start as u64..base + span.bytes.end as u64;
            for record in records.get(span.records.clone()).unwrap_or(&[]) {
                let view = format::view_for_append(record, next_id);
                if let RecordView::Message(m) = view {
                    next_id = m.id.saturating_add(1);
                }
                apply_to_index(&mut self.index, seq, frame.clone(), &view);
            }
        }
    }

    /// Makes sure a segment is open that `batch_len` more bytes may go to, starting a new
    /// one (after retention) when the current one would pass `segment_bytes`.
    fn make_room(&mut self, batch_len: u64) -> Result<(), StoreError> {
        let current = match &self.active {
            Active::Open { seq, len, .. } => Some((*seq, *len)),
            Active::None => None,
            Active::Poisoned { .. } => return Ok(()),
        };
        let next_seq = match current {
            None => 1,
            Some((seq, len)) => {
                let empty = len <= SEGMENT_HEADER_BYTES as u64;
                if empty || len.saturating_add(batch_len) <= self.limits.segment_bytes {
                    return Ok(());
                }
                // Dead segments first, so that live old messages last longer; the age
                // rule waits for `enforce_retention`, which has the clock.
                for dead in self
                    .index
                    .dead_segments(self.limits.max_messages_per_account, 0, seq)
                {
                    self.delete_segment(dead)?;
                }
                self.delete_for_size(self.limits.segment_bytes, 1)?;
                self.summarise_active();
                seq.checked_add(1).ok_or_else(|| StoreError::Io {
                    path: self.dir.clone(),
                    error: io::Error::other("segment numbers exhausted"),
                })?
            }
        };
        let header = SegmentHeader {
            seq: next_seq,
            first_id: self.next_id,
        };
        // Also makes the deletions and the summary above durable (one directory fsync).
        let file = match segment::create_segment(&self.dir, header, self.fault) {
            Ok(file) => file,
            Err(e) => {
                if let Some((seq, _)) = current
                    && segment::segment_path(&self.dir, next_seq).exists()
                {
                    // A new segment was left behind that appends to the old one would
                    // contradict: stop appending until a reopen adopts it.
                    self.active = Active::Poisoned { seq };
                }
                return Err(e);
            }
        };
        let len = SEGMENT_HEADER_BYTES as u64;
        self.index.segments.insert(
            next_seq,
            index::SegmentInfo {
                bytes: len,
                first_id: self.next_id,
                has_markers: false,
            },
        );
        self.active = Active::Open {
            seq: next_seq,
            file,
            len,
            last_frame: 0,
        };
        Ok(())
    }

    /// Writes the summary of the segment being closed (its appends are all synced). A
    /// failure costs only a read of the segment at the next open: logged, not returned.
    fn summarise_active(&mut self) {
        let Active::Open {
            seq,
            file,
            len,
            last_frame,
        } = &self.active
        else {
            return;
        };
        let closing = Closing {
            file,
            len: *len,
            last_frame: *last_frame,
        };
        let written = load::write_summary(
            &self.dir,
            *seq,
            closing,
            &self.index,
            self.next_id,
            &mut self.read_buf,
            self.fault,
        );
        if self.read_buf.capacity() > KEEP_BUFFER_BYTES {
            self.read_buf = Vec::new();
        }
        if let Err(e) = written {
            log::warn!(
                "archive segment {seq}: its summary could not be written ({e}); \
                 the segment will be read at the next open"
            );
            // A summary from an earlier attempt to close it would be stale.
            let _ = segment::remove_summary(&self.dir, *seq);
        }
    }

    /// Deletes the oldest segments (never the newest) while the files plus `extra_bytes`
    /// would pass the total, or the segments plus `extra_segments` would pass the count.
    fn delete_for_size(
        &mut self,
        extra_bytes: u64,
        extra_segments: usize,
    ) -> Result<bool, StoreError> {
        let max_segments = self.limits.max_segments();
        let mut deleted = false;
        while self.index.segments.len() > 1 {
            let over_bytes =
                self.index.total_bytes().saturating_add(extra_bytes) > self.limits.max_total_bytes;
            let over_count = self.index.segments.len() + extra_segments > max_segments;
            if !(over_bytes || over_count) {
                break;
            }
            let Some((&oldest, _)) = self.index.segments.iter().next() else {
                break;
            };
            self.delete_segment(oldest)?;
            deleted = true;
        }
        Ok(deleted)
    }

    /// Deletes a segment and its summary (the summary first: a summary never outlives its
    /// segment but for a crash in between, and `open` removes such orphans).
    fn delete_segment(&mut self, seq: u64) -> Result<(), StoreError> {
        segment::remove_summary(&self.dir, seq)?;
        let path = segment::segment_path(&self.dir, seq);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&path)(e)),
            _ => {}
        }
        self.index.remove_segment(seq);
        Ok(())
    }

    /// Answers a query from the segment files (see [`query`] for the paging rules:
    /// backward when `before_id` or `last_page` is set, forward otherwise; `count` and
    /// `first_index` always given, treating `after_id`/`before_id` as RSM paging bounds).
    pub fn query(&mut self, q: &ArchiveQuery, now_ms: u64) -> Result<ArchivePage, StoreError> {
        let vis = query::Visibility {
            keep_messages: self.limits.max_messages_per_account,
            cutoff_ts: self.limits.cutoff_ts(now_ms),
        };
        let page = query::run(
            &self.dir,
            self.index.accounts.get(&q.account),
            q,
            vis,
            &mut self.read_buf,
        );
        if self.read_buf.capacity() > KEEP_BUFFER_BYTES {
            // A frame larger than the read window was read: give the memory back.
            self.read_buf = Vec::new();
        }
        page
    }

    /// Applies age and size retention (called from time to time by the shell): deletes
    /// the closed segments in which nothing is visible or pending, then the oldest while
    /// the total is over `max_total_bytes` (after the limits were lowered).
    pub fn enforce_retention(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let keep = match self.active {
            Active::Open { seq, .. } | Active::Poisoned { seq } => seq,
            Active::None => return Ok(()),
        };
        let cutoff = self.limits.cutoff_ts(now_ms);
        let dead = self
            .index
            .dead_segments(self.limits.max_messages_per_account, cutoff, keep);
        let mut deleted = !dead.is_empty();
        for seq in dead {
            self.delete_segment(seq)?;
        }
        deleted |= self.delete_for_size(0, 0)?;
        if deleted {
            disk::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id the next message must have.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The limits in force (after [`ArchiveLimits::normalised`]).
    pub fn limits(&self) -> ArchiveLimits {
        self.limits
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.index.total_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.index.segments.len()
    }

    /// Memory held by the index, in the units of [`index_bytes_bound`].
    pub fn index_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// (account, segment) entries in the index: at most accounts × `max_segments()`.
    pub fn index_entries(&self) -> usize {
        self.index.entry_count()
    }
}

fn apply_to_index(index: &mut Index, seq: u64, frame: std::ops::Range<u64>, view: &RecordView<'_>) {
    match *view {
        RecordView::Message(ref m) => index.add_message(seq, frame, m),
        RecordView::OfflineDelivered { account, up_to } => {
            index.offline_delivered(seq, account, up_to)
        }
        RecordView::AccountDeleted { account, below_id } => {
            index.account_deleted(seq, account, below_id)
        }
    }
}
