//! XEP-0191 Blocking Command 1.3: block, unblock and list, with pushes to the sessions
//! that asked for the list (§3.2), kept in the store.
//!
//! Enforcement (§3.3, the rules of XEP-0016 for matching a JID: full, bare or domain):
//! - a blocked entity's message or iq to the user is answered `<service-unavailable/>`
//!   as if the user did not exist, its presence is dropped;
//! - the user's own stanzas to a blocked entity are refused with `<not-acceptable/>`
//!   and `<blocked xmlns='urn:xmpp:blocking:errors'/>` (presence is dropped);
//! - broadcast presence, probes answered for contacts and PEP notifications never
//!   cross a block in either direction;
//! - blocking sends unavailable presence to the blocked contact's sessions that saw the
//!   user; unblocking sends the user's current presence back to those allowed to see it.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::hooks::Hooks;
use super::state::{bounce_with_app, send_result_raw};
use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::Core;
use crate::db::Record;
use crate::error::{ErrorType, StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::personal::PersonalChange;
use crate::router::ConnId;
use crate::stanza::{self, Kind, PresenceType};
use crate::xml::escape::escape_attr;
use crate::xml::{Element, RawElement};

pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

pub static MODULE: Module = Module {
    name: "blocking",
    spec: "XEP-0191 1.3",
    server_features: &[NS_BLOCKING],
    account_features: &[],
    stream_features: &[],
    iq: &[
        IqRoute {
            element: "blocklist",
            ns: NS_BLOCKING,
            targets: Targets::OWN,
            get: Some(blocklist_get),
            set: None,
        },
        IqRoute {
            element: "block",
            ns: NS_BLOCKING,
            targets: Targets::OWN,
            get: None,
            set: Some(block),
        },
        IqRoute {
            element: "unblock",
            ns: NS_BLOCKING,
            targets: Targets::OWN,
            get: None,
            set: Some(unblock),
        },
    ],
};

pub static HOOKS: Hooks = Hooks {
    name: "blocking",
    outbound_filter: Some(outbound_filter),
    delivery_filter: Some(delivery_filter),
    ..Hooks::NONE
};

/// Whether `user`'s block list covers `jid` (XEP-0016 §2.1 matching order: full JID,
/// bare JID, domain/resource, domain).
pub fn user_blocks(core: &Core, user: &str, jid: &Jid) -> bool {
    let Some(list) = blocklist(core, user) else {
        return false;
    };
    list.contains(jid.as_str())
        || list.contains(jid.bare_str())
        || list.contains(jid.domain())
        || jid
            .resource()
            .is_some_and(|r| contains_joined(list, jid.domain(), '/', r))
}

/// `user`'s block list, when it has one that is not empty.
fn blocklist<'a>(core: &'a Core, user: &str) -> Option<&'a BTreeSet<String>> {
    core.db
        .user(user)
        .map(|u| &u.personal.blocklist)
        .filter(|list| !list.is_empty())
}

/// Whether `list` holds `head`, `sep` and `tail` joined, without building that string
/// (checked for every stanza delivered: it must not allocate).
fn contains_joined(list: &BTreeSet<String>, head: &str, sep: char, tail: &str) -> bool {
    list.range::<str, _>((Bound::Included(head), Bound::Unbounded))
        .take_while(|entry| entry.starts_with(head))
        .any(|entry| {
            entry
                .strip_prefix(head)
                .and_then(|rest| rest.strip_prefix(sep))
                == Some(tail)
        })
}

/// Whether a block stands between local account `user` and `other`, either way.
pub fn blocked_either_way(core: &Core, user: &str, other: &Jid) -> bool {
    let domain = core.cfg.domain.as_str();
    if other.domain() == domain && other.local() == Some(user) {
        return false;
    }
    if user_blocks(core, user, other) {
        return true;
    }
    // `other` is a local account whose list covers the user's bare JID (or our domain).
    other.domain() == domain
        && other
            .local()
            .and_then(|l| blocklist(core, l))
            .is_some_and(|list| list.contains(domain) || contains_joined(list, user, '@', domain))
}

/// §3.3: stanzas addressed across a block.
fn outbound_filter(
    core: &mut Core,
    conn: ConnId,
    from: &Jid,
    to: &Jid,
    kind: Kind,
    raw: &RawElement,
) -> bool {
    if to.same_bare(from) {
        return false;
    }
    let Some(sender) = from.local() else {
        return false;
    };
    let is_error = stanza::is_error(raw);
    let iq_answer = kind == Kind::Iq && matches!(raw.attr("type"), Some("result" | "error"));
    // The user blocked the recipient: refuse with the blocked condition.
    if user_blocks(core, sender, to) {
        if kind != Kind::Presence && !is_error && !iq_answer {
            // §3.3 example: the error comes from the blocked address.
            bounce_with_app(
                core,
                conn,
                raw,
                kind,
                from.as_str(),
                to.as_str(),
                StanzaError::new(StanzaCondition::NotAcceptable).with_type(ErrorType::Cancel),
                Some(("blocked", NS_BLOCKING_ERRORS)),
            );
        }
        return true;
    }
    // The recipient blocked the user: look like an account that does not exist.
    let recipient = match (to.domain() == core.cfg.domain, to.local()) {
        (true, Some(l)) => l,
        _ => return false,
    };
    if !user_blocks(core, recipient, from) {
        return false;
    }
    if kind != Kind::Presence && !is_error && !iq_answer {
        core.bounce(
            conn,
            raw,
            kind,
            from,
            StanzaError::new(StanzaCondition::ServiceUnavailable),
        );
    }
    true
}

