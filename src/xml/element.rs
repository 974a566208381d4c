//! A small owned element tree for stanzas the server reads or builds.
//!
//! Names are stored resolved (local name + namespace URI), never with the prefix they
//! arrived with; serialisation declares a default namespace wherever it changes, so the
//! output never depends on prefixes.

use std::borrow::Cow;

use xmlparser::{ElementEnd, Token, Tokenizer};

use super::NS_XML;
use super::escape;
use super::framer::{FrameError, RawElement};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An element with its namespace resolved. Attributes hold unescaped values under their
/// qualified names (`xml:lang`); namespace declarations are not attributes, except that an
/// element with a prefixed attribute (`p:a`, other than `xml:`) keeps the `xmlns:p`
/// declaration it needs, so that writing it out again stays namespace-well-formed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.to_string(),
            ns: ns.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }
    /// Parses a framed element. `default_ns` is the namespace in force at the top (the
    /// stream's default). Cannot fail on a RawElement the framer produced, except on limits.
    pub fn parse(raw: &RawElement, default_ns: &str) -> Result<Element, FrameError> {
        let mut parser = TreeParser::new(raw, default_ns);
        let text = raw.as_str();
        for token in Tokenizer::from_fragment(text, 0..text.len()) {
            let token = token.map_err(|_| MALFORMED)?;
            parser.token(token)?;
        }
        parser.finish()
    }
    /// Builder: sets an attribute.
    pub fn with_attr(mut self, name: &str, value: &str) -> Element {
        self.set_attr(name, value);
        self
    }
    /// Builder: appends a child element.
    pub fn with_child(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }
    /// Builder: appends text.
    pub fn with_text(mut self, text: &str) -> Element {
        self.children.push(Node::Text(text.to_string()));
        self
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn set_attr(&mut self, name: &str, value: &str) {
        match self.attrs.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.attrs.push((name.to_string(), value.to_string())),
        }
    }
    pub fn remove_attr(&mut self, name: &str) {
        self.attrs.retain(|(n, _)| n != name);
    }
    /// Child elements, skipping text.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
    /// First child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name && e.ns == ns)
    }
    /// Concatenated text children (not recursive).
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }
    /// Serialises the element. A namespace declaration is written only where the element's
    /// namespace differs from `parent_ns` (pass the stream's default at top level).
    /// An attribute named `xmlns` is skipped: the element's namespace comes from `ns`.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            out.extend_from_slice(b" xmlns='");
            escape::escape_attr(out, &self.ns);
            out.push(b'\'');
        }
        for (name, value) in &self.attrs {
            if name == "xmlns" {
                continue;
            }
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"='");
            escape::escape_attr(out, value);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape::escape_text(out, t),
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }
    /// Serialised text, for tests and logs.
    pub fn to_xml(&self, parent_ns: &str) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v, parent_ns);
        String::from_utf8_lossy(&v).into_owned()
    }
}

const MALFORMED: FrameError = FrameError::NotWellFormed("malformed element");

/// Builds the tree from `xmlparser` tokens with an explicit stack (no recursion on input).
struct TreeParser<'a> {
    /// Prefix bindings in scope, innermost last; `""` is the default namespace.
    scopes: Vec<(&'a str, Cow<'a, str>)>,
    /// Open elements with their qualified name and the scope length to restore.
    stack: Vec<(Element, &'a str, &'a str, usize)>,
    start: Option<(&'a str, &'a str)>,
    attrs: Vec<(&'a str, &'a str, &'a str)>,
    root: Option<Element>,
}

