//! MAM queries (XEP-0313 §4, paged with XEP-0059 RSM) over the index and the segments.
//!
//! The answer is computed in three numbers and a page. Matching messages (the account's
//! visible messages passing `with`, `start`/`end` and `ids`) fall in three id regions:
//! `B` at or below `after_id`, the window `W` strictly between the bounds, `A` at or above
//! `before_id`. The page is the first `max` of `W` (forward) or the last `max` of `W`
//! (backward: `before_id` or `last_page` set); `complete` says the page holds all of `W`;
//! `count` is `|B| + |W| + |A|` (RSM counts the whole result set, paging bounds aside);
//! `first_index` is the number of matches before the page.
//!
//! Cost: candidate segments are the account's entries that can hold a match (floors, time
//! range, Bloom filter of `with`, id range for `ids`). Those the page comes from are read;
//! every other candidate is counted from its summary when the summary gives the exact
//! number (no `with` or `ids` filter, time range not cutting through it, all of it in
//! one region), and read otherwise. So `count` is always exact, at the price of a full
//! count scan of the candidates when a filter needs one.

use std::collections::VecDeque;
use std::path::Path;

use super::format::{MessageView, RecordView, payload_records};
use super::index::{AccountState, Floor, SegEntry, archived_count, floor, may_contain, with_bits};
use super::segment;
use crate::archive::{ArchivePage, ArchiveQuery, ArchivedMessage, flags};
use crate::storage::StoreError;
use crate::storage::codec::FRAME_HEADER_BYTES;
use crate::storage::disk::{Window, invalid_record};

/// Visibility rules in force, from the store's limits and the clock.
#[derive(Clone, Copy, Debug)]
pub struct Visibility {
    pub keep_messages: usize,
    /// Messages with an older timestamp are expired (0: none is).
    pub cutoff_ts: u64,
}

struct Plan<'q> {
    account: &'q str,
    deleted_below: u64,
    floor: Floor,
    lo_ts: u64,
    hi_ts: u64,
    with: Option<(&'q str, [u64; 2])>,
    ids: Option<Vec<u64>>,
    after: Option<u64>,
    before: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Region {
    Below,
    Window,
    Above,
}

#[derive(Default)]
struct Tally {
    below: usize,
    window: usize,
    above: usize,
}

impl Tally {
    fn add(&mut self, region: Region, n: usize) {
        match region {
            Region::Below => self.below += n,
            Region::Window => self.window += n,
            Region::Above => self.above += n,
        }
    }
}

impl Plan<'_> {
    fn region(&self, id: u64) -> Region {
        if self.after.is_some_and(|a| id <= a) {
            Region::Below
        } else if self.before.is_some_and(|b| id >= b) {
            Region::Above
        } else {
            Region::Window
        }
    }

    /// The region all of `e` lies in, if it lies in one.
    fn entry_region(&self, e: &SegEntry) -> Option<Region> {
        let (first, last) = (self.region(e.first_id), self.region(e.last_id));
        (first == last).then_some(first)
    }

    fn may_match(&self, e: &SegEntry) -> bool {
        if e.n_archived == 0 || self.floor.hides_all(e, e.n_archived) {
            return false;
        }
        if e.max_ts < self.lo_ts || e.min_ts > self.hi_ts {
            return false;
        }
        if let Some((_, bits)) = self.with
            && !may_contain(e.with_bloom, bits)
        {
            return false;
        }
        if let Some(ids) = &self.ids {
            let i = ids.partition_point(|&id| id < e.first_id);
            if ids.get(i).is_none_or(|&id| id > e.last_id) {
                return false;
            }
        }
        true
    }

    /// The number of matches in `e`, if its summary alone gives it.
    fn exact_count(&self, e: &SegEntry) -> Option<usize> {
        let whole = self.with.is_none()
            && self.ids.is_none()
            && e.min_ts >= self.lo_ts
            && e.max_ts <= self.hi_ts;
        whole.then(|| (e.n_archived - self.floor.hidden_in(e, e.n_archived)) as usize)
    }

    fn matches(&self, m: &MessageView<'_>) -> bool {
        m.ts_ms >= self.lo_ts
            && m.ts_ms <= self.hi_ts
            && self.with.is_none_or(|(w, _)| m.with == w)
            && self
                .ids
                .as_ref()
                .is_none_or(|ids| ids.binary_search(&m.id).is_ok())
    }
}

