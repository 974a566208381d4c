//! The stream framer (`xml::Framer`) and reader (`xml::Element::parse`), fed in chunks.
//!
//! Input: `[stanza-limit] [depth] [attributes] [addresses] [n] [n chunk sizes] [stream bytes]`.
//! The stream bytes are fed in chunks whose sizes cycle through the list (all at once when
//! `n` is 0); a size of 0 resets the framer instead, as the core does after STARTTLS and
//! SASL success.
//!
//! Properties:
//! - no panic; progress: a drain loop hands out at most one frame per buffered byte (+1);
//! - the buffer stays within the stanza limit after a drain (RFC 6120 §13.12);
//! - an error is final: `next_frame` and `feed` keep returning it until `reset`;
//! - the frames, and whether the stream fails, do not depend on how the input is split
//!   (chunked vs. all at once);
//! - every framed element parses as an `Element` with the same name and namespace;
//! - `write_with_addresses` output frames again, on a stream with the same default
//!   namespace, to an element equal to the original with its new `from`/`to`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmppd::limits::CAP_XML_DEPTH;
use xmppd::xml::{Element, Frame, FrameError, FrameLimits, Framer, Node, RawElement};
use xmppd_fuzz::{Reader, stream_header};

const STANZA_LIMITS: [usize; 5] = [256, 1024, 4096, 8192, 65536];

/// `from`/`to` values written by the round trip: none, a plain address, and text that
/// needs escaping in an attribute.
const ADDRESSES: [Option<&str>; 4] = [
    None,
    Some("alice@localhost/phone"),
    Some("a'b\"c<d>&e\t\r\n"),
    Some(""),
];

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let limits = FrameLimits {
        max_stanza_bytes: STANZA_LIMITS[usize::from(input.u8()) % STANZA_LIMITS.len()],
        max_depth: 1 + usize::from(input.u8()) % CAP_XML_DEPTH,
        max_attributes: 1 + usize::from(input.u8()) % 64,
    };
    let addresses = input.u8();
    let n = usize::from(input.u8() % 16);
    let mut sizes = input.bytes(n).to_vec();
    if sizes.iter().all(|&s| s == 0) {
        // Only resets would never consume the input.
        sizes.clear();
    }
    let stream = input.rest();

    let chunked = frame_in_chunks(limits, &sizes, stream, addresses);
    if !sizes.contains(&0) {
        let whole = frame_in_chunks(limits, &[], stream, addresses);
        // Which error is met first may depend on the split (an element can be found too
        // large before a later invalid byte arrives), but not whether there is one.
        assert_eq!(
            (&chunked.frames, chunked.error.is_some()),
            (&whole.frames, whole.error.is_some()),
            "frames depend on how the input was split (sizes {sizes:?}): {chunked:?} vs {whole:?}"
        );
    }
});

/// What a stream produced: frames in order, and the error that ended it, if any.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<FrameError>,
}

fn frame_in_chunks(limits: FrameLimits, sizes: &[u8], mut stream: &[u8], addresses: u8) -> Outcome {
    let mut framer = Framer::new(limits);
    let mut outcome = Outcome {
        frames: Vec::new(),
        error: None,
    };
    let mut default_ns: Option<String> = None;
    let mut extra_prefixes: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while !stream.is_empty() {
        let size = match sizes.get(i % sizes.len().max(1)) {
            None => stream.len(),
            Some(0) => {
                framer.reset();
                outcome.error = None;
                default_ns = None;
                i += 1;
                continue;
            }
            Some(&s) => usize::from(s),
        };
        i += 1;
        let (chunk, rest) = stream.split_at(size.min(stream.len()));
        stream = rest;
        let buffered_before = framer.buffered();
        if let Err(e) = framer.feed(chunk) {
            note_error(&mut framer, &mut outcome, e);
            continue;
        }
        // Progress: every frame consumes at least one byte, so this loop ends.
        let mut budget = buffered_before + chunk.len() + 1;
        loop {
            assert!(
                budget > 0,
                "next_frame keeps producing frames without input"
            );
            budget -= 1;
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    match &frame {
                        Frame::Header(h) => {
                            default_ns = h.default_ns.clone();
                            extra_prefixes = h.extra_prefixes.clone();
                        }
                        Frame::Element(raw) => {
                            let ns = default_ns.as_deref().unwrap_or("");
                            check_element(raw, ns, &extra_prefixes, addresses);
                        }
                        Frame::Close => {}
                    }
                    outcome.frames.push(frame);
                }
                Ok(None) => {
                    // RFC 6120 §13.12: what is buffered is one unfinished element at most
                    // (and a cut UTF-8 character).
                    assert!(
                        framer.buffered() <= limits.max_stanza_bytes + 3,
                        "framer holds {} bytes with a limit of {}",
                        framer.buffered(),
                        limits.max_stanza_bytes
                    );
                    break;
                }
                Err(e) => {
                    note_error(&mut framer, &mut outcome, e);
                    break;
                }
            }
        }
    }
    outcome
}

