//! Helpers shared by the fuzz targets: a byte reader for the targets' input formats, a
//! seeded random source, and the valid client traffic the session target mixes in.
//!
//! Every target reads its input with a small hand-written format rather than
//! `arbitrary`'s derived one: the seed corpus is written by `gen_corpus.py` and must keep
//! meaning the same thing when the `arbitrary` crate changes its encoding. Each format is
//! described in README.md and at the top of its target.

use std::sync::OnceLock;

use xmppd::time::Entropy;

/// `XMPPD_FUZZ_TRACE=1` makes the session and SCRAM targets print what they do, to read
/// a reproducer: `XMPPD_FUZZ_TRACE=1 target/.../core fuzz/artifacts-found/...`.
pub fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("XMPPD_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// Prints when tracing is on.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Reads an input from the front; every read past the end yields zeros / empty slices, so
/// any byte string is a valid input.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
    /// A length-prefixed (u16, little endian) byte string.
    pub fn blob(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.bytes(n)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// xorshift64: deterministic, so a crash reproduces from its input alone.
pub struct SeededEntropy(pub u64);

impl Entropy for SeededEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

pub const DOMAIN: &str = "localhost";
/// Both accounts of the session target, and the one of the SCRAM target, use it.
pub const PASSWORD: &str = "secret";
/// PBKDF2 rounds of the fuzzing accounts. `Credentials::derive` accepts any count (0 is
/// raised to 1); only the config file insists on `limits::MIN_SCRAM_ITERATIONS`. One round
/// keeps a PLAIN login cheap, so the fuzzer spends its time in the protocol code.
pub const ITERATIONS: u32 = 1;
pub const SALT: &[u8] = b"0123456789abcdef";

/// `tls-exporter` data the session target hands to TLS connections.
pub const CHANNEL_BINDING: &[u8] = b"fuzz-channel-binding-32-bytes!!!";

/// A stream header with this default namespace (escaped for an attribute value).
pub fn stream_header(default_ns: &str) -> Vec<u8> {
    let mut out =
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='".to_vec();
    xmppd::xml::escape::escape_attr(&mut out, default_ns);
    out.extend_from_slice(b"'>");
    out
}

/// Valid client traffic for the session target's `Dict` operation: the whole login of
/// alice and bob (PLAIN, as in tests/c2s_transcripts.rs) and the stanzas of
/// src/core/tests.rs, so the fuzzer gets past authentication in a few operations. The
/// generator of the seed corpus refers to entries by index: append, never reorder.
pub const CLIENT_TRAFFIC: &[&str] = &[
    // 0: stream header (also the restart after <success/>)
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
    // 1, 2: PLAIN with the right password: base64("\0alice\0secret"), base64("\0bob\0secret")
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>",
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGJvYgBzZWNyZXQ=</auth>",
    // 3, 4: bind with and without a resource
    "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>",
    "<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
    // 5: roster get
    "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
    // 6, 7: initial presence
    "<presence/>",
    "<presence><priority>5</priority><show>away</show><status>out</status></presence>",
    // 8-11: messages
    "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>",
    "<message to='alice@localhost/phone' type='chat'><body>direct</body></message>",
    "<message to='nobody@localhost' type='chat' id='m'><body>?</body></message>",
    "<message to='bob@elsewhere.example' id='r'><body>?</body></message>",
    // 12-15: subscriptions
    "<presence to='bob@localhost' type='subscribe'><status>it is alice</status></presence>",
    "<presence to='alice@localhost' type='subscribed'/>",
    "<presence to='alice@localhost' type='subscribe'/>",
    "<presence to='bob@localhost' type='subscribed'/>",
    // 16, 17: roster set and remove
    "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='Bob@LocalHost' name='Bob'><group>Friends</group></item></query></iq>",
    "<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>",
    // 18-20: ping, disco, version
    "<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
    // 21: legacy session (RFC 3921)
    "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
    // 22-24: unavailable, directed, probe
    "<presence type='unavailable'/>",
    "<presence to='bob@localhost/phone'/>",
    "<presence to='bob@localhost' type='probe'/>",
    // 25: close the stream
    "</stream:stream>",
    // 26: STARTTLS
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    // 27: wrong password: base64("\0alice\0wrong")
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
    // 28: SCRAM client-first (n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL)
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1hbGljZSxyPWZ5a28rZDJsYmJGZ09OUnY5cWt4ZGF3TA==</auth>",
    // 29: abort
    "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    // 30: whitespace keepalive
    "\n \n",
    // 31: disco to a user, errors and results back
    "<iq type='get' id='e' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    "<iq type='result' id='e' to='alice@localhost/phone'/>",
    "<iq type='error' id='6' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    // 34: unknown namespace payload and bad address
    "<iq type='get' id='4' to='localhost'><nothing xmlns='urn:example'/></iq>",
    "<iq type='get' id='5' to='a@b@c'><ping xmlns='urn:xmpp:ping'/></iq>",
    // 36: unsubscribe / unsubscribed
    "<presence to='bob@localhost' type='unsubscribe'/>",
    "<presence to='bob@localhost' type='unsubscribed'/>",
    // 38: roster get with version
    "<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='1'/></iq>",
    // 39: a message with a spoofed from and an extension element
    "<message to='bob@localhost' type='chat' from='mallory@localhost/x' xml:lang='en'><body>hi &amp; bye</body><x xmlns='urn:example'><y a='1'/></x></message>",
    // 40: a stanza with a prefixed name and a default namespace for its children
    "<c:message xmlns:c='jabber:client' xmlns='urn:example' to='bob@localhost'><body>hi</body></c:message>",
];
