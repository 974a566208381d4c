//! Rosters (RFC 6121 §2) and the subscription state machine (RFC 6121 §3, Appendix A).
//!
//! The state tables are pure functions ([`outbound`], [`inbound`]) tested row by row
//! against Appendix A; the core applies their result to the store and sends pushes.

use crate::core::Core;
use crate::db::{Record, RosterItem, Subscription};
use crate::error::{ErrorType, StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::limits::{CAP_ROSTER_GROUPS, CAP_ROSTER_TEXT_BYTES};
use crate::router::ConnId;
use crate::stanza::PresenceType;
use crate::xep::{IqReply, IqRequest, IqRoute, IqTarget, Module, Targets};
use crate::xml::escape::{escape_attr, escape_text};

pub const NS_ROSTER: &str = "jabber:iq:roster";

pub static MODULE: Module = Module {
    name: "roster",
    spec: "RFC 6121 §2 (with roster versioning §2.6)",
    server_features: &[],
    account_features: &[],
    // RFC 6121 §2.6.1: roster versioning is announced as a stream feature.
    stream_features: &["<ver xmlns='urn:xmpp:features:rosterver'/>"],
    iq: &[IqRoute {
        element: "query",
        ns: NS_ROSTER,
        targets: Targets {
            server: false,
            own_account: true,
            other_account: true,
        },
        get: Some(roster_get),
        set: Some(roster_set),
    }],
};

/// A subscription state as RFC 6121 Appendix A names them: the subscription plus the
/// two pending flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubState {
    pub sub: Subscription,
    /// "Pending Out": the user asked the contact (`ask='subscribe'`).
    pub pending_out: bool,
    /// "Pending In": the contact asked the user.
    pub pending_in: bool,
}

/// What a subscription stanza does to the state of the party it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub new: SubState,
    /// Route (outbound) or deliver (inbound) the stanza.
    pub pass_on: bool,
    /// Inbound subscribe from an already-approved contact: reply `subscribed` on the
    /// user's behalf instead of bothering them (Appendix A.3.1).
    pub auto_reply_subscribed: bool,
}

fn with_to(s: Subscription, to: bool) -> Subscription {
    Subscription::from_flags(to, s.has_from())
}
fn with_from(s: Subscription, from: bool) -> Subscription {
    Subscription::from_flags(s.has_to(), from)
}

/// RFC 6121 Appendix A.2: the user sends a subscription stanza to the contact.
///
/// `subscribe`, `unsubscribe` and `unsubscribed` are always routed (as Prosody does), so a
/// contact whose server has drifted out of step converges; `subscribed` is routed only
/// when it approves a pending request, since pre-approval (§3.4) is not offered.
pub fn outbound(s: SubState, ptype: PresenceType) -> Transition {
    let mut new = s;
    let mut pass_on = true;
    match ptype {
        PresenceType::Subscribe => {
            if !s.sub.has_to() {
                new.pending_out = true;
            }
        }
        PresenceType::Subscribed => {
            if s.pending_in {
                new.sub = with_from(s.sub, true);
                new.pending_in = false;
            } else {
                pass_on = false;
            }
        }
        PresenceType::Unsubscribe => {
            new.sub = with_to(s.sub, false);
            new.pending_out = false;
        }
        PresenceType::Unsubscribed => {
            new.sub = with_from(s.sub, false);
            new.pending_in = false;
        }
        _ => pass_on = false,
    }
    Transition {
        new,
        pass_on,
        auto_reply_subscribed: false,
    }
}

/// RFC 6121 Appendix A.3: the user receives a subscription stanza from the contact.
///
/// A repeated `subscribe` while one is already pending is delivered again (the table
/// says no state change; delivering lets a user who dismissed the prompt see it again).
pub fn inbound(s: SubState, ptype: PresenceType) -> Transition {
    let mut new = s;
    let mut pass_on = false;
    let mut auto = false;
    match ptype {
        PresenceType::Subscribe => {
            if s.sub.has_from() {
                auto = true;
            } else {
                new.pending_in = true;
                pass_on = true;
            }
        }
        PresenceType::Subscribed if s.pending_out => {
            new.sub = with_to(s.sub, true);
            new.pending_out = false;
            pass_on = true;
        }
        PresenceType::Unsubscribe if (s.sub.has_from() || s.pending_in) => {
            new.sub = with_from(s.sub, false);
            new.pending_in = false;
            pass_on = true;
        }
        PresenceType::Unsubscribed if (s.sub.has_to() || s.pending_out) => {
            new.sub = with_to(s.sub, false);
            new.pending_out = false;
            pass_on = true;
        }
        _ => {}
    }
    Transition {
        new,
        pass_on,
        auto_reply_subscribed: auto,
    }
}

