//! Power cuts, damaged files and full disks: nothing acknowledged is lost, nothing stored
//! is damaged, and a store that cannot be trusted stops the start with a clear message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{RawClient, Server, ServerOptions, run_with_timeout};

const T: Duration = Duration::from_secs(10);

const PLAIN: &str = "[c2s]\nrequire_encryption = false\nallow_plain_unencrypted = true\n";

/// A tiny deterministic generator: the rounds are reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn xmppd(args: &[&str]) -> std::process::Output {
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_xmppd")).args(args),
        Duration::from_secs(60),
    )
}

/// Sends a roster set and returns Ok for a result, Err(reply) for an error.
fn set_item(c: &mut RawClient, id: &str, jid: &str, name: &str) -> Result<(), String> {
    c.send(&format!(
        "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='{jid}' name='{name}'/></query></iq>"
    ));
    let head = c.recv_until(&format!("id='{id}'"), T);
    let tag_end = c.recv_until(">", T);
    if tag_end.ends_with("/>") && head.contains("<iq type='result'") {
        return Ok(());
    }
    let body = c.recv_until("</iq>", T);
    Err(format!("{head}{tag_end}{body}"))
}

/// Roster of `user` as (jid, attributes text) pairs, fetched over a fresh connection.
fn roster(s: &Server, user: &str, resource: &str) -> String {
    let mut c = s.raw_client();
    c.login(user, "secret", resource);
    c.send("<iq type='get' id='fetch'><query xmlns='jabber:iq:roster'/></iq>");
    c.recv_until("</iq>", T)
}

#[test]
fn acknowledged_changes_survive_kill_9_at_random_moments() {
    let seed = 0x5eed_2026_u64;
    let mut rng = Rng(seed);
    // A small compaction threshold makes kills land in compaction too.
    let config = format!("{PLAIN}[storage]\ncompact_log_bytes = 4096\n");
    // Contacts that exist, so a subscription request stays pending (ask='subscribe').
    let mut options = ServerOptions::plain()
        .config(&config)
        .user("alice@localhost", "secret");
    for k in 0..40 {
        options = options.user(&format!("k{k}@localhost"), "secret");
    }
    let mut s = Server::start(options);
    let next_contact = Arc::new(Mutex::new(0usize));
    let data_dir = s.data_dir().to_path_buf();
    let mut acked_items: Vec<String> = Vec::new();
    let mut acked_users: Vec<String> = Vec::new();
    let mut acked_subscriptions: Vec<String> = Vec::new();
    for round in 0..5 {
        let items = Arc::new(Mutex::new(Vec::new()));
        let subs = Arc::new(Mutex::new(Vec::new()));
        let users = Arc::new(Mutex::new(Vec::new()));
        let mut client = s.raw_client();
        client.login("alice", "secret", &format!("writer{round}"));
        client.send("<iq type='get' id='interest'><query xmlns='jabber:iq:roster'/></iq>");
        client.recv_until("id='interest'", T);
        let writer = {
            let items = items.clone();
            let subs = subs.clone();
            let next_contact = next_contact.clone();
            thread::spawn(move || {
                for i in 0.. {
                    let jid = format!("r{round}-{i}@localhost");
                    client.send(&format!(
                        "<iq type='set' id='set{i}'><query xmlns='jabber:iq:roster'><item jid='{jid}' name='N{i}'/></query></iq>"
                    ));
                    match client.try_recv_until(&format!("id='set{i}'"), T) {
                        Ok(text)
                            if text.contains("type='result' id='set")
                                || text.ends_with(&format!("id='set{i}'")) =>
                        {
                            if let Ok(mut v) = items.lock() {
                                v.push(jid);
                            }
                        }
                        _ => return,
                    }
                    let k = next_contact.lock().map(|mut n| {
                        *n += 1;
                        *n - 1
                    });
                    if i % 4 == 0 && k.as_ref().is_ok_and(|k| *k < 40) {
                        // A subscription request is acknowledged by its roster push.
                        let contact = format!("k{}@localhost", k.unwrap_or(0));
                        client.send(&format!("<presence to='{contact}' type='subscribe'/>"));
                        match client.try_recv_until(&format!("jid='{contact}'"), T) {
                            Ok(_) => {
                                if let Ok(mut v) = subs.lock() {
                                    v.push(contact);
                                }
                            }
                            Err(_) => return,
                        }
                    }
                }
            })
        };
        let cli = {
            let users = users.clone();
            let dir = data_dir.clone();
            thread::spawn(move || {
                for j in 0..8 {
                    let name = format!("u{round}x{j}");
                    let out = run_with_timeout(
                        Command::new(env!("CARGO_BIN_EXE_xmppd"))
                            .args(["user", "add", &name, "--password", "pw", "--data-dir"])
                            .arg(&dir),
                        Duration::from_secs(30),
                    );
                    if out.status.success() {
                        if let Ok(mut v) = users.lock() {
                            v.push(name);
                        }
                    } else {
                        return;
                    }
                }
            })
        };
        thread::sleep(Duration::from_millis(rng.between(300, 1500)));
        s.kill();
        let _ = writer.join();
        let _ = cli.join();
        acked_items.extend(items.lock().map(|v| v.clone()).unwrap_or_default());
        acked_subscriptions.extend(subs.lock().map(|v| v.clone()).unwrap_or_default());
        acked_users.extend(users.lock().map(|v| v.clone()).unwrap_or_default());
        s.restart();
        let r = roster(&s, "alice", &format!("check{round}"));
        for jid in &acked_items {
            assert!(
                r.contains(&format!("jid='{jid}'")),
                "round {round}: acknowledged item {jid} lost (seed {seed:#x})"
            );
        }
        for jid in &acked_subscriptions {
            let item = r.split(&format!("jid='{jid}'")).nth(1).unwrap_or("");
            let item = item.split("/>").next().unwrap_or("");
            assert!(
                item.contains("ask='subscribe'"),
                "round {round}: acknowledged request to {jid} lost: {item}"
            );
        }
        let list = xmppd(&[
            "user",
            "list",
            "--data-dir",
            &data_dir.display().to_string(),
        ]);
        let listed = String::from_utf8_lossy(&list.stdout);
        for u in &acked_users {
            assert!(
                listed.contains(&format!("{u}@localhost")),
                "round {round}: acknowledged account {u} lost"
            );
        }
    }
    assert!(
        acked_items.len() > 20,
        "the test did real work: {} items",
        acked_items.len()
    );
    assert!(!acked_users.is_empty() && !acked_subscriptions.is_empty());
    println!(
        "{} roster items, {} subscriptions, {} accounts acknowledged across 5 kills; all present",
        acked_items.len(),
        acked_subscriptions.len(),
        acked_users.len()
    );
}

