//! XEP-0092 Software Version 1.1. The operating system is not disclosed: a router's OS
//! version is a fingerprint for attackers and of no use to chat clients.

use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::Core;
use crate::xml::Element;

pub const NS_VERSION: &str = "jabber:iq:version";

pub static MODULE: Module = Module {
    name: "version",
    spec: "XEP-0092 1.1",
    server_features: &[NS_VERSION],
    account_features: &[],
    stream_features: &[],
    iq: &[IqRoute {
        element: "query",
        ns: NS_VERSION,
        targets: Targets::SERVER,
        get: Some(version),
        set: None,
    }],
};

fn version(_core: &mut Core, _req: &IqRequest) -> IqReply {
    let q = Element::new("query", NS_VERSION)
        .with_child(Element::new("name", NS_VERSION).with_text("xmppd"))
        .with_child(Element::new("version", NS_VERSION).with_text(env!("CARGO_PKG_VERSION")));
    IqReply::Result(Some(q))
}
