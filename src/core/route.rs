//! Routing of stanzas sent by bound clients (RFC 6120 §10, RFC 6121 §8.5).
//!
//! Every stanza first has its `from` stamped with the sender's full JID (RFC 6120
//! §8.1.2.1: added or overridden, never trusted), then goes to a domain: ours is served
//! here; any other gets `<remote-server-not-found/>` until federation exists, through the
//! same [`Core::route_to_domain`] step that will later reach MUC, components and s2s.

use crate::core::{Core, scratch};
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::limits::CAP_RESOURCES_PER_ACCOUNT;
use crate::message::{self, MessageInfo};
use crate::router::{AccountId, ConnId};
use crate::stanza::{self, IqType, Kind, MessageType};
use crate::xep::xep0352_csi::Urgency;
use crate::xep::{
    self, IqReply, IqRequest, IqTarget, xep0160_offline, xep0280_carbons, xep0313_mam,
};
use crate::xml::{Element, NS_CLIENT, RawElement};

/// The sessions of one account a stanza goes to (at most one per resource).
pub(crate) type Sessions = crate::router::Resources;

/// Collects sessions of one account (never more than its resources: none is dropped).
pub(crate) fn sessions(conns: impl IntoIterator<Item = ConnId>) -> Sessions {
    let mut v = Sessions::new();
    for c in conns {
        let _ = v.push(c);
    }
    v
}

/// A message on its way to one of our accounts.
struct Routed<'a> {
    from: &'a Jid,
    to: &'a Jid,
    account: AccountId,
    /// The account's localpart.
    local: &'a str,
    raw: &'a RawElement,
    mtype: MessageType,
    info: MessageInfo,
}

/// Where a stanza's `to` leads.
pub(crate) enum Destination<'a> {
    /// Our own domain (or an address at it that the server answers for).
    Server,
    /// An account of ours, by bare JID.
    Account { account: AccountId, local: &'a str },
    /// No such account here (RFC 6121 §8.5.1).
    NoSuchAccount,
    /// Another domain: no federation yet.
    Remote,
}

impl Core {
    pub(crate) fn session_jid(&self, id: ConnId) -> Option<Jid> {
        self.conns
            .get(id)
            .and_then(|c| c.session.as_ref())
            .map(|s| s.jid.clone())
    }

    /// The connection bound to exactly this full JID.
    pub(crate) fn find_full(&self, account: AccountId, full: &Jid) -> Option<ConnId> {
        self.online.resources(account).iter().copied().find(|c| {
            self.conns
                .get(*c)
                .and_then(|x| x.session.as_ref())
                .is_some_and(|s| &s.jid == full)
        })
    }

    /// The sender's address for routing one of its stanzas, copied into the reused
    /// buffer (the session keeps its own).
    fn sender_jid(&mut self, id: ConnId) -> Option<Jid> {
        let own = &self.conns.get(id)?.session.as_ref()?.jid;
        Some(scratch::copy_jid(&mut self.scratch.from, own))
    }

