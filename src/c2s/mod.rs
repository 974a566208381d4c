//! Client-to-server stream negotiation (RFC 6120 §4-§7): stream headers and features,
//! STARTTLS, SASL, resource binding. After binding, stanzas go to the router.
//!
//! The state of one connection lives in [`C2s`]; the functions here are methods of
//! [`Core`] because negotiation needs the account store and the routing table.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::core::{Action, Core};
use crate::error::{StanzaCondition, StanzaError, StreamCondition};
use crate::jid::{self, Jid};
use crate::router::{BindError, ConnId};
use crate::sasl::{Mechanism, SaslContext, SaslFailure, SaslServer, Step};
use crate::stanza::{self, IqType, Kind};
use crate::xml::escape::{escape_attr, escape_text};
use crate::xml::{
    Element, Frame, FrameLimits, Framer, NS_CLIENT, NS_STREAM, RawElement, StreamHeader,
};

pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
use crate::xep::xep0198_sm::NS_SM;
use crate::xep::xep0352_csi::NS_CSI;
/// XEP-0440: which channel-binding types the server supports.
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// Where the negotiation of a connection stands.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Stage {
    /// Before SASL success (TLS may or may not be up).
    Negotiating,
    /// SASL succeeded; the stream was restarted; binding comes next.
    Authenticated,
    /// A resource is bound: stanzas flow.
    Bound,
}

/// Per-connection protocol state that only this connection's input touches.
pub struct C2s {
    pub(crate) framer: Framer,
    pub(crate) stage: Stage,
    pub(crate) awaiting_header: bool,
    /// Our stream header has been sent for the current stream (errors need one first).
    pub(crate) header_sent: bool,
    /// The stream is encrypted (direct TLS per XEP-0368, or after STARTTLS).
    pub(crate) tls: bool,
    /// `<proceed/>` was sent; input is ignored until the TLS layer reports success.
    pub(crate) tls_pending: bool,
    pub(crate) channel_binding: Option<Vec<u8>>,
    pub(crate) sasl: Option<Box<SaslServer>>,
    pub(crate) auth_failures: u8,
    /// The account the current SASL attempt names, for per-account throttling.
    pub(crate) claimed_user: Option<String>,
}

impl C2s {
    pub fn new(limits: FrameLimits, tls: bool, channel_binding: Option<Vec<u8>>) -> C2s {
        C2s {
            framer: Framer::new(limits),
            stage: Stage::Negotiating,
            awaiting_header: true,
            header_sent: false,
            tls,
            tls_pending: false,
            channel_binding,
            sasl: None,
            auth_failures: 0,
            claimed_user: None,
        }
    }
}

/// Writes `<stream:error>` with an optional text, then the closing tag.
pub fn write_stream_error(out: &mut Vec<u8>, cond: StreamCondition, text: Option<&str>) {
    out.extend_from_slice(b"<stream:error><");
    out.extend_from_slice(cond.element_name().as_bytes());
    out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    if let Some(t) = text {
        out.extend_from_slice(b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
        escape_text(out, t);
        out.extend_from_slice(b"</text>");
    }
    out.extend_from_slice(b"</stream:error></stream:stream>");
}

/// Writes our stream header (RFC 6120 §4.7). `to` echoes the client's `from` when valid.
pub fn write_stream_header(out: &mut Vec<u8>, domain: &str, id: &str, to: Option<&str>) {
    out.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='",
    );
    escape_attr(out, id);
    out.extend_from_slice(b"' from='");
    escape_attr(out, domain);
    out.push(b'\'');
    if let Some(to) = to {
        out.extend_from_slice(b" to='");
        escape_attr(out, to);
        out.push(b'\'');
    }
    out.extend_from_slice(b" version='1.0' xml:lang='en'>");
}

/// Why a stream header is refused (RFC 6120 §4.9.3).
fn check_header(h: &StreamHeader, domain: &str) -> Result<(), StreamCondition> {
    if h.local_name != "stream" || h.ns != NS_STREAM {
        return Err(StreamCondition::InvalidNamespace);
    }
    // §4.8.2: the content namespace of a c2s stream is jabber:client.
    if h.default_ns.as_deref() != Some(NS_CLIENT) {
        return Err(StreamCondition::InvalidNamespace);
    }
    // §4.7.2: `to` names the service; an unknown one is host-unknown. Absent is allowed
    // for clients and means our only domain.
    if let Some(to) = h.to.as_deref() {
        match jid::normalize_domain(to) {
            Ok(d) if d == domain => {}
            _ => return Err(StreamCondition::HostUnknown),
        }
    }
    // §4.7.5: no version means 0.9, which we do not speak; any 1.x (or later major) is
    // answered with 1.0, and the client decides whether it can live with that.
    let major = h
        .version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 1 => Ok(()),
        _ => Err(StreamCondition::UnsupportedVersion),
    }
}

