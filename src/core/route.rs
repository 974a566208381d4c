//! Routing of stanzas sent by bound clients (RFC 6120 §10, RFC 6121 §8.5).
//!
//! Every stanza first has its `from` stamped with the sender's full JID (RFC 6120
//! §8.1.2.1: added or overridden, never trusted), then goes to a domain: ours is served
//! here; any other gets `<remote-server-not-found/>` until federation exists, through the
//! same [`Core::route_to_domain`] step that will later reach MUC, components and s2s.

use crate::core::Core;
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::message::{self, MessageInfo};
use crate::router::{AccountId, ConnId};
use crate::stanza::{self, IqType, Kind, MessageType};
use crate::xep::xep0352_csi::Urgency;
use crate::xep::{
    self, IqReply, IqRequest, IqTarget, xep0160_offline, xep0280_carbons, xep0313_mam,
};
use crate::xml::{Element, NS_CLIENT, RawElement};

/// Where a stanza's `to` leads.
pub(crate) enum Destination {
    /// Our own domain (or an address at it that the server answers for).
    Server,
    /// An account of ours, by bare JID.
    Account { account: AccountId, local: String },
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

    pub(crate) fn route_to_domain(&self, to: &Jid) -> Destination {
        if to.domain() != self.cfg.domain {
            return Destination::Remote;
        }
        match to.local() {
            None => Destination::Server,
            Some(local) => match self.accounts.get(local) {
                Some(a) => Destination::Account {
                    account: *a,
                    local: local.to_string(),
                },
                None => Destination::NoSuchAccount,
            },
        }
    }

