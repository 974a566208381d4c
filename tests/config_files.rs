//! Every example config shipped in config/ and board/ passes `xmppd check-config`, and a
//! broken one is reported with file, line and key and exit status 78.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut stack = vec![root.join("config"), root.join("board")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn shipped_configs_pass_check_config() {
    let configs = example_configs();
    assert!(
        !configs.is_empty(),
        "config/ holds at least the example file"
    );
    for c in configs {
        let out = Command::new(env!("CARGO_BIN_EXE_xmppd"))
            .args(["check-config", "--config"])
            .arg(&c)
            .output()
            .expect("run xmppd");
        assert!(
            out.status.success(),
            "{} fails check-config:\n{}{}",
            c.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn broken_config_lists_every_problem_with_line_and_key() {
    let dir = std::env::temp_dir().join(format!("xmppd-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "domain = \"localhost\"\nlog_levl = \"info\"\n[c2s]\nlisten = [\"not-an-address\"]\n[limits]\nmax_connections = 100000\n")
        .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .expect("run xmppd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let name = file.display().to_string();
    assert!(
        err.contains(&format!("{name}:2: log_levl")),
        "unknown key with its line: {err}"
    );
    assert!(err.contains("did you mean"), "{err}");
    assert!(err.contains(&format!("{name}:4: c2s.listen")), "{err}");
    assert!(
        err.contains(&format!("{name}:6: limits.max_connections")),
        "{err}"
    );
    // serve refuses the same file with the same status.
    let out = Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .expect("run xmppd");
    assert_eq!(out.status.code(), Some(78));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn readme_documents_every_config_key() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    for key in xmppd::config::all_keys() {
        let name = key.dotted();
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not document `{name}`"
        );
    }
}

#[test]
fn concurrent_account_commands_wait_for_each_other() {
    let dir = std::env::temp_dir().join(format!("xmppd-concurrent-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // All started before any is waited for: they run at the same time.
    let children: Vec<_> = (0..6)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_xmppd"))
                .args([
                    "user",
                    "add",
                    &format!("user{i}"),
                    "--password",
                    "pw",
                    "--data-dir",
                ])
                .arg(&dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn xmppd")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("run xmppd");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .args(["user", "list", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("list");
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The worst-case memory `check-config` prints for a config file, in MiB.
fn worst_case_mib(config: &Path) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_xmppd"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .expect("run xmppd");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("worst-case memory with these limits: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no worst-case line in {text:?}"))
}

#[test]
fn the_router_config_fits_a_small_router() {
    // OpenWrt itself keeps roughly 25 MiB of a 64 MiB router; the server's worst case
    // (every buffer of every connection full at once) must fit what a 128 MiB one leaves
    // with room to spare, and the defaults must not.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let router = worst_case_mib(&root.join("board/openwrt/xmppd.generated.example.toml"));
    assert!(router <= 48, "OpenWrt config: {router} MiB worst case");
    let defaults = worst_case_mib(&root.join("config/xmppd.example.toml"));
    assert!(
        defaults > router,
        "the defaults ({defaults} MiB) are for bigger boards than the router config ({router} MiB)"
    );
}