impl Core {
    /// Dispatches one frame of a connection.
    pub(crate) fn c2s_frame(&mut self, id: ConnId, proto: &mut C2s, frame: Frame) {
        match frame {
            Frame::Header(h) => self.c2s_header(id, proto, h),
            Frame::Close => {
                // RFC 6120 §4.4: answer the closing tag with ours, then close.
                self.end_session(id);
                self.send_nonza(id, |out| out.extend_from_slice(b"</stream:stream>"));
                self.finish(id, Action::Close);
            }
            Frame::Element(raw) => {
                if proto.awaiting_header {
                    // The framer only yields elements after a header; defensive.
                    self.stream_error(id, proto, StreamCondition::NotWellFormed, None);
                    return;
                }
                self.c2s_element(id, proto, &raw);
                self.scratch.frame.recycle(raw);
            }
        }
    }

    fn c2s_header(&mut self, id: ConnId, proto: &mut C2s, h: StreamHeader) {
        let mut sid = [0u8; 12];
        self.rng.fill(&mut sid);
        let stream_id = hex(&sid);
        let echo_to = h
            .from
            .as_deref()
            .and_then(|f| Jid::parse(f).ok())
            .map(|j| j.to_string());
        let domain = self.cfg.domain.clone();
        self.send_nonza(id, |out| {
            write_stream_header(out, &domain, &stream_id, echo_to.as_deref())
        });
        proto.header_sent = true;
        if let Err(cond) = check_header(&h, &self.cfg.domain) {
            self.stream_error(id, proto, cond, None);
            return;
        }
        proto.awaiting_header = false;
        if let Some(conn) = self.conns.get_mut(id) {
            conn.extra_prefixes = h.extra_prefixes;
        }
        self.write_features(id, proto);
    }

    fn offered_mechanisms(&self, proto: &C2s) -> impl Iterator<Item = Mechanism> + use<> {
        let cb = proto.tls && proto.channel_binding.is_some();
        let plain = proto.tls || self.cfg.allow_plain_unencrypted;
        Mechanism::ALL.into_iter().filter(move |m| match m {
            Mechanism::Plain => plain,
            m if m.is_plus() => cb,
            _ => true,
        })
    }

    fn tls_required_now(&self, proto: &C2s) -> bool {
        !proto.tls && self.cfg.require_encryption
    }

