//! The message archive as the core sees it: what is appended, what is asked, what comes
//! back. One structure serves both the personal archive (XEP-0313 MAM) and offline
//! storage (XEP-0160), so a message is written to flash once: an offline message is an
//! archive entry with the `OFFLINE` flag, and delivering it later only appends a small
//! marker.
//!
//! The store itself (append-only segment files, a bounded in-memory index, retention) is
//! shell code in `storage::archive`; the core hands it appends and queries through the
//! same group-commit pipeline as account records, and gets query results back as input.

/// Flags of an archived message.
pub mod flags {
    /// Visible to the account's MAM queries.
    pub const ARCHIVED: u8 = 1;
    /// Waiting for the account's next initial presence (offline storage).
    pub const OFFLINE: u8 = 2;
    /// The account sent it (otherwise it received it).
    pub const OUTGOING: u8 = 4;
}

/// One message in an account's archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// Unique, increasing across the whole server (also the XEP-0359 stanza-id, in
    /// base-36 text form); assigned by the core.
    pub id: u64,
    /// The account (normalised localpart) whose archive holds it.
    pub account: String,
    /// Unix time in milliseconds when the server handled it.
    pub ts_ms: u64,
    /// The other party's bare JID.
    pub with: String,
    pub flags: u8,
    /// The message as delivered (with the server-stamped `from`/`to`), without the
    /// stanza-id the archive adds.
    pub stanza: String,
}

/// What the core writes to the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArchiveRecord {
    Message(ArchivedMessage),
    /// Offline messages of `account` with `id <= up_to` were delivered.
    OfflineDelivered {
        account: String,
        up_to: u64,
    },
    /// The account was deleted: its messages are no longer visible.
    AccountDeleted {
        account: String,
    },
}

/// A MAM query (XEP-0313 §4) after the core has validated it. Timestamps in Unix ms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub account: String,
    /// Only messages exchanged with this bare JID (or full JID: then exact match on the
    /// stored `with`, which is bare, never matches a full JID — the core passes bare).
    pub with: Option<String>,
    pub start: Option<u64>,
    pub end: Option<u64>,
    /// RSM / `#extended` bounds: strictly after / before these ids.
    pub after_id: Option<u64>,
    pub before_id: Option<u64>,
    /// `<before/>` with no id: the last page.
    pub last_page: bool,
    /// Specific ids (`urn:xmpp:mam:2#extended` `ids` field); when set, other filters
    /// still apply.
    pub ids: Vec<u64>,
    /// Page size (already capped by the core).
    pub max: usize,
}

/// The answer to a query: messages in chronological order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub messages: Vec<ArchivedMessage>,
    /// No further messages match beyond this page in the direction queried
    /// (`<fin complete='true'/>`).
    pub complete: bool,
    /// How many messages match the filters in all (RSM `<count/>`), if known cheaply.
    pub count: Option<usize>,
    /// 0-based index of the first message of the page among all matches (RSM
    /// `<first index=''/>`), if known.
    pub first_index: Option<usize>,
}

/// A query in flight from the core to the store and back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveRequest {
    /// Chosen by the core to match the answer to the asking connection.
    pub token: u64,
    pub query: ArchiveQuery,
}

/// Stanza-ids are the archive id in base 36: short, and opaque as XEP-0359 asks.
pub fn format_id(id: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if id == 0 {
        return "0".into();
    }
    let mut n = id;
    let mut buf = Vec::with_capacity(13);
    while n > 0 {
        buf.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    buf.reverse();
    String::from_utf8(buf).unwrap_or_default()
}

pub fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 13 {
        return None;
    }
    let mut n: u64 = 0;
    for c in s.bytes() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            _ => return None,
        };
        n = n.checked_mul(36)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        for id in [0, 1, 35, 36, 1_234_567_890, u64::MAX] {
            assert_eq!(parse_id(&format_id(id)), Some(id));
        }
        assert_eq!(parse_id(""), None);
        assert_eq!(parse_id("ABC"), None);
        assert_eq!(parse_id("zzzzzzzzzzzzzz"), None);
    }
}