/// Writes `<item/>` as it appears in roster results and pushes.
pub fn write_item(out: &mut Vec<u8>, jid: &str, item: Option<&RosterItem>) {
    out.extend_from_slice(b"<item jid='");
    escape_attr(out, jid);
    out.push(b'\'');
    match item {
        None => out.extend_from_slice(b" subscription='remove'/>"),
        Some(item) => {
            if let Some(name) = &item.name {
                out.extend_from_slice(b" name='");
                escape_attr(out, name);
                out.push(b'\'');
            }
            out.extend_from_slice(b" subscription='");
            out.extend_from_slice(item.subscription.as_str().as_bytes());
            out.push(b'\'');
            if item.ask {
                out.extend_from_slice(b" ask='subscribe'");
            }
            if item.groups.is_empty() {
                out.extend_from_slice(b"/>");
            } else {
                out.push(b'>');
                for g in &item.groups {
                    out.extend_from_slice(b"<group>");
                    escape_text(out, g);
                    out.extend_from_slice(b"</group>");
                }
                out.extend_from_slice(b"</item>");
            }
        }
    }
}

fn roster_get(core: &mut Core, req: &IqRequest) -> IqReply {
    if !matches!(req.target, IqTarget::OwnAccount) {
        // RFC 6121 §2.1.5: a roster belongs to its owner only.
        return IqReply::Error(StanzaError::new(StanzaCondition::Forbidden));
    }
    let Some(user) = req.from.local().map(str::to_string) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    if let Some(s) = core
        .conns
        .get_mut(req.conn)
        .and_then(|c| c.session.as_mut())
    {
        s.interested = true;
    }
    let Some(u) = core.db.user(&user) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    let ver = u.roster_ver.to_string();
    // RFC 6121 §2.6.3: the client's version is current: an empty result, no roster.
    if req.payload.attr("ver") == Some(ver.as_str()) {
        return IqReply::Result(None);
    }
    let mut body = Vec::with_capacity(64 + u.roster.len() * 96);
    for (jid, item) in &u.roster {
        write_item(&mut body, jid, Some(item));
    }
    let id = req.id.clone();
    let to = req.from.to_string();
    core.send(req.conn, |out| {
        out.extend_from_slice(b"<iq type='result' id='");
        escape_attr(out, &id);
        out.extend_from_slice(b"' to='");
        escape_attr(out, &to);
        out.extend_from_slice(b"'><query xmlns='jabber:iq:roster' ver='");
        out.extend_from_slice(ver.as_bytes());
        out.extend_from_slice(b"'>");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"</query></iq>");
    });
    IqReply::Done
}

fn not_acceptable(text: &'static str) -> IqReply {
    IqReply::Error(StanzaError::new(StanzaCondition::NotAcceptable).with_text(text))
}

