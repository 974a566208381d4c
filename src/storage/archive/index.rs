//! The bounded in-memory index: per segment a few numbers, per account its floors, and per
//! (account, segment) one [`SegEntry`] summarising that account's messages in that
//! segment. Never one entry per message (see the memory bound in the store's doc).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::format::MessageView;
use super::summary::{AccountSummary, kind};
use crate::archive::flags;

/// What the store knows of one segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File length, header included.
    pub bytes: u64,
    /// From the header: every message in it has at least this id.
    pub first_id: u64,
    /// It holds an `OfflineDelivered` or `AccountDeleted` record. Such a record hides
    /// messages in older segments, so it may only disappear with them (oldest first).
    pub has_markers: bool,
}

/// One account's messages in one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegEntry {
    pub seq: u64,
    pub first_id: u64,
    pub last_id: u64,
    /// Timestamps are not assumed to follow ids (the clock may be set back).
    pub min_ts: u64,
    pub max_ts: u64,
    /// Highest id carrying the OFFLINE flag (0: none).
    pub last_offline_id: u64,
    /// Byte range of the frames holding these messages: a scan reads only this.
    pub start: u64,
    pub end: u64,
    /// A 128-bit Bloom filter of the `with` JIDs (three bits each): a `with` query skips
    /// the segments where that JID cannot be. With 20 correspondents in one segment a
    /// stranger still passes about 5% of the time, costing only a read.
    pub with_bloom: [u64; 2],
    /// Messages with the ARCHIVED flag / with the OFFLINE flag (a message may have both).
    pub n_archived: u32,
    pub n_offline: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// Messages with a smaller id belong to a deleted account of the same name.
    pub deleted_below: u64,
    /// OFFLINE messages with an id up to this were delivered.
    pub delivered_up_to: u64,
    /// Newest segment holding a marker of this account (0: none). While it exists the
    /// account's floors must be kept even with no entries left.
    pub marker_seq: u64,
    /// Ascending by segment.
    pub entries: Vec<SegEntry>,
    /// This account's markers in segment `marker_seq` alone: what that segment's summary
    /// says of them when it is closed.
    pub seg_markers: SegMarkers,
}

/// An account's markers in one segment: which kinds ([`kind::DELIVERED`],
/// [`kind::DELETED`]) and the highest id each gave (0 without the kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegMarkers {
    pub kinds: u8,
    pub deleted_below: u64,
    pub delivered_up_to: u64,
}

/// The oldest messages of an account hidden by the count limit: everything in segments
/// before `seq`, and the first `skip` (of the counted kind) in segment `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor {
    pub seq: u64,
    pub skip: u32,
}

impl Floor {
    pub const NONE: Floor = Floor { seq: 0, skip: 0 };

    /// Whether every counted message of `e` (there are `count`) is hidden.
    pub fn hides_all(&self, e: &SegEntry, count: u32) -> bool {
        e.seq < self.seq || (e.seq == self.seq && self.skip >= count)
    }

