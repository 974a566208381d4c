//! Incremental stream framer: cuts the bytes of one XML stream (RFC 6120 §4) into the
//! stream header, complete top-level elements and the stream close, checking
//! well-formedness, namespaces, the XMPP XML restrictions (§11.1) and size limits.
//!
//! Sans-I/O: `feed` takes any chunk of bytes, `next_frame` hands out what is complete.
//! The framer finds where each token ends itself (a `<`, an unquoted `>`, `]]>`, `?>`) and
//! gives `xmlparser` only complete tokens, so "incomplete, wait" and "malformed" are never
//! confused at the end of the buffered text, and every byte is scanned and tokenized a
//! bounded number of times however the input is split.

use std::ops::Range;

use xmlparser::{ElementEnd, StrSpan, StreamError, Token, Tokenizer, XmlCharExt};

use super::escape;
use super::{NS_STREAM, NS_XML};

/// Namespaces in XML 1.0 §3: the name bound to the `xmlns` prefix, which nothing may bind.
const NS_XMLNS: &str = "http://www.w3.org/2000/xmlns/";
const BYTE_ORDER_MARK: char = '\u{FEFF}';
const CDATA_START: &[u8] = b"<![CDATA[";
/// Buffer capacity an idle framer keeps: one socket read (`limits::READ_CHUNK_BYTES`), so
/// that a connection which once sent a 256 KiB stanza does not hold that memory forever.
const IDLE_CAPACITY: usize = crate::limits::READ_CHUNK_BYTES;
/// Heap bytes of a handled element worth keeping to frame the next one into.
const SPARE_ELEMENT_BYTES: usize = crate::limits::SCRATCH_KEEP_BYTES;

const INVALID_UTF8: FrameError = FrameError::NotWellFormed("invalid UTF-8");
const UNBOUND_PREFIX: FrameError = FrameError::NotWellFormed("unbound namespace prefix");

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

/// Byte range inside a [`RawElement`]; `u32` keeps the struct small (the framer never
/// accepts elements anywhere near 4 GiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span {
            start: position(start),
            end: position(end),
        }
    }
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

fn position(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// One attribute of a top-level element as received, or (after the attributes) one
/// prefix binding of the stream header the element uses: `qname` the prefix, `value`
/// the namespace. Spans index [`RawElement`]'s text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RawAttr {
    qname: Span,
    /// Between the quotes, still escaped.
    raw_value: Span,
    /// The value after unescaping: `raw_value` itself unless unescaping changed it.
    value: Span,
}

/// One complete top-level element (a stanza or negotiation element), already checked for
/// well-formedness and limits. Holds the exact bytes received.
///
/// Everything lives in two buffers, so that an element can be framed into the buffers of
/// one already handled without allocating (see [`FrameBuffers`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RawElement {
    /// The resolved namespace (`..ns_end`), the element as received (`bytes`), the
    /// attribute values that unescaping changed, then the stream-level prefixes and
    /// namespaces the element uses.
    text: String,
    /// The attributes (the first `attr_count`), then the inherited prefix bindings:
    /// declared on the stream header, the element cannot be read on its own without them.
    attrs: Vec<RawAttr>,
    ns_end: u32,
    attr_count: u32,
    bytes: Span,
    name: Span,
    inner: Span,
}

impl RawElement {
    /// Frames one element on its own, as if it arrived on a stream whose default namespace
    /// is `default_ns`, with the compiled capacities as limits. For tests and for code that
    /// builds stanzas from text.
    pub fn from_xml(xml: &str, default_ns: &str) -> Result<RawElement, FrameError> {
        let mut header = Vec::with_capacity(128);
        header.extend_from_slice(b"<stream:stream xmlns:stream='");
        header.extend_from_slice(NS_STREAM.as_bytes());
        header.extend_from_slice(b"' xmlns='");
        escape::escape_attr(&mut header, default_ns);
        header.extend_from_slice(b"'>");
        let mut framer = Framer::new(FrameLimits {
            max_stanza_bytes: crate::limits::CAP_STANZA_BYTES.max(header.len()),
            max_depth: crate::limits::CAP_XML_DEPTH,
            max_attributes: crate::limits::CAP_XML_ATTRIBUTES,
        });
        framer.feed(&header)?;
        framer.feed(xml.as_bytes())?;
        let not_one = FrameError::NotWellFormed("expected exactly one element");
        match framer.next_frame()? {
            Some(Frame::Header(_)) => {}
            _ => return Err(not_one),
        }
        let raw = match framer.next_frame()? {
            Some(Frame::Element(raw)) => raw,
            _ => return Err(not_one),
        };
        match framer.next_frame()? {
            None if framer.buffered() == 0 => Ok(raw),
            _ => Err(not_one),
        }
    }
    /// The exact text of the element as received.
    pub fn as_str(&self) -> &str {
        self.slice(self.bytes)
    }
    /// Local name of the element (without prefix).
    pub fn name(&self) -> &str {
        self.slice(self.name)
    }
    /// Resolved namespace of the element.
    pub fn ns(&self) -> &str {
        self.text.get(..self.ns_end as usize).unwrap_or_default()
    }
    /// Value (unescaped) of the attribute with this qualified name, e.g. `to`, `xml:lang`.
    pub fn attr(&self, qname: &str) -> Option<&str> {
        self.attrs().find(|(n, _)| *n == qname).map(|(_, v)| v)
    }
    /// All attributes in received order, qualified name and unescaped value, including
    /// namespace declarations (`xmlns`, `xmlns:p`).
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.own_attrs()
            .iter()
            .map(|a| (self.slice(a.qname), self.slice(a.value)))
    }
    /// The raw text between the start tag and the end tag (empty for `<x/>`).
    pub fn inner(&self) -> &str {
        self.slice(self.inner)
    }
    /// Prefix bindings from the stream header that this element uses (`(prefix, uri)`).
    pub fn inherited_prefixes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs
            .get(self.attr_count as usize..)
            .unwrap_or_default()
            .iter()
            .map(|b| (self.slice(b.qname), self.slice(b.value)))
    }
    /// Writes the element with `from`/`to` replaced (or removed when `None`), its default
    /// namespace declaration removed (the receiving stream's default applies), the other
    /// attributes and the content copied as received, and `extra_prefixes` declared on the
    /// top element when the content uses them.
    ///
    /// Meant for stanzas in the stream's content namespace. A prefixed element name
    /// (`<c:message xmlns:c='jabber:client'>`) keeps its prefix and declarations: written
    /// unprefixed, a default namespace declared on it (`xmlns='urn:x'`, meant for the
    /// children) would move the element itself into that namespace (found by fuzzing).
    pub fn write_with_addresses(
        &self,
        out: &mut Vec<u8>,
        from: Option<&str>,
        to: Option<&str>,
        extra_prefixes: &[(String, String)],
    ) {
        let prefixed = self.name.start > self.bytes.start + 1;
        // The qualified name as received: `<` comes first, the name runs to the local end.
        let name = if prefixed {
            self.slice(Span {
                start: self.bytes.start + 1,
                end: self.name.end,
            })
        } else {
            self.name()
        };
        out.push(b'<');
        out.extend_from_slice(name.as_bytes());
        for (attr_name, value) in [("from", from), ("to", to)] {
            if let Some(value) = value {
                write_attr(out, attr_name, "", value);
            }
        }
        for a in self.own_attrs() {
            let qname = self.slice(a.qname);
            let own_default_ns = qname == "xmlns" && !prefixed;
            if qname == "from" || qname == "to" || own_default_ns {
                continue;
            }
            let received = Span {
                start: a.qname.start,
                end: a.raw_value.end.saturating_add(1),
            };
            out.push(b' ');
            out.extend_from_slice(self.slice(received).as_bytes());
        }
        self.write_missing_declarations(out, extra_prefixes);
        let inner = self.inner();
        if inner.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            out.extend_from_slice(inner.as_bytes());
            out.extend_from_slice(b"</");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
        }
    }

    /// Declares the stream-level prefixes the element relies on. A prefix can only be used
    /// if `p:` occurs in the text, so that test never misses one (and rarely adds one in
    /// vain, which is harmless).
    fn write_missing_declarations(&self, out: &mut Vec<u8>, extra: &[(String, String)]) {
        let extra = extra.iter().map(|(p, u)| (p.as_str(), u.as_str()));
        let mut written: Vec<&str> = Vec::new();
        for (prefix, uri) in self.inherited_prefixes().chain(extra) {
            if prefix.is_empty() || prefix == "xml" || prefix == "xmlns" {
                continue;
            }
            let declared_here = self
                .own_attrs()
                .iter()
                .any(|a| self.slice(a.qname).strip_prefix("xmlns:") == Some(prefix));
            if declared_here || written.contains(&prefix) || !self.uses_prefix(prefix) {
                continue;
            }
            written.push(prefix);
            write_attr(out, "xmlns:", prefix, uri);
        }
    }

    fn uses_prefix(&self, prefix: &str) -> bool {
        let bytes = self.as_str();
        bytes
            .match_indices(prefix)
            .any(|(i, _)| bytes.as_bytes().get(i + prefix.len()) == Some(&b':'))
    }

    fn own_attrs(&self) -> &[RawAttr] {
        self.attrs
            .get(..self.attr_count as usize)
            .unwrap_or_default()
    }

    fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or_default()
    }

    /// Heap bytes the element holds (text and attribute table).
    fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.attrs.capacity() * size_of::<RawAttr>()
    }
}

impl Clone for RawElement {
    fn clone(&self) -> RawElement {
        RawElement {
            text: self.text.clone(),
            attrs: self.attrs.clone(),
            ..*self
        }
    }

    /// Reuses this element's buffers (a session's last presence is replaced by each new
    /// one; most presences of a session have about the same size).
    fn clone_from(&mut self, source: &RawElement) {
        self.text.clone_from(&source.text);
        self.attrs.clone_from(&source.attrs);
        self.ns_end = source.ns_end;
        self.attr_count = source.attr_count;
        self.bytes = source.bytes;
        self.name = source.name;
        self.inner = source.inner;
    }
}

/// The buffers a [`Framer`] frames into, kept by its owner between reads: an idle
/// connection then holds none (most of a household's sessions are idle most of the
/// time), and a busy one allocates nothing per stanza. One set serves every connection
/// of a server, since the core handles one read at a time.
#[derive(Default)]
pub struct FrameBuffers {
    input: String,
    element: RawElement,
}

impl FrameBuffers {
    /// Keeps the buffers of an element that has been handled, for the next one, unless
    /// they grew past what is worth keeping (a large stanza is not kept for ever).
    pub fn recycle(&mut self, mut raw: RawElement) {
        if self.element.heap_bytes() > 0 || raw.heap_bytes() > SPARE_ELEMENT_BYTES {
            return;
        }
        raw.text.clear();
        raw.attrs.clear();
        self.element = raw;
    }
}

fn write_attr(out: &mut Vec<u8>, name: &str, name_suffix: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(name_suffix.as_bytes());
    out.extend_from_slice(b"='");
    escape::escape_attr(out, value);
    out.push(b'\'');
}

/// What the framer produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Header(StreamHeader),
    Element(RawElement),
    /// `</stream:stream>`.
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before and in the stream header (optional BOM and XML declaration first).
    Prolog,
    /// Between and inside top-level elements.
    Stream,
    /// After the stream's end tag.
    Closed,
}