/// Broadcasts and answered probes never cross a block.
fn delivery_filter(core: &Core, from: &Jid, to: &Jid, _raw: &RawElement) -> bool {
    match from.local() {
        Some(user) if !from.same_bare(to) => !blocked_either_way(core, user, to),
        _ => true,
    }
}

fn own_user(req: &IqRequest) -> Option<String> {
    req.from.local().map(str::to_string)
}

/// §3.2: the block list; the session now receives pushes.
fn blocklist_get(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some(user) = own_user(req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    if let Some(ext) = core.ext.conn_mut(req.conn) {
        ext.blocklist_interested = true;
    }
    let mut body = b"<blocklist xmlns='urn:xmpp:blocking'>".to_vec();
    if let Some(u) = core.db.user(&user) {
        for j in &u.personal.blocklist {
            body.extend_from_slice(b"<item jid='");
            escape_attr(&mut body, j);
            body.extend_from_slice(b"'/>");
        }
    }
    body.extend_from_slice(b"</blocklist>");
    send_result_raw(core, req, &body);
    IqReply::Done
}

/// The `<item jid='…'/>` children, normalised; `Err` on a malformed JID (§3.3.1).
fn items(payload: &Element) -> Result<Vec<Jid>, IqReply> {
    let mut out: Vec<Jid> = Vec::new();
    for i in payload
        .elements()
        .filter(|e| e.name == "item" && e.ns == NS_BLOCKING)
    {
        let jid = i
            .attr("jid")
            .and_then(|j| Jid::parse(j).ok())
            .ok_or(IqReply::Error(StanzaError::new(
                StanzaCondition::JidMalformed,
            )))?;
        if !out.contains(&jid) {
            out.push(jid);
        }
    }
    Ok(out)
}

/// §3.3: block JIDs.
fn block(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some(user) = own_user(req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    let jids = match items(&req.payload) {
        Ok(j) => j,
        Err(e) => return e,
    };
    // §3.3.1: a block without items is a bad request.
    if jids.is_empty() {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    }
    let Some(u) = core.db.user(&user) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    let new: Vec<Jid> = jids
        .into_iter()
        .filter(|j| !u.personal.blocklist.contains(j.as_str()))
        .collect();
    let grows: usize = new.iter().map(|j| 32 + j.as_str().len()).sum();
    let l = &core.cfg.limits;
    if u.personal.blocklist.len() + new.len() > l.max_blocklist_items
        || u.personal.footprint() + grows > l.max_personal_bytes
    {
        return IqReply::Error(
            StanzaError::new(StanzaCondition::NotAllowed)
                .with_type(ErrorType::Cancel)
                .with_text("the block list is full"),
        );
    }
    let user_bare = req.from.bare();
    for j in &new {
        // Say goodbye before the block hides the user.
        unavailable_to(core, &user, &user_bare, j);
        core.persist(Record::Personal {
            user: user.clone(),
            change: PersonalChange::BlockSet {
                jid: j.to_string(),
                blocked: true,
            },
        });
    }
    if !new.is_empty() {
        push(core, &user, "block", &new);
    }
    IqReply::Result(None)
}

/// §3.4: unblock JIDs, or everything when no item is given.
fn unblock(core: &mut Core, req: &IqRequest) -> IqReply {
    let Some(user) = own_user(req) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    let jids = match items(&req.payload) {
        Ok(j) => j,
        Err(e) => return e,
    };
    let Some(u) = core.db.user(&user) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    let removed: Vec<Jid> = if jids.is_empty() {
        u.personal
            .blocklist
            .iter()
            .filter_map(|j| Jid::parse(j).ok())
            .collect()
    } else {
        jids.into_iter()
            .filter(|j| u.personal.blocklist.contains(j.as_str()))
            .collect()
    };
    if removed.is_empty() {
        return IqReply::Result(None);
    }
    if u.personal.blocklist.len() == removed.len() {
        core.persist(Record::Personal {
            user: user.clone(),
            change: PersonalChange::BlockClear,
        });
    } else {
        for j in &removed {
            core.persist(Record::Personal {
                user: user.clone(),
                change: PersonalChange::BlockSet {
                    jid: j.to_string(),
                    blocked: false,
                },
            });
        }
    }
    // §3.4.2: an unblock of everything is pushed as an empty unblock.
    let pushed: &[Jid] = if u_len_was_all(&removed, core, &user) {
        &[]
    } else {
        &removed
    };
    push(core, &user, "unblock", pushed);
    let user_bare = req.from.bare();
    for j in &removed {
        presence_to(core, &user, &user_bare, j);
    }
    IqReply::Result(None)
}

/// Whether the list is now empty, so an unblock-all push is due.
fn u_len_was_all(_removed: &[Jid], core: &Core, user: &str) -> bool {
    core.db
        .user(user)
        .is_some_and(|u| u.personal.blocklist.is_empty())
}

/// §3.3.2 / §3.4.2: pushes the change to the sessions that asked for the list.
fn push(core: &mut Core, user: &str, what: &str, jids: &[Jid]) {
    let Some(account) = core.accounts.get(user).copied() else {
        return;
    };
    let targets: Vec<(ConnId, String)> = core
        .online
        .resources(account)
        .iter()
        .filter(|c| core.ext.conn(**c).is_some_and(|e| e.blocklist_interested))
        .filter_map(|c| {
            let s = core.conns.get(*c)?.session.as_ref()?;
            Some((*c, s.jid.to_string()))
        })
        .collect();
    for (conn, full) in targets {
        let id = core.random_id();
        core.send(conn, |out| {
            out.extend_from_slice(b"<iq type='set' id='push-");
            escape_attr(out, &id);
            out.extend_from_slice(b"' to='");
            escape_attr(out, &full);
            out.extend_from_slice(b"'><");
            out.extend_from_slice(what.as_bytes());
            out.extend_from_slice(b" xmlns='urn:xmpp:blocking'");
            if jids.is_empty() {
                out.extend_from_slice(b"/></iq>");
                return;
            }
            out.push(b'>');
            for j in jids {
                out.extend_from_slice(b"<item jid='");
                escape_attr(out, j.as_str());
                out.extend_from_slice(b"'/>");
            }
            out.extend_from_slice(b"</");
            out.extend_from_slice(what.as_bytes());
            out.extend_from_slice(b"></iq>");
        });
    }
}

/// Sessions of a local contact that currently see `user`'s presence.
fn watching_sessions(core: &Core, user: &str, contact: &Jid) -> Vec<(ConnId, String)> {
    if contact.domain() != core.cfg.domain {
        return Vec::new();
    }
    let Some(local) = contact.local() else {
        return Vec::new();
    };
    let sees = core
        .db
        .user(user)
        .and_then(|u| u.roster.get(contact.bare_str()))
        .is_some_and(|i| i.subscription.has_from());
    if !sees {
        return Vec::new();
    }
    let Some(account) = core.accounts.get(local).copied() else {
        return Vec::new();
    };
    core.available_sessions(account)
        .into_iter()
        .filter_map(|c| {
            let s = core.conns.get(c)?.session.as_ref()?;
            (contact.resource().is_none() || &s.jid == contact)
                .then(|| (c, s.jid.bare().to_string()))
        })
        .collect()
}

/// Full JIDs and last presence of the user's available sessions.
fn user_presences(core: &Core, user_bare: &Jid) -> Vec<(Jid, Option<RawElement>, ConnId)> {
    let Some(account) = user_bare
        .local()
        .and_then(|l| core.accounts.get(l))
        .copied()
    else {
        return Vec::new();
    };
    core.available_sessions(account)
        .into_iter()
        .filter_map(|c| {
            let s = core.conns.get(c)?.session.as_ref()?;
            Some((s.jid.clone(), s.last_presence.clone(), c))
        })
        .collect()
}

fn unavailable_to(core: &mut Core, user: &str, user_bare: &Jid, contact: &Jid) {
    let targets = watching_sessions(core, user, contact);
    for (full, _, _) in user_presences(core, user_bare) {
        for (c, to) in &targets {
            core.send(*c, |out| {
                stanza::write_presence(out, PresenceType::Unavailable, full.as_str(), to, None)
            });
        }
    }
}

fn presence_to(core: &mut Core, user: &str, user_bare: &Jid, contact: &Jid) {
    let targets = watching_sessions(core, user, contact);
    for (full, last, source) in user_presences(core, user_bare) {
        let Some(raw) = last else { continue };
        for (c, to) in &targets {
            core.deliver(source, *c, &raw, &full, to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_entries_are_found_without_building_them() {
        let list: BTreeSet<String> = [
            "example.org",
            "example.org.uk/x",
            "example.org/phone",
            "example.org/phone/2",
            "romeo@example.net",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert!(contains_joined(&list, "example.org", '/', "phone"));
        assert!(contains_joined(&list, "example.org", '/', "phone/2"));
        assert!(!contains_joined(&list, "example.org", '/', "pc"));
        assert!(!contains_joined(&list, "example.org", '/', "x"));
        assert!(!contains_joined(&list, "example.org", '/', ""));
        assert!(contains_joined(&list, "romeo", '@', "example.net"));
        assert!(!contains_joined(&list, "rome", '@', "example.net"));
        assert!(!contains_joined(&BTreeSet::new(), "a", '@', "b"));
    }
}
