//! Opening the archive: the index and the pending offline messages, rebuilt from the
//! summaries of closed segments (checked against their segments, not read from them) and
//! from the newest segment, read frame by frame. A closed segment whose summary is missing
//! or does not check out is read like the newest, and its summary written again. Also
//! writes summaries (when a segment is closed, and after such a read): one function, so
//! that a summary always says what reading the segment would.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::Path;

use super::format::{MessageView, RecordView, payload_records};
use super::index::{Index, SegmentInfo};
use super::segment;
use super::summary::{
    self, Invalid, SUMMARY_FRAME_BYTES, SUMMARY_HEADER_BYTES, SummaryChecker, SummaryEncoder,
    SummaryHeader, SummaryRecord, kind, offline_items,
};
use super::{SEGMENT_HEADER_BYTES, apply_to_index};
use crate::archive::{ArchivedMessage, flags};
use crate::storage::StoreError;
use crate::storage::codec::{FRAME_HEADER_BYTES, Reader};
use crate::storage::disk::{self, Fault, Frame, Window, corrupt, invalid_record, io_error};

/// An offline message that may be pending, found while loading: where it is, not what it
/// says (only those still pending once everything is loaded are read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRef {
    pub seq: u64,
    /// Offset of the frame holding it.
    pub frame: u64,
    pub id: u64,
}

/// Possibly pending offline messages per account, oldest first, at most `keep` each.
pub type OfflineQueues = HashMap<String, VecDeque<PendingRef>>;

/// How the segments were loaded by the last open (for the log and the tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Closed segments loaded from their summaries, without reading them.
    pub summaries_used: usize,
    /// Closed segments read because they had no summary (a crash before it was written,
    /// or an archive written by an older build) / because their summary did not check out.
    pub summaries_missing: usize,
    pub summaries_invalid: usize,
    /// Summaries written after such a read.
    pub summaries_written: usize,
}

/// State carried from segment to segment while loading.
pub struct Loader {
    pub next_id: u64,
    keep: usize,
    pub offline: OfflineQueues,
    pub torn_tail_bytes: u64,
    pub report: OpenReport,
    /// Why the first summary that could not be written failed (logged once by `open`).
    pub summary_write_error: Option<String>,
    /// One read window, reused for every file.
    buf: Vec<u8>,
}

/// A segment after reading it: open (for appending if it is the newest).
pub struct Scanned {
    pub file: File,
    /// The end of the last good frame.
    pub len: u64,
    /// Offset of the last frame (0: none).
    pub last_frame: u64,
}

/// A segment being summarised: its last append synced, nothing after `len`.
#[derive(Clone, Copy)]
pub struct Closing<'f> {
    pub file: &'f File,
    pub len: u64,
    /// Offset of the last frame (0: none).
    pub last_frame: u64,
}

/// What became of a closed segment's summary.
enum SummaryUse {
    Used,
    Missing,
    Unusable(Invalid),
}

impl Loader {
    pub fn new(keep: usize) -> Loader {
        Loader {
            next_id: 1,
            keep,
            offline: HashMap::new(),
            torn_tail_bytes: 0,
            report: OpenReport::default(),
            summary_write_error: None,
            buf: Vec::new(),
        }
    }

    pub fn read_buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Queues a possibly pending offline message, keeping only the account's newest `keep`
    /// (the count rule: delivery markers only ever remove the oldest, so the newest `keep`
    /// pending are exactly those within the newest `keep` OFFLINE messages).
    fn queue_offline(&mut self, account: &str, pending: PendingRef) {
        if self.keep == 0 {
            return;
        }
        if !self.offline.contains_key(account) {
            self.offline.insert(account.to_owned(), VecDeque::new());
        }
        if let Some(queue) = self.offline.get_mut(account) {
            if queue.len() >= self.keep {
                queue.pop_front();
            }
            queue.push_back(pending);
        }
    }

