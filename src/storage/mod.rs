//! Durable storage of [`crate::db::Record`]s: the shell side of persistence.
//!
//! The core never calls this; the shell batches the records the core emits, appends them
//! with one fsync (group commit), then tells the core which changes are durable. STUB.

pub mod archive;
pub mod codec;
mod disk;
pub mod file;
pub mod memory;
#[cfg(test)]
mod test_files;

use std::fmt;
use std::path::PathBuf;

use crate::db::{Db, Record};

pub use file::{FileStore, LoadReport};
pub use memory::MemoryStore;

#[derive(Debug)]
pub enum StoreError {
    /// Another process holds the store's lock (a running server).
    Locked { path: PathBuf },
    /// An operating-system error, e.g. ENOSPC or EROFS.
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file that does not decode: names the file, the byte offset and what is wrong.
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// A file written by a newer (or unknown) format version.
    UnsupportedVersion { path: PathBuf, version: u32 },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked { path } => write!(
                f,
                "{}: locked by another process (is the server running?)",
                path.display()
            ),
            StoreError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            StoreError::Corrupt { path, offset, what } => {
                write!(f, "{}: damaged at byte {offset}: {what}", path.display())
            }
            StoreError::UnsupportedVersion { path, version } => {
                write!(
                    f,
                    "{}: format version {version} is not supported by this build",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for StoreError {}

/// Where records go. `append` returns only after the records are durable.
pub trait Store: Send {
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError>;
    /// Replaces snapshot + log with a snapshot of `db` and an empty log, atomically: a crash
    /// at any point leaves either the old pair or the new pair loadable.
    fn compact(&mut self, db: &Db) -> Result<(), StoreError>;
    /// Whether the log has grown enough that `compact` should run.
    fn wants_compaction(&self) -> bool;
}
