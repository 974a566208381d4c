//! Transcript tests of reliable delivery: offline storage (XEP-0160), stream management
//! (XEP-0198), carbons (XEP-0280), client state indication (XEP-0352) and the archive
//! (XEP-0313), driven in-process like `tests.rs`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::tests::{H, HEADER, IP};
use super::*;
use crate::archive::{ArchivePage, ArchiveRecord, flags};
use crate::limits::{DEFAULT_SM_RESUME_SECS, Limits};

const SM_ENABLE: &str = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>";

fn sm_id(enabled: &str) -> String {
    enabled
        .split("id='")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or_default()
        .to_string()
}

/// Authenticates a fresh connection as `user` without binding (for `<resume/>`).
fn authenticated(h: &mut H, user: &str) -> ConnId {
    let id = h.open();
    h.send(id, HEADER);
    h.recv(id);
    let auth = BASE64.encode(format!("\0{user}\0secret"));
    h.send(
        id,
        &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"),
    );
    h.send(id, HEADER);
    let f = h.recv(id);
    assert!(
        f.contains("<sm xmlns='urn:xmpp:sm:3'/>"),
        "SM is offered: {f}"
    );
    id
}

fn chat(to: &str, body: &str) -> String {
    format!("<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>")
}

#[test]
fn offline_messages_wait_for_the_next_login_in_order_with_a_delay_stamp() {
    let mut h = H::new(false);
    h.core.set_wall_ms(1_795_000_000_000);
    let a = h.online("alice", "phone", 0);
    h.send(a, &chat("bob@localhost", "first"));
    h.send(a, &chat("bob@localhost/gone", "second"));
    h.commit();
    assert_eq!(h.recv(a), "", "no error: the messages were kept");
    let b = h.login("bob", "laptop");
    h.send(b, "<presence/>");
    let out = h.recv(b);
    let first = out.find("<body>first</body>").expect("first delivered");
    let second = out.find("<body>second</body>").expect("second delivered");
    assert!(first < second, "in order: {out}");
    assert!(
        out.contains(
            "<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2026-11-18T11:06:40Z'>"
        ),
        "{out}"
    );
    assert!(
        out.contains("<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost'"),
        "{out}"
    );
    h.commit();
    assert!(
        h.archive.iter().any(
            |r| matches!(r, ArchiveRecord::OfflineDelivered { account, .. } if account == "bob")
        )
    );
    // Delivered once: a second resource does not get them again.
    let b2 = h.login("bob", "tablet");
    h.send(b2, "<presence/>");
    assert!(!h.recv(b2).contains("<body>first</body>"));
}

#[test]
fn a_full_offline_store_refuses_with_service_unavailable() {
    let limits = Limits {
        max_offline_messages: 2,
        ..Limits::default()
    };
    let mut h = H::with_limits(false, limits);
    let a = h.online("alice", "phone", 0);
    for i in 0..3 {
        h.send(a, &chat("bob@localhost", &format!("m{i}")));
    }
    let out = h.recv(a);
    assert_eq!(out.matches("<service-unavailable ").count(), 1, "{out}");
    assert!(out.contains("id='m2'"), "the third one is refused: {out}");
}

#[test]
fn a_failed_offline_write_tells_the_sender() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    h.send(a, &chat("bob@localhost", "lost"));
    let mut recs = Vec::new();
    h.core.take_records(&mut recs);
    h.core.records_failed();
    let out = h.recv(a);
    assert!(
        out.contains("<resource-constraint ") && out.contains("id='lost'"),
        "{out}"
    );
    assert!(
        h.core.offline.get("bob").is_none_or(|q| q.msgs.is_empty()),
        "nothing kept in memory either"
    );
}