/// RFC 6121 §2.3 (add/update) and §2.5 (remove).
fn roster_set(core: &mut Core, req: &IqRequest) -> IqReply {
    if !matches!(req.target, IqTarget::OwnAccount) {
        return IqReply::Error(StanzaError::new(StanzaCondition::Forbidden));
    }
    let Some(user) = req.from.local().map(str::to_string) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    // §2.3.3: exactly one item.
    let mut items = req
        .payload
        .elements()
        .filter(|e| e.name == "item" && e.ns == NS_ROSTER);
    let (Some(item), None) = (items.next(), items.next()) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
    };
    let Some(contact) = item.attr("jid").and_then(|j| Jid::parse(j).ok()) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::JidMalformed));
    };
    let contact = contact.bare();
    if item.attr("subscription") == Some("remove") {
        return roster_remove(core, req, &user, &contact);
    }
    let name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if name
        .as_ref()
        .is_some_and(|n| n.len() > CAP_ROSTER_TEXT_BYTES)
    {
        return not_acceptable("name too long");
    }
    let mut groups: Vec<String> = Vec::new();
    for g in item
        .elements()
        .filter(|e| e.name == "group" && e.ns == NS_ROSTER)
    {
        let g = g.text();
        // §2.3.3: an empty group name is not-acceptable, a duplicate is bad-request.
        if g.is_empty() {
            return not_acceptable("empty group name");
        }
        if g.len() > CAP_ROSTER_TEXT_BYTES {
            return not_acceptable("group name too long");
        }
        if groups.contains(&g) {
            return IqReply::Error(StanzaError::new(StanzaCondition::BadRequest));
        }
        groups.push(g);
    }
    if groups.len() > CAP_ROSTER_GROUPS {
        return not_acceptable("too many groups");
    }
    let Some(u) = core.db.user(&user) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    let existing = u.roster.get(contact.as_str()).cloned();
    // §2.1.2.5: subscription and ask from the client are ignored; they are server state.
    let new_item = RosterItem {
        name,
        groups,
        ..existing.clone().unwrap_or_default()
    };
    let old_bytes = existing
        .as_ref()
        .map_or(0, |e| e.footprint(contact.as_str()));
    let grows = new_item
        .footprint(contact.as_str())
        .saturating_sub(old_bytes);
    if !core.roster_has_room(&user, grows, existing.is_none()) {
        return IqReply::Error(
            StanzaError::new(StanzaCondition::NotAllowed)
                .with_type(ErrorType::Cancel)
                .with_text("roster is full"),
        );
    }
    core.roster_store_item(&user, contact.as_str(), Some(new_item));
    IqReply::Result(None)
}

/// §2.5.2: removing an item cancels subscriptions both ways and any pending request.
fn roster_remove(core: &mut Core, req: &IqRequest, user: &str, contact: &Jid) -> IqReply {
    let Some(u) = core.db.user(user) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    let Some(item) = u.roster.get(contact.as_str()).cloned() else {
        return IqReply::Error(StanzaError::new(StanzaCondition::ItemNotFound));
    };
    let pending_in = u.pending_in.contains_key(contact.as_str());
    let Ok(user_bare) = Jid::from_parts(Some(user), &core.cfg.domain, None) else {
        return IqReply::Error(StanzaError::new(StanzaCondition::InternalServerError));
    };
    core.roster_store_item(user, contact.as_str(), None);
    if pending_in {
        core.persist(Record::PendingInDelete {
            user: user.to_string(),
            jid: contact.to_string(),
        });
    }
    if item.subscription.has_to() || item.ask {
        core.subscription_to_contact(
            req.conn,
            &user_bare,
            contact,
            PresenceType::Unsubscribe,
            None,
        );
    }
    if item.subscription.has_from() || pending_in {
        core.send_unavailable_to_contact(&user_bare, contact);
        core.subscription_to_contact(
            req.conn,
            &user_bare,
            contact,
            PresenceType::Unsubscribed,
            None,
        );
    }
    IqReply::Result(None)
}

impl Core {
    /// Whether `user`'s roster can grow by `extra_bytes` (and by one item when `new_item`)
    /// within `max_roster_items` and `max_roster_bytes`.
    pub(crate) fn roster_has_room(&self, user: &str, extra_bytes: usize, new_item: bool) -> bool {
        let l = &self.cfg.limits;
        self.db.user(user).is_some_and(|u| {
            (!new_item || u.roster.len() < l.max_roster_items)
                && u.roster_footprint() + extra_bytes <= l.max_roster_bytes
        })
    }

    /// The subscription state of `user`'s relation to `contact` (bare JIDs).
    pub(crate) fn sub_state(&self, user: &str, contact: &str) -> SubState {
        let Some(u) = self.db.user(user) else {
            return SubState::default();
        };
        let item = u.roster.get(contact);
        SubState {
            sub: item.map(|i| i.subscription).unwrap_or_default(),
            pending_out: item.is_some_and(|i| i.ask),
            pending_in: u.pending_in.contains_key(contact),
        }
    }

