//! Typed views of the three stanza kinds and the replies the server builds for them.
//!
//! Routing reads only the top-level attributes of a framed element (no tree is built for a
//! message passing through); the server parses a stanza into an [`Element`] only when it
//! has to read the payload itself.

use crate::error::StanzaError;
use crate::xml::escape::{escape_attr, escape_text};
use crate::xml::{Element, NS_CLIENT, RawElement};

pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    /// The stanza kind of a top-level element, if it is one (RFC 6120 §8: the three
    /// kinds, qualified by the stream's content namespace).
    pub fn of(name: &str, ns: &str) -> Option<Kind> {
        if ns != NS_CLIENT {
            return None;
        }
        match name {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }
}

/// RFC 6120 §8.2.3: the `type` of an iq is required and one of four values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    pub fn parse(s: Option<&str>) -> Option<IqType> {
        match s? {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }
    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

/// RFC 6121 §5.2.2: message types; an absent or unknown type is "normal".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Chat,
    Error,
    Groupchat,
    Headline,
    Normal,
}

impl MessageType {
    pub fn parse(s: Option<&str>) -> MessageType {
        match s {
            Some("chat") => MessageType::Chat,
            Some("error") => MessageType::Error,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            _ => MessageType::Normal,
        }
    }
}

/// RFC 6121 §4.7.1: presence types; absent means available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceType {
    Available,
    Unavailable,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Probe,
    Error,
}

impl PresenceType {
    /// `None` for a value RFC 6121 does not define (the stanza is then a bad request).
    pub fn parse(s: Option<&str>) -> Option<PresenceType> {
        Some(match s {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(_) => return None,
        })
    }
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            PresenceType::Available => None,
            PresenceType::Unavailable => Some("unavailable"),
            PresenceType::Subscribe => Some("subscribe"),
            PresenceType::Subscribed => Some("subscribed"),
            PresenceType::Unsubscribe => Some("unsubscribe"),
            PresenceType::Unsubscribed => Some("unsubscribed"),
            PresenceType::Probe => Some("probe"),
            PresenceType::Error => Some("error"),
        }
    }
    pub fn is_subscription(self) -> bool {
        matches!(
            self,
            PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed
        )
    }
}

/// Whether a stanza is itself an error, which must never be answered with an error
/// (RFC 6120 §8.3.1).
pub fn is_error(raw: &RawElement) -> bool {
    raw.attr("type") == Some("error")
}

fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr(out, value);
    out.push(b'\'');
}

/// Writes `<error type='…'><condition xmlns='…'/><text>…</text></error>`.
pub fn write_error_element(out: &mut Vec<u8>, err: &StanzaError) {
    out.extend_from_slice(b"<error");
    write_attr(out, "type", err.error_type.as_str());
    out.extend_from_slice(b"><");
    out.extend_from_slice(err.condition.element_name().as_bytes());
    out.extend_from_slice(b" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>");
    if let Some(text) = err.text {
        out.extend_from_slice(b"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>");
        escape_text(out, text);
        out.extend_from_slice(b"</text>");
    }
    out.extend_from_slice(b"</error>");
}

/// Writes the error reply to a stanza (RFC 6120 §8.3.1): same kind and id, addresses
/// swapped, `type='error'`. The original payload is not echoed, to keep replies small.
pub fn write_error_reply(
    out: &mut Vec<u8>,
    kind: Kind,
    id: Option<&str>,
    from: &str,
    to: &str,
    err: &StanzaError,
) {
    out.push(b'<');
    out.extend_from_slice(kind.name().as_bytes());
    write_attr(out, "type", "error");
    if let Some(id) = id {
        write_attr(out, "id", id);
    }
    if !from.is_empty() {
        write_attr(out, "from", from);
    }
    write_attr(out, "to", to);
    out.push(b'>');
    write_error_element(out, err);
    out.extend_from_slice(b"</");
    out.extend_from_slice(kind.name().as_bytes());
    out.push(b'>');
}

/// Writes an iq result with an optional payload.
pub fn write_iq_result(
    out: &mut Vec<u8>,
    id: &str,
    from: Option<&str>,
    to: &str,
    payload: Option<&Element>,
) {
    out.extend_from_slice(b"<iq type='result'");
    write_attr(out, "id", id);
    if let Some(from) = from {
        write_attr(out, "from", from);
    }
    write_attr(out, "to", to);
    match payload {
        Some(p) => {
            out.push(b'>');
            p.write_to(out, NS_CLIENT);
            out.extend_from_slice(b"</iq>");
        }
        None => out.extend_from_slice(b"/>"),
    }
}

/// Writes a presence stanza built by the server (subscription handling, unavailable on
/// disconnect, probes answered for a contact).
pub fn write_presence(
    out: &mut Vec<u8>,
    ptype: PresenceType,
    from: &str,
    to: &str,
    status: Option<&str>,
) {
    out.extend_from_slice(b"<presence");
    if let Some(t) = ptype.as_str() {
        write_attr(out, "type", t);
    }
    write_attr(out, "from", from);
    write_attr(out, "to", to);
    match status {
        Some(s) => {
            out.extend_from_slice(b"><status>");
            escape_text(out, s);
            out.extend_from_slice(b"</status></presence>");
        }
        None => out.extend_from_slice(b"/>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{StanzaCondition, StanzaError};

    #[test]
    fn error_reply_swaps_addresses_and_keeps_id() {
        let mut out = Vec::new();
        let err = StanzaError::new(StanzaCondition::ServiceUnavailable);
        write_error_reply(
            &mut out,
            Kind::Iq,
            Some("a'1"),
            "bob@localhost",
            "alice@localhost/x",
            &err,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "<iq type='error' id='a&apos;1' from='bob@localhost' to='alice@localhost/x'><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn types_parse_per_rfc() {
        assert_eq!(IqType::parse(Some("get")), Some(IqType::Get));
        assert_eq!(IqType::parse(Some("GET")), None);
        assert_eq!(IqType::parse(None), None);
        assert_eq!(MessageType::parse(Some("bogus")), MessageType::Normal);
        assert_eq!(PresenceType::parse(None), Some(PresenceType::Available));
        assert_eq!(PresenceType::parse(Some("invisible")), None);
        assert_eq!(Kind::of("iq", NS_CLIENT), Some(Kind::Iq));
        assert_eq!(Kind::of("iq", "jabber:server"), None);
    }
}
