//! The command line (argh). Scripts and packaging depend on these names; see README.md.
//!
//! Exit status: 0 success, 1 runtime failure, 78 configuration error (EX_CONFIG).

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use argh::FromArgs;

use crate::config::Config;
use crate::db::Record;
use crate::net::{self, SystemEntropy, control};
use crate::sasl::Credentials;
use crate::storage::{FileStore, Store, StoreError};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_CONFIG: i32 = 78;

#[derive(FromArgs)]
/// xmppd: a small XMPP server for home routers and Raspberry Pi boards.
struct Cli {
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Serve(ServeArgs),
    User(UserArgs),
    CheckConfig(CheckConfigArgs),
    Invite(InviteArgs),
}

#[derive(FromArgs)]
/// Run the server (built-in defaults when no config file is given).
#[argh(subcommand, name = "serve")]
struct ServeArgs {
    /// configuration file (TOML subset; see config/xmppd.example.toml)
    #[argh(option)]
    config: Option<PathBuf>,
    /// XMPP domain served (default: localhost)
    #[argh(option)]
    domain: Option<String>,
    /// directory for accounts, rosters, the generated certificate (default: ./xmppd-data)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// STARTTLS client listener ADDR:PORT, repeatable; replaces the config's list
    /// (default: [::]:5222)
    #[argh(option)]
    c2s: Vec<String>,
    /// direct TLS (XEP-0368) client listener ADDR:PORT, repeatable; replaces the config's
    /// list (default: [::]:5223)
    #[argh(option)]
    c2s_tls: Vec<String>,
    /// log level: error, warn, info, debug or trace (default: info)
    #[argh(option)]
    log_level: Option<String>,
}

