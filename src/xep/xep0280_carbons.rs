//! XEP-0280 Message Carbons 1.0 with the `urn:xmpp:carbons:rules:0` eligibility rules:
//! every resource of an account that enabled carbons sees the account's one-to-one
//! conversations, whichever resource sent or received each message.

use super::{IqReply, IqRequest, IqRoute, Module, Targets};
use crate::core::route::{Sessions, sessions};
use crate::core::{Core, scratch};
use crate::jid::Jid;
use crate::message::{MessageInfo, NS_CARBONS};
use crate::router::{AccountId, ConnId};
use crate::stanza::MessageType;
use crate::xml::RawElement;
use crate::xml::escape::escape_attr;

pub static MODULE: Module = Module {
    name: "carbons",
    spec: "XEP-0280 1.0.1 (urn:xmpp:carbons:rules:0)",
    server_features: &[NS_CARBONS, "urn:xmpp:carbons:rules:0"],
    account_features: &[],
    stream_features: &[],
    iq: &[
        IqRoute {
            element: "enable",
            ns: NS_CARBONS,
            targets: Targets::SERVER_AND_OWN,
            get: None,
            set: Some(enable),
        },
        IqRoute {
            element: "disable",
            ns: NS_CARBONS,
            targets: Targets::SERVER_AND_OWN,
            get: None,
            set: Some(disable),
        },
    ],
};

fn set(core: &mut Core, req: &IqRequest, on: bool) -> IqReply {
    if let Some(s) = core
        .conns
        .get_mut(req.conn)
        .and_then(|c| c.session.as_mut())
    {
        s.carbons = on;
    }
    IqReply::Result(None)
}

fn enable(core: &mut Core, req: &IqRequest) -> IqReply {
    set(core, req, true)
}

fn disable(core: &mut Core, req: &IqRequest) -> IqReply {
    set(core, req, false)
}

/// `urn:xmpp:carbons:rules:0`: chat messages, and normal messages with a body; never
/// marked private (§6), never with a no-copy hint (XEP-0334), never a carbon or archive
/// result itself.
pub fn eligible(mtype: MessageType, info: &MessageInfo) -> bool {
    if info.private || info.no_copy || info.carbon || info.mam_result {
        return false;
    }
    match mtype {
        MessageType::Chat => true,
        MessageType::Normal => info.has_body,
        _ => false,
    }
}

/// The wrapper of a carbon copy: `<message from=bare to=full type=…><sent|received>
/// <forwarded><message xmlns='jabber:client' …/></forwarded></…></message>`.
fn write_copy(
    out: &mut Vec<u8>,
    direction: &str,
    account_bare: &str,
    to: &str,
    mtype: &str,
    forwarded: &[u8],
) {
    out.extend_from_slice(b"<message from='");
    escape_attr(out, account_bare);
    out.extend_from_slice(b"' to='");
    escape_attr(out, to);
    out.extend_from_slice(b"' type='");
    out.extend_from_slice(mtype.as_bytes());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(direction.as_bytes());
    out.extend_from_slice(b" xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>");
    out.extend_from_slice(forwarded);
    out.extend_from_slice(b"</forwarded></");
    out.extend_from_slice(direction.as_bytes());
    out.extend_from_slice(b"></message>");
}

/// A stanza as it appears inside `<forwarded/>`: with `xmlns='jabber:client'` on its
/// element (the default namespace does not carry over into another namespace).
pub fn as_forwarded(stanza: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(stanza.len() + 24);
    write_forwarded(&mut v, stanza);
    v
}

/// [`as_forwarded`] written into `out`.
pub fn write_forwarded(out: &mut Vec<u8>, stanza: &[u8]) {
    let name_end = stanza
        .iter()
        .position(|b| *b == b' ' || *b == b'>' || *b == b'/')
        .unwrap_or(stanza.len());
    let (name, rest) = stanza.split_at(name_end);
    out.extend_from_slice(name);
    // A prefixed stanza (`<c:message xmlns:c='jabber:client'>`) binds its own namespace
    // and may declare a default for its children: nothing to add.
    if !name.contains(&b':') {
        out.extend_from_slice(b" xmlns='jabber:client'");
    }
    out.extend_from_slice(rest);
}