    fn write_features(&mut self, id: ConnId, proto: &C2s) {
        let mut f = Vec::with_capacity(512);
        f.extend_from_slice(b"<stream:features>");
        match proto.stage {
            Stage::Negotiating => {
                if !proto.tls {
                    // RFC 6120 §5.3.1: when TLS is mandatory it is the only feature.
                    if self.tls_required_now(proto) {
                        f.extend_from_slice(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>");
                    } else {
                        f.extend_from_slice(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                    }
                }
                if !self.tls_required_now(proto) {
                    f.extend_from_slice(b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                    for m in self.offered_mechanisms(proto) {
                        f.extend_from_slice(b"<mechanism>");
                        f.extend_from_slice(m.name().as_bytes());
                        f.extend_from_slice(b"</mechanism>");
                    }
                    f.extend_from_slice(b"</mechanisms>");
                    if proto.tls && proto.channel_binding.is_some() {
                        f.extend_from_slice(
                            b"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/></sasl-channel-binding>",
                        );
                    }
                    // Issue 7 hook: in-band registration (XEP-0077, XEP-0445).
                    crate::xep::hooks::write_preauth_features(self, proto.tls, &mut f);
                }
            }
            Stage::Authenticated => {
                f.extend_from_slice(b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>");
                for module in crate::xep::MODULES {
                    for feature in module.stream_features {
                        f.extend_from_slice(feature.as_bytes());
                    }
                }
            }
            Stage::Bound => {}
        }
        // XEP-0478: the limits this stream is held to, so clients can stay inside them.
        let max_bytes = self
            .frame_limits(proto.stage != Stage::Negotiating)
            .max_stanza_bytes;
        f.extend_from_slice(b"<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>");
        f.extend_from_slice(max_bytes.to_string().as_bytes());
        f.extend_from_slice(b"</max-bytes><idle-seconds>");
        f.extend_from_slice(self.cfg.limits.idle_secs.to_string().as_bytes());
        f.extend_from_slice(b"</idle-seconds></limits></stream:features>");
        self.send_nonza(id, |out| out.extend_from_slice(&f));
    }

    /// Sends a stream error and closes (RFC 6120 §4.9.1.1: a header first if none was sent).
    pub(crate) fn stream_error(
        &mut self,
        id: ConnId,
        proto: &mut C2s,
        cond: StreamCondition,
        text: Option<&str>,
    ) {
        if !proto.header_sent {
            let mut sid = [0u8; 12];
            self.rng.fill(&mut sid);
            let stream_id = hex(&sid);
            let domain = self.cfg.domain.clone();
            self.send_nonza(id, |out| {
                write_stream_header(out, &domain, &stream_id, None)
            });
            proto.header_sent = true;
        }
        log::debug!("[{id}] stream error {}", cond.element_name());
        self.send_nonza(id, |out| write_stream_error(out, cond, text));
        self.finish(id, Action::Close);
        self.end_session(id);
    }

    fn c2s_element(&mut self, id: ConnId, proto: &mut C2s, raw: &RawElement) {
        let ns = raw.ns();
        let name = raw.name();
        match (proto.stage, ns, name) {
            (Stage::Negotiating, NS_TLS, "starttls") => self.c2s_starttls(id, proto),
            (Stage::Negotiating, NS_SASL, "auth") => self.c2s_auth(id, proto, raw),
            (Stage::Negotiating, NS_SASL, "response") => self.c2s_sasl_response(id, proto, raw),
            (Stage::Negotiating, NS_SASL, "abort") => {
                proto.sasl = None;
                self.sasl_failed(id, proto, SaslFailure::Aborted);
            }
            (Stage::Bound, _, _) if Kind::of(name, ns).is_some() => {
                self.route_from_client(id, raw);
                // XEP-0198: the stanza is handled (counted after routing, so that an
                // `<a/>` covering it is sent after what it caused).
                self.sm_count_inbound(id);
            }
            (Stage::Bound, NS_SM, "enable") => self.sm_enable(id, raw),
            (Stage::Bound, NS_SM, "r") => {
                // The answer covers stanzas whose effects may still be on their way to
                // disk: it waits for them (an acknowledged stanza survives a power cut).
                self.hold_for_all();
                self.sm_request(id);
            }
            (Stage::Bound, NS_SM, "a") => self.sm_answer(id, proto, raw),
            (Stage::Authenticated, NS_SM, "resume") => {
                self.hold_for_all();
                self.sm_resume(id, proto, raw);
            }
            (Stage::Authenticated, NS_SM, _) => {
                // XEP-0198 §3: enabling before binding is an unexpected request.
                self.send_nonza(id, |out| {
                    out.extend_from_slice(
                        b"<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>",
                    )
                });
            }
            (Stage::Bound, NS_CSI, "active") => self.csi_set(id, false),
            (Stage::Bound, NS_CSI, "inactive") => self.csi_set(id, true),
            (Stage::Authenticated, _, "iq") if ns == NS_CLIENT => {
                self.c2s_pre_bind_iq(id, proto, raw)
            }
            // Issue 7 hook: in-band registration before login (XEP-0077); any other iq
            // is still not-authorized (RFC 6120 §6.1).
            (Stage::Negotiating, NS_CLIENT, "iq") => {
                if !crate::xep::hooks::preauth_iq(self, id, proto.tls, raw) {
                    self.stream_error(id, proto, StreamCondition::NotAuthorized, None);
                }
            }
            _ if Kind::of(name, ns).is_some() => {
                // RFC 6120 §6.1, §7.1: no stanzas before authentication and binding.
                self.stream_error(id, proto, StreamCondition::NotAuthorized, None);
            }
            _ => self.stream_error(id, proto, StreamCondition::UnsupportedStanzaType, None),
        }
    }

    fn c2s_starttls(&mut self, id: ConnId, proto: &mut C2s) {
        if proto.tls || proto.sasl.is_some() {
            // §5.4.2.2: STARTTLS not offered now: failure, then close.
            self.send_nonza(id, |out| {
                out.extend_from_slice(
                    b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>",
                )
            });
            self.finish(id, Action::Close);
            return;
        }
        self.send_nonza(id, |out| {
            out.extend_from_slice(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        });
        self.finish(id, Action::StartTls);
        // STYLE.md rule 3 / RFC 6120 §5.4.3.3: anything the client sent after <starttls/>
        // in plaintext must not be read as part of the encrypted stream.
        proto.framer.reset();
        proto.tls_pending = true;
        proto.awaiting_header = true;
        proto.header_sent = false;
    }

    fn element_text(raw: &RawElement) -> Option<String> {
        Element::parse(raw, NS_CLIENT).ok().map(|e| e.text())
    }

    /// Decodes SASL data: empty element = no data, `=` = empty data (RFC 6120 §6.4.2).
    fn sasl_payload(raw: &RawElement) -> Result<Option<Vec<u8>>, SaslFailure> {
        let text = Self::element_text(raw).ok_or(SaslFailure::MalformedRequest)?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if compact.is_empty() {
            return Ok(None);
        }
        if compact == "=" {
            return Ok(Some(Vec::new()));
        }
        BASE64
            .decode(compact.as_bytes())
            .map(Some)
            .map_err(|_| SaslFailure::IncorrectEncoding)
    }

    fn c2s_auth(&mut self, id: ConnId, proto: &mut C2s, raw: &RawElement) {
        if self.tls_required_now(proto) {
            self.sasl_failed(id, proto, SaslFailure::EncryptionRequired);
            return;
        }
        let mechanism = raw.attr("mechanism").and_then(Mechanism::from_name);
        let Some(mechanism) = mechanism.filter(|m| self.offered_mechanisms(proto).any(|o| o == *m))
        else {
            self.sasl_failed(id, proto, SaslFailure::InvalidMechanism);
            return;
        };
        let initial = match Self::sasl_payload(raw) {
            Ok(p) => p,
            Err(f) => {
                self.sasl_failed(id, proto, f);
                return;
            }
        };
        proto.claimed_user = initial
            .as_deref()
            .and_then(|m| crate::sasl::claimed_username(mechanism, m));
        let db = &self.db;
        let lookup = |user: &str| db.user(user).map(|u| u.credentials.clone());
        let ctx = SaslContext {
            domain: &self.cfg.domain,
            channel_binding: if proto.tls {
                proto.channel_binding.as_deref()
            } else {
                None
            },
            server_secret: &self.cfg.server_secret,
        };
        let (server, step) =
            SaslServer::start(mechanism, initial.as_deref(), &ctx, &lookup, &mut *self.rng);
        proto.sasl = Some(Box::new(server));
        self.sasl_step(id, proto, step);
    }

    fn c2s_sasl_response(&mut self, id: ConnId, proto: &mut C2s, raw: &RawElement) {
        let Some(mut server) = proto.sasl.take() else {
            // A response with no exchange in progress is a protocol error on the SASL level.
            self.sasl_failed(id, proto, SaslFailure::MalformedRequest);
            return;
        };
        let data = match Self::sasl_payload(raw) {
            Ok(p) => p.unwrap_or_default(),
            Err(f) => {
                self.sasl_failed(id, proto, f);
                return;
            }
        };
        let db = &self.db;
        let lookup = |user: &str| db.user(user).map(|u| u.credentials.clone());
        let ctx = SaslContext {
            domain: &self.cfg.domain,
            channel_binding: if proto.tls {
                proto.channel_binding.as_deref()
            } else {
                None
            },
            server_secret: &self.cfg.server_secret,
        };
        if proto.claimed_user.is_none() {
            proto.claimed_user = crate::sasl::claimed_username(server.mechanism(), &data);
        }
        let step = server.step(&data, &ctx, &lookup);
        proto.sasl = Some(server);
        self.sasl_step(id, proto, step);
    }

    fn sasl_step(&mut self, id: ConnId, proto: &mut C2s, step: Step) {
        match step {
            Step::Challenge(data) => {
                let b64 = BASE64.encode(&data);
                self.send_nonza(id, |out| {
                    out.extend_from_slice(b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                    out.extend_from_slice(b64.as_bytes());
                    out.extend_from_slice(b"</challenge>");
                });
            }
            Step::Success {
                username,
                additional,
            } => {
                let mech = proto
                    .sasl
                    .as_ref()
                    .map(|s| s.mechanism().name())
                    .unwrap_or("?");
                proto.sasl = None;
                let Some(account) = self.accounts.get(&username).copied() else {
                    // Deleted between lookup and success: treat as a failed login.
                    self.sasl_failed(id, proto, SaslFailure::NotAuthorized);
                    return;
                };
                log::info!(
                    "[{id}] authenticated {username}@{} with {mech}",
                    self.cfg.domain
                );
                self.throttle_login_answer(id, proto);
                self.throttle.succeeded(&username);
                let b64 = additional.map(|a| BASE64.encode(a)).unwrap_or_default();
                self.send_nonza(id, |out| {
                    out.extend_from_slice(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                    out.extend_from_slice(b64.as_bytes());
                    out.extend_from_slice(b"</success>");
                });
                // RFC 6120 §6.4.6: the stream restarts; nothing buffered carries over.
                proto.framer.reset();
                proto.framer.set_limits(self.frame_limits(true));
                proto.stage = Stage::Authenticated;
                proto.awaiting_header = true;
                proto.header_sent = false;
                if let Some(conn) = self.conns.get_mut(id) {
                    conn.user = Some((username, account));
                }
            }
            Step::Failure(f) => {
                proto.sasl = None;
                self.sasl_failed(id, proto, f);
            }
        }
    }

    /// Delays the answer to a login attempt when its address or account is throttled.
    fn throttle_login_answer(&mut self, id: ConnId, proto: &C2s) {
        let Some(ip) = self.conns.get(id).map(|c| c.ip) else {
            return;
        };
        let delay = self
            .throttle
            .delay_ms(ip, proto.claimed_user.as_deref(), self.now);
        if delay > 0 {
            self.pause_output(id, self.now + delay);
        }
    }

    fn sasl_failed(&mut self, id: ConnId, proto: &mut C2s, failure: SaslFailure) {
        if failure != SaslFailure::Aborted {
            self.throttle_login_answer(id, proto);
            if let Some(ip) = self.conns.get(id).map(|c| c.ip) {
                for key in self
                    .throttle
                    .failed(ip, proto.claimed_user.as_deref(), self.now)
                {
                    // Once per window, not once per attempt.
                    log::warn!("repeated failed logins ({key:?}): answers are now delayed");
                }
            }
        }
        self.send_nonza(id, |out| {
            out.extend_from_slice(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><");
            out.extend_from_slice(failure.element_name().as_bytes());
            out.extend_from_slice(b"/></failure>");
        });
        if failure == SaslFailure::Aborted {
            return;
        }
        proto.auth_failures = proto.auth_failures.saturating_add(1);
        log::info!("[{id}] authentication failed ({})", failure.element_name());
        // RFC 6120 §6.4.5 allows a bounded number of retries; then the connection goes.
        if proto.auth_failures >= self.cfg.limits.max_auth_attempts {
            self.stream_error(
                id,
                proto,
                StreamCondition::PolicyViolation,
                Some("too many authentication attempts"),
            );
        }
    }

    /// Between SASL success and binding only bind (and the legacy session iq, which the
    /// RFC 3921 flow sends after bind) are acceptable.
    fn c2s_pre_bind_iq(&mut self, id: ConnId, proto: &mut C2s, raw: &RawElement) {
        let Ok(iq) = Element::parse(raw, NS_CLIENT) else {
            self.stream_error(id, proto, StreamCondition::NotWellFormed, None);
            return;
        };
        let iq_id = iq.attr("id").map(str::to_string);
        let is_bind = iq.child("bind", NS_BIND).is_some();
        if !is_bind {
            self.stream_error(id, proto, StreamCondition::NotAuthorized, None);
            return;
        }
        let Some(iq_id) = iq_id else {
            self.iq_error_raw(id, None, StanzaError::new(StanzaCondition::BadRequest));
            return;
        };
        if IqType::parse(iq.attr("type")) != Some(IqType::Set) {
            self.iq_error_raw(
                id,
                Some(&iq_id),
                StanzaError::new(StanzaCondition::BadRequest),
            );
            return;
        }
        let requested = iq
            .child("bind", NS_BIND)
            .and_then(|b| b.child("resource", NS_BIND))
            .map(|r| r.text())
            .filter(|r| !r.is_empty());
        match self.bind_resource(id, requested.as_deref()) {
            Ok(full) => {
                proto.stage = Stage::Bound;
                self.send_nonza(id, |out| {
                    out.extend_from_slice(b"<iq type='result' id='");
                    escape_attr(out, &iq_id);
                    out.extend_from_slice(
                        b"'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>",
                    );
                    escape_text(out, &full);
                    out.extend_from_slice(b"</jid></bind></iq>");
                });
            }
            Err(e) => self.iq_error_raw(id, Some(&iq_id), e),
        }
    }

    /// An error reply to an iq of the connection itself, before it has a full JID.
    fn iq_error_raw(&mut self, id: ConnId, iq_id: Option<&str>, err: StanzaError) {
        self.send_nonza(id, |out| {
            out.extend_from_slice(b"<iq type='error'");
            if let Some(i) = iq_id {
                out.extend_from_slice(b" id='");
                escape_attr(out, i);
                out.push(b'\'');
            }
            out.push(b'>');
            stanza::write_error_element(out, &err);
            out.extend_from_slice(b"</iq>");
        });
    }

    /// RFC 6120 §7: binds a resource, replacing a session with the same full JID.
    fn bind_resource(
        &mut self,
        id: ConnId,
        requested: Option<&str>,
    ) -> Result<String, StanzaError> {
        let (user, account) = self
            .conns
            .get(id)
            .and_then(|c| c.user.clone())
            .ok_or(StanzaError::new(StanzaCondition::NotAuthorized))?;
        if self.db.user(&user).is_none() {
            return Err(StanzaError::new(StanzaCondition::NotAuthorized));
        }
        let resource = match requested {
            // §7.7.2.1: a resource that does not pass the OpaqueString profile.
            Some(r) => jid::normalize_resource(r)
                .map_err(|_| StanzaError::new(StanzaCondition::BadRequest))?,
            None => self.generate_resource(),
        };
        let full = Jid::from_parts(Some(&user), &self.cfg.domain, Some(&resource))
            .map_err(|_| StanzaError::new(StanzaCondition::BadRequest))?;
        // §7.7.2.2: we choose "override": the older session is closed with <conflict/>.
        let existing: Vec<ConnId> = self
            .online
            .resources(account)
            .iter()
            .copied()
            .filter(|c| {
                self.conns
                    .get(*c)
                    .and_then(|x| x.session.as_ref())
                    .is_some_and(|s| s.jid == full)
            })
            .collect();
        for old in existing {
            log::info!("[{old}] replaced by a new login as {full}");
            self.kill(
                old,
                StreamCondition::Conflict,
                Some("replaced by a new connection"),
            );
        }
        match self.online.add(account, id) {
            Ok(()) => {}
            Err(BindError::TooManyResources) | Err(BindError::TableFull) => {
                // §7.6.2.1: resource-constraint when the account reached its limit.
                return Err(StanzaError::new(StanzaCondition::ResourceConstraint));
            }
        }
        let text = full.to_string();
        if let Some(conn) = self.conns.get_mut(id) {
            conn.session = Some(crate::core::Session::new(full, account));
            conn.deadline = None;
        }
        let idle = u64::from(self.cfg.limits.idle_secs) * 1000;
        self.arm(self.now + idle);
        log::info!("[{id}] bound {text}");
        Ok(text)
    }

    fn generate_resource(&mut self) -> String {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        format!("xmppd-{}", hex(&b))
    }
}

/// Lowercase hex of random bytes: ids and generated resources need no more.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(to: Option<&str>, version: Option<&str>, default_ns: Option<&str>) -> StreamHeader {
        StreamHeader {
            local_name: "stream".into(),
            ns: NS_STREAM.into(),
            default_ns: default_ns.map(str::to_string),
            to: to.map(str::to_string),
            version: version.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn header_checks_map_to_rfc_conditions() {
        let ok = header(None, Some("1.0"), Some(NS_CLIENT));
        assert_eq!(check_header(&ok, "localhost"), Ok(()));
        let no_version = header(None, None, Some(NS_CLIENT));
        assert_eq!(
            check_header(&no_version, "localhost"),
            Err(StreamCondition::UnsupportedVersion)
        );
        let old = header(None, Some("0.9"), Some(NS_CLIENT));
        assert_eq!(
            check_header(&old, "localhost"),
            Err(StreamCondition::UnsupportedVersion)
        );
        let server_ns = header(None, Some("1.0"), Some("jabber:server"));
        assert_eq!(
            check_header(&server_ns, "localhost"),
            Err(StreamCondition::InvalidNamespace)
        );
        let later = header(None, Some("2.0"), Some(NS_CLIENT));
        assert_eq!(check_header(&later, "localhost"), Ok(()));
    }

    #[test]
    fn stream_error_has_rfc_shape() {
        let mut out = Vec::new();
        write_stream_error(&mut out, StreamCondition::HostUnknown, None);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        );
    }
}