#[derive(FromArgs)]
/// Manage accounts; works whether or not the server is running.
#[argh(subcommand, name = "user")]
struct UserArgs {
    #[argh(subcommand)]
    command: UserCommand,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum UserCommand {
    Add(UserAdd),
    Del(UserDel),
    Passwd(UserPasswd),
    List(UserList),
}

#[derive(FromArgs)]
/// Create an account. The password comes from --password or the first line of stdin.
#[argh(subcommand, name = "add")]
struct UserAdd {
    /// the account's address, e.g. alice@localhost (or just alice)
    #[argh(positional)]
    jid: String,
    /// the password (avoid on shared machines: it shows in the process list)
    #[argh(option)]
    password: Option<String>,
    /// configuration file (for the domain and data directory)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config file)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Delete an account and close its sessions.
#[argh(subcommand, name = "del")]
struct UserDel {
    /// the account's address
    #[argh(positional)]
    jid: String,
    /// configuration file (for the domain and data directory)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config file)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Change an account's password (from --password or the first line of stdin).
#[argh(subcommand, name = "passwd")]
struct UserPasswd {
    /// the account's address
    #[argh(positional)]
    jid: String,
    /// the new password
    #[argh(option)]
    password: Option<String>,
    /// configuration file (for the domain and data directory)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config file)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

#[derive(FromArgs)]
/// List the accounts.
#[argh(subcommand, name = "list")]
struct UserList {
    /// configuration file (for the domain and data directory)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config file)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Check a configuration file and list every problem (exit status 78 if any).
#[argh(subcommand, name = "check-config")]
struct CheckConfigArgs {
    /// the configuration file to check
    #[argh(option)]
    config: PathBuf,
}

#[derive(FromArgs)]
/// Invite someone to register an account (XEP-0401): prints an xmpp: URI and a QR code
/// that an app like Conversations can scan. Needs [register] enabled = true.
#[argh(subcommand, name = "invite")]
struct InviteArgs {
    /// reserve this account name for the invitee (default: the invitee chooses)
    #[argh(option)]
    user: Option<String>,
    /// days the invitation stays valid (default: 7, at most 365)
    #[argh(option, default = "crate::limits::DEFAULT_INVITE_DAYS")]
    days: u64,
    /// print only the URI, no QR code
    #[argh(switch)]
    no_qr: bool,
    /// configuration file (for the domain and data directory)
    #[argh(option)]
    config: Option<PathBuf>,
    /// data directory (overrides the config file)
    #[argh(option)]
    data_dir: Option<PathBuf>,
}

pub fn run() -> i32 {
    let cli: Cli = argh::from_env();
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::CheckConfig(a) => check_config(&a.config),
        Command::User(u) => user(u.command),
        Command::Invite(a) => {
            crate::cli_invite::invite(a.user, a.days, a.no_qr, a.config.as_deref(), a.data_dir)
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, i32> {
    match path {
        None => Ok(Config::default()),
        Some(p) => Config::load(p).map_err(|problems| {
            for pr in &problems {
                eprintln!("{pr}");
            }
            eprintln!("{}: {} problem(s)", p.display(), problems.len());
            EXIT_CONFIG
        }),
    }
}

fn check_config(path: &Path) -> i32 {
    match load_config(Some(path)) {
        Ok(cfg) => {
            println!("{}: OK", path.display());
            // What the limits in force allow at most (README "Memory"), so a board's
            // config can be checked against its RAM before it is installed.
            println!(
                "worst-case memory with these limits: {} MiB",
                crate::net::worst_case_bytes(&cfg).div_ceil(1024 * 1024)
            );
            EXIT_OK
        }
        Err(code) => code,
    }
}

fn parse_addrs(flag: &str, values: &[String]) -> Result<Vec<SocketAddr>, i32> {
    values
        .iter()
        .map(|v| {
            v.parse::<SocketAddr>().map_err(|_| {
                eprintln!(
                    "--{flag} {v}: not an ADDR:PORT (IPv6 addresses go in brackets: [::]:5222)"
                );
                EXIT_CONFIG
            })
        })
        .collect()
}

fn serve(a: ServeArgs) -> i32 {
    let mut cfg = match load_config(a.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(d) = a.domain {
        match crate::jid::normalize_domain(&d) {
            Ok(d) => cfg.domain = d,
            Err(e) => {
                eprintln!("--domain {d}: not a valid domain ({e:?})");
                return EXIT_CONFIG;
            }
        }
    }
    if let Some(d) = a.data_dir {
        cfg.data_dir = d;
    }
    if !a.c2s.is_empty() {
        match parse_addrs("c2s", &a.c2s) {
            Ok(v) => cfg.c2s.listen = v,
            Err(c) => return c,
        }
    }
    if !a.c2s_tls.is_empty() {
        match parse_addrs("c2s-tls", &a.c2s_tls) {
            Ok(v) => cfg.c2s.listen_tls = v,
            Err(c) => return c,
        }
    }
    if let Some(l) = a.log_level {
        match crate::logging::parse_level(&l) {
            Some(level) => cfg.log_level = level,
            None => {
                eprintln!("--log-level {l}: expected error, warn, info, debug or trace");
                return EXIT_CONFIG;
            }
        }
    }
    crate::logging::init(cfg.log_level);
    log::info!("xmppd {} starting", env!("CARGO_PKG_VERSION"));
    match net::serve(cfg) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            log::error!("{e}");
            EXIT_FAILURE
        }
    }
}

/// Domain and data directory for the account commands.
pub(crate) fn user_context(
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
) -> Result<Config, i32> {
    let mut cfg = load_config(config)?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    Ok(cfg)
}

/// The normalised localpart of `alice@domain` (or of a bare `alice`).
pub(crate) fn account_name(jid: &str, domain: &str) -> Result<String, String> {
    let (local, dom) = match jid.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (jid, None),
    };
    if let Some(d) = dom {
        let d = crate::jid::normalize_domain(d).map_err(|_| format!("{jid}: invalid domain"))?;
        if d != domain {
            return Err(format!("{jid}: this server serves {domain}, not {d}"));
        }
    }
    crate::jid::normalize_localpart(local)
        .map_err(|e| format!("{jid}: invalid account name ({e:?})"))
}

fn read_password(given: Option<String>, who: &str) -> Result<String, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for {who}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password: {e}"))?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        return Err("empty password".into());
    }
    Ok(p)
}

enum Change {
    Add(Credentials),
    Passwd(Credentials),
    Del,
}

fn user(cmd: UserCommand) -> i32 {
    let (jid, password, config, data_dir, kind) = match cmd {
        UserCommand::List(l) => return user_list(l.config.as_deref(), l.data_dir),
        UserCommand::Add(a) => (a.jid, a.password, a.config, a.data_dir, 0),
        UserCommand::Passwd(a) => (a.jid, a.password, a.config, a.data_dir, 1),
        UserCommand::Del(a) => (a.jid, None, a.config, a.data_dir, 2),
    };
    let cfg = match user_context(config.as_deref(), data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let name = match account_name(&jid, &cfg.domain) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAILURE;
        }
    };
    let full = format!("{name}@{}", cfg.domain);
    let change = if kind == 2 {
        Change::Del
    } else {
        let pw = match read_password(password, &full) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return EXIT_FAILURE;
            }
        };
        let creds =
            match Credentials::new_random(&pw, cfg.scram_iterations, &mut SystemEntropy::new()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("unusable password: {e:?}");
                    return EXIT_FAILURE;
                }
            };
        if kind == 0 {
            Change::Add(creds)
        } else {
            Change::Passwd(creds)
        }
    };
    match apply_change(&cfg, &name, change) {
        Ok(()) => {
            println!(
                "{} {full}",
                ["created", "changed the password of", "deleted"][kind]
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("{full}: {e}");
            EXIT_FAILURE
        }
    }
}

