//! XEP-0160 Best Practices for Handling Offline Messages: a chat or normal message for an
//! account with no available resource is kept, and delivered at the account's next
//! initial presence, in order, with an XEP-0203 delay stamp.
//!
//! The message is written once, as an archive entry flagged `OFFLINE` (also `ARCHIVED`
//! when the account's MAM preferences keep it); delivery only appends a small marker. The
//! queue in memory is bounded per account by count and bytes; past the bound the sender
//! gets `<service-unavailable/>` (RFC 6121 §8.5.2.2.1's alternative to storage), never
//! silence.

use std::collections::VecDeque;

use super::Module;
use crate::archive::{ArchiveRecord, ArchivedMessage, flags};
use crate::core::Core;
use crate::jid::Jid;
use crate::router::ConnId;
use crate::stanza::MessageType;
use crate::xml::RawElement;
use crate::xml::escape::escape_attr;

pub static MODULE: Module = Module {
    name: "offline messages",
    spec: "XEP-0160 1.0.1 (with XEP-0203 delay stamps)",
    server_features: &["msgoffline"],
    account_features: &[],
    stream_features: &[],
    iq: &[],
};

/// An account's offline messages, oldest first.
#[derive(Default)]
pub struct OfflineQueue {
    pub msgs: VecDeque<ArchivedMessage>,
    pub bytes: usize,
}

impl OfflineQueue {
    pub fn push(&mut self, m: ArchivedMessage) {
        self.bytes += m.stanza.len();
        self.msgs.push_back(m);
    }
}

/// Inserts `children` as the last children of the stanza `text` (`<x …/>` or
/// `<x …>…</x>`, as the server writes them).
pub fn with_children(text: &str, children: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + children.len() + 12);
    write_with_children(&mut out, text, |out| {
        out.extend_from_slice(children.as_bytes())
    });
    String::from_utf8(out).unwrap_or_default()
}

/// [`with_children`] written into `out`, the children by `children`.
pub fn write_with_children(out: &mut Vec<u8>, text: &str, children: impl FnOnce(&mut Vec<u8>)) {
    // An element with content always has an end tag; one without is `<x …/>` (an
    // attribute value may hold a `>`, so that is not a test).
    if let Some(open) = text.strip_suffix("/>").filter(|_| !text.contains("</")) {
        let name_end = open.find([' ', '/']).unwrap_or(open.len());
        out.extend_from_slice(open.as_bytes());
        out.push(b'>');
        children(out);
        out.extend_from_slice(b"</");
        out.extend_from_slice(open.get(1..name_end).unwrap_or("message").as_bytes());
        out.push(b'>');
        return;
    }
    match text.rfind("</") {
        Some(pos) => {
            let (content, end_tag) = text.split_at(pos);
            out.extend_from_slice(content.as_bytes());
            children(out);
            out.extend_from_slice(end_tag.as_bytes());
        }
        None => out.extend_from_slice(text.as_bytes()),
    }
}

/// `<stanza-id/>` (XEP-0359) naming an archive entry of `by`.
pub fn stanza_id_element(by: &str, id: u64) -> String {
    let mut v = Vec::new();
    write_stanza_id(&mut v, by, id);
    String::from_utf8(v).unwrap_or_default()
}

/// [`stanza_id_element`] written into `out`.
pub fn write_stanza_id(out: &mut Vec<u8>, by: &str, id: u64) {
    out.extend_from_slice(b"<stanza-id xmlns='urn:xmpp:sid:0' by='");
    escape_attr(out, by);
    out.extend_from_slice(b"' id='");
    write_archive_id(out, id);
    out.extend_from_slice(b"'/>");
}

/// The stanza `text` with the stanza-id of `by`'s archive entry `id` as its last child.
pub fn write_with_stanza_id(out: &mut Vec<u8>, text: &str, by: &str, id: u64) {
    write_with_children(out, text, |out| write_stanza_id(out, by, id));
}

/// [`crate::archive::format_id`] (base 36) without the `String`: `u64::MAX` has 13 digits.
fn write_archive_id(out: &mut Vec<u8>, id: u64) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = [0u8; 13];
    let mut len = 0;
    let mut n = id;
    for slot in digits.iter_mut().rev() {
        *slot = DIGITS.get((n % 36) as usize).copied().unwrap_or(b'0');
        len += 1;
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(digits.len() - len..).unwrap_or_default());
}