/// The token whose end is being looked for, starting at `Framer::pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    None,
    Declaration,
    StartTag,
    EndTag,
    Text,
    Cdata,
}

/// What `<` starts, judged from the bytes after it.
enum Markup {
    StartTag,
    EndTag,
    Cdata,
}

enum Ready {
    Header(Box<StreamHeader>),
    Element { end: usize, inner_end: usize },
    Close,
}

/// A start tag as `xmlparser` read it; absolute positions in the buffer.
struct StartTag {
    qname: Range<usize>,
    prefix_len: usize,
    empty: bool,
}

struct AttrSpan {
    qname: Range<usize>,
    prefix_len: usize,
    value: Range<usize>,
}

impl AttrSpan {
    fn is_namespace_declaration(&self, text: &str) -> bool {
        let qname = slice(text, &self.qname);
        qname == "xmlns" || qname.starts_with("xmlns:")
    }
}

/// An element of the current stanza whose end tag has not arrived.
struct OpenElement {
    /// Qualified name, relative to the start of the top-level element.
    qname: Range<usize>,
    scope_mark: ScopeMark,
}

/// Where a name's namespace comes from.
#[derive(Clone, Copy)]
enum Resolved {
    NoNamespace,
    Xml,
    Binding(usize),
}

/// Namespace bindings in scope, innermost last; prefixes and URIs live in one string so
/// that opening and closing elements allocates nothing once warm.
#[derive(Default)]
struct Scopes {
    bindings: Vec<(Range<usize>, Range<usize>)>,
    text: String,
}

#[derive(Clone, Copy)]
struct ScopeMark {
    bindings: usize,
    text: usize,
}

impl Scopes {
    fn mark(&self) -> ScopeMark {
        ScopeMark {
            bindings: self.bindings.len(),
            text: self.text.len(),
        }
    }
    fn restore(&mut self, mark: ScopeMark) {
        self.bindings.truncate(mark.bindings);
        self.text.truncate(mark.text);
    }
    fn clear(&mut self) {
        self.bindings.clear();
        self.text.clear();
    }
    fn bind(&mut self, prefix: &str, uri: &str) {
        let p = self.text.len();
        self.text.push_str(prefix);
        let u = self.text.len();
        self.text.push_str(uri);
        self.bindings.push((p..u, u..self.text.len()));
    }
    fn lookup(&self, prefix: &str) -> Option<usize> {
        self.bindings
            .iter()
            .rposition(|(p, _)| slice(&self.text, p) == prefix)
    }
    fn prefix(&self, i: usize) -> &str {
        self.bindings
            .get(i)
            .map_or("", |(p, _)| slice(&self.text, p))
    }
    fn uri(&self, i: usize) -> &str {
        self.bindings
            .get(i)
            .map_or("", |(_, u)| slice(&self.text, u))
    }
    fn ns(&self, resolved: Resolved) -> &str {
        match resolved {
            Resolved::NoNamespace => "",
            Resolved::Xml => NS_XML,
            Resolved::Binding(i) => self.uri(i),
        }
    }
}

pub struct Framer {
    limits: FrameLimits,
    /// Validated UTF-8 received and not yet handed out, from `elem_start` on.
    buf: String,
    /// A multibyte character cut by the end of the last chunk (at most 3 bytes).
    utf8_tail: [u8; 4],
    utf8_tail_len: usize,
    /// Bytes that are not UTF-8 follow the buffer: the error is raised when the parser
    /// gets there, so that what came before is framed as if the input had been split
    /// just before them.
    utf8_invalid: bool,
    error: Option<FrameError>,
    phase: Phase,
    bom_allowed: bool,
    declaration_allowed: bool,
    /// Start of the token being scanned; everything before it has been checked.
    pos: usize,
    pending: Pending,
    /// How far the scan for the end of the pending token got.
    scan_upto: usize,
    /// Open quote inside a pending start tag (0 when none).
    quote: u8,
    /// Start of the current top-level element (or of the document during the prolog).
    elem_start: usize,
    open: Vec<OpenElement>,
    scopes: Scopes,
    /// Bindings declared on the stream header: the first `header_bindings` of `scopes`.
    header_bindings: usize,
    header_qname: Box<str>,
    /// Header bindings the current stanza uses (indexes into `scopes`).
    used_header_bindings: Vec<usize>,
    /// The top-level element being read: its namespace, attributes and name from its
    /// start tag; the rest is filled in when its end tag arrives.
    element: RawElement,
    attrs: Vec<AttrSpan>,
    ready: Option<Ready>,
    close_after_header: bool,
    /// Work counters: bytes looked at while searching token ends, and bytes given to
    /// `xmlparser`. Tests use them to prove the framer never re-reads an element.
    bytes_scanned: u64,
    bytes_tokenized: u64,
}

