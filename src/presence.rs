//! Presence (RFC 6121 §4) and the routing of subscription stanzas (RFC 6121 §3).
//!
//! Broadcast goes to the contacts whose subscription lets them see the user (`from` or
//! `both`) and to the user's own available resources, including the sender
//! (§4.2.2, §4.4.2). Initial presence also fetches the contacts' current presence
//! (probes, answered locally) and delivers pending subscription requests (§3.1.3).

use crate::core::route::{Sessions, sessions};
use crate::core::scratch::{self, Fanout};
use crate::core::{CAP_DIRECTED_PRESENCE, Core, Session};
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::roster::{self, SubState};
use crate::router::{AccountId, ConnId};
use crate::stanza::{self, Kind, PresenceType};
use crate::xep::xep0352_csi::Urgency;
use crate::xml::{Element, NS_CLIENT, RawElement};

/// Where subscription stanzas come from: a client's own stanza (forwarded with its
/// extensions, such as a nickname) or one the server makes.
type Original<'a> = Option<&'a RawElement>;

impl Core {
    pub(crate) fn presence_from_client(
        &mut self,
        id: ConnId,
        from: &Jid,
        to: Option<&Jid>,
        raw: &RawElement,
    ) {
        let Some(ptype) = PresenceType::parse(raw.attr("type")) else {
            return self.bounce(
                id,
                raw,
                Kind::Presence,
                from,
                StanzaError::new(StanzaCondition::BadRequest),
            );
        };
        if ptype.is_subscription() {
            // §3.1.2: subscription stanzas always concern a bare JID.
            let Some(contact) = to.map(|t| t.bare()) else {
                return;
            };
            let user_bare = from.bare();
            if contact == user_bare {
                return;
            }
            return self.subscription_from_user(id, &user_bare, &contact, ptype, Some(raw));
        }
        match (ptype, to) {
            (PresenceType::Available | PresenceType::Unavailable, None) => {
                self.presence_broadcast(id, from, raw, ptype)
            }
            (PresenceType::Probe, Some(to)) => self.client_probe(id, from, &to.bare()),
            (PresenceType::Probe | PresenceType::Error, None) => {}
            (_, Some(to)) => self.presence_directed(id, from, to, raw, ptype),
            _ => {}
        }
    }

