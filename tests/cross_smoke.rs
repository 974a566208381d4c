//! Board smoke tests.
//!
//! 1. The binary a board runs, started on this machine (under qemu-user when it was built for
//!    another CPU): two accounts log in over STARTTLS and direct TLS from the host and
//!    exchange messages, a roster is built, the server is stopped with SIGTERM and started
//!    again, and the roster is still there.
//! 2. A store written by that binary opens with the native one and the other way round:
//!    the store format must not depend on the byte order or word size of the machine that
//!    wrote it (an SD card or a backup moves between a big-endian MIPS router and a PC).
//! 3. The OpenWrt package's UCI -> TOML translation gives a config `xmppd check-config`
//!    accepts, the shipped example of it is what the script produces, and a mistyped
//!    option is reported rather than dropped; the procd init script, run with stubs for
//!    OpenWrt's shell functions, starts the server as user xmppd with respawn and a reload
//!    trigger, writes the DNS records, and refuses a bad config or a missing USB data dir.
//!
//! Environment (CI sets both; unset, everything runs against this build's native binary so
//! that `cargo test` always exercises the tests):
//! - `XMPPD_SMOKE_BIN`: the xmppd binary under test, e.g. from `board/build.sh`.
//! - `XMPPD_SMOKE_QEMU`: the command that runs it, e.g. `qemu-mips-static -cpu 24Kc`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, ServerOptions, TempDir, Transport};

const USERS: [(&str, &str); 3] = [
    ("alice@localhost", "alice-secret"),
    ("bob@localhost", "bob-secret"),
    ("carol@localhost", "carol-secret"),
];

/// The binary under test and how to start it.
struct Subject {
    /// None: this build's native xmppd.
    binary: Option<PathBuf>,
    emulated: bool,
    description: String,
    /// Holds the qemu wrapper script.
    _wrapper_dir: Option<TempDir>,
}

impl Subject {
    fn from_env() -> Subject {
        let Some(bin) = std::env::var_os("XMPPD_SMOKE_BIN").filter(|v| !v.is_empty()) else {
            return Subject {
                binary: None,
                emulated: false,
                description: "native xmppd of this build".into(),
                _wrapper_dir: None,
            };
        };
        let bin = std::path::absolute(PathBuf::from(bin)).expect("absolute path");
        assert!(
            bin.is_file(),
            "XMPPD_SMOKE_BIN={} does not exist",
            bin.display()
        );
        let qemu: Vec<String> = std::env::var("XMPPD_SMOKE_QEMU")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if qemu.is_empty() {
            return Subject {
                description: bin.display().to_string(),
                binary: Some(bin),
                emulated: false,
                _wrapper_dir: None,
            };
        }
        // The harness runs the binary directly (for `serve` and `user add`); a script that
        // execs qemu keeps the pid, so SIGTERM reaches qemu, which passes it to xmppd.
        let dir = TempDir::new("qemu-wrapper");
        let wrapper = dir.path().join("xmppd");
        let mut words = qemu.clone();
        words.push(bin.display().to_string());
        let quoted: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
        let script = format!("#!/bin/sh\nexec {} \"$@\"\n", quoted.join(" "));
        std::fs::write(&wrapper, script).expect("write the qemu wrapper");
        make_executable(&wrapper);
        Subject {
            description: format!("{} under {}", bin.display(), qemu.join(" ")),
            binary: Some(wrapper),
            emulated: true,
            _wrapper_dir: Some(dir),
        }
    }

    /// A secure (TLS required) server running the binary under test.
    fn options(&self) -> ServerOptions {
        let options = ServerOptions::secure();
        match &self.binary {
            Some(b) => options.binary(b),
            None => options,
        }
    }

    /// Each scenario step waits up to 10 s by default; under emulation the server is a few
    /// times slower, so give it room (only there: natively a slow step is a bug).
    fn step_timeout(&self) -> &'static str {
        if self.emulated { "40" } else { "10" }
    }
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path).expect("stat").permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions).expect("chmod");
}

fn with_users(mut options: ServerOptions, count: usize) -> ServerOptions {
    for (jid, password) in USERS.iter().take(count) {
        options = options.user(jid, password);
    }
    options
}

/// `--user alice:... --user bob:...` for the first `count` accounts, plus the step timeout.
fn scenario_args(count: usize, step_timeout: &str) -> Vec<String> {
    let mut args = Vec::new();
    for (jid, password) in USERS.iter().take(count) {
        let local = jid.split('@').next().unwrap_or(jid);
        args.push("--user".to_string());
        args.push(format!("{local}:{password}"));
    }
    args.push("--step-timeout".to_string());
    args.push(step_timeout.to_string());
    args
}

