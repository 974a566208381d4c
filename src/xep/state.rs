//! Run-time state of the extension modules (nothing here is persisted), their settings,
//! and small helpers they share for writing replies.
//!
//! Per-connection state lives in a table indexed by connection slot that remembers the
//! full handle: an entry left by a closed connection is recognised as stale by its
//! generation and reset on first use, so no "session ended" event is needed and the
//! table can never hold more than one entry per slot.

use std::sync::Arc;

use crate::core::Core;
use crate::error::StanzaError;
use crate::limits::CAP_CONNECTIONS;
use crate::router::ConnId;
use crate::stanza::{self, Kind};
use crate::xml::escape::{escape_attr, escape_text};
use crate::xml::{Element, NS_CLIENT, RawElement};

use super::IqRequest;
use super::pending_iq::PendingIqs;
use super::xep0077_register::RegisterLimiter;
use super::xep0115_caps::CapsCache;

pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// What the extension modules need from the configuration.
#[derive(Clone, Debug)]
pub struct ServicesConfig {
    pub register_enabled: bool,
    pub register_open: bool,
    pub scram_iterations: u32,
    /// XEP-0157 fields (`admin-addresses`, …) and their URIs.
    pub contact: Vec<(&'static str, Vec<String>)>,
    /// Wall-clock time (seconds since the Unix epoch) when the core's clock read 0, so
    /// that invitation expiry can be checked with the time the shell passes in.
    pub start_unix_secs: u64,
}

impl Default for ServicesConfig {
    fn default() -> ServicesConfig {
        ServicesConfig {
            register_enabled: false,
            register_open: false,
            scram_iterations: crate::limits::DEFAULT_SCRAM_ITERATIONS,
            contact: Vec::new(),
            start_unix_secs: 0,
        }
    }
}

/// Per-connection state of the extension modules.
#[derive(Default)]
pub struct ConnExt {
    pub id: Option<ConnId>,
    /// XEP-0115: the PEP nodes this session wants notifications for (`+notify`), once
    /// its capabilities are known.
    pub notify: Option<Arc<Vec<String>>>,
    /// The capabilities `ver` last announced (to notice a change).
    pub caps_ver: Option<String>,
    /// XEP-0191 §3.2: the session asked for the block list, so it receives pushes.
    pub blocklist_interested: bool,
    /// XEP-0445: an invitation token accepted on this (unauthenticated) stream.
    pub preauth_token: Option<String>,
}

#[derive(Default)]
pub struct XepState {
    pub services: ServicesConfig,
    conns: Vec<ConnExt>,
    pub caps: CapsCache,
    pub pending: PendingIqs,
    pub register: RegisterLimiter,
    counter: u64,
}

impl XepState {
    pub fn conn(&self, id: ConnId) -> Option<&ConnExt> {
        self.conns.get(id.index()).filter(|c| c.id == Some(id))
    }

    /// The entry of `id`, reset if it belonged to an earlier connection of the slot.
    pub fn conn_mut(&mut self, id: ConnId) -> Option<&mut ConnExt> {
        let idx = id.index();
        if idx >= CAP_CONNECTIONS {
            return None;
        }
        if self.conns.len() <= idx {
            self.conns.resize_with(idx + 1, ConnExt::default);
        }
        let entry = self.conns.get_mut(idx)?;
        if entry.id != Some(id) {
            *entry = ConnExt {
                id: Some(id),
                ..ConnExt::default()
            };
        }
        Some(entry)
    }

    /// A number for ids of stanzas the server sends.
    pub fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

impl Core {
    /// Issue 7: hands the core the settings of the extension modules (called once by
    /// the shell after `Core::new`).
    pub fn configure_services(&mut self, services: ServicesConfig) {
        self.ext.services = services;
    }

    /// Seconds since the Unix epoch, from the clock the shell passes in.
    pub(crate) fn unix_now(&self) -> u64 {
        self.ext.services.start_unix_secs + self.now.0 / 1000
    }

