//! Integration tests of the personal data services (issue 7) against the real binary,
//! driven by slixmpp through `tests/clients/personal.py`: PEP with caps-driven
//! notifications and avatars, OMEMO key publication with open access and the
//! publish-options precondition path, bookmarks through both XEPs, private storage,
//! blocking, invite-gated registration, and persistence across a restart.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{COMMAND_TIMEOUT, DOMAIN, ScenarioOutput, Server, ServerOptions, Transport};

fn script(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(file)
}

/// Runs a scenario of personal.py (same arguments as scenarios.py); `env` is passed on.
fn scenario(server: &Server, name: &str, users: &[&str], env: &[(&str, &str)]) -> ScenarioOutput {
    scenario_of(server, "personal.py", name, users, env)
}

fn scenario_of(
    server: &Server,
    file: &str,
    name: &str,
    users: &[&str],
    env: &[(&str, &str)],
) -> ScenarioOutput {
    let python = common::client_python();
    let mut args = server.scenario_args(Transport::StartTls);
    for u in users {
        args.push("--user".into());
        args.push((*u).to_string());
    }
    let mut command = Command::new(python);
    command.arg(script(file)).arg(name).args(&args);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = common::run_with_timeout(&mut command, common::SCENARIO_TIMEOUT);
    let out = ScenarioOutput {
        command: format!("{file} {name} {}", args.join(" ")),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if !out.success() {
        server.fail(&format!("{out}"));
    }
    out
}

fn with_users(options: ServerOptions, users: &[&str]) -> ServerOptions {
    users
        .iter()
        .fold(options, |o, u| o.user(&format!("{u}@{DOMAIN}"), "pw"))
}

#[test]
fn pep_notifications_follow_entity_caps_and_avatars_convert() {
    let server = Server::start(with_users(ServerOptions::secure(), &["alice", "bob"]));
    let out = scenario(&server, "pep-caps-avatar", &["alice:pw", "bob:pw"], &[]);
    // Bob's client announced +notify only through its caps (XEP-0115), which the server
    // had to ask it about: the notification proves the whole chain.
    assert!(!out.events("caps-notify-delivered").is_empty(), "{out}");
}

#[test]
fn omemo_keys_are_readable_with_open_access_and_preconditions_are_checked() {
    let server = Server::start(with_users(ServerOptions::secure(), &["alice", "bob"]));
    let out = scenario(&server, "omemo-keys", &["alice:pw", "bob:pw"], &[]);
    assert!(!out.events("omemo-keys-fetched").is_empty(), "{out}");
    assert!(!out.events("precondition-not-met").is_empty(), "{out}");
}

#[test]
fn omemo_messages_between_two_independent_clients() {
    // slixmpp-omemo (python-omemo): identities, device lists and bundles in PEP with
    // open access and publish-options, device discovery through +notify, then one
    // encrypted message each way.
    let server = Server::start(with_users(ServerOptions::secure(), &["alice", "bob"]));
    let out = scenario_of(
        &server,
        "omemo_scenario.py",
        "omemo-chat",
        &["alice:pw", "bob:pw"],
        &[],
    );
    assert!(!out.events("omemo-exchanged").is_empty(), "{out}");
}

#[test]
fn bookmarks_and_private_storage() {
    let server = Server::start(with_users(ServerOptions::secure(), &["alice"]));
    scenario(&server, "bookmarks-private", &["alice:pw"], &[]);
}

#[test]
fn blocking_is_enforced_and_pushed() {
    let server = Server::start(with_users(ServerOptions::secure(), &["alice", "bob"]));
    let out = scenario(&server, "blocking", &["alice:pw", "bob:pw"], &[]);
    assert!(!out.events("block-enforced").is_empty(), "{out}");
}

#[test]
fn personal_data_survives_a_restart() {
    let mut server = Server::start(with_users(ServerOptions::secure(), &["alice", "bob"]));
    scenario(&server, "personal-setup", &["alice:pw", "bob:pw"], &[]);
    server.stop();
    server.restart();
    let out = scenario(&server, "personal-check", &["alice:pw", "bob:pw"], &[]);
    assert!(!out.events("personal-data-kept").is_empty(), "{out}");
}

/// `xmppd invite` against the running server; returns the token of the printed URI.
fn invite(server: &Server) -> String {
    let mut command = Command::new(common::xmppd_binary());
    command.args(["invite", "--no-qr", "--data-dir"]);
    command.arg(server.data_dir());
    if let Some(config) = server.config_path() {
        command.arg("--config").arg(config);
    }
    let output = common::run_with_timeout(&mut command, COMMAND_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "xmppd invite failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let uri = stdout.lines().next().unwrap_or("").to_string();
    let prefix = format!("xmpp:{DOMAIN}?register;preauth=");
    let token = uri
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("URI {uri:?}"));
    assert!(token.len() >= 16 && token.chars().all(|c| c.is_ascii_alphanumeric()));
    token.to_string()
}

#[test]
fn invite_gated_registration_succeeds_once() {
    let server = Server::start(
        ServerOptions::secure().config("[register]\nenabled = true\nmode = \"invite\"\n"),
    );
    let token = invite(&server);
    let out = scenario(
        &server,
        "register-invite",
        &["juliet:s3cret-pw"],
        &[("XMPPD_INVITE_TOKEN", &token)],
    );
    assert!(!out.events("invite-single-use").is_empty(), "{out}");
    // Persisted: the invitation is gone and the account is there after a restart.
    assert!(server.log_contains("registered juliet@localhost"));
}

#[test]
fn invite_prints_a_qr_code_when_built_with_it() {
    let dir = common::TempDir::new("invite");
    let output = common::run_with_timeout(
        Command::new(common::xmppd_binary())
            .args(["invite", "--user", "juliet", "--data-dir"])
            .arg(dir.path()),
        COMMAND_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("xmpp:juliet@localhost?register;preauth="),
        "{stdout}"
    );
    if cfg!(feature = "qr") {
        assert!(
            stdout.contains('█'),
            "a QR code in block characters: {stdout}"
        );
    }
    // The name is reserved: a second invitation for it is refused.
    let again = common::run_with_timeout(
        Command::new(common::xmppd_binary())
            .args(["invite", "--user", "juliet", "--no-qr", "--data-dir"])
            .arg(dir.path()),
        COMMAND_TIMEOUT,
    );
    assert!(!again.status.success());
}