fn run(server: &Server, scenario: &str, transport: Transport, users: usize, step_timeout: &str) {
    let args = scenario_args(users, step_timeout);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server.scenario(scenario, transport, &args);
}

fn stop_cleanly(server: &mut Server) {
    let status = server.stop();
    if !status.success() {
        server.fail(&format!(
            "SIGTERM should end xmppd with status 0, got {status}"
        ));
    }
}

#[test]
fn board_binary_chats_over_tls_and_keeps_the_roster_across_a_restart() {
    let subject = Subject::from_env();
    eprintln!("binary under test: {}", subject.description);
    let step = subject.step_timeout();
    let mut server = Server::start(with_users(subject.options(), 3));

    // Two accounts from the host, two devices each, over direct TLS (XEP-0368).
    run(&server, "messages", Transport::DirectTls, 2, step);
    // Roster with groups, a mutual subscription and a pending one, over STARTTLS.
    run(&server, "roster-setup", Transport::StartTls, 3, step);

    stop_cleanly(&mut server);
    server.restart();
    run(&server, "roster-check", Transport::DirectTls, 3, step);
    stop_cleanly(&mut server);
}

/// Copies what `from`'s server stored (accounts, rosters, pending requests, and the secret
/// they depend on) over `to`'s; both servers are stopped. `to` keeps its own certificate.
fn move_store(from: &Server, to: &Server) {
    let (src, dst) = (from.data_dir(), to.data_dir());
    let store = dst.join("store");
    std::fs::remove_dir_all(&store).expect("remove the target store");
    std::fs::create_dir_all(&store).expect("create the target store");
    let mut copied = 0;
    for entry in std::fs::read_dir(src.join("store")).expect("read the source store") {
        let entry = entry.expect("store entry");
        let name = entry.file_name();
        // The lock is an flock()ed file: its contents mean nothing.
        if name == "lock" {
            continue;
        }
        std::fs::copy(entry.path(), store.join(&name)).expect("copy a store file");
        copied += 1;
    }
    assert!(copied > 0, "{} holds no store files", src.display());
    if src.join("secret").exists() {
        std::fs::copy(src.join("secret"), dst.join("secret")).expect("copy the secret");
    }
}

/// Compaction at 4 KiB of log, so that a snapshot is written too, not only log frames.
const SMALL_LOG: &str = "[storage]\ncompact_log_bytes = 4096\nflush_delay_ms = 0\n";
/// Accounts beyond the scenario's three that push the log past 4 KiB.
const FILLER_ACCOUNTS: usize = 40;

/// The three scenario accounts plus filler ones, and the small-log config.
fn store_writer(options: ServerOptions) -> ServerOptions {
    let mut options = with_users(options.config(SMALL_LOG), 3);
    for i in 0..FILLER_ACCOUNTS {
        options = options.user(&format!("filler{i}@localhost"), "filler-secret");
    }
    options
}

/// The writer compacted at least once: the move carries a snapshot, not only a log.
fn assert_snapshot_written(server: &Server) {
    let snapshot = server.data_dir().join("store").join("snapshot");
    if !snapshot.is_file() {
        server.fail(&format!(
            "no {} after roster-setup with {FILLER_ACCOUNTS} filler accounts: \
             the test would not cover the snapshot format",
            snapshot.display()
        ));
    }
}

#[test]
fn store_moves_between_the_board_binary_and_the_native_one() {
    let subject = Subject::from_env();
    eprintln!("binary under test: {}", subject.description);
    let step = subject.step_timeout();
    let native_step = "10";

    // Written by the board binary, read by the native one.
    let mut board = Server::start(store_writer(subject.options()));
    run(&board, "roster-setup", Transport::StartTls, 3, step);
    stop_cleanly(&mut board);
    assert_snapshot_written(&board);
    let mut native = Server::start(ServerOptions::secure().config(SMALL_LOG));
    // This server only made its data dir: nothing to stop cleanly.
    native.kill();
    move_store(&board, &native);
    native.restart();
    run(
        &native,
        "roster-check",
        Transport::DirectTls,
        3,
        native_step,
    );
    stop_cleanly(&mut native);

    // Written by the native binary, read by the board one.
    let mut native = Server::start(store_writer(ServerOptions::secure()));
    run(
        &native,
        "roster-setup",
        Transport::DirectTls,
        3,
        native_step,
    );
    stop_cleanly(&mut native);
    assert_snapshot_written(&native);
    let mut board = Server::start(subject.options().config(SMALL_LOG));
    board.kill();
    move_store(&native, &board);
    board.restart();
    run(&board, "roster-check", Transport::StartTls, 3, step);
    stop_cleanly(&mut board);
}