#[test]
fn stream_management_counts_and_acknowledges() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    h.recv(a);
    h.send(b, SM_ENABLE);
    let enabled = h.recv(b);
    assert!(
        enabled.starts_with("<enabled xmlns='urn:xmpp:sm:3' id='")
            && enabled.contains("resume='true' max='600'"),
        "{enabled}"
    );
    h.send(b, "<enable xmlns='urn:xmpp:sm:3'/>");
    assert!(h.recv(b).contains("<unexpected-request "), "enabling twice");
    for i in 0..5 {
        h.send(a, &chat("bob@localhost/laptop", &format!("m{i}")));
    }
    let out = h.recv(b);
    assert!(
        out.ends_with("<r xmlns='urn:xmpp:sm:3'/>"),
        "the server asks after five: {out}"
    );
    h.send(
        b,
        "<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    h.recv(b);
    h.send(b, "<r xmlns='urn:xmpp:sm:3'/>");
    h.commit();
    assert_eq!(
        h.recv(b),
        "<a xmlns='urn:xmpp:sm:3' h='1'/>",
        "one stanza handled since enable"
    );
    h.send(b, "<a xmlns='urn:xmpp:sm:3' h='6'/>");
    assert_eq!(h.recv_action(b).1, None, "acknowledging all six is fine");
    h.send(b, "<a xmlns='urn:xmpp:sm:3' h='9'/>");
    let (out, action) = h.recv_action(b);
    assert!(
        out.contains("<undefined-condition ") && out.contains("only 6 were sent"),
        "{out}"
    );
    assert_eq!(action, Some(Action::Close));
}

#[test]
fn a_dropped_session_resumes_and_gets_the_unacknowledged_stanzas_once() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    h.recv(a);
    h.send(b, SM_ENABLE);
    let previd = sm_id(&h.recv(b));
    h.send(a, &chat("bob@localhost/laptop", "m1"));
    h.send(a, &chat("bob@localhost/laptop", "m2"));
    h.recv(b);
    h.send(b, "<a xmlns='urn:xmpp:sm:3' h='1'/>");
    // The TCP connection drops without a closing tag.
    h.core.handle_closed(b, h.now);
    assert!(
        !h.recv(a).contains("unavailable"),
        "a hibernating session stays online"
    );
    h.send(a, &chat("bob@localhost/laptop", "m3"));
    assert!(
        !h.recv(a).contains("error"),
        "delivered into the hibernating session"
    );
    let b2 = authenticated(&mut h, "bob");
    h.send(
        b2,
        &format!("<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='1'/>"),
    );
    // <resumed h=''/> acknowledges stanzas: it waits until their effects are stored.
    h.commit();
    let out = h.recv(b2);
    assert!(
        out.starts_with("<resumed xmlns='urn:xmpp:sm:3' h='0'"),
        "{out}"
    );
    assert!(
        !out.contains("<body>m1</body>"),
        "m1 was acknowledged: {out}"
    );
    assert_eq!(out.matches("<body>m2</body>").count(), 1, "{out}");
    assert_eq!(out.matches("<body>m3</body>").count(), 1, "{out}");
    // The resumed session is the same session: messages keep flowing to it.
    h.send(a, &chat("bob@localhost/laptop", "m4"));
    assert!(h.recv(b2).contains("<body>m4</body>"));
    // An unknown id fails cleanly.
    let b3 = authenticated(&mut h, "bob");
    h.send(b3, "<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>");
    h.commit();
    assert!(
        h.recv(b3)
            .contains("<failed xmlns='urn:xmpp:sm:3'><item-not-found ")
    );
}

#[test]
fn when_resumption_time_runs_out_unacknowledged_messages_go_offline() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    h.recv(a);
    h.send(b, SM_ENABLE);
    h.recv(b);
    h.send(a, &chat("bob@localhost/laptop", "never-acked"));
    h.core.handle_closed(b, h.now);
    h.now = Millis(u64::from(DEFAULT_SM_RESUME_SECS) * 1000 + 1);
    h.core.handle_timeout(h.now);
    assert!(
        h.core.find_full_by_text("bob@localhost/laptop").is_none(),
        "now bob is gone"
    );
    h.commit();
    let b2 = h.login("bob", "laptop");
    h.send(b2, "<presence/>");
    let out = h.recv(b2);
    assert_eq!(out.matches("<body>never-acked</body>").count(), 1, "{out}");
}

