//! Crash-safe file store: a snapshot plus a checksummed append-only log.
//!
//! # Files in the store directory (created 0700; every file 0600, it holds SCRAM keys)
//! - `lock`: held with an exclusive `flock` for the life of the [`FileStore`], so a second
//!   server (or `xmppd` admin command) on the same directory gets [`StoreError::Locked`].
//! - `snapshot`: header (generation G, record count) + frames holding the whole state as of
//!   generation G. Absent until the first compaction (then G = 0 and the state is empty).
//! - `log`: header (generation G) + one frame per [`Store::append`]: the changes made since
//!   the snapshot of the same generation.
//! - `snapshot.tmp`, `log.tmp`: compaction in progress; deleted on open.
//!
//! Byte layouts are in [`super::codec`].
//!
//! # Loading
//! The snapshot is written with temp + fsync + rename, so nothing short of a damaged disk
//! can leave it half-written: any fault in it is [`StoreError::Corrupt`] naming the byte,
//! and the store refuses to open rather than start with part of the accounts.
//!
//! The log is replayed if its generation equals the snapshot's, ignored if older (see
//! compaction), and refused if newer (the snapshot it builds on is missing or was replaced
//! by an older copy: its records alone would silently lose everything before them).
//!
//! ## Torn tails: the rule
//! A frame at offset X is *damaged* if its 8-byte header is cut off by the end of the file,
//! its length is out of range, its payload runs past the end, or its CRC does not match.
//! A damaged frame is a **torn tail** (dropped, the file truncated to X, reported in
//! [`LoadReport::torn_tail_bytes`]) if and only if **no intact frame starts at any byte
//! offset after X**, intact meaning: a length in range, the payload inside the file, and
//! a matching CRC. Otherwise it is [`StoreError::Corrupt`] at X and nothing is touched.
//!
//! Why that is sound: each append writes one frame (batches over 1 MiB, which the server
//! never produces, are split) with one write and one fdatasync, and the next append only
//! starts after that returned. A crash can therefore only damage the *last* frame, and
//! nothing is ever written after it. So an intact frame after damage proves a later append
//! happened, hence the damaged one was acknowledged: dropping it would lose data, and the
//! store refuses. Every byte offset is tried, not just the one the damaged length points
//! to, because the length itself may be what is damaged.
//!
//! Why one frame per append, and not one per record: a disk (an SD card in particular) may
//! persist the sectors of an interrupted write in any order, so the end of a torn batch can
//! survive while its middle is lost. With a frame per record that would leave intact frames
//! after a damaged one and a power cut would stop the server from starting; with a frame
//! per batch the whole batch fails its single CRC and is recognised as torn.
//!
//! What the rule cannot tell apart: damage to the last acknowledged frame (bit rot, not a
//! crash) looks exactly like a torn write and is dropped too; the report makes the caller
//! log it. A frame with a good CRC whose records do not decode was written that way (a
//! newer build, a bug), never torn, and is always `Corrupt`.
//!
//! Cost: the scan after a damaged frame reads to the end of the file once and checks a CRC
//! wherever a plausible length appears; the tail of a crashed log is one batch, so this is
//! small. Opening never compacts: if the log is already over the threshold,
//! [`Store::wants_compaction`] says so at once and the caller compacts when it suits it.
//!
//! # Compaction and crashes
//! `compact` (1) writes `snapshot.tmp` with generation G+1, fsyncs it, (2) renames it over
//! `snapshot`, (3) fsyncs the directory, (4) writes `log.tmp` (an empty log of generation
//! G+1), fsyncs it, (5) renames it over `log`, (6) fsyncs the directory. A crash:
//! - before (2) is durable: the old snapshot and log (both G) are intact; the temp file is
//!   deleted on open.
//! - after (2), before (5) is durable: snapshot G+1 and log G. The log's records are all
//!   in the new snapshot (it was made from the state they built), so a log older than the
//!   snapshot is ignored; open then writes a fresh log G+1 before accepting appends, since
//!   appends to a stale log would be ignored at the next load.
//! - after (5): snapshot G+1 and empty log G+1, the new pair.
//!
//! The fsync in (3) also orders the renames: a new log may only become durable after the
//! new snapshot has, or a crash could pair an old snapshot with an empty new log (newer
//! log: refused, but the old log's records would be gone). So every path that installs a
//! log (compaction, a retry after a failed compaction, and open after a crash) fsyncs the
//! directory first.
//!
//! # Failed appends
//! If the write or the fdatasync fails (ENOSPC, EIO), the log is truncated back to its last
//! good length before the error is returned, so the next successful append cannot bury a
//! half-written frame in the middle of the log (which the next load would have to call
//! corruption). If even the truncation fails, the store refuses every later append until
//! it is reopened (the load then drops the half frame as a torn tail) or compacted (which
//! replaces the log). The records of a failed append may or may not survive a crash, as
//! with any failed fsync; they are never half-applied, a frame being all or nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::codec::{
    self, FRAME_HEADER_BYTES, LOG_HEADER_BYTES, LogHeader, SNAPSHOT_HEADER_BYTES, SnapshotHeader,
};
use super::disk::{
    Fault, Frame, LOCK_FILE, READ_WINDOW_BYTES, Window, corrupt, create_by_rename,
    create_private_dir, create_private_file, frame_payload, header_error, invalid_record, io_error,
    read_frame, read_header_bytes, sync_dir, take_lock, truncate, truncate_torn_tail,
    write_and_sync,
};
use super::{Store, StoreError};
use crate::db::{Db, Record};

