//! File operations on segments and their summaries: naming, listing (and the removal of
//! leftovers), creation (temp + fsync + rename + directory fsync), the header check, reads
//! of frames the index points at, and the undo of a failed append. Reads, frame checks,
//! the torn-tail scan and the write itself are those of the account store, in
//! [`crate::storage::disk`].

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::{SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::storage::StoreError;
use crate::storage::codec::FRAME_HEADER_BYTES;
use crate::storage::disk::{
    self, Fault, Frame, Window, corrupt, create_by_rename, header_error, io_error,
    read_header_bytes, sync_dir,
};

const SEGMENT_PREFIX: &str = "seg-";
const TMP_SUFFIX: &str = ".tmp";
const SUMMARY_SUFFIX: &str = ".idx";

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

/// `seg-00000001.idx`: the summary of a closed segment, beside it.
pub fn summary_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{}{SUMMARY_SUFFIX}", segment_file_name(seq)))
}

fn summary_tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!(
        "{}{SUMMARY_SUFFIX}{TMP_SUFFIX}",
        segment_file_name(seq)
    ))
}

/// The segment numbers in `dir`, ascending. Leftover temp files (a segment or summary
/// creation cut short) are deleted, and so are summaries without their segment (one whose
/// deletion was cut short, or a segment deleted by hand) and the newest segment's (written
/// before a new segment could not be created: that segment was appended to since, or will
/// be): only closed segments have one, and a stray one is never read. Other files are left
/// alone.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut seqs = Vec::new();
    let mut summaries = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = parse_segment_name(name) {
            seqs.push(seq);
        } else if let Some(seq) = name
            .strip_suffix(SUMMARY_SUFFIX)
            .and_then(parse_segment_name)
        {
            summaries.insert(seq);
        } else if name
            .strip_suffix(TMP_SUFFIX)
            .and_then(|n| n.strip_suffix(SUMMARY_SUFFIX).or(Some(n)))
            .and_then(parse_segment_name)
            .is_some()
        {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    seqs.sort_unstable();
    let newest = seqs.last().copied();
    for seq in summaries {
        if seqs.binary_search(&seq).is_err() || Some(seq) == newest {
            // Harmless if it stays (it is never used; see `open`): a read-only file system
            // must not stop the archive from opening.
            if let Err(e) = remove_summary(dir, seq) {
                log::warn!("{e}");
            }
        }
    }
    Ok(seqs)
}

/// Deletes a segment's summary if there is one (not synced: a summary that comes back
/// after a crash is checked against its segment like any other).
pub fn remove_summary(dir: &Path, seq: u64) -> Result<(), StoreError> {
    let path = summary_path(dir, seq);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(e)),
        _ => Ok(()),
    }
}

/// Writes segment `seq`'s summary: a 0600 temp file filled by `fill` (which is handed the
/// file to write at offsets from 0), fsynced, then renamed over the summary. The caller
/// fsyncs the directory (a rename lost in a crash only costs a scan at the next open).
pub fn write_summary(
    dir: &Path,
    seq: u64,
    fault: Fault,
    fill: impl FnOnce(&File) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let tmp = summary_tmp_path(dir, seq);
    #[cfg(test)]
    if fault.summary {
        return Err(StoreError::Io {
            path: tmp,
            error: io::Error::other("injected summary write failure"),
        });
    }
    let _ = fault;
    let file = disk::create_private_file(&tmp)?;
    let written = fill(&file).and_then(|()| {
        file.sync_all()
            .and_then(|()| fs::rename(&tmp, summary_path(dir, seq)))
            .map_err(io_error(&tmp))
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
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
    check_header(bytes, path, seq)
}

/// As [`read_header`] with one small read instead of a read window: a segment whose
/// summary is used is not read further.
pub fn read_header_only(
    file: &File,
    file_len: u64,
    path: &Path,
    seq: u64,
) -> Result<SegmentHeader, StoreError> {
    let mut bytes = [0; SEGMENT_HEADER_BYTES];
    let n = file_len.min(SEGMENT_HEADER_BYTES as u64) as usize;
    let bytes = bytes.get_mut(..n).unwrap_or(&mut []);
    file.read_exact_at(bytes, 0).map_err(io_error(path))?;
    check_header(bytes, path, seq)
}

/// The header of the frame at `offset` as it is on disk (`None` past the end).
pub fn read_frame_header(
    file: &File,
    file_len: u64,
    offset: u64,
) -> io::Result<Option<[u8; FRAME_HEADER_BYTES]>> {
    if offset.saturating_add(FRAME_HEADER_BYTES as u64) > file_len {
        return Ok(None);
    }
    let mut bytes = [0; FRAME_HEADER_BYTES];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(Some(bytes))
}

/// The payload of the frame at `offset`, where the index or a summary says an intact frame
/// starts: anything else there is corruption (a closed segment is checked when it is read,
/// not at open; see "Crash safety" in the store's doc).
pub fn read_indexed_frame<'w>(
    window: &'w mut Window<'_>,
    path: &Path,
    offset: u64,
) -> Result<&'w [u8], StoreError> {
    let payload_len = match disk::read_frame(window, offset).map_err(io_error(path))? {
        Frame::Intact { payload_len } => payload_len,
        Frame::End => {
            return Err(corrupt(
                path,
                offset,
                "segment is shorter than its index says",
            ));
        }
        Frame::Damaged { what } => {
            return Err(corrupt(
                path,
                offset,
                format!("{what} (found when reading the segment for a query or an open)"),
            ));
        }
    };
    disk::frame_payload(window, path, offset, payload_len)
}

fn check_header(bytes: &[u8], path: &Path, seq: u64) -> Result<SegmentHeader, StoreError> {
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
        assert_eq!(
            summary_path(Path::new("d"), 2),
            Path::new("d/seg-00000002.idx")
        );
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
