//! Issue 5: routing a stanza between two online sessions allocates nothing once the
//! buffers it uses have grown. A counting global allocator (for the lib's test binary
//! only) counts the allocations made by the current thread, so tests running in parallel
//! do not disturb each other.
//!
//! When one fails, `ALLOC_TRACE=1 cargo test --lib tests_alloc` prints where each
//! allocation of one measured round comes from (the innermost frames of this crate).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use super::ConnId;
use super::tests::H;
use crate::db::{MamDefault, MamPrefs, Record};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Print where allocations come from (and, while printing, do not).
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    if TRACING.try_with(|t| t.replace(false)).unwrap_or(false) {
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        let frames: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("xmppd::") && !l.contains("tests_alloc"))
            .take(5)
            .map(str::trim)
            .collect();
        eprintln!("allocation: {}", frames.join(" <- "));
        let _ = TRACING.try_with(|t| t.set(true));
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's layout contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations per round of `round`, after a warm-up that lets every buffer reach its
/// working size.
fn allocations_per_round(h: &mut H, mut round: impl FnMut(&mut H)) -> f64 {
    for _ in 0..200 {
        round(h);
    }
    TRACING.with(|t| t.set(std::env::var_os("ALLOC_TRACE").is_some()));
    round(h);
    TRACING.with(|t| t.set(false));
    const ROUNDS: u64 = 1000;
    let before = allocations();
    for _ in 0..ROUNDS {
        round(h);
    }
    (allocations() - before) as f64 / ROUNDS as f64
}

/// Allocations per stanza when `sender` sends `stanza` and `readers` read what they
/// get. Every session's output is taken into buffers reused from round to round, and
/// the store's work is taken and committed, as the shell would; `expect` must be in
/// what the readers got.
fn allocations_per_stanza(
    h: &mut H,
    sender: ConnId,
    readers: &[ConnId],
    stanza: &str,
    expect: &[&str],
) -> f64 {
    let sessions: Vec<ConnId> = std::iter::once(sender)
        .chain(readers.iter().copied())
        .collect();
    let mut outputs: Vec<Vec<u8>> = sessions
        .iter()
        .map(|_| Vec::with_capacity(1 << 16))
        .collect();
    let mut archive = Vec::with_capacity(1024);
    let mut records = Vec::with_capacity(1024);
    let mut ready = Vec::with_capacity(64);
    let per = allocations_per_round(h, |h| {
        h.core.handle_bytes(sender, stanza.as_bytes(), h.now);
        h.core.take_ready(&mut ready);
        for (id, out) in sessions.iter().zip(outputs.iter_mut()) {
            h.core.take_output(*id, out);
        }
        // As the storage task does: both under one lock, then the commit.
        let seq = h.core.take_records(&mut records);
        h.core.take_archive(&mut archive);
        if let Some(seq) = seq {
            h.core.records_committed(seq);
        }
    });
    let got: String = outputs
        .iter()
        .skip(1)
        .map(|o| String::from_utf8_lossy(o).into_owned())
        .collect();
    for e in expect {
        assert!(got.contains(e), "{e} not in: {got}");
    }
    per
}

/// alice/phone and bob/laptop online, mutual contacts, archiving messages or not.
fn two_contacts(archive: bool) -> (H, ConnId, ConnId) {
    let mut h = H::new(false);
    super::tests::personal::befriend(&mut h, "alice", "bob");
    if !archive {
        // XEP-0313 preferences `never` for both.
        for user in ["alice", "bob"] {
            h.core.db.apply(&Record::MamPrefs {
                user: user.into(),
                prefs: MamPrefs {
                    default: MamDefault::Never,
                    ..MamPrefs::default()
                },
            });
        }
    }
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    (h, a, b)
}

/// Allocations per stanza from alice/phone to bob/laptop (see [`two_contacts`]).
fn alice_to_bob(archive: bool, stanza: &str, expect: &str) -> f64 {
    let (mut h, a, b) = two_contacts(archive);
    allocations_per_stanza(&mut h, a, &[b], stanza, &[expect])
}

#[test]
fn iq_to_a_full_jid_allocates_nothing() {
    let per = alice_to_bob(
        true,
        "<iq to='bob@localhost/laptop' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>",
        "from='alice@localhost/phone'",
    );
    assert_eq!(per, 0.0, "allocations per routed iq");
}

#[test]
fn directed_presence_to_a_full_jid_allocates_nothing() {
    let per = alice_to_bob(
        true,
        "<presence to='bob@localhost/laptop'><show>away</show></presence>",
        "<show>away</show>",
    );
    assert_eq!(per, 0.0, "allocations per directed presence");
}