    /// How many counted messages of `e` are hidden.
    pub fn hidden_in(&self, e: &SegEntry, count: u32) -> u32 {
        if e.seq < self.seq {
            count
        } else if e.seq == self.seq {
            self.skip.min(count)
        } else {
            0
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    pub accounts: HashMap<String, AccountState>,
    pub segments: BTreeMap<u64, SegmentInfo>,
}

pub fn archived_count(e: &SegEntry) -> u32 {
    e.n_archived
}

pub fn offline_count(e: &SegEntry) -> u32 {
    e.n_offline
}

/// The count floor of `entries` for the kind `count` picks: all but the newest `keep`.
pub fn floor(entries: &[SegEntry], count: fn(&SegEntry) -> u32, keep: usize) -> Floor {
    let total: u64 = entries.iter().map(|e| u64::from(count(e))).sum();
    let mut hidden = total.saturating_sub(keep as u64);
    if hidden == 0 {
        return Floor::NONE;
    }
    for e in entries {
        let c = u64::from(count(e));
        if c > hidden {
            // hidden < c <= u32::MAX
            return Floor {
                seq: e.seq,
                skip: hidden as u32,
            };
        }
        hidden -= c;
    }
    Floor {
        seq: u64::MAX,
        skip: u32::MAX,
    }
}

/// FNV-1a: not collision-resistant, and need not be: a crafted collision only makes a
/// query read one more segment.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

pub fn with_bits(with: &str) -> [u64; 2] {
    let h = fnv1a(with.as_bytes());
    let mut bits = [0u64; 2];
    for shift in [0, 21, 42] {
        let bit = (h >> shift) & 127;
        if let Some(word) = bits.get_mut((bit / 64) as usize) {
            *word |= 1 << (bit % 64);
        }
    }
    bits
}

pub fn may_contain(bloom: [u64; 2], bits: [u64; 2]) -> bool {
    bloom[0] & bits[0] == bits[0] && bloom[1] & bits[1] == bits[1]
}

impl AccountState {
    /// The markers of segment `seq`, started afresh if the newest were in another segment.
    fn markers_in(&mut self, seq: u64) -> &mut SegMarkers {
        if self.marker_seq != seq {
            self.marker_seq = seq;
            self.seg_markers = SegMarkers::default();
        }
        &mut self.seg_markers
    }
}

impl Index {
    pub fn total_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// The account's state, created empty if new. The name is only copied for an
    /// account not seen before.
    fn account_mut(&mut self, account: &str) -> Option<&mut AccountState> {
        if !self.accounts.contains_key(account) {
            self.accounts
                .insert(account.to_owned(), AccountState::default());
        }
        self.accounts.get_mut(account)
    }

    /// Records a message written in the frame `frame` of segment `seq`. Segments are
    /// filled in ascending order, so the entry is the account's last or a new one.
    pub fn add_message(&mut self, seq: u64, frame: Range<u64>, m: &MessageView<'_>) {
        let Some(acct) = self.account_mut(m.account) else {
            return;
        };
        if m.id < acct.deleted_below {
            return;
        }
        let bits = with_bits(m.with);
        let archived = u32::from(m.has(flags::ARCHIVED));
        let offline = u32::from(m.has(flags::OFFLINE));
        match acct.entries.last_mut() {
            Some(e) if e.seq == seq => {
                e.last_id = m.id;
                e.min_ts = e.min_ts.min(m.ts_ms);
                e.max_ts = e.max_ts.max(m.ts_ms);
                e.end = e.end.max(frame.end);
                e.with_bloom[0] |= bits[0];
                e.with_bloom[1] |= bits[1];
                e.n_archived = e.n_archived.saturating_add(archived);
                e.n_offline = e.n_offline.saturating_add(offline);
                if offline > 0 {
                    e.last_offline_id = m.id;
                }
            }
            _ => {
                // Exact growth: the entry list is part of the memory bound, and it
                // grows by one per segment, rarely.
                acct.entries.reserve_exact(1);
                acct.entries.push(SegEntry {
                    seq,
                    first_id: m.id,
                    last_id: m.id,
                    min_ts: m.ts_ms,
                    max_ts: m.ts_ms,
                    last_offline_id: if offline > 0 { m.id } else { 0 },
                    start: frame.start,
                    end: frame.end,
                    with_bloom: bits,
                    n_archived: archived,
                    n_offline: offline,
                });
            }
        }
    }

    fn note_marker(&mut self, seq: u64) {
        if let Some(s) = self.segments.get_mut(&seq) {
            s.has_markers = true;
        }
    }

    pub fn offline_delivered(&mut self, seq: u64, account: &str, up_to: u64) {
        self.note_marker(seq);
        let Some(acct) = self.account_mut(account) else {
            return;
        };
        acct.delivered_up_to = acct.delivered_up_to.max(up_to);
        let m = acct.markers_in(seq);
        m.kinds |= kind::DELIVERED;
        m.delivered_up_to = m.delivered_up_to.max(up_to);
    }

    /// Every message of the account so far is gone: its entries go at once (their
    /// segments are reclaimed when nothing else in them lives).
    pub fn account_deleted(&mut self, seq: u64, account: &str, below_id: u64) {
        self.note_marker(seq);
        let Some(acct) = self.account_mut(account) else {
            return;
        };
        acct.deleted_below = acct.deleted_below.max(below_id);
        acct.entries = Vec::new();
        let m = acct.markers_in(seq);
        m.kinds |= kind::DELETED;
        m.deleted_below = m.deleted_below.max(below_id);
    }

    /// Applies what a closed segment's summary says of one account: the same state as
    /// reading the segment's records would leave (its markers, then its entry, which
    /// holds only messages after any deletion in the segment).
    pub fn apply_summary(&mut self, seq: u64, a: &AccountSummary<'_>) {
        if a.kinds & kind::DELETED != 0 {
            self.account_deleted(seq, a.account, a.deleted_below);
        }
        if a.kinds & kind::DELIVERED != 0 {
            self.offline_delivered(seq, a.account, a.delivered_up_to);
        }
        let Some(entry) = a.entry else {
            return;
        };
        let Some(acct) = self.account_mut(a.account) else {
            return;
        };
        acct.entries.reserve_exact(1);
        acct.entries.push(SegEntry { seq, ..entry });
    }

    /// What the summary of segment `seq` says of `account`, if anything: taken when `seq`
    /// is the newest segment read or written (so the account's last entry and newest
    /// markers are those of `seq`, if it has any there).
    pub fn account_summary<'a>(
        seq: u64,
        account: &'a str,
        acct: &AccountState,
    ) -> Option<AccountSummary<'a>> {
        let entry = acct.entries.last().filter(|e| e.seq == seq).copied();
        let markers = if acct.marker_seq == seq {
            acct.seg_markers
        } else {
            SegMarkers::default()
        };
        if entry.is_none() && markers.kinds == 0 {
            return None;
        }
        Some(AccountSummary {
            account,
            kinds: markers.kinds,
            deleted_below: markers.deleted_below,
            delivered_up_to: markers.delivered_up_to,
            entry,
        })
    }

