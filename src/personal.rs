//! Personal data of an account (issue 7) as plain data: PEP nodes and their items
//! (XEP-0163 on a XEP-0060 subset), the vCard (XEP-0054), private XML (XEP-0049) and the
//! block list (XEP-0191); and server-wide data: registration invites (XEP-0401/0445).
//!
//! Like [`crate::db`], it changes only by applying records ([`PersonalChange`],
//! [`ServerChange`]), so replaying the log rebuilds exactly what was acknowledged. XML
//! payloads are kept as the text the server itself serialised from a parsed element
//! (with the top element's namespace declared), so they can be written into any stanza
//! unchanged and are always well-formed.

use std::collections::{BTreeMap, BTreeSet};

use crate::limits::CAP_PEP_ITEMS_PER_NODE;

/// XEP-0060 §4.5 access models this server offers for PEP nodes (`roster` and
/// `authorize` are not offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessModel {
    Open,
    /// XEP-0163 §4.1.1: the default for PEP: contacts with a presence subscription.
    #[default]
    Presence,
    /// Only the owner (and no affiliated members: affiliations are not offered).
    Whitelist,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Whitelist => "whitelist",
        }
    }
    pub fn parse(s: &str) -> Option<AccessModel> {
        match s {
            "open" => Some(AccessModel::Open),
            "presence" => Some(AccessModel::Presence),
            "whitelist" => Some(AccessModel::Whitelist),
            _ => None,
        }
    }
}

/// XEP-0060 `pubsub#send_last_published_item`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SendLast {
    Never,
    OnSub,
    /// XEP-0163 §4.3: PEP sends the last item when a contact comes online.
    #[default]
    OnSubAndPresence,
}

impl SendLast {
    pub fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }
    pub fn parse(s: &str) -> Option<SendLast> {
        match s {
            "never" => Some(SendLast::Never),
            "on_sub" => Some(SendLast::OnSub),
            "on_sub_and_presence" => Some(SendLast::OnSubAndPresence),
            _ => None,
        }
    }
}

/// The configuration of a node (XEP-0060 §16.4.4, the options this server keeps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    /// Items kept; the oldest are dropped past it. At most [`CAP_PEP_ITEMS_PER_NODE`].
    pub max_items: u32,
    /// XEP-0223 asks for persistent items; every item here is stored either way, the
    /// value is kept so that preconditions on it can be checked.
    pub persist_items: bool,
    pub send_last: SendLast,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub deliver_payloads: bool,
    pub title: Option<String>,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            access_model: AccessModel::Presence,
            // XEP-0163 §4.1.1 (like Prosody and ejabberd): PEP keeps the last item.
            max_items: 1,
            persist_items: true,
            send_last: SendLast::OnSubAndPresence,
            notify_retract: true,
            notify_delete: true,
            deliver_payloads: true,
            title: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PepItem {
    pub id: String,
    /// One element, serialised with its namespace declared.
    pub payload: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PepNode {
    pub config: NodeConfig,
    /// Oldest first; the last one is the "last published item".
    pub items: Vec<PepItem>,
}

impl PepNode {
    pub fn new(config: NodeConfig) -> PepNode {
        PepNode {
            config,
            items: Vec::new(),
        }
    }
    pub fn item(&self, id: &str) -> Option<&PepItem> {
        self.items.iter().find(|i| i.id == id)
    }
    pub fn last(&self) -> Option<&PepItem> {
        self.items.last()
    }
    fn trim(&mut self) {
        let keep = (self.config.max_items as usize).clamp(1, CAP_PEP_ITEMS_PER_NODE);
        if self.items.len() > keep {
            let drop = self.items.len() - keep;
            self.items.drain(..drop);
        }
    }
    pub fn footprint(&self, name: &str) -> usize {
        64 + name.len()
            + self.config.title.as_ref().map_or(0, String::len)
            + self
                .items
                .iter()
                .map(|i| 48 + i.id.len() + i.payload.len())
                .sum::<usize>()
    }
}

/// Everything an account keeps besides its credentials and roster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Personal {
    pub nodes: BTreeMap<String, PepNode>,
    /// The `<vCard xmlns='vcard-temp'/>` element, serialised.
    pub vcard: Option<String>,
    /// XEP-0049: keyed by [`private_key`] of the stored element's name and namespace.
    pub private: BTreeMap<String, String>,
    /// XEP-0191: blocked JIDs (full, bare or domain), normalised.
    pub blocklist: BTreeSet<String>,
}

/// XEP-0049 §2: private data is addressed by element name and namespace together.
pub fn private_key(name: &str, ns: &str) -> String {
    format!("{ns} {name}")
}

impl Personal {
    /// Bytes held in memory, roughly: what `max_personal_bytes` counts.
    pub fn footprint(&self) -> usize {
        self.nodes
            .iter()
            .map(|(n, node)| node.footprint(n))
            .sum::<usize>()
            + self.vcard.as_ref().map_or(0, |v| 24 + v.len())
            + self
                .private
                .iter()
                .map(|(k, v)| 48 + k.len() + v.len())
                .sum::<usize>()
            + self.blocklist.iter().map(|j| 32 + j.len()).sum::<usize>()
    }