#[test]
fn chat_state_to_a_full_jid_allocates_nothing() {
    let per = alice_to_bob(
        true,
        "<message to='bob@localhost/laptop' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<composing ",
    );
    assert_eq!(per, 0.0, "allocations per chat state");
}

#[test]
fn presence_broadcast_to_subscribed_contacts_allocates_nothing() {
    let per = alice_to_bob(
        true,
        "<presence><show>away</show><status>out</status><priority>1</priority></presence>",
        "<status>out</status>",
    );
    assert_eq!(per, 0.0, "allocations per presence broadcast");
}

#[test]
fn presence_broadcast_with_capabilities_and_avatar_hash_allocates_nothing() {
    // What a mobile client sends each time it changes state: entity capabilities
    // (XEP-0115, checked against the cache) and its avatar hash (XEP-0153).
    let per = alice_to_bob(
        true,
        "<presence><show>xa</show><priority>-1</priority>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://conversations.im' ver='Oo2D6NMqJ8I3oI8SfXBNvT9Kdsg='/>\
         <x xmlns='vcard-temp:x:update'><photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo></x></presence>",
        "<show>xa</show>",
    );
    assert_eq!(per, 0.0, "allocations per presence broadcast");
}

#[test]
fn message_to_a_full_jid_not_archived_allocates_nothing() {
    let per = alice_to_bob(
        false,
        "<message to='bob@localhost/laptop' type='chat' id='m1'><body>hello</body></message>",
        "<body>hello</body>",
    );
    assert_eq!(per, 0.0, "allocations per message");
}

#[test]
fn message_to_a_bare_jid_not_archived_allocates_nothing() {
    let per = alice_to_bob(
        false,
        "<message to='bob@localhost' type='chat' id='m1'><body>hello</body></message>",
        "<body>hello</body>",
    );
    assert_eq!(per, 0.0, "allocations per message");
}

#[test]
fn archived_message_allocates_only_its_archive_records() {
    let per = alice_to_bob(
        true,
        "<message to='bob@localhost/laptop' type='chat' id='m1'><body>hello</body></message>",
        "<body>hello</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost'",
    );
    // What remains is the archive's: the two records handed to the store through
    // `take_archive` (the sender's copy and the recipient's), each an `ArchivedMessage`
    // with three owned strings (`account`, `with`, `stanza`). Making them borrow or share
    // would change the interface with the storage task.
    assert!(per <= 6.0, "allocations per archived message: {per}");
}

#[test]
fn message_with_carbon_copies_to_other_resources_allocates_nothing() {
    let (mut h, a, b) = two_contacts(false);
    let a2 = h.online("alice", "desktop", 0);
    let b2 = h.online("bob", "tablet", 0);
    for id in [a, a2, b, b2] {
        h.send(
            id,
            "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
        );
        h.recv(id);
    }
    let per = allocations_per_stanza(
        &mut h,
        a,
        &[b, a2, b2],
        "<message to='bob@localhost/laptop' type='chat' id='m1'><body>hello</body></message>",
        &[
            "<body>hello</body>",
            "<sent xmlns='urn:xmpp:carbons:2'>",
            "<received xmlns='urn:xmpp:carbons:2'>",
        ],
    );
    assert_eq!(per, 0.0, "allocations per message");
}

#[test]
fn message_to_a_session_with_stream_management_allocates_nothing() {
    let (mut h, a, b) = two_contacts(false);
    h.send(b, "<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
    assert!(h.recv(b).contains("<enabled "));
    // The client acknowledges everything it got after each read.
    let acks: Vec<String> = (1..=1201)
        .map(|n| format!("<a xmlns='urn:xmpp:sm:3' h='{n}'/>"))
        .collect();
    let mut acks = acks.iter();
    let mut out = Vec::with_capacity(1 << 16);
    let mut ready = Vec::with_capacity(64);
    let stanza =
        "<message to='bob@localhost/laptop' type='chat' id='m1'><body>hello</body></message>";
    let per = allocations_per_round(&mut h, |h| {
        h.core.handle_bytes(a, stanza.as_bytes(), h.now);
        h.core.take_ready(&mut ready);
        h.core.take_output(b, &mut out);
        if let Some(ack) = acks.next() {
            h.core.handle_bytes(b, ack.as_bytes(), h.now);
        }
    });
    assert!(String::from_utf8_lossy(&out).contains("<body>hello</body>"));
    // The copy kept until the client acknowledges it (XEP-0198 §4) goes into the
    // buffer of one acknowledged before.
    assert_eq!(per, 0.0, "allocations per message");
}