impl Framer {
    pub fn new(limits: FrameLimits) -> Framer {
        Framer {
            limits,
            buf: String::new(),
            utf8_tail: [0; 4],
            utf8_tail_len: 0,
            utf8_invalid: false,
            error: None,
            phase: Phase::Prolog,
            bom_allowed: true,
            declaration_allowed: true,
            pos: 0,
            pending: Pending::None,
            scan_upto: 0,
            quote: 0,
            elem_start: 0,
            open: Vec::new(),
            scopes: Scopes::default(),
            header_bindings: 0,
            header_qname: Box::default(),
            used_header_bindings: Vec::new(),
            element: RawElement::default(),
            attrs: Vec::new(),
            ready: None,
            close_after_header: false,
            bytes_scanned: 0,
            bytes_tokenized: 0,
        }
    }
    pub fn set_limits(&mut self, limits: FrameLimits) {
        self.limits = limits;
    }
    /// Adds received bytes. Fails when the pending element would exceed the size limit.
    ///
    /// Call `next_frame` until it returns `None` after each `feed`: only then is the
    /// buffer bounded by the size limit plus one chunk.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let result = self.append_utf8(data).and_then(|()| self.advance());
        result.inspect_err(|e| self.fail(*e))
    }
    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Err(e) = self.advance() {
            self.fail(e);
            return Err(e);
        }
        let frame = match self.ready.take() {
            Some(Ready::Header(header)) => Frame::Header(*header),
            Some(Ready::Element { end, inner_end }) => {
                Frame::Element(self.take_element(end, inner_end))
            }
            Some(Ready::Close) => Frame::Close,
            None => {
                self.compact();
                return Ok(None);
            }
        };
        Ok(Some(frame))
    }
    /// Discards every buffered byte and expects a new stream header (after STARTTLS
    /// `<proceed/>` and SASL `<success/>`, RFC 6120 §5.4.3.3 and §6.4.6). Also clears an
    /// error: the framer is as new.
    pub fn reset(&mut self) {
        let limits = self.limits;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.shrink_to(IDLE_CAPACITY);
        *self = Framer::new(limits);
        self.buf = buf;
    }
    /// Bytes currently buffered (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.utf8_tail_len
    }

    fn fail(&mut self, e: FrameError) {
        self.error = Some(e);
        self.ready = None;
        self.buf = String::new();
        self.utf8_tail_len = 0;
    }

    /// Appends `data` to the buffer, keeping an incomplete trailing character aside until
    /// the next chunk completes it (RFC 6120 §11.6: UTF-8 only).
    fn append_utf8(&mut self, mut data: &[u8]) -> Result<(), FrameError> {
        if self.utf8_invalid {
            return Ok(());
        }
        if self.utf8_tail_len > 0 {
            let width = utf8_width(self.utf8_tail[0]);
            let take = width.saturating_sub(self.utf8_tail_len).min(data.len());
            let (head, rest) = data.split_at_checked(take).ok_or(INVALID_UTF8)?;
            let tail_end = self.utf8_tail_len + take;
            self.utf8_tail
                .get_mut(self.utf8_tail_len..tail_end)
                .ok_or(INVALID_UTF8)?
                .copy_from_slice(head);
            self.utf8_tail_len = tail_end;
            data = rest;
            let tail = self.utf8_tail.get(..tail_end).ok_or(INVALID_UTF8)?;
            match std::str::from_utf8(tail) {
                Ok(c) => {
                    self.buf.push_str(c);
                    self.utf8_tail_len = 0;
                }
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => {
                    self.utf8_tail_len = 0;
                    self.utf8_invalid = true;
                    return Ok(());
                }
            }
        }
        match std::str::from_utf8(data) {
            Ok(s) => self.buf.push_str(s),
            Err(e) => {
                let (valid, rest) = data.split_at_checked(e.valid_up_to()).ok_or(INVALID_UTF8)?;
                self.buf
                    .push_str(std::str::from_utf8(valid).map_err(|_| INVALID_UTF8)?);
                match self.utf8_tail.get_mut(..rest.len()) {
                    Some(tail) if e.error_len().is_none() => {
                        tail.copy_from_slice(rest);
                        self.utf8_tail_len = rest.len();
                    }
                    _ => self.utf8_invalid = true,
                }
            }
        }
        Ok(())
    }

    /// Consumes tokens until a frame is ready or the buffered input runs out.
    fn advance(&mut self) -> Result<(), FrameError> {
        while self.ready.is_none() {
            if self.close_after_header {
                self.close_after_header = false;
                self.ready = Some(Ready::Close);
                break;
            }
            if !self.step()? {
                if self.utf8_invalid {
                    return Err(INVALID_UTF8);
                }
                // RFC 6120 §13.12: bound what an unfinished element may make us buffer.
                if self.buffered().saturating_sub(self.elem_start) > self.limits.max_stanza_bytes {
                    return Err(FrameError::TooLarge);
                }
                break;
            }
        }
        Ok(())
    }

    /// Takes one step; `false` when more input is needed.
    fn step(&mut self) -> Result<bool, FrameError> {
        match self.pending {
            Pending::None => match self.phase {
                Phase::Prolog => self.start_prolog_token(),
                Phase::Stream => self.start_content_token(),
                Phase::Closed => self.skip_after_close(),
            },
            Pending::Declaration => self.continue_declaration(),
            Pending::StartTag => self.continue_start_tag(),
            Pending::EndTag => self.continue_end_tag(),
            Pending::Text => self.continue_text(),
            Pending::Cdata => self.continue_cdata(),
        }
    }

    fn rest(&self) -> &str {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn begin(&mut self, pending: Pending, scan_from: usize) {
        self.pending = pending;
        self.scan_upto = scan_from;
        self.quote = 0;
    }

    fn start_prolog_token(&mut self) -> Result<bool, FrameError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(false);
        }
        if self.bom_allowed {
            self.bom_allowed = false;
            if rest.starts_with(BYTE_ORDER_MARK) {
                self.pos += BYTE_ORDER_MARK.len_utf8();
            }
            return Ok(true);
        }
        if self.declaration_allowed {
            // XML 1.0 §2.8: the declaration can only be the very first thing.
            const OPEN: &[u8] = b"<?xml";
            let bytes = rest.as_bytes();
            if bytes.len() <= OPEN.len() && OPEN.starts_with(bytes) {
                return Ok(false);
            }
            self.declaration_allowed = false;
            if bytes.starts_with(OPEN) && bytes.get(OPEN.len()).is_some_and(|b| is_space(*b)) {
                self.begin(Pending::Declaration, self.pos + OPEN.len());
            }
            return Ok(true);
        }
        let spaces = leading_spaces(rest);
        if spaces > 0 {
            self.bytes_scanned += spaces as u64;
            self.pos += spaces;
            return Ok(true);
        }
        if !rest.starts_with('<') {
            return Err(FrameError::NotWellFormed("text before the stream header"));
        }
        match classify_markup(rest)? {
            None => Ok(false),
            Some(Markup::StartTag) => {
                self.begin(Pending::StartTag, self.pos + 1);
                Ok(true)
            }
            Some(Markup::EndTag) => Err(FrameError::NotWellFormed(
                "end tag before the stream header",
            )),
            Some(Markup::Cdata) => Err(FrameError::NotWellFormed("CDATA before the stream header")),
        }
    }

    fn start_content_token(&mut self) -> Result<bool, FrameError> {
        let at_stream_level = self.open.is_empty();
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let Some(first) = rest.bytes().next() else {
            return Ok(false);
        };
        if first != b'<' {
            if !at_stream_level {
                self.begin(Pending::Text, self.pos);
                return Ok(true);
            }
            // RFC 6120 §4.6.1: whitespace between top-level elements is a keepalive; it is
            // dropped at once so an idle stream buffers nothing.
            let spaces = leading_spaces(rest);
            if spaces == 0 {
                return Err(FrameError::NotWellFormed("text at stream level"));
            }
            self.bytes_scanned += spaces as u64;
            self.pos += spaces;
            self.elem_start = self.pos;
            return Ok(true);
        }
        match classify_markup(rest)? {
            None => Ok(false),
            Some(Markup::StartTag) => {
                self.begin(Pending::StartTag, self.pos + 1);
                Ok(true)
            }
            Some(Markup::EndTag) => {
                self.begin(Pending::EndTag, self.pos + 2);
                Ok(true)
            }
            Some(Markup::Cdata) if at_stream_level => {
                Err(FrameError::NotWellFormed("CDATA section at stream level"))
            }
            Some(Markup::Cdata) => {
                self.begin(Pending::Cdata, self.pos);
                Ok(true)
            }
        }
    }

    fn skip_after_close(&mut self) -> Result<bool, FrameError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(false);
        }
        let spaces = leading_spaces(rest);
        if spaces == 0 {
            return Err(FrameError::NotWellFormed(
                "data after the stream was closed",
            ));
        }
        self.pos += spaces;
        self.elem_start = self.pos;
        Ok(true)
    }

    fn continue_declaration(&mut self) -> Result<bool, FrameError> {
        let Some(end) = self.find_pending_end(b"?>") else {
            return Ok(false);
        };
        let range = self.pos..end;
        self.bytes_tokenized += range.len() as u64;
        let text = slice(&self.buf, &range);
        match Tokenizer::from(text).next() {
            Some(Ok(Token::Declaration { encoding, span, .. })) if span.end() == text.len() => {
                // RFC 6120 §11.6: UTF-8 is the only encoding.
                if encoding.is_some_and(|e| !e.as_str().eq_ignore_ascii_case("UTF-8")) {
                    return Err(FrameError::UnsupportedEncoding);
                }
            }
            _ => return Err(FrameError::NotWellFormed("malformed XML declaration")),
        }
        self.finish_token(end);
        Ok(true)
    }

    fn continue_start_tag(&mut self) -> Result<bool, FrameError> {
        let bytes = self.buf.as_bytes();
        let mut i = self.scan_upto;
        let mut quote = self.quote;
        let end = loop {
            let Some(&b) = bytes.get(i) else {
                self.bytes_scanned += (i - self.scan_upto) as u64;
                self.scan_upto = i;
                self.quote = quote;
                return Ok(false);
            };
            i += 1;
            if b == b'<' {
                // Never allowed inside a tag, not even in an attribute value (XML 1.0 §3.1).
                return Err(FrameError::NotWellFormed("'<' inside a start tag"));
            }
            if quote != 0 {
                if b == quote {
                    quote = 0;
                }
            } else if b == b'\'' || b == b'"' {
                quote = b;
            } else if b == b'>' {
                break i;
            }
        };
        self.bytes_scanned += (end - self.scan_upto) as u64;
        let range = self.pos..end;
        if self.phase == Phase::Prolog {
            self.open_stream(range)?;
        } else {
            self.open_element(range)?;
        }
        self.finish_token(end);
        Ok(true)
    }

    fn continue_end_tag(&mut self) -> Result<bool, FrameError> {
        let bytes = self.buf.as_bytes();
        let from = self.scan_upto;
        let found = bytes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|b| *b == b'>' || *b == b'<');
        let Some(offset) = found else {
            self.bytes_scanned += bytes.len().saturating_sub(from) as u64;
            self.scan_upto = bytes.len();
            return Ok(false);
        };
        self.bytes_scanned += offset as u64 + 1;
        let end = from + offset + 1;
        if bytes.get(end - 1) == Some(&b'<') {
            return Err(FrameError::NotWellFormed("malformed end tag"));
        }
        self.close_element(self.pos..end)?;
        self.finish_token(end);
        Ok(true)
    }

    fn continue_text(&mut self) -> Result<bool, FrameError> {
        let bytes = self.buf.as_bytes();
        let from = self.scan_upto;
        let Some(offset) = bytes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|b| *b == b'<')
        else {
            self.bytes_scanned += bytes.len().saturating_sub(from) as u64;
            self.scan_upto = bytes.len();
            return Ok(false);
        };
        self.bytes_scanned += offset as u64 + 1;
        let end = from + offset;
        let range = self.pos..end;
        self.bytes_tokenized += range.len() as u64;
        match Tokenizer::from_fragment(&self.buf, range.clone()).next() {
            Some(Ok(Token::Text { text })) if text.range() == range => {
                escape::check_references(text.as_str()).map_err(FrameError::NotWellFormed)?;
            }
            Some(Err(e)) => return Err(from_xmlparser(e, "malformed character data")),
            _ => return Err(FrameError::NotWellFormed("malformed character data")),
        }
        self.finish_token(end);
        Ok(true)
    }

    fn continue_cdata(&mut self) -> Result<bool, FrameError> {
        let rest = self.rest().as_bytes();
        let known = rest.len().min(CDATA_START.len());
        if rest.get(..known) != CDATA_START.get(..known) {
            return Err(FrameError::NotWellFormed("malformed CDATA section"));
        }
        if known < CDATA_START.len() {
            return Ok(false);
        }
        self.scan_upto = self.scan_upto.max(self.pos + CDATA_START.len());
        let Some(end) = self.find_pending_end(b"]]>") else {
            return Ok(false);
        };
        let range = self.pos..end;
        self.bytes_tokenized += range.len() as u64;
        match Tokenizer::from_fragment(&self.buf, range.clone()).next() {
            Some(Ok(Token::Cdata { span, .. })) if span.range() == range => {}
            Some(Err(e)) => return Err(from_xmlparser(e, "malformed CDATA section")),
            _ => return Err(FrameError::NotWellFormed("malformed CDATA section")),
        }
        self.finish_token(end);
        Ok(true)
    }

    /// Searches `terminator` from where the last search stopped; returns the end of the
    /// token (after the terminator) or remembers how far it looked.
    fn find_pending_end(&mut self, terminator: &[u8]) -> Option<usize> {
        let bytes = self.buf.as_bytes();
        let from = self.scan_upto;
        let haystack = bytes.get(from..).unwrap_or_default();
        match haystack
            .windows(terminator.len())
            .position(|w| w == terminator)
        {
            Some(offset) => {
                self.bytes_scanned += (offset + terminator.len()) as u64;
                Some(from + offset + terminator.len())
            }
            None => {
                // Keep the last bytes: they may be the start of the terminator.
                let next = bytes.len().saturating_sub(terminator.len() - 1).max(from);
                self.bytes_scanned += haystack.len() as u64;
                self.scan_upto = next;
                None
            }
        }
    }

    fn finish_token(&mut self, end: usize) {
        self.pos = end;
        self.pending = Pending::None;
        self.scan_upto = end;
        self.quote = 0;
    }

    /// Tokenizes a complete start tag into `self.attrs`, enforcing the attribute limit.
    fn read_start_tag(&mut self, range: Range<usize>) -> Result<StartTag, FrameError> {
        self.bytes_tokenized += range.len() as u64;
        let tag = read_start_tag(
            &self.buf,
            range,
            self.limits.max_attributes,
            &mut self.attrs,
        )?;
        check_duplicate_qnames(&self.buf, &self.attrs)?;
        Ok(tag)
    }

    /// The stream header (RFC 6120 §4.7): a start tag whose end tag closes the stream.
    fn open_stream(&mut self, range: Range<usize>) -> Result<(), FrameError> {
        if range.end - self.elem_start > self.limits.max_stanza_bytes {
            return Err(FrameError::TooLarge);
        }
        let tag = self.read_start_tag(range.clone())?;
        self.scopes.clear();
        let header_error = |e: FrameError| {
            if e == UNBOUND_PREFIX {
                FrameError::BadNamespacePrefix
            } else {
                e
            }
        };
        declare_namespaces(&self.buf, &self.attrs, &mut self.scopes)?;
        let mut unused = Vec::new();
        let resolved =
            resolve_element(&self.buf, &tag, &self.scopes, 0, &mut unused).map_err(header_error)?;
        resolve_attributes(&self.buf, &self.attrs, &self.scopes, 0, &mut unused)
            .map_err(header_error)?;
        let (prefix, local) = split_qname(&self.buf, &tag.qname, tag.prefix_len);
        let ns = self.scopes.ns(resolved);
        if local != "stream" || ns != NS_STREAM {
            return Err(FrameError::InvalidNamespace);
        }
        let mut header = StreamHeader {
            local_name: local.to_string(),
            ns: ns.to_string(),
            ..StreamHeader::default()
        };
        for a in &self.attrs {
            let qname = slice(&self.buf, &a.qname);
            let value = escape::unescape_attr(slice(&self.buf, &a.value))
                .map_err(FrameError::NotWellFormed)?
                .into_owned();
            match qname {
                "xmlns" => header.default_ns = Some(value),
                "to" => header.to = Some(value),
                "from" => header.from = Some(value),
                "id" => header.id = Some(value),
                "version" => header.version = Some(value),
                "xml:lang" => header.lang = Some(value),
                _ => {
                    if let Some(declared) = qname.strip_prefix("xmlns:")
                        && declared != prefix
                        && declared != "xml"
                    {
                        header.extra_prefixes.push((declared.to_string(), value));
                    }
                }
            }
        }
        self.header_bindings = self.scopes.bindings.len();
        self.header_qname = slice(&self.buf, &tag.qname).into();
        self.phase = if tag.empty {
            Phase::Closed
        } else {
            Phase::Stream
        };
        self.close_after_header = tag.empty;
        self.ready = Some(Ready::Header(Box::new(header)));
        self.elem_start = range.end;
        Ok(())
    }

    fn open_element(&mut self, range: Range<usize>) -> Result<(), FrameError> {
        let tag = self.read_start_tag(range.clone())?;
        let depth = self.open.len() + 1;
        if depth > self.limits.max_depth {
            return Err(FrameError::TooDeep);
        }
        let mark = self.scopes.mark();
        declare_namespaces(&self.buf, &self.attrs, &mut self.scopes)?;
        let header = self.header_bindings;
        let used = &mut self.used_header_bindings;
        let resolved = resolve_element(&self.buf, &tag, &self.scopes, header, used)?;
        resolve_attributes(&self.buf, &self.attrs, &self.scopes, header, used)?;
        if depth == 1 {
            self.describe_top(&tag, resolved, range.end)?;
        } else {
            for a in &self.attrs {
                escape::check_references(slice(&self.buf, &a.value))
                    .map_err(FrameError::NotWellFormed)?;
            }
        }
        if tag.empty {
            self.scopes.restore(mark);
            if depth == 1 {
                self.finish_top(range.end, range.end)?;
            }
        } else {
            let base = self.elem_start;
            self.open.push(OpenElement {
                qname: tag.qname.start - base..tag.qname.end - base,
                scope_mark: mark,
            });
        }
        Ok(())
    }

    /// Records what the element's start tag says, in element-relative positions (where
    /// the element will sit in `self.element.text` is known once it is complete).
    fn describe_top(
        &mut self,
        tag: &StartTag,
        resolved: Resolved,
        tag_end: usize,
    ) -> Result<(), FrameError> {
        let base = self.elem_start;
        let rel = |r: &Range<usize>| Span::new(r.start - base, r.end - base);
        let local_start = tag.qname.start + tag.prefix_len + usize::from(tag.prefix_len > 0);
        let el = &mut self.element;
        el.text.clear();
        el.text.push_str(self.scopes.ns(resolved));
        el.ns_end = position(el.text.len());
        el.attrs.clear();
        for a in &self.attrs {
            escape::check_references(slice(&self.buf, &a.value))
                .map_err(FrameError::NotWellFormed)?;
            let value = rel(&a.value);
            el.attrs.push(RawAttr {
                qname: rel(&a.qname),
                raw_value: value,
                value,
            });
        }
        el.attr_count = position(el.attrs.len());
        el.name = rel(&(local_start..tag.qname.end));
        // Where the content starts; where it ends is known at the end tag.
        el.inner = Span::new(tag_end - base, tag_end - base);
        Ok(())
    }

    fn close_element(&mut self, range: Range<usize>) -> Result<(), FrameError> {
        self.bytes_tokenized += range.len() as u64;
        let qname = match Tokenizer::from_fragment(&self.buf, range.clone()).next() {
            Some(Ok(Token::ElementEnd {
                end: ElementEnd::Close(_, local),
                span,
            })) if span.range() == range => span.start() + 2..local.end(),
            Some(Err(e)) => return Err(from_xmlparser(e, "malformed end tag")),
            _ => return Err(FrameError::NotWellFormed("malformed end tag")),
        };
        let closing = slice(&self.buf, &qname);
        let Some(open) = self.open.pop() else {
            // RFC 6120 §4.4: the end tag of the stream closes it.
            if closing != &*self.header_qname {
                return Err(FrameError::NotWellFormed("mismatched end tag"));
            }
            self.phase = Phase::Closed;
            self.ready = Some(Ready::Close);
            self.elem_start = range.end;
            return Ok(());
        };
        let base = self.elem_start;
        if slice(&self.buf, &(open.qname.start + base..open.qname.end + base)) != closing {
            return Err(FrameError::NotWellFormed("mismatched end tag"));
        }
        self.scopes.restore(open.scope_mark);
        if self.open.is_empty() {
            self.finish_top(range.start, range.end)?;
        }
        Ok(())
    }

    fn finish_top(&mut self, inner_end: usize, end: usize) -> Result<(), FrameError> {
        if end - self.elem_start > self.limits.max_stanza_bytes {
            return Err(FrameError::TooLarge);
        }
        self.ready = Some(Ready::Element { end, inner_end });
        Ok(())
    }

    /// Completes the element described at its start tag: its bytes after its namespace,
    /// then the attribute values that unescaping changes, then the header bindings used.
    fn take_element(&mut self, end: usize, inner_end: usize) -> RawElement {
        let base = self.elem_start;
        let mut el = std::mem::take(&mut self.element);
        let start = el.text.len();
        el.text
            .push_str(self.buf.get(base..end).unwrap_or_default());
        let shift = |s: Span| Span::new(s.start as usize + start, s.end as usize + start);
        el.bytes = Span::new(start, el.text.len());
        el.name = shift(el.name);
        el.inner = shift(Span::new(
            (el.inner.start as usize).min(inner_end - base),
            inner_end - base,
        ));
        for a in &mut el.attrs {
            let received = a.raw_value.range();
            let received = slice(&self.buf, &(base + received.start..base + received.end));
            a.qname = shift(a.qname);
            a.raw_value = shift(a.raw_value);
            let before = el.text.len();
            // Checked at the start tag, so unescaping cannot fail here.
            a.value = match escape::unescape_attr_into(&mut el.text, received) {
                Ok(true) => Span::new(before, el.text.len()),
                _ => a.raw_value,
            };
        }
        for i in self.used_header_bindings.drain(..) {
            let p = el.text.len();
            el.text.push_str(self.scopes.prefix(i));
            let u = el.text.len();
            el.text.push_str(self.scopes.uri(i));
            el.attrs.push(RawAttr {
                qname: Span::new(p, u),
                raw_value: Span::default(),
                value: Span::new(u, el.text.len()),
            });
        }
        self.elem_start = end;
        if self.scopes.text.capacity() > IDLE_CAPACITY {
            self.scopes.text.shrink_to(IDLE_CAPACITY);
        }
        el
    }

    /// Takes the buffers it lacks from `spare` (call before feeding and before each
    /// `next_frame`).
    pub fn borrow_buffers(&mut self, spare: &mut FrameBuffers) {
        if self.buf.capacity() == 0 {
            std::mem::swap(&mut self.buf, &mut spare.input);
        }
        if !self.reading_element() && self.element.heap_bytes() == 0 {
            std::mem::swap(&mut self.element, &mut spare.element);
        }
    }

    /// Gives back the buffers it does not need until more input arrives: all of them
    /// between elements, none while an element is incomplete.
    pub fn return_buffers(&mut self, spare: &mut FrameBuffers) {
        if self.buf.is_empty() && spare.input.capacity() == 0 {
            std::mem::swap(&mut self.buf, &mut spare.input);
        }
        if !self.reading_element() && spare.element.heap_bytes() == 0 {
            std::mem::swap(&mut self.element, &mut spare.element);
        }
    }

    /// A top-level element's start tag has been read and the element not handed out:
    /// `self.element` holds what its start tag said.
    fn reading_element(&self) -> bool {
        !self.open.is_empty() || matches!(self.ready, Some(Ready::Element { .. }))
    }

    /// Drops consumed bytes from the front of the buffer, and gives back memory after a
    /// large element.
    fn compact(&mut self) {
        let consumed = self.elem_start.min(self.pos);
        if consumed > 0 {
            self.buf.drain(..consumed);
            self.elem_start -= consumed;
            self.pos -= consumed;
            self.scan_upto = self.scan_upto.saturating_sub(consumed);
        }
        if self.buf.is_empty() {
            // An idle connection holds no input buffer at all once its owner took it back
            // (`return_buffers`); one read's worth is all that is worth keeping.
            if self.buf.capacity() > IDLE_CAPACITY {
                self.buf = String::new();
            }
        } else if self.buf.capacity() > IDLE_CAPACITY && self.buf.len() < self.buf.capacity() / 4 {
            self.buf.shrink_to(IDLE_CAPACITY.max(self.buf.len()));
        }
    }
}

