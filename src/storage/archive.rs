//! The message archive on disk. STUB: interface only (see `crate::archive` for the types).

use std::path::{Path, PathBuf};

use super::StoreError;
use crate::archive::{ArchivePage, ArchiveQuery, ArchiveRecord, ArchivedMessage};

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

/// What opening the archive found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveLoad {
    /// The id the next message must have (one more than the highest ever written).
    pub next_id: u64,
    /// Offline messages not yet delivered, per account, oldest first.
    pub offline: Vec<ArchivedMessage>,
    /// Bytes of an unfinished last record dropped (a crash during a write).
    pub torn_tail_bytes: u64,
}

pub struct ArchiveStore {
    dir: PathBuf,
}

impl ArchiveStore {
    pub fn open(
        dir: &Path,
        limits: ArchiveLimits,
        now_ms: u64,
    ) -> Result<(ArchiveStore, ArchiveLoad), StoreError> {
        let _ = (limits, now_ms);
        Ok((
            ArchiveStore {
                dir: dir.to_path_buf(),
            },
            ArchiveLoad {
                next_id: 1,
                ..ArchiveLoad::default()
            },
        ))
    }

    /// Appends records with one write and one fsync.
    pub fn append(&mut self, records: &[ArchiveRecord]) -> Result<(), StoreError> {
        let _ = records;
        Ok(())
    }

    /// Answers a query from the segment files.
    pub fn query(&mut self, q: &ArchiveQuery, now_ms: u64) -> Result<ArchivePage, StoreError> {
        let _ = (q, now_ms);
        Ok(ArchivePage::default())
    }

    /// Applies age and size retention (called from time to time by the shell).
    pub fn enforce_retention(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let _ = now_ms;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