    /// A random id for a stanza the server sends.
    pub(crate) fn random_id(&mut self) -> String {
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        crate::c2s::hex(&b)
    }
}

/// Serialises an element so that it can stand anywhere: its namespace is declared on
/// it whatever the parent.
pub fn standalone_xml(e: &Element) -> String {
    // No real parent namespace equals this, so the top element always declares its own.
    e.to_xml("\u{1}")
}

/// Parses XML the server serialised itself (stored payloads).
pub fn parse_stored(xml: &str) -> Option<Element> {
    let raw = RawElement::from_xml(xml, NS_CLIENT).ok()?;
    Element::parse(&raw, NS_CLIENT).ok()
}

/// `from` of a reply: the address the request was sent to, as it was written.
fn reply_from(req: &IqRequest) -> Option<String> {
    req.to.as_ref().map(|t| t.to_string())
}

/// Sends a reply to `req`: `<iq type='…' id='…' from='…' to='…'`, then what `rest` writes
/// (`/>`, or `>`, the payload and `</iq>`). `from` is the address the request was sent to.
pub fn send_reply(
    core: &mut Core,
    req: &IqRequest,
    iq_type: &str,
    rest: impl FnOnce(&mut Vec<u8>),
) {
    let from = reply_from(req);
    let to = req.from.to_string();
    let id = req.id.clone();
    core.send(req.conn, |out| {
        out.extend_from_slice(b"<iq type='");
        out.extend_from_slice(iq_type.as_bytes());
        out.extend_from_slice(b"' id='");
        escape_attr(out, &id);
        out.push(b'\'');
        if let Some(f) = &from {
            out.extend_from_slice(b" from='");
            escape_attr(out, f);
            out.push(b'\'');
        }
        out.extend_from_slice(b" to='");
        escape_attr(out, &to);
        out.push(b'\'');
        rest(out);
    });
}

/// Sends an iq result whose payload is already serialised (`body` may be empty).
pub fn send_result_raw(core: &mut Core, req: &IqRequest, body: &[u8]) {
    send_reply(core, req, "result", |out| {
        if body.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            out.extend_from_slice(body);
            out.extend_from_slice(b"</iq>");
        }
    });
}

/// Writes `<error>` with a defined condition and an application-specific condition
/// element (RFC 6120 §8.3.4), e.g. XEP-0060's `<precondition-not-met/>`.
pub fn write_error_with_app(out: &mut Vec<u8>, err: &StanzaError, app: Option<(&str, &str)>) {
    out.extend_from_slice(b"<error type='");
    out.extend_from_slice(err.error_type.as_str().as_bytes());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(err.condition.element_name().as_bytes());
    out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    if let Some(text) = err.text {
        out.extend_from_slice(b"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>");
        escape_text(out, text);
        out.extend_from_slice(b"</text>");
    }
    if let Some((name, ns)) = app {
        out.push(b'<');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b" xmlns='");
        escape_attr(out, ns);
        out.extend_from_slice(b"'/>");
    }
    out.extend_from_slice(b"</error>");
}

/// Answers an iq with an error that carries an application-specific condition.
pub fn reply_error_app(
    core: &mut Core,
    req: &IqRequest,
    err: StanzaError,
    app_name: &str,
    app_ns: &str,
) -> super::IqReply {
    send_reply(core, req, "error", |out| {
        out.push(b'>');
        write_error_with_app(out, &err, Some((app_name, app_ns)));
        out.extend_from_slice(b"</iq>");
    });
    super::IqReply::Done
}

/// Bounces a client's stanza with an error carrying an application condition.
#[allow(clippy::too_many_arguments)]
pub fn bounce_with_app(
    core: &mut Core,
    conn: ConnId,
    raw: &RawElement,
    kind: Kind,
    sender: &str,
    from: &str,
    err: StanzaError,
    app: Option<(&str, &str)>,
) {
    if stanza::is_error(raw) || (kind == Kind::Iq && raw.attr("type") == Some("result")) {
        return;
    }
    let id = raw.attr("id").map(str::to_string);
    core.send(conn, |out| {
        out.push(b'<');
        out.extend_from_slice(kind.name().as_bytes());
        out.extend_from_slice(b" type='error'");
        if let Some(id) = &id {
            out.extend_from_slice(b" id='");
            escape_attr(out, id);
            out.push(b'\'');
        }
        out.extend_from_slice(b" from='");
        escape_attr(out, from);
        out.extend_from_slice(b"' to='");
        escape_attr(out, sender);
        out.extend_from_slice(b"'>");
        write_error_with_app(out, &err, app);
        out.extend_from_slice(b"</");
        out.extend_from_slice(kind.name().as_bytes());
        out.push(b'>');
    });
}

/// The owner (account localpart) an iq to an account's bare JID concerns, and whether the
/// requester is that owner.
pub fn owner_of(core: &Core, req: &IqRequest) -> Option<(String, bool)> {
    use super::IqTarget;
    match req.target {
        IqTarget::OwnAccount | IqTarget::Server => req.from.local().map(|l| (l.to_string(), true)),
        IqTarget::OtherAccount(_) => {
            let owner = req.to.as_ref()?.local()?.to_string();
            core.db.user(&owner)?;
            Some((owner, false))
        }
    }
}
