//! Just enough XML for a load generator: splits the server's stream into top-level elements
//! (RFC 6120 §4.2: a stream is one root element whose children are the stanzas) and reads
//! attributes and simple child text out of one element. It trusts the server to send
//! well-formed XML; anything it cannot split is an error, never a panic.

use std::ops::Range;

/// One unit of the server's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The `<stream:stream ...>` start tag (byte range of the tag).
    StreamOpen(Range<usize>),
    /// A complete child of the stream root: a stanza or a negotiation element.
    Element(Range<usize>),
    /// `</stream:stream>`.
    StreamClose,
}

/// Accumulates bytes and hands out complete top-level elements as ranges into its buffer.
/// Ranges stay valid until the next call to [`Framer::buffer_for_read`] or [`Framer::reset`].
/// Reading is cancellation-safe: nothing changes until [`Framer::filled`] is called.
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes `start..end` of `buf` are received and not yet handed out.
    start: usize,
    end: usize,
    in_stream: bool,
}

/// The framer gave up: the bytes are not XML it can split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError;

const READ_CHUNK: usize = 4096;
/// A server that sends one element larger than this is not one we benchmark.
const MAX_ELEMENT: usize = 1 << 20;

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    pub fn new() -> Framer {
        Framer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            in_stream: false,
        }
    }

    /// Forgets every buffered byte and expects a new stream header: used after STARTTLS
    /// `<proceed/>` and SASL `<success/>` (RFC 6120 §5.4.3.3, §6.4.6).
    pub fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.in_stream = false;
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or(&[])
    }

    /// Space to read into (compacting consumed bytes first); call [`Framer::filled`] after.
    pub fn buffer_for_read(&mut self) -> Result<&mut [u8], FrameError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end > MAX_ELEMENT {
            return Err(FrameError);
        }
        if self.buf.len() < self.end + READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Records that `n` bytes were read into the space from [`Framer::buffer_for_read`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Result<Option<Event>, FrameError> {
        loop {
            let rest = &self.buf[self.start..self.end];
            let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
            self.start += skip;
            let rest = &self.buf[self.start..self.end];
            if rest.is_empty() {
                return Ok(None);
            }
            if rest[0] != b'<' {
                return Err(FrameError);
            }
            if rest.starts_with(b"<?") {
                match find(rest, b"?>") {
                    Some(end) => {
                        self.start += end + 2;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            if !self.in_stream {
                let Some(end) = tag_end(rest)? else {
                    return Ok(None);
                };
                let range = self.start..self.start + end + 1;
                self.start = range.end;
                self.in_stream = true;
                return Ok(Some(Event::StreamOpen(range)));
            }
            if rest.starts_with(b"</") {
                let Some(end) = tag_end(rest)? else {
                    return Ok(None);
                };
                self.start += end + 1;
                self.in_stream = false;
                return Ok(Some(Event::StreamClose));
            }
            let Some(len) = element_len(rest)? else {
                return Ok(None);
            };
            let range = self.start..self.start + len;
            self.start = range.end;
            return Ok(Some(Event::Element(range)));
        }
    }
}

/// Index of the `>` closing the tag that starts at `s[0]`, skipping quoted attribute values
/// (a `>` is allowed inside them).
fn tag_end(s: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut quote = 0u8;
    for (i, &b) in s.iter().enumerate().skip(1) {
        if quote != 0 {
            if b == quote {
                quote = 0;
            }
        } else if b == b'"' || b == b'\'' {
            quote = b;
        } else if b == b'>' {
            return Ok(Some(i));
        } else if b == b'<' {
            return Err(FrameError);
        }
    }
    Ok(None)
}

/// Length of the complete element starting at `s[0]`, or None if more bytes are needed.
fn element_len(s: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < s.len() {
        let Some(lt) = s[i..].iter().position(|&b| b == b'<') else {
            return Ok(None);
        };
        i += lt;
        let rest = &s[i..];
        if rest.starts_with(b"<!--") {
            match find(rest, b"-->") {
                Some(e) => i += e + 3,
                None => return Ok(None),
            }
            continue;
        }
        if rest.starts_with(b"<![CDATA[") {
            match find(rest, b"]]>") {
                Some(e) => i += e + 3,
                None => return Ok(None),
            }
            continue;
        }
        let Some(end) = tag_end(rest)? else {
            return Ok(None);
        };
        if rest.get(1) == Some(&b'/') {
            depth = depth.checked_sub(1).ok_or(FrameError)?;
        } else if rest.get(end.wrapping_sub(1)) != Some(&b'/') {
            depth += 1;
        }
        i += end + 1;
        if depth == 0 {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        let off = hay[i..=last_start].iter().position(|&b| b == first)?;
        i += off;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The local name of an element (`stream:features` → `features`).
pub fn local_name(el: &[u8]) -> &[u8] {
    let name_end = el
        .iter()
        .skip(1)
        .position(|&b| b.is_ascii_whitespace() || b == b'/' || b == b'>')
        .map_or(el.len(), |p| p + 1);
    let name = el.get(1..name_end).unwrap_or(&[]);
    match name.iter().position(|&b| b == b':') {
        Some(colon) => &name[colon + 1..],
        None => name,
    }
}

/// The raw (still escaped) value of attribute `name` on the element's start tag.
pub fn attr<'a>(el: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let end = tag_end(el).ok()??;
    let tag = &el[..end];
    let mut i = tag.iter().position(|b| b.is_ascii_whitespace())?;
    loop {
        while tag.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        let name_start = i;
        while tag
            .get(i)
            .is_some_and(|&b| b != b'=' && !b.is_ascii_whitespace() && b != b'/')
        {
            i += 1;
        }
        let attr_name = tag.get(name_start..i)?;
        while tag
            .get(i)
            .is_some_and(|&b| b == b'=' || b.is_ascii_whitespace())
        {
            i += 1;
        }
        let quote = *tag.get(i)?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let value_start = i + 1;
        let value_len = tag.get(value_start..)?.iter().position(|&b| b == quote)?;
        let value = &tag[value_start..value_start + value_len];
        if attr_name == name {
            return Some(value);
        }
        i = value_start + value_len + 1;
    }
}

/// The text of the first `<name>...</name>` (or `<prefix:name ...>`) inside the element, as
/// raw bytes; empty for `<name/>`.
pub fn child_text<'a>(el: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut from = 1;
    loop {
        let lt = from + el.get(from..)?.iter().position(|&b| b == b'<')?;
        let rest = &el[lt..];
        if rest.get(1) != Some(&b'/') && local_name(rest) == name {
            let end = tag_end(rest).ok()??;
            if rest.get(end.wrapping_sub(1)) == Some(&b'/') {
                return Some(&[]);
            }
            let body = &rest[end + 1..];
            let close = body.iter().position(|&b| b == b'<')?;
            return Some(&body[..close]);
        }
        from = lt + 1;
    }
}

/// Whether the element contains a descendant (or is itself) named `name` (local name).
pub fn has_child(el: &[u8], name: &[u8]) -> bool {
    child_text(el, name).is_some()
}

/// Every text of `<name>...</name>` children (e.g. the SASL mechanisms).
pub fn child_texts<'a>(el: &'a [u8], name: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 1;
    while let Some(off) = el
        .get(from..)
        .and_then(|r| r.iter().position(|&b| b == b'<'))
    {
        let lt = from + off;
        let rest = &el[lt..];
        if rest.get(1) != Some(&b'/')
            && local_name(rest) == name
            && let Ok(Some(end)) = tag_end(rest)
        {
            let body = &rest[end + 1..];
            if let Some(close) = body.iter().position(|&b| b == b'<') {
                out.push(&body[..close]);
            }
        }
        from = lt + 1;
    }
    out
}

/// Minimal escaping for text and attribute values we generate.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut Framer, data: &[u8]) {
        let buf = f.buffer_for_read().unwrap();
        buf[..data.len()].copy_from_slice(data);
        f.filled(data.len());
    }

    fn events(data: &[u8]) -> Vec<String> {
        let mut f = Framer::new();
        let mut out = Vec::new();
        // Byte by byte: every split point must work.
        for b in data {
            feed(&mut f, std::slice::from_ref(b));
            while let Some(ev) = f.next_event().unwrap() {
                out.push(match ev {
                    Event::StreamOpen(r) => format!("open:{}", String::from_utf8_lossy(f.bytes(r))),
                    Event::Element(r) => String::from_utf8_lossy(f.bytes(r)).into_owned(),
                    Event::StreamClose => "close".into(),
                });
            }
        }
        out
    }

    #[test]
    fn splits_a_stream_at_any_byte() {
        let s = b"<?xml version='1.0'?><stream:stream from='a' id='x>y'>\
            <stream:features><mechanisms xmlns='m'><mechanism>PLAIN</mechanism></mechanisms></stream:features> \
            <message to='b'><body>1&lt;2</body><x/><!-- c<d --></message><presence/></stream:stream>";
        let ev = events(s);
        assert_eq!(ev.len(), 5, "{ev:?}");
        assert_eq!(ev[0], "open:<stream:stream from='a' id='x>y'>");
        assert!(ev[1].starts_with("<stream:features>") && ev[1].ends_with("</stream:features>"));
        assert!(ev[2].ends_with("</message>"));
        assert_eq!(ev[3], "<presence/>");
        assert_eq!(ev[4], "close");
    }

    #[test]
    fn rejects_garbage_and_stray_close() {
        let mut f = Framer::new();
        feed(&mut f, b"hello");
        assert_eq!(f.next_event(), Err(FrameError));
        assert_eq!(element_len(b"</a>"), Err(FrameError));
    }

    #[test]
    fn reads_attributes_and_children() {
        let el = b"<iq type='result' id=\"b1\" xmlns:x='y'><bind xmlns='urn'><jid>a@b/c</jid></bind></iq>";
        assert_eq!(attr(el, b"type"), Some(&b"result"[..]));
        assert_eq!(attr(el, b"id"), Some(&b"b1"[..]));
        assert_eq!(attr(el, b"to"), None);
        assert_eq!(child_text(el, b"jid"), Some(&b"a@b/c"[..]));
        assert_eq!(local_name(b"<stream:features>"), b"features");
        assert!(has_child(
            b"<f><session><optional/></session></f>",
            b"optional"
        ));
        let m = b"<m><mechanism>A</mechanism><mechanism>B</mechanism></m>";
        assert_eq!(child_texts(m, b"mechanism"), vec![&b"A"[..], &b"B"[..]]);
        assert_eq!(child_text(b"<p><status/></p>", b"status"), Some(&b""[..]));
    }

    #[test]
    fn finds_needles() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b"a"), None);
    }
}