#[test]
fn a_replaced_session_hands_its_unacknowledged_messages_on() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    h.recv(a);
    h.send(b, SM_ENABLE);
    h.recv(b);
    h.send(a, &chat("bob@localhost/laptop", "in-flight"));
    let b2 = h.login("bob", "laptop");
    assert!(h.recv(b).contains("<conflict "));
    h.commit();
    h.send(b2, "<presence/>");
    assert!(h.recv(b2).contains("<body>in-flight</body>"));
}

#[test]
fn carbons_copy_sent_and_received_messages_to_other_resources() {
    let mut h = H::new(false);
    let phone = h.online("alice", "phone", 1);
    let laptop = h.online("alice", "laptop", 0);
    let b = h.online("bob", "pc", 0);
    for c in [phone, laptop] {
        h.send(
            c,
            "<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
        );
        assert!(h.recv(c).contains("type='result'"));
    }
    h.recv(b);
    h.send(phone, &chat("bob@localhost", "from-phone"));
    let copy = h.recv(laptop);
    assert!(copy.contains("<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'"), "{copy}");
    assert!(
        copy.contains("from='alice@localhost/phone'") && copy.contains("<body>from-phone</body>"),
        "{copy}"
    );
    assert!(h.recv(b).contains("from-phone"));
    h.send(b, &chat("alice@localhost/phone", "to-phone"));
    let copy = h.recv(laptop);
    assert!(
        copy.contains("<received xmlns='urn:xmpp:carbons:2'>")
            && copy.contains("<body>to-phone</body>"),
        "{copy}"
    );
    assert!(
        !h.recv(phone).contains("<received"),
        "the addressee gets the message, not a copy"
    );
    h.send(phone, "<message to='bob@localhost' type='chat'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>");
    assert_eq!(h.recv(laptop), "", "private messages are not copied");
    h.send(
        laptop,
        "<iq type='set' id='d'><disable xmlns='urn:xmpp:carbons:2'/></iq>",
    );
    h.recv(laptop);
    h.send(phone, &chat("bob@localhost", "after-disable"));
    assert_eq!(h.recv(laptop), "");
}

#[test]
fn an_inactive_client_gets_only_the_latest_presence_until_something_matters() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    // Bob sees alice's presence.
    h.send(b, "<presence to='alice@localhost' type='subscribe'/>");
    h.commit();
    h.send(a, "<presence to='bob@localhost' type='subscribed'/>");
    h.commit();
    h.recv(a);
    h.recv(b);
    h.send(b, "<inactive xmlns='urn:xmpp:csi:0'/>");
    for show in ["away", "xa", "dnd"] {
        h.send(a, &format!("<presence><show>{show}</show></presence>"));
    }
    h.send(a, "<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
    assert_eq!(h.recv(b), "", "held while inactive");
    h.send(a, &chat("bob@localhost", "wake-up"));
    let out = h.recv(b);
    assert!(
        !out.contains("<show>away</show>") && !out.contains("<show>xa</show>"),
        "older presence dropped: {out}"
    );
    let latest = out.find("<show>dnd</show>").expect("latest presence");
    let body = out.find("<body>wake-up</body>").expect("the message");
    assert!(latest < body, "held stanzas first, then the message: {out}");
    h.send(a, "<presence><show>chat</show></presence>");
    assert_eq!(h.recv(b), "");
    h.send(b, "<active xmlns='urn:xmpp:csi:0'/>");
    assert!(
        h.recv(b).contains("<show>chat</show>"),
        "flushed when active"
    );
}

