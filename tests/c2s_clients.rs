//! The real xmppd binary on loopback, driven by an independent client library (slixmpp,
//! see tests/clients/) over plain TCP, STARTTLS and direct TLS.

mod common;

use common::{Server, ServerOptions, Transport};

const ALICE: &str = "alice:wonderland";
const BOB: &str = "bob:builder";

fn server(options: ServerOptions) -> Server {
    Server::start(
        options
            .user("alice@localhost", "wonderland")
            .user("bob@localhost", "builder"),
    )
}

#[test]
fn login_with_each_mechanism_over_starttls_and_direct_tls() {
    let s = server(ServerOptions::secure());
    for transport in [Transport::StartTls, Transport::DirectTls] {
        for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
            s.scenario("login", transport, &["--mechanism", mech, "--user", ALICE]);
        }
    }
    assert!(s.log_contains("authenticated alice@localhost with SCRAM-SHA-256"));
    assert!(s.log_contains("authenticated alice@localhost with SCRAM-SHA-1"));
    assert!(s.log_contains("authenticated alice@localhost with PLAIN"));
}

#[test]
fn plaintext_login_only_where_the_config_allows_it() {
    let secure = server(ServerOptions::secure());
    let refused = secure.try_scenario(
        "login",
        Transport::Plain,
        &["--mechanism", "SCRAM-SHA-256", "--user", ALICE],
    );
    assert!(!refused.success(), "TLS is required by default:\n{refused}");
    let plain = server(ServerOptions::plain());
    for mech in ["SCRAM-SHA-256", "PLAIN"] {
        plain.scenario(
            "login",
            Transport::Plain,
            &["--mechanism", mech, "--user", ALICE],
        );
    }
}

#[test]
fn wrong_password_and_unknown_user_get_not_authorized() {
    let s = server(ServerOptions::secure());
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"] {
        s.scenario(
            "wrong-password",
            Transport::StartTls,
            &["--mechanism", mech, "--user", ALICE],
        );
    }
    assert!(
        !s.log_contains("wonderland"),
        "passwords never reach the log"
    );
}

#[test]
fn roster_add_and_remove_push_to_every_resource() {
    let s = server(ServerOptions::secure());
    s.scenario("roster", Transport::DirectTls, &["--user", ALICE]);
}

#[test]
fn subscription_dance_and_presence_on_and_off() {
    let s = server(ServerOptions::secure());
    s.scenario(
        "subscribe",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB],
    );
}

#[test]
fn messages_to_bare_and_full_jids_with_two_resources_each() {
    let s = server(ServerOptions::secure());
    let out = s.scenario(
        "messages",
        Transport::DirectTls,
        &["--user", ALICE, "--user", BOB],
    );
    assert!(!out.events("bare-delivery").is_empty() || out.success());
}

#[test]
fn second_login_with_the_same_resource_gets_conflict() {
    let s = server(ServerOptions::secure());
    s.scenario("conflict", Transport::StartTls, &["--user", ALICE]);
    assert!(s.log_contains("replaced by a new login as alice@localhost/"));
}

#[test]
fn disco_ping_and_version() {
    let s = server(ServerOptions::secure());
    s.scenario(
        "disco-ping-version",
        Transport::DirectTls,
        &["--user", ALICE],
    );
}

#[test]
fn rosters_survive_a_clean_restart_and_a_kill() {
    let mut s = server(ServerOptions::secure());
    s.scenario(
        "roster-setup",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB],
    );
    let status = s.stop();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    s.restart();
    s.scenario(
        "roster-check",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB],
    );
    // kill -9: nothing acknowledged may be lost.
    s.kill();
    s.restart();
    s.scenario(
        "roster-check",
        Transport::DirectTls,
        &["--user", ALICE, "--user", BOB],
    );
}

#[test]
fn accounts_added_while_running_work_at_once() {
    let s = server(ServerOptions::secure());
    s.user_add("carol@localhost", "pw-carol");
    s.scenario(
        "login",
        Transport::StartTls,
        &["--mechanism", "SCRAM-SHA-256", "--user", "carol:pw-carol"],
    );
    assert!(
        s.log_contains("control: add carol@localhost done"),
        "went through the running server"
    );
}

#[test]
fn certificate_from_config_is_served_and_its_fingerprint_logged() {
    // A certificate made elsewhere (here: by another server's first start).
    let first = server(ServerOptions::secure());
    let dir = first.scratch_dir().join("own-cert");
    std::fs::create_dir_all(&dir).expect("cert dir");
    let cert = dir.join("fullchain.pem");
    let key = dir.join("privkey.pem");
    std::fs::copy(first.data_dir().join("tls/cert.pem"), &cert).expect("copy cert");
    std::fs::copy(first.data_dir().join("tls/key.pem"), &key).expect("copy key");
    let fingerprint_line = first
        .log_lines()
        .into_iter()
        .find(|l| l.contains("SHA-256 fingerprint:"))
        .expect("fingerprint logged");
    let fingerprint = fingerprint_line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let config = format!(
        "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let second = server(ServerOptions::secure().config(&config));
    assert!(second.log_contains(&format!(
        "{} SHA-256 fingerprint: {fingerprint}",
        cert.display()
    )));
    assert!(
        !second.data_dir().join("tls/cert.pem").exists(),
        "nothing generated when configured"
    );
    let mut args = second.scenario_args(Transport::StartTls);
    let i = args
        .iter()
        .position(|a| a == "--cafile")
        .expect("cafile arg");
    args[i + 1] = cert.display().to_string();
    args.extend(["--user", ALICE, "--mechanism", "SCRAM-SHA-256"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_scenario("login", &args);
}
