//! File operations on segments: naming, creation (temp + fsync + rename + directory fsync),
//! positioned reads through a bounded window, frame checks, the torn-tail scan, and the
//! write/undo of an append. The rules are those of `storage::file` (see its module doc);
//! the helpers there are private to it, so the few lines they take are repeated here
//! against the same `codec` checks.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::format::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::storage::StoreError;
use crate::storage::codec::{FRAME_HEADER_BYTES, FrameHeader, HeaderError, MIN_FRAME_PAYLOAD};

/// Archived messages are private correspondence: owner only.
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

pub const LOCK_FILE: &str = "lock";
const SEGMENT_PREFIX: &str = "seg-";
const TMP_SUFFIX: &str = ".tmp";

/// Bytes read at a time; a scan holds one such window (or one frame, if larger).
pub const READ_WINDOW_BYTES: usize = 64 * 1024;

/// Failure injection for tests; empty in other builds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fault {
    /// The segment write stops half-way and fails.
    #[cfg(test)]
    pub write: bool,
    /// The fdatasync after a complete write fails.
    #[cfg(test)]
    pub sync: bool,
    /// Undoing a failed write fails.
    #[cfg(test)]
    pub truncate: bool,
    /// Creating a new segment fails.
    #[cfg(test)]
    pub create: bool,
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

pub fn header_error(path: &Path, e: HeaderError) -> StoreError {
    match e {
        HeaderError::Truncated { len } => corrupt(path, len as u64, "file ends inside its header"),
        HeaderError::BadMagic => corrupt(path, 0, "not an xmppd archive segment (bad magic)"),
        HeaderError::UnsupportedVersion { version } => StoreError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        },
        HeaderError::BadChecksum { offset } => {
            corrupt(path, offset as u64, "header checksum mismatch")
        }
    }
}

/// `seg-00000001`: eight digits at least, so that a listing sorts by age for a person
/// reading it; the store itself sorts by the parsed number.
pub fn segment_file_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:08}")
}

/// The number of a segment file, if `name` is exactly what [`segment_file_name`] makes.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: u64 = digits.parse().ok()?;
    (segment_file_name(seq) == name).then_some(seq)
}

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

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// The segment numbers in `dir`, ascending. Leftover temp files (a segment creation cut
/// short) are deleted; other files are left alone.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
        } else if name
            .strip_suffix(TMP_SUFFIX)
            .and_then(parse_segment_name)
            .is_some()
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Creates segment `seq` holding only its header, by temp + fsync + rename + directory
/// fsync, so that a segment file never exists without a whole header. The directory fsync
/// also makes durable any segment deletions done before it. Returns it open for writing.
pub fn create_segment(dir: &Path, header: SegmentHeader, fault: Fault) -> Result<File, StoreError> {
    let name = segment_file_name(header.seq);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    #[cfg(test)]
    if fault.create {
        return Err(StoreError::Io {
            path: tmp,
            error: io::Error::other("injected segment creation failure"),
        });
    }
    let _ = fault;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    let written = file
        .write_all_at(&header.encode(), 0)
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, dir.join(&name)));
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io { path: tmp, error });
    }
    if let Err(e) = sync_dir(dir) {
        // Not known to be durable, so not used: the caller keeps appending to the old
        // segment, and a stale empty segment after it would hold a first id that later
        // appends overtake (corruption at the next open). The caller checks it is gone.
        let _ = fs::remove_file(dir.join(&name));
        return Err(e);
    }
    Ok(file)
}

pub fn open_segment(path: &Path, write: bool) -> Result<(File, u64), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    Ok((file, len))
}

/// Reads and checks the header of a segment whose number is `seq`.
pub fn read_header(
    window: &mut Window<'_>,
    path: &Path,
    seq: u64,
) -> Result<SegmentHeader, StoreError> {
    let available = window.file_len.min(SEGMENT_HEADER_BYTES as u64) as usize;
    let bytes = window
        .get(0, available)
        .map_err(io_error(path))?
        .ok_or_else(|| corrupt(path, 0, "file shrank while being read"))?;
    let header = SegmentHeader::decode(bytes).map_err(|e| header_error(path, e))?;
    if header.seq != seq {
        return Err(corrupt(
            path,
            12,
            format!(
                "header says segment {} but the file name says {seq}",
                header.seq
            ),
        ));
    }
    Ok(header)
}

/// One positioned write of the whole frame, then one fdatasync: the group commit.
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

/// Cuts a failed append away, and syncs the cut: unlike the account log, the next append
/// may go to a new segment, and a half frame resurfacing at the end of a closed segment
/// after a crash would be corruption, not a torn tail.
pub fn truncate_and_sync(file: &File, len: u64, fault: Fault) -> io::Result<()> {
    #[cfg(test)]
    if fault.truncate {
        return Err(io::Error::other("injected truncate failure"));
    }
    let _ = fault;
    file.set_len(len)?;
    file.sync_data()
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// A bounded read cache over a file: one window of at least [`READ_WINDOW_BYTES`] (or one
/// frame, if larger), refilled with positioned reads.
pub struct Window<'f> {
    file: &'f File,
    pub file_len: u64,
    start: u64,
    buf: &'f mut Vec<u8>,
}

impl<'f> Window<'f> {
    /// `buf` is the caller's, reused across scans so that a query does not allocate a
    /// window per segment.
    pub fn new(file: &'f File, file_len: u64, buf: &'f mut Vec<u8>) -> Window<'f> {
        buf.clear();
        Window {
            file,
            file_len,
            start: 0,
            buf,
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
                .min(offset.saturating_add(n.max(READ_WINDOW_BYTES) as u64));
            self.buf.clear();
            self.buf.resize((read_end - offset) as usize, 0);
            self.file.read_exact_at(self.buf, offset)?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(self.buf.get(from..from + n))
    }
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

/// The first offset after `damaged` at which an intact frame starts, if any: the torn
/// tail rule of `storage::file` (damage followed by an intact frame proves a later append
/// happened, so the damaged frame was acknowledged and must not be dropped).
pub fn intact_frame_after(window: &mut Window<'_>, damaged: u64) -> io::Result<Option<u64>> {
    let smallest_frame = (FRAME_HEADER_BYTES + MIN_FRAME_PAYLOAD) as u64;
    let Some(last_start) = window.file_len.checked_sub(smallest_frame) else {
        return Ok(None);
    };
    for offset in damaged.saturating_add(1)..=last_start {
        let frame = read_frame_filtered(window, offset, crate::storage::codec::payload_is_tiled)?;
        if let Frame::Intact { .. } = frame {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_refuse_lookalikes() {
        for seq in [0, 1, 99_999_999, 100_000_000, u64::MAX] {
            assert_eq!(parse_segment_name(&segment_file_name(seq)), Some(seq));
        }
        assert_eq!(segment_file_name(1), "seg-00000001");
        for bad in [
            "seg-1",
            "seg-000000001",
            "seg-0000000a",
            "seg--0000001",
            "lock",
            "seg-",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
