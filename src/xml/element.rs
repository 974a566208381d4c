//! A small owned element tree for stanzas the server reads or builds. STUB: interface only.

use super::framer::{FrameError, RawElement};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An element with its namespace resolved. Attributes hold unescaped values under their
/// qualified names (`xml:lang`); default-namespace declarations are not attributes.
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
        let _ = default_ns;
        Ok(Element::new(raw.name(), raw.ns()))
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
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        let _ = parent_ns;
        out.extend_from_slice(b"<");
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b"/>");
    }
    /// Serialised text, for tests and logs.
    pub fn to_xml(&self, parent_ns: &str) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v, parent_ns);
        String::from_utf8_lossy(&v).into_owned()
    }
}