impl Core {
    /// Keeps a message for `account` (no available resource). `archived`: the account's
    /// archive keeps it too. Errs when the account's offline queue is full.
    pub(crate) fn offline_store(
        &mut self,
        account: &str,
        with: &str,
        stanza: String,
        archived: bool,
    ) -> Result<u64, ()> {
        let (max_count, max_bytes) = (
            self.cfg.limits.max_offline_messages,
            self.cfg.limits.max_offline_bytes,
        );
        let (count, bytes) = self
            .offline
            .get(account)
            .map_or((0, 0), |q| (q.msgs.len(), q.bytes));
        if count >= max_count || bytes + stanza.len() > max_bytes {
            log::info!("offline storage of {account} is full; message refused");
            return Err(());
        }
        let msg = self.new_archived_message(
            account,
            with,
            flags::OFFLINE | if archived { flags::ARCHIVED } else { 0 },
            stanza,
        );
        let id = msg.id;
        self.offline
            .entry(account.to_string())
            .or_default()
            .push(msg.clone());
        self.archive_write(
            ArchiveRecord::Message(msg),
            Some((account.to_string(), id)),
            false,
        );
        Ok(id)
    }

    /// Takes back an offline message whose write failed.
    pub(crate) fn offline_forget(&mut self, account: &str, id: u64) {
        if let Some(q) = self.offline.get_mut(account)
            && let Some(pos) = q.msgs.iter().position(|m| m.id == id)
            && let Some(m) = q.msgs.remove(pos)
        {
            q.bytes -= m.stanza.len();
        }
    }

    /// At initial presence: every stored message, oldest first, with a delay stamp and
    /// (when archived) its stanza-id.
    pub(crate) fn offline_deliver(&mut self, conn: ConnId, account: &str) {
        let Some(q) = self.offline.remove(account) else {
            return;
        };
        let Some(up_to) = q.msgs.back().map(|m| m.id) else {
            return;
        };
        let domain = self.cfg.domain.clone();
        let bare = format!("{account}@{domain}");
        for m in &q.msgs {
            let mut extra = format!(
                "<delay xmlns='urn:xmpp:delay' from='{domain}' stamp='{}'>Offline storage</delay>",
                crate::datetime::format_ms(m.ts_ms)
            );
            if m.flags & flags::ARCHIVED != 0 {
                extra.push_str(&stanza_id_element(&bare, m.id));
            }
            let text = with_children(&m.stanza, &extra);
            self.send(conn, |out| out.extend_from_slice(text.as_bytes()));
        }
        log::debug!("[{conn}] delivered {} offline messages", q.msgs.len());
        // Not held: if the marker is lost in a crash the messages come again, which is
        // better than the other way round.
        self.archive_write(
            ArchiveRecord::OfflineDelivered {
                account: account.to_string(),
                up_to,
            },
            None,
            false,
        );
    }

    /// A message whose recipient session ended before acknowledging it (XEP-0198 §5):
    /// it goes where a message for an unavailable resource goes.
    pub(crate) fn redeliver_message(&mut self, raw: &RawElement) {
        let (Some(from), Some(to)) = (
            raw.attr("from"),
            raw.attr("to").and_then(|t| Jid::parse(t).ok()),
        ) else {
            return;
        };
        let mtype = MessageType::parse(raw.attr("type"));
        if !matches!(mtype, MessageType::Chat | MessageType::Normal) {
            return;
        }
        let Some(local) = to
            .local()
            .filter(|_| to.domain() == self.cfg.domain)
            .map(str::to_string)
        else {
            return;
        };
        let Some(account) = self.accounts.get(&local).copied() else {
            return;
        };
        let targets = self.bare_message_targets(account, mtype);
        let from = from.to_string();
        if targets.is_empty() {
            let with = Jid::parse(&from)
                .map(|j| j.bare_str().to_string())
                .unwrap_or(from.clone());
            let mut text = Vec::new();
            raw.write_with_addresses(&mut text, Some(&from), Some(to.as_str()), &[]);
            let text = String::from_utf8(text).unwrap_or_default();
            if self.offline_store(&local, &with, text, false).is_err() {
                log::warn!("a message for {to} that was never acknowledged could not be kept");
            }
            return;
        }
        // The stored `from` is one the server stamped: always a valid address.
        let Ok(from) = Jid::parse(&from) else {
            return;
        };
        for t in targets {
            self.deliver_from(None, t, raw, &from, to.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanza_ids_are_the_archive_ids_in_base_36() {
        for id in [
            0,
            1,
            35,
            36,
            1_295,
            1_296,
            1_234_567_890,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_archive_id(&mut out, id);
            assert_eq!(out, crate::archive::format_id(id).into_bytes(), "{id}");
        }
    }

    #[test]
    fn children_go_inside_either_form_of_stanza() {
        assert_eq!(
            with_children("<message to='a'/>", "<x/>"),
            "<message to='a'><x/></message>"
        );
        assert_eq!(
            with_children("<message to='a'><body>hi</body></message>", "<x/>"),
            "<message to='a'><body>hi</body><x/></message>"
        );
        assert_eq!(
            stanza_id_element("a@b", 36),
            "<stanza-id xmlns='urn:xmpp:sid:0' by='a@b' id='10'/>"
        );
    }
}