const SNAPSHOT_FILE: &str = "snapshot";
const LOG_FILE: &str = "log";
const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";
const LOG_TMP_FILE: &str = "log.tmp";

const BAD_MAGIC: &str = "not an xmppd store file (bad magic)";

/// Records per group when writing a snapshot: bounds the encode buffer to tens of KiB.
const SNAPSHOT_RECORDS_PER_FRAME: usize = 64;

use crate::limits::STORE_KEEP_BUFFER_BYTES as KEEP_BUFFER_BYTES;

/// What loading found, for the start-up log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub snapshot_records: u64,
    pub log_records: u64,
    /// Bytes of an incomplete last record (a write cut short by a crash) that were dropped.
    /// Precisely: the damaged last frame, i.e. the last append (see "Torn tails" above);
    /// non-zero deserves a warning in the start-up log.
    pub torn_tail_bytes: u64,
    /// Generation of the snapshot (0 before the first compaction).
    pub generation: u64,
    /// A log older than the snapshot was found and replaced: a compaction was interrupted
    /// after its snapshot was in place. Its records are in the snapshot; nothing was lost.
    pub stale_log_discarded: bool,
}

pub struct FileStore {
    dir: PathBuf,
    /// Holds the exclusive lock until dropped.
    _lock: File,
    /// Generation of the snapshot on disk, which the live log must carry.
    generation: u64,
    log: LogState,
    compact_log_bytes: u64,
    /// Reused between appends so that group commit does not allocate every time.
    buf: Vec<u8>,
    fault: Fault,
}

