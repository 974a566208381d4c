//! Self-test of the integration-test harness (`tests/common/mod.rs`) and of the slixmpp
//! scenarios, against a server that already works: Debian's Prosody, dressed up as the
//! xmppd CLI by `prosody-as-xmppd.sh`. It checks the harness itself (start, readiness
//! lines, users, stop/kill/restart, raw XML, scenario runner), not xmppd, so it is not
//! part of `cargo test` (Cargo.toml: `test = false`) and needs `apt-get install prosody`:
//!
//! ```sh
//! cargo test --test clients
//! ```

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{DOMAIN, RawClient, Server, ServerOptions, Transport};

fn prosody_shim() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/prosody-as-xmppd.sh")
}

fn start(options: ServerOptions) -> Server {
    Server::start(options.binary(prosody_shim()))
}

fn jid(user: &str) -> String {
    format!("{user}@{DOMAIN}")
}

/// Creates `user` (unique per TLS mode) and returns the scenario's `--user` value.
fn fresh_user(server: &Server, user: &str, transport: Transport) -> String {
    let name = format!("{user}-{}", transport.as_arg());
    server.user_add(&jid(&name), "pw");
    format!("{name}:pw")
}

#[test]
fn every_scenario_in_every_transport() {
    let server = start(ServerOptions::plain());
    for transport in Transport::ALL {
        let alice = fresh_user(&server, "alice", transport);
        let bob = fresh_user(&server, "bob", transport);
        for mechanism in ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
            server.scenario(
                "login",
                transport,
                &["--mechanism", mechanism, "--user", &alice],
            );
            server.scenario(
                "wrong-password",
                transport,
                &["--mechanism", mechanism, "--user", &alice],
            );
        }
        server.scenario("roster", transport, &["--user", &alice]);
        server.scenario("messages", transport, &["--user", &alice, "--user", &bob]);
        server.scenario("conflict", transport, &["--user", &alice]);
        server.scenario("disco-ping-version", transport, &["--user", &alice]);
        let out = server.scenario("subscribe", transport, &["--user", &alice, "--user", &bob]);
        assert!(
            !out.events("roster-push-checked").is_empty(),
            "the scenario's observations are visible to the test:\n{out}"
        );
    }
    // The listening line and the log collector saw Prosody's readiness.
    assert!(server.log_contains("xmppd ready"));
}

#[test]
fn secure_defaults_refuse_plain_tcp_logins() {
    let server = start(ServerOptions::secure().user(&jid("alice"), "pw"));
    let out = server.try_scenario("login", Transport::Plain, &["--user", "alice:pw"]);
    assert!(
        !out.success(),
        "a login without TLS must fail by default:\n{out}"
    );
    assert!(out.stderr.contains("FAILED login"), "{out}");
    server.scenario("login", Transport::StartTls, &["--user", "alice:pw"]);
    server.scenario("login", Transport::DirectTls, &["--user", "alice:pw"]);
}

#[test]
fn roster_survives_stop_and_kill() {
    let users = ["keep-a", "keep-b", "keep-c"];
    let mut options = ServerOptions::secure();
    for user in users {
        options = options.user(&jid(user), "pw");
    }
    let mut server = start(options);
    let args = [
        "--user",
        "keep-a:pw",
        "--user",
        "keep-b:pw",
        "--user",
        "keep-c:pw",
    ];
    server.scenario("roster-setup", Transport::StartTls, &args);
    let first_port = server.starttls_addr.port();

    let status = server.stop();
    assert!(
        status.success(),
        "SIGTERM should be a clean exit, got {status}"
    );
    server.restart();
    assert!(server.is_running());
    assert_ne!(server.starttls_addr.port(), 0);
    server.scenario("roster-check", Transport::DirectTls, &args);

    server.kill();
    assert!(!server.is_running());
    server.restart();
    server.scenario("roster-check", Transport::StartTls, &args);
    // A fresh port each run, and the log keeps every run.
    let _ = first_port;
    let runs = server
        .log_lines()
        .iter()
        .filter(|l| l.contains("===== xmppd run"))
        .count();
    assert_eq!(runs, 3);
}

#[test]
fn raw_transcript_of_stream_negotiation() {
    let server = start(ServerOptions::plain());
    let mut client: RawClient = server.raw_client();
    client.open_stream(DOMAIN);
    let header = client.recv_until(">", Duration::from_secs(10));
    assert!(
        header.contains("<?xml") || header.contains("stream:stream"),
        "{header}"
    );
    let features = client.recv_until("</stream:features>", Duration::from_secs(10));
    assert!(
        features.contains("urn:ietf:params:xml:ns:xmpp-tls"),
        "STARTTLS is offered:\n{}",
        client.transcript()
    );
    assert!(
        features.contains("<mechanism>PLAIN</mechanism>"),
        "{features}"
    );
    // A pattern that never comes times out instead of hanging.
    let missing = client.try_recv_until("<never/>", Duration::from_millis(300));
    assert!(missing.is_err());
    // RFC 6120 §4.4: closing our stream makes the server close its own and the TCP.
    client.send("</stream:stream>");
    let rest = client.recv_until_closed(Duration::from_secs(10));
    assert!(rest.contains("</stream:stream>"), "{}", client.transcript());
}