impl<'a> TreeParser<'a> {
    fn new(raw: &'a RawElement, default_ns: &'a str) -> TreeParser<'a> {
        let mut scopes = vec![("", Cow::Borrowed(default_ns))];
        scopes.extend(raw.inherited_prefixes().map(|(p, u)| (p, Cow::Borrowed(u))));
        TreeParser {
            scopes,
            stack: Vec::new(),
            start: None,
            attrs: Vec::new(),
            root: None,
        }
    }

    fn token(&mut self, token: Token<'a>) -> Result<(), FrameError> {
        match token {
            Token::ElementStart { prefix, local, .. } => {
                self.start = Some((prefix.as_str(), local.as_str()));
                self.attrs.clear();
            }
            Token::Attribute {
                prefix,
                local,
                value,
                ..
            } => self
                .attrs
                .push((prefix.as_str(), local.as_str(), value.as_str())),
            Token::ElementEnd {
                end: ElementEnd::Open,
                ..
            } => self.open(false)?,
            Token::ElementEnd {
                end: ElementEnd::Empty,
                ..
            } => self.open(true)?,
            Token::ElementEnd {
                end: ElementEnd::Close(prefix, local),
                ..
            } => self.close(prefix.as_str(), local.as_str())?,
            Token::Text { text } => {
                let value =
                    escape::unescape_text(text.as_str()).map_err(FrameError::NotWellFormed)?;
                self.push_text(&value)?;
            }
            // CDATA is only a way of writing text (RFC 6120 §11.1 does not restrict it).
            Token::Cdata { text, .. } => {
                self.push_text(&escape::normalize_line_ends(text.as_str()))?
            }
            _ => return Err(FrameError::RestrictedXml),
        }
        Ok(())
    }

    fn open(&mut self, empty: bool) -> Result<(), FrameError> {
        let (prefix, local) = self.start.take().ok_or(MALFORMED)?;
        if self.stack.len() >= crate::limits::CAP_XML_DEPTH {
            return Err(FrameError::TooDeep);
        }
        let mark = self.scopes.len();
        for &(p, l, v) in &self.attrs {
            let declared = match (p, l) {
                ("", "xmlns") => "",
                ("xmlns", "xml") => continue,
                ("xmlns", declared) => declared,
                _ => continue,
            };
            let uri = escape::unescape_attr(v).map_err(FrameError::NotWellFormed)?;
            self.scopes.push((declared, uri));
        }
        let mut element = Element {
            name: local.to_string(),
            ns: self.resolve(prefix)?.to_string(),
            attrs: Vec::with_capacity(self.attrs.len()),
            children: Vec::new(),
        };
        for &(p, l, v) in &self.attrs {
            if p == "xmlns" || (p.is_empty() && l == "xmlns") {
                continue;
            }
            if !p.is_empty() {
                self.resolve(p)?;
            }
            let name = if p.is_empty() {
                l.to_string()
            } else {
                format!("{p}:{l}")
            };
            let value = escape::unescape_attr(v).map_err(FrameError::NotWellFormed)?;
            element.attrs.push((name, value.into_owned()));
        }
        self.declare_attribute_prefixes(&mut element)?;
        if empty {
            self.scopes.truncate(mark);
            self.attach(element)
        } else {
            self.stack.push((element, prefix, local, mark));
            Ok(())
        }
    }

    /// Names are written unprefixed, but a prefixed attribute cannot be: keep its
    /// prefix's declaration on the element itself, wherever it was declared.
    fn declare_attribute_prefixes(&self, element: &mut Element) -> Result<(), FrameError> {
        let mut needed = Vec::new();
        for (name, _) in &element.attrs {
            if let Some((prefix, _)) = name.split_once(':')
                && prefix != "xml"
                && !needed.iter().any(|(p, _): &(String, String)| p == prefix)
            {
                needed.push((prefix.to_string(), self.resolve(prefix)?.to_string()));
            }
        }
        for (prefix, uri) in needed {
            element.attrs.push((format!("xmlns:{prefix}"), uri));
        }
        Ok(())
    }

    fn close(&mut self, prefix: &str, local: &str) -> Result<(), FrameError> {
        let (element, open_prefix, open_local, mark) = self.stack.pop().ok_or(MALFORMED)?;
        if open_prefix != prefix || open_local != local {
            return Err(MALFORMED);
        }
        self.scopes.truncate(mark);
        self.attach(element)
    }

    fn attach(&mut self, element: Element) -> Result<(), FrameError> {
        match self.stack.last_mut() {
            Some((parent, ..)) => parent.children.push(Node::Element(element)),
            None if self.root.is_none() => self.root = Some(element),
            None => return Err(MALFORMED),
        }
        Ok(())
    }

    fn push_text(&mut self, text: &str) -> Result<(), FrameError> {
        let Some((parent, ..)) = self.stack.last_mut() else {
            return Err(MALFORMED);
        };
        if let Some(Node::Text(previous)) = parent.children.last_mut() {
            previous.push_str(text);
        } else if !text.is_empty() {
            parent.children.push(Node::Text(text.to_string()));
        }
        Ok(())
    }

    fn resolve(&self, prefix: &str) -> Result<&str, FrameError> {
        if prefix == "xml" {
            return Ok(NS_XML);
        }
        match self.scopes.iter().rev().find(|(p, _)| *p == prefix) {
            Some((_, uri)) => Ok(uri),
            None => Err(FrameError::NotWellFormed("unbound namespace prefix")),
        }
    }

    fn finish(self) -> Result<Element, FrameError> {
        if !self.stack.is_empty() || self.start.is_some() {
            return Err(MALFORMED);
        }
        self.root.ok_or(MALFORMED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{NS_CLIENT, NS_STREAM};

    fn parse(xml: &str) -> Element {
        Element::parse(&RawElement::from_xml(xml, NS_CLIENT).unwrap(), NS_CLIENT).unwrap()
    }

    /// Serialises, frames the output again and parses it: must give the same tree.
    fn assert_round_trip(element: &Element) {
        let xml = element.to_xml(NS_CLIENT);
        let again = parse(&xml);
        assert_eq!(&again, element, "{xml}");
    }

    #[test]
    fn parses_a_stanza() {
        let e = parse(
            "<iq type='result' id='r&amp;1' xml:lang='en'><query xmlns='jabber:iq:roster' ver='v1'>\
             <item jid='romeo@example.net' name='R&#xE9;m&lt;o'><group>Friends</group></item>\
             </query></iq>",
        );
        assert_eq!((e.name.as_str(), e.ns.as_str()), ("iq", NS_CLIENT));
        assert_eq!(e.attr("id"), Some("r&1"));
        assert_eq!(e.attr("xml:lang"), Some("en"));
        let query = e.child("query", "jabber:iq:roster").unwrap();
        assert!(query.attrs.iter().all(|(n, _)| n != "xmlns"));
        assert_eq!(query.attr("ver"), Some("v1"));
        let item = query.child("item", "jabber:iq:roster").unwrap();
        assert_eq!(item.attr("name"), Some("Rém<o"));
        assert_eq!(
            item.child("group", "jabber:iq:roster").unwrap().text(),
            "Friends"
        );
        assert!(e.child("query", NS_CLIENT).is_none());
    }

    #[test]
    fn resolves_prefixes_and_merges_text() {
        let e = parse(
            "<c:message xmlns:c='jabber:client' xmlns:h='http://jabber.org/protocol/xhtml-im'>\
             <c:body>a &lt; b<![CDATA[ & <c> ]]>!\r\n</c:body><h:html><p xmlns='urn:p'/></h:html></c:message>",
        );
        assert_eq!((e.name.as_str(), e.ns.as_str()), ("message", NS_CLIENT));
        assert!(e.attrs.is_empty(), "{:?}", e.attrs);
        assert_eq!(
            e.child("body", NS_CLIENT).unwrap().text(),
            "a < b & <c> !\n"
        );
        assert_eq!(e.child("body", NS_CLIENT).unwrap().children.len(), 1);
        let html = e
            .child("html", "http://jabber.org/protocol/xhtml-im")
            .unwrap();
        assert_eq!(html.child("p", "urn:p").unwrap().name, "p");
    }

    #[test]
    fn uses_stream_level_prefixes() {
        let input = format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='{NS_STREAM}'>\
             <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        );
        let mut framer = crate::xml::Framer::new(crate::xml::FrameLimits {
            max_stanza_bytes: 4096,
            max_depth: 8,
            max_attributes: 8,
        });
        framer.feed(input.as_bytes()).unwrap();
        framer.next_frame().unwrap();
        let Some(crate::xml::Frame::Element(raw)) = framer.next_frame().unwrap() else {
            panic!()
        };
        let e = Element::parse(&raw, NS_CLIENT).unwrap();
        assert_eq!((e.name.as_str(), e.ns.as_str()), ("error", NS_STREAM));
        assert!(
            e.child("conflict", "urn:ietf:params:xml:ns:xmpp-streams")
                .is_some()
        );
    }

    #[test]
    fn writes_namespaces_only_where_they_change() {
        let iq = Element::new("iq", NS_CLIENT)
            .with_attr("type", "result")
            .with_attr("id", "a'b")
            .with_child(
                Element::new("query", "jabber:iq:version")
                    .with_child(Element::new("name", "jabber:iq:version").with_text("xmppd <&>"))
                    .with_child(Element::new("os", "")),
            );
        assert_eq!(
            iq.to_xml(NS_CLIENT),
            "<iq type='result' id='a&apos;b'><query xmlns='jabber:iq:version'>\
             <name>xmppd &lt;&amp;&gt;</name><os xmlns=''/></query></iq>"
        );
        assert_eq!(
            Element::new("iq", NS_CLIENT).to_xml("jabber:server"),
            "<iq xmlns='jabber:client'/>"
        );
        assert_round_trip(&iq);
    }

    #[test]
    fn round_trips_awkward_values() {
        let e = Element::new("message", NS_CLIENT)
            .with_attr("to", "tab\there\nnewline\r\ncrlf 'q' \"dq\"")
            .with_text("line\r\nbreaks\rand ]]> & 😀")
            .with_child(Element::new("x", "urn:x").with_attr("xml:lang", "de"));
        assert_round_trip(&e);
        let parsed =
            parse("<m xmlns:p='urn:p' p:a='1'><n p:b='2'/><o xmlns:p='urn:q' p:c='3'/></m>");
        assert_eq!(parsed.attr("xmlns:p"), Some("urn:p"));
        assert_eq!(
            parsed.elements().nth(1).unwrap().attr("xmlns:p"),
            Some("urn:q")
        );
        let xml = parsed.to_xml(NS_CLIENT);
        assert!(RawElement::from_xml(&xml, NS_CLIENT).is_ok(), "{xml}");
        assert_round_trip(&parsed);
        assert_round_trip(&parse("<a><b xmlns=''><c/></b></a>"));
    }

    #[test]
    fn attribute_helpers() {
        let mut e = Element::new("presence", NS_CLIENT).with_attr("type", "unavailable");
        e.set_attr("type", "probe");
        e.set_attr("to", "x@y");
        assert_eq!(
            e.attrs,
            vec![("type".into(), "probe".into()), ("to".into(), "x@y".into())]
        );
        e.remove_attr("type");
        assert_eq!(e.attr("type"), None);
        // A stray xmlns attribute from a builder does not produce a duplicate declaration.
        let odd = Element::new("a", "urn:a").with_attr("xmlns", "urn:b");
        assert_eq!(odd.to_xml(NS_CLIENT), "<a xmlns='urn:a'/>");
    }

    #[test]
    fn text_is_only_direct_text() {
        let e = parse("<m>a<b>inner</b>c</m>");
        assert_eq!(e.text(), "ac");
        assert_eq!(e.elements().count(), 1);
    }

    #[test]
    fn size() {
        assert!(size_of::<Element>() <= 96, "{}", size_of::<Element>());
        assert!(size_of::<Node>() <= 96, "{}", size_of::<Node>());
    }
}