fn stopped_server_with_data() -> (Server, PathBuf) {
    let mut s = Server::start(
        ServerOptions::plain()
            .config(PLAIN)
            .user("alice@localhost", "secret"),
    );
    let mut c = s.raw_client();
    c.login("alice", "secret", "w");
    for i in 0..3 {
        c.send(&format!("<iq type='set' id='s{i}'><query xmlns='jabber:iq:roster'><item jid='c{i}@localhost'/></query></iq>"));
        c.recv_until(&format!("id='s{i}'"), T);
    }
    drop(c);
    assert!(s.stop().success());
    let dir = s.data_dir().to_path_buf();
    (s, dir)
}

fn serve_once(dir: &Path) -> std::process::Output {
    // With a damaged store the server exits by itself; with a good one this would run on,
    // so only damaged stores are passed here.
    xmppd(&[
        "serve",
        "--c2s",
        "127.0.0.1:0",
        "--c2s-tls",
        "127.0.0.1:0",
        "--data-dir",
        &dir.display().to_string(),
    ])
}

#[test]
fn a_write_cut_short_is_dropped_with_a_warning_and_nothing_else_is_lost() {
    let (mut s, dir) = stopped_server_with_data();
    let log = dir.join("store/log");
    let mut bytes = std::fs::read(&log).expect("log");
    // Half of a frame header: what a power cut in the middle of a write leaves.
    bytes.extend_from_slice(&[0x40, 0x00, 0x00, 0x00, 0x12, 0x34]);
    std::fs::write(&log, &bytes).expect("write");
    s.restart();
    assert!(
        s.log_contains("dropped 6 bytes of an unfinished write"),
        "says what it did"
    );
    let r = roster(&s, "alice", "check");
    for i in 0..3 {
        assert!(r.contains(&format!("jid='c{i}@localhost'")), "{r}");
    }
}

#[test]
fn a_truncated_snapshot_stops_the_start_and_is_left_untouched() {
    let config = format!("{PLAIN}[storage]\ncompact_log_bytes = 4096\n");
    let mut s = Server::start(
        ServerOptions::plain()
            .config(&config)
            .user("alice@localhost", "secret"),
    );
    let mut c = s.raw_client();
    c.login("alice", "secret", "w");
    let name = "n".repeat(100);
    for i in 0..60 {
        c.send(&format!("<iq type='set' id='s{i}'><query xmlns='jabber:iq:roster'><item jid='c{i}@localhost' name='{name}'/></query></iq>"));
        c.recv_until(&format!("id='s{i}'"), T);
    }
    drop(c);
    assert!(s.stop().success());
    assert!(
        s.log_contains("store compacted"),
        "the log was folded into a snapshot"
    );
    let snap = s.data_dir().join("store/snapshot");
    let bytes = std::fs::read(&snap).expect("snapshot exists");
    let cut = &bytes[..bytes.len() - 10];
    std::fs::write(&snap, cut).expect("truncate");
    let out = serve_once(s.data_dir());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&snap.display().to_string()),
        "names the file: {err}"
    );
    assert_eq!(
        std::fs::read(&snap).expect("snapshot"),
        cut,
        "never rewritten or emptied"
    );
}