    /// Forgets a deleted segment file, and the accounts nothing refers to any more.
    pub fn remove_segment(&mut self, seq: u64) {
        self.segments.remove(&seq);
        let segments = &self.segments;
        self.accounts.retain(|_, acct| {
            acct.entries.retain(|e| e.seq != seq);
            !acct.entries.is_empty() || segments.contains_key(&acct.marker_seq)
        });
    }

    /// Segments (never `keep`, the one being appended to) that hold nothing visible or
    /// pending any more, ascending, and deletable in that order: a segment holding markers
    /// only once every older segment is gone too.
    pub fn dead_segments(&self, keep_messages: usize, cutoff_ts: u64, keep: u64) -> Vec<u64> {
        let mut live = std::collections::BTreeSet::new();
        for acct in self.accounts.values() {
            let archived_floor = floor(&acct.entries, archived_count, keep_messages);
            let offline_floor = floor(&acct.entries, offline_count, keep_messages);
            for e in &acct.entries {
                let expired = e.max_ts < cutoff_ts;
                let archived_dead = e.n_archived == 0 || archived_floor.hides_all(e, e.n_archived);
                let offline_dead = e.n_offline == 0
                    || e.last_offline_id <= acct.delivered_up_to
                    || offline_floor.hides_all(e, e.n_offline);
                if !(expired || archived_dead && offline_dead) {
                    live.insert(e.seq);
                }
            }
        }
        let mut dead = Vec::new();
        let mut oldest = true;
        for (&seq, info) in &self.segments {
            if seq == keep {
                break;
            }
            if live.contains(&seq) || (info.has_markers && !oldest) {
                oldest = false;
            } else {
                dead.push(seq);
            }
        }
        dead
    }