    pub(crate) fn route_to_domain<'a>(&self, to: &'a Jid) -> Destination<'a> {
        if to.domain() != self.cfg.domain {
            return Destination::Remote;
        }
        match to.local() {
            None => Destination::Server,
            Some(local) => match self.accounts.get(local) {
                Some(a) => Destination::Account { account: *a, local },
                None => Destination::NoSuchAccount,
            },
        }
    }

    pub(crate) fn route_from_client(&mut self, id: ConnId, raw: &RawElement) {
        let Some(kind) = Kind::of(raw.name(), raw.ns()) else {
            return;
        };
        let Some(from) = self.sender_jid(id) else {
            return;
        };
        let to = match raw.attr("to") {
            None => None,
            Some(t) => match Jid::parse_reusing(t, self.scratch.to.take()) {
                Ok(j) => Some(j),
                Err(_) => {
                    // RFC 6120 §8.3.3.8: a malformed address is a stanza error, sent from
                    // the server since the address itself cannot be used.
                    let domain = self.cfg.domain.clone();
                    self.bounce_as(
                        id,
                        raw,
                        kind,
                        &from,
                        &domain,
                        StanzaError::new(StanzaCondition::JidMalformed),
                    );
                    scratch::put_jid(&mut self.scratch.from, from);
                    return;
                }
            },
        };
        self.route_addressed(id, &from, to.as_ref(), kind, raw);
        scratch::put_jid(&mut self.scratch.from, from);
        if let Some(to) = to {
            scratch::put_jid(&mut self.scratch.to, to);
        }
    }

    fn route_addressed(
        &mut self,
        id: ConnId,
        from: &Jid,
        to: Option<&Jid>,
        kind: Kind,
        raw: &RawElement,
    ) {
        // Issue 7 hook: a block list (XEP-0191) may stop an addressed stanza here.
        if let Some(t) = to
            && xep::hooks::outbound_filter(self, id, from, t, kind, raw)
        {
            return;
        }
        match kind {
            Kind::Message => self.route_message(id, from, to, raw),
            Kind::Presence => self.presence_from_client(id, from, to, raw),
            Kind::Iq => self.route_iq(id, from, to, raw),
        }
    }

    /// Replies to a stanza with an error, unless it is itself an error (RFC 6120 §8.3.1).
    pub(crate) fn bounce(
        &mut self,
        id: ConnId,
        raw: &RawElement,
        kind: Kind,
        sender: &Jid,
        err: StanzaError,
    ) {
        let from = raw.attr("to").unwrap_or(&self.cfg.domain).to_string();
        self.bounce_as(id, raw, kind, sender, &from, err);
    }

    /// [`Core::bounce`] with an explicit `from` for the error.
    pub(crate) fn bounce_as(
        &mut self,
        id: ConnId,
        raw: &RawElement,
        kind: Kind,
        sender: &Jid,
        from: &str,
        err: StanzaError,
    ) {
        if stanza::is_error(raw) || (kind == Kind::Iq && raw.attr("type") == Some("result")) {
            return;
        }
        self.send(id, |out| {
            stanza::write_error_reply(out, kind, raw.attr("id"), from, sender.as_str(), &err)
        });
    }

    /// Delivers a client's stanza to a connection, stamped with the sender's address.
    pub(crate) fn deliver(
        &mut self,
        sender: ConnId,
        target: ConnId,
        raw: &RawElement,
        from: &Jid,
        to: &str,
    ) {
        self.deliver_from(Some(sender), target, raw, from, to);
    }

    /// Delivers a stanza (from a connection, or re-delivered on its behalf), holding it
    /// back for an inactive client (XEP-0352) when it can wait.
    pub(crate) fn deliver_from(
        &mut self,
        sender: Option<ConnId>,
        target: ConnId,
        raw: &RawElement,
        from: &Jid,
        to: &str,
    ) {
        let urgency = match raw.name() {
            "presence" => Urgency::Presence(from.as_str()),
            "message" => {
                let info = message::scan(raw);
                if info.chat_state && !info.has_body {
                    Urgency::ChatState(from.as_str())
                } else {
                    Urgency::Now
                }
            }
            _ => Urgency::Now,
        };
        // Issue 7 hook: what a block list (XEP-0191) hides is dropped silently.
        if !xep::hooks::may_deliver(self, from, target, raw) {
            return;
        }
        // The sender's stream-level prefixes, lent for the copy (and given back).
        let prefixes = sender
            .and_then(|s| self.conns.get_mut(s))
            .map(|c| std::mem::take(&mut c.extra_prefixes))
            .unwrap_or_default();
        self.send_with_urgency(target, urgency, |out| {
            raw.write_with_addresses(out, Some(from.as_str()), Some(to), &prefixes)
        });
        if let Some(c) = sender.and_then(|s| self.conns.get_mut(s)) {
            c.extra_prefixes = prefixes;
        }
    }

    /// The connections a message for an account's bare JID goes to (RFC 6121 §8.5.2):
    /// available resources with non-negative priority; for chat and normal the ones with
    /// the highest priority (all of them when several share it, as Prosody does), for
    /// headline all of them.
    pub(crate) fn bare_message_targets(&self, account: AccountId, mtype: MessageType) -> Sessions {
        let mut candidates: heapless::Vec<(ConnId, i8), CAP_RESOURCES_PER_ACCOUNT> =
            heapless::Vec::new();
        for c in self.online.resources(account) {
            if let Some(s) = self.conns.get(*c).and_then(|x| x.session.as_ref())
                && s.available
                && s.priority >= 0
            {
                let _ = candidates.push((*c, s.priority));
            }
        }
        let best = match mtype {
            MessageType::Groupchat => return Sessions::new(),
            MessageType::Headline => None,
            _ => candidates.iter().map(|(_, p)| *p).max(),
        };
        sessions(
            candidates
                .iter()
                .filter(|(_, p)| best.is_none_or(|b| *p == b))
                .map(|(c, _)| *c),
        )
    }

    fn route_message(&mut self, id: ConnId, from: &Jid, to: Option<&Jid>, raw: &RawElement) {
        let mtype = MessageType::parse(raw.attr("type"));
        // RFC 6120 §10.3.1: no `to` means the sender's own bare JID.
        let own_bare;
        let to = match to {
            Some(t) => t,
            None => {
                own_bare = from.bare();
                &own_bare
            }
        };
        match self.route_to_domain(to) {
            Destination::Remote => self.bounce(
                id,
                raw,
                Kind::Message,
                from,
                StanzaError::new(StanzaCondition::RemoteServerNotFound),
            ),
            // The server itself takes no messages yet (later: admin announcements).
            Destination::Server => {}
            Destination::NoSuchAccount => {
                // RFC 6121 §8.5.1: the account does not exist.
                self.bounce(
                    id,
                    raw,
                    Kind::Message,
                    from,
                    StanzaError::new(StanzaCondition::ServiceUnavailable),
                )
            }
            Destination::Account { account, local } => {
                let Some(targets) = self.message_targets(id, from, to, account, raw, mtype) else {
                    return;
                };
                let msg = Routed {
                    from,
                    to,
                    account,
                    local,
                    raw,
                    mtype,
                    info: message::scan(raw),
                };
                // The message as it travels, stamped: what the archive and carbons keep.
                let mut stanza = scratch::take_bytes(&mut self.scratch.stanza);
                let prefixes = self.conns.get(id).map(|c| c.extra_prefixes.as_slice());
                raw.write_with_addresses(
                    &mut stanza,
                    Some(from.as_str()),
                    Some(to.as_str()),
                    prefixes.unwrap_or_default(),
                );
                self.message_to_account(id, &msg, &targets, &stanza);
                scratch::put_bytes(&mut self.scratch.stanza, stanza);
            }
        }
    }

    /// RFC 6121 §8.5.2-§8.5.3: the sessions of one of our accounts a message goes to
    /// (none: it is for offline storage), or `None` when it was bounced or dropped.
    fn message_targets(
        &mut self,
        id: ConnId,
        from: &Jid,
        to: &Jid,
        account: AccountId,
        raw: &RawElement,
        mtype: MessageType,
    ) -> Option<Sessions> {
        let full = to.resource().is_some();
        if full && let Some(t) = self.find_full(account, to) {
            return Some(sessions([t]));
        }
        match mtype {
            // §8.5.3.2.1 (full JID without a session) and §8.5.2.1.1 (bare JID).
            MessageType::Groupchat => {
                self.bounce(
                    id,
                    raw,
                    Kind::Message,
                    from,
                    StanzaError::new(StanzaCondition::ServiceUnavailable),
                );
                None
            }
            MessageType::Error if full => None,
            _ => Some(self.bare_message_targets(account, mtype)),
        }
    }

    /// Delivers a message to an account's sessions (`stanza`: the message stamped with
    /// its addresses), with what rides along: the archive of both parties (XEP-0313, stanza-id XEP-0359), offline
    /// storage (XEP-0160) and carbon copies (XEP-0280).
    fn message_to_account(&mut self, id: ConnId, msg: &Routed, targets: &[ConnId], stanza: &[u8]) {
        let Routed {
            from,
            to,
            local,
            mtype,
            ..
        } = *msg;
        let archivable = xep0313_mam::archivable(mtype, &msg.info);
        // Written by `write_with_addresses` from text: always UTF-8.
        let stanza_text = std::str::from_utf8(stanza).unwrap_or_default();
        let sender_local = from.local().filter(|_| from.domain() == self.cfg.domain);
        // The sender's archive (an outgoing message), whatever happens to delivery.
        let mut sent_id = None;
        if archivable
            && let Some(sl) = sender_local
            && self.mam_wants(sl, to.bare_str())
        {
            sent_id = Some(self.mam_archive(sl, to.bare_str(), true, stanza_text));
        }
        if targets.is_empty() {
            if matches!(mtype, MessageType::Chat | MessageType::Normal)
                && !self.message_to_offline_storage(id, msg, archivable, stanza_text)
            {
                return;
            }
            self.carbons_after_sending(id, msg, stanza, sent_id);
            return;
        }
        // The recipient's archive; the copy delivered carries its id.
        let mut delivered = scratch::take_bytes(&mut self.scratch.delivered);
        let archived = archivable && self.mam_wants(local, from.bare_str());
        if archived {
            let rid = self.mam_archive(local, from.bare_str(), false, stanza_text);
            let by = to.bare_str();
            if msg.info.stanza_id {
                let cleaned = strip_stanza_ids(stanza_text, by);
                xep0160_offline::write_with_stanza_id(&mut delivered, &cleaned, by, rid);
            } else {
                xep0160_offline::write_with_stanza_id(&mut delivered, stanza_text, by, rid);
            }
        }
        let copy: &[u8] = if archived { &delivered } else { stanza };
        let urgency = if msg.info.chat_state && !msg.info.has_body {
            Urgency::ChatState(from.as_str())
        } else {
            Urgency::Now
        };
        for t in targets {
            self.send_with_urgency(*t, urgency, |out| out.extend_from_slice(copy));
        }
        if xep0280_carbons::eligible(mtype, &msg.info) {
            self.carbons_received(
                msg.account,
                to,
                targets,
                copy,
                xep0280_carbons::type_of(msg.raw),
            );
        }
        scratch::put_bytes(&mut self.scratch.delivered, delivered);
        self.carbons_after_sending(id, msg, stanza, sent_id);
    }

    /// §8.5.2.2.1: no available resource: offline storage, or an error if it is full.
    /// Returns whether the message was kept.
    fn message_to_offline_storage(
        &mut self,
        id: ConnId,
        msg: &Routed,
        archivable: bool,
        stanza: &str,
    ) -> bool {
        let keep = archivable && self.mam_wants(msg.local, msg.from.bare_str());
        // If the write fails, the sender hears of it (the message was not kept).
        self.requester = Some(crate::core::Requester {
            conn: id,
            kind: Kind::Message,
            stanza_id: msg.raw.attr("id").map(str::to_string),
            to: msg.from.to_string(),
            from: Some(msg.to.to_string()),
        });
        let stored = self.offline_store(msg.local, msg.from.bare_str(), stanza.to_string(), keep);
        self.requester = None;
        if stored.is_err() {
            self.bounce(
                id,
                msg.raw,
                Kind::Message,
                msg.from,
                StanzaError::new(StanzaCondition::ServiceUnavailable),
            );
        }
        stored.is_ok()
    }

    /// Sent carbons for the sender's other resources (with the sender's stanza-id).
    fn carbons_after_sending(
        &mut self,
        id: ConnId,
        msg: &Routed,
        stanza: &[u8],
        sent_id: Option<u64>,
    ) {
        if !xep0280_carbons::eligible(msg.mtype, &msg.info) {
            return;
        }
        let mtype = xep0280_carbons::type_of(msg.raw);
        let Some(sid) = sent_id else {
            return self.carbons_sent(id, msg.from, stanza, mtype);
        };
        let mut copy = scratch::take_bytes(&mut self.scratch.delivered);
        let text = std::str::from_utf8(stanza).unwrap_or_default();
        xep0160_offline::write_with_stanza_id(&mut copy, text, msg.from.bare_str(), sid);
        self.carbons_sent(id, msg.from, &copy, mtype);
        scratch::put_bytes(&mut self.scratch.delivered, copy);
    }

    fn route_iq(&mut self, id: ConnId, from: &Jid, to: Option<&Jid>, raw: &RawElement) {
        // RFC 6120 §8.2.3: type and id are required.
        let Some(itype) = IqType::parse(raw.attr("type")) else {
            let err = StanzaError::new(StanzaCondition::BadRequest);
            return self.bounce(id, raw, Kind::Iq, from, err);
        };
        let Some(iq_id) = raw.attr("id") else {
            if itype.is_request() {
                self.bounce(
                    id,
                    raw,
                    Kind::Iq,
                    from,
                    StanzaError::new(StanzaCondition::BadRequest),
                );
            }
            return;
        };
        let target = match to {
            None => IqTarget::OwnAccount,
            Some(t) => match self.route_to_domain(t) {
                Destination::Remote => {
                    return self.bounce(
                        id,
                        raw,
                        Kind::Iq,
                        from,
                        StanzaError::new(StanzaCondition::RemoteServerNotFound),
                    );
                }
                Destination::NoSuchAccount => {
                    return self.bounce(
                        id,
                        raw,
                        Kind::Iq,
                        from,
                        StanzaError::new(StanzaCondition::ServiceUnavailable),
                    );
                }
                Destination::Server => IqTarget::Server,
                Destination::Account { account, .. } => {
                    if t.resource().is_some() {
                        // A full JID: the iq is for that client, not for us.
                        match self.find_full(account, t) {
                            Some(target) => self.deliver(id, target, raw, from, t.as_str()),
                            None if itype.is_request() => self.bounce(
                                id,
                                raw,
                                Kind::Iq,
                                from,
                                StanzaError::new(StanzaCondition::ServiceUnavailable),
                            ),
                            None => {}
                        }
                        return;
                    }
                    if t.bare_str() == from.bare_str() {
                        IqTarget::OwnAccount
                    } else {
                        IqTarget::OtherAccount(account)
                    }
                }
            },
        };
        if !itype.is_request() {
            // Results and errors for the server (roster push acknowledgements...): consumed,
            // after the modules that sent requests of their own had a look (issue 7 hook).
            xep::hooks::iq_response(self, id, from, raw);
            return;
        }
        let Ok(iq) = Element::parse(raw, NS_CLIENT) else {
            return self.bounce(
                id,
                raw,
                Kind::Iq,
                from,
                StanzaError::new(StanzaCondition::BadRequest),
            );
        };
        // §8.2.3: a get or set has exactly one payload element.
        let mut children = iq.elements();
        let (Some(payload), None) = (children.next(), children.next()) else {
            return self.bounce(
                id,
                raw,
                Kind::Iq,
                from,
                StanzaError::new(StanzaCondition::BadRequest),
            );
        };
        let req = IqRequest {
            conn: id,
            from: from.clone(),
            to: to.cloned(),
            target,
            id: iq_id.to_string(),
            itype,
            payload: payload.clone(),
        };
        self.requester = Some(crate::core::Requester {
            conn: id,
            kind: Kind::Iq,
            stanza_id: Some(req.id.clone()),
            to: from.to_string(),
            from: req.to.as_ref().map(|t| t.to_string()),
        });
        let reply = xep::dispatch_iq(self, &req);
        self.requester = None;
        self.answer_iq(&req, reply);
    }

    /// Sends the reply a handler produced.
    pub(crate) fn answer_iq(&mut self, req: &IqRequest, reply: IqReply) {
        let reply_from = req.to.as_ref().map(|t| t.to_string());
        match reply {
            IqReply::Done => {}
            IqReply::Result(payload) => self.send(req.conn, |out| {
                stanza::write_iq_result(
                    out,
                    &req.id,
                    reply_from.as_deref(),
                    req.from.as_str(),
                    payload.as_ref(),
                )
            }),
            IqReply::Error(err) => {
                let from = reply_from.unwrap_or_default();
                self.send(req.conn, |out| {
                    stanza::write_error_reply(
                        out,
                        Kind::Iq,
                        Some(&req.id),
                        &from,
                        req.from.as_str(),
                        &err,
                    )
                })
            }
        }
    }
}

/// Removes `<stanza-id/>` elements that claim to come from `by`'s archive (XEP-0359 §5:
/// a sender must not be able to forge them). Rare: only messages that carry one.
fn strip_stanza_ids(text: &str, by: &str) -> String {
    let Ok(raw) = RawElement::from_xml(text, crate::xml::NS_CLIENT) else {
        return text.to_string();
    };
    let Ok(mut el) = crate::xml::Element::parse(&raw, crate::xml::NS_CLIENT) else {
        return text.to_string();
    };
    el.children.retain(|n| match n {
        crate::xml::Node::Element(c) => {
            !(c.name == "stanza-id" && c.ns == message::NS_SID && c.attr("by") == Some(by))
        }
        crate::xml::Node::Text(_) => true,
    });
    el.to_xml(crate::xml::NS_CLIENT)
}

#[cfg(test)]
impl Core {
    /// The connection bound to a full JID given as text (tests).
    pub(crate) fn find_full_by_text(&self, full: &str) -> Option<ConnId> {
        let jid = Jid::parse(full).ok()?;
        let account = *self.accounts.get(jid.local()?)?;
        self.find_full(account, &jid)
    }
}
