//! XEP-0199 XMPP Ping 2.0: the server answers pings addressed to it (and, as Prosody
//! does, pings a client addresses to its own account).

use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::Core;

pub const NS_PING: &str = "urn:xmpp:ping";

pub static MODULE: Module = Module {
    name: "ping",
    spec: "XEP-0199 2.0.1",
    server_features: &[NS_PING],
    account_features: &[],
    stream_features: &[],
    iq: &[IqRoute {
        element: "ping",
        ns: NS_PING,
        targets: Targets::SERVER_AND_OWN,
        get: Some(pong),
        set: None,
    }],
};

fn pong(_core: &mut Core, _req: &IqRequest) -> IqReply {
    IqReply::Result(None)
}
