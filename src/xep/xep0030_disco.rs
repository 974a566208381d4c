//! XEP-0030 Service Discovery 2.5: disco#info and disco#items for the server and for an
//! account's bare JID, built from the module table so each module contributes its own
//! features.

use super::{IqReply, IqRequest, IqRoute, IqTarget, MODULES, Module, Targets};
use crate::core::Core;
use crate::error::{StanzaCondition, StanzaError};
use crate::xml::Element;

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub static MODULE: Module = Module {
    name: "disco",
    spec: "XEP-0030 2.5",
    server_features: &[NS_DISCO_INFO, NS_DISCO_ITEMS],
    account_features: &[NS_DISCO_INFO, NS_DISCO_ITEMS],
    stream_features: &[],
    iq: &[
        IqRoute {
            element: "query",
            ns: NS_DISCO_INFO,
            targets: Targets::ANY,
            get: Some(info),
            set: None,
        },
        IqRoute {
            element: "query",
            ns: NS_DISCO_ITEMS,
            targets: Targets::ANY,
            get: Some(items),
            set: None,
        },
    ],
};

fn identity(category: &str, kind: &str, name: Option<&str>) -> Element {
    let mut e = Element::new("identity", NS_DISCO_INFO)
        .with_attr("category", category)
        .with_attr("type", kind);
    if let Some(n) = name {
        e.set_attr("name", n);
    }
    e
}

/// The features a target advertises, sorted and without duplicates.
pub fn features_for(target: IqTarget) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = MODULES
        .iter()
        .flat_map(|m| match target {
            IqTarget::Server => m.server_features.iter(),
            IqTarget::OwnAccount | IqTarget::OtherAccount(_) => m.account_features.iter(),
        })
        .copied()
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The account a disco request to a bare JID concerns (issue 7: PEP nodes live there).
fn account_of(core: &Core, req: &IqRequest) -> Option<String> {
    super::state::owner_of(core, req)
        .filter(|_| req.target != IqTarget::Server)
        .map(|(o, _)| o)
}

fn info(core: &mut Core, req: &IqRequest) -> IqReply {
    if let Some(node) = req.payload.attr("node") {
        // Issue 7 hook: PEP nodes of an account (XEP-0060 §5.3); nothing else has nodes.
        return match account_of(core, req)
            .and_then(|owner| super::hooks::account_node_info(core, &owner, &req.from, node))
        {
            Some(q) => IqReply::Result(Some(q)),
            None => IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound)),
        };
    }
    let mut q = Element::new("query", NS_DISCO_INFO);
    q = match req.target {
        IqTarget::Server => q.with_child(identity("server", "im", Some("xmppd"))),
        // XEP-0030 §3.1 / Registrar: a registered account on this server.
        IqTarget::OwnAccount | IqTarget::OtherAccount(_) => {
            let mut q = q.with_child(identity("account", "registered", None));
            // Issue 7 hook: e.g. XEP-0163's pubsub/pep.
            for (category, kind) in super::hooks::account_identities() {
                q = q.with_child(identity(category, kind, None));
            }
            q
        }
    };
    for f in features_for(req.target) {
        q = q.with_child(Element::new("feature", NS_DISCO_INFO).with_attr("var", f));
    }
    // Issue 7 hook: XEP-0128 extended information (XEP-0157 contact addresses).
    if req.target == IqTarget::Server {
        for form in super::hooks::server_info_forms(core) {
            q = q.with_child(form);
        }
    }
    IqReply::Result(Some(q))
}

fn items(core: &mut Core, req: &IqRequest) -> IqReply {
    if req.payload.attr("node").is_some() {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    }
    // Services (MUC, upload) will list themselves here when they exist.
    let mut q = Element::new("query", NS_DISCO_ITEMS);
    // Issue 7 hook: an account lists its PEP nodes (XEP-0060 §5.2).
    if let Some(owner) = account_of(core, req) {
        for item in super::hooks::account_items(core, &owner, &req.from) {
            q = q.with_child(item);
        }
    }
    IqReply::Result(Some(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_features_come_from_the_module_table() {
        let f = features_for(IqTarget::Server);
        assert!(f.contains(&"urn:xmpp:ping"));
        assert!(f.contains(&"jabber:iq:version"));
        assert!(f.contains(&NS_DISCO_INFO));
        let mut sorted = f.clone();
        sorted.sort_unstable();
        assert_eq!(f, sorted);
    }
}