impl Core {
    /// Carbon-enabled resources of an account, except `exclude`.
    fn carbon_resources(&self, account: AccountId, exclude: &[ConnId]) -> Sessions {
        sessions(
            self.online
                .resources(account)
                .iter()
                .copied()
                .filter(|c| !exclude.contains(c))
                .filter(|c| {
                    self.conns
                        .get(*c)
                        .and_then(|x| x.session.as_ref())
                        .is_some_and(|s| s.carbons)
                }),
        )
    }

    /// Copies of a message the account sent from `sender` (§5.2), to its other resources.
    pub(crate) fn carbons_sent(&mut self, sender: ConnId, from: &Jid, stanza: &[u8], mtype: &str) {
        let Some(account) = self
            .conns
            .get(sender)
            .and_then(|c| c.session.as_ref())
            .map(|s| s.account)
        else {
            return;
        };
        let targets = self.carbon_resources(account, &[sender]);
        self.send_carbons(&targets, "sent", from.bare_str(), mtype, stanza);
    }

    /// Copies of a message the account received (§5.1), to its carbon-enabled resources
    /// that did not get it directly.
    pub(crate) fn carbons_received(
        &mut self,
        account: AccountId,
        to: &Jid,
        delivered: &[ConnId],
        stanza: &[u8],
        mtype: &str,
    ) {
        let targets = self.carbon_resources(account, delivered);
        self.send_carbons(&targets, "received", to.bare_str(), mtype, stanza);
    }

    /// Sends each target session its copy, addressed to its full JID.
    fn send_carbons(
        &mut self,
        targets: &[ConnId],
        direction: &str,
        account_bare: &str,
        mtype: &str,
        stanza: &[u8],
    ) {
        if targets.is_empty() {
            return;
        }
        let mut fwd = scratch::take_bytes(&mut self.scratch.forwarded);
        write_forwarded(&mut fwd, stanza);
        let mut full = self.scratch.contact.take();
        for c in targets {
            let Some(jid) = self.conns.get(*c).and_then(|x| x.session.as_ref()) else {
                continue;
            };
            let to = scratch::copy_jid(&mut full, &jid.jid);
            self.send(*c, |out| {
                write_copy(out, direction, account_bare, to.as_str(), mtype, &fwd)
            });
            full = Some(to);
        }
        if let Some(full) = full {
            scratch::put_jid(&mut self.scratch.contact, full);
        }
        scratch::put_bytes(&mut self.scratch.forwarded, fwd);
    }
}

/// The raw element's `type` as written (for the copy's wrapper).
pub fn type_of(raw: &RawElement) -> &str {
    raw.attr("type").unwrap_or("normal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eligibility_follows_rules_0() {
        let body = MessageInfo {
            has_body: true,
            ..MessageInfo::default()
        };
        assert!(eligible(MessageType::Chat, &MessageInfo::default()));
        assert!(eligible(MessageType::Normal, &body));
        assert!(!eligible(MessageType::Normal, &MessageInfo::default()));
        assert!(!eligible(MessageType::Groupchat, &body));
        assert!(!eligible(MessageType::Headline, &body));
        assert!(!eligible(
            MessageType::Chat,
            &MessageInfo {
                private: true,
                ..body
            }
        ));
        assert!(!eligible(
            MessageType::Chat,
            &MessageInfo {
                no_copy: true,
                ..body
            }
        ));
        assert!(!eligible(
            MessageType::Chat,
            &MessageInfo {
                carbon: true,
                ..body
            }
        ));
    }

    #[test]
    fn forwarded_stanzas_declare_their_namespace() {
        assert_eq!(
            as_forwarded(b"<message to='a'/>"),
            b"<message xmlns='jabber:client' to='a'/>".to_vec()
        );
        assert_eq!(
            as_forwarded(b"<message/>"),
            b"<message xmlns='jabber:client'/>".to_vec()
        );
    }
}