pub fn run(
    dir: &Path,
    acct: Option<&AccountState>,
    q: &ArchiveQuery,
    vis: Visibility,
    read_buf: &mut Vec<u8>,
) -> Result<ArchivePage, StoreError> {
    let Some(acct) = acct else {
        return Ok(empty_page());
    };
    let plan = Plan {
        account: &q.account,
        deleted_below: acct.deleted_below,
        floor: floor(&acct.entries, archived_count, vis.keep_messages),
        lo_ts: q.start.unwrap_or(0).max(vis.cutoff_ts),
        hi_ts: q.end.unwrap_or(u64::MAX),
        with: q.with.as_deref().map(|w| (w, with_bits(w))),
        ids: (!q.ids.is_empty()).then(|| {
            let mut ids = q.ids.clone();
            ids.sort_unstable();
            ids.dedup();
            ids
        }),
        after: q.after_id,
        before: q.before_id,
    };
    let candidates: Vec<&SegEntry> = acct.entries.iter().filter(|e| plan.may_match(e)).collect();
    let mut scan = Scanner {
        dir,
        plan: &plan,
        read_buf,
    };
    let backward = q.last_page || q.before_id.is_some();
    let mut tally = Tally::default();
    let mut page_len = 0;
    // Pieces of the page in reading order: ascending when forward, descending backward.
    let mut pieces: Vec<VecDeque<ArchivedMessage>> = Vec::new();
    let order: Box<dyn Iterator<Item = &&SegEntry>> = if backward {
        Box::new(candidates.iter().rev())
    } else {
        Box::new(candidates.iter())
    };
    for e in order {
        let region = plan.entry_region(e);
        let outside_window = matches!(region, Some(Region::Below | Region::Above));
        if page_len >= q.max || outside_window {
            scan.count(e, region, &mut tally)?;
            continue;
        }
        let need = q.max - page_len;
        let mut piece = VecDeque::new();
        scan.each_match(e, |m| {
            let region = plan.region(m.id);
            if region != Region::Window {
                tally.add(region, 1);
            } else if backward {
                // Keep the newest `need` of this segment; older ones are before the page.
                piece.push_back(m.to_owned_message());
                if piece.len() > need {
                    piece.pop_front();
                    tally.window += 1;
                }
            } else if piece.len() < need {
                piece.push_back(m.to_owned_message());
            } else {
                tally.window += 1;
            }
        })?;
        page_len += piece.len();
        pieces.push(piece);
    }
    if backward {
        pieces.reverse();
    }
    let messages: Vec<ArchivedMessage> = pieces.into_iter().flatten().collect();
    // `tally.window` now counts the window's matches left out of the page.
    let before_page = if backward {
        tally.below + tally.window
    } else {
        tally.below
    };
    Ok(ArchivePage {
        complete: tally.window == 0,
        count: Some(tally.below + tally.window + messages.len() + tally.above),
        first_index: (!messages.is_empty()).then_some(before_page),
        messages,
    })
}

fn empty_page() -> ArchivePage {
    ArchivePage {
        messages: Vec::new(),
        complete: true,
        count: Some(0),
        first_index: None,
    }
}

struct Scanner<'a> {
    dir: &'a Path,
    plan: &'a Plan<'a>,
    read_buf: &'a mut Vec<u8>,
}

impl Scanner<'_> {
    /// Adds the matches of `e` to the tally, from its summary if that gives them.
    fn count(
        &mut self,
        e: &SegEntry,
        region: Option<Region>,
        tally: &mut Tally,
    ) -> Result<(), StoreError> {
        if let (Some(region), Some(n)) = (region, self.plan.exact_count(e)) {
            tally.add(region, n);
            return Ok(());
        }
        let plan = self.plan;
        self.each_match(e, |m| tally.add(plan.region(m.id), 1))
    }

    /// Reads the frames of `e` and hands over every matching message, in id order.
    fn each_match(
        &mut self,
        e: &SegEntry,
        mut each: impl FnMut(&MessageView<'_>),
    ) -> Result<(), StoreError> {
        let plan = self.plan;
        let path = segment::segment_path(self.dir, e.seq);
        let (file, file_len) = segment::open_segment(&path, false)?;
        let mut window = Window::new(&file, file_len, self.read_buf);
        let mut skip = if e.seq == plan.floor.seq {
            plan.floor.skip
        } else {
            0
        };
        let mut offset = e.start;
        while offset < e.end {
            let payload = segment::read_indexed_frame(&mut window, &path, offset)?;
            let payload_offset = offset + FRAME_HEADER_BYTES as u64;
            for record in payload_records(payload) {
                let (_, view) = record.map_err(|e| invalid_record(&path, payload_offset, &e))?;
                let RecordView::Message(m) = view else {
                    continue;
                };
                if m.account != plan.account || m.id < plan.deleted_below || !m.has(flags::ARCHIVED)
                {
                    continue;
                }
                if skip > 0 {
                    // Hidden by the count limit: the oldest of the account.
                    skip -= 1;
                    continue;
                }
                if plan.matches(&m) {
                    each(&m);
                }
            }
            offset = payload_offset + payload.len() as u64;
        }
        Ok(())
    }
}
