//! XEP-0163 Personal Eventing Protocol 1.2: every account is a PubSub service
//! ([`super::xep0060_pubsub`]) whose nodes are read and followed by its presence
//! subscribers.
//!
//! - Access (§4.1.1 default `presence`): the owner always; `open`: any local user;
//!   `presence`: contacts the owner's roster lets see its presence (`from`/`both`);
//!   `whitelist`: the owner only.
//! - Notifications (§4.3): to the available sessions of the owner and of the contacts
//!   the access model allows, filtered by the `NODE+notify` interests each session
//!   announced through entity capabilities ([`super::xep0115_caps`]), never across a
//!   block (XEP-0191).
//! - Last published item (§4.3.2): when a session comes online, or its interests become
//!   known, it gets the last item of each node it may see and is interested in.
//! - This is the only place PEP data leaves the server, so the checks live here.

use super::hooks::Hooks;
use super::xep0060_pubsub::{
    self as pubsub, NS_PUBSUB, NS_PUBSUB_OWNER, PubsubError, items_event, node_event,
    retract_event, write_event,
};
use super::xep0191_blocking::blocked_either_way;
use super::{IqRoute, Module, Targets};
use crate::core::Core;
use crate::jid::Jid;
use crate::personal::{AccessModel, SendLast};
use crate::router::{AccountId, ConnId};
use crate::xml::Element;

pub static MODULE: Module = Module {
    name: "pep",
    spec: "XEP-0163 1.2 on a XEP-0060 1.26 subset (with XEP-0223 publish-options)",
    server_features: &[],
    account_features: &[
        NS_PUBSUB,
        "http://jabber.org/protocol/pubsub#access-open",
        "http://jabber.org/protocol/pubsub#access-presence",
        "http://jabber.org/protocol/pubsub#access-whitelist",
        "http://jabber.org/protocol/pubsub#auto-create",
        "http://jabber.org/protocol/pubsub#config-node",
        "http://jabber.org/protocol/pubsub#create-and-configure",
        "http://jabber.org/protocol/pubsub#create-nodes",
        "http://jabber.org/protocol/pubsub#delete-items",
        "http://jabber.org/protocol/pubsub#delete-nodes",
        "http://jabber.org/protocol/pubsub#filtered-notifications",
        "http://jabber.org/protocol/pubsub#item-ids",
        "http://jabber.org/protocol/pubsub#last-published",
        "http://jabber.org/protocol/pubsub#multi-items",
        "http://jabber.org/protocol/pubsub#persistent-items",
        "http://jabber.org/protocol/pubsub#presence-notifications",
        "http://jabber.org/protocol/pubsub#publish",
        "http://jabber.org/protocol/pubsub#publish-options",
        "http://jabber.org/protocol/pubsub#purge-nodes",
        "http://jabber.org/protocol/pubsub#retract-items",
        "http://jabber.org/protocol/pubsub#retrieve-affiliations",
        "http://jabber.org/protocol/pubsub#retrieve-default",
        "http://jabber.org/protocol/pubsub#retrieve-items",
    ],
    stream_features: &[],
    iq: &[
        IqRoute {
            element: "pubsub",
            ns: NS_PUBSUB,
            targets: Targets::ACCOUNTS,
            get: Some(pubsub::pubsub_get),
            set: Some(pubsub::pubsub_set),
        },
        IqRoute {
            element: "pubsub",
            ns: NS_PUBSUB_OWNER,
            targets: Targets::ACCOUNTS,
            get: Some(pubsub::owner_get),
            set: Some(pubsub::owner_set),
        },
    ],
};

pub static HOOKS: Hooks = Hooks {
    name: "pep",
    // XEP-0163 §4.1: the account's bare JID is a PEP service.
    account_identities: &[("pubsub", "pep")],
    account_node_info: Some(node_info),
    account_items: Some(node_items),
    ..Hooks::NONE
};

fn is_owner(core: &Core, owner: &str, requester: &Jid) -> bool {
    requester.domain() == core.cfg.domain && requester.local() == Some(owner)
}

/// Whether `requester` may read a node of `owner` with this access model.
pub fn may_access(
    core: &Core,
    owner: &str,
    requester: &Jid,
    access: AccessModel,
) -> Result<(), PubsubError> {
    if is_owner(core, owner, requester) {
        return Ok(());
    }
    if blocked_either_way(core, owner, requester) {
        return Err(PubsubError::PresenceRequired);
    }
    match access {
        AccessModel::Open => Ok(()),
        AccessModel::Presence => {
            let sees = core
                .db
                .user(owner)
                .and_then(|u| u.roster.get(requester.bare_str()))
                .is_some_and(|i| i.subscription.has_from());
            if sees {
                Ok(())
            } else {
                Err(PubsubError::PresenceRequired)
            }
        }
        AccessModel::Whitelist => Err(PubsubError::ClosedNode),
    }
}

/// The local account of a bare JID of our domain.
fn local_account(core: &Core, jid: &Jid) -> Option<AccountId> {
    if jid.domain() != core.cfg.domain {
        return None;
    }
    core.accounts.get(jid.local()?).copied()
}

