//! The session state machine (`core::Core`): connections opened, fed byte chunks and
//! valid client traffic, timers, STARTTLS, store commits, peer closes and shutdown, in
//! any order, the way the smol shell drives it.
//!
//! Input: `[config] (op)*`, at most `MAX_OPS` operations. config bit 0: encryption
//! required; bit 1: PLAIN allowed without TLS. Each op is a tag byte (mod 10) and its
//! arguments (`c` = a connection, an index mod the number ever opened, so closed ones'
//! stale handles are used too):
//!   0 open        [flags]  bit 0: direct TLS, bit 1: with channel-binding data
//!   1 bytes       [c] [u16 len] [bytes]
//!   2 traffic     [c] [entry]  `CLIENT_TRAFFIC[entry % len]` (valid client XML)
//!   3 advance     [u16 ms*16]  then `handle_timeout`
//!   4 commit      the store makes every pending record durable
//!   5 close       [c]      the peer closed the connection
//!   6 drain       what the shell does when woken: every ready connection's output
//!   7 take        [c]      one connection's output, ready or not
//!   8 shutdown
//!   9 split       [c] [entry] [at]  a traffic entry cut in two reads at `at`
//! Then the shell's end: commit and drain until quiet, check the timeouts, shut down,
//! and drain until every connection is closed.
//!
//! Properties:
//! - no panic; each operation returns (libFuzzer's `-timeout`), and the final drain
//!   settles within a few rounds;
//! - `take_output` never hands out more than `max_outbound_queue_bytes` at once;
//! - the connection table matches the connections the shell believes open, and `open`
//!   is refused exactly when the table is full or the server is shutting down;
//! - a closed or stale handle gets no output and `Close`;
//! - what the server writes to each connection is a well-formed XML stream (framed with
//!   `xml::Framer` as a client would, restarting after `<proceed/>` and `<success/>`)
//!   whose top-level elements are stanzas in `jabber:client` or negotiation elements;
//! - time only moves forward: after `handle_timeout(now)` the next deadline is later;
//! - a connection not authenticated within `auth_timeout_secs` is closed;
//! - after `shutdown` every connection closes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xmppd::core::{Action, Core, CoreConfig};
use xmppd::db::{Db, Record};
use xmppd::limits::{CAP_OUTBOUND_QUEUE_BYTES, Limits};
use xmppd::router::ConnId;
use xmppd::sasl::Credentials;
use xmppd::time::Millis;
use xmppd::xml::{Frame, FrameLimits, Framer, NS_CLIENT, NS_STREAM, RawElement};
use xmppd_fuzz::{
    CHANNEL_BINDING, CLIENT_TRAFFIC, DOMAIN, ITERATIONS, PASSWORD, Reader, SALT, SeededEntropy,
    trace,
};

const MAX_OPS: usize = 1024;
/// Rounds of commit + drain the shell's end gets to close everything.
const SETTLE_ROUNDS: usize = 8;
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

fn credentials() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| match Credentials::derive(PASSWORD, SALT, ITERATIONS) {
        Ok(c) => c,
        Err(e) => panic!("fuzzing password refused: {e:?}"),
    })
}

/// Small limits, so that full tables, queue overflows and size limits are reachable.
fn limits() -> Limits {
    let limits = Limits {
        max_connections: 4,
        max_resources_per_account: 2,
        max_roster_items: 4,
        max_pending_subscriptions: 2,
        max_stanza_bytes: 4096,
        max_stanza_bytes_preauth: 2048,
        max_xml_depth: 6,
        max_xml_attributes: 8,
        max_outbound_queue_bytes: 8192,
        max_auth_attempts: 2,
        auth_timeout_secs: 5,
        ..Limits::default()
    };
    assert_eq!(limits.check(), Vec::new(), "fuzzing limits out of range");
    limits
}

fuzz_target!(|data: &[u8]| {
    let mut input = Reader::new(data);
    let config = input.u8();
    let mut shell = Shell::new(config & 1 != 0, config & 2 != 0);
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        shell.op(&mut input);
        shell.check_table();
    }
    shell.finish();
});

