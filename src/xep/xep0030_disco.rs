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
            targets: Targets {
                server: true,
                own_account: true,
                other_account: true,
            },
            get: Some(info),
            set: None,
        },
        IqRoute {
            element: "query",
            ns: NS_DISCO_ITEMS,
            targets: Targets {
                server: true,
                own_account: true,
                other_account: true,
            },
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

fn info(_core: &mut Core, req: &IqRequest) -> IqReply {
    // No nodes are published yet: a node query names something that does not exist.
    if req.payload.attr("node").is_some() {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    }
    let mut q = Element::new("query", NS_DISCO_INFO);
    q = match req.target {
        IqTarget::Server => q.with_child(identity("server", "im", Some("xmppd"))),
        // XEP-0030 §3.1 / Registrar: a registered account on this server.
        IqTarget::OwnAccount | IqTarget::OtherAccount(_) => {
            q.with_child(identity("account", "registered", None))
        }
    };
    for f in features_for(req.target) {
        q = q.with_child(Element::new("feature", NS_DISCO_INFO).with_attr("var", f));
    }
    IqReply::Result(Some(q))
}

fn items(_core: &mut Core, req: &IqRequest) -> IqReply {
    if req.payload.attr("node").is_some() {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    }
    // Services (MUC, upload) will list themselves here when they exist.
    IqReply::Result(Some(Element::new("query", NS_DISCO_ITEMS)))
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
