//! In-memory store for tests, with failure injection (e.g. a full disk).

use super::{Store, StoreError};
use crate::db::{Db, Record};

#[derive(Default)]
pub struct MemoryStore {
    pub records: Vec<Record>,
    /// When set, the next appends fail as if the disk were full.
    pub fail_writes: bool,
}

impl Store for MemoryStore {
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        if self.fail_writes {
            return Err(StoreError::Io {
                path: "memory".into(),
                error: std::io::Error::other("injected write failure"),
            });
        }
        self.records.extend_from_slice(records);
        Ok(())
    }
    fn compact(&mut self, db: &Db) -> Result<(), StoreError> {
        self.records = db.to_records();
        Ok(())
    }
    fn wants_compaction(&self) -> bool {
        false
    }
}