    pub fn apply(&mut self, change: &PersonalChange) {
        match change {
            PersonalChange::NodeSet { node, config } => {
                let n = self
                    .nodes
                    .entry(node.clone())
                    .or_insert_with(|| PepNode::new(config.clone()));
                n.config = config.clone();
                n.trim();
            }
            PersonalChange::NodeDelete { node } => {
                self.nodes.remove(node);
            }
            PersonalChange::NodePurge { node } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.items.clear();
                }
            }
            PersonalChange::ItemSet { node, id, payload } => {
                let n = self.nodes.entry(node.clone()).or_default();
                // XEP-0060 §7.1.2: publishing an existing id replaces the item, which
                // becomes the newest.
                n.items.retain(|i| &i.id != id);
                n.items.push(PepItem {
                    id: id.clone(),
                    payload: payload.clone(),
                });
                n.trim();
            }
            PersonalChange::ItemDelete { node, id } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.items.retain(|i| &i.id != id);
                }
            }
            PersonalChange::VCardSet { vcard } => self.vcard = vcard.clone(),
            PersonalChange::PrivateSet { key, xml } => match xml {
                Some(x) => {
                    self.private.insert(key.clone(), x.clone());
                }
                None => {
                    self.private.remove(key);
                }
            },
            PersonalChange::BlockSet { jid, blocked } => {
                if *blocked {
                    self.blocklist.insert(jid.clone());
                } else {
                    self.blocklist.remove(jid);
                }
            }
            PersonalChange::BlockClear => self.blocklist.clear(),
        }
    }

    /// The changes that rebuild this state from nothing (for a snapshot).
    pub fn to_changes(&self) -> Vec<PersonalChange> {
        let mut out = Vec::new();
        for (name, node) in &self.nodes {
            out.push(PersonalChange::NodeSet {
                node: name.clone(),
                config: node.config.clone(),
            });
            for item in &node.items {
                out.push(PersonalChange::ItemSet {
                    node: name.clone(),
                    id: item.id.clone(),
                    payload: item.payload.clone(),
                });
            }
        }
        if self.vcard.is_some() {
            out.push(PersonalChange::VCardSet {
                vcard: self.vcard.clone(),
            });
        }
        for (key, xml) in &self.private {
            out.push(PersonalChange::PrivateSet {
                key: key.clone(),
                xml: Some(xml.clone()),
            });
        }
        for jid in &self.blocklist {
            out.push(PersonalChange::BlockSet {
                jid: jid.clone(),
                blocked: true,
            });
        }
        out
    }

    /// What `change` will replace (call before applying it).
    pub fn undo_for(&self, change: &PersonalChange) -> PersonalUndo {
        match change {
            PersonalChange::NodeSet { node, .. }
            | PersonalChange::NodeDelete { node }
            | PersonalChange::NodePurge { node }
            | PersonalChange::ItemSet { node, .. }
            | PersonalChange::ItemDelete { node, .. } => PersonalUndo::Node {
                node: node.clone(),
                prev: self.nodes.get(node).cloned(),
            },
            PersonalChange::VCardSet { .. } => PersonalUndo::VCard(self.vcard.clone()),
            PersonalChange::PrivateSet { key, .. } => PersonalUndo::Private {
                key: key.clone(),
                prev: self.private.get(key).cloned(),
            },
            PersonalChange::BlockSet { .. } | PersonalChange::BlockClear => {
                PersonalUndo::Blocklist(self.blocklist.clone())
            }
        }
    }

    pub fn apply_undo(&mut self, undo: PersonalUndo) {
        match undo {
            PersonalUndo::Node { node, prev } => restore(&mut self.nodes, node, prev),
            PersonalUndo::VCard(v) => self.vcard = v,
            PersonalUndo::Private { key, prev } => restore(&mut self.private, key, prev),
            PersonalUndo::Blocklist(b) => self.blocklist = b,
        }
    }
}

/// Puts back the entry `key` had (`None`: it had none).
fn restore<V>(map: &mut BTreeMap<String, V>, key: String, prev: Option<V>) {
    match prev {
        Some(v) => {
            map.insert(key, v);
        }
        None => {
            map.remove(&key);
        }
    }
}

/// One change to an account's personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersonalChange {
    /// Creates a node or replaces its configuration (items past `max_items` are dropped).
    NodeSet {
        node: String,
        config: NodeConfig,
    },
    NodeDelete {
        node: String,
    },
    NodePurge {
        node: String,
    },
    /// Publishes an item (creating the node with the default configuration if needed).
    ItemSet {
        node: String,
        id: String,
        payload: String,
    },
    ItemDelete {
        node: String,
        id: String,
    },
    VCardSet {
        vcard: Option<String>,
    },
    PrivateSet {
        key: String,
        xml: Option<String>,
    },
    BlockSet {
        jid: String,
        blocked: bool,
    },
    BlockClear,
}

