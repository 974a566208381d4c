//! File operations shared by the account store ([`super::file`]) and the message archive
//! ([`super::archive`]): private directories and files, the store lock, directory fsync,
//! positioned reads through a bounded window, frame checks, the torn-tail rule, and the
//! group-commit write. Both stores use the frames of [`super::codec`], so one reading of
//! the torn-tail rule (see the `file` module doc) serves both.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;

use super::StoreError;
use super::codec::{
    self, DecodeError, FRAME_HEADER_BYTES, FrameHeader, HeaderError, MIN_FRAME_PAYLOAD,
};

/// Both stores hold private data (SCRAM keys, correspondence): owner only.
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

pub const LOCK_FILE: &str = "lock";

pub use crate::limits::{READ_WINDOW_BYTES, SPARSE_READ_BYTES};

/// Failure injection for tests; empty (and free) in other builds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fault {
    /// The write of an append stops half-way and fails.
    #[cfg(test)]
    pub write: bool,
    /// The fdatasync after a complete write fails.
    #[cfg(test)]
    pub sync: bool,
    /// Undoing a failed write (the truncation) fails.
    #[cfg(test)]
    pub truncate: bool,
    /// Creating a new file fails: the account store's new log after a snapshot, the
    /// archive's new segment.
    #[cfg(test)]
    pub create: bool,
    /// Writing an archive segment's summary fails (it is optional: nothing else does).
    #[cfg(test)]
    pub summary: bool,
}

pub fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

pub fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// A record in a frame whose CRC matched does not decode: it was written that way (a newer
/// build, a bug), never torn, so it is corruption wherever it stands.
pub fn invalid_record(path: &Path, payload_offset: u64, e: &DecodeError) -> StoreError {
    corrupt(
        path,
        payload_offset + e.offset() as u64,
        format!("checksum is good but the record is invalid: {e}"),
    )
}

/// `bad_magic` names what the file should have been, for the administrator.
pub fn header_error(path: &Path, e: HeaderError, bad_magic: &'static str) -> StoreError {
    match e {
        HeaderError::Truncated { len } => corrupt(path, len as u64, "file ends inside its header"),
        HeaderError::BadMagic => corrupt(path, 0, bad_magic),
        HeaderError::UnsupportedVersion { version } => StoreError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        },
        HeaderError::BadChecksum { offset } => {
            corrupt(path, offset as u64, "header checksum mismatch")
        }
    }
}

// ---------------------------------------------------------------------------------------
// Directories, locks, files
// ---------------------------------------------------------------------------------------

/// Creates the directory (and missing parents) as 0700. An existing directory keeps the
/// mode its administrator gave it.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_error(dir))
}

/// An exclusive `flock` held for the life of the store: a second server (or an admin
/// command) on the same directory gets [`StoreError::Locked`].
pub fn take_lock(path: &Path) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_error(path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(error)) => Err(StoreError::Io {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Creates (or empties) `path` as 0600, open for reading and writing.
pub fn create_private_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_error(path))
}

/// Creates `dest` holding exactly `bytes`, never anything less: writes a 0600 temp file
/// `tmp`, fsyncs it and renames it over `dest` (the temp file is removed on failure).
/// Returns the file open for reading and writing. The rename is durable only once the
/// caller has fsynced the directory.
pub fn create_by_rename(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<File, StoreError> {
    let file = create_private_file(tmp)?;
    let written = file
        .write_all_at(bytes, 0)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(tmp, dest));
    if let Err(error) = written {
        let _ = fs::remove_file(tmp);
        return Err(StoreError::Io {
            path: tmp.to_path_buf(),
            error,
        });
    }
    Ok(file)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// One positioned write of the whole batch, then one fdatasync: the group commit.
pub fn write_and_sync(file: &File, at: u64, bytes: &[u8], fault: Fault) -> io::Result<()> {
    #[cfg(test)]
    if fault.write {
        file.write_all_at(bytes.get(..bytes.len() / 2).unwrap_or(&[]), at)?;
        return Err(io::Error::other("injected write failure"));
    }
    file.write_all_at(bytes, at)?;
    #[cfg(test)]
    if fault.sync {
        return Err(io::Error::other("injected fdatasync failure"));
    }
    let _ = fault;
    file.sync_data()
}

/// Cuts a failed append away (not synced: whether that is needed depends on the store).
pub fn truncate(file: &File, len: u64, fault: Fault) -> io::Result<()> {
    #[cfg(test)]
    if fault.truncate {
        return Err(io::Error::other("injected truncate failure"));
    }
    let _ = fault;
    file.set_len(len)
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// A bounded read cache over a file: holds one window of at least [`READ_WINDOW_BYTES`]
/// (or one frame, if larger) and refills it with positioned reads.
pub struct Window<'f> {
    file: &'f File,
    pub file_len: u64,
    start: u64,
    buf: &'f mut Vec<u8>,
    /// Bytes read at least per read.
    read_bytes: usize,
}

impl<'f> Window<'f> {
    /// `buf` is the caller's, so that it can be reused across files (an archive query
    /// does not allocate a window per segment).
    pub fn new(file: &'f File, file_len: u64, buf: &'f mut Vec<u8>) -> Window<'f> {
        buf.clear();
        Window {
            file,
            file_len,
            start: 0,
            buf,
            read_bytes: READ_WINDOW_BYTES,
        }
    }

    /// A window for reads far apart: [`SPARSE_READ_BYTES`] at a time (or one frame).
    pub fn sparse(file: &'f File, file_len: u64, buf: &'f mut Vec<u8>) -> Window<'f> {
        Window {
            read_bytes: SPARSE_READ_BYTES,
            ..Window::new(file, file_len, buf)
        }
    }

    /// The `n` bytes at `offset`, or `None` if the file ends before them.
    pub fn get(&mut self, offset: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Some(end) = offset.checked_add(n as u64) else {
            return Ok(None);
        };
        if end > self.file_len {
            return Ok(None);
        }
        let cached_end = self.start + self.buf.len() as u64;
        if offset < self.start || end > cached_end {
            let read_end = self
                .file_len
                .min(offset.saturating_add(n.max(self.read_bytes) as u64));
            self.buf.clear();
            self.buf.resize((read_end - offset) as usize, 0);
            self.file.read_exact_at(self.buf, offset)?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(self.buf.get(from..from + n))
    }
}

