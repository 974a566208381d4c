//! Incremental stream framer. STUB: interface only.

use std::ops::Range;

/// Limits the framer enforces; swapped from pre-auth to post-auth values after SASL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_stanza_bytes: usize,
    pub max_depth: usize,
    pub max_attributes: usize,
}

/// Why the input cannot be framed. Mapped to a stream condition in `crate::error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Bad syntax, mismatched tags, duplicate attributes, unbound prefix, bad entity
    /// reference, invalid UTF-8 or a character not allowed in XML.
    NotWellFormed(&'static str),
    /// Comment, processing instruction, DTD, entity declaration (RFC 6120 §11.1).
    RestrictedXml,
    /// An element (or the stream header) larger than `max_stanza_bytes`.
    TooLarge,
    /// Nesting deeper than `max_depth`.
    TooDeep,
    /// More attributes on one element than `max_attributes`.
    TooManyAttributes,
    /// XML declaration with an encoding other than UTF-8 (RFC 6120 §11.6).
    UnsupportedEncoding,
    /// Stream header element that is not `stream` in the streams namespace.
    InvalidNamespace,
    /// Stream header's prefix for the streams namespace is not usable (RFC 6120 §4.9.3.2).
    BadNamespacePrefix,
}

/// The opening `<stream:stream ...>` tag, attributes unescaped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub local_name: String,
    /// Namespace the element name resolved to (must be the streams namespace).
    pub ns: String,
    /// Default namespace declared on the header (`jabber:client` for c2s).
    pub default_ns: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// Prefix declarations on the header other than the streams prefix, so that stanzas
    /// which use them can be forwarded with the declarations copied in.
    pub extra_prefixes: Vec<(String, String)>,
}

/// One complete top-level element (a stanza or negotiation element), already checked for
/// well-formedness and limits. Holds the exact bytes received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawElement {
    bytes: String,
    name: Range<usize>,
    ns: String,
    attrs: Vec<(Range<usize>, String)>,
    inner: Range<usize>,
}

impl RawElement {
    /// The exact text of the element as received.
    pub fn as_str(&self) -> &str {
        &self.bytes
    }
    /// Local name of the element (without prefix).
    pub fn name(&self) -> &str {
        &self.bytes[self.name.clone()]
    }
    /// Resolved namespace of the element.
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// Value (unescaped) of the attribute with this qualified name, e.g. `to`, `xml:lang`.
    pub fn attr(&self, qname: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| &self.bytes[n.clone()] == qname)
            .map(|(_, v)| v.as_str())
    }
    /// The raw text between the start tag and the end tag (empty for `<x/>`).
    pub fn inner(&self) -> &str {
        &self.bytes[self.inner.clone()]
    }
    /// Writes the element with `from`/`to` replaced (or removed when `None`), its default
    /// namespace declaration removed (the receiving stream's default applies), the other
    /// attributes and the content copied as received, and `extra_prefixes` declared on the
    /// top element when the content uses them.
    pub fn write_with_addresses(
        &self,
        out: &mut Vec<u8>,
        from: Option<&str>,
        to: Option<&str>,
        extra_prefixes: &[(String, String)],
    ) {
        let _ = (from, to, extra_prefixes);
        out.extend_from_slice(self.bytes.as_bytes());
    }
}

/// What the framer produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Header(StreamHeader),
    Element(RawElement),
    /// `</stream:stream>`.
    Close,
}

pub struct Framer {
    limits: FrameLimits,
    buf: Vec<u8>,
}

impl Framer {
    pub fn new(limits: FrameLimits) -> Framer {
        Framer {
            limits,
            buf: Vec::new(),
        }
    }
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }
    /// Adds received bytes. Fails when the pending element would exceed the size limit.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), FrameError> {
        self.buf.extend_from_slice(data);
        Ok(())
    }
    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        Ok(None)
    }
    /// Discards every buffered byte and expects a new stream header (after STARTTLS
    /// `<proceed/>` and SASL `<success/>`, RFC 6120 §5.4.3.3 and §6.4.6).
    pub fn reset(&mut self) {
        self.buf.clear();
    }
    /// Bytes currently buffered (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