/// What a [`PersonalChange`] replaced, to undo it when the store fails.
#[derive(Clone, Debug)]
pub enum PersonalUndo {
    Node { node: String, prev: Option<PepNode> },
    VCard(Option<String>),
    Private { key: String, prev: Option<String> },
    Blocklist(BTreeSet<String>),
}

/// A registration invitation (XEP-0401 account creation, redeemed per XEP-0445).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The localpart reserved for the invitee, if the inviter chose one.
    pub account: Option<String>,
    /// Seconds since the Unix epoch after which the token is refused.
    pub expires_unix: u64,
}

/// Data of the server rather than of one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerData {
    /// Keyed by token.
    pub invites: BTreeMap<String, Invite>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerChange {
    InviteSet { token: String, invite: Invite },
    InviteDelete { token: String },
}

impl ServerData {
    pub fn apply(&mut self, change: &ServerChange) {
        match change {
            ServerChange::InviteSet { token, invite } => {
                self.invites.insert(token.clone(), invite.clone());
            }
            ServerChange::InviteDelete { token } => {
                self.invites.remove(token);
            }
        }
    }

    pub fn to_changes(&self) -> Vec<ServerChange> {
        self.invites
            .iter()
            .map(|(token, invite)| ServerChange::InviteSet {
                token: token.clone(),
                invite: invite.clone(),
            })
            .collect()
    }

    /// The invite a change replaces: `(token, previous)`.
    pub fn undo_for(&self, change: &ServerChange) -> (String, Option<Invite>) {
        let token = match change {
            ServerChange::InviteSet { token, .. } | ServerChange::InviteDelete { token } => token,
        };
        (token.clone(), self.invites.get(token).cloned())
    }

    pub fn apply_undo(&mut self, token: String, prev: Option<Invite>) {
        match prev {
            Some(i) => {
                self.invites.insert(token, i);
            }
            None => {
                self.invites.remove(&token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(node: &str, id: &str) -> PersonalChange {
        PersonalChange::ItemSet {
            node: node.into(),
            id: id.into(),
            payload: format!("<x xmlns='urn:x'>{id}</x>"),
        }
    }

    #[test]
    fn publishing_replaces_by_id_and_trims_to_max_items() {
        let mut p = Personal::default();
        p.apply(&PersonalChange::NodeSet {
            node: "n".into(),
            config: NodeConfig {
                max_items: 2,
                ..NodeConfig::default()
            },
        });
        for id in ["a", "b", "c", "b"] {
            p.apply(&item("n", id));
        }
        let ids: Vec<&str> = p.nodes["n"].items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        // Lowering max_items drops the oldest.
        p.apply(&PersonalChange::NodeSet {
            node: "n".into(),
            config: NodeConfig::default(),
        });
        assert_eq!(p.nodes["n"].last().map(|i| i.id.as_str()), Some("b"));
        assert_eq!(p.nodes["n"].items.len(), 1);
    }

    #[test]
    fn snapshot_changes_rebuild_the_same_state_and_undo_restores() {
        let mut p = Personal::default();
        let changes = [
            item("urn:xmpp:avatar:data", "h1"),
            PersonalChange::VCardSet {
                vcard: Some("<vCard xmlns='vcard-temp'/>".into()),
            },
            PersonalChange::PrivateSet {
                key: private_key("q", "urn:q"),
                xml: Some("<q xmlns='urn:q'/>".into()),
            },
            PersonalChange::BlockSet {
                jid: "eve@localhost".into(),
                blocked: true,
            },
        ];
        for c in &changes {
            p.apply(c);
        }
        let mut rebuilt = Personal::default();
        for c in p.to_changes() {
            rebuilt.apply(&c);
        }
        assert_eq!(rebuilt, p);
        let before = p.clone();
        let more = [
            PersonalChange::NodeDelete {
                node: "urn:xmpp:avatar:data".into(),
            },
            PersonalChange::VCardSet { vcard: None },
            PersonalChange::PrivateSet {
                key: private_key("q", "urn:q"),
                xml: None,
            },
            PersonalChange::BlockClear,
            item("new", "x"),
        ];
        let mut undos = Vec::new();
        for c in &more {
            undos.push(p.undo_for(c));
            p.apply(c);
        }
        assert_ne!(p, before);
        for u in undos.into_iter().rev() {
            p.apply_undo(u);
        }
        assert_eq!(p, before);
        assert!(p.footprint() > 0);
    }

    #[test]
    fn invites_apply_and_undo() {
        let mut s = ServerData::default();
        let set = ServerChange::InviteSet {
            token: "t".into(),
            invite: Invite {
                account: None,
                expires_unix: 10,
            },
        };
        let (tok, prev) = s.undo_for(&set);
        s.apply(&set);
        assert_eq!(s.to_changes(), vec![set]);
        s.apply_undo(tok, prev);
        assert!(s.invites.is_empty());
    }
}