/// What the shell knows of one connection.
struct Conn {
    id: ConnId,
    open: bool,
    opened_at: Millis,
    tls: bool,
    /// The stream was upgraded with STARTTLS.
    starttls: bool,
    /// `<success/>` was seen in the output.
    authenticated: bool,
    /// Must be closed by the next drain: its authentication deadline passed.
    must_close: bool,
    /// The server's side of the stream, read as a client would.
    reader: Framer,
    /// The last output, for failure messages.
    recent: Vec<u8>,
}

struct Shell {
    core: Core,
    limits: Limits,
    now: Millis,
    conns: Vec<Conn>,
    shut_down: bool,
    last_seq: u64,
    scratch: Vec<u8>,
}

impl Shell {
    fn new(require_encryption: bool, allow_plain_unencrypted: bool) -> Shell {
        let mut db = Db::default();
        for user in ["alice", "bob"] {
            db.apply(&Record::UserSet {
                user: user.into(),
                credentials: credentials().clone(),
            });
        }
        let limits = limits();
        let cfg = CoreConfig {
            domain: DOMAIN.into(),
            limits: limits.clone(),
            require_encryption,
            allow_plain_unencrypted: allow_plain_unencrypted && !require_encryption,
            server_secret: vec![7; 32],
        };
        Shell {
            core: Core::new(cfg, db, Box::new(SeededEntropy(42))),
            limits,
            now: Millis(0),
            conns: Vec::new(),
            shut_down: false,
            last_seq: 0,
            scratch: Vec::new(),
        }
    }

    fn pick(&self, input: &mut Reader) -> Option<usize> {
        let n = input.u8();
        (!self.conns.is_empty()).then(|| usize::from(n) % self.conns.len())
    }

    fn op(&mut self, input: &mut Reader) {
        match input.u8() % 10 {
            0 => {
                let flags = input.u8();
                let tls =
                    (flags & 1 != 0).then(|| (flags & 2 != 0).then(|| CHANNEL_BINDING.to_vec()));
                self.open(tls);
            }
            1 => {
                let c = self.pick(input);
                let bytes = input.blob();
                if let Some(c) = c {
                    self.send(c, bytes);
                }
            }
            2 => {
                let c = self.pick(input);
                let entry = traffic(input.u8());
                if let Some(c) = c {
                    self.send(c, entry);
                }
            }
            3 => {
                let ms = u64::from(input.u16()) * 16;
                self.advance(ms);
            }
            4 => self.commit(),
            5 => {
                if let Some(c) = self.pick(input) {
                    self.peer_closed(c);
                }
            }
            6 => self.drain(),
            7 => {
                if let Some(c) = self.pick(input) {
                    self.take(c);
                }
            }
            8 => {
                trace!("{:?} shutdown", self.now);
                self.core.shutdown(self.now);
                self.shut_down = true;
            }
            _ => {
                let c = self.pick(input);
                let entry = traffic(input.u8());
                let at = usize::from(input.u8()).min(entry.len());
                if let Some(c) = c {
                    self.send(c, &entry[..at]);
                    self.send(c, &entry[at..]);
                }
            }
        }
    }

