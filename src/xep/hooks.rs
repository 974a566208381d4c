//! Events of the core that extension modules react to, in one table beside [`MODULES`].
//!
//! [`MODULES`] says which iq payloads a module answers; some modules also need to see
//! other moments of a stanza's life: a session's available presence (entity
//! capabilities, PEP last items), a stanza about to be routed or delivered (block lists),
//! an answer to a request the server sent (capabilities), an iq before login (in-band
//! registration), the server's service-discovery data (XEP-0128 forms, PEP identities and
//! nodes). The core calls the dispatchers below from the one place each event happens;
//! no feature-specific code lives in the router.
//!
//! [`MODULES`]: super::MODULES

use crate::core::Core;
use crate::jid::Jid;
use crate::router::ConnId;
use crate::stanza::Kind;
use crate::xml::{Element, RawElement};

pub type NodeInfoHook = fn(&Core, &str, &Jid, &str) -> Option<Element>;
pub type ItemsHook = fn(&Core, &str, &Jid) -> Vec<Element>;
pub type PreauthIqHook = fn(&mut Core, ConnId, bool, &RawElement) -> bool;
pub type OutboundHook = fn(&mut Core, ConnId, &Jid, &Jid, Kind, &RawElement) -> bool;
pub type DeliveryHook = fn(&Core, &Jid, &Jid, &RawElement) -> bool;
pub type RewriteHook = fn(&Core, ConnId, &Jid, &RawElement) -> Option<RawElement>;
pub type PresenceHook = fn(&mut Core, ConnId, &Jid, &RawElement, bool);
pub type ResponseHook = fn(&mut Core, ConnId, &Jid, &RawElement) -> bool;

/// Optional reactions of one module; [`Hooks::NONE`] fills the ones it does not have.
pub struct Hooks {
    pub name: &'static str,
    /// `(category, type)` identities added to an account's disco#info.
    pub account_identities: &'static [(&'static str, &'static str)],
    /// XEP-0128 forms added to the server's disco#info.
    pub server_info_forms: Option<fn(&Core) -> Vec<Element>>,
    /// disco#info of `node` at account `owner` (localpart), asked by `requester`.
    pub account_node_info: Option<NodeInfoHook>,
    /// disco#items of account `owner` (localpart), asked by `requester`.
    pub account_items: Option<ItemsHook>,
    /// Raw elements added to `<stream:features/>` before authentication; `bool`: TLS is up.
    pub preauth_features: Option<fn(&Core, bool, &mut Vec<u8>)>,
    /// An iq before authentication; returns whether it was handled (else the stream is
    /// closed with `<not-authorized/>`, RFC 6120 §6.1). `bool`: TLS is up.
    pub preauth_iq: Option<PreauthIqHook>,
    /// A client's stanza addressed to `to`, before routing; returns whether it was
    /// consumed (dropped or answered with an error).
    pub outbound_filter: Option<OutboundHook>,
    /// Whether a stanza from session `sender` may reach session `target` (false: it is
    /// dropped silently).
    pub delivery_filter: Option<DeliveryHook>,
    /// Available presence from a session, about to be broadcast and remembered; may
    /// return a changed copy.
    pub rewrite_presence: Option<RewriteHook>,
    /// A session sent available presence (`true`: its first since it went online).
    pub available_presence: Option<PresenceHook>,
    /// An iq result or error addressed to the server; returns whether it was expected.
    pub iq_response: Option<ResponseHook>,
}

impl Hooks {
    pub const NONE: Hooks = Hooks {
        name: "",
        account_identities: &[],
        server_info_forms: None,
        account_node_info: None,
        account_items: None,
        preauth_features: None,
        preauth_iq: None,
        outbound_filter: None,
        delivery_filter: None,
        rewrite_presence: None,
        available_presence: None,
        iq_response: None,
    };
}

/// Every module with hooks, in the order they run.
pub static HOOKS: &[&Hooks] = &[
    &super::xep0191_blocking::HOOKS,
    &super::xep0163_pep::HOOKS,
    &super::xep0115_caps::HOOKS,
    &super::xep0398_avatar_conversion::HOOKS,
    &super::xep0077_register::HOOKS,
    &super::xep0157_contact::HOOKS,
];

pub fn account_identities() -> impl Iterator<Item = (&'static str, &'static str)> {
    HOOKS
        .iter()
        .flat_map(|h| h.account_identities.iter().copied())
}

pub fn server_info_forms(core: &Core) -> Vec<Element> {
    HOOKS
        .iter()
        .filter_map(|h| h.server_info_forms)
        .flat_map(|f| f(core))
        .collect()
}

pub fn account_node_info(core: &Core, owner: &str, requester: &Jid, node: &str) -> Option<Element> {
    HOOKS
        .iter()
        .filter_map(|h| h.account_node_info)
        .find_map(|f| f(core, owner, requester, node))
}

pub fn account_items(core: &Core, owner: &str, requester: &Jid) -> Vec<Element> {
    HOOKS
        .iter()
        .filter_map(|h| h.account_items)
        .flat_map(|f| f(core, owner, requester))
        .collect()
}

pub fn write_preauth_features(core: &Core, tls: bool, out: &mut Vec<u8>) {
    for f in HOOKS.iter().filter_map(|h| h.preauth_features) {
        f(core, tls, out);
    }
}

pub fn preauth_iq(core: &mut Core, conn: ConnId, tls: bool, raw: &RawElement) -> bool {
    HOOKS
        .iter()
        .filter_map(|h| h.preauth_iq)
        .any(|f| f(core, conn, tls, raw))
}

pub fn outbound_filter(
    core: &mut Core,
    conn: ConnId,
    from: &Jid,
    to: &Jid,
    kind: Kind,
    raw: &RawElement,
) -> bool {
    HOOKS
        .iter()
        .filter_map(|h| h.outbound_filter)
        .any(|f| f(core, conn, from, to, kind, raw))
}

/// Whether the stanza `raw`, stamped `from`, may be delivered to connection `target`.
pub fn may_deliver(core: &Core, from: &Jid, target: ConnId, raw: &RawElement) -> bool {
    let Some(to) = core
        .conns
        .get(target)
        .and_then(|x| x.session.as_ref())
        .map(|s| &s.jid)
    else {
        return true;
    };
    HOOKS
        .iter()
        .filter_map(|h| h.delivery_filter)
        .all(|f| f(core, from, to, raw))
}

/// The presence as the modules rewrote it, or `None` when none changed it.
pub fn rewrite_presence(
    core: &Core,
    conn: ConnId,
    from: &Jid,
    raw: &RawElement,
) -> Option<RawElement> {
    let mut rewritten: Option<RawElement> = None;
    for f in HOOKS.iter().filter_map(|h| h.rewrite_presence) {
        if let Some(changed) = f(core, conn, from, rewritten.as_ref().unwrap_or(raw)) {
            rewritten = Some(changed);
        }
    }
    rewritten
}

pub fn available_presence(
    core: &mut Core,
    conn: ConnId,
    from: &Jid,
    raw: &RawElement,
    initial: bool,
) {
    for f in HOOKS.iter().filter_map(|h| h.available_presence) {
        f(core, conn, from, raw, initial);
    }
}

pub fn iq_response(core: &mut Core, conn: ConnId, from: &Jid, raw: &RawElement) -> bool {
    HOOKS
        .iter()
        .filter_map(|h| h.iq_response)
        .any(|f| f(core, conn, from, raw))
}