#[test]
fn the_archive_keeps_both_sides_and_answers_queries_with_rsm() {
    let mut h = H::new(false);
    h.core.set_wall_ms(1_795_000_000_000);
    let a = h.online("alice", "phone", 0);
    let b = h.online("bob", "laptop", 0);
    for i in 0..3 {
        h.send(a, &chat("bob@localhost", &format!("m{i}")));
    }
    let got = h.recv(b);
    assert!(
        got.contains("<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='"),
        "{got}"
    );
    // A stanza-id forged by the sender in bob's name is removed.
    h.send(a, "<message to='bob@localhost' type='chat'><body>x</body><stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged'/></message>");
    let got = h.recv(b);
    assert!(!got.contains("id='forged'"), "{got}");
    h.commit();
    let bob_entries: Vec<_> = h
        .archive
        .iter()
        .filter_map(|r| match r {
            ArchiveRecord::Message(m) if m.account == "bob" => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bob_entries.len(), 4);
    assert!(
        bob_entries
            .iter()
            .all(|m| m.flags & flags::ARCHIVED != 0 && m.flags & flags::OUTGOING == 0)
    );
    assert!(h.archive.iter().any(|r| matches!(r, ArchiveRecord::Message(m) if m.account == "alice" && m.flags & flags::OUTGOING != 0)));
    h.send(b, "<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='f27'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set></query></iq>");
    assert_eq!(h.recv(b), "", "answered when the store has read");
    let mut reqs = Vec::new();
    h.core.take_archive_requests(&mut reqs);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].query.account, "bob");
    assert_eq!(reqs[0].query.max, 2);
    let page = ArchivePage {
        messages: bob_entries[..2].to_vec(),
        complete: false,
        count: Some(4),
        first_index: Some(0),
    };
    h.core.archive_answer(reqs[0].token, Ok(page));
    let out = h.recv(b);
    assert_eq!(
        out.matches("<result xmlns='urn:xmpp:mam:2' queryid='f27'")
            .count(),
        2,
        "{out}"
    );
    assert!(out.contains("<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2026-11-18T11:06:40Z'/><message xmlns='jabber:client'"), "{out}");
    assert!(out.contains("<fin xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><first index='0'>"), "{out}");
    assert!(out.contains("<count>4</count>"), "{out}");
    // Preferences: never archive alice.
    h.send(b, "<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>alice@localhost</jid></never></prefs></iq>");
    h.commit();
    assert!(h.recv(b).contains("<jid>alice@localhost</jid>"));
    let before = h.archive.len();
    h.send(a, &chat("bob@localhost", "not-kept"));
    h.commit();
    assert!(
        !h.archive[before..]
            .iter()
            .any(|r| matches!(r, ArchiveRecord::Message(m) if m.account == "bob")),
        "bob's archive skips alice now"
    );
    assert!(
        !h.recv(b).contains("stanza-id"),
        "no stanza-id without an archive entry"
    );
}

#[test]
fn acknowledgements_wait_for_what_they_acknowledge() {
    let mut h = H::new(false);
    let a = h.online("alice", "phone", 0);
    h.send(a, SM_ENABLE);
    h.recv(a);
    // Stored offline: not durable yet.
    h.send(a, &chat("bob@localhost", "kept"));
    h.send(a, "<r xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(h.recv(a), "", "no <a/> before the message is on disk");
    h.commit();
    assert!(h.recv(a).contains("<a xmlns='urn:xmpp:sm:3' h='1'/>"));
    let _ = IP;
}

#[test]
fn an_archive_the_store_cannot_read_answers_internal_server_error() {
    let mut h = H::new(false);
    let b = h.online("bob", "laptop", 0);
    h.send(
        b,
        "<iq type='set' id='q9'><query xmlns='urn:xmpp:mam:2' queryid='broken'/></iq>",
    );
    let mut reqs = Vec::new();
    h.core.take_archive_requests(&mut reqs);
    assert_eq!(reqs.len(), 1);
    // What the shell passes on when a damaged frame is found (StoreError::Corrupt).
    h.core.archive_answer(reqs[0].token, Err(()));
    let out = h.recv(b);
    assert!(
        out.contains("type='error'") && out.contains("id='q9'"),
        "{out}"
    );
    assert!(out.contains("<internal-server-error "), "{out}");
    assert!(!out.contains("<fin"), "{out}");
    // The session goes on.
    h.send(
        b,
        "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    assert!(h.recv(b).contains("id='p1'"));
}