    fn open(&mut self, tls: Option<Option<Vec<u8>>>) {
        trace!("{:?} open tls={tls:?}", self.now);
        let is_tls = tls.is_some();
        let open_now = self.conns.iter().filter(|c| c.open).count();
        // Each connection from its own address, so the per-address cap (tested elsewhere)
        // never refuses here and a refusal means the table is full.
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + self.conns.len() as u32));
        match self.core.open(ip, tls, self.now) {
            Ok(id) => {
                assert!(!self.shut_down, "open accepted after shutdown");
                assert!(
                    open_now < self.limits.max_connections,
                    "open accepted past max_connections"
                );
                assert!(
                    self.conns.iter().all(|c| !c.open || c.id != id),
                    "open returned the handle of an open connection"
                );
                self.conns.push(Conn {
                    id,
                    open: true,
                    opened_at: self.now,
                    tls: is_tls,
                    starttls: false,
                    authenticated: false,
                    must_close: false,
                    reader: client_side_reader(),
                    recent: Vec::new(),
                });
            }
            Err(_) => assert!(
                self.shut_down || open_now >= self.limits.max_connections,
                "open refused with {open_now} of {} connections open",
                self.limits.max_connections
            ),
        }
    }

    fn send(&mut self, c: usize, bytes: &[u8]) {
        let id = self.conns[c].id;
        trace!(
            "{:?} C{c} {id}: {}",
            self.now,
            String::from_utf8_lossy(bytes)
        );
        self.core.handle_bytes(id, bytes, self.now);
        if !self.conns[c].open {
            self.take(c);
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now + ms;
        trace!("{:?} timeout", self.now);
        self.core.handle_timeout(self.now);
        if let Some(next) = self.core.next_timeout() {
            assert!(
                next > self.now,
                "deadline {next:?} not after now {:?}",
                self.now
            );
        }
        let deadline = u64::from(self.limits.auth_timeout_secs) * 1000;
        for conn in &mut self.conns {
            if conn.open && !conn.authenticated && conn.opened_at + deadline <= self.now {
                conn.must_close = true;
            }
        }
    }

    fn commit(&mut self) {
        let mut records = Vec::new();
        let mut archive = Vec::new();
        let taken = self.core.take_records(&mut records);
        // Archive writes (offline messages, MAM) share the record numbering.
        self.core.take_archive(&mut archive);
        if let Some(seq) = taken {
            assert!(!records.is_empty() || !archive.is_empty(), "a record number without records");
            assert!(seq > self.last_seq, "record numbers went back");
            self.last_seq = seq;
            trace!("{:?} commit {seq}", self.now);
            self.core.records_committed(seq);
        } else {
            assert!(records.is_empty() && archive.is_empty());
        }
    }

    fn peer_closed(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        trace!("{:?} C{c} {} peer closed", self.now, conn.id);
        self.core.handle_closed(conn.id, self.now);
        conn.open = false;
    }

    /// The shell's reaction to a wake-up: write every ready connection's output.
    fn drain(&mut self) {
        let mut ready = Vec::new();
        self.core.take_ready(&mut ready);
        for id in ready {
            // The shell keeps a map from handles to its tasks; a stale one is ignored.
            if let Some(c) = self.conns.iter().rposition(|c| c.id == id && c.open) {
                self.take(c);
            }
        }
    }

    fn take(&mut self, c: usize) {
        let mut out = std::mem::take(&mut self.scratch);
        let action = self.core.take_output(self.conns[c].id, &mut out);
        let conn = &mut self.conns[c];
        if !out.is_empty() || action.is_some() {
            trace!(
                "{:?} S{c} {}: {} {action:?}",
                self.now,
                conn.id,
                String::from_utf8_lossy(&out)
            );
        }
        assert!(
            out.len() <= self.limits.max_outbound_queue_bytes,
            "{} bytes handed out at once",
            out.len()
        );
        if !conn.open {
            assert!(
                out.is_empty() && action == Some(Action::Close),
                "closed connection got {} bytes and {action:?}",
                out.len()
            );
            self.scratch = out;
            return;
        }
        conn.read_output(&out);
        self.scratch = out;
        match action {
            None => {}
            Some(Action::Close) => {
                // The shell writes the bytes, then reports the socket closed.
                self.core.handle_closed(conn.id, self.now);
                conn.open = false;
            }
            Some(Action::StartTls) => {
                assert!(!conn.tls, "STARTTLS on an encrypted stream");
                conn.tls = true;
                conn.starttls = true;
                conn.reader = client_side_reader();
                self.core
                    .tls_established(conn.id, Some(CHANNEL_BINDING.to_vec()), self.now);
            }
        }
    }

    fn check_table(&self) {
        let open = self.conns.iter().filter(|c| c.open).count();
        assert_eq!(
            self.core.connection_count(),
            open,
            "the core's connection table does not match the shell's"
        );
    }

    /// Lets the shell write and commit until nothing is left to do.
    fn settle(&mut self) {
        for _ in 0..SETTLE_ROUNDS {
            self.commit();
            self.drain();
            for c in 0..self.conns.len() {
                if self.conns[c].open {
                    self.take(c);
                }
            }
        }
        self.check_table();
    }

    fn finish(&mut self) {
        self.settle();
        for conn in &self.conns {
            assert!(
                // Authenticated means <success/> was queued before the deadline (the
                // output may have been collected only now).
                !(conn.open && conn.must_close && !conn.authenticated),
                "connection opened at {:?} still open at {:?}, unauthenticated\n{}",
                conn.opened_at,
                self.now,
                String::from_utf8_lossy(&conn.recent)
            );
        }
        trace!("{:?} end: shutdown", self.now);
        self.core.shutdown(self.now);
        self.shut_down = true;
        self.settle();
        for conn in &self.conns {
            assert!(
                !conn.open,
                "connection still open after shutdown\n{}",
                String::from_utf8_lossy(&conn.recent)
            );
        }
    }
}