enum LogState {
    /// `len` is the end of the last good frame; appends write there.
    Open { file: File, len: u64 },
    /// No log of the current generation exists yet (a compaction stopped after its
    /// snapshot was in place): the next append or compaction creates one first.
    Missing,
    /// A failed append could not be truncated away: appends are refused until reopen or
    /// compaction.
    Poisoned,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, takes its exclusive lock, loads it.
    pub fn open(
        dir: &Path,
        compact_log_bytes: u64,
    ) -> Result<(FileStore, Db, LoadReport), StoreError> {
        create_private_dir(dir)?;
        let lock = take_lock(&dir.join(LOCK_FILE))?;
        for leftover in [SNAPSHOT_TMP_FILE, LOG_TMP_FILE] {
            remove_if_present(&dir.join(leftover))?;
        }
        let mut db = Db::default();
        let mut report = LoadReport::default();
        if let Some(header) = load_snapshot(&dir.join(SNAPSHOT_FILE), &mut db)? {
            report.generation = header.generation;
            report.snapshot_records = header.records;
        }
        let log = load_log(&dir.join(LOG_FILE), &mut db, &mut report)?;
        let mut store = FileStore {
            dir: dir.to_path_buf(),
            _lock: lock,
            generation: report.generation,
            log,
            compact_log_bytes,
            buf: Vec::new(),
            fault: Fault::default(),
        };
        store.ensure_log()?;
        Ok((store, db, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Generation of the current snapshot; each compaction adds one.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes of records in the live log (its header not counted).
    pub fn log_bytes(&self) -> u64 {
        match &self.log {
            LogState::Open { len, .. } => len.saturating_sub(LOG_HEADER_BYTES as u64),
            LogState::Missing | LogState::Poisoned => 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Makes sure a log of the current generation is open for appending.
    fn ensure_log(&mut self) -> Result<(), StoreError> {
        match self.log {
            LogState::Open { .. } => Ok(()),
            LogState::Poisoned => Err(StoreError::Io {
                path: self.path(LOG_FILE),
                error: io::Error::other(
                    "an earlier failed append could not be undone; reopen the store",
                ),
            }),
            LogState::Missing => {
                let file = install_new_log(&self.dir, self.generation, self.fault)?;
                self.log = LogState::Open {
                    file,
                    len: LOG_HEADER_BYTES as u64,
                };
                Ok(())
            }
        }
    }
}

impl Store for FileStore {
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let log_path = self.path(LOG_FILE);
        self.buf.clear();
        codec::encode_frames(records, &mut self.buf).map_err(|e| StoreError::Io {
            path: log_path.clone(),
            error: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        self.ensure_log()?;
        let fault = self.fault;
        let LogState::Open { file, len } = &mut self.log else {
            return Err(StoreError::Io {
                path: log_path,
                error: io::Error::other("log is not open"),
            });
        };
        let result = write_and_sync(file, *len, &self.buf, fault);
        match result {
            Ok(()) => *len += self.buf.len() as u64,
            Err(error) => {
                // Not synced: if the cut is lost in a crash, the half frame is a torn tail
                // at the next load; if not, the next append's fdatasync persists the length
                // it writes over.
                if truncate(file, *len, fault).is_err() {
                    self.log = LogState::Poisoned;
                }
                return Err(StoreError::Io {
                    path: log_path,
                    error,
                });
            }
        }
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        Ok(())
    }

    fn compact(&mut self, db: &Db) -> Result<(), StoreError> {
        let next = self
            .generation
            .checked_add(1)
            .ok_or_else(|| StoreError::Io {
                path: self.path(SNAPSHOT_FILE),
                error: io::Error::other("generation counter exhausted"),
            })?;
        let tmp = self.path(SNAPSHOT_TMP_FILE);
        if let Err(e) = write_snapshot_file(&tmp, next, &db.to_records()) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Err(error) = fs::rename(&tmp, self.path(SNAPSHOT_FILE)) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io { path: tmp, error });
        }
        // The snapshot of `next` is in place: the open log is stale from here on, and
        // appending to it would be ignored at the next load.
        self.generation = next;
        self.log = LogState::Missing;
        self.ensure_log()
    }

    /// Also true for a poisoned log: compaction replaces it with a fresh one.
    fn wants_compaction(&self) -> bool {
        match self.log {
            LogState::Open { len, .. } => {
                len.saturating_sub(LOG_HEADER_BYTES as u64) > self.compact_log_bytes
            }
            LogState::Missing => false,
            LogState::Poisoned => true,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------------------

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

fn open_existing(path: &Path, write: bool) -> Result<Option<(File, u64)>, StoreError> {
    match OpenOptions::new().read(true).write(write).open(path) {
        Ok(file) => {
            let len = file.metadata().map_err(io_error(path))?.len();
            Ok(Some((file, len)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Applies the snapshot to `db`. `None` if there is no snapshot (before the first
/// compaction). Any damage is an error: a snapshot is never written in place.
fn load_snapshot(path: &Path, db: &mut Db) -> Result<Option<SnapshotHeader>, StoreError> {
    let Some((file, file_len)) = open_existing(path, false)? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    let mut window = Window::new(&file, file_len, &mut buf);
    let header =
        SnapshotHeader::decode(read_header_bytes(&mut window, path, SNAPSHOT_HEADER_BYTES)?)
            .map_err(|e| header_error(path, e, BAD_MAGIC))?;
    let mut offset = SNAPSHOT_HEADER_BYTES as u64;
    let mut records = 0;
    loop {
        match read_frame(&mut window, offset).map_err(io_error(path))? {
            Frame::End => break,
            Frame::Damaged { what } => return Err(corrupt(path, offset, what)),
            Frame::Intact { payload_len } => {
                records += apply_frame(&mut window, path, offset, payload_len, db)?;
                offset += (FRAME_HEADER_BYTES + payload_len) as u64;
            }
        }
    }
    if records != header.records {
        return Err(corrupt(
            path,
            offset,
            format!(
                "snapshot holds {records} records but its header says {}",
                header.records
            ),
        ));
    }
    Ok(Some(header))
}

/// Replays the log onto `db` if it belongs to the snapshot's generation, truncating a torn
/// tail (see the module doc for the rule).
fn load_log(path: &Path, db: &mut Db, report: &mut LoadReport) -> Result<LogState, StoreError> {
    // A missing log with a snapshot present is not a crash state (logs are replaced by
    // rename, never deleted); it is a directory restored from a snapshot alone. Nothing
    // written after that snapshot is known, so start from it.
    let Some((file, file_len)) = open_existing(path, true)? else {
        return Ok(LogState::Missing);
    };
    let mut buf = Vec::new();
    let mut window = Window::new(&file, file_len, &mut buf);
    let header = LogHeader::decode(read_header_bytes(&mut window, path, LOG_HEADER_BYTES)?)
        .map_err(|e| header_error(path, e, BAD_MAGIC))?;
    if header.generation < report.generation {
        report.stale_log_discarded = true;
        return Ok(LogState::Missing);
    }
    if header.generation > report.generation {
        return Err(corrupt(
            path,
            12,
            format!(
                "log generation {} is newer than the snapshot's ({}): the snapshot is missing \
                 or older than the log",
                header.generation, report.generation
            ),
        ));
    }
    let mut offset = LOG_HEADER_BYTES as u64;
    loop {
        match read_frame(&mut window, offset).map_err(io_error(path))? {
            Frame::End => break,
            Frame::Intact { payload_len } => {
                report.log_records += apply_frame(&mut window, path, offset, payload_len, db)?;
                offset += (FRAME_HEADER_BYTES + payload_len) as u64;
            }
            Frame::Damaged { what } => {
                report.torn_tail_bytes = truncate_torn_tail(&mut window, path, offset, what)?;
                break;
            }
        }
    }
    Ok(LogState::Open { file, len: offset })
}

fn apply_frame(
    window: &mut Window<'_>,
    path: &Path,
    offset: u64,
    payload_len: usize,
    db: &mut Db,
) -> Result<u64, StoreError> {
    let payload = frame_payload(window, path, offset, payload_len)?;
    let payload_offset = offset + FRAME_HEADER_BYTES as u64;
    codec::decode_frame_payload(payload, |record| db.apply(&record))
        .map_err(|e| invalid_record(path, payload_offset, &e))
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

fn write_snapshot_file(path: &Path, generation: u64, records: &[Record]) -> Result<(), StoreError> {
    let file = create_private_file(path)?;
    let header = SnapshotHeader {
        generation,
        records: records.len() as u64,
    };
    let mut out = BufWriter::with_capacity(READ_WINDOW_BYTES, &file);
    out.write_all(&header.encode()).map_err(io_error(path))?;
    let mut frames = Vec::new();
    for group in records.chunks(SNAPSHOT_RECORDS_PER_FRAME) {
        frames.clear();
        codec::encode_frames(group, &mut frames).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            error: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        out.write_all(&frames).map_err(io_error(path))?;
    }
    out.flush().map_err(io_error(path))?;
    drop(out);
    file.sync_all().map_err(io_error(path))
}

/// Installs an empty log for `generation` by temp + fsync + rename + directory fsync, and
/// returns it open for appending. The directory is fsynced first so that the snapshot this
/// log belongs to is durable before the log can be (see "Compaction and crashes").
fn install_new_log(dir: &Path, generation: u64, fault: Fault) -> Result<File, StoreError> {
    sync_dir(dir)?;
    let tmp = dir.join(LOG_TMP_FILE);
    #[cfg(test)]
    if fault.create {
        return Err(StoreError::Io {
            path: tmp,
            error: io::Error::other("injected log creation failure"),
        });
    }
    let _ = fault;
    let header = LogHeader { generation }.encode();
    let file = create_by_rename(&tmp, &dir.join(LOG_FILE), &header)?;
    sync_dir(dir)?;
    // The handle still refers to the renamed file.
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{RosterItem, Subscription};
    use crate::sasl::Credentials;
    use crate::storage::test_files::{TempDir, file_len, mode, read, write};

    const NO_COMPACTION: u64 = u64::MAX;

    fn open(dir: &TempDir) -> (FileStore, Db, LoadReport) {
        match FileStore::open(dir.path(), NO_COMPACTION) {
            Ok(opened) => opened,
            Err(e) => panic!("open failed: {e}"),
        }
    }

    fn user(name: &str) -> Record {
        Record::UserSet {
            user: name.into(),
            credentials: Credentials::filled(name.len() as u8),
        }
    }

    fn contact(owner: &str, jid: &str, ver: u64) -> Record {
        Record::RosterSet {
            user: owner.into(),
            ver,
            jid: jid.into(),
            item: RosterItem {
                name: Some(format!("{jid} ☺")),
                groups: vec!["Friends".into()],
                subscription: Subscription::Both,
                ask: false,
            },
        }
    }

    /// Three batches, each a separate append (so a separate frame).
    fn batches() -> Vec<Vec<Record>> {
        vec![
            vec![user("alice"), contact("alice", "bob@x", 1)],
            vec![user("bob"), contact("bob", "alice@x", 1)],
            vec![
                contact("alice", "carol@x", 2),
                Record::PendingInSet {
                    user: "bob".into(),
                    jid: "eve@x".into(),
                    status: Some("hello".into()),
                },
            ],
        ]
    }

    fn db_of(batches: &[Vec<Record>]) -> Db {
        let mut db = Db::default();
        for r in batches.iter().flatten() {
            db.apply(r);
        }
        db
    }

    fn append(store: &mut FileStore, records: &[Record]) {
        if let Err(e) = store.append(records) {
            panic!("append failed: {e}");
        }
    }

    /// A store holding `batches()` in its log (generation 0); returns the frame offsets.
    fn store_with_batches(dir: &TempDir) -> Vec<u64> {
        let (mut store, _, _) = open(dir);
        let mut offsets = Vec::new();
        for batch in batches() {
            offsets.push(file_len(&dir.file(LOG_FILE)));
            append(&mut store, &batch);
        }
        offsets
    }

    fn frame_bytes(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(codec::encode_frames(records, &mut out), Ok(1));
        out
    }

    #[test]
    fn new_store_is_empty_and_private() {
        let root = TempDir::new("private");
        let dir = TempDir(root.file("nested/store"));
        let (_store, db, report) = open(&dir);
        assert_eq!(db, Db::default());
        assert_eq!(report, LoadReport::default());
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.file(LOCK_FILE)), 0o600);
        assert_eq!(mode(&dir.file(LOG_FILE)), 0o600);
        assert_eq!(file_len(&dir.file(LOG_FILE)), LOG_HEADER_BYTES as u64);
    }

    #[test]
    fn second_open_is_locked_until_the_first_is_dropped() {
        let dir = TempDir::new("lock");
        let (store, _, _) = open(&dir);
        match FileStore::open(dir.path(), NO_COMPACTION) {
            Err(StoreError::Locked { path }) => assert_eq!(path, dir.file(LOCK_FILE)),
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        drop(store);
        assert!(FileStore::open(dir.path(), NO_COMPACTION).is_ok());
    }

    #[test]
    fn appends_survive_reopen_one_frame_per_append() {
        let dir = TempDir::new("append");
        let offsets = store_with_batches(&dir);
        // Each append added exactly one frame of its records.
        for (i, batch) in batches().iter().enumerate() {
            let end = offsets
                .get(i + 1)
                .copied()
                .unwrap_or(file_len(&dir.file(LOG_FILE)));
            assert_eq!(end - offsets[i], frame_bytes(batch).len() as u64);
        }
        let (mut store, db, report) = open(&dir);
        assert_eq!(db, db_of(&batches()));
        assert_eq!(report.log_records, 6);
        assert_eq!(report.torn_tail_bytes, 0);
        let before = file_len(&dir.file(LOG_FILE));
        append(&mut store, &[]);
        assert_eq!(file_len(&dir.file(LOG_FILE)), before);
    }

    #[test]
    fn torn_tails_are_truncated_and_reported() {
        let c = frame_bytes(&[user("carol"), contact("carol", "d@x", 1)]);
        let half = c.get(..c.len() / 2).unwrap_or(&[]).to_vec();
        // The data blocks of an extended file never written: the length is right, the
        // content is zeros.
        let zeros = vec![0; c.len()];
        // Sectors persisted out of order: the end of the frame is there, its middle not.
        let mut holed = c.clone();
        for b in holed.iter_mut().skip(12).take(16) {
            *b = 0;
        }
        let short_header = c.get(..3).unwrap_or(&[]).to_vec();
        for tail in [half, zeros, holed, short_header] {
            let dir = TempDir::new("torn");
            store_with_batches(&dir);
            let log = dir.file(LOG_FILE);
            let good_len = file_len(&log);
            let mut bytes = read(&log);
            bytes.extend_from_slice(&tail);
            write(&log, &bytes);

            let (mut store, db, report) = open(&dir);
            assert_eq!(db, db_of(&batches()));
            assert_eq!(report.torn_tail_bytes, tail.len() as u64);
            assert_eq!(file_len(&log), good_len);
            append(&mut store, &[user("dave")]);
            drop(store);

            let (_, db, report) = open(&dir);
            let mut expected = batches();
            expected.push(vec![user("dave")]);
            assert_eq!(db, db_of(&expected));
            assert_eq!(report.torn_tail_bytes, 0);
        }
    }

    fn expect_corrupt(dir: &TempDir, file: &str, offset: u64) {
        match FileStore::open(dir.path(), NO_COMPACTION) {
            Err(StoreError::Corrupt {
                path, offset: at, ..
            }) => {
                assert_eq!(path, dir.file(file));
                assert_eq!(at, offset);
            }
            other => panic!("expected Corrupt at {offset}, got {:?}", other.map(|r| r.2)),
        }
    }

    #[test]
    fn damage_before_intact_frames_is_corruption_and_left_untouched() {
        let dir = TempDir::new("corrupt");
        let offsets = store_with_batches(&dir);
        let log = dir.file(LOG_FILE);
        let pristine = read(&log);
        let middle = offsets[1] as usize;

        let mut flipped = pristine.clone();
        flipped[middle + 10] ^= 0x04;
        write(&log, &flipped);
        expect_corrupt(&dir, LOG_FILE, offsets[1]);
        assert_eq!(read(&log), flipped, "a refused log must not be modified");

        // A damaged length cannot hide the frames after it.
        let mut huge = pristine.clone();
        huge[middle..middle + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        write(&log, &huge);
        expect_corrupt(&dir, LOG_FILE, offsets[1]);
        let mut long = pristine.clone();
        long[middle] = long[middle].wrapping_add(1);
        write(&log, &long);
        expect_corrupt(&dir, LOG_FILE, offsets[1]);

        match FileStore::open(dir.path(), NO_COMPACTION) {
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains(&log.display().to_string()), "{text}");
                assert!(text.contains(&format!("byte {}", offsets[1])), "{text}");
            }
            Ok(_) => panic!("damaged log opened"),
        }
    }

    #[test]
    fn a_bit_flip_anywhere_in_the_log_is_caught() {
        let dir = TempDir::new("flips");
        let offsets = store_with_batches(&dir);
        let log = dir.file(LOG_FILE);
        let pristine = read(&log);
        let last = offsets[2] as usize;
        let all_but_last = db_of(&batches()[..2]);
        for pos in 0..pristine.len() {
            let mut damaged = pristine.clone();
            damaged[pos] ^= 1 << (pos % 8);
            write(&log, &damaged);
            let result = FileStore::open(dir.path(), NO_COMPACTION);
            if pos < LOG_HEADER_BYTES {
                assert!(
                    matches!(
                        result,
                        Err(StoreError::Corrupt { .. } | StoreError::UnsupportedVersion { .. })
                    ),
                    "header flip at {pos} not refused"
                );
            } else if pos >= last {
                match result {
                    Ok((_, db, report)) => {
                        assert_eq!(db, all_but_last, "flip at {pos}");
                        assert_eq!(report.torn_tail_bytes, (pristine.len() - last) as u64);
                    }
                    Err(e) => panic!("flip at {pos} in the last frame: {e}"),
                }
            } else {
                let frame = offsets.iter().rev().find(|&&o| o as usize <= pos).copied();
                match result {
                    Err(StoreError::Corrupt { offset, .. }) => {
                        assert_eq!(Some(offset), frame, "flip at {pos}")
                    }
                    other => panic!("flip at {pos}: {:?}", other.map(|r| r.2)),
                }
            }
        }
    }

    #[test]
    fn valid_checksum_with_invalid_record_is_corruption_even_at_the_end() {
        let dir = TempDir::new("badrecord");
        store_with_batches(&dir);
        let log = dir.file(LOG_FILE);
        let at = file_len(&log);
        // A well-formed frame around a record with tag 99 (say, from a newer build).
        let payload = [2, 0, 0, 0, 99, 0];
        let len = (payload.len() as u32).to_le_bytes();
        let crc = codec::crc32c_update(codec::crc32c(&len), &payload);
        let mut bytes = read(&log);
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&payload);
        write(&log, &bytes);
        match FileStore::open(dir.path(), NO_COMPACTION) {
            Err(StoreError::Corrupt { offset, what, .. }) => {
                assert_eq!(offset, at + 12);
                assert!(what.contains("unknown record tag 99"), "{what}");
            }
            other => panic!("expected Corrupt, got {:?}", other.map(|r| r.2)),
        }
    }

    #[test]
    fn newer_versions_are_refused_by_version() {
        let dir = TempDir::new("version");
        store_with_batches(&dir);
        let log = dir.file(LOG_FILE);
        let mut bytes = read(&log);
        bytes[8] = 3;
        write(&log, &bytes);
        match FileStore::open(dir.path(), NO_COMPACTION) {
            Err(StoreError::UnsupportedVersion { path, version }) => {
                assert_eq!((path, version), (log, 3));
            }
            other => panic!("expected UnsupportedVersion, got {:?}", other.map(|r| r.2)),
        }
    }

    #[test]
    fn compaction_then_reopen_keeps_everything() {
        let dir = TempDir::new("compact");
        store_with_batches(&dir);
        let (mut store, mut db, _) = open(&dir);
        assert_eq!(store.compact(&db).map_err(|e| e.to_string()), Ok(()));
        assert_eq!(store.generation(), 1);
        assert_eq!(store.log_bytes(), 0);
        assert_eq!(file_len(&dir.file(LOG_FILE)), LOG_HEADER_BYTES as u64);
        assert_eq!(mode(&dir.file(SNAPSHOT_FILE)), 0o600);
        assert_eq!(mode(&dir.file(LOG_FILE)), 0o600);
        let later = [user("zoe"), Record::UserDelete { user: "bob".into() }];
        append(&mut store, &later);
        for r in &later {
            db.apply(r);
        }
        drop(store);

        let (mut store, loaded, report) = open(&dir);
        assert_eq!(loaded, db);
        assert_eq!(report.generation, 1);
        assert_eq!(
            report.snapshot_records,
            db_of(&batches()).to_records().len() as u64
        );
        assert_eq!(report.log_records, 2);
        assert!(!report.stale_log_discarded);
        // A second compaction moves on to generation 2.
        assert!(store.compact(&loaded).is_ok());
        drop(store);
        let (_, again, report) = open(&dir);
        assert_eq!(again, db);
        assert_eq!((report.generation, report.log_records), (2, 0));
    }

    #[test]
    fn every_crash_point_of_compaction_loads_all_data() {
        // Each case builds by hand the files a crash after one step leaves behind, on top
        // of a store whose data sits in a generation-0 log.
        let expected = db_of(&batches());
        let snapshot_of = |dir: &TempDir, name: &str| {
            assert!(write_snapshot_file(&dir.file(name), 1, &expected.to_records()).is_ok());
        };
        let new_log_at = |dir: &TempDir, name: &str| {
            write(&dir.file(name), &LogHeader { generation: 1 }.encode());
        };
        type Step = fn(&TempDir, &dyn Fn(&TempDir, &str), &dyn Fn(&TempDir, &str));
        let steps: [(&str, Step, bool); 6] = [
            (
                "partial snapshot.tmp",
                |d, _, _| write(&d.file(SNAPSHOT_TMP_FILE), b"XMPPDSNP\x01\x00"),
                false,
            ),
            (
                "complete snapshot.tmp, not renamed",
                |d, snap, _| snap(d, SNAPSHOT_TMP_FILE),
                false,
            ),
            (
                "snapshot renamed, old log left",
                |d, snap, _| snap(d, SNAPSHOT_FILE),
                true,
            ),
            (
                "snapshot renamed, partial log.tmp",
                |d, snap, _| {
                    snap(d, SNAPSHOT_FILE);
                    write(&d.file(LOG_TMP_FILE), b"XMPPDLOG");
                },
                true,
            ),
            (
                "snapshot renamed, complete log.tmp",
                |d, snap, log| {
                    snap(d, SNAPSHOT_FILE);
                    log(d, LOG_TMP_FILE);
                },
                true,
            ),
            (
                "both renamed",
                |d, snap, log| {
                    snap(d, SNAPSHOT_FILE);
                    log(d, LOG_FILE);
                },
                false,
            ),
        ];
        for (name, step, stale) in steps {
            let dir = TempDir::new("crash");
            store_with_batches(&dir);
            step(&dir, &snapshot_of, &new_log_at);

            let (mut store, db, report) = open(&dir);
            assert_eq!(db, expected, "{name}");
            assert_eq!(report.stale_log_discarded, stale, "{name}");
            assert!(!dir.file(SNAPSHOT_TMP_FILE).exists(), "{name}");
            assert!(!dir.file(LOG_TMP_FILE).exists(), "{name}");
            // Appends after the recovery must land in a log the next load replays.
            append(&mut store, &[user("after")]);
            drop(store);
            let (_, db, _) = open(&dir);
            let mut with_after = expected.clone();
            with_after.apply(&user("after"));
            assert_eq!(db, with_after, "{name}");
        }
    }

    #[test]
    fn log_newer_than_snapshot_is_refused() {
        let dir = TempDir::new("newer");
        store_with_batches(&dir);
        let (mut store, db, _) = open(&dir);
        assert!(store.compact(&db).is_ok());
        drop(store);
        let _ = fs::remove_file(dir.file(SNAPSHOT_FILE));
        expect_corrupt(&dir, LOG_FILE, 12);
    }

    #[test]
    fn any_damage_to_the_snapshot_is_refused() {
        let dir = TempDir::new("snapdamage");
        store_with_batches(&dir);
        let (mut store, db, _) = open(&dir);
        assert!(store.compact(&db).is_ok());
        drop(store);
        let snap = dir.file(SNAPSHOT_FILE);
        let pristine = read(&snap);
        for pos in 0..pristine.len() {
            let mut damaged = pristine.clone();
            damaged[pos] ^= 1 << (pos % 8);
            write(&snap, &damaged);
            let result = FileStore::open(dir.path(), NO_COMPACTION);
            assert!(
                matches!(
                    result,
                    Err(StoreError::Corrupt { .. } | StoreError::UnsupportedVersion { .. })
                ),
                "flip at {pos} accepted"
            );
        }
        // Cut at the end of the header: every frame gone, caught by the record count.
        write(&snap, &pristine[..SNAPSHOT_HEADER_BYTES]);
        expect_corrupt(&dir, SNAPSHOT_FILE, SNAPSHOT_HEADER_BYTES as u64);
        let mut longer = pristine.clone();
        longer.push(0);
        write(&snap, &longer);
        expect_corrupt(&dir, SNAPSHOT_FILE, pristine.len() as u64);
        write(&snap, &pristine);
        assert!(FileStore::open(dir.path(), NO_COMPACTION).is_ok());
    }

    #[test]
    fn a_failed_append_leaves_no_half_frame_behind() {
        for sync_fails in [false, true] {
            let dir = TempDir::new("failed");
            let (mut store, _, _) = open(&dir);
            let all = batches();
            append(&mut store, &all[0]);
            let good_len = file_len(&dir.file(LOG_FILE));
            store.fault.write = !sync_fails;
            store.fault.sync = sync_fails;
            match store.append(&all[1]) {
                Err(StoreError::Io { path, .. }) => assert_eq!(path, dir.file(LOG_FILE)),
                other => panic!("expected an Io error, got {other:?}"),
            }
            assert_eq!(file_len(&dir.file(LOG_FILE)), good_len);
            store.fault = Fault::default();
            append(&mut store, &all[2]);
            drop(store);
            let (_, db, report) = open(&dir);
            assert_eq!(db, db_of(&[all[0].clone(), all[2].clone()]));
            assert_eq!(report.torn_tail_bytes, 0);
        }
    }

    #[test]
    fn a_failed_truncate_refuses_appends_until_reopened() {
        let dir = TempDir::new("poisoned");
        let (mut store, _, _) = open(&dir);
        let all = batches();
        append(&mut store, &all[0]);
        store.fault.write = true;
        store.fault.truncate = true;
        assert!(store.append(&all[1]).is_err());
        store.fault = Fault::default();
        assert!(store.append(&all[2]).is_err(), "append after a failed undo");
        assert!(store.wants_compaction());
        drop(store);
        let (mut store, db, report) = open(&dir);
        assert_eq!(db, db_of(&all[..1]));
        assert!(report.torn_tail_bytes > 0);
        append(&mut store, &all[2]);
    }

    #[test]
    fn compaction_repairs_a_poisoned_log() {
        let dir = TempDir::new("repair");
        let (mut store, mut db, _) = open(&dir);
        let all = batches();
        append(&mut store, &all[0]);
        store.fault.write = true;
        store.fault.truncate = true;
        assert!(store.append(&all[1]).is_err());
        store.fault = Fault::default();
        for r in &all[0] {
            db.apply(r);
        }
        assert!(store.compact(&db).is_ok());
        append(&mut store, &all[2]);
        drop(store);
        let (_, loaded, report) = open(&dir);
        assert_eq!(loaded, db_of(&[all[0].clone(), all[2].clone()]));
        assert_eq!(report.torn_tail_bytes, 0);
    }

    #[test]
    fn appends_after_an_interrupted_compaction_go_to_the_new_generation() {
        let dir = TempDir::new("halfcompact");
        store_with_batches(&dir);
        let (mut store, db, _) = open(&dir);
        store.fault.create = true;
        assert!(store.compact(&db).is_err());
        // The snapshot of generation 1 is in place; the old log must not be written to.
        assert!(store.append(&[user("lost?")]).is_err());
        store.fault = Fault::default();
        append(&mut store, &[user("kept")]);
        drop(store);
        let (_, loaded, report) = open(&dir);
        let mut expected = db;
        expected.apply(&user("kept"));
        assert_eq!(loaded, expected);
        assert_eq!((report.generation, report.log_records), (1, 1));
    }

    #[test]
    fn oversized_records_are_refused_without_writing() {
        let dir = TempDir::new("oversized");
        let (mut store, _, _) = open(&dir);
        let before = file_len(&dir.file(LOG_FILE));
        let big = Record::UserDelete {
            user: "x".repeat(codec::MAX_FIELD_BYTES + 1),
        };
        match store.append(&[user("a"), big]) {
            Err(StoreError::Io { error, .. }) => {
                assert_eq!(error.kind(), io::ErrorKind::InvalidInput)
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        assert_eq!(file_len(&dir.file(LOG_FILE)), before);
        append(&mut store, &[user("a")]);
    }

    #[test]
    fn wants_compaction_past_the_threshold() {
        let dir = TempDir::new("threshold");
        let one = frame_bytes(&[user("alice")]).len() as u64;
        let opened = FileStore::open(dir.path(), one);
        let Ok((mut store, mut db, _)) = opened else {
            panic!("open failed");
        };
        assert!(!store.wants_compaction());
        append(&mut store, &[user("alice")]);
        assert!(!store.wants_compaction(), "at the threshold, not past it");
        append(&mut store, &[user("bob")]);
        assert!(store.wants_compaction());
        db.apply(&user("alice"));
        db.apply(&user("bob"));
        assert!(store.compact(&db).is_ok());
        assert!(!store.wants_compaction());
        drop(store);
        // Reopening an over-threshold log reports it at once.
        let (mut store, _, _) = open(&dir);
        append(&mut store, &[user("carol"), user("dave")]);
        drop(store);
        let Ok((store, _, _)) = FileStore::open(dir.path(), one) else {
            panic!("reopen failed");
        };
        assert!(store.wants_compaction());
    }

    #[test]
    fn a_missing_log_beside_a_snapshot_starts_from_the_snapshot() {
        let dir = TempDir::new("nolog");
        store_with_batches(&dir);
        let (mut store, db, _) = open(&dir);
        assert!(store.compact(&db).is_ok());
        drop(store);
        let _ = fs::remove_file(dir.file(LOG_FILE));
        let (_, loaded, report) = open(&dir);
        assert_eq!(loaded, db);
        assert_eq!(report.generation, 1);
        assert_eq!(
            file_len(&dir.file(LOG_FILE)),
            LOG_HEADER_BYTES as u64,
            "a fresh log was installed"
        );
    }

    #[test]
    fn large_snapshots_load_through_the_read_window() {
        let dir = TempDir::new("large");
        let (mut store, _, _) = open(&dir);
        let mut db = Db::default();
        let mut batch = Vec::new();
        for i in 0..40 {
            let name = format!("user{i}");
            batch.push(user(&name));
            for j in 0..50 {
                batch.push(contact(&name, &format!("contact{j}@example.org"), j));
            }
        }
        for r in &batch {
            db.apply(r);
        }
        append(&mut store, &batch);
        assert!(file_len(&dir.file(LOG_FILE)) > 2 * READ_WINDOW_BYTES as u64);
        drop(store);
        let (mut store, loaded, _) = open(&dir);
        assert_eq!(loaded, db);
        assert!(store.compact(&loaded).is_ok());
        drop(store);
        let (mut store, loaded, report) = open(&dir);
        assert_eq!(loaded, db);
        assert_eq!(report.snapshot_records, batch.len() as u64);

        // A large torn last frame: the scan for intact frames after it covers the whole
        // frame, byte by byte, and must still find none.
        let log = dir.file(LOG_FILE);
        let start = file_len(&log);
        append(&mut store, &batch);
        drop(store);
        let mut bytes = read(&log);
        let end = bytes.len();
        bytes[end - 1000] ^= 0x20;
        write(&log, &bytes);
        let (_, loaded, report) = open(&dir);
        assert_eq!(loaded, db);
        assert_eq!(report.torn_tail_bytes, end as u64 - start);
    }
}
