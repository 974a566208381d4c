//! File operations on segments: naming, creation (temp + fsync + rename + directory fsync),
//! the header check, and the undo of a failed append. Reads, frame checks, the torn-tail
//! scan and the write itself are those of the account store, in [`crate::storage::disk`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::format::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::storage::StoreError;
use crate::storage::disk::{
    self, Fault, Window, corrupt, create_by_rename, header_error, io_error, read_header_bytes,
    sync_dir,
};

const SEGMENT_PREFIX: &str = "seg-";
const TMP_SUFFIX: &str = ".tmp";

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
    let file = create_by_rename(&tmp, &dir.join(&name), &header.encode())?;
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
    let bytes = read_header_bytes(window, path, SEGMENT_HEADER_BYTES)?;
    let header = SegmentHeader::decode(bytes)
        .map_err(|e| header_error(path, e, "not an xmppd archive segment (bad magic)"))?;
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

/// Cuts a failed append away, and syncs the cut: unlike the account log, the next append
/// may go to a new segment, and a half frame resurfacing at the end of a closed segment
/// after a crash would be corruption, not a torn tail.
pub fn truncate_and_sync(file: &File, len: u64, fault: Fault) -> io::Result<()> {
    disk::truncate(file, len, fault)?;
    file.sync_data()
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