/// The server with its data directory on a small tmpfs of its own (a private mount
/// namespace from `unshare`, which needs no privileges where user namespaces are on), so
/// the disk can really fill up. The filler file takes all but a little of the space.
fn server_on_small_disk() -> Option<(Server, PathBuf)> {
    let probe = Command::new("unshare")
        .args(["-rm", "true"])
        .output()
        .ok()?;
    if !probe.status.success() {
        return None;
    }
    let dir = common::TempDir::new("tmpfs-wrapper");
    let wrapper = dir.path().join("xmppd-on-tmpfs.sh");
    let script = format!(
        r#"#!/bin/sh
# Test wrapper: `serve` runs with --data-dir on a 1 MiB tmpfs nearly filled by a filler.
set -e
if [ "$1" != serve ]; then exit 0; fi
data=""
prev=""
for a in "$@"; do
  if [ "$prev" = --data-dir ]; then data="$a"; fi
  prev="$a"
done
exec unshare -rm sh -c '
  set -e
  mkdir -p "$0"
  mount -t tmpfs -o size=1m tmpfs "$0"
  chmod 700 "$0"
  echo secret | {bin} user add alice --data-dir "$0" >/dev/null
  echo secret | {bin} user add bob --data-dir "$0" >/dev/null
  free=$(df -k --output=avail "$0" | tail -n 1)
  dd if=/dev/zero of="$0/filler" bs=1k count=$((free - 24)) 2>/dev/null
  exec {bin} "$@"
' "$data" "$@"
"#,
        bin = env!("CARGO_BIN_EXE_xmppd")
    );
    std::fs::write(&wrapper, script).ok()?;
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .ok()?;
    let s = Server::start(ServerOptions::plain().config(PLAIN).binary(&wrapper));
    let keep = dir.path().to_path_buf();
    std::mem::forget(dir);
    Some((s, keep))
}

#[test]
fn a_full_disk_refuses_changes_with_an_error_and_keeps_serving() {
    let Some((mut s, _wrapper_dir)) = server_on_small_disk() else {
        panic!(
            "this test needs `unshare -rm` (user and mount namespaces) to give the server a small tmpfs"
        );
    };
    let pid = s.pid().expect("pid");
    let mut c = s.raw_client();
    c.login("alice", "secret", "filler");
    let mut acked = Vec::new();
    let mut refused_at = None;
    let name = "n".repeat(200);
    for i in 0..2000 {
        match set_item(&mut c, &format!("s{i}"), &format!("c{i}@localhost"), &name) {
            Ok(()) => acked.push(i),
            Err(reply) => {
                assert!(reply.contains("<resource-constraint "), "{reply}");
                refused_at = Some(i);
                break;
            }
        }
    }
    let refused_at = refused_at.expect("the disk filled up");
    // More attempts of the same size fail the same way; the log says it once.
    let big = "m".repeat(1000);
    for i in refused_at + 1..refused_at + 4 {
        let reply = set_item(&mut c, &format!("s{i}"), &format!("c{i}@localhost"), &big);
        assert!(reply.is_err_and(|r| r.contains("<resource-constraint ")));
    }
    c.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(
        c.recv_until("id='alive'", T).contains("type='result'"),
        "still serving"
    );
    let complaints = s
        .log_lines()
        .iter()
        .filter(|l| l.contains("cannot write to the store"))
        .count();
    assert_eq!(complaints, 1, "one clear message per failure streak");
    // The refused changes are not in memory either.
    c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    let r = c.recv_until("</iq>", T);
    assert!(
        !r.contains(&format!("jid='c{refused_at}@localhost'")),
        "an unstored change is not shown"
    );
    assert!(r.contains(&format!("jid='c{}@localhost'", acked.len() - 1)));
    // Free the space (through the process's view of its private mounts): writes work again.
    let data = PathBuf::from(format!("/proc/{pid}/root"))
        .join(s.data_dir().strip_prefix("/").unwrap_or(s.data_dir()));
    std::fs::remove_file(data.join("filler")).expect("remove the filler");
    let start = Instant::now();
    assert_eq!(
        set_item(&mut c, "again", "again@localhost", &big),
        Ok(()),
        "writable again"
    );
    assert!(start.elapsed() < T);
    assert!(s.log_contains("the store is writable again"));
    // What was stored before the disk filled is intact: load a copy of the store.
    let copy = common::TempDir::new("store-copy");
    for f in ["log", "snapshot"] {
        let src = data.join("store").join(f);
        if src.exists() {
            std::fs::create_dir_all(copy.path().join("store")).expect("dir");
            std::fs::copy(&src, copy.path().join("store").join(f)).expect("copy");
        }
    }
    let list = xmppd(&[
        "user",
        "list",
        "--data-dir",
        &copy.path().display().to_string(),
    ]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("alice@localhost"));
    s.kill();
}