/// Reads a file header: at most `size` bytes from the start of the file.
pub fn read_header_bytes<'w>(
    window: &'w mut Window<'_>,
    path: &Path,
    size: usize,
) -> Result<&'w [u8], StoreError> {
    let available = window.file_len.min(size as u64) as usize;
    window
        .get(0, available)
        .map_err(io_error(path))?
        .ok_or_else(|| corrupt(path, 0, "file shrank while being read"))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    End,
    Intact { payload_len: usize },
    Damaged { what: &'static str },
}

pub fn read_frame(window: &mut Window<'_>, offset: u64) -> io::Result<Frame> {
    read_frame_filtered(window, offset, |_| true)
}

/// As [`read_frame`], with a cheap test of the payload that must pass before the CRC is
/// computed.
fn read_frame_filtered(
    window: &mut Window<'_>,
    offset: u64,
    plausible: fn(&[u8]) -> bool,
) -> io::Result<Frame> {
    if offset >= window.file_len {
        return Ok(Frame::End);
    }
    let Some(header) = window.get(offset, FRAME_HEADER_BYTES)? else {
        return Ok(Frame::Damaged {
            what: "the file ends inside a frame header",
        });
    };
    let mut bytes = [0; FRAME_HEADER_BYTES];
    bytes.copy_from_slice(header);
    let header = FrameHeader::parse(bytes);
    let Some(payload_len) = header.payload_len() else {
        return Ok(Frame::Damaged {
            what: "frame length out of range",
        });
    };
    // Header and payload in one request, so that scanning byte by byte reuses the window.
    let Some(frame) = window.get(offset, FRAME_HEADER_BYTES + payload_len)? else {
        return Ok(Frame::Damaged {
            what: "frame runs past the end of the file",
        });
    };
    let payload = frame.get(FRAME_HEADER_BYTES..).unwrap_or(&[]);
    if !plausible(payload) {
        return Ok(Frame::Damaged {
            what: "frame payload is not a sequence of records",
        });
    }
    if header.matches(payload) {
        Ok(Frame::Intact { payload_len })
    } else {
        Ok(Frame::Damaged {
            what: "frame checksum mismatch",
        })
    }
}

/// The payload of a frame [`read_frame`] found intact.
pub fn frame_payload<'w>(
    window: &'w mut Window<'_>,
    path: &Path,
    offset: u64,
    payload_len: usize,
) -> Result<&'w [u8], StoreError> {
    window
        .get(offset + FRAME_HEADER_BYTES as u64, payload_len)
        .map_err(io_error(path))?
        .ok_or_else(|| corrupt(path, offset, "file shrank while being read"))
}

/// The first offset after `damaged` at which an intact frame starts, if any. A frame
/// whose payload is not tiled with records is not one a writer produced (its CRC is not
/// even computed): it cannot prove that an append followed the damage.
fn intact_frame_after(window: &mut Window<'_>, damaged: u64) -> io::Result<Option<u64>> {
    let smallest_frame = (FRAME_HEADER_BYTES + MIN_FRAME_PAYLOAD) as u64;
    let Some(last_start) = window.file_len.checked_sub(smallest_frame) else {
        return Ok(None);
    };
    for offset in damaged.saturating_add(1)..=last_start {
        if let Frame::Intact { .. } = read_frame_filtered(window, offset, codec::payload_is_tiled)?
        {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

/// The torn-tail rule (see the `file` module doc): the frame damaged at `damaged` is a
/// torn tail only if no intact frame starts after it. Then the file is truncated to
/// `damaged`, the cut synced, and the bytes dropped returned; otherwise it is corruption
/// and nothing is touched.
pub fn truncate_torn_tail(
    window: &mut Window<'_>,
    path: &Path,
    damaged: u64,
    what: &str,
) -> Result<u64, StoreError> {
    if let Some(later) = intact_frame_after(window, damaged).map_err(io_error(path))? {
        return Err(corrupt(
            path,
            damaged,
            format!("{what}, yet an intact frame follows at byte {later}"),
        ));
    }
    let file = window.file;
    file.set_len(damaged).map_err(io_error(path))?;
    file.sync_data().map_err(io_error(path))?;
    Ok(window.file_len.saturating_sub(damaged))
}