    pub(crate) fn route_from_client(&mut self, id: ConnId, raw: RawElement) {
        let Some(kind) = Kind::of(raw.name(), raw.ns()) else {
            return;
        };
        let Some(from) = self.session_jid(id) else {
            return;
        };
        let to = match raw.attr("to") {
            None => None,
            Some(t) => match Jid::parse(t) {
                Ok(j) => Some(j),
                Err(_) => {
                    // RFC 6120 §8.3.3.8: a malformed address is a stanza error, sent from
                    // the server since the address itself cannot be used.
                    let domain = self.cfg.domain.clone();
                    self.bounce_as(
                        id,
                        &raw,
                        kind,
                        &from,
                        &domain,
                        StanzaError::new(StanzaCondition::JidMalformed),
                    );
                    return;
                }
            },
        };
        // Issue 7 hook: a block list (XEP-0191) may stop an addressed stanza here.
        if let Some(t) = &to
            && xep::hooks::outbound_filter(self, id, &from, t, kind, &raw)
        {
            return;
        }
        match kind {
            Kind::Message => self.route_message(id, &from, to, &raw),
            Kind::Presence => self.presence_from_client(id, &from, to, raw),
            Kind::Iq => self.route_iq(id, &from, to, raw),
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
        from: &str,
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
        from: &str,
        to: &str,
    ) {
        let urgency = match raw.name() {
            "presence" => Urgency::Presence(from.to_string()),
            "message" => {
                let info = message::scan(raw);
                if info.chat_state && !info.has_body {
                    Urgency::ChatState(from.to_string())
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
        let prefixes = sender
            .and_then(|s| self.conns.get(s))
            .map(|c| c.extra_prefixes.clone())
            .unwrap_or_default();
        self.send_with_urgency(target, urgency, |out| {
            raw.write_with_addresses(out, Some(from), Some(to), &prefixes)
        });
    }

    /// The connections a message for an account's bare JID goes to (RFC 6121 §8.5.2):
    /// available resources with non-negative priority; for chat and normal the ones with
    /// the highest priority (all of them when several share it, as Prosody does), for
    /// headline all of them.
    pub(crate) fn bare_message_targets(
        &self,
        account: AccountId,
        mtype: MessageType,
    ) -> Vec<ConnId> {
        let mut candidates: heapless::Vec<
            (ConnId, i8),
            { crate::limits::CAP_RESOURCES_PER_ACCOUNT },
        > = heapless::Vec::new();
        for c in self.online.resources(account) {
            if let Some(s) = self.conns.get(*c).and_then(|x| x.session.as_ref())
                && s.available
                && s.priority >= 0
            {
                let _ = candidates.push((*c, s.priority));
            }
        }
        match mtype {
            MessageType::Groupchat => Vec::new(),
            MessageType::Headline => candidates.iter().map(|(c, _)| *c).collect(),
            _ => {
                let best = candidates.iter().map(|(_, p)| *p).max();
                candidates
                    .iter()
                    .filter(|(_, p)| Some(*p) == best)
                    .map(|(c, _)| *c)
                    .collect()
            }
        }
    }

    fn route_message(&mut self, id: ConnId, from: &Jid, to: Option<Jid>, raw: &RawElement) {
        let mtype = MessageType::parse(raw.attr("type"));
        // RFC 6120 §10.3.1: no `to` means the sender's own bare JID.
        let to = to.unwrap_or_else(|| from.bare());
        match self.route_to_domain(&to) {
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
                self.message_to_account(id, from, &to, account, &local, raw, mtype)
            }
        }
    }

    /// RFC 6121 §8.5.2-§8.5.3 for one of our accounts, with what rides along: the archive
    /// of both parties (XEP-0313, stanza-id XEP-0359), offline storage (XEP-0160) and
    /// carbon copies (XEP-0280).
    #[allow(clippy::too_many_arguments)]
    fn message_to_account(
        &mut self,
        id: ConnId,
        from: &Jid,
        to: &Jid,
        account: AccountId,
        local: &str,
        raw: &RawElement,
        mtype: MessageType,
    ) {
        let mut targets: Vec<ConnId> = Vec::new();
        if to.resource().is_some() {
            match self.find_full(account, to) {
                Some(t) => targets.push(t),
                // §8.5.3.2.1: full JID without a session.
                None => match mtype {
                    MessageType::Groupchat => {
                        return self.bounce(
                            id,
                            raw,
                            Kind::Message,
                            from,
                            StanzaError::new(StanzaCondition::ServiceUnavailable),
                        );
                    }
                    MessageType::Error => return,
                    _ => targets = self.bare_message_targets(account, mtype),
                },
            }
        } else {
            if mtype == MessageType::Groupchat {
                return self.bounce(
                    id,
                    raw,
                    Kind::Message,
                    from,
                    StanzaError::new(StanzaCondition::ServiceUnavailable),
                );
            }
            targets = self.bare_message_targets(account, mtype);
        }
        let info = message::scan(raw);
        let archivable = xep0313_mam::archivable(mtype, &info);
        let from_s = from.as_str();
        let to_s = to.as_str();
        let prefixes = self
            .conns
            .get(id)
            .map(|c| c.extra_prefixes.clone())
            .unwrap_or_default();
        // The message as it travels, stamped; the archive and carbons keep this form.
        let mut stanza = Vec::with_capacity(raw.as_str().len() + 64);
        raw.write_with_addresses(&mut stanza, Some(from_s), Some(to_s), &prefixes);
        let stanza_text = String::from_utf8(stanza.clone()).unwrap_or_default();
        let sender_local = from
            .local()
            .filter(|_| from.domain() == self.cfg.domain)
            .map(str::to_string);
        // The sender's archive (an outgoing message), whatever happens to delivery.
        let mut sent_id = None;
        if archivable
            && let Some(sl) = &sender_local
            && self.mam_wants(sl, to.bare_str())
        {
            sent_id = Some(self.mam_archive(sl, to.bare_str(), true, stanza_text.clone()));
        }
        if targets.is_empty() {
            if matches!(mtype, MessageType::Chat | MessageType::Normal) {
                // §8.5.2.2.1: no available resource: offline storage, or an error if full.
                let keep = archivable && self.mam_wants(local, from.bare_str());
                // If the write fails, the sender hears of it (the message was not kept).
                self.requester = Some(crate::core::Requester {
                    conn: id,
                    kind: Kind::Message,
                    stanza_id: raw.attr("id").map(str::to_string),
                    to: from_s.to_string(),
                    from: Some(to_s.to_string()),
                });
                let stored = self.offline_store(local, from.bare_str(), stanza_text, keep);
                self.requester = None;
                if stored.is_err() {
                    self.bounce(
                        id,
                        raw,
                        Kind::Message,
                        from,
                        StanzaError::new(StanzaCondition::ServiceUnavailable),
                    );
                    return;
                }
            }
            self.carbons_after_sending(id, from, &stanza, mtype, &info, raw, sent_id);
            return;
        }
        // The recipient's archive; the copy delivered carries its id.
        let mut delivered = stanza.clone();
        if archivable && self.mam_wants(local, from.bare_str()) {
            let rid = self.mam_archive(local, from.bare_str(), false, stanza_text);
            let text = std::str::from_utf8(&stanza).unwrap_or_default();
            let by = to.bare_str().to_string();
            let cleaned = if info.stanza_id {
                strip_stanza_ids(text, &by)
            } else {
                text.to_string()
            };
            delivered = xep0160_offline::with_children(
                &cleaned,
                &xep0160_offline::stanza_id_element(&by, rid),
            )
            .into_bytes();
        }
        let urgency = if info.chat_state && !info.has_body {
            Urgency::ChatState(from_s.to_string())
        } else {
            Urgency::Now
        };
        for t in &targets {
            self.send_with_urgency(*t, urgency.clone(), |out| out.extend_from_slice(&delivered));
        }
        if xep0280_carbons::eligible(mtype, &info) {
            self.carbons_received(
                account,
                to,
                &targets,
                &delivered,
                xep0280_carbons::type_of(raw),
            );
        }
        self.carbons_after_sending(id, from, &stanza, mtype, &info, raw, sent_id);
    }

    /// Sent carbons for the sender's other resources (with the sender's stanza-id).
    #[allow(clippy::too_many_arguments)]
    fn carbons_after_sending(
        &mut self,
        id: ConnId,
        from: &Jid,
        stanza: &[u8],
        mtype: MessageType,
        info: &MessageInfo,
        raw: &RawElement,
        sent_id: Option<u64>,
    ) {
        if !xep0280_carbons::eligible(mtype, info) {
            return;
        }
        let copy = match sent_id {
            Some(sid) => {
                let text = std::str::from_utf8(stanza).unwrap_or_default();
                xep0160_offline::with_children(
                    text,
                    &xep0160_offline::stanza_id_element(from.bare_str(), sid),
                )
                .into_bytes()
            }
            None => stanza.to_vec(),
        };
        self.carbons_sent(id, from, &copy, xep0280_carbons::type_of(raw));
    }

    fn route_iq(&mut self, id: ConnId, from: &Jid, to: Option<Jid>, raw: RawElement) {
        // RFC 6120 §8.2.3: type and id are required.
        let Some(itype) = IqType::parse(raw.attr("type")) else {
            let err = StanzaError::new(StanzaCondition::BadRequest);
            return self.bounce(id, &raw, Kind::Iq, from, err);
        };
        let Some(iq_id) = raw.attr("id").map(str::to_string) else {
            if itype.is_request() {
                self.bounce(
                    id,
                    &raw,
                    Kind::Iq,
                    from,
                    StanzaError::new(StanzaCondition::BadRequest),
                );
            }
            return;
        };
        let target = match &to {
            None => IqTarget::OwnAccount,
            Some(t) => match self.route_to_domain(t) {
                Destination::Remote => {
                    return self.bounce(
                        id,
                        &raw,
                        Kind::Iq,
                        from,
                        StanzaError::new(StanzaCondition::RemoteServerNotFound),
                    );
                }
                Destination::NoSuchAccount => {
                    return self.bounce(
                        id,
                        &raw,
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
                            Some(target) => {
                                self.deliver(id, target, &raw, from.as_str(), t.as_str())
                            }
                            None if itype.is_request() => self.bounce(
                                id,
                                &raw,
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
            xep::hooks::iq_response(self, id, from, &raw);
            return;
        }
        let Ok(iq) = Element::parse(&raw, NS_CLIENT) else {
            return self.bounce(
                id,
                &raw,
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
                &raw,
                Kind::Iq,
                from,
                StanzaError::new(StanzaCondition::BadRequest),
            );
        };
        let req = IqRequest {
            conn: id,
            from: from.clone(),
            to: to.clone(),
            target,
            id: iq_id,
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
