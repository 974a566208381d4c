//! The legacy session iq of RFC 3921 §3. RFC 6121 dropped it, but older clients still send
//! it after binding; it is advertised as optional (draft-cridland-xmpp-session-01) and
//! answered with an empty result.

use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::Core;

pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

pub static MODULE: Module = Module {
    name: "session",
    spec: "RFC 3921 §3 / draft-cridland-xmpp-session-01",
    server_features: &[],
    account_features: &[],
    stream_features: &[
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>",
    ],
    iq: &[IqRoute {
        element: "session",
        ns: NS_SESSION,
        targets: Targets::SERVER_AND_OWN,
        get: None,
        set: Some(establish),
    }],
};

fn establish(_core: &mut Core, _req: &IqRequest) -> IqReply {
    IqReply::Result(None)
}