    /// Bytes of memory the index holds, counted with the per-item sizes of the bound
    /// (see the store's doc) plus account names.
    pub fn memory_bytes(&self) -> usize {
        use crate::limits::{
            ARCHIVE_INDEX_BYTES_PER_ACCOUNT, ARCHIVE_INDEX_BYTES_PER_ENTRY,
            ARCHIVE_INDEX_BYTES_PER_SEGMENT,
        };
        let accounts: usize = self
            .accounts
            .iter()
            .map(|(name, a)| {
                ARCHIVE_INDEX_BYTES_PER_ACCOUNT
                    + name.capacity()
                    + a.entries.capacity() * ARCHIVE_INDEX_BYTES_PER_ENTRY
            })
            .sum();
        accounts + self.segments.len() * ARCHIVE_INDEX_BYTES_PER_SEGMENT
    }

    pub fn entry_count(&self) -> usize {
        self.accounts.values().map(|a| a.entries.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, n_archived: u32, n_offline: u32) -> SegEntry {
        SegEntry {
            seq,
            first_id: seq * 100,
            last_id: seq * 100 + 99,
            min_ts: 0,
            max_ts: 0,
            last_offline_id: 0,
            start: 0,
            end: 0,
            with_bloom: [0; 2],
            n_archived,
            n_offline,
        }
    }

    #[test]
    fn floors_hide_the_oldest_beyond_the_count() {
        let entries = [entry(1, 3, 0), entry(4, 5, 0), entry(7, 2, 0)];
        assert_eq!(floor(&entries, archived_count, 10), Floor::NONE);
        assert_eq!(
            floor(&entries, archived_count, 9),
            Floor { seq: 1, skip: 1 }
        );
        assert_eq!(
            floor(&entries, archived_count, 7),
            Floor { seq: 4, skip: 0 }
        );
        assert_eq!(
            floor(&entries, archived_count, 3),
            Floor { seq: 4, skip: 4 }
        );
        assert_eq!(
            floor(&entries, archived_count, 2),
            Floor { seq: 7, skip: 0 }
        );
        let none = floor(&entries, archived_count, 0);
        assert!(entries.iter().all(|e| none.hides_all(e, e.n_archived)));
        let f = Floor { seq: 4, skip: 4 };
        assert_eq!(entries.map(|e| f.hidden_in(&e, e.n_archived)), [3, 4, 0]);
        assert!(f.hides_all(&entries[0], 3) && !f.hides_all(&entries[1], 5));
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut bloom = [0u64; 2];
        let names: Vec<String> = (0..50).map(|i| format!("user{i}@example.org")).collect();
        for n in &names {
            let b = with_bits(n);
            assert!(b[0].count_ones() + b[1].count_ones() >= 1);
            bloom[0] |= b[0];
            bloom[1] |= b[1];
        }
        assert!(names.iter().all(|n| may_contain(bloom, with_bits(n))));
        let one = with_bits("alice@example.org");
        let strangers = (0..1000)
            .filter(|i| may_contain(one, with_bits(&format!("x{i}@y"))))
            .count();
        assert!(strangers < 20, "{strangers}");
    }

    #[test]
    fn index_item_sizes_stay_within_the_documented_bound() {
        use crate::limits::{
            ARCHIVE_INDEX_BYTES_PER_ACCOUNT, ARCHIVE_INDEX_BYTES_PER_ENTRY,
            ARCHIVE_INDEX_BYTES_PER_SEGMENT,
        };
        assert!(size_of::<SegEntry>() <= ARCHIVE_INDEX_BYTES_PER_ENTRY);
        // A BTreeMap node holds 11 keys and values plus links: per item under 2x.
        assert!(
            2 * (size_of::<u64>() + size_of::<SegmentInfo>()) <= ARCHIVE_INDEX_BYTES_PER_SEGMENT
        );
        // Key, value and a hash-table control byte, at the table's 7/8 load.
        assert!(
            (size_of::<String>() + size_of::<AccountState>() + 1) * 8 / 7
                <= ARCHIVE_INDEX_BYTES_PER_ACCOUNT
        );
    }
}