fn slice<'a>(text: &'a str, range: &Range<usize>) -> &'a str {
    text.get(range.clone()).unwrap_or_default()
}

fn split_qname<'a>(text: &'a str, qname: &Range<usize>, prefix_len: usize) -> (&'a str, &'a str) {
    let name = slice(text, qname);
    if prefix_len == 0 {
        return ("", name);
    }
    name.split_once(':').unwrap_or(("", name))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn leading_spaces(s: &str) -> usize {
    s.bytes().take_while(|b| is_space(*b)).count()
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// What a `<` at the start of `rest` opens; `None` when more bytes are needed.
fn classify_markup(rest: &str) -> Result<Option<Markup>, FrameError> {
    let bytes = rest.as_bytes();
    match bytes.get(1) {
        None => Ok(None),
        Some(b'/') => Ok(Some(Markup::EndTag)),
        // RFC 6120 §11.1: processing instructions are restricted.
        Some(b'?') => Err(FrameError::RestrictedXml),
        Some(b'!') => match bytes.get(2) {
            None => Ok(None),
            Some(b'[') => Ok(Some(Markup::Cdata)),
            // Comments, DOCTYPE, ENTITY and the rest of the DTD syntax (RFC 6120 §11.1);
            // refused at the first bytes so a billion-laughs DTD is never buffered.
            Some(_) => Err(FrameError::RestrictedXml),
        },
        Some(_) => match rest.get(1..).and_then(|s| s.chars().next()) {
            Some(c) if c != ':' && c.is_xml_name_start() => Ok(Some(Markup::StartTag)),
            _ => Err(FrameError::NotWellFormed("invalid element name")),
        },
    }
}

/// Reads a complete start tag with `xmlparser`; attributes go to `attrs`.
fn read_start_tag(
    text: &str,
    range: Range<usize>,
    max_attributes: usize,
    attrs: &mut Vec<AttrSpan>,
) -> Result<StartTag, FrameError> {
    const MALFORMED: &str = "malformed start tag";
    attrs.clear();
    let mut tokens = Tokenizer::from_fragment(text, range.clone());
    let (qname, prefix_len) = match tokens.next() {
        Some(Ok(Token::ElementStart {
            prefix,
            local,
            span,
        })) => qualified_name(span.start() + 1, prefix, local)?,
        Some(Err(e)) => return Err(from_xmlparser(e, MALFORMED)),
        _ => return Err(FrameError::NotWellFormed(MALFORMED)),
    };
    loop {
        match tokens.next() {
            Some(Ok(Token::Attribute {
                prefix,
                local,
                value,
                span,
            })) => {
                if attrs.len() >= max_attributes {
                    return Err(FrameError::TooManyAttributes);
                }
                let (qname, prefix_len) = qualified_name(span.start(), prefix, local)?;
                attrs.push(AttrSpan {
                    qname,
                    prefix_len,
                    value: value.range(),
                });
            }
            Some(Ok(Token::ElementEnd { end, span })) if span.end() == range.end => {
                let empty = match end {
                    ElementEnd::Open => false,
                    ElementEnd::Empty => true,
                    ElementEnd::Close(..) => return Err(FrameError::NotWellFormed(MALFORMED)),
                };
                return Ok(StartTag {
                    qname,
                    prefix_len,
                    empty,
                });
            }
            Some(Err(e)) => return Err(from_xmlparser(e, MALFORMED)),
            _ => return Err(FrameError::NotWellFormed(MALFORMED)),
        }
    }
}

/// The qualified name's range and prefix length; `xmlparser` lets `:local` through with an
/// empty prefix, which Namespaces in XML 1.0 §4 does not.
fn qualified_name(
    start: usize,
    prefix: StrSpan<'_>,
    local: StrSpan<'_>,
) -> Result<(Range<usize>, usize), FrameError> {
    if prefix.is_empty() && local.start() != start {
        return Err(FrameError::NotWellFormed("empty namespace prefix"));
    }
    Ok((start..local.end(), prefix.as_str().len()))
}

/// XML 1.0 §3.1 (Unique Att Spec): no attribute name twice in one tag.
fn check_duplicate_qnames(text: &str, attrs: &[AttrSpan]) -> Result<(), FrameError> {
    for (i, a) in attrs.iter().enumerate() {
        let name = slice(text, &a.qname);
        if attrs.iter().take(i).any(|b| slice(text, &b.qname) == name) {
            return Err(FrameError::NotWellFormed("duplicate attribute"));
        }
    }
    Ok(())
}

/// Binds the `xmlns` and `xmlns:p` declarations of a start tag, with the constraints of
/// Namespaces in XML 1.0 §3 (reserved prefixes and names; no empty prefixed declaration).
fn declare_namespaces(
    text: &str,
    attrs: &[AttrSpan],
    scopes: &mut Scopes,
) -> Result<(), FrameError> {
    const RESERVED: FrameError = FrameError::NotWellFormed("reserved namespace prefix or name");
    for a in attrs.iter().filter(|a| a.is_namespace_declaration(text)) {
        let uri =
            escape::unescape_attr(slice(text, &a.value)).map_err(FrameError::NotWellFormed)?;
        let prefix = slice(text, &a.qname).strip_prefix("xmlns:").unwrap_or("");
        let binds_reserved = uri == NS_XML || uri == NS_XMLNS;
        match prefix {
            "xml" if uri == NS_XML => continue,
            "xml" | "xmlns" => return Err(RESERVED),
            _ if binds_reserved => return Err(RESERVED),
            "" => {}
            _ if uri.is_empty() => {
                return Err(FrameError::NotWellFormed(
                    "empty namespace name for a prefix",
                ));
            }
            _ => {}
        }
        scopes.bind(prefix, &uri);
    }
    Ok(())
}

fn resolve_prefix(
    prefix: &str,
    scopes: &Scopes,
    header_bindings: usize,
    used_header: &mut Vec<usize>,
) -> Result<Resolved, FrameError> {
    if prefix == "xml" {
        return Ok(Resolved::Xml);
    }
    let Some(i) = scopes.lookup(prefix) else {
        return if prefix.is_empty() {
            Ok(Resolved::NoNamespace)
        } else {
            Err(UNBOUND_PREFIX)
        };
    };
    if i < header_bindings && !prefix.is_empty() && !used_header.contains(&i) {
        used_header.push(i);
    }
    Ok(Resolved::Binding(i))
}

fn resolve_element(
    text: &str,
    tag: &StartTag,
    scopes: &Scopes,
    header_bindings: usize,
    used_header: &mut Vec<usize>,
) -> Result<Resolved, FrameError> {
    let (prefix, _) = split_qname(text, &tag.qname, tag.prefix_len);
    if prefix == "xmlns" {
        // Namespaces in XML 1.0 §3: element names must not have the prefix xmlns.
        return Err(FrameError::NotWellFormed("element with the xmlns prefix"));
    }
    resolve_prefix(prefix, scopes, header_bindings, used_header)
}

/// Resolves prefixed attributes and checks that no two have the same expanded name
/// (Namespaces in XML 1.0 §6.3).
fn resolve_attributes(
    text: &str,
    attrs: &[AttrSpan],
    scopes: &Scopes,
    header_bindings: usize,
    used_header: &mut Vec<usize>,
) -> Result<(), FrameError> {
    let prefixed = attrs
        .iter()
        .filter(|a| a.prefix_len > 0 && !a.is_namespace_declaration(text));
    for (i, a) in prefixed.clone().enumerate() {
        let (prefix, local) = split_qname(text, &a.qname, a.prefix_len);
        let ns = scopes.ns(resolve_prefix(
            prefix,
            scopes,
            header_bindings,
            used_header,
        )?);
        for b in prefixed.clone().take(i) {
            let (other_prefix, other_local) = split_qname(text, &b.qname, b.prefix_len);
            if other_local == local {
                let other_ns = scopes.ns(resolve_prefix(
                    other_prefix,
                    scopes,
                    header_bindings,
                    used_header,
                )?);
                if other_ns == ns {
                    return Err(FrameError::NotWellFormed("duplicate attribute"));
                }
            }
        }
    }
    Ok(())
}

fn from_xmlparser(e: xmlparser::Error, context: &'static str) -> FrameError {
    use xmlparser::Error as E;
    let cause = match e {
        E::InvalidDeclaration(c, _)
        | E::InvalidComment(c, _)
        | E::InvalidPI(c, _)
        | E::InvalidDoctype(c, _)
        | E::InvalidEntity(c, _)
        | E::InvalidElement(c, _)
        | E::InvalidAttribute(c, _)
        | E::InvalidCdata(c, _)
        | E::InvalidCharData(c, _) => Some(c),
        E::UnknownToken(_) => None,
    };
    FrameError::NotWellFormed(match cause {
        Some(StreamError::NonXmlChar(..)) => "character not allowed in XML",
        Some(StreamError::InvalidCharacterData) => "']]>' in character data",
        Some(StreamError::InvalidName) => "invalid name",
        _ => context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::NS_CLIENT;

    const LIMITS: FrameLimits = FrameLimits {
        max_stanza_bytes: 64 * 1024,
        max_depth: 24,
        max_attributes: 32,
    };
    const HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.com' \
        xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        xml:lang='en' version='1.0'>";

    /// Feeds `chunks` in order, collecting frames until the first error.
    fn run_chunks<'a>(
        limits: FrameLimits,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Frame>, Option<FrameError>) {
        let mut framer = Framer::new(limits);
        let mut frames = Vec::new();
        for chunk in chunks {
            if let Err(e) = framer.feed(chunk) {
                return (frames, Some(e));
            }
            loop {
                match framer.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    fn run(input: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
        run_chunks(LIMITS, [input])
    }

    fn run_bytewise(input: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
        run_chunks(LIMITS, input.chunks(1))
    }

    fn elements(frames: &[Frame]) -> Vec<&RawElement> {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Element(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// The error must be the same whether the input arrives at once or byte by byte.
    fn assert_error(input: &str, expected: FrameError) {
        assert_eq!(run(input.as_bytes()).1, Some(expected), "at once: {input}");
        assert_eq!(
            run_bytewise(input.as_bytes()).1,
            Some(expected),
            "bytewise: {input}"
        );
    }

    /// A stanza after the usual header must fail with `expected`.
    fn assert_stanza_error(stanza: &str, expected: FrameError) {
        assert_error(&format!("{HEADER}{stanza}"), expected);
    }

    fn nwf() -> impl Fn(Option<FrameError>) -> bool {
        |e| matches!(e, Some(FrameError::NotWellFormed(_)))
    }

    fn assert_not_well_formed(stanza: &str) {
        let input = format!("{HEADER}{stanza}");
        let (_, at_once) = run(input.as_bytes());
        let (_, bytewise) = run_bytewise(input.as_bytes());
        assert!(nwf()(at_once), "{stanza}: {at_once:?}");
        assert!(nwf()(bytewise), "{stanza}: {bytewise:?}");
    }

    #[test]
    fn client_stream_opening_with_declaration() {
        // As Conversations and Dino send it.
        let input = format!(
            "{HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABy</auth>"
        );
        let (frames, err) = run(input.as_bytes());
        assert_eq!(err, None);
        let Frame::Header(h) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(h.local_name, "stream");
        assert_eq!(h.ns, NS_STREAM);
        assert_eq!(h.default_ns.as_deref(), Some(NS_CLIENT));
        assert_eq!(h.to.as_deref(), Some("example.com"));
        assert_eq!(h.from, None);
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.lang.as_deref(), Some("en"));
        assert!(h.extra_prefixes.is_empty());
        let auth = elements(&frames)[0];
        assert_eq!(auth.name(), "auth");
        assert_eq!(auth.ns(), "urn:ietf:params:xml:ns:xmpp-sasl");
        assert_eq!(auth.attr("mechanism"), Some("PLAIN"));
        assert_eq!(auth.inner(), "AGp1bGlldABy");
    }

    #[test]
    fn client_stream_opening_without_declaration_and_double_quotes() {
        // Gajim/Psi style: double quotes, no declaration, from attribute, escaped value.
        let input = "<stream:stream xmlns=\"jabber:client\" version=\"1.0\" \
            xmlns:stream=\"http://etherx.jabber.org/streams\" to=\"example.com\" \
            from=\"juliet@example.com\" id=\"a&amp;b\">\n<message to='romeo@example.net'/>";
        let (frames, err) = run(input.as_bytes());
        assert_eq!(err, None);
        let Frame::Header(h) = &frames[0] else {
            panic!()
        };
        assert_eq!(h.from.as_deref(), Some("juliet@example.com"));
        assert_eq!(h.id.as_deref(), Some("a&b"));
        assert_eq!(h.lang, None);
        let message = elements(&frames)[0];
        assert_eq!((message.name(), message.ns()), ("message", NS_CLIENT));
        assert_eq!(message.as_str(), "<message to='romeo@example.net'/>");
        assert_eq!(message.inner(), "");
    }

    #[test]
    fn any_prefix_for_the_streams_namespace() {
        let input = "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' \
            xmlns:x='urn:x'><presence/></s:stream>";
        let (frames, err) = run(input.as_bytes());
        assert_eq!(err, None);
        let Frame::Header(h) = &frames[0] else {
            panic!()
        };
        assert_eq!(h.ns, NS_STREAM);
        assert_eq!(
            h.extra_prefixes,
            vec![("x".to_string(), "urn:x".to_string())]
        );
        assert_eq!(elements(&frames)[0].name(), "presence");
        assert_eq!(frames.last(), Some(&Frame::Close));
        // The end tag must repeat the header's qualified name.
        let wrong = "<s:stream xmlns:s='http://etherx.jabber.org/streams'></stream:stream>";
        assert!(nwf()(run(wrong.as_bytes()).1));
        // Unprefixed stream element in the streams namespace.
        let plain = "<stream xmlns='http://etherx.jabber.org/streams'></stream>";
        let (frames, err) = run(plain.as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], Frame::Close);
    }

    #[test]
    fn header_namespace_errors() {
        assert_error(
            "<stream:stream xmlns:stream='urn:wrong'>",
            FrameError::InvalidNamespace,
        );
        assert_error(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>",
            FrameError::InvalidNamespace,
        );
        assert_error(
            "<stream xmlns='jabber:client'>",
            FrameError::InvalidNamespace,
        );
        assert_error("<stream>", FrameError::InvalidNamespace);
        assert_error(
            "<stream:stream xmlns='jabber:client'>",
            FrameError::BadNamespacePrefix,
        );
        assert_error(
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' foo:to='x'>",
            FrameError::BadNamespacePrefix,
        );
    }

    #[test]
    fn xml_declaration_encoding() {
        let header = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
        for ok in [
            "<?xml version='1.0'?>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n",
        ] {
            let input = format!("{ok}{header}");
            assert_eq!(run(input.as_bytes()).1, None, "{ok}");
            assert_eq!(run_bytewise(input.as_bytes()).1, None, "{ok}");
        }
        for other in ["ISO-8859-1", "UTF-16", "US-ASCII"] {
            assert_error(
                &format!("<?xml version='1.0' encoding='{other}'?>{header}"),
                FrameError::UnsupportedEncoding,
            );
        }
        assert_error(&format!("<?xml?>{header}"), FrameError::RestrictedXml);
        for bad in [
            "<?xml version='2.0'?>",
            "<?xml encoding='UTF-8'?>",
            "<?xml version='1.0'\n?>x",
        ] {
            let (_, err) = run(format!("{bad}{header}").as_bytes());
            assert!(nwf()(err), "{bad}: {err:?}");
        }
        // Only at the very start (XML 1.0 §2.8); anywhere else it is a PI.
        assert_error(
            &format!(" <?xml version='1.0'?>{header}"),
            FrameError::RestrictedXml,
        );
        assert_error(
            &format!("<?xml-stylesheet href='x'?>{header}"),
            FrameError::RestrictedXml,
        );
    }

    #[test]
    fn byte_order_mark_is_skipped() {
        let input = format!("\u{FEFF}{HEADER}<iq type='get' id='1'/>");
        let (frames, err) = run_bytewise(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames.len(), 2);
        assert!(nwf()(run(format!("\u{FEFF}\u{FEFF}{HEADER}").as_bytes()).1));
    }

    #[test]
    fn restricted_xml() {
        for stanza in [
            "<!-- comment -->",
            "<message><!-- hidden --></message>",
            "<message><?pi data?></message>",
            "<?pi?>",
            "<!DOCTYPE foo>",
            "<message><!ENTITY x 'y'></message>",
        ] {
            assert_stanza_error(stanza, FrameError::RestrictedXml);
        }
        assert_error(
            "<!DOCTYPE stream><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            FrameError::RestrictedXml,
        );
        assert_error("<!-- hi --><stream:stream>", FrameError::RestrictedXml);
    }

    #[test]
    fn billion_laughs_fails_at_the_doctype_keyword() {
        let mut doc =
            String::from("<?xml version='1.0'?>\n<!DOCTYPE lolz [\n <!ENTITY lol 'lol'>\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            doc.push_str(&format!(
                " <!ENTITY lol{i} '{}'>\n",
                format!("&{prev};").repeat(10)
            ));
        }
        doc.push_str("]>\n<lolz>&lol9;</lolz>");
        assert_error(&doc, FrameError::RestrictedXml);
        let mut framer = Framer::new(LIMITS);
        let doctype = doc.find("<!DOCTYPE").unwrap();
        for (i, b) in doc.bytes().enumerate() {
            match framer.feed(&[b]).and_then(|()| framer.next_frame()) {
                Ok(_) => assert!(i < doctype + 3, "not refused at byte {i}"),
                Err(e) => {
                    assert_eq!(e, FrameError::RestrictedXml);
                    assert_eq!(i, doctype + 2, "refused as soon as '<!D' arrives");
                    assert_eq!(framer.buffered(), 0);
                    return;
                }
            }
        }
        panic!("billion laughs accepted");
    }

    #[test]
    fn element_nesting_must_match() {
        assert_not_well_formed("<message><body></message></body>");
        assert_not_well_formed("<a></b>");
        assert_not_well_formed("<p:a xmlns:p='u'></a>");
        assert_not_well_formed("<a><b></b></a></a>");
        assert_not_well_formed("</a>");
    }

    #[test]
    fn incomplete_is_not_malformed() {
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        for part in [
            "<a b='x", "/>>", "' c", "=\"'\">", "text &am", "p; <", "/", "a", ">",
        ] {
            framer.feed(part.as_bytes()).unwrap();
            if part != ">" {
                assert_eq!(framer.next_frame(), Ok(None), "after {part}");
            }
        }
        let Ok(Some(Frame::Element(a))) = framer.next_frame() else {
            panic!()
        };
        assert_eq!(a.as_str(), "<a b='x/>>' c=\"'\">text &amp; </a>");
        assert_eq!(a.attr("b"), Some("x/>>"));
        assert_eq!(a.attr("c"), Some("'"));
        assert_eq!(a.inner(), "text &amp; ");
        // Complete but wrong: the end tag does not match.
        framer.feed(b"<a b='x'>").unwrap();
        assert_eq!(framer.next_frame(), Ok(None));
        framer.feed(b"</b>").unwrap_err();
        assert!(nwf()(framer.next_frame().err()));
    }

    #[test]
    fn duplicate_attributes() {
        assert_not_well_formed("<a x='1' x='2'/>");
        assert_not_well_formed("<a xmlns='u' xmlns='u'/>");
        assert_not_well_formed("<a xmlns:p='u' xmlns:p='u'/>");
        // Same expanded name through two prefixes (Namespaces in XML §6.3).
        assert_not_well_formed("<a xmlns:p='urn:u' xmlns:q='urn:u' p:x='1' q:x='2'/>");
        assert_not_well_formed(
            "<m><a xmlns:p='urn:u'><b xmlns:q='urn:u' p:x='1' q:x='2'/></a></m>",
        );
        // Different namespaces, or one unprefixed: fine.
        let ok = format!("{HEADER}<a xmlns:p='urn:u' xmlns:q='urn:v' p:x='1' q:x='2' x='3'/>");
        assert_eq!(run(ok.as_bytes()).1, None);
    }

    #[test]
    fn unbound_prefixes() {
        assert_not_well_formed("<foo:message/>");
        assert_not_well_formed("<message foo:bar='1'/>");
        assert_not_well_formed("<message><p:x/></message>");
        // A declaration goes out of scope with its element.
        assert_not_well_formed("<message><a xmlns:p='u'/><p:x/></message>");
        assert_not_well_formed("<xmlns:x/>");
        assert_not_well_formed("<:x/>");
        assert_not_well_formed("<m :x='1'/>");
        // Declared later in the same tag is fine; xml: is predefined.
        let ok = format!("{HEADER}<p:m p:a='1' xmlns:p='urn:p' xml:lang='en'/>");
        let (frames, err) = run(ok.as_bytes());
        assert_eq!(err, None);
        assert_eq!(elements(&frames)[0].ns(), "urn:p");
    }

    #[test]
    fn reserved_namespace_declarations() {
        let ok = format!("{HEADER}<m xmlns:xml='http://www.w3.org/XML/1998/namespace'/>");
        assert_eq!(run(ok.as_bytes()).1, None);
        assert_not_well_formed("<m xmlns:xml='urn:other'/>");
        assert_not_well_formed("<m xmlns:p='http://www.w3.org/XML/1998/namespace'/>");
        assert_not_well_formed("<m xmlns='http://www.w3.org/XML/1998/namespace'/>");
        assert_not_well_formed("<m xmlns:xmlns='urn:x'/>");
        assert_not_well_formed("<m xmlns:p='http://www.w3.org/2000/xmlns/'/>");
        assert_not_well_formed("<m xmlns:p=''/>");
    }

    #[test]
    fn entity_references() {
        for bad in [
            "<m>&foo;</m>",
            "<m a='&foo;'/>",
            "<m>&amp</m>",
            "<m>a & b</m>",
            "<m>&#0;</m>",
            "<m>&#x1F;</m>",
            "<m a='&#x1;'/>",
            "<m>&#xD800;</m>",
            "<m>&#xFFFF;</m>",
            "<m>&#x110000;</m>",
            "<m><n a='&lt'/></m>",
            "<m xmlns:p='&bad;'/>",
        ] {
            assert_not_well_formed(bad);
        }
        let ok = format!("{HEADER}<m a='&lt;&#x9;&#10;'>&amp;&lt;&gt;&apos;&quot;&#x1F600;</m>");
        let (frames, err) = run(ok.as_bytes());
        assert_eq!(err, None);
        assert_eq!(elements(&frames)[0].attr("a"), Some("<\t\n"));
    }

    #[test]
    fn characters_not_allowed_in_xml() {
        for bad in [
            "<m>\u{1}</m>",
            "<m a='\u{8}'/>",
            "<m>\u{FFFE}</m>",
            "<m><![CDATA[\u{0}]]></m>",
            "\u{B}",
        ] {
            assert_not_well_formed(bad);
        }
        assert_not_well_formed("<m>]]></m>");
        assert_not_well_formed("<m a='<'/>");
        assert_not_well_formed("<m a='x' <n/>");
        assert_not_well_formed("<m a=x/>");
        assert_not_well_formed("<m a/>");
        assert_not_well_formed("<1m/>");
    }

    #[test]
    fn invalid_utf8() {
        for bad in [
            &b"\xff"[..],
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"\xe2\x28\xa1",
            b"\xf5\x80\x80\x80",
        ] {
            let mut input = format!("{HEADER}<m>").into_bytes();
            input.extend_from_slice(bad);
            input.extend_from_slice(b"</m>");
            let at_once = run(&input).1;
            assert_eq!(
                at_once,
                Some(FrameError::NotWellFormed("invalid UTF-8")),
                "{bad:?}"
            );
            assert_eq!(run_bytewise(&input).1, at_once, "{bad:?}");
        }
    }

    #[test]
    fn multibyte_characters_split_across_chunks() {
        let stanza = "<message><body>Grüße ☃ 😀</body></message>";
        let input = format!("{HEADER}{stanza}");
        let bytes = input.as_bytes();
        let emoji = input.find('😀').unwrap();
        // The four bytes of the emoji arrive in three chunks.
        let chunks = [
            &bytes[..emoji + 1],
            &bytes[emoji + 1..emoji + 3],
            &bytes[emoji + 3..],
        ];
        let (frames, err) = run_chunks(LIMITS, chunks);
        assert_eq!(err, None);
        assert_eq!(elements(&frames)[0].as_str(), stanza);
        // Truncated character completed with a wrong byte.
        let mut framer = Framer::new(LIMITS);
        framer.feed(&bytes[..emoji + 2]).unwrap();
        assert_eq!(framer.buffered(), emoji + 2);
        framer.feed(b"A").unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        assert_eq!(framer.next_frame(), Err(INVALID_UTF8));
    }

    #[test]
    fn text_at_stream_level() {
        assert_not_well_formed("hello");
        assert_not_well_formed("<m/>x");
        assert_not_well_formed("<![CDATA[x]]>");
        assert!(nwf()(run(b"hello <stream:stream>").1));
    }

    #[test]
    fn cdata_inside_stanzas() {
        let stanza = "<message><body><![CDATA[<b>]] ] ]]]></body></message>";
        let input = format!("{HEADER}{stanza}");
        let (frames, err) = run_bytewise(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(elements(&frames)[0].as_str(), stanza);
        assert_not_well_formed("<m><![CDATX[x]]></m>");
        assert_not_well_formed("<m><![cdata[x]]></m>");
    }

    #[test]
    fn whitespace_keepalives_are_dropped() {
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        for _ in 0..1000 {
            framer.feed(b" \n\t\r\n").unwrap();
            assert_eq!(framer.next_frame(), Ok(None));
            assert_eq!(framer.buffered(), 0);
        }
        framer.feed(b"\n<presence/>\n").unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Element(_)))));
        assert_eq!(framer.next_frame(), Ok(None));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn stream_close_and_what_follows() {
        let input = format!("{HEADER}<presence/></stream:stream>\n");
        let (frames, err) = run(input.as_bytes());
        assert_eq!(err, None);
        assert_eq!(frames.last(), Some(&Frame::Close));
        assert!(nwf()(
            run(format!("{HEADER}</stream:stream><presence/>").as_bytes()).1
        ));
        // An empty stream element opens and closes at once.
        let empty = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>";
        let (frames, err) = run(empty.as_bytes());
        assert_eq!(err, None);
        assert!(matches!(
            frames.as_slice(),
            [Frame::Header(_), Frame::Close]
        ));
    }

    #[test]
    fn starttls_reset_discards_injected_bytes() {
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        // A man in the middle appends a plaintext stanza after <starttls/> (CVE-2011-1431
        // class): it must not survive into the TLS stream.
        framer
            .feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='set' id='evil'><query xmlns='jabber:iq:roster'/></iq><mess")
            .unwrap();
        let Ok(Some(Frame::Element(starttls))) = framer.next_frame() else {
            panic!()
        };
        assert_eq!(starttls.name(), "starttls");
        framer.reset();
        assert_eq!(framer.buffered(), 0);
        framer.feed(HEADER.as_bytes()).unwrap();
        framer.feed(b"<iq type='get' id='good'/>").unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        let Ok(Some(Frame::Element(iq))) = framer.next_frame() else {
            panic!()
        };
        assert_eq!(iq.attr("id"), Some("good"));
        assert_eq!(framer.next_frame(), Ok(None));
    }

    #[test]
    fn reset_in_the_middle_of_an_element_and_after_an_error() {
        let mut framer = Framer::new(LIMITS);
        framer
            .feed(format!("{HEADER}<message><body>half").as_bytes())
            .unwrap();
        framer.next_frame().unwrap();
        framer.reset();
        framer
            .feed(format!("{HEADER}</body></message>").as_bytes())
            .unwrap();
        framer.next_frame().unwrap();
        assert!(nwf()(framer.next_frame().err()));
        framer.reset();
        framer.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
    }

    #[test]
    fn errors_are_sticky() {
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        let e = framer.feed(b"<!-- x -->").unwrap_err();
        assert_eq!(e, FrameError::RestrictedXml);
        assert_eq!(framer.next_frame(), Err(e));
        assert_eq!(framer.feed(b"<presence/>"), Err(e));
        assert_eq!(framer.next_frame(), Err(e));
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn size_limit() {
        let limits = FrameLimits {
            max_stanza_bytes: 1000,
            ..LIMITS
        };
        let fits = format!("<m>{}</m>", "x".repeat(1000 - 7));
        let input = format!("{HEADER}{fits}");
        assert_eq!(run_chunks(limits, [input.as_bytes()]).1, None);
        let too_big = format!("<m>{}</m>", "x".repeat(1000 - 6));
        let input = format!("{HEADER}{too_big}");
        assert_eq!(
            run_chunks(limits, [input.as_bytes()]).1,
            Some(FrameError::TooLarge)
        );
        assert_eq!(
            run_chunks(limits, input.as_bytes().chunks(1)).1,
            Some(FrameError::TooLarge)
        );
        // A header bigger than the limit.
        let header = format!(
            "<stream:stream xmlns:stream='{NS_STREAM}' id='{}'>",
            "y".repeat(1000)
        );
        assert_eq!(
            run_chunks(limits, [header.as_bytes()]).1,
            Some(FrameError::TooLarge)
        );
    }

    #[test]
    fn size_limit_bounds_the_buffer_while_an_element_never_ends() {
        let limits = FrameLimits {
            max_stanza_bytes: 8 * 1024,
            ..LIMITS
        };
        let chunk = [b'a'; 1000];
        let mut framer = Framer::new(limits);
        framer.feed(HEADER.as_bytes()).unwrap();
        framer.next_frame().unwrap();
        framer.feed(b"<message><body>").unwrap();
        loop {
            let before = framer.buffered();
            assert!(before <= limits.max_stanza_bytes, "{before}");
            match framer.feed(&chunk) {
                Ok(()) => assert_eq!(framer.next_frame(), Ok(None)),
                Err(e) => {
                    assert_eq!(e, FrameError::TooLarge);
                    assert!(before + chunk.len() > limits.max_stanza_bytes);
                    break;
                }
            }
        }
        // Unterminated tags and attribute values count the same.
        let mut framer = Framer::new(limits);
        framer.feed(HEADER.as_bytes()).unwrap();
        framer.next_frame().unwrap();
        framer.feed(b"<message a='").unwrap();
        let mut fed = 0;
        while framer.feed(&chunk).is_ok() {
            fed += chunk.len();
            assert!(fed <= limits.max_stanza_bytes);
        }
        assert_eq!(framer.next_frame(), Err(FrameError::TooLarge));
    }

    #[test]
    fn limit_applies_per_element_not_per_chunk() {
        let limits = FrameLimits {
            max_stanza_bytes: HEADER.len(),
            ..LIMITS
        };
        let mut input = HEADER.to_string();
        for i in 0..1000 {
            input.push_str(&format!("<presence id='{i}'/>"));
        }
        let (frames, err) = run_chunks(limits, [input.as_bytes()]);
        assert_eq!(err, None);
        assert_eq!(frames.len(), 1001);
    }

    #[test]
    fn depth_limit() {
        let limits = FrameLimits {
            max_depth: 3,
            ..LIMITS
        };
        let ok = format!("{HEADER}<a><b><c/></b></a>");
        assert_eq!(run_chunks(limits, [ok.as_bytes()]).1, None);
        let deep = format!("{HEADER}<a><b><c><d/></c></b></a>");
        assert_eq!(
            run_chunks(limits, [deep.as_bytes()]).1,
            Some(FrameError::TooDeep)
        );
        let deep_open = format!("{HEADER}<a><b><c><d>");
        assert_eq!(
            run_chunks(limits, deep_open.as_bytes().chunks(1)).1,
            Some(FrameError::TooDeep)
        );
    }

    #[test]
    fn attribute_limit() {
        let limits = FrameLimits {
            max_attributes: 4,
            ..LIMITS
        };
        let header = format!("<stream:stream xmlns:stream='{NS_STREAM}'>");
        let ok = format!("{header}<m a='1' b='2' xmlns='urn:x' d='4'/>");
        assert_eq!(run_chunks(limits, [ok.as_bytes()]).1, None);
        let many = format!("{header}<m><n a='1' b='2' c='3' d='4' e='5'/></m>");
        assert_eq!(
            run_chunks(limits, [many.as_bytes()]).1,
            Some(FrameError::TooManyAttributes)
        );
        let header = format!("<stream:stream xmlns:stream='{NS_STREAM}' a='' b='' c='' d=''>");
        assert_eq!(
            run_chunks(limits, [header.as_bytes()]).1,
            Some(FrameError::TooManyAttributes)
        );
    }

    /// A session as a client sends it: every split point must give the same frames.
    #[test]
    fn frames_do_not_depend_on_chunk_boundaries() {
        let input = format!(
            "\u{FEFF}{HEADER}\n<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABy</auth>\
             <iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phöne</resource></bind></iq> \n\
             <message to='romeo@example.net' type=\"chat\" xml:lang='en'><body>Wherefore art thou? &lt;3 &#x1F339; 😀</body>\
             <x:thread xmlns:x='jabber:client'>t1</x:thread><c><![CDATA[a]]b]]></c></message>\r\n\
             <presence><show>away</show><status a=\"'&quot;\">Ça va</status></presence>   </stream:stream>"
        );
        let bytes = input.as_bytes();
        let (expected, err) = run(bytes);
        assert_eq!(err, None);
        assert_eq!(expected.len(), 6);
        assert_eq!(expected.last(), Some(&Frame::Close));
        for at in 0..=bytes.len() {
            let (frames, err) = run_chunks(LIMITS, [&bytes[..at], &bytes[at..]]);
            assert_eq!(err, None, "split at {at}");
            assert_eq!(frames, expected, "split at {at}");
        }
        assert_eq!(run_bytewise(bytes), (expected.clone(), None));
        for size in [2, 3, 5, 7, 64] {
            assert_eq!(
                run_chunks(LIMITS, bytes.chunks(size)),
                (expected.clone(), None),
                "chunks of {size}"
            );
        }
    }

    /// Errors, too, do not depend on where the input was split.
    #[test]
    fn errors_do_not_depend_on_chunk_boundaries() {
        for stanza in [
            "<m><!-- c --></m>",
            "<m a='&x;'/>",
            "<m><n></m>",
            "<m a='1' a='2'/>",
        ] {
            let input = format!("{HEADER}{stanza}");
            let bytes = input.as_bytes();
            let (_, expected) = run(bytes);
            assert!(expected.is_some());
            for at in 0..=bytes.len() {
                assert_eq!(
                    run_chunks(LIMITS, [&bytes[..at], &bytes[at..]]).1,
                    expected,
                    "{stanza} at {at}"
                );
            }
        }
    }

    #[test]
    fn large_element_fed_byte_by_byte_is_linear_work() {
        let mut stanza = String::from("<message to='a@b' id='x'><body>");
        while stanza.len() < 60 * 1024 {
            stanza.push_str("lorem ipsum &amp; dolor <b a='1'>sit</b><![CDATA[ amet ]]> ");
        }
        stanza.push_str("</body></message>");
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER.as_bytes()).unwrap();
        framer.next_frame().unwrap();
        let before = framer.bytes_scanned + framer.bytes_tokenized;
        for b in stanza.bytes() {
            framer.feed(&[b]).unwrap();
            if let Some(Frame::Element(raw)) = framer.next_frame().unwrap() {
                assert_eq!(raw.as_str(), stanza);
            }
        }
        assert_eq!(framer.next_frame(), Ok(None));
        let work = framer.bytes_scanned + framer.bytes_tokenized - before;
        // Each byte is scanned about once and tokenized once; a restart per byte would be
        // ~stanza.len()^2 / 2.
        assert!(
            work <= 3 * stanza.len() as u64,
            "work {work} for {} bytes",
            stanza.len()
        );
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn buffer_shrinks_after_a_large_stanza() {
        let mut framer = Framer::new(LIMITS);
        framer.feed(HEADER.as_bytes()).unwrap();
        framer.next_frame().unwrap();
        let big = format!("<message><body>{}</body></message>", "z".repeat(60 * 1024));
        for chunk in big.as_bytes().chunks(4096) {
            framer.feed(chunk).unwrap();
            while framer.next_frame().unwrap().is_some() {}
        }
        assert!(
            framer.buf.capacity() <= IDLE_CAPACITY,
            "{}",
            framer.buf.capacity()
        );
    }

    #[test]
    fn top_level_namespaces_and_inherited_prefixes() {
        let input = format!(
            "<stream:stream xmlns='jabber:server' xmlns:stream='{NS_STREAM}' \
             xmlns:db='jabber:server:dialback'><db:result to='a' from='b'>key</db:result>\
             <message xmlns=''/><stream:error><x/></stream:error>"
        );
        let (frames, err) = run(input.as_bytes());
        assert_eq!(err, None);
        let Frame::Header(h) = &frames[0] else {
            panic!()
        };
        assert_eq!(
            h.extra_prefixes,
            vec![("db".to_string(), "jabber:server:dialback".to_string())]
        );
        let els = elements(&frames);
        assert_eq!(
            (els[0].name(), els[0].ns()),
            ("result", "jabber:server:dialback")
        );
        assert_eq!(
            els[0].inherited_prefixes().collect::<Vec<_>>(),
            vec![("db", "jabber:server:dialback")]
        );
        assert_eq!((els[1].name(), els[1].ns()), ("message", ""));
        assert_eq!((els[2].name(), els[2].ns()), ("error", NS_STREAM));
        assert_eq!(
            els[2].inherited_prefixes().collect::<Vec<_>>(),
            vec![("stream", NS_STREAM)]
        );
    }

    #[test]
    fn raw_element_accessors() {
        let raw = RawElement::from_xml(
            "<c:message xmlns:c='jabber:client' to='a&amp;b' c:x=\"1\"\n><body>hi</body></c:message>",
            NS_CLIENT,
        )
        .unwrap();
        assert_eq!(raw.name(), "message");
        assert_eq!(raw.ns(), NS_CLIENT);
        assert_eq!(raw.attr("to"), Some("a&b"));
        assert_eq!(raw.attr("c:x"), Some("1"));
        assert_eq!(raw.attr("xmlns:c"), Some("jabber:client"));
        assert_eq!(raw.attr("x"), None);
        assert_eq!(raw.inner(), "<body>hi</body>");
        assert!(RawElement::from_xml("<a/><b/>", NS_CLIENT).is_err());
        assert!(RawElement::from_xml("<a>", NS_CLIENT).is_err());
        assert!(RawElement::from_xml("", NS_CLIENT).is_err());
    }

    fn rewrite(
        raw: &RawElement,
        from: Option<&str>,
        to: Option<&str>,
        extra: &[(String, String)],
    ) -> String {
        let mut out = Vec::new();
        raw.write_with_addresses(&mut out, from, to, extra);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn write_with_addresses_replaces_addresses() {
        let raw = RawElement::from_xml(
            "<message xmlns='jabber:client' from='forged@evil' to='romeo@example.net' type=\"chat\" \
             xml:lang='en' id='a&apos;1'><body>Hi &amp; bye</body></message>",
            NS_CLIENT,
        )
        .unwrap();
        let out = rewrite(
            &raw,
            Some("juliet@example.com/balcony"),
            Some("romeo@example.net"),
            &[],
        );
        assert_eq!(
            out,
            "<message from='juliet@example.com/balcony' to='romeo@example.net' type=\"chat\" \
             xml:lang='en' id='a&apos;1'><body>Hi &amp; bye</body></message>"
        );
        let again = RawElement::from_xml(&out, "jabber:server").unwrap();
        assert_eq!(again.ns(), "jabber:server");
        assert_eq!(again.attr("from"), Some("juliet@example.com/balcony"));
        assert_eq!(again.attr("id"), Some("a'1"));
        assert_eq!(again.inner(), raw.inner());
        // Addresses that need escaping; none at all; empty element.
        let raw = RawElement::from_xml("<presence/>", NS_CLIENT).unwrap();
        let out = rewrite(&raw, Some("o'<>&\"@x"), None, &[]);
        assert_eq!(out, "<presence from='o&apos;&lt;&gt;&amp;&quot;@x'/>");
        assert_eq!(
            RawElement::from_xml(&out, NS_CLIENT).unwrap().attr("from"),
            Some("o'<>&\"@x")
        );
        assert_eq!(rewrite(&raw, None, None, &[]), "<presence/>");
    }

    #[test]
    fn write_with_addresses_keeps_the_element_prefix() {
        let raw = RawElement::from_xml(
            "<c:message xmlns:c='jabber:client' to='x@y'><c:body>hi</c:body><c:thread/></c:message>",
            NS_CLIENT,
        )
        .unwrap();
        let out = rewrite(&raw, Some("a@b"), Some("x@y"), &[]);
        assert_eq!(
            out,
            "<c:message from='a@b' to='x@y' xmlns:c='jabber:client'><c:body>hi</c:body><c:thread/></c:message>"
        );
        let again = RawElement::from_xml(&out, NS_CLIENT).unwrap();
        assert_eq!((again.name(), again.ns()), ("message", NS_CLIENT));
        // Found by fuzzing: a default namespace declared on a prefixed stanza is meant for
        // its children; written unprefixed it would capture the stanza itself.
        let raw = RawElement::from_xml(
            "<c:message xmlns:c='jabber:client' xmlns='urn:example' to='x@y'><body/></c:message>",
            NS_CLIENT,
        )
        .unwrap();
        let out = rewrite(&raw, Some("a@b"), Some("x@y"), &[]);
        let again = RawElement::from_xml(&out, NS_CLIENT).unwrap();
        assert_eq!((again.name(), again.ns()), ("message", NS_CLIENT), "{out}");
    }

    #[test]
    fn write_with_addresses_declares_stream_level_prefixes() {
        let input = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}' xmlns:e='urn:e' \
             xmlns:u='urn:unused'><message><e:x e:y='1'/></message><message xmlns:e='urn:own'><e:z/></message>"
        );
        let (frames, err) = run(input.as_bytes());
        assert_eq!(err, None);
        let Frame::Header(h) = &frames[0] else {
            panic!()
        };
        let els = elements(&frames);
        let out = rewrite(els[0], None, Some("t@x"), &h.extra_prefixes);
        assert_eq!(
            out,
            "<message to='t@x' xmlns:e='urn:e'><e:x e:y='1'/></message>"
        );
        let again = RawElement::from_xml(&out, NS_CLIENT).unwrap();
        assert_eq!(again.inner(), "<e:x e:y='1'/>");
        // Declared on the element itself: not declared twice.
        let out = rewrite(els[1], None, None, &h.extra_prefixes);
        assert_eq!(out, "<message xmlns:e='urn:own'><e:z/></message>");
        assert!(RawElement::from_xml(&out, NS_CLIENT).is_ok());
    }

    #[test]
    fn invalid_utf8_after_complete_stanzas_is_reported_after_them() {
        let mut input = format!("{HEADER}<presence/><message/>").into_bytes();
        input.extend_from_slice(b"\xff<iq/>");
        let expected = run(&input);
        assert_eq!(expected.0.len(), 3);
        assert_eq!(expected.1, Some(INVALID_UTF8));
        assert_eq!(run_bytewise(&input), expected);
    }

    /// Tiny deterministic generator, so the randomized test needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Mutated transcripts (valid or not) split at random points give the same frames
    /// and the same error as the whole input at once, and never panic.
    #[test]
    fn random_mutations_and_splits_agree() {
        let base = format!(
            "{HEADER}<message to='a@b' xml:lang='en'><body>x &amp; y &#x263A; \u{fc}</body>\
             <p:x xmlns:p='urn:p' p:a='1'><![CDATA[c]]></p:x></message> <iq id='1'/></stream:stream>"
        );
        let alphabet: &[&[u8]] = &[
            b"<", b">", b"/", b"'", b"\"", b"&", b";", b"!", b"?", b"-", b"[", b"]", b":", b"=",
            b" ", b"a", b"\xc3", b"\xa9", b"\xff", b"\x01", b"xmlns", b"&#x0;", b"<!--", b"]]>",
            b"</", b"<a>", b"p:",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut outcomes = std::collections::HashMap::new();
        for _ in 0..3000 {
            let mut input = base.clone().into_bytes();
            for _ in 0..1 + rng.below(3) {
                let at = HEADER.len() + rng.below(input.len() - HEADER.len());
                let piece = alphabet[rng.below(alphabet.len())];
                match rng.below(3) {
                    0 => drop(input.splice(at..at, piece.iter().copied())),
                    1 => drop(input.remove(at)),
                    _ => input[at] = piece[0],
                }
            }
            let expected = run(&input);
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(16)));
                chunks.push(chunk);
                rest = tail;
            }
            let got = run_chunks(LIMITS, chunks);
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(&input));
            *outcomes.entry(format!("{:?}", expected.1)).or_insert(0) += 1;
        }
        // The mutations must reach many different outcomes, or the test proves little.
        assert!(outcomes.len() >= 8, "{outcomes:?}");
        assert!(outcomes.contains_key("None"), "{outcomes:?}");
    }

    /// Like [`run_chunks`], but the way the core drives a framer: its buffers borrowed
    /// from `spare` for each read and given back after it, each element recycled once
    /// looked at (here: cloned, to compare).
    fn run_chunks_borrowing<'a>(
        spare: &mut FrameBuffers,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<Frame> {
        let mut framer = Framer::new(LIMITS);
        let mut frames = Vec::new();
        for chunk in chunks {
            framer.borrow_buffers(spare);
            framer.feed(chunk).unwrap();
            loop {
                framer.borrow_buffers(spare);
                match framer.next_frame().unwrap() {
                    Some(Frame::Element(raw)) => {
                        frames.push(Frame::Element(raw.clone()));
                        spare.recycle(raw);
                    }
                    Some(frame) => frames.push(frame),
                    None => break,
                }
            }
            framer.return_buffers(spare);
        }
        frames
    }

    #[test]
    fn frames_are_the_same_in_borrowed_and_recycled_buffers() {
        let input = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}' \
             xmlns:db='jabber:server:dialback'>\
             <message to='a&amp;b@x' id='1'><body>{}</body></message>\
             <db:result to='a' from='b'>key</db:result><iq type='get' id='&#x32;'/>\
             <presence xml:lang='en'><status>x</status></presence>",
            "long ".repeat(200)
        );
        let (expected, error) = run(input.as_bytes());
        assert_eq!(error, None);
        assert_eq!(elements(&expected).len(), 4);
        let mut spare = FrameBuffers::default();
        for size in [1, 7, 64, input.len()] {
            let frames = run_chunks_borrowing(&mut spare, input.as_bytes().chunks(size));
            assert_eq!(frames, expected, "chunks of {size}");
        }
        assert!(spare.input.capacity() > 0 && spare.element.heap_bytes() > 0);
        let els = elements(&expected);
        assert_eq!(els[0].attr("to"), Some("a&b@x"));
        assert_eq!(els[2].attr("id"), Some("2"));
    }

    #[test]
    fn an_element_in_progress_keeps_its_buffers() {
        let mut spare = FrameBuffers::default();
        let mut framer = Framer::new(LIMITS);
        framer.borrow_buffers(&mut spare);
        framer.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
        framer.feed(b"<message to='x&amp;y'><bo").unwrap();
        assert_eq!(framer.next_frame(), Ok(None));
        framer.return_buffers(&mut spare);
        assert_eq!(spare.input.capacity(), 0, "the partial stanza stays");
        assert_eq!(spare.element.heap_bytes(), 0, "and what its start tag said");
        // Another connection uses (and grows) other buffers meanwhile.
        let mut other = Framer::new(LIMITS);
        other.borrow_buffers(&mut spare);
        other.feed(HEADER.as_bytes()).unwrap();
        other.feed(b"<presence/>").unwrap();
        while let Ok(Some(f)) = other.next_frame() {
            if let Frame::Element(raw) = f {
                spare.recycle(raw);
            }
        }
        other.return_buffers(&mut spare);
        assert!(spare.element.heap_bytes() > 0);
        framer.borrow_buffers(&mut spare);
        framer.feed(b"dy>hi</body></message>").unwrap();
        let Ok(Some(Frame::Element(raw))) = framer.next_frame() else {
            panic!("the message completes");
        };
        assert_eq!(
            raw.as_str(),
            "<message to='x&amp;y'><body>hi</body></message>"
        );
        assert_eq!(raw.attr("to"), Some("x&y"));
        assert_eq!(raw.inner(), "<body>hi</body>");
        assert_eq!(raw.ns(), NS_CLIENT);
    }

    #[test]
    fn a_large_element_is_not_kept_for_reuse() {
        let mut spare = FrameBuffers::default();
        let big = format!("<message><body>{}</body></message>", "z".repeat(40 * 1024));
        let input = format!("{HEADER}{big}");
        let frames = run_chunks_borrowing(&mut spare, [input.as_bytes()]);
        assert_eq!(elements(&frames).len(), 1);
        assert!(spare.element.heap_bytes() <= SPARE_ELEMENT_BYTES);
        assert!(spare.input.capacity() <= IDLE_CAPACITY);
    }

    #[test]
    fn sizes() {
        assert!(size_of::<RawElement>() <= 80, "{}", size_of::<RawElement>());
        assert!(size_of::<Span>() == 8);
        // Per connection, before any buffer: keep the framer itself small.
        assert!(size_of::<Framer>() <= 384, "{}", size_of::<Framer>());
    }
}