// ---------------------------------------------------------------------------------------
// OpenWrt: UCI -> TOML
// ---------------------------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `sh uci-to-toml.sh < uci_file`, as the init script runs it (with `uci export`).
fn translate_uci(uci: &Path) -> String {
    let script = repo().join("board/openwrt/files/uci-to-toml.sh");
    let input = std::fs::File::open(uci).expect("open the UCI file");
    let out = Command::new("sh")
        .arg(&script)
        .stdin(input)
        .output()
        .expect("run uci-to-toml.sh");
    assert!(
        out.status.success(),
        "uci-to-toml.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn check_config(toml: &str, dir: &TempDir) -> std::process::Output {
    let file = dir.path().join("xmppd.toml");
    std::fs::write(&file, toml).expect("write the generated config");
    Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .expect("run xmppd check-config")
}

#[test]
fn openwrt_uci_config_translates_to_a_config_that_passes_check_config() {
    let toml = translate_uci(&repo().join("board/openwrt/files/xmppd.config"));
    let dir = TempDir::new("uci");
    let out = check_config(&toml, &dir);
    assert!(
        out.status.success(),
        "generated config fails check-config:\n{toml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The UCI booleans and numbers arrive typed, the lists as arrays, the init-only
    // options not at all.
    for line in [
        "domain = \"chat.lan\"",
        "listen = [\"[::]:5222\"]",
        "require_encryption = true",
        "flush_delay_ms = 1000",
        "max_connections = 32",
    ] {
        assert!(
            toml.lines().any(|l| l == line),
            "missing {line:?} in\n{toml}"
        );
    }
    assert!(
        !toml.contains("enabled"),
        "init-only option leaked:\n{toml}"
    );
    assert!(
        !toml.contains("[tls]"),
        "an all-unset section gives no table:\n{toml}"
    );
    // The example shipped for people reading the package is what the script makes.
    let example =
        std::fs::read_to_string(repo().join("board/openwrt/xmppd.generated.example.toml"))
            .expect("read the shipped example");
    assert_eq!(
        example, toml,
        "board/openwrt/xmppd.generated.example.toml is stale: regenerate it with\n  \
         sh board/openwrt/files/uci-to-toml.sh < board/openwrt/files/xmppd.config"
    );
}

#[test]
fn uci_quoting_lists_and_mistakes_reach_check_config() {
    let dir = TempDir::new("uci-edge");
    let uci = dir.path().join("xmppd");
    // As `uci export` writes it: a quote inside a value is '\'' .
    std::fs::write(
        &uci,
        "package xmppd\n\n\
         config xmppd 'main'\n\
         \toption enabled '1'\n\
         \toption dns '0'\n\
         \toption domain 'chat.example'\n\
         \toption data_dir '/srv/it'\\''s \"here\"'\n\n\
         config c2s 'c2s'\n\
         \tlist listen '127.0.0.1:5222'\n\
         \tlist listen \"[::1]:5222\"\n\
         \toption require_encryption '0'\n\
         \toption allow_plain_unencrypted 'yes'\n\n\
         config tls 'tls'\n\
         \toption certificate ''\n\
         \toption key ''\n",
    )
    .expect("write UCI");
    let toml = translate_uci(&uci);
    assert!(
        toml.contains("data_dir = \"/srv/it's \\\"here\\\"\"\n"),
        "quotes survive:\n{toml}"
    );
    assert!(
        toml.contains("listen = [\"127.0.0.1:5222\", \"[::1]:5222\"]\n"),
        "{toml}"
    );
    assert!(toml.contains("require_encryption = false\n"), "{toml}");
    assert!(toml.contains("allow_plain_unencrypted = true\n"), "{toml}");
    assert!(!toml.contains("dns"), "{toml}");
    let out = check_config(&toml, &dir);
    assert!(
        out.status.success(),
        "{toml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A typo in the UCI file is named by check-config (exit 78), not silently ignored.
    std::fs::write(
        &uci,
        "config xmppd 'main'\n\toption domain 'chat.lan'\n\
         config limits 'limits'\n\toption max_conections '10'\n",
    )
    .expect("write UCI");
    let toml = translate_uci(&uci);
    let out = check_config(&toml, &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{toml}\n{err}");
    assert!(err.contains("limits.max_conections"), "{err}");
}

// ---------------------------------------------------------------------------------------
// OpenWrt: the procd init script, with stubs for OpenWrt's shell functions
// ---------------------------------------------------------------------------------------

struct InitRun {
    status_line: String,
    calls: String,
    dns: String,
}

/// `board/openwrt/test-init.sh` with the given UCI file (None: the shipped one).
fn run_init_script(dir: &TempDir, uci: Option<&str>, data_dir: Option<&str>) -> InitRun {
    let work = dir.path().join("init");
    let mut command = Command::new("sh");
    command
        .arg(repo().join("board/openwrt/test-init.sh"))
        .arg(env!("CARGO_BIN_EXE_xmppd"))
        .arg(&work);
    if let Some(text) = uci {
        let file = dir.path().join("xmppd.uci");
        std::fs::write(&file, text).expect("write UCI");
        command.arg(file);
    }
    if let Some(d) = data_dir {
        command.env("XMPPD_TEST_DATA_DIR", d);
    }
    let out = command.output().expect("run test-init.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "test-init.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    InitRun {
        status_line: stdout
            .lines()
            .find(|l| l.starts_with("start_service:"))
            .unwrap_or("")
            .to_string(),
        calls: std::fs::read_to_string(work.join("calls")).unwrap_or_default(),
        dns: std::fs::read_to_string(work.join("uci-batch")).unwrap_or_default(),
    }
}

#[test]
fn openwrt_init_script_starts_an_unprivileged_respawning_instance_with_dns_records() {
    let dir = TempDir::new("init");
    let run = run_init_script(&dir, None, None);
    assert_eq!(run.status_line, "start_service: 0", "{}", run.calls);
    let conf = dir.path().join("init").join("xmppd.toml");
    for call in [
        format!(
            "procd_set_param command {} serve --config {}",
            env!("CARGO_BIN_EXE_xmppd"),
            conf.display()
        ),
        "procd_set_param user xmppd".to_string(),
        "procd_set_param group xmppd".to_string(),
        "procd_set_param respawn".to_string(),
        format!("procd_set_param file /etc/config/xmppd {}", conf.display()),
        "procd_add_reload_trigger xmppd".to_string(),
        "procd_add_mdns xmpp-client tcp 5222 domain=chat.lan".to_string(),
        "procd_close_instance".to_string(),
    ] {
        assert!(
            run.calls.lines().any(|l| l == call),
            "missing `{call}` in\n{}",
            run.calls
        );
    }
    // RFC 6120 §3.2.1 and XEP-0368 SRV records plus the host record, for dnsmasq.
    for line in [
        "set dhcp.xmppd_host.name='chat.lan'",
        "set dhcp.xmppd_host.ip='192.168.1.1'",
        "set dhcp.xmppd_srv=srvhost",
        "set dhcp.xmppd_srv.srv='_xmpp-client._tcp.chat.lan'",
        "set dhcp.xmppd_srv.target='chat.lan'",
        "set dhcp.xmppd_srv.port='5222'",
        "set dhcp.xmppd_srvs.srv='_xmpps-client._tcp.chat.lan'",
        "set dhcp.xmppd_srvs.port='5223'",
    ] {
        assert!(
            run.dns.lines().any(|l| l.trim() == line),
            "missing `{line}` in\n{}",
            run.dns
        );
    }
    let toml = std::fs::read_to_string(&conf).expect("generated config");
    assert!(toml.contains("domain = \"chat.lan\""), "{toml}");
}

#[test]
fn openwrt_init_script_refuses_a_bad_config_and_a_missing_usb_data_dir() {
    let dir = TempDir::new("init-bad");
    let run = run_init_script(
        &dir,
        Some(
            "config xmppd 'main'\n\toption domain 'chat.lan'\nconfig limits 'limits'\n\toption max_connections '100000'\n",
        ),
        None,
    );
    assert_eq!(run.status_line, "start_service: 1", "{}", run.calls);
    assert!(!run.calls.contains("procd_open_instance"), "{}", run.calls);
    assert!(
        run.calls.contains("config rejected") && run.calls.contains("limits.max_connections"),
        "the reason goes to the system log:\n{}",
        run.calls
    );

    let dir = TempDir::new("init-usb");
    let missing = format!("/mnt/xmppd-test-not-mounted-{}", std::process::id());
    let run = run_init_script(&dir, None, Some(&missing));
    assert_eq!(run.status_line, "start_service: 0", "{}", run.calls);
    assert!(!run.calls.contains("procd_open_instance"), "{}", run.calls);
    assert!(!Path::new(&missing).exists(), "created {missing}");
    assert!(
        run.calls.contains("USB storage not mounted"),
        "{}",
        run.calls
    );

    let dir = TempDir::new("init-disabled");
    let run = run_init_script(
        &dir,
        Some("config xmppd 'main'\n\toption enabled '0'\n\toption domain 'chat.lan'\n"),
        None,
    );
    assert_eq!(run.status_line, "start_service: 0", "{}", run.calls);
    assert!(!run.calls.contains("procd_open_instance"), "{}", run.calls);
}