/// The owner's account and the accounts of contacts the access model lets follow it.
fn followers(core: &Core, owner: &str, access: AccessModel) -> Vec<AccountId> {
    let mut out = Vec::new();
    if let Some(a) = core.accounts.get(owner) {
        out.push(*a);
    }
    if access == AccessModel::Whitelist {
        return out;
    }
    let Some(u) = core.db.user(owner) else {
        return out;
    };
    for (jid, item) in &u.roster {
        if !item.subscription.has_from() {
            continue;
        }
        let Ok(contact) = Jid::parse(jid) else {
            continue;
        };
        if blocked_either_way(core, owner, &contact) {
            continue;
        }
        if let Some(a) = local_account(core, &contact)
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// Available sessions of `accounts` interested in `node`, with their full JIDs.
fn interested_sessions(core: &Core, accounts: &[AccountId], node: &str) -> Vec<(ConnId, String)> {
    let mut out = Vec::new();
    for a in accounts {
        for c in core.available_sessions(*a) {
            let wants = core
                .ext
                .conn(c)
                .and_then(|e| e.notify.as_ref())
                .is_some_and(|n| n.binary_search_by(|x| x.as_str().cmp(node)).is_ok());
            if !wants {
                continue;
            }
            if let Some(s) = core.conns.get(c).and_then(|x| x.session.as_ref()) {
                out.push((c, s.jid.to_string()));
            }
        }
    }
    out
}

fn send_to_followers(core: &mut Core, owner: &str, node: &str, inner: &[u8]) {
    let Some(access) = pubsub::node(core, owner, node).map(|n| n.config.access_model) else {
        return;
    };
    let accounts = followers(core, owner, access);
    let targets = interested_sessions(core, &accounts, node);
    let from = format!("{owner}@{}", core.cfg.domain);
    for (conn, full) in targets {
        let id = core.random_id();
        core.send(conn, |out| write_event(out, &from, &full, &id, inner));
    }
}

/// §4.3: tells followers about a published item.
pub fn notify_item(core: &mut Core, owner: &str, node: &str, id: &str, payload: &str) {
    let deliver = pubsub::node(core, owner, node).is_none_or(|n| n.config.deliver_payloads);
    let publisher = format!("{owner}@{}", core.cfg.domain);
    let inner = items_event(node, id, &publisher, deliver.then_some(payload));
    send_to_followers(core, owner, node, &inner);
}

/// XEP-0060 §7.2.2.1: tells followers about a retracted item.
pub fn notify_retract(core: &mut Core, owner: &str, node: &str, id: &str) {
    send_to_followers(core, owner, node, &retract_event(node, id));
}

/// XEP-0060 §8.4.3.1 / §8.5.3.1: tells followers a node was deleted or purged (call
/// before the node is gone).
pub fn notify_node_event(core: &mut Core, owner: &str, node: &str, what: &str) {
    send_to_followers(core, owner, node, &node_event(what, node));
}

/// §4.3.2: the last item of every node the session follows and may see.
pub fn send_last_items_to_session(core: &mut Core, conn: ConnId) {
    let Some((jid, account)) = core
        .conns
        .get(conn)
        .and_then(|c| c.session.as_ref())
        .filter(|s| s.available)
        .map(|s| (s.jid.clone(), s.account))
    else {
        return;
    };
    let Some(notify) = core.ext.conn(conn).and_then(|e| e.notify.clone()) else {
        return;
    };
    if notify.is_empty() {
        return;
    }
    let Some(user) = jid.local().map(str::to_string) else {
        return;
    };
    let _ = account;
    // The session's own account, and every contact whose presence it receives.
    let mut owners = vec![user.clone()];
    if let Some(u) = core.db.user(&user) {
        for (contact, item) in &u.roster {
            if !item.subscription.has_to() {
                continue;
            }
            if let Ok(c) = Jid::parse(contact)
                && c.domain() == core.cfg.domain
                && let Some(l) = c.local()
                && core.db.user(l).is_some()
            {
                owners.push(l.to_string());
            }
        }
    }
    let full = jid.to_string();
    for owner in owners {
        let from = format!("{owner}@{}", core.cfg.domain);
        let mut events: Vec<Vec<u8>> = Vec::new();
        if let Some(u) = core.db.user(&owner) {
            for name in notify.iter() {
                let Some(n) = u.personal.nodes.get(name) else {
                    continue;
                };
                if n.config.send_last != SendLast::OnSubAndPresence {
                    continue;
                }
                let Some(last) = n.last() else { continue };
                if may_access(core, &owner, &jid, n.config.access_model).is_err() {
                    continue;
                }
                let payload = n.config.deliver_payloads.then_some(last.payload.as_str());
                events.push(items_event(name, &last.id, &from, payload));
            }
        }
        for inner in events {
            let id = core.random_id();
            core.send(conn, |out| write_event(out, &from, &full, &id, &inner));
        }
    }
}

/// XEP-0060 §5.3: disco#info of a node the requester may see.
fn node_info(core: &Core, owner: &str, requester: &Jid, node: &str) -> Option<Element> {
    let n = pubsub::node(core, owner, node)?;
    may_access(core, owner, requester, n.config.access_model).ok()?;
    use super::xep0030_disco::NS_DISCO_INFO;
    Some(
        Element::new("query", NS_DISCO_INFO)
            .with_attr("node", node)
            .with_child(
                Element::new("identity", NS_DISCO_INFO)
                    .with_attr("category", "pubsub")
                    .with_attr("type", "leaf"),
            )
            .with_child(Element::new("feature", NS_DISCO_INFO).with_attr("var", NS_PUBSUB)),
    )
}

/// XEP-0060 §5.2: the nodes of the account the requester may see.
fn node_items(core: &Core, owner: &str, requester: &Jid) -> Vec<Element> {
    use super::xep0030_disco::NS_DISCO_ITEMS;
    let Some(u) = core.db.user(owner) else {
        return Vec::new();
    };
    let bare = format!("{owner}@{}", core.cfg.domain);
    u.personal
        .nodes
        .iter()
        .filter(|(_, n)| may_access(core, owner, requester, n.config.access_model).is_ok())
        .map(|(name, n)| {
            let mut e = Element::new("item", NS_DISCO_ITEMS)
                .with_attr("jid", &bare)
                .with_attr("node", name);
            if let Some(t) = &n.config.title {
                e.set_attr("name", t);
            }
            e
        })
        .collect()
}
