//! The direct children of a framed element, read from its bytes without building a tree
//! or allocating: what the router needs to know about a stanza on its hot path (a
//! message's body and hints, a presence's priority and capabilities).
//!
//! A child's namespace is resolved from its own declaration or the stanza's; a prefix
//! bound only on the stream header, or a declaration written with references, is not
//! looked up: such a child comes with no namespace, and callers that need certainty
//! fall back to [`super::Element::parse`].

use std::borrow::Cow;

use xmlparser::{ElementEnd, Token, Tokenizer};

use super::{NS_CLIENT, RawElement, escape};

/// One direct child of a [`RawElement`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawChild<'a> {
    /// Local name (empty for an unreadable child).
    pub name: &'a str,
    /// Namespace, or `None` when the scan cannot tell (see the module comment); after
    /// an unreadable child the scan stops.
    pub ns: Option<&'a str>,
    /// The start tag as received.
    tag: &'a str,
    /// What lies between the start and end tags, as received (empty for `<x/>`).
    content: &'a str,
}

impl<'a> RawChild<'a> {
    const UNREADABLE: RawChild<'static> = RawChild {
        name: "",
        ns: None,
        tag: "",
        content: "",
    };

    /// Value (unescaped) of the attribute with this qualified name.
    pub fn attr(&self, qname: &str) -> Option<Cow<'a, str>> {
        let (want_prefix, want_local) = qname.split_once(':').unwrap_or(("", qname));
        Tokenizer::from_fragment(self.tag, 0..self.tag.len())
            .map_while(Result::ok)
            .find_map(|token| match token {
                Token::Attribute {
                    prefix,
                    local,
                    value,
                    ..
                } if prefix.as_str() == want_prefix && local.as_str() == want_local => {
                    escape::unescape_attr(value.as_str()).ok()
                }
                _ => None,
            })
    }

    /// The text content (what [`super::Element::text`] gives) when it is written as
    /// plain text, with no element, CDATA section, reference or carriage return in it;
    /// `None` otherwise.
    pub fn plain_text(&self) -> Option<&'a str> {
        let plain = !self.content.contains(['<', '&', '\r']);
        plain.then_some(self.content)
    }
}

/// Iterator over the direct children of a [`RawElement`], in document order.
pub struct RawChildren<'a> {
    raw: &'a RawElement,
    inner: &'a str,
    tokens: Tokenizer<'a>,
    done: bool,
}

impl RawElement {
    /// The direct children, read from the bytes (see the module comment).
    pub fn children(&self) -> RawChildren<'_> {
        let inner = self.inner();
        RawChildren {
            raw: self,
            inner,
            tokens: Tokenizer::from_fragment(inner, 0..inner.len()),
            done: inner.is_empty(),
        }
    }
}

/// A direct child whose start tag is being read.
struct Opening<'a> {
    prefix: &'a str,
    local: &'a str,
    start: usize,
    /// The namespace it declares for its own prefix; `Err` when written with references.
    own_ns: Option<Result<&'a str, ()>>,
}

impl<'a> RawChildren<'a> {
    /// The namespace of a child: its own declaration, or the stanza's declarations, or
    /// `jabber:client` for an unprefixed name.
    fn namespace(&self, opening: &Opening<'a>) -> Option<&'a str> {
        match opening.own_ns {
            Some(own) => own.ok(),
            None if opening.prefix.is_empty() => Some(self.raw.attr("xmlns").unwrap_or(NS_CLIENT)),
            None => self.raw.attrs().find_map(|(name, value)| {
                (name.strip_prefix("xmlns:") == Some(opening.prefix)).then_some(value)
            }),
        }
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        self.inner.get(from..to).unwrap_or_default()
    }
}

impl<'a> Iterator for RawChildren<'a> {
    type Item = RawChild<'a>;