    fn offline_delivered(&mut self, account: &str, up_to: u64) {
        if let Some(queue) = self.offline.get_mut(account) {
            while queue.front().is_some_and(|p| p.id <= up_to) {
                queue.pop_front();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Closed segments: the summary, or a read and a new summary
// ---------------------------------------------------------------------------------------

/// Loads closed segment `seq` into the index and the offline queues: from its summary if
/// it checks out, else by reading the segment (then writing its summary: the directory
/// fsync is the caller's).
pub fn load_closed_segment(
    dir: &Path,
    seq: u64,
    index: &mut Index,
    loader: &mut Loader,
    fault: Fault,
) -> Result<(), StoreError> {
    match load_summary(dir, seq, index, loader)? {
        SummaryUse::Used => {
            loader.report.summaries_used += 1;
            return Ok(());
        }
        SummaryUse::Missing => loader.report.summaries_missing += 1,
        SummaryUse::Unusable(why) => {
            loader.report.summaries_invalid += 1;
            log::warn!(
                "{}: {why}; reading the segment instead, and writing its summary again",
                segment::summary_path(dir, seq).display()
            );
        }
    }
    let scanned = scan_segment(dir, seq, false, index, loader)?;
    let closing = Closing {
        file: &scanned.file,
        len: scanned.len,
        last_frame: scanned.last_frame,
    };
    let written = write_summary(
        dir,
        seq,
        closing,
        index,
        loader.next_id,
        &mut loader.buf,
        fault,
    );
    match written {
        Ok(()) => loader.report.summaries_written += 1,
        Err(e) => {
            if loader.summary_write_error.is_none() {
                loader.summary_write_error = Some(e.to_string());
            }
        }
    }
    Ok(())
}

/// Checks segment `seq`'s summary against the segment (length, header, last frame) and
/// all its records, then applies it. Problems with the segment itself (its header, its
/// first id) are errors as when it is read; problems with the summary only mean it is
/// not used.
fn load_summary(
    dir: &Path,
    seq: u64,
    index: &mut Index,
    loader: &mut Loader,
) -> Result<SummaryUse, StoreError> {
    let summary_path = segment::summary_path(dir, seq);
    let opened = File::open(&summary_path).and_then(|f| {
        let len = f.metadata()?.len();
        Ok((f, len))
    });
    let (summary_file, summary_len) = match opened {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SummaryUse::Missing),
        Err(_) => return Ok(SummaryUse::Unusable(Invalid("cannot be read"))),
    };
    let path = segment::segment_path(dir, seq);
    let (file, file_len) = segment::open_segment(&path, false)?;
    let seg_header = segment::read_header_only(&file, file_len, &path, seq)?;
    check_first_id(&path, seg_header.first_id, loader.next_id)?;
    if summary_len > summary::max_summary_bytes(file_len) {
        return Ok(SummaryUse::Unusable(Invalid(
            "longer than any summary of its segment",
        )));
    }
    let mut buf = std::mem::take(&mut loader.buf);
    let mut window = Window::new(&summary_file, summary_len, &mut buf);
    let checked = check_summary(&mut window, &file, file_len, seq, seg_header.first_id);
    let used = match checked {
        Ok(header) => {
            apply_summary(&mut window, &summary_path, header, file_len, index, loader)?;
            SummaryUse::Used
        }
        Err(why) => SummaryUse::Unusable(why),
    };
    loader.buf = buf;
    Ok(used)
}

fn check_first_id(path: &Path, first_id: u64, next_id: u64) -> Result<(), StoreError> {
    if first_id < next_id {
        return Err(corrupt(
            path,
            20,
            format!(
                "segment starts at id {first_id} but an older segment holds id {}",
                next_id - 1
            ),
        ));
    }
    Ok(())
}

/// The first pass over a summary: everything checked, nothing applied.
fn check_summary(
    window: &mut Window<'_>,
    segment: &File,
    segment_len: u64,
    seq: u64,
    first_id: u64,
) -> Result<SummaryHeader, Invalid> {
    let header = read_summary_header(window)?;
    if header.seq != seq || header.first_id != first_id {
        return Err(Invalid("written for another segment"));
    }
    if header.segment_len != segment_len {
        return Err(Invalid("stale: the segment's length differs"));
    }
    if header.last_frame != 0 {
        let on_disk = segment::read_frame_header(segment, segment_len, header.last_frame)
            .map_err(|_| Invalid("the segment's last frame cannot be read"))?;
        if on_disk != Some(header.last_frame_header) {
            return Err(Invalid("stale: the segment's last frame differs"));
        }
    }
    let mut checker = SummaryChecker::new(header)?;
    each_summary_record(window, seq, |record| checker.check(&record))?;
    checker.finish()?;
    Ok(header)
}

fn read_summary_header(window: &mut Window<'_>) -> Result<SummaryHeader, Invalid> {
    let available = window.file_len.min(SUMMARY_HEADER_BYTES as u64) as usize;
    let bytes = window
        .get(0, available)
        .ok()
        .flatten()
        .ok_or(Invalid("cannot be read"))?;
    SummaryHeader::decode(bytes).map_err(|e| match e {
        crate::storage::codec::HeaderError::UnsupportedVersion { .. } => {
            Invalid("written in another summary format version")
        }
        _ => Invalid("bad header"),
    })
}

/// Hands over every record of a summary, in order, checking each frame's CRC.
fn each_summary_record(
    window: &mut Window<'_>,
    seq: u64,
    mut each: impl FnMut(SummaryRecord<'_>) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    let mut offset = SUMMARY_HEADER_BYTES as u64;
    loop {
        let payload_len = match disk::read_frame(window, offset) {
            Ok(Frame::End) => return Ok(()),
            Ok(Frame::Intact { payload_len }) => payload_len,
            Ok(Frame::Damaged { what }) => return Err(Invalid(what)),
            Err(_) => return Err(Invalid("cannot be read")),
        };
        let payload = window
            .get(offset + FRAME_HEADER_BYTES as u64, payload_len)
            .ok()
            .flatten()
            .ok_or(Invalid("cannot be read"))?;
        let mut r = Reader::new(payload, 0);
        while r.pos < payload.len() {
            let (_, bytes) = r
                .length_prefixed_record()
                .map_err(|_| Invalid("a record length is out of range"))?;
            let record = summary::decode_record(bytes, seq)
                .map_err(|_| Invalid("a record does not decode"))?;
            each(record)?;
        }
        offset += (FRAME_HEADER_BYTES + payload_len) as u64;
    }
}

/// The second pass: the summary was checked whole, so this cannot fail unless the file
/// changed in between (under the store's lock: only by outside hands).
fn apply_summary(
    window: &mut Window<'_>,
    path: &Path,
    header: SummaryHeader,
    segment_len: u64,
    index: &mut Index,
    loader: &mut Loader,
) -> Result<(), StoreError> {
    let seq = header.seq;
    index.segments.insert(
        seq,
        SegmentInfo {
            bytes: segment_len,
            first_id: header.first_id,
            has_markers: false,
        },
    );
    let applied = each_summary_record(window, seq, |record| {
        match record {
            SummaryRecord::Account(a) => {
                index.apply_summary(seq, &a);
                if a.kinds & kind::DELETED != 0 {
                    loader.offline.remove(a.account);
                }
                if a.kinds & kind::DELIVERED != 0 {
                    loader.offline_delivered(a.account, a.delivered_up_to);
                }
            }
            SummaryRecord::Offline { frame, items } => {
                for item in offline_items(items) {
                    let (account, id) = item.map_err(|_| Invalid("changed while read"))?;
                    loader.queue_offline(account, PendingRef { seq, frame, id });
                }
            }
            SummaryRecord::End { .. } => {}
        }
        Ok(())
    });
    applied.map_err(|why| corrupt(path, 0, format!("summary {why} on its second reading")))?;
    loader.next_id = header.next_id;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reading a segment frame by frame
// ---------------------------------------------------------------------------------------

/// Reads one segment into the index and the offline queues. Returns it open (for writing
/// if it is the newest) with its good length. Damage in a closed segment, or anywhere but
/// the tail of the newest, is corruption (see "Crash safety" in the store's doc).
pub fn scan_segment(
    dir: &Path,
    seq: u64,
    newest: bool,
    index: &mut Index,
    loader: &mut Loader,
) -> Result<Scanned, StoreError> {
    let path = segment::segment_path(dir, seq);
    let (file, file_len) = segment::open_segment(&path, newest)?;
    let mut buf = std::mem::take(&mut loader.buf);
    let mut window = Window::new(&file, file_len, &mut buf);
    let scanned = scan_frames(&mut window, &path, seq, newest, index, loader);
    loader.buf = buf;
    let (len, last_frame) = scanned?;
    Ok(Scanned {
        file,
        len,
        last_frame,
    })
}

/// Returns the end of the last good frame and where that frame starts (0: none).
fn scan_frames(
    window: &mut Window<'_>,
    path: &Path,
    seq: u64,
    newest: bool,
    index: &mut Index,
    loader: &mut Loader,
) -> Result<(u64, u64), StoreError> {
    let file_len = window.file_len;
    let header = segment::read_header(window, path, seq)?;
    check_first_id(path, header.first_id, loader.next_id)?;
    loader.next_id = header.first_id;
    index.segments.insert(
        seq,
        SegmentInfo {
            bytes: file_len,
            first_id: header.first_id,
            has_markers: false,
        },
    );
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut last_frame = 0;
    loop {
        match disk::read_frame(window, offset).map_err(io_error(path))? {
            Frame::End => break,
            Frame::Intact { payload_len } => {
                let payload = disk::frame_payload(window, path, offset, payload_len)?;
                let frame_end = offset + (FRAME_HEADER_BYTES + payload_len) as u64;
                load_frame(path, seq, offset..frame_end, payload, index, loader)?;
                last_frame = offset;
                offset = frame_end;
            }
            Frame::Damaged { what } => {
                if !newest {
                    return Err(corrupt(path, offset, format!("{what} in a closed segment")));
                }
                loader.torn_tail_bytes = disk::truncate_torn_tail(window, path, offset, what)?;
                if let Some(info) = index.segments.get_mut(&seq) {
                    info.bytes = offset;
                }
                return Ok((offset, last_frame));
            }
        }
    }
    Ok((offset, last_frame))
}

fn load_frame(
    path: &Path,
    seq: u64,
    frame: std::ops::Range<u64>,
    payload: &[u8],
    index: &mut Index,
    loader: &mut Loader,
) -> Result<(), StoreError> {
    let payload_offset = frame.start + FRAME_HEADER_BYTES as u64;
    for record in payload_records(payload) {
        let (at, view) = record.map_err(|e| invalid_record(path, payload_offset, &e))?;
        match view {
            RecordView::Message(m) => {
                if m.id < loader.next_id || m.id == u64::MAX {
                    return Err(corrupt(
                        path,
                        payload_offset + at as u64,
                        format!(
                            "message id {} does not follow the previous id {}",
                            m.id,
                            loader.next_id.saturating_sub(1)
                        ),
                    ));
                }
                loader.next_id = m.id + 1;
                if m.has(flags::OFFLINE) {
                    let pending = PendingRef {
                        seq,
                        frame: frame.start,
                        id: m.id,
                    };
                    loader.queue_offline(m.account, pending);
                }
            }
            RecordView::OfflineDelivered { account, up_to } => {
                loader.offline_delivered(account, up_to);
            }
            RecordView::AccountDeleted { account, .. } => {
                loader.offline.remove(account);
            }
        }
        apply_to_index(index, seq, frame.clone(), &view);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Writing a summary
// ---------------------------------------------------------------------------------------

/// Writes the summary of segment `seq`, which must be the newest the index has seen (at a
/// close, or right after reading it at open): its accounts from the index, and its
/// offline messages no marker covers, from one read of the part of the segment that
/// holds them (none when every offline message in it was delivered, the usual case). The
/// segment's last append must be synced. Holds one read window and about one frame.
pub fn write_summary(
    dir: &Path,
    seq: u64,
    segment: Closing<'_>,
    index: &Index,
    next_id: u64,
    buf: &mut Vec<u8>,
    fault: Fault,
) -> Result<(), StoreError> {
    let path = segment::segment_path(dir, seq);
    let first_id = index
        .segments
        .get(&seq)
        .map(|info| info.first_id)
        .ok_or_else(|| corrupt(&path, 0, "segment missing from the index"))?;
    let last_frame_header = if segment.last_frame == 0 {
        [0; FRAME_HEADER_BYTES]
    } else {
        segment::read_frame_header(segment.file, segment.len, segment.last_frame)
            .map_err(io_error(&path))?
            .ok_or_else(|| corrupt(&path, segment.last_frame, "last frame past the end"))?
    };
    let header = SummaryHeader {
        seq,
        first_id,
        segment_len: segment.len,
        next_id,
        last_frame: segment.last_frame,
        last_frame_header,
    };
    // Names only (not whole summaries) while sorting: a pointer per account.
    let mut names: Vec<&str> = index
        .accounts
        .iter()
        .filter(|(name, acct)| Index::account_summary(seq, name.as_str(), acct).is_some())
        .map(|(name, _)| name.as_str())
        .collect();
    names.sort_unstable();
    segment::write_summary(dir, seq, fault, |out| {
        let mut sink = SummarySink {
            out,
            at: 0,
            path: segment::summary_path(dir, seq),
        };
        let mut enc = SummaryEncoder::new(&header);
        for name in &names {
            let summary = index
                .accounts
                .get(*name)
                .and_then(|acct| Index::account_summary(seq, name, acct));
            if let Some(a) = summary {
                enc.account(&a).map_err(|e| sink.invalid(e))?;
                sink.flush(&mut enc)?;
            }
        }
        summarise_offline(&path, segment, index, seq, buf, &mut enc, &mut sink)?;
        let rest = enc.finish();
        sink.write(&rest)
    })
}

/// Adds the segment's offline messages that no marker covers to the summary.
fn summarise_offline(
    path: &Path,
    segment: Closing<'_>,
    index: &Index,
    seq: u64,
    buf: &mut Vec<u8>,
    enc: &mut SummaryEncoder,
    sink: &mut SummarySink<'_>,
) -> Result<(), StoreError> {
    let undelivered = index.accounts.values().filter_map(|acct| {
        acct.entries
            .last()
            .filter(|e| e.seq == seq && e.n_offline > 0 && e.last_offline_id > acct.delivered_up_to)
    });
    let Some((start, end)) = undelivered.fold(None, |range: Option<(u64, u64)>, e| {
        Some(range.map_or((e.start, e.end), |(s, t)| (s.min(e.start), t.max(e.end))))
    }) else {
        return Ok(());
    };
    let mut window = Window::new(segment.file, segment.len, buf);
    let mut offset = start;
    while offset < end {
        let payload = segment::read_indexed_frame(&mut window, path, offset)?;
        let payload_offset = offset + FRAME_HEADER_BYTES as u64;
        for record in payload_records(payload) {
            let (_, view) = record.map_err(|e| invalid_record(path, payload_offset, &e))?;
            if let RecordView::Message(m) = view
                && pending_at_close(index, &m)
            {
                enc.offline_item(offset, m.account, m.id)
                    .map_err(|e| sink.invalid(e))?;
            }
        }
        offset = payload_offset + payload.len() as u64;
        sink.flush(enc)?;
    }
    Ok(())
}

/// An OFFLINE message of the segment being summarised that no marker so far covers (a
/// marker never covers a message written after it, so only the segment's own can).
fn pending_at_close(index: &Index, m: &MessageView<'_>) -> bool {
    m.has(flags::OFFLINE)
        && index
            .accounts
            .get(m.account)
            .is_some_and(|acct| m.id > acct.delivered_up_to && m.id >= acct.deleted_below)
}

/// Where a summary's bytes go as its frames fill.
struct SummarySink<'f> {
    out: &'f File,
    at: u64,
    path: std::path::PathBuf,
}

impl SummarySink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        self.out
            .write_all_at(bytes, self.at)
            .map_err(io_error(&self.path))?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self, enc: &mut SummaryEncoder) -> Result<(), StoreError> {
        if enc.sealed().len() >= SUMMARY_FRAME_BYTES {
            self.write(enc.sealed())?;
            enc.consume_sealed();
        }
        Ok(())
    }

    fn invalid(&self, e: super::format::EncodeError) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            error: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pending offline messages
// ---------------------------------------------------------------------------------------

/// Reads the offline messages still pending once the index is loaded and retention
/// applied: those queued in segments that still exist, not older than `cutoff_ts`. Reads
/// only the frames holding them (each frame once), in file order; all accounts, in id
/// order. A damaged frame there is corruption: a pending message is never dropped unsaid.
pub fn read_pending_offline(
    dir: &Path,
    index: &Index,
    queues: OfflineQueues,
    cutoff_ts: u64,
    buf: &mut Vec<u8>,
) -> Result<Vec<ArchivedMessage>, StoreError> {
    let mut refs: Vec<PendingRef> = queues
        .into_values()
        .flatten()
        .filter(|p| index.segments.contains_key(&p.seq))
        .collect();
    refs.sort_unstable_by_key(|p| (p.seq, p.frame, p.id));
    let mut pending = Vec::new();
    let mut rest = refs.as_slice();
    while let Some(first) = rest.first() {
        let in_segment = rest.partition_point(|p| p.seq == first.seq);
        let (these, later) = rest.split_at(in_segment);
        read_pending_in_segment(dir, first.seq, these, cutoff_ts, buf, &mut pending)?;
        rest = later;
    }
    pending.sort_unstable_by_key(|m| m.id);
    Ok(pending)
}

fn read_pending_in_segment(
    dir: &Path,
    seq: u64,
    refs: &[PendingRef],
    cutoff_ts: u64,
    buf: &mut Vec<u8>,
    pending: &mut Vec<ArchivedMessage>,
) -> Result<(), StoreError> {
    let path = segment::segment_path(dir, seq);
    let (file, file_len) = segment::open_segment(&path, false)?;
    let mut window = Window::sparse(&file, file_len, buf);
    let mut rest = refs;
    while let Some(first) = rest.first() {
        let in_frame = rest.partition_point(|p| p.frame == first.frame);
        let (wanted, later) = rest.split_at(in_frame);
        let payload = segment::read_indexed_frame(&mut window, &path, first.frame)?;
        let payload_offset = first.frame + FRAME_HEADER_BYTES as u64;
        let mut found = 0;
        for record in payload_records(payload) {
            let (_, view) = record.map_err(|e| invalid_record(&path, payload_offset, &e))?;
            if let RecordView::Message(m) = view
                && m.has(flags::OFFLINE)
                && wanted.binary_search_by_key(&m.id, |p| p.id).is_ok()
            {
                found += 1;
                if m.ts_ms >= cutoff_ts {
                    pending.push(m.to_owned_message());
                }
            }
        }
        if found != wanted.len() {
            return Err(corrupt(
                &path,
                first.frame,
                "an offline message its summary lists is not in this frame",
            ));
        }
        rest = later;
    }
    Ok(())
}
