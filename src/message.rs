//! Facts about a message the router needs — does it have a body, processing hints
//! (XEP-0334), carbons markers (XEP-0280), chat states (XEP-0085), stanza-ids (XEP-0359) —
//! read from the framed bytes in one pass over its direct children, without building a
//! tree or allocating.

use crate::xml::{NS_CLIENT, RawElement};

pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
pub const NS_HINTS: &str = "urn:xmpp:hints";
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_MAM: &str = "urn:xmpp:mam:2";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageInfo {
    pub has_body: bool,
    /// `<private xmlns='urn:xmpp:carbons:2'/>`.
    pub private: bool,
    /// XEP-0334 hints.
    pub no_copy: bool,
    pub no_store: bool,
    pub no_permanent_store: bool,
    pub store: bool,
    /// Already a carbon copy (`<sent/>`/`<received/>`): never copied again.
    pub carbon: bool,
    /// Carries a chat state notification.
    pub chat_state: bool,
    /// Carries a `<stanza-id/>` (which the archiving server must check, XEP-0359 §5).
    pub stanza_id: bool,
    /// Carries a MAM result: not a conversation message.
    pub mam_result: bool,
    /// Some child could not be classified (a prefix declared elsewhere): callers that
    /// need certainty take the slow path.
    pub uncertain: bool,
}

/// Scans the direct children of a framed message.
pub fn scan(raw: &RawElement) -> MessageInfo {
    let mut info = MessageInfo::default();
    for child in raw.children() {
        match child.ns {
            Some(ns) => classify(&mut info, child.name, ns),
            None => info.uncertain = true,
        }
    }
    info
}

fn classify(info: &mut MessageInfo, name: &str, ns: &str) {
    match (ns, name) {
        (NS_CLIENT, "body") => info.has_body = true,
        (NS_CARBONS, "private") => info.private = true,
        (NS_CARBONS, "sent" | "received") => info.carbon = true,
        (NS_HINTS, "no-copy") => info.no_copy = true,
        (NS_HINTS, "no-store") => info.no_store = true,
        (NS_HINTS, "no-permanent-store") => info.no_permanent_store = true,
        (NS_HINTS, "store") => info.store = true,
        (NS_CHATSTATES, _) => info.chat_state = true,
        (NS_SID, "stanza-id") => info.stanza_id = true,
        (NS_MAM, "result") => info.mam_result = true,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(xml: &str) -> MessageInfo {
        scan(&RawElement::from_xml(xml, NS_CLIENT).expect("well-formed"))
    }

    #[test]
    fn body_hints_and_states_are_found_only_as_direct_children() {
        let i = info(
            "<message><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert!(i.has_body && i.chat_state && !i.private);
        let i =
            info("<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert!(!i.has_body && i.chat_state);
        let i = info(
            "<message><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/><body>x</body></message>",
        );
        assert!(i.private && i.no_copy && i.has_body);
        let nested = info("<message><x xmlns='urn:example'><body>not mine</body></x></message>");
        assert!(
            !nested.has_body,
            "a body inside another element is not the message body"
        );
        let prefixed = info("<message xmlns:c='urn:xmpp:carbons:2'><c:received/></message>");
        assert!(prefixed.carbon);
        let own_prefix = info("<message><h:no-store xmlns:h='urn:xmpp:hints'/></message>");
        assert!(own_prefix.no_store);
        let other_ns_body = info("<message><body xmlns='urn:other'>x</body></message>");
        assert!(!other_ns_body.has_body);
        let sid = info(
            "<message><stanza-id xmlns='urn:xmpp:sid:0' by='a@b' id='1'/><body>x</body></message>",
        );
        assert!(sid.stanza_id && sid.has_body);
        assert_eq!(info("<message/>"), MessageInfo::default());
    }
}