    /// Roster entries (bare JIDs as stored) of `user` that `want` selects by
    /// subscription state.
    fn roster_matching<'a>(
        &'a self,
        user: &str,
        want: fn(&SubState) -> bool,
    ) -> impl Iterator<Item = &'a str> {
        self.db.user(user).into_iter().flat_map(move |u| {
            u.roster
                .iter()
                .filter(move |(jid, item)| {
                    want(&SubState {
                        sub: item.subscription,
                        pending_out: item.ask,
                        pending_in: u.pending_in.contains_key(*jid),
                    })
                })
                .map(|(jid, _)| jid.as_str())
        })
    }

    /// Contacts of `user` by subscription direction.
    fn roster_contacts(&self, user: &str, want: fn(&SubState) -> bool) -> Vec<Jid> {
        self.roster_matching(user, want)
            .filter_map(|jid| Jid::parse(jid).ok())
            .collect()
    }

    /// The sessions of `user`'s contacts that `want` selects, each with the contact's
    /// bare JID, into `fanout`: gathered first, since delivering needs the core mutably.
    /// `contact` is a buffer to parse the addresses in.
    fn contact_sessions(
        &self,
        user: &str,
        want: fn(&SubState) -> bool,
        fanout: &mut Fanout,
        contact: &mut Option<Jid>,
    ) {
        for jid in self.roster_matching(user, want) {
            let Ok(parsed) = Jid::parse_reusing(jid, contact.take()) else {
                continue;
            };
            for c in self.presence_targets(&parsed) {
                fanout.push(c, parsed.as_str());
            }
            *contact = Some(parsed);
        }
    }

    /// Available sessions of a local account.
    pub(crate) fn available_sessions(&self, account: AccountId) -> Sessions {
        sessions(self.online.resources(account).iter().copied().filter(|c| {
            self.conns
                .get(*c)
                .and_then(|x| x.session.as_ref())
                .is_some_and(|s| s.available)
        }))
    }

    /// Connections that receive presence addressed to a bare JID: its available resources.
    fn presence_targets(&self, bare: &Jid) -> Sessions {
        if bare.domain() != self.cfg.domain {
            return Sessions::new();
        }
        match bare.local().and_then(|l| self.accounts.get(l)) {
            Some(a) => self.available_sessions(*a),
            None => Sessions::new(),
        }
    }

    fn presence_broadcast(
        &mut self,
        id: ConnId,
        from: &Jid,
        raw: &RawElement,
        ptype: PresenceType,
    ) {
        let Some(user) = from.local() else {
            return;
        };
        let account = match self.conns.get(id).and_then(|c| c.session.as_ref()) {
            Some(s) => s.account,
            None => return,
        };
        let was_available = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .is_some_and(|s| s.available);
        // Issue 7 hook: modules may add to available presence (XEP-0153 photo hash).
        let rewritten = if ptype == PresenceType::Available {
            crate::xep::hooks::rewrite_presence(self, id, from, raw)
        } else {
            None
        };
        let raw = rewritten.as_ref().unwrap_or(raw);
        if ptype == PresenceType::Available {
            // §4.7.2.3: priority is an integer in -128..=127.
            let Some(priority) = priority_of(raw) else {
                return self.bounce(
                    id,
                    raw,
                    Kind::Presence,
                    from,
                    StanzaError::new(StanzaCondition::BadRequest),
                );
            };
            if let Some(s) = self.conns.get_mut(id).and_then(|c| c.session.as_mut()) {
                s.available = true;
                s.priority = priority;
                match &mut s.last_presence {
                    Some(last) => last.clone_from(raw),
                    None => s.last_presence = Some(raw.clone()),
                }
            }
        } else {
            let directed = match self.conns.get_mut(id).and_then(|c| c.session.as_mut()) {
                Some(s) => {
                    s.available = false;
                    s.last_presence = None;
                    std::mem::take(&mut s.directed)
                }
                None => return,
            };
            if !was_available && directed.is_empty() {
                return;
            }
            for target in directed {
                for c in self.presence_or_full_targets(&target) {
                    self.deliver(id, c, raw, from, target.as_str());
                }
            }
            if !was_available {
                return;
            }
        }
        // Contacts allowed to see the user, then the user's own available resources.
        let mut fanout = std::mem::take(&mut self.scratch.fanout);
        let mut contact = self.scratch.contact.take();
        fanout.clear();
        self.contact_sessions(user, |s| s.sub.has_from(), &mut fanout, &mut contact);
        for (c, to) in fanout.iter() {
            self.deliver(id, c, raw, from, to);
        }
        scratch::put_fanout(&mut self.scratch.fanout, fanout);
        if let Some(contact) = contact {
            scratch::put_jid(&mut self.scratch.contact, contact);
        }
        for c in self.available_sessions(account) {
            self.deliver(id, c, raw, from, from.bare_str());
        }
        if ptype == PresenceType::Available && !was_available {
            self.initial_presence_extras(id, from, user, account);
        }
        // Issue 7 hook: entity capabilities and PEP last items (XEP-0115, XEP-0163).
        if ptype == PresenceType::Available {
            crate::xep::hooks::available_presence(self, id, from, raw, !was_available);
        }
    }

    /// §4.2.2-§4.2.3 and §3.1.3 on initial presence: the contacts' current presence, the
    /// other own resources' presence, and the subscription requests that waited.
    fn initial_presence_extras(&mut self, id: ConnId, from: &Jid, user: &str, account: AccountId) {
        let full = from.to_string();
        for contact in self.roster_contacts(user, |s| s.sub.has_to()) {
            for c in self.presence_targets(&contact) {
                self.forward_last_presence(c, id, &full);
            }
        }
        for c in self.available_sessions(account) {
            if c != id {
                self.forward_last_presence(c, id, &full);
            }
        }
        let pending: Vec<(String, Option<String>)> = self
            .db
            .user(user)
            .map(|u| {
                u.pending_in
                    .iter()
                    .map(|(j, s)| (j.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let bare = from.bare();
        for (requester, status) in pending {
            self.send(id, |out| {
                stanza::write_presence(
                    out,
                    PresenceType::Subscribe,
                    &requester,
                    bare.as_str(),
                    status.as_deref(),
                )
            });
        }
        // XEP-0160: stored messages go to the first resource that becomes available with
        // a non-negative priority (negative means "do not send me messages").
        let priority = self
            .conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .map_or(0, |s| s.priority);
        if priority >= 0 {
            self.offline_deliver(id, user);
        }
    }

    /// Sends the last presence of the session `source` to `target_conn`.
    fn forward_last_presence(&mut self, source: ConnId, target_conn: ConnId, to: &str) {
        let Some((raw, from)) = self
            .conns
            .get(source)
            .and_then(|c| c.session.as_ref())
            .and_then(|s| Some((s.last_presence.clone()?, s.jid.clone())))
        else {
            return;
        };
        self.deliver(source, target_conn, &raw, &from, to);
    }

    /// Connections for a presence to `to`: one session for a full JID, the available ones
    /// for a bare JID.
    fn presence_or_full_targets(&self, to: &Jid) -> Sessions {
        if to.resource().is_none() {
            return self.presence_targets(to);
        }
        if to.domain() != self.cfg.domain {
            return Sessions::new();
        }
        match to.local().and_then(|l| self.accounts.get(l)) {
            Some(a) => sessions(self.find_full(*a, to)),
            None => Sessions::new(),
        }
    }

    /// §4.6: directed presence, remembered so that unavailable follows at logout.
    fn presence_directed(
        &mut self,
        id: ConnId,
        from: &Jid,
        to: &Jid,
        raw: &RawElement,
        ptype: PresenceType,
    ) {
        if to.domain() != self.cfg.domain {
            if ptype != PresenceType::Unavailable {
                self.bounce(
                    id,
                    raw,
                    Kind::Presence,
                    from,
                    StanzaError::new(StanzaCondition::RemoteServerNotFound),
                );
            }
            return;
        }
        for c in self.presence_or_full_targets(to) {
            self.deliver(id, c, raw, from, to.as_str());
        }
        let Some(s) = self.conns.get_mut(id).and_then(|c| c.session.as_mut()) else {
            return;
        };
        match ptype {
            PresenceType::Available
                if !s.directed.contains(to) && s.directed.len() < CAP_DIRECTED_PRESENCE =>
            {
                s.directed.push(to.clone());
            }
            PresenceType::Unavailable => s.directed.retain(|d| d != to),
            _ => {}
        }
    }

    /// §4.3: a probe sent by a client is answered only when the user may see the contact.
    fn client_probe(&mut self, id: ConnId, from: &Jid, contact: &Jid) {
        let Some(user) = from.local() else { return };
        if !self.sub_state(user, contact.as_str()).sub.has_to() {
            return;
        }
        let full = from.to_string();
        for c in self.presence_targets(contact) {
            self.forward_last_presence(c, id, &full);
        }
    }

    /// A session ended without a chance to say goodbye (or after it did): §4.5.2 asks the
    /// server to broadcast unavailable on its behalf.
    pub(crate) fn presence_session_ended(&mut self, id: ConnId, session: Session) {
        let from = session.jid.to_string();
        let mut targets: Vec<(ConnId, String)> = Vec::new();
        if session.available {
            if let Some(user) = session.jid.local() {
                for contact in self.roster_contacts(user, |s| s.sub.has_from()) {
                    for c in self.presence_targets(&contact) {
                        targets.push((c, contact.to_string()));
                    }
                }
            }
            let bare = session.jid.bare().to_string();
            for c in self.available_sessions(session.account) {
                targets.push((c, bare.clone()));
            }
        }
        for d in &session.directed {
            for c in self.presence_or_full_targets(d) {
                targets.push((c, d.to_string()));
            }
        }
        for (c, to) in targets {
            if c != id {
                self.send_with_urgency(c, Urgency::Presence(&from), |out| {
                    stanza::write_presence(out, PresenceType::Unavailable, &from, &to, None)
                });
            }
        }
    }

    /// Unavailable from each of the user's available resources to a contact that just lost
    /// its subscription (§3.2.2).
    pub(crate) fn send_unavailable_to_contact(&mut self, user_bare: &Jid, contact: &Jid) {
        let Some(account) = user_bare
            .local()
            .and_then(|l| self.accounts.get(l))
            .copied()
        else {
            return;
        };
        let fulls: Vec<String> = self
            .available_sessions(account)
            .iter()
            .filter_map(|c| {
                self.conns
                    .get(*c)?
                    .session
                    .as_ref()
                    .map(|s| s.jid.to_string())
            })
            .collect();
        let targets = self.presence_targets(contact);
        for full in fulls {
            for c in &targets {
                self.send(*c, |out| {
                    stanza::write_presence(
                        out,
                        PresenceType::Unavailable,
                        &full,
                        contact.as_str(),
                        None,
                    )
                });
            }
        }
    }

    /// Current presence of each of the user's available resources to a contact that just
    /// gained a subscription (§3.1.5).
    fn send_presence_to_contact(&mut self, user_bare: &Jid, contact: &Jid) {
        let Some(account) = user_bare
            .local()
            .and_then(|l| self.accounts.get(l))
            .copied()
        else {
            return;
        };
        let contact_s = contact.to_string();
        for source in self.available_sessions(account) {
            for c in self.presence_targets(contact) {
                self.forward_last_presence(source, c, &contact_s);
            }
        }
    }

    /// A subscription stanza from the user (client) to a contact: Appendix A.2 on the
    /// user's side, then the contact's side (A.3) when the contact is ours.
    pub(crate) fn subscription_from_user(
        &mut self,
        id: ConnId,
        user_bare: &Jid,
        contact: &Jid,
        ptype: PresenceType,
        original: Original<'_>,
    ) {
        let Some(user) = user_bare.local().map(str::to_string) else {
            return;
        };
        let old = self.sub_state(&user, contact.as_str());
        let t = roster::outbound(old, ptype);
        self.apply_sub_state(&user, contact.as_str(), old, t.new);
        if !t.pass_on {
            return;
        }
        match ptype {
            PresenceType::Subscribed => self.send_presence_to_contact(user_bare, contact),
            PresenceType::Unsubscribed => self.send_unavailable_to_contact(user_bare, contact),
            _ => {}
        }
        self.subscription_to_contact(id, user_bare, contact, ptype, original);
    }

    /// Routes a subscription stanza stamped with the user's bare JID (§3.1.2) to the
    /// contact's server; for our own domain that is [`Core::subscription_to_local`].
    pub(crate) fn subscription_to_contact(
        &mut self,
        id: ConnId,
        user_bare: &Jid,
        contact: &Jid,
        ptype: PresenceType,
        original: Original<'_>,
    ) {
        match self.route_to_domain(contact) {
            crate::core::route::Destination::Account { account, local } => {
                self.subscription_to_local(id, account, local, contact, user_bare, ptype, original)
            }
            crate::core::route::Destination::NoSuchAccount => {
                // §3.1.3: a request to an account that does not exist is answered with
                // unsubscribed on its behalf, which clears the user's pending request.
                if ptype == PresenceType::Subscribe
                    && let Some(user) = user_bare.local().map(str::to_string)
                {
                    let old = self.sub_state(&user, contact.as_str());
                    let t = roster::inbound(old, PresenceType::Unsubscribed);
                    self.apply_sub_state(&user, contact.as_str(), old, t.new);
                    if let Some(account) = self.accounts.get(&user).copied() {
                        for c in self.available_sessions(account) {
                            self.send(c, |out| {
                                stanza::write_presence(
                                    out,
                                    PresenceType::Unsubscribed,
                                    contact.as_str(),
                                    user_bare.as_str(),
                                    None,
                                )
                            });
                        }
                    }
                }
            }
            crate::core::route::Destination::Remote => {
                if ptype == PresenceType::Subscribe
                    && let Some(raw) = original
                {
                    self.bounce(
                        id,
                        raw,
                        Kind::Presence,
                        user_bare,
                        StanzaError::new(StanzaCondition::RemoteServerNotFound),
                    );
                }
            }
            crate::core::route::Destination::Server => {}
        }
    }

    /// The contact's server side (Appendix A.3) for a local contact.
    #[allow(clippy::too_many_arguments)]
    fn subscription_to_local(
        &mut self,
        id: ConnId,
        account: AccountId,
        contact_local: &str,
        contact: &Jid,
        user_bare: &Jid,
        ptype: PresenceType,
        original: Original<'_>,
    ) {
        let old = self.sub_state(contact_local, user_bare.as_str());
        let t = roster::inbound(old, ptype);
        self.apply_sub_state(contact_local, user_bare.as_str(), old, t.new);
        if ptype == PresenceType::Subscribe && t.pass_on {
            // Keep the request's status text, shown again at the contact's next login.
            let status = original
                .and_then(|r| Element::parse(r, NS_CLIENT).ok())
                .and_then(|e| e.child("status", NS_CLIENT).map(|s| s.text()))
                .map(|s| truncate_utf8(s, crate::limits::MAX_PENDING_STATUS_BYTES));
            let kept = self
                .db
                .user(contact_local)
                .is_some_and(|u| u.pending_in.contains_key(user_bare.as_str()));
            if status.is_some() && kept {
                self.persist(crate::db::Record::PendingInSet {
                    user: contact_local.to_string(),
                    jid: user_bare.to_string(),
                    status: status.clone(),
                });
            }
        }
        if t.auto_reply_subscribed {
            // The contact already approved: answer on their behalf (A.3.1).
            let user = user_bare.local().map(str::to_string);
            if let Some(user) = user {
                let old_u = self.sub_state(&user, contact.as_str());
                let tu = roster::inbound(old_u, PresenceType::Subscribed);
                self.apply_sub_state(&user, contact.as_str(), old_u, tu.new);
                if let Some(ua) = self.accounts.get(&user).copied() {
                    for c in self.available_sessions(ua) {
                        self.send(c, |out| {
                            stanza::write_presence(
                                out,
                                PresenceType::Subscribed,
                                contact.as_str(),
                                user_bare.as_str(),
                                None,
                            )
                        });
                    }
                }
                self.send_presence_to_contact(contact, user_bare);
            }
            return;
        }
        if !t.pass_on {
            return;
        }
        for c in self.available_sessions(account) {
            match original {
                Some(raw) => self.deliver(id, c, raw, user_bare, contact.as_str()),
                None => self.send(c, |out| {
                    stanza::write_presence(out, ptype, user_bare.as_str(), contact.as_str(), None)
                }),
            }
        }
        // §3.3.3: once the user no longer subscribes to the contact, the contact's server
        // tells the user that the contact is unavailable.
        if ptype == PresenceType::Unsubscribe {
            self.send_unavailable_to_contact(contact, user_bare);
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The priority of an available presence (RFC 6121 §4.7.2.3: an integer in -128..=127,
/// 0 when absent), `None` when it is not one.
fn priority_of(raw: &RawElement) -> Option<i8> {
    match priority_in_bytes(raw) {
        Some(priority) => priority,
        None => match Element::parse(raw, NS_CLIENT) {
            Ok(el) => match el.child("priority", NS_CLIENT) {
                None => Some(0),
                Some(p) => parse_priority(&p.text()),
            },
            Err(_) => None,
        },
    }
}

/// [`priority_of`] read from the bytes, without a tree; `None` when they do not say it
/// plainly (a child in a namespace the scan cannot resolve, a reference in the text).
fn priority_in_bytes(raw: &RawElement) -> Option<Option<i8>> {
    for child in raw.children() {
        if (child.ns?, child.name) == (NS_CLIENT, "priority") {
            return Some(parse_priority(child.plain_text()?));
        }
    }
    Some(Some(0))
}

fn parse_priority(text: &str) -> Option<i8> {
    text.trim().parse::<i8>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tree says, as before the bytes were read directly.
    fn priority_in_tree(raw: &RawElement) -> Option<i8> {
        let el = Element::parse(raw, NS_CLIENT).ok()?;
        match el.child("priority", NS_CLIENT) {
            None => Some(0),
            Some(p) => parse_priority(&p.text()),
        }
    }

    #[test]
    fn priority_read_from_the_bytes_is_what_the_tree_says() {
        for (xml, expected) in [
            ("<presence/>", Some(0)),
            ("<presence><show>away</show></presence>", Some(0)),
            ("<presence><priority>5</priority></presence>", Some(5)),
            (
                "<presence><priority> -128\n</priority></presence>",
                Some(-128),
            ),
            ("<presence><priority>128</priority></presence>", None),
            ("<presence><priority>x</priority></presence>", None),
            ("<presence><priority/></presence>", None),
            ("<presence><priority>&#x35;</priority></presence>", Some(5)),
            (
                "<presence><priority><![CDATA[7]]></priority></presence>",
                Some(7),
            ),
            (
                "<presence><priority xmlns='urn:x'>9</priority></presence>",
                Some(0),
            ),
            (
                "<presence><x xmlns='urn:x'><priority>9</priority></x><priority>3</priority></presence>",
                Some(3),
            ),
            (
                "<presence><priority>1</priority><priority>2</priority></presence>",
                Some(1),
            ),
            (
                "<presence xmlns:c='jabber:client'><c:priority>4</c:priority></presence>",
                Some(4),
            ),
        ] {
            let raw = RawElement::from_xml(xml, NS_CLIENT).expect("well-formed");
            assert_eq!(priority_of(&raw), expected, "{xml}");
            assert_eq!(priority_in_tree(&raw), expected, "{xml}");
        }
    }
}
