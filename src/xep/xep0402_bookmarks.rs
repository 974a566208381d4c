//! XEP-0402 PEP Native Bookmarks 1.2 with `urn:xmpp:bookmarks:1#compat` (§5.3): the
//! bookmarks live in the `urn:xmpp:bookmarks:1` PEP node (one item per room, plain PEP
//! otherwise), and the XEP-0048 `storage:bookmarks` element in private XML storage
//! (XEP-0049) is a view of them: reading it converts the node's items, writing it
//! publishes and retracts items so that the node matches. Clients of either generation
//! see the same rooms.
//!
//! Not converted: XEP-0048 `<url/>` bookmarks (XEP-0402 has none) and XEP-0402
//! `<extensions/>` (XEP-0048 has none; they are kept on items a legacy write leaves
//! unchanged).

use super::Module;
use super::state::standalone_xml;
use super::xep0060_pubsub::{self as pubsub, PubsubError};
use crate::core::Core;
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::personal::{AccessModel, NodeConfig, SendLast};
use crate::xml::Element;

pub const NS_BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
pub const NS_BOOKMARKS_LEGACY: &str = "storage:bookmarks";

pub static MODULE: Module = Module {
    name: "bookmarks",
    spec: "XEP-0402 1.2 (#compat with XEP-0048 1.2 in XEP-0049)",
    server_features: &[],
    account_features: &["urn:xmpp:bookmarks:1#compat"],
    stream_features: &[],
    iq: &[],
};

/// XEP-0402 §3.2 publish-options: private, every item kept, nothing sent on presence.
pub fn node_config(max_items: usize) -> NodeConfig {
    NodeConfig {
        access_model: AccessModel::Whitelist,
        max_items: u32::try_from(max_items).unwrap_or(u32::MAX),
        persist_items: true,
        send_last: SendLast::Never,
        ..NodeConfig::default()
    }
}

fn is_true(s: Option<&str>) -> bool {
    matches!(s, Some("1" | "true"))
}

/// Adds to `e`, a `<conference/>` in `to_ns`, the autojoin flag (as `true`/`false`), name,
/// nick and password of `c`, whose children are in `from_ns`: the fields XEP-0402 and
/// XEP-0048 have in common.
fn with_shared_fields(mut e: Element, c: &Element, from_ns: &str, to_ns: &str) -> Element {
    let autojoin = if is_true(c.attr("autojoin")) {
        "true"
    } else {
        "false"
    };
    e.set_attr("autojoin", autojoin);
    if let Some(n) = c.attr("name") {
        e.set_attr("name", n);
    }
    for child in ["nick", "password"] {
        if let Some(v) = c.child(child, from_ns) {
            e = e.with_child(Element::new(child, to_ns).with_text(&v.text()));
        }
    }
    e
}

/// XEP-0402 `<conference/>` item (id = room JID) → XEP-0048 `<conference/>`.
fn to_legacy(room: &str, c: &Element) -> Element {
    let e = Element::new("conference", NS_BOOKMARKS_LEGACY).with_attr("jid", room);
    with_shared_fields(e, c, NS_BOOKMARKS, NS_BOOKMARKS_LEGACY)
}

/// XEP-0048 `<conference/>` → `(room, XEP-0402 <conference/>)`, keeping the extensions
/// of the item it replaces.
fn from_legacy(c: &Element, previous: Option<&Element>) -> Option<(String, Element)> {
    let room = Jid::parse(c.attr("jid")?).ok()?.bare().to_string();
    let e = Element::new("conference", NS_BOOKMARKS);
    let mut e = with_shared_fields(e, c, NS_BOOKMARKS_LEGACY, NS_BOOKMARKS);
    if let Some(ext) = previous.and_then(|p| p.child("extensions", NS_BOOKMARKS)) {
        e = e.with_child(ext.clone());
    }
    Some((room, e))
}

/// The XEP-0048 view of the account's bookmarks.
pub fn legacy_view(core: &Core, owner: &str) -> Element {
    let mut storage = Element::new("storage", NS_BOOKMARKS_LEGACY);
    if let Some(node) = pubsub::node(core, owner, NS_BOOKMARKS) {
        for item in &node.items {
            if let Some(c) = super::state::parse_stored(&item.payload)
                && c.name == "conference"
                && c.ns == NS_BOOKMARKS
            {
                storage = storage.with_child(to_legacy(&item.id, &c));
            }
        }
    }
    storage
}

/// A XEP-0048 write: makes the PEP node hold exactly the rooms of `storage`.
pub fn import_legacy(core: &mut Core, owner: &str, storage: &Element) -> Result<(), StanzaError> {
    let existing: Vec<(String, String)> = pubsub::node(core, owner, NS_BOOKMARKS)
        .map(|n| {
            n.items
                .iter()
                .map(|i| (i.id.clone(), i.payload.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut wanted: Vec<(String, String)> = Vec::new();
    for c in storage
        .elements()
        .filter(|c| c.name == "conference" && c.ns == NS_BOOKMARKS_LEGACY)
    {
        let previous = existing
            .iter()
            .find(|(id, _)| Some(id.as_str()) == c.attr("jid"))
            .and_then(|(_, p)| super::state::parse_stored(p));
        if let Some((room, conf)) = from_legacy(c, previous.as_ref())
            && !wanted.iter().any(|(r, _)| *r == room)
        {
            wanted.push((room, standalone_xml(&conf)));
        }
    }
    let max = core.cfg.limits.max_pep_items_per_node;
    if wanted.len() > max {
        return Err(StanzaError::new(StanzaCondition::ResourceConstraint)
            .with_text("more bookmarks than the server keeps"));
    }
    let to_error = |e: PubsubError| match e {
        PubsubError::Quota | PubsubError::PayloadTooBig => {
            StanzaError::new(StanzaCondition::ResourceConstraint)
                .with_text("the account's personal data is at its limit")
        }
        _ => StanzaError::new(StanzaCondition::InternalServerError),
    };
    for (id, _) in &existing {
        if !wanted.iter().any(|(r, _)| r == id) {
            pubsub::retract_item(core, owner, NS_BOOKMARKS, id, true).map_err(to_error)?;
        }
    }
    for (room, payload) in wanted {
        if existing.iter().any(|(id, p)| *id == room && *p == payload) {
            continue;
        }
        pubsub::publish_item(core, owner, NS_BOOKMARKS, &room, payload, node_config(max))
            .map_err(to_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xep::state::parse_stored;

    #[test]
    fn conversion_round_trips_the_shared_fields() {
        let legacy = parse_stored(
            "<conference xmlns='storage:bookmarks' jid='Room@muc.localhost' name='The Room' autojoin='1'>\
             <nick>al</nick><password>pw</password></conference>",
        )
        .unwrap();
        let (room, native) = from_legacy(&legacy, None).unwrap();
        assert_eq!(room, "room@muc.localhost");
        assert_eq!(
            native.to_xml(""),
            "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true' name='The Room'>\
             <nick>al</nick><password>pw</password></conference>"
        );
        let back = to_legacy(&room, &native);
        assert_eq!(back.attr("autojoin"), Some("true"));
        assert_eq!(
            back.child("nick", NS_BOOKMARKS_LEGACY).map(|n| n.text()),
            Some("al".into())
        );
    }
}