    fn next(&mut self) -> Option<RawChild<'a>> {
        if self.done {
            return None;
        }
        let mut depth = 0usize;
        let mut opening: Option<Opening<'a>> = None;
        // The child whose content is being skipped: (name, namespace, tag, content start).
        let mut open: Option<(&'a str, Option<&'a str>, &'a str, usize)> = None;
        loop {
            let token = match self.tokens.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(token)) => token,
                Some(Err(_)) => {
                    // The framer validated these bytes; a tokenizer disagreement is not
                    // trusted.
                    self.done = true;
                    return Some(RawChild::UNREADABLE);
                }
            };
            match token {
                Token::ElementStart {
                    prefix,
                    local,
                    span,
                } => {
                    if depth == 0 {
                        opening = Some(Opening {
                            prefix: prefix.as_str(),
                            local: local.as_str(),
                            start: span.start(),
                            own_ns: None,
                        });
                    }
                    depth += 1;
                }
                Token::Attribute {
                    prefix,
                    local,
                    value,
                    ..
                } => {
                    if let Some(o) = opening.as_mut() {
                        let declares =
                            (prefix.is_empty() && local.as_str() == "xmlns" && o.prefix.is_empty())
                                || (prefix.as_str() == "xmlns" && local.as_str() == o.prefix);
                        if declares {
                            let value = value.as_str();
                            o.own_ns = Some(if value.contains('&') {
                                Err(())
                            } else {
                                Ok(value)
                            });
                        }
                    }
                }
                Token::ElementEnd { end, span } => {
                    if let Some(o) = opening.take() {
                        let ns = self.namespace(&o);
                        let tag = self.slice(o.start, span.end());
                        if end == ElementEnd::Empty {
                            return Some(RawChild {
                                name: o.local,
                                ns,
                                tag,
                                content: "",
                            });
                        }
                        open = Some((o.local, ns, tag, span.end()));
                        continue;
                    }
                    match end {
                        ElementEnd::Open => {}
                        ElementEnd::Empty | ElementEnd::Close(..) => {
                            depth = depth.saturating_sub(1);
                            if depth == 0
                                && let Some((name, ns, tag, content_start)) = open.take()
                            {
                                return Some(RawChild {
                                    name,
                                    ns,
                                    tag,
                                    content: self.slice(content_start, span.start()),
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(xml: &str) -> RawElement {
        RawElement::from_xml(xml, NS_CLIENT).expect("well-formed")
    }

    #[test]
    fn direct_children_with_namespaces_attributes_and_text() {
        let r = raw("<presence xmlns:v='vcard-temp:x:update'><show>away</show>\
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n&amp;m' ver='v'/>\
             <x xmlns='urn:example'><priority>9</priority></x><v:x/>\
             <status xml:lang='en'> a <![CDATA[b]]></status><p:q xmlns:p='urn:p'/></presence>");
        let kids: Vec<RawChild> = r.children().collect();
        let names: Vec<(&str, Option<&str>)> = kids.iter().map(|c| (c.name, c.ns)).collect();
        assert_eq!(
            names,
            [
                ("show", Some(NS_CLIENT)),
                ("c", Some("http://jabber.org/protocol/caps")),
                ("x", Some("urn:example")),
                ("x", Some("vcard-temp:x:update")),
                ("status", Some(NS_CLIENT)),
                ("q", Some("urn:p")),
            ]
        );
        assert_eq!(kids[0].plain_text(), Some("away"));
        assert_eq!(kids[1].attr("node").as_deref(), Some("n&m"));
        assert_eq!(kids[1].attr("hash").as_deref(), Some("sha-1"));
        assert_eq!(kids[1].attr("missing"), None);
        assert_eq!(kids[1].plain_text(), Some(""));
        assert_eq!(kids[2].plain_text(), None, "an element inside");
        assert_eq!(kids[4].attr("xml:lang").as_deref(), Some("en"));
        assert_eq!(kids[4].plain_text(), None, "a CDATA section inside");
    }

    #[test]
    fn what_cannot_be_resolved_here_has_no_namespace() {
        let mut framer = crate::xml::Framer::new(crate::xml::FrameLimits {
            max_stanza_bytes: 4096,
            max_depth: 8,
            max_attributes: 8,
        });
        framer
            .feed(
                b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
                  xmlns:p='urn:p'><message><body xmlns='urn:&#x61;'/><p:x/></message>",
            )
            .expect("well-formed");
        let _header = framer.next_frame();
        let Ok(Some(crate::xml::Frame::Element(r))) = framer.next_frame() else {
            panic!("one element");
        };
        let kids: Vec<Option<&str>> = r.children().map(|c| c.ns).collect();
        assert_eq!(kids, [None, None]);
        assert_eq!(raw("<message/>").children().count(), 0);
        assert_eq!(raw("<message>text only</message>").children().count(), 0);
    }

    #[test]
    fn references_in_text_are_not_plain() {
        let r = raw("<presence><priority>&#x35;</priority></presence>");
        assert_eq!(r.children().next().and_then(|c| c.plain_text()), None);
    }
}
