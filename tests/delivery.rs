//! Reliable delivery against the real binary, driven by slixmpp (tests/clients/
//! scenarios_delivery.py): offline storage, stream management resumption and timeout,
//! carbons, client state indication, the message archive after a restart, and
//! acknowledged messages surviving kill -9.

mod common;

use common::{Server, ServerOptions, Transport};

const ALICE: &str = "alice:wonderland";
const BOB: &str = "bob:builder";
const CAROL: &str = "carol:singer";

fn server(config: &str) -> Server {
    let options = if config.is_empty() {
        ServerOptions::secure()
    } else {
        ServerOptions::secure().config(config)
    };
    Server::start(
        options
            .user("alice@localhost", "wonderland")
            .user("bob@localhost", "builder")
            .user("carol@localhost", "singer"),
    )
}

#[test]
fn offline_messages_are_delivered_at_the_next_login_with_a_delay() {
    let s = server("");
    s.scenario(
        "offline",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB],
    );
}

#[test]
fn a_full_offline_store_answers_service_unavailable() {
    let s = server("[limits]\nmax_offline_messages = 2\n");
    s.scenario(
        "offline-full",
        Transport::DirectTls,
        &["--user", ALICE, "--user", BOB],
    );
}

#[test]
fn a_dropped_connection_resumes_and_nothing_is_lost_or_doubled() {
    let s = server("");
    s.scenario(
        "sm-resume",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB],
    );
    assert!(
        s.log_contains("session kept 600 s for resumption"),
        "the default resumption time"
    );
    assert!(s.log_contains("resumed the session of bob@localhost/sm-b"));
}

#[test]
fn when_resumption_times_out_the_messages_go_offline() {
    let s = server("[limits]\nsm_resume_secs = 10\nsm_max_resume_secs = 10\n");
    s.scenario(
        "sm-timeout",
        Transport::DirectTls,
        &["--user", ALICE, "--user", BOB, "--resume-wait", "12"],
    );
    assert!(s.log_contains("resumption time over"));
}

#[test]
fn carbons_show_both_sides_on_every_resource() {
    let s = server("");
    s.scenario(
        "carbons",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB],
    );
}

#[test]
fn an_inactive_client_gets_only_the_latest_presence() {
    let s = server("");
    s.scenario(
        "csi",
        Transport::DirectTls,
        &["--user", ALICE, "--user", BOB],
    );
}

#[test]
fn the_archive_pages_through_250_messages_after_a_restart() {
    let mut s = server("");
    s.scenario(
        "mam-fill",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB, "--user", CAROL],
    );
    assert!(s.stop().success());
    s.restart();
    s.scenario(
        "mam-page",
        Transport::DirectTls,
        &["--user", ALICE, "--user", BOB, "--user", CAROL],
    );
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let mut s = server("");
    s.scenario(
        "offline-send-acked",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB, "--count", "30"],
    );
    s.kill();
    s.restart();
    s.scenario(
        "offline-receive",
        Transport::StartTls,
        &["--user", ALICE, "--user", BOB, "--count", "30"],
    );
}