/// Records the error and checks that it sticks.
fn note_error(framer: &mut Framer, outcome: &mut Outcome, e: FrameError) {
    if let Some(previous) = outcome.error {
        assert_eq!(previous, e, "a failed framer changed its error");
    }
    outcome.error = Some(e);
    assert_eq!(
        framer.next_frame(),
        Err(e),
        "error not sticky in next_frame"
    );
    assert_eq!(framer.feed(b"<a/>"), Err(e), "error not sticky in feed");
}

fn check_element(raw: &RawElement, default_ns: &str, extra: &[(String, String)], addresses: u8) {
    // The reader's depth cap is the framer's compiled cap, and the framer ran with a limit
    // at most that, so parsing a framed element cannot fail (element.rs says so).
    let element = match Element::parse(raw, default_ns) {
        Ok(e) => e,
        Err(e) => panic!("framed element does not parse: {e:?}\n{}", raw.as_str()),
    };
    assert_eq!(element.name, raw.name());
    assert_eq!(element.ns, raw.ns());
    if default_ns.is_empty() || raw.ns() != default_ns {
        // write_with_addresses is meant for stanzas in the stream's content namespace.
        return;
    }
    let from = ADDRESSES[usize::from(addresses & 3)];
    let to = ADDRESSES[usize::from((addresses >> 2) & 3)];
    let mut written = Vec::new();
    raw.write_with_addresses(&mut written, from, to, extra);

    let rewritten = match reframe(&written, default_ns) {
        Ok(e) => e,
        Err(e) => panic!(
            "write_with_addresses output does not frame: {e:?}\nin:  {}\nout: {}",
            raw.as_str(),
            String::from_utf8_lossy(&written)
        ),
    };
    let mut expected = element;
    for (name, value) in [("from", from), ("to", to)] {
        match value {
            Some(v) => expected.set_attr(name, v),
            None => expected.remove_attr(name),
        }
    }
    assert_eq!(
        canonical(expected),
        canonical(rewritten),
        "write_with_addresses changed the element\nin:  {}\nout: {}",
        raw.as_str(),
        String::from_utf8_lossy(&written)
    );
}

/// Frames `xml` alone on a fresh stream whose default namespace is `default_ns`, with
/// limits loose enough for the declarations and addresses that writing adds.
fn reframe(xml: &[u8], default_ns: &str) -> Result<Element, FrameError> {
    let mut framer = Framer::new(FrameLimits {
        max_stanza_bytes: 4 * xml.len() + 1024,
        max_depth: CAP_XML_DEPTH,
        max_attributes: 1024,
    });
    framer.feed(&stream_header(default_ns))?;
    framer.feed(xml)?;
    let not_one = FrameError::NotWellFormed("expected one element");
    let Some(Frame::Header(_)) = framer.next_frame()? else {
        return Err(not_one);
    };
    let Some(Frame::Element(raw)) = framer.next_frame()? else {
        return Err(not_one);
    };
    if framer.next_frame()?.is_some() || framer.buffered() != 0 {
        return Err(not_one);
    }
    Element::parse(&raw, default_ns)
}

/// Attribute order is not significant (XML 1.0 §3.1); writing moves `from`/`to` first.
fn canonical(mut e: Element) -> Element {
    e.attrs.sort();
    for child in &mut e.children {
        if let Node::Element(c) = child {
            *c = canonical(std::mem::replace(c, Element::new("", "")));
        }
    }
    e
}