/// Applies an account change directly when no server is running (we get the store's
/// lock), or through the running server's control socket (it holds the lock).
fn apply_change(cfg: &Config, name: &str, change: Change) -> Result<(), String> {
    let data_dir = cfg.data_dir.as_path();
    let max_accounts = cfg.limits.max_accounts;
    match open_store(data_dir)? {
        Some((mut store, db)) => {
            let exists = db.user(name).is_some();
            let record = match change {
                Change::Add(_) if exists => return Err("the account already exists".into()),
                Change::Add(_) if db.users.len() >= max_accounts => {
                    return Err(format!(
                        "the server holds its maximum number of accounts ({max_accounts}, limits.max_accounts)"
                    ));
                }
                Change::Passwd(_) | Change::Del if !exists => return Err("no such account".into()),
                Change::Add(c) | Change::Passwd(c) => Record::UserSet {
                    user: name.to_string(),
                    credentials: c,
                },
                Change::Del => Record::UserDelete {
                    user: name.to_string(),
                },
            };
            let deleting = matches!(record, Record::UserDelete { .. });
            store.append(&[record]).map_err(|e| e.to_string())?;
            if deleting {
                // The account's archive and offline messages go with it (the server does
                // the same through its own archive writer when it runs).
                let (mut archive, _) = crate::storage::archive::ArchiveStore::open(
                    &data_dir.join("archive"),
                    net::archive_limits(cfg),
                    crate::net::unix_ms(),
                )
                .map_err(|e| e.to_string())?;
                archive
                    .append(&[crate::archive::ArchiveRecord::AccountDeleted {
                        account: name.to_string(),
                    }])
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        None => {
            let line = match &change {
                Change::Add(c) => format!("add {name} {}", control::encode_credentials(c)),
                Change::Passwd(c) => format!("passwd {name} {}", control::encode_credentials(c)),
                Change::Del => format!("del {name}"),
            };
            control_request(data_dir, &line).map(|_| ())
        }
    }
}

/// The store if no server holds it (`None` when a server does).
pub(crate) fn open_store(data_dir: &Path) -> Result<Option<(FileStore, crate::db::Db)>, String> {
    net::files::create_private_dir(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    // The lock is held either by a running server (which answers on its control socket)
    // or by another CLI command for the moment it takes: then wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match FileStore::open(&data_dir.join("store"), u64::MAX) {
            Ok((store, db, _)) => return Ok(Some((store, db))),
            Err(StoreError::Locked { .. }) => {
                let server =
                    std::os::unix::net::UnixStream::connect(control::socket_path(data_dir)).is_ok();
                if server || std::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

pub(crate) fn control_request(data_dir: &Path, line: &str) -> Result<Vec<String>, String> {
    match control::request(data_dir, line) {
        Ok(Ok(lines)) => Ok(lines),
        Ok(Err(msg)) => Err(msg),
        Err(e) => Err(format!(
            "the store is locked by a running server, but its control socket {} does not answer: {e}",
            control::socket_path(data_dir).display()
        )),
    }
}

fn user_list(config: Option<&Path>, data_dir: Option<PathBuf>) -> i32 {
    let cfg = match user_context(config, data_dir) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let names = match open_store(&cfg.data_dir) {
        Ok(Some((_, db))) => db
            .users
            .keys()
            .map(|u| format!("{u}@{}", cfg.domain))
            .collect(),
        Ok(None) => match control_request(&cfg.data_dir, "list") {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("{e}");
                return EXIT_FAILURE;
            }
        },
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAILURE;
        }
    };
    for n in names {
        println!("{n}");
    }
    EXIT_OK
}