    /// Stores a roster item (or its removal) with a new roster version and pushes it to
    /// the user's interested resources (RFC 6121 §2.1.6).
    pub(crate) fn roster_store_item(
        &mut self,
        user: &str,
        contact: &str,
        item: Option<RosterItem>,
    ) {
        let Some(ver) = self.db.user(user).map(|u| u.roster_ver + 1) else {
            return;
        };
        let record = match &item {
            Some(item) => Record::RosterSet {
                user: user.to_string(),
                ver,
                jid: contact.to_string(),
                item: item.clone(),
            },
            None => Record::RosterDelete {
                user: user.to_string(),
                ver,
                jid: contact.to_string(),
            },
        };
        self.persist(record);
        let Some(account) = self.accounts.get(user).copied() else {
            return;
        };
        let targets: Vec<(ConnId, String)> = self
            .online
            .resources(account)
            .iter()
            .filter_map(|c| {
                let s = self.conns.get(*c)?.session.as_ref()?;
                s.interested.then(|| (*c, s.jid.to_string()))
            })
            .collect();
        for (conn, full) in targets {
            let mut idb = [0u8; 6];
            self.rng.fill(&mut idb);
            let push_id = crate::c2s::hex(&idb);
            self.send(conn, |out| {
                out.extend_from_slice(b"<iq type='set' id='push");
                out.extend_from_slice(push_id.as_bytes());
                out.extend_from_slice(b"' to='");
                escape_attr(out, &full);
                out.extend_from_slice(b"'><query xmlns='jabber:iq:roster' ver='");
                out.extend_from_slice(ver.to_string().as_bytes());
                out.extend_from_slice(b"'>");
                write_item(out, contact, item.as_ref());
                out.extend_from_slice(b"</query></iq>");
            });
        }
    }