impl Conn {
    /// Reads the server's output as a client would: it must be a well-formed stream.
    fn read_output(&mut self, out: &[u8]) {
        self.recent.extend_from_slice(out);
        if self.recent.len() > 16 * 1024 {
            self.recent.drain(..self.recent.len() - 16 * 1024);
        }
        // Fed in pieces ending where a stream restart may be (the server writes these
        // elements in exactly this form), so that the reader is reset at the right byte;
        // a spurious cut (the same text inside a forwarded stanza) is harmless.
        let mut rest = out;
        while !rest.is_empty() {
            let cut = RESTART_ENDS
                .iter()
                .filter_map(|end| find(rest, end).map(|i| i + end.len()))
                .min()
                .unwrap_or(rest.len());
            let (piece, tail) = rest.split_at(cut);
            rest = tail;
            self.read_piece(piece);
        }
    }

    fn read_piece(&mut self, piece: &[u8]) {
        // Progress: each frame consumes at least one byte.
        let mut budget = self.reader.buffered() + piece.len() + 1;
        if let Err(e) = self.reader.feed(piece) {
            self.malformed(e);
        }
        loop {
            assert!(budget > 0, "reader does not progress");
            budget -= 1;
            match self.reader.next_frame() {
                Ok(Some(Frame::Element(raw))) => {
                    self.check_top_level(&raw);
                    let success = raw.name() == "success" && raw.ns() == NS_SASL;
                    if success || (raw.name() == "proceed" && raw.ns() == NS_TLS) {
                        self.authenticated |= success;
                        // A new stream follows (RFC 6120 §5.4.3.3, §6.4.6).
                        self.reader.reset();
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => self.malformed(e),
            }
        }
    }

    /// RFC 6120 §4.9.3.12, §8: a client can only understand stanzas in the content
    /// namespace and the negotiation elements of the streams, TLS and SASL namespaces.
    fn check_top_level(&self, raw: &RawElement) {
        let known = match raw.ns() {
            NS_CLIENT => matches!(raw.name(), "message" | "presence" | "iq"),
            NS_STREAM => matches!(raw.name(), "features" | "error"),
            NS_SASL => matches!(raw.name(), "success" | "failure" | "challenge"),
            NS_TLS => matches!(raw.name(), "proceed" | "failure"),
            _ => false,
        };
        if known {
            return;
        }
        panic!(
            "server wrote a top-level <{}/> in {:?}:\n{}",
            raw.name(),
            raw.ns(),
            String::from_utf8_lossy(&self.recent)
        );
    }

    fn malformed(&self, e: xmppd::xml::FrameError) -> ! {
        panic!(
            "server output is not a well-formed stream ({e:?}):\n{}",
            String::from_utf8_lossy(&self.recent)
        )
    }
}

const RESTART_ENDS: [&[u8]; 2] = [
    b"</success>",
    b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
];

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn traffic(entry: u8) -> &'static [u8] {
    CLIENT_TRAFFIC[usize::from(entry) % CLIENT_TRAFFIC.len()].as_bytes()
}

/// A client's reader of the server's stream: as large as anything the queue can hold.
fn client_side_reader() -> Framer {
    Framer::new(FrameLimits {
        max_stanza_bytes: CAP_OUTBOUND_QUEUE_BYTES,
        max_depth: 64,
        max_attributes: 1024,
    })
}
