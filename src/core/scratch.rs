//! Buffers the core reuses from one stanza to the next, so that routing a stanza between
//! online sessions allocates nothing once they have grown to their working size (issue 5).
//!
//! One set per server, not per connection: the core handles one input at a time, and an
//! idle session must not hold buffers. Each buffer is taken out while it is used (the
//! rest of the core stays borrowable) and put back afterwards; a buffer that grew past
//! [`SCRATCH_KEEP_BYTES`] for a large stanza is dropped instead of kept.

use std::ops::Range;

use crate::jid::Jid;
use crate::limits::SCRATCH_KEEP_BYTES;
use crate::router::ConnId;
use crate::xml::FrameBuffers;

#[derive(Default)]
pub(crate) struct Scratch {
    /// What the framers frame into (see [`FrameBuffers`]).
    pub(crate) frame: FrameBuffers,
    /// The sender's address, copied from its session while its stanza is routed.
    pub(crate) from: Option<Jid>,
    /// The stanza's `to`, parsed.
    pub(crate) to: Option<Jid>,
    /// A message stamped with its addresses: what is archived and carbon-copied.
    pub(crate) stanza: Vec<u8>,
    /// The message as the recipient gets it (with the stanza-id of its archive), or as
    /// the sender's other resources get it (with the stanza-id of the sender's).
    pub(crate) delivered: Vec<u8>,
    /// A stanza for a session with stream management, written once for its queue and
    /// for the copy kept until the client acknowledges it (XEP-0198).
    pub(crate) sm_copy: Vec<u8>,
    /// Buffers of acknowledged XEP-0198 copies, for the next ones.
    pub(crate) sm_copies: crate::xep::xep0198_sm::CopyPool,
    /// A carbon copy's forwarded message.
    pub(crate) forwarded: Vec<u8>,
    /// The sessions a presence broadcast goes to.
    pub(crate) fanout: Fanout,
    /// A contact's address while the broadcast list is made, or a carbon copy's `to`.
    pub(crate) contact: Option<Jid>,
}

/// Sessions a stanza fans out to, each with the `to` it is stamped with (one string
/// holds the addresses).
#[derive(Default)]
pub(crate) struct Fanout {
    targets: Vec<(ConnId, Range<u32>)>,
    names: String,
}

impl Fanout {
    pub(crate) fn clear(&mut self) {
        self.targets.clear();
        self.names.clear();
    }

    pub(crate) fn push(&mut self, conn: ConnId, to: &str) {
        let start = self.names.len();
        self.names.push_str(to);
        let range = offset(start)..offset(self.names.len());
        self.targets.push((conn, range));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.targets.iter().map(|(c, r)| {
            let range = r.start as usize..r.end as usize;
            (*c, self.names.get(range).unwrap_or_default())
        })
    }

    fn heap_bytes(&self) -> usize {
        self.names.capacity() + self.targets.capacity() * size_of::<(ConnId, Range<u32>)>()
    }
}

/// Positions in a fan-out list: rosters and sessions are far too small to reach 4 GiB.
fn offset(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Takes a buffer out of its slot, empty.
pub(crate) fn take_bytes(slot: &mut Vec<u8>) -> Vec<u8> {
    let mut buf = std::mem::take(slot);
    buf.clear();
    buf
}

/// Puts a buffer back into its slot, unless it grew too large to keep.
pub(crate) fn put_bytes(slot: &mut Vec<u8>, buf: Vec<u8>) {
    if buf.capacity() <= SCRATCH_KEEP_BYTES {
        *slot = buf;
    }
}

/// A copy of `source` made in the buffer of the address in `slot` (taken out of it).
pub(crate) fn copy_jid(slot: &mut Option<Jid>, source: &Jid) -> Jid {
    match slot.take() {
        Some(mut jid) => {
            jid.clone_from(source);
            jid
        }
        None => source.clone(),
    }
}

/// Puts an address back into its slot, unless it is unusually long (a JID can reach
/// three 1023-byte parts).
pub(crate) fn put_jid(slot: &mut Option<Jid>, jid: Jid) {
    if jid.capacity() <= crate::limits::SCRATCH_KEEP_JID_BYTES {
        *slot = Some(jid);
    }
}

/// Puts a fan-out list back into its slot, unless it grew too large to keep.
pub(crate) fn put_fanout(slot: &mut Fanout, fanout: Fanout) {
    if fanout.heap_bytes() <= SCRATCH_KEEP_BYTES {
        *slot = fanout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_ids() -> (ConnId, ConnId) {
        let mut table: crate::router::SlotTable<(), 2> = crate::router::SlotTable::new(2);
        let mut id = || table.insert_with(|_| ()).expect("room");
        (id(), id())
    }

    #[test]
    fn fanout_lists_sessions_with_their_addresses_and_is_reused() {
        let (b, c) = two_ids();
        let mut f = Fanout::default();
        f.push(b, "bob@localhost");
        f.push(c, "carol@localhost");
        let got: Vec<(ConnId, &str)> = f.iter().collect();
        assert_eq!(got, [(b, "bob@localhost"), (c, "carol@localhost")]);
        let capacity = f.heap_bytes();
        f.clear();
        assert_eq!(f.iter().count(), 0);
        assert_eq!(f.heap_bytes(), capacity);
    }

    #[test]
    fn buffers_that_grew_too_large_are_not_kept() {
        let mut slot = Vec::new();
        put_bytes(&mut slot, Vec::with_capacity(SCRATCH_KEEP_BYTES + 1));
        assert_eq!(slot.capacity(), 0);
        put_bytes(&mut slot, Vec::with_capacity(64));
        assert!(slot.capacity() >= 64);
        let mut fanout = Fanout::default();
        fanout.push(two_ids().0, &"x".repeat(SCRATCH_KEEP_BYTES));
        let mut kept = Fanout::default();
        put_fanout(&mut kept, fanout);
        assert_eq!(kept.heap_bytes(), 0);
        let long = Jid::parse(&format!("{}@example.org", "a".repeat(600))).unwrap();
        let mut jid_slot = None;
        put_jid(&mut jid_slot, long);
        assert!(jid_slot.is_none());
    }
}