    /// Applies a new subscription state for `user`/`contact`: roster item (created if the
    /// state needs one) and the pending-in record.
    pub(crate) fn apply_sub_state(
        &mut self,
        user: &str,
        contact: &str,
        old: SubState,
        new: SubState,
    ) {
        let pending_full = self
            .db
            .user(user)
            .is_some_and(|u| u.pending_in.len() >= self.cfg.limits.max_pending_subscriptions)
            || !self.roster_has_room(user, crate::db::pending_footprint(contact, None), false);
        if new.pending_in && !old.pending_in && pending_full {
            // A stranger must not fill the store with requests: past the bound a request
            // is still shown to online resources but not kept for later.
            log::warn!(
                "{user} has too many pending subscription requests; not storing {contact}'s"
            );
        } else if new.pending_in != old.pending_in {
            let record = if new.pending_in {
                Record::PendingInSet {
                    user: user.to_string(),
                    jid: contact.to_string(),
                    status: None,
                }
            } else {
                Record::PendingInDelete {
                    user: user.to_string(),
                    jid: contact.to_string(),
                }
            };
            self.persist(record);
        }
        if new.sub == old.sub && new.pending_out == old.pending_out {
            return;
        }
        let existing = self
            .db
            .user(user)
            .and_then(|u| u.roster.get(contact).cloned());
        if existing.is_none()
            && !self.roster_has_room(user, RosterItem::default().footprint(contact), true)
        {
            log::warn!("roster of {user} is full; subscription state with {contact} not stored");
            return;
        }
        let item = RosterItem {
            subscription: new.sub,
            ask: new.pending_out,
            ..existing.unwrap_or_default()
        };
        self.roster_store_item(user, contact, Some(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PresenceType::*;
    use Subscription as S;

    fn st(sub: Subscription, pending_out: bool, pending_in: bool) -> SubState {
        SubState {
            sub,
            pending_out,
            pending_in,
        }
    }

    /// The nine states of Appendix A.1, in the RFC's order.
    fn all_states() -> [SubState; 9] {
        [
            st(S::None, false, false),
            st(S::None, true, false),
            st(S::None, false, true),
            st(S::None, true, true),
            st(S::To, false, false),
            st(S::To, false, true),
            st(S::From, false, false),
            st(S::From, true, false),
            st(S::Both, false, false),
        ]
    }

    fn check(
        f: fn(SubState, PresenceType) -> Transition,
        p: PresenceType,
        expected: [(SubState, bool); 9],
    ) {
        for (s, (want, pass)) in all_states().into_iter().zip(expected) {
            let t = f(s, p);
            assert_eq!(t.new, want, "{p:?} from {s:?}");
            assert_eq!(t.pass_on, pass, "{p:?} pass_on from {s:?}");
        }
    }

    #[test]
    fn a_2_1_outbound_subscribe() {
        let a = all_states();
        check(
            outbound,
            Subscribe,
            [
                (a[1], true),
                (a[1], true),
                (a[3], true),
                (a[3], true),
                (a[4], true),
                (a[5], true),
                (a[7], true),
                (a[7], true),
                (a[8], true),
            ],
        );
    }

    #[test]
    fn a_2_2_outbound_subscribed() {
        let a = all_states();
        check(
            outbound,
            Subscribed,
            [
                (a[0], false),
                (a[1], false),
                (a[6], true),
                (a[7], true),
                (a[4], false),
                (a[8], true),
                (a[6], false),
                (a[7], false),
                (a[8], false),
            ],
        );
    }

    #[test]
    fn a_2_3_outbound_unsubscribe() {
        let a = all_states();
        check(
            outbound,
            Unsubscribe,
            [
                (a[0], true),
                (a[0], true),
                (a[2], true),
                (a[2], true),
                (a[0], true),
                (a[2], true),
                (a[6], true),
                (a[6], true),
                (a[6], true),
            ],
        );
    }

    #[test]
    fn a_2_4_outbound_unsubscribed() {
        let a = all_states();
        check(
            outbound,
            Unsubscribed,
            [
                (a[0], true),
                (a[1], true),
                (a[0], true),
                (a[1], true),
                (a[4], true),
                (a[4], true),
                (a[0], true),
                (a[1], true),
                (a[4], true),
            ],
        );
    }

    #[test]
    fn a_3_1_inbound_subscribe() {
        let a = all_states();
        check(
            inbound,
            Subscribe,
            [
                (a[2], true),
                (a[3], true),
                (a[2], true),
                (a[3], true),
                (a[5], true),
                (a[5], true),
                (a[6], false),
                (a[7], false),
                (a[8], false),
            ],
        );
        assert!(inbound(a[8], Subscribe).auto_reply_subscribed);
        assert!(!inbound(a[0], Subscribe).auto_reply_subscribed);
    }

    #[test]
    fn a_3_2_inbound_subscribed() {
        let a = all_states();
        check(
            inbound,
            Subscribed,
            [
                (a[0], false),
                (a[4], true),
                (a[2], false),
                (a[5], true),
                (a[4], false),
                (a[5], false),
                (a[6], false),
                (a[8], true),
                (a[8], false),
            ],
        );
    }

    #[test]
    fn a_3_3_inbound_unsubscribe() {
        let a = all_states();
        check(
            inbound,
            Unsubscribe,
            [
                (a[0], false),
                (a[1], false),
                (a[0], true),
                (a[1], true),
                (a[4], false),
                (a[4], true),
                (a[0], true),
                (a[1], true),
                (a[4], true),
            ],
        );
    }

    #[test]
    fn a_3_4_inbound_unsubscribed() {
        let a = all_states();
        check(
            inbound,
            Unsubscribed,
            [
                (a[0], false),
                (a[0], true),
                (a[2], false),
                (a[2], true),
                (a[0], true),
                (a[2], true),
                (a[6], false),
                (a[6], true),
                (a[6], true),
            ],
        );
    }

    #[test]
    fn item_serialisation() {
        let mut out = Vec::new();
        let item = RosterItem {
            name: Some("Bob <3".into()),
            groups: vec!["Friends".into()],
            subscription: S::None,
            ask: true,
        };
        write_item(&mut out, "bob@localhost", Some(&item));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<item jid='bob@localhost' name='Bob &lt;3' subscription='none' ask='subscribe'><group>Friends</group></item>"
        );
        out.clear();
        write_item(&mut out, "bob@localhost", None);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<item jid='bob@localhost' subscription='remove'/>"
        );
    }
}
