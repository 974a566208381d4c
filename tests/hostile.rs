//! Bad input, limits and floods against the real binary: every case gets the right error,
//! the offending connection is closed where the RFC says so, and everyone else goes on.

mod common;

use std::time::{Duration, Instant};

use common::{RawClient, Server, ServerOptions, plain_auth, rss_kib};

const T: Duration = Duration::from_secs(10);

fn server(extra_config: &str) -> Server {
    let config = format!(
        "[c2s]\nrequire_encryption = false\nallow_plain_unencrypted = true\n{extra_config}"
    );
    Server::start(
        ServerOptions::plain()
            .config(&config)
            .user("alice@localhost", "secret")
            .user("bob@localhost", "secret"),
    )
}

/// Opens a stream, sends `input`, and returns everything until the server closes.
fn after_header(s: &Server, input: &[u8]) -> String {
    let mut c = s.raw_client();
    c.open_stream("localhost");
    c.recv_until("</stream:features>", T);
    c.send_bytes(input);
    c.recv_until_closed(T)
}

fn assert_stream_error(out: &str, condition: &str, what: &str) {
    assert!(
        out.contains(&format!(
            "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )),
        "{what}: expected <{condition}/>, got {out}"
    );
    assert!(
        out.ends_with("</stream:stream>"),
        "{what}: stream closed properly: {out}"
    );
}

#[test]
fn not_well_formed_input() {
    let s = server("");
    let cases: &[(&str, &[u8])] = &[
        ("bad nesting", b"<message><body></message></body>"),
        (
            "bad attribute syntax",
            b"<message to=bob@localhost><body>x</body></message>",
        ),
        (
            "duplicate attribute",
            b"<message to='a@localhost' to='b@localhost'/>",
        ),
        ("unknown entity", b"<message><body>&nbsp;</body></message>"),
        ("invalid UTF-8", b"<message><body>\xff\xfe</body></message>"),
        (
            "unbound prefix",
            b"<foo:message><body>x</body></foo:message>",
        ),
        (
            "invalid character reference",
            b"<message><body>&#0;</body></message>",
        ),
    ];
    for (what, input) in cases {
        assert_stream_error(&after_header(&s, input), "not-well-formed", what);
    }
}

#[test]
fn restricted_xml_is_refused_without_growing_memory() {
    let s = server("");
    let cases: &[(&str, &[u8])] = &[
        ("comment", b"<!-- hello -->"),
        ("processing instruction", b"<?evil instruction?>"),
        ("DOCTYPE", b"<!DOCTYPE foo>"),
    ];
    for (what, input) in cases {
        assert_stream_error(&after_header(&s, input), "restricted-xml", what);
    }
    let pid = s.pid().expect("server pid");
    let before = rss_kib(pid).expect("rss");
    // Billion laughs and quadratic blowup, before the stream header as attackers send
    // them: refused at the first `<!`, nothing buffered or expanded.
    let mut laughs = String::from("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>");
    for i in 1..10 {
        laughs.push_str(&format!(
            "<!ENTITY lol{i} '{}'>",
            format!("&lol{};", i - 1).repeat(10)
        ));
    }
    laughs.push_str("]><lolz>&lol9;</lolz>");
    let quadratic = format!(
        "<!DOCTYPE q [<!ENTITY a '{}'>]><q>{}</q>",
        "x".repeat(50_000),
        "&a;".repeat(50_000)
    );
    for doc in [laughs, quadratic] {
        for _ in 0..20 {
            let mut c = s.raw_client();
            let _ = c.try_send(&doc);
            let out = c.recv_until_closed(T);
            assert_stream_error(&out, "restricted-xml", "entity expansion attack");
        }
    }
    let after = rss_kib(pid).expect("rss");
    assert!(
        after < before + 2048,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn negotiation_errors_before_and_after_auth() {
    let s = server("");
    // Before authentication, every stanza (iq and message included) is not-authorized.
    for stanza in [
        "<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<message to='bob@localhost'><body>hi</body></message>",
    ] {
        assert_stream_error(
            &after_header(&s, stanza.as_bytes()),
            "not-authorized",
            stanza,
        );
    }
    assert_stream_error(
        &after_header(&s, b"<handshake xmlns='jabber:component:accept'/>"),
        "unsupported-stanza-type",
        "non-stanza",
    );
}

#[test]
fn oversized_deep_and_wide_elements_are_policy_violations() {
    let s = server("[limits]\nmax_stanza_bytes = 16384\nmax_stanza_bytes_preauth = 4096\n");
    let big_preauth = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        "A".repeat(5000)
    );
    assert_stream_error(
        &after_header(&s, big_preauth.as_bytes()),
        "policy-violation",
        "pre-auth size",
    );
    let mut bystander = s.raw_client();
    bystander.login("bob", "secret", "bystander");

    let mut c = s.raw_client();
    c.login("alice", "secret", "big");
    // The limit is advertised (XEP-0478) after login.
    c.send(&format!(
        "<message to='bob@localhost'><body>{}</body></message>",
        "x".repeat(17_000)
    ));
    assert_stream_error(
        &c.recv_until_closed(T),
        "policy-violation",
        "post-auth size",
    );

    let mut c = s.raw_client();
    c.login("alice", "secret", "deep");
    c.send(&format!(
        "<message to='bob@localhost'>{}{}</message>",
        "<a>".repeat(40),
        "</a>".repeat(40)
    ));
    assert_stream_error(&c.recv_until_closed(T), "policy-violation", "depth");

    let mut c = s.raw_client();
    c.login("alice", "secret", "wide");
    let attrs: String = (0..100).map(|i| format!(" a{i}='x'")).collect();
    c.send(&format!("<message to='bob@localhost'{attrs}/>"));
    assert_stream_error(&c.recv_until_closed(T), "policy-violation", "attributes");

    bystander
        .send("<iq type='get' id='still-here' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(
        bystander
            .recv_until("id='still-here'", T)
            .contains("type='result'"),
        "others are unaffected"
    );
}

#[test]
fn the_limit_is_advertised_with_xep_0478() {
    let s = server("[limits]\nmax_stanza_bytes = 16384\n");
    let mut c = s.raw_client();
    c.open_stream("localhost");
    let f = c.recv_until("</stream:features>", T);
    assert!(
        f.contains("<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>8192</max-bytes>"),
        "{f}"
    );
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        plain_auth("alice", "secret")
    ));
    c.recv_until("<success", T);
    c.open_stream("localhost");
    let f = c.recv_until("</stream:features>", T);
    assert!(
        f.contains("<max-bytes>16384</max-bytes><idle-seconds>300</idle-seconds>"),
        "{f}"
    );
}

#[test]
fn stanza_faults_are_stanza_errors() {
    let s = server("");
    let mut c = s.raw_client();
    c.login("alice", "secret", "r");
    c.send("<message to='alice@@localhost' id='m'><body>x</body></message>");
    assert!(c.recv_until("</message>", T).contains("<jid-malformed "));
    for (iq, what) in [
        (
            "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            "no id",
        ),
        (
            "<iq type='get' id='two' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
            "two payloads",
        ),
        (
            "<iq type='query' id='typ' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            "invalid type",
        ),
    ] {
        c.send(iq);
        let out = c.recv_until("</iq>", T);
        assert!(out.contains("<bad-request "), "{what}: {out}");
    }
}

#[test]
fn unauthenticated_connections_are_closed_after_the_login_timeout() {
    let s = server("[limits]\nauth_timeout_secs = 1\n");
    let mut c = s.raw_client();
    c.open_stream("localhost");
    let start = Instant::now();
    let out = c.recv_until_closed(T);
    assert!(out.contains("<connection-timeout "), "{out}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
}

#[test]
fn silent_sessions_are_probed_with_a_ping() {
    let s = server("[limits]\nidle_secs = 10\n");
    let mut c = s.raw_client();
    c.login("alice", "secret", "quiet");
    let ping = c.recv_until("</iq>", Duration::from_secs(25));
    assert!(
        ping.contains("<ping xmlns='urn:xmpp:ping'/>") && ping.contains("type='get'"),
        "{ping}"
    );
}

#[test]
fn a_peer_that_does_not_read_loses_only_its_own_connection() {
    let s = server(
        "[limits]\ninbound_bytes_per_sec = 16777216\ninbound_burst_bytes = 16777216\nmax_outbound_queue_bytes = 65536\n",
    );
    let mut sleeper = s.raw_client();
    sleeper.login("bob", "secret", "sleeper");
    let mut flooder = s.raw_client();
    flooder.login("alice", "secret", "flooder");
    let body = "y".repeat(8000);
    let msg =
        format!("<message to='bob@localhost/sleeper' type='chat'><body>{body}</body></message>");
    // Enough to fill the kernel's socket buffers on loopback and then the server's queue.
    // Once the sleeper is gone its messages bounce, so the flooder reads its errors as it
    // goes (a client that never reads would rightly lose its own connection too).
    let mut sent = 0usize;
    while sent < 64 * 1024 * 1024 && !s.log_contains("outbound queue over") {
        flooder.send(&msg);
        flooder.discard_available();
        sent += msg.len();
    }
    assert!(
        s.log_contains("outbound queue over"),
        "the sleeper's queue overflowed after {sent} bytes"
    );
    flooder.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(
        flooder
            .recv_until("id='alive'", Duration::from_secs(30))
            .contains("type='result'")
    );
    assert!(s.log_contains("session of bob@localhost/sleeper ended"));
    assert!(!s.log_contains("session of alice@localhost/flooder ended"));
}

#[test]
fn inbound_rate_is_throttled_without_dropping_stanzas() {
    // 8 KiB/s after a 16 KiB burst: 48 KiB take about 4 seconds to be read.
    let s = server(
        "[limits]\ninbound_bytes_per_sec = 8192\ninbound_burst_bytes = 16384\nmax_stanza_bytes = 8192\n",
    );
    let mut receiver = s.raw_client();
    receiver.login("bob", "secret", "rx");
    receiver.send("<presence/>");
    receiver.recv_until("to='bob@localhost'/>", T);
    let mut sender = s.raw_client();
    sender.login("alice", "secret", "tx");
    let body = "z".repeat(1000);
    let start = Instant::now();
    let count = 48;
    for i in 0..count {
        sender.send(&format!(
            "<message to='bob@localhost/rx' id='m{i}'><body>{body}</body></message>"
        ));
    }
    sender.send("<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    sender.recv_until("id='done'", Duration::from_secs(30));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the rate was enforced: {took:?}"
    );
    for i in 0..count {
        receiver.recv_until(&format!("id='m{i}'"), T);
    }
}

#[test]
fn connections_per_address_are_capped() {
    let s = server("[limits]\nmax_connections_per_ip = 3\n");
    let mut held: Vec<RawClient> = (0..3).map(|_| s.raw_client()).collect();
    for c in &mut held {
        c.open_stream("localhost");
        c.recv_until("</stream:features>", T);
    }
    let mut extra = s.raw_client();
    let out = extra.recv_until_closed(T);
    assert!(
        out.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let mut again = s.raw_client();
    again.login("alice", "secret", "again");
}

#[test]
fn failed_logins_slow_down_and_are_logged_once() {
    let s = server("[limits]\nmax_auth_attempts = 5\n");
    let bad = plain_auth("alice", "wrong");
    let mut c = s.raw_client();
    c.open_stream("localhost");
    c.recv_until("</stream:features>", T);
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{bad}</auth>"
        ));
        c.recv_until("</failure>", T);
        times.push(start.elapsed());
    }
    let mut c = s.raw_client();
    c.open_stream("localhost");
    c.recv_until("</stream:features>", T);
    let start = Instant::now();
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{bad}</auth>"
    ));
    c.recv_until("</failure>", T);
    let slow = start.elapsed();
    assert!(
        times.iter().all(|t| *t < Duration::from_millis(900)),
        "the first failures are quick: {times:?}"
    );
    assert!(
        slow >= Duration::from_millis(900),
        "after five failures the answer waits: {slow:?}"
    );
    let warnings = s
        .log_lines()
        .iter()
        .filter(|l| l.contains("repeated failed logins"))
        .count();
    assert_eq!(
        warnings, 2,
        "one line for the address and one for the account, not one per attempt"
    );
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = server("");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    };
    let d = s.data_dir();
    assert_eq!(mode(d), 0o700);
    assert_eq!(mode(&d.join("tls/key.pem")), 0o600);
    assert_eq!(mode(&d.join("secret")), 0o600);
    assert_eq!(mode(&d.join("store")), 0o700);
    assert_eq!(mode(&d.join("store/log")), 0o600);
}
