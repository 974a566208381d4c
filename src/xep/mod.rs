//! Protocol extension modules and the one table that registers them.
//!
//! Like Prosody's `mod_*.lua`: each module declares the disco features it adds, the stream
//! features it offers after authentication, and the iq payloads `(element, namespace)` it
//! answers. Adding a XEP is one file here plus one line in [`MODULES`]; service discovery
//! is built from this table, so what is advertised is exactly what is handled.

pub mod rfc3921_session;
pub mod xep0030_disco;
pub mod xep0092_version;
pub mod xep0160_offline;
pub mod xep0198_sm;
pub mod xep0199_ping;
pub mod xep0280_carbons;
pub mod xep0313_mam;
pub mod xep0352_csi;
// Issue 7: personal data services and their supporting pieces.
pub mod data_forms;
pub mod hooks;
pub mod pending_iq;
pub mod state;
pub mod xep0049_private;
pub mod xep0054_vcard;
pub mod xep0060_pubsub;
pub mod xep0077_register;
pub mod xep0115_caps;
pub mod xep0157_contact;
pub mod xep0163_pep;
pub mod xep0191_blocking;
pub mod xep0398_avatar_conversion;
pub mod xep0402_bookmarks;

pub use hooks::{HOOKS, Hooks};

use crate::core::Core;
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::router::{AccountId, ConnId};
use crate::stanza::IqType;
use crate::xml::Element;

/// Every module, in the order their features are listed.
pub static MODULES: &[&Module] = &[
    &xep0030_disco::MODULE,
    &crate::roster::MODULE,
    &rfc3921_session::MODULE,
    &xep0092_version::MODULE,
    &xep0199_ping::MODULE,
    &xep0198_sm::MODULE,
    &xep0352_csi::MODULE,
    &xep0160_offline::MODULE,
    &xep0280_carbons::MODULE,
    &xep0313_mam::MODULE,
    // Issue 7.
    &xep0163_pep::MODULE,
    &xep0115_caps::MODULE,
    &xep0054_vcard::MODULE,
    &xep0398_avatar_conversion::MODULE,
    &xep0049_private::MODULE,
    &xep0402_bookmarks::MODULE,
    &xep0191_blocking::MODULE,
    &xep0077_register::MODULE,
    &xep0157_contact::MODULE,
];

/// The namespace of stanza error conditions, for elements modules write by hand.
pub const NS_STANZAS_XMLNS: &str = crate::stanza::NS_STANZAS;

pub struct Module {
    pub name: &'static str,
    /// The specification and version implemented, for the README and logs.
    pub spec: &'static str,
    /// Features of the server's disco#info (XEP-0030).
    pub server_features: &'static [&'static str],
    /// Features of an account's bare-JID disco#info.
    pub account_features: &'static [&'static str],
    /// Raw elements added to the post-authentication `<stream:features/>`.
    pub stream_features: &'static [&'static str],
    pub iq: &'static [IqRoute],
}

/// Which addresses an iq handler answers for.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    /// The domain itself.
    pub server: bool,
    /// The sender's own bare JID, or no `to` at all (RFC 6120 §10.3.3).
    pub own_account: bool,
    /// Another account's bare JID, answered by the server on its behalf.
    pub other_account: bool,
}

pub struct IqRoute {
    pub element: &'static str,
    pub ns: &'static str,
    pub targets: Targets,
    pub get: Option<IqHandler>,
    pub set: Option<IqHandler>,
}

pub type IqHandler = fn(&mut Core, &IqRequest) -> IqReply;

/// Who an iq handled by the server is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqTarget {
    Server,
    OwnAccount,
    OtherAccount(AccountId),
}

/// An iq get/set the server answers.
pub struct IqRequest {
    pub conn: ConnId,
    /// The sender's full JID.
    pub from: Jid,
    /// The address as sent (`None` when the iq had no `to`).
    pub to: Option<Jid>,
    pub target: IqTarget,
    pub id: String,
    pub itype: IqType,
    /// The single payload child.
    pub payload: Element,
}

pub enum IqReply {
    Result(Option<Element>),
    Error(StanzaError),
    /// The handler sent its reply itself.
    Done,
}

impl Targets {
    /// The domain, or the sender's own account (e.g. ping, carbons, session).
    pub const SERVER_AND_OWN: Targets = Targets {
        server: true,
        own_account: true,
        other_account: false,
    };
    /// The domain and any account (disco).
    pub const ANY: Targets = Targets {
        server: true,
        own_account: true,
        other_account: true,
    };
    /// Any account's bare JID, not the domain (PEP, vCard, private storage).
    pub const ACCOUNTS: Targets = Targets {
        server: false,
        own_account: true,
        other_account: true,
    };
    /// The sender's own account only (blocking, MAM).
    pub const OWN: Targets = Targets {
        server: false,
        own_account: true,
        other_account: false,
    };
    /// The domain only (version).
    pub const SERVER: Targets = Targets {
        server: true,
        own_account: false,
        other_account: false,
    };

    fn accepts(&self, t: IqTarget) -> bool {
        match t {
            IqTarget::Server => self.server,
            IqTarget::OwnAccount => self.own_account,
            IqTarget::OtherAccount(_) => self.other_account,
        }
    }
}

/// Finds the handler for an iq and runs it; RFC 6120 §8.4: an iq nobody handles gets
/// `<service-unavailable/>`.
pub fn dispatch_iq(core: &mut Core, req: &IqRequest) -> IqReply {
    for module in MODULES {
        for route in module.iq {
            if route.element != req.payload.name
                || route.ns != req.payload.ns
                || !route.targets.accepts(req.target)
            {
                continue;
            }
            let handler = match req.itype {
                IqType::Get => route.get,
                IqType::Set => route.set,
                IqType::Result | IqType::Error => None,
            };
            return match handler {
                Some(h) => h(core, req),
                None => IqReply::Error(StanzaError::new(StanzaCondition::ServiceUnavailable)),
            };
        }
    }
    IqReply::Error(StanzaError::new(StanzaCondition::ServiceUnavailable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_handles_something_and_routes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in MODULES {
            for r in m.iq {
                assert!(
                    r.get.is_some() || r.set.is_some(),
                    "{}: {} has no handler",
                    m.name,
                    r.ns
                );
                assert!(seen.insert((r.element, r.ns)), "{} registered twice", r.ns);
            }
        }
    }
}
