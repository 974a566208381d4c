//! XEP-0049 Private XML Storage 1.2: one element per (name, namespace) kept for the
//! account's own use, bounded by `CAP_PRIVATE_ITEMS` and the account's personal byte
//! limit. `storage:bookmarks` (XEP-0048) is not stored here: it is a view of the PEP
//! bookmarks (XEP-0402 §5.3 "#compat", [`super::xep0402_bookmarks`]), so both stay in
//! step.

use super::state::{send_result_raw, standalone_xml};
use super::xep0402_bookmarks::{self, NS_BOOKMARKS_LEGACY};
use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::Core;
use crate::db::Record;
use crate::error::{ErrorType, StanzaCondition, StanzaError};
use crate::limits::CAP_PRIVATE_ITEMS;
use crate::personal::{PersonalChange, private_key};
use crate::xml::Element;

pub const NS_PRIVATE: &str = "jabber:iq:private";

pub static MODULE: Module = Module {
    name: "private",
    spec: "XEP-0049 1.2",
    server_features: &[NS_PRIVATE],
    account_features: &[],
    stream_features: &[],
    iq: &[IqRoute {
        element: "query",
        ns: NS_PRIVATE,
        targets: Targets::ACCOUNTS,
        get: Some(private_get),
        set: Some(private_set),
    }],
};

fn not_acceptable(text: &'static str) -> IqReply {
    IqReply::Error(
        StanzaError::new(StanzaCondition::NotAcceptable)
            .with_type(ErrorType::Modify)
            .with_text(text),
    )
}

/// The single child the request names (§2.1), checked: exactly one, not in a reserved
/// `jabber:` namespace (§3).
fn target(req: &IqRequest) -> Result<&Element, IqReply> {
    let mut children = req.payload.elements();
    let (Some(e), None) = (children.next(), children.next()) else {
        return Err(not_acceptable("name exactly one element"));
    };
    if e.ns.starts_with("jabber:") {
        return Err(not_acceptable("jabber: namespaces are reserved"));
    }
    Ok(e)
}

fn own(core: &Core, req: &IqRequest) -> Result<String, IqReply> {
    match super::state::owner_of(core, req) {
        // §3: private data belongs to its owner only.
        Some((owner, true)) => Ok(owner),
        _ => Err(IqReply::Error(
            StanzaError::new(StanzaCondition::Forbidden).with_type(ErrorType::Cancel),
        )),
    }
}

/// The owner and the element a get or set names, both checked.
fn own_target<'r>(core: &Core, req: &'r IqRequest) -> Result<(String, &'r Element), IqReply> {
    Ok((own(core, req)?, target(req)?))
}

fn private_get(core: &mut Core, req: &IqRequest) -> IqReply {
    let (owner, e) = match own_target(core, req) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let stored = if e.name == "storage" && e.ns == NS_BOOKMARKS_LEGACY {
        Some(standalone_xml(&xep0402_bookmarks::legacy_view(
            core, &owner,
        )))
    } else {
        core.db.user(&owner).and_then(|u| {
            u.personal
                .private
                .get(&private_key(&e.name, &e.ns))
                .cloned()
        })
    };
    // §2.3: nothing stored: the empty element comes back.
    let inner = stored.unwrap_or_else(|| standalone_xml(&Element::new(&e.name, &e.ns)));
    let mut body = b"<query xmlns='jabber:iq:private'>".to_vec();
    body.extend_from_slice(inner.as_bytes());
    body.extend_from_slice(b"</query>");
    send_result_raw(core, req, &body);
    IqReply::Done
}

fn private_set(core: &mut Core, req: &IqRequest) -> IqReply {
    let (owner, e) = match own_target(core, req) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    if e.name == "storage" && e.ns == NS_BOOKMARKS_LEGACY {
        return match xep0402_bookmarks::import_legacy(core, &owner, e) {
            Ok(()) => IqReply::Result(None),
            Err(err) => IqReply::Error(err),
        };
    }
    let key = private_key(&e.name, &e.ns);
    let xml = (!e.children.is_empty()).then(|| standalone_xml(e));
    let Some(p) = core.db.user(&owner).map(|u| &u.personal) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    let old = p.private.get(&key).map_or(0, |v| 48 + key.len() + v.len());
    let new = xml.as_ref().map_or(0, |v| 48 + key.len() + v.len());
    let adds = !p.private.contains_key(&key) && xml.is_some();
    if (adds && p.private.len() >= CAP_PRIVATE_ITEMS)
        || p.footprint().saturating_sub(old) + new > core.cfg.limits.max_personal_bytes
    {
        return IqReply::Error(
            StanzaError::new(StanzaCondition::ResourceConstraint)
                .with_text("the account's private storage is full"),
        );
    }
    if p.private.get(&key) != xml.as_ref() {
        core.persist(Record::Personal {
            user: owner,
            change: PersonalChange::PrivateSet { key, xml },
        });
    }
    IqReply::Result(None)
}
