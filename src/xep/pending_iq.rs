//! Requests the server itself sent to clients (disco#info for entity capabilities), so
//! that their answers can be matched and acted on.
//!
//! Bounded ([`CAP_PENDING_IQS`]) and self-expiring: entries older than
//! [`PENDING_IQ_TIMEOUT_MS`] are dropped whenever one is added or looked up, and when
//! the table is full the oldest goes. No timer is needed: a forgotten request only means
//! a late answer is ignored. An answer must come from the address the request went to
//! (the core stamps `from`, RFC 6120 §8.1.2.1), so another client cannot answer for it.

use crate::limits::{CAP_PENDING_IQS, PENDING_IQ_TIMEOUT_MS};
use crate::router::ConnId;
use crate::time::Millis;

/// What to do with the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Awaiting {
    /// XEP-0115: the features behind a capabilities `ver` (`hashed`: `ver` is a SHA-1
    /// hash that the answer can be checked against and then cached by).
    CapsInfo { ver: String, hashed: bool },
}

#[derive(Clone, Debug)]
struct Pending {
    id: String,
    conn: ConnId,
    to: String,
    sent: Millis,
    what: Awaiting,
}

#[derive(Default)]
pub struct PendingIqs {
    entries: Vec<Pending>,
}

/// Prefix of the ids of requests in this table (idle pings use another).
pub const ID_PREFIX: &str = "xmppd-q-";

impl PendingIqs {
    fn expire(&mut self, now: Millis) {
        self.entries
            .retain(|p| now.saturating_sub(p.sent) < PENDING_IQ_TIMEOUT_MS);
    }

    /// Remembers a request sent to `to` (a full JID) over `conn`.
    pub fn add(&mut self, id: String, conn: ConnId, to: String, now: Millis, what: Awaiting) {
        self.expire(now);
        if self.entries.len() >= CAP_PENDING_IQS {
            self.entries.remove(0);
        }
        self.entries.push(Pending {
            id,
            conn,
            to,
            sent: now,
            what,
        });
    }

    /// Takes the request an answer with `id` from `from` belongs to.
    pub fn take(&mut self, id: &str, from: &str, now: Millis) -> Option<(ConnId, Awaiting)> {
        self.expire(now);
        let pos = self
            .entries
            .iter()
            .position(|p| p.id == id && p.to == from)?;
        let p = self.entries.remove(pos);
        Some((p.conn, p.what))
    }

    /// Whether a request of this kind is already out for `conn`.
    pub fn is_waiting(&self, conn: ConnId, what: &Awaiting) -> bool {
        self.entries
            .iter()
            .any(|p| p.conn == conn && &p.what == what)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::SlotTable;

    fn conn() -> ConnId {
        let mut t: SlotTable<(), 4> = SlotTable::new(4);
        t.insert_with(|_| ()).unwrap()
    }

    fn caps(v: &str) -> Awaiting {
        Awaiting::CapsInfo {
            ver: v.into(),
            hashed: true,
        }
    }

    #[test]
    fn answers_match_id_and_sender_and_expire() {
        let c = conn();
        let mut p = PendingIqs::default();
        p.add("a".into(), c, "x@l/r".into(), Millis(0), caps("v"));
        assert!(p.is_waiting(c, &caps("v")));
        assert_eq!(p.take("a", "mallory@l/r", Millis(1)), None);
        assert_eq!(p.take("a", "x@l/r", Millis(1)), Some((c, caps("v"))));
        assert_eq!(p.take("a", "x@l/r", Millis(1)), None);
        p.add("b".into(), c, "x@l/r".into(), Millis(0), caps("v"));
        assert_eq!(p.take("b", "x@l/r", Millis(PENDING_IQ_TIMEOUT_MS)), None);
        assert!(p.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let c = conn();
        let mut p = PendingIqs::default();
        for i in 0..CAP_PENDING_IQS + 10 {
            p.add(i.to_string(), c, "x".into(), Millis(1), caps("v"));
        }
        assert_eq!(p.len(), CAP_PENDING_IQS);
        assert_eq!(p.take("0", "x", Millis(1)), None);
        assert!(
            p.take(&(CAP_PENDING_IQS + 9).to_string(), "x", Millis(1))
                .is_some()
        );
    }
}
