//! The configuration file: a strict subset of TOML (read by the `syntax` submodule),
//! checked key by key so that every problem is reported at once, each with file, line
//! and key (like ntpd-rs `Config::check`), and `xmppd check-config` can list them all
//! before exiting with 78.
//!
//! [`all_keys`] documents every key; `config/xmppd.example.toml` shows each one and a
//! test keeps the two in step.

mod keys;
mod syntax;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::limits::Limits;

use keys::{Context, dotted};
pub use keys::{
    DefaultValue, KEYS, KeyDoc, Kind, LOG_LEVELS, MAX_COMPACT_LOG_BYTES, MIN_COMPACT_LOG_BYTES,
    all_keys,
};
use syntax::{Item, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain and private key; both or neither. Neither: a self-signed
    /// certificate is generated under the data dir on first start.
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct C2sConfig {
    /// STARTTLS listeners (RFC 6120 §5).
    pub listen: Vec<SocketAddr>,
    /// Direct TLS listeners (XEP-0368).
    pub listen_tls: Vec<SocketAddr>,
    /// Refuse to proceed past stream features without TLS. Only loopback tests turn it off.
    pub require_encryption: bool,
    /// Offer SASL PLAIN on an unencrypted stream (only with require_encryption = false).
    pub allow_plain_unencrypted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    pub flush_delay_ms: u32,
    pub compact_log_bytes: u64,
    /// Message archive (MAM and offline messages): per-account count, age in days (0:
    /// no limit), total size and segment size.
    pub archive_max_messages: u32,
    pub archive_max_age_days: u32,
    pub archive_max_mib: u32,
    pub archive_segment_kib: u32,
}

/// Issue 7: in-band registration (XEP-0077).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterConfig {
    pub enabled: bool,
    /// Anyone may register; otherwise only with an invitation token (XEP-0445).
    pub open: bool,
}

/// Issue 7: contact addresses published in service discovery (XEP-0157), as URIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactConfig {
    pub admin: Vec<String>,
    pub abuse: Vec<String>,
    pub support: Vec<String>,
    pub security: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub domain: String,
    pub data_dir: PathBuf,
    pub log_level: log::LevelFilter,
    pub scram_iterations: u32,
    pub threads: u32,
    pub tls: TlsConfig,
    pub c2s: C2sConfig,
    pub storage: StorageConfig,
    pub limits: Limits,
    pub register: RegisterConfig,
    pub contact: ContactConfig,
}

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is not tied to a line (e.g. a missing pair of keys).
    pub line: usize,
    /// Dotted key, e.g. `c2s.listen`; empty for syntax errors outside a key.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `FILE:LINE: KEY: MESSAGE`, or `FILE:LINE: MESSAGE` when no key is involved.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            domain: "localhost".into(),
            data_dir: PathBuf::from("./xmppd-data"),
            log_level: log::LevelFilter::Info,
            scram_iterations: crate::limits::DEFAULT_SCRAM_ITERATIONS,
            threads: crate::limits::DEFAULT_THREADS,
            tls: TlsConfig {
                certificate: None,
                key: None,
            },
            c2s: C2sConfig {
                listen: vec![SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 5222))],
                listen_tls: vec![SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 0], 5223))],
                require_encryption: true,
                allow_plain_unencrypted: false,
            },
            storage: StorageConfig {
                flush_delay_ms: crate::limits::DEFAULT_FLUSH_DELAY_MS,
                compact_log_bytes: crate::limits::DEFAULT_COMPACT_LOG_BYTES,
                archive_max_messages: crate::limits::DEFAULT_ARCHIVE_MESSAGES,
                archive_max_age_days: crate::limits::DEFAULT_ARCHIVE_AGE_DAYS,
                archive_max_mib: crate::limits::DEFAULT_ARCHIVE_MIB,
                archive_segment_kib: crate::limits::DEFAULT_ARCHIVE_SEGMENT_KIB,
            },
            limits: Limits::default(),
            register: RegisterConfig::default(),
            contact: ContactConfig::default(),
        }
    }
}

impl Config {
    /// Parses and checks config text. `file` names the file in problems and anchors
    /// relative paths (resolved against the file's directory).
    ///
    /// Every problem is returned, sorted by line (problems not tied to a line last).
    /// The text is only read: files named in it are not opened here.
    pub fn parse(file: &Path, text: &str) -> Result<Config, Vec<Problem>> {
        let mut checker = Checker::new(file);
        let (items, syntax_errors) = syntax::parse(text);
        for e in syntax_errors {
            checker.broken_keys.insert(e.key.clone());
            checker.problem(e.line, e.key, e.message);
        }
        for item in items {
            checker.item(item);
        }
        checker.check_combinations();
        checker.finish()
    }
    /// Reads and parses a file.
    pub fn load(file: &Path) -> Result<Config, Vec<Problem>> {
        match std::fs::read_to_string(file) {
            Ok(text) => Config::parse(file, &text),
            Err(e) => Err(vec![Problem {
                file: file.to_path_buf(),
                line: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }]),
        }
    }
}

/// Where keys that follow are going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Top,
    Known(&'static str),
    /// An unknown or unreadable section: its keys are skipped, the header was reported.
    Skipped,
}

struct Checker<'a> {
    file: &'a Path,
    base_dir: PathBuf,
    config: Config,
    section: Section,
    section_lines: HashMap<&'static str, usize>,
    key_lines: HashMap<(&'static str, &'static str), usize>,
    /// Dotted keys written with a syntax error or a bad value. Checks that combine keys
    /// skip these: the value the user meant is unknown, and comparing the default
    /// instead would report a second, made-up problem.
    broken_keys: HashSet<String>,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path) -> Checker<'a> {
        let base_dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut config = Config::default();
        // The default data dir is relative too, and means the same as if written out.
        config.data_dir = keys::resolve_path(&base_dir, &config.data_dir);
        Checker {
            file,
            base_dir,
            config,
            section: Section::Top,
            section_lines: HashMap::new(),
            key_lines: HashMap::new(),
            broken_keys: HashSet::new(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, line: usize, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    fn item(&mut self, item: Item) {
        match item {
            Item::Section { line, name } => self.section_header(line, name),
            Item::Entry { line, key, value } => self.entry(line, &key, &value),
        }
    }

    fn section_header(&mut self, line: usize, name: Option<String>) {
        let Some(name) = name else {
            self.section = Section::Skipped;
            return;
        };
        let Some(known) = all_keys()
            .map(|k| k.section)
            .find(|s| !s.is_empty() && *s == name)
        else {
            let sections = known_sections();
            let hint = match closest(&name, sections.iter().copied()) {
                Some(best) => format!("did you mean [{best}]?"),
                None => format!("the sections are [{}]", sections.join("], [")),
            };
            self.problem(line, name, format!("unknown section; {hint}"));
            self.section = Section::Skipped;
            return;
        };
        if let Some(first) = self.section_lines.get(known) {
            let message = format!(
                "section [{known}] appears twice (first on line {first}); TOML allows a section once"
            );
            self.problem(line, known, message);
        } else {
            self.section_lines.insert(known, line);
        }
        self.section = Section::Known(known);
    }

    fn entry(&mut self, line: usize, key: &str, value: &Value) {
        let section = match self.section {
            Section::Top => "",
            Section::Known(s) => s,
            Section::Skipped => return,
        };
        let Some(doc) = all_keys().find(|k| k.section == section && k.key == key) else {
            let message = unknown_key_message(section, key);
            self.problem(line, dotted(section, key), message);
            return;
        };
        if let Some(first) = self.key_lines.get(&(doc.section, doc.key)) {
            let message = format!("duplicate key (first set on line {first})");
            self.problem(line, doc.dotted(), message);
            return;
        }
        self.key_lines.insert((doc.section, doc.key), line);
        let ctx = Context {
            base_dir: &self.base_dir,
        };
        if let Err(faults) = doc.apply(&mut self.config, value, &ctx) {
            self.broken_keys.insert(doc.dotted());
            for fault in faults {
                self.problem(fault.line.unwrap_or(line), doc.dotted(), fault.message);
            }
        }
    }

    fn line_of(&self, section: &'static str, key: &'static str) -> Option<usize> {
        self.key_lines.get(&(section, key)).copied()
    }

    fn any_broken(&self, dotted_keys: &[&str]) -> bool {
        dotted_keys.iter().any(|k| self.broken_keys.contains(*k))
    }

    /// Checks that involve more than one key, once every key has been read.
    fn check_combinations(&mut self) {
        self.check_tls_pair();
        self.check_c2s();
        self.check_limits();
    }

    fn check_tls_pair(&mut self) {
        if self.any_broken(&["tls.certificate", "tls.key"]) {
            return;
        }
        match (self.line_of("tls", "certificate"), self.line_of("tls", "key")) {
            (Some(line), None) => self.problem(
                line,
                "tls.certificate",
                "set without tls.key: set both, or neither to use a generated self-signed certificate",
            ),
            (None, Some(line)) => self.problem(
                line,
                "tls.key",
                "set without tls.certificate: set both, or neither to use a generated self-signed certificate",
            ),
            _ => {}
        }
    }

    fn check_c2s(&mut self) {
        let c2s = &self.config.c2s;
        let listen_line = self.line_of("c2s", "listen");
        let tls_line = self.line_of("c2s", "listen_tls");
        let modes = ["c2s.allow_plain_unencrypted", "c2s.require_encryption"];
        if c2s.allow_plain_unencrypted && c2s.require_encryption && !self.any_broken(&modes) {
            let line = self.line_of("c2s", "allow_plain_unencrypted").unwrap_or(0);
            let message = match self.line_of("c2s", "require_encryption") {
                Some(l) => format!("contradicts require_encryption = true (line {l})"),
                None => "contradicts require_encryption, which defaults to true".to_string(),
            };
            self.problem(
                line,
                "c2s.allow_plain_unencrypted",
                format!("{message}: passwords without TLS need require_encryption = false"),
            );
        }
        if self.any_broken(&["c2s.listen", "c2s.listen_tls"]) {
            return;
        }
        let c2s = &self.config.c2s;
        if c2s.listen.is_empty() && c2s.listen_tls.is_empty() {
            let line = listen_line.max(tls_line).unwrap_or(0);
            self.problem(
                line,
                "c2s.listen",
                "c2s.listen and c2s.listen_tls are both empty: clients could not connect",
            );
        }
        let c2s = &self.config.c2s;
        let plain: HashSet<&SocketAddr> = c2s.listen.iter().collect();
        let both: Vec<SocketAddr> = c2s
            .listen_tls
            .iter()
            .filter(|a| plain.contains(a))
            .copied()
            .collect();
        // A listener bound twice fails at start; better to say so here, with the line.
        for addr in both {
            let line = listen_line.max(tls_line).unwrap_or(0);
            self.problem(
                line,
                "c2s.listen_tls",
                format!("{addr} is in both c2s.listen and c2s.listen_tls"),
            );
        }
    }

    fn check_limits(&mut self) {
        if self.broken_keys.iter().any(|k| k.starts_with("limits.")) {
            return;
        }
        let section_line = self.section_lines.get("limits").copied().unwrap_or(0);
        for (key, message) in self.config.limits.check() {
            // A cross-field problem may involve only keys left at their defaults; the
            // [limits] header is then the nearest line to point at.
            let line = self.line_of("limits", key).unwrap_or(section_line);
            self.problem(line, format!("limits.{key}"), message);
        }
    }

    fn finish(mut self) -> Result<Config, Vec<Problem>> {
        if self.problems.is_empty() {
            return Ok(self.config);
        }
        self.problems.sort_by_key(|p| (p.line == 0, p.line));
        Err(self.problems)
    }
}

fn known_sections() -> Vec<&'static str> {
    let mut sections: Vec<&'static str> = Vec::new();
    for k in all_keys() {
        if !k.section.is_empty() && !sections.contains(&k.section) {
            sections.push(k.section);
        }
    }
    sections
}

fn unknown_key_message(section: &str, key: &str) -> String {
    if let Some(elsewhere) = all_keys().find(|k| k.key == key) {
        return if elsewhere.section.is_empty() {
            format!(
                "unknown key in [{section}]; `{key}` belongs at the top of the file, before any [section]"
            )
        } else {
            format!(
                "unknown key here; `{key}` belongs in section [{}]",
                elsewhere.section
            )
        };
    }
    let names: Vec<&str> = all_keys()
        .filter(|k| k.section == section)
        .map(|k| k.key)
        .collect();
    if let Some(best) = closest(key, names.iter().copied()) {
        return format!("unknown key; did you mean `{best}`?");
    }
    format!("unknown key; the keys here are {}", names.join(", "))
}

/// Longest name compared for a suggestion; longer input cannot be a small edit away
/// from any key, and the bound keeps the check linear in the input.
const SUGGEST_MAX_LEN: usize = 64;

/// The candidate nearest to `word`, if it is a plausible typo (at most two edits, and
/// at most half of the candidate's length).
fn closest<'k>(word: &str, candidates: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    if word.len() > SUGGEST_MAX_LEN {
        return None;
    }
    candidates
        // Issue 7 (more keys): a length difference over 2 already means more than two
        // edits, so those candidates need no distance computed (same result, cheaper).
        .filter(|c| c.len().abs_diff(word.len()) <= 2)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2 && *d * 2 <= c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over bytes (keys are ASCII), with adjacent transpositions
/// counting as one edit, since `listen_tsl` is one slip, not two.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && a.get(i - 1) == Some(&cb) && b.get(j - 1) == Some(&ca) {
                best = best.min(before[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{
        CAP_CONNECTIONS, CAP_STANZA_BYTES, MAX_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS,
    };

    const FILE: &str = "/etc/xmppd/xmppd.toml";

    fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        Config::parse(Path::new(FILE), text)
    }

    fn ok(text: &str) -> Config {
        match parse(text) {
            Ok(config) => config,
            Err(problems) => panic!("unexpected problems: {problems:#?}"),
        }
    }

    fn problems(text: &str) -> Vec<(usize, String, String)> {
        match parse(text) {
            Ok(config) => panic!("expected problems, got {config:#?}"),
            Err(problems) => problems
                .into_iter()
                .map(|p| {
                    assert_eq!(p.file, Path::new(FILE));
                    (p.line, p.key, p.message)
                })
                .collect(),
        }
    }

    /// Exactly one problem, at `line` and `key`, whose message contains `needle`.
    #[track_caller]
    fn assert_one(text: &str, line: usize, key: &str, needle: &str) {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{text:?}: {found:#?}");
        let (l, k, message) = &found[0];
        assert_eq!((*l, k.as_str()), (line, key), "{text:?}: {message}");
        assert!(
            message.contains(needle),
            "{text:?}: {message:?} lacks {needle:?}"
        );
    }

    /// Whether `jid::normalize_domain` is implemented yet (it is a stub that refuses
    /// everything until the jid branch is merged). Tests that need a domain accepted
    /// check this; the ones that need it refused hold either way.
    fn jid_ready() -> bool {
        crate::jid::normalize_domain("example.org").is_ok()
    }

    fn defaults_for(file: &str) -> Config {
        let mut config = Config::default();
        let base = Path::new(file).parent().unwrap_or(Path::new(""));
        config.data_dir = keys::resolve_path(base, &config.data_dir);
        config
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = ok("");
        assert_eq!(config, defaults_for(FILE));
        assert_eq!(config.data_dir, PathBuf::from("/etc/xmppd/xmppd-data"));
        assert_eq!(ok("# only a comment\n\n   \n"), defaults_for(FILE));
    }

    #[test]
    fn every_key_is_stored() {
        let config = ok(r#"
data_dir = "/var/lib/xmppd"
log_level = "debug"
scram_iterations = 10_000

[tls]
certificate = "/etc/ssl/fullchain.pem"
key = "/etc/ssl/privkey.pem"

[c2s]
listen = ["0.0.0.0:5222", "[::1]:15222"]
listen_tls = []
require_encryption = false
allow_plain_unencrypted = true

[storage]
flush_delay_ms = 0
compact_log_bytes = 65536

[limits]
max_connections = 16
max_resources_per_account = 2
max_accounts = 10
max_roster_items = 50
max_pending_subscriptions = 5
max_stanza_bytes = 16384
max_stanza_bytes_preauth = 4096
max_xml_depth = 8
max_xml_attributes = 16
max_outbound_queue_bytes = 32768
max_auth_attempts = 2
auth_timeout_secs = 10
"#);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/xmppd"));
        assert_eq!(config.log_level, log::LevelFilter::Debug);
        assert_eq!(config.scram_iterations, 10_000);
        assert_eq!(
            config.tls,
            TlsConfig {
                certificate: Some("/etc/ssl/fullchain.pem".into()),
                key: Some("/etc/ssl/privkey.pem".into()),
            }
        );
        assert_eq!(
            config.c2s,
            C2sConfig {
                listen: vec![
                    "0.0.0.0:5222".parse().unwrap(),
                    "[::1]:15222".parse().unwrap()
                ],
                listen_tls: vec![],
                require_encryption: false,
                allow_plain_unencrypted: true,
            }
        );
        assert_eq!(
            config.storage,
            StorageConfig {
                flush_delay_ms: 0,
                compact_log_bytes: 65536,
                ..Config::default().storage
            }
        );
        assert_eq!(
            config.limits,
            Limits {
                max_connections: 16,
                max_resources_per_account: 2,
                max_accounts: 10,
                max_roster_items: 50,
                max_pending_subscriptions: 5,
                max_stanza_bytes: 16384,
                max_stanza_bytes_preauth: 4096,
                max_xml_depth: 8,
                max_xml_attributes: 16,
                max_outbound_queue_bytes: 32768,
                max_auth_attempts: 2,
                auth_timeout_secs: 10,
                ..Limits::default()
            }
        );
        assert_eq!(config.domain, "localhost");
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let text = "data_dir = \"state\"\n[tls]\ncertificate = \"./certs/fullchain.pem\"\nkey = \"../keys/privkey.pem\"\n";
        let config = ok(text);
        assert_eq!(config.data_dir, PathBuf::from("/etc/xmppd/state"));
        assert_eq!(
            config.tls.certificate,
            Some(PathBuf::from("/etc/xmppd/certs/fullchain.pem"))
        );
        assert_eq!(
            config.tls.key,
            Some(PathBuf::from("/etc/xmppd/../keys/privkey.pem"))
        );
        // A file named without a directory leaves relative paths relative to the cwd.
        let config = Config::parse(Path::new("xmppd.toml"), text).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("state"));
        assert_eq!(
            config.tls.certificate,
            Some(PathBuf::from("certs/fullchain.pem"))
        );
        assert_eq!(
            Config::parse(Path::new("conf/x.toml"), "")
                .unwrap()
                .data_dir,
            PathBuf::from("conf/xmppd-data")
        );
        assert_one("data_dir = \"\"", 1, "data_dir", "empty path");
    }

    #[test]
    fn syntax_errors_name_line_and_what_was_expected() {
        assert_one(
            "\n\nlog_level = info\n",
            3,
            "log_level",
            "strings need quotes",
        );
        assert_one(
            "[c2s]\nlisten = [\"[::]:5222\"\n",
            2,
            "c2s.listen",
            "expected `]`",
        );
        assert_one(
            "scram_iterations 5000\n",
            1,
            "scram_iterations",
            "expected `=`",
        );
        assert_one("\n?\n", 2, "", "expected a `key = value` line");
        assert_one("[c2s\n", 1, "", "expected `]` after the section name");
    }

    #[test]
    fn unknown_sections_and_keys_get_suggestions() {
        // Keys inside an unknown section are not reported one by one.
        assert_one(
            "[tsl]\ncertificate = \"x\"\nkey = \"y\"\n",
            1,
            "tsl",
            "did you mean [tls]?",
        );
        assert_one(
            "[server]\n",
            1,
            "server",
            "the sections are [tls], [c2s], [storage], [register], [contact], [limits]",
        );
        assert_one(
            "[c2s]\nlisten_tsl = []\n",
            2,
            "c2s.listen_tsl",
            "did you mean `listen_tls`?",
        );
        assert_one("domian = \"x\"\n", 1, "domian", "did you mean `domain`?");
        assert_one(
            "[limits]\nmax_conections = 3\n",
            2,
            "limits.max_conections",
            "did you mean `max_connections`?",
        );
        assert_one(
            "[c2s]\ndomain = \"x\"\n",
            2,
            "c2s.domain",
            "belongs at the top of the file",
        );
        assert_one("listen = []\n", 1, "listen", "belongs in section [c2s]");
        assert_one(
            "[storage]\nzzz = 1\n",
            2,
            "storage.zzz",
            "the keys here are flush_delay_ms, compact_log_bytes, archive_max_messages",
        );
    }

    #[test]
    fn duplicates_are_reported_with_the_first_line() {
        let found = problems("log_level = \"info\"\n\nlog_level = \"debug\"\n");
        assert_eq!(
            found,
            vec![(
                3,
                "log_level".into(),
                "duplicate key (first set on line 1)".into()
            )]
        );
        assert_one(
            "[c2s]\n[storage]\n[c2s]\n",
            3,
            "c2s",
            "appears twice (first on line 1)",
        );
        // A key repeated across two copies of its section is also a duplicate key.
        let found =
            problems("[c2s]\nrequire_encryption = true\n[c2s]\nrequire_encryption = false\n");
        let at: Vec<(usize, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(at, vec![(3, "c2s"), (4, "c2s.require_encryption")]);
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        assert_one(
            "scram_iterations = \"4096\"",
            1,
            "scram_iterations",
            "expected an integer, found a string (without quotes)",
        );
        assert_one(
            "[c2s]\nlisten = \"[::]:5222\"",
            2,
            "c2s.listen",
            "expected an array of strings, found a string (write [\"[::]:5222\"])",
        );
        assert_one(
            "[c2s]\nrequire_encryption = 1",
            2,
            "c2s.require_encryption",
            "expected true or false, found an integer",
        );
        assert_one(
            "[c2s]\nlisten = [5222]",
            2,
            "c2s.listen",
            "found an array of integers",
        );
        assert_one(
            "data_dir = true",
            1,
            "data_dir",
            "expected a string, found a boolean",
        );
        assert_one("log_level = []", 1, "log_level", "found an empty array");
    }

    #[test]
    fn out_of_range_values_give_the_range() {
        let scram = format!("{MIN_SCRAM_ITERATIONS}..={MAX_SCRAM_ITERATIONS}");
        assert_one(
            &format!("scram_iterations = {}", MIN_SCRAM_ITERATIONS - 1),
            1,
            "scram_iterations",
            &scram,
        );
        assert_one(
            &format!("scram_iterations = {}", MAX_SCRAM_ITERATIONS + 1),
            1,
            "scram_iterations",
            &scram,
        );
        assert_one(
            "scram_iterations = -4096",
            1,
            "scram_iterations",
            "-4096 is outside",
        );
        assert_one(
            "[storage]\nflush_delay_ms = 5001",
            2,
            "storage.flush_delay_ms",
            "5001 is outside the permitted range 0..=5000",
        );
        assert_one(
            "[storage]\nflush_delay_ms = -1",
            2,
            "storage.flush_delay_ms",
            "0..=5000",
        );
        assert_one(
            "[storage]\ncompact_log_bytes = 4095",
            2,
            "storage.compact_log_bytes",
            "4095 is outside the permitted range 4096..=",
        );
        let cap = format!("1..={CAP_CONNECTIONS}");
        assert_one(
            "[limits]\nmax_connections = 0",
            2,
            "limits.max_connections",
            &cap,
        );
        assert_one(
            &format!("[limits]\nmax_connections = {}", CAP_CONNECTIONS + 1),
            2,
            "limits.max_connections",
            &cap,
        );
        assert_one(
            "[limits]\nmax_auth_attempts = 9223372036854775807",
            2,
            "limits.max_auth_attempts",
            "1..=5",
        );
        // The ends of each range are accepted.
        let config = ok(&format!(
            "scram_iterations = {MAX_SCRAM_ITERATIONS}\n[storage]\nflush_delay_ms = 5000\n[limits]\nmax_stanza_bytes = 4096\nmax_connections = {CAP_CONNECTIONS}\n"
        ));
        assert_eq!(config.scram_iterations, MAX_SCRAM_ITERATIONS);
        assert_eq!(config.limits.max_connections, CAP_CONNECTIONS);
    }

    #[test]
    fn bad_addresses_are_reported_on_their_own_lines() {
        let text = "[c2s]\nlisten = [\n  \"[::]:5222\",  # all interfaces\n  \"localhost:5222\",\n  \"[::]:5222\",\n  \"::1:5222\",\n]\n";
        let found = problems(text);
        let at: Vec<(usize, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            at,
            vec![(4, "c2s.listen"), (5, "c2s.listen"), (6, "c2s.listen")]
        );
        assert!(
            found[0].2.contains("`localhost:5222` is not ADDR:PORT"),
            "{}",
            found[0].2
        );
        assert!(
            found[1]
                .2
                .contains("[::]:5222 is listed twice (first on line 3)"),
            "{}",
            found[1].2
        );
        assert!(
            found[2].2.contains("`::1:5222` is not ADDR:PORT"),
            "{}",
            found[2].2
        );
        assert_one(
            "[c2s]\nlisten_tls = [\"0.0.0.0\"]",
            2,
            "c2s.listen_tls",
            "not ADDR:PORT",
        );
        assert_one(
            "[c2s]\nlisten_tls = [\"0.0.0.0:70000\"]",
            2,
            "c2s.listen_tls",
            "not ADDR:PORT",
        );
    }

    #[test]
    fn log_levels() {
        for (name, level) in LOG_LEVELS {
            assert_eq!(ok(&format!("log_level = \"{name}\"")).log_level, *level);
        }
        assert_one(
            "log_level = \"verbose\"",
            1,
            "log_level",
            "`verbose` is not a log level; use one of error, warn, info, debug, trace",
        );
        assert_one("log_level = \"INFO\"", 1, "log_level", "not a log level");
    }

    #[test]
    fn invalid_domains_are_refused() {
        // Holds with the jid stub (which refuses everything) and with the real
        // normalize_domain: neither string is a domainpart (RFC 7622 §3.2).
        assert_one("domain = \"\"", 1, "domain", "is not a usable domain");
        assert_one(
            "\ndomain = \"user@example.org\"",
            2,
            "domain",
            "is not a usable domain",
        );
        assert_one("domain = 5", 1, "domain", "expected a string");
    }

    #[test]
    fn valid_domains_are_stored_normalised() {
        // Depends on jid::normalize_domain (jid branch); until it is merged the stub
        // refuses every domain, which this test accepts as the only problem.
        let text = "\ndomain = \"Example.ORG\"\n";
        if jid_ready() {
            assert_eq!(ok(text).domain, "example.org");
        } else {
            assert_one(text, 2, "domain", "is not a usable domain");
        }
    }

    #[test]
    fn tls_certificate_and_key_go_together() {
        assert_one(
            "[tls]\n\ncertificate = \"c.pem\"\n",
            3,
            "tls.certificate",
            "set without tls.key",
        );
        assert_one(
            "[tls]\nkey = \"k.pem\"\n",
            2,
            "tls.key",
            "set without tls.certificate",
        );
        // A present but invalid value still counts as present: only the type is wrong.
        assert_one(
            "[tls]\ncertificate = 1\nkey = \"k.pem\"\n",
            2,
            "tls.certificate",
            "expected a string",
        );
        let config = ok("[tls]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n");
        assert_eq!(config.tls.key, Some(PathBuf::from("/etc/xmppd/k.pem")));
    }

    #[test]
    fn plain_without_tls_contradicts_required_encryption() {
        assert_one(
            "[c2s]\nallow_plain_unencrypted = true\n",
            2,
            "c2s.allow_plain_unencrypted",
            "contradicts require_encryption, which defaults to true",
        );
        assert_one(
            "[c2s]\nrequire_encryption = true\nallow_plain_unencrypted = true\n",
            3,
            "c2s.allow_plain_unencrypted",
            "contradicts require_encryption = true (line 2)",
        );
        let config = ok("[c2s]\nrequire_encryption = false\nallow_plain_unencrypted = true\n");
        assert!(config.c2s.allow_plain_unencrypted && !config.c2s.require_encryption);
    }

    #[test]
    fn at_least_one_listener() {
        assert_one(
            "[c2s]\nlisten = []\nlisten_tls = []\n",
            3,
            "c2s.listen",
            "both empty",
        );
        assert!(ok("[c2s]\nlisten = []\n").c2s.listen.is_empty());
        assert!(ok("[c2s]\nlisten_tls = [\n]\n").c2s.listen_tls.is_empty());
        assert_one(
            "[c2s]\nlisten_tls = [\"[::]:5222\"]\n",
            2,
            "c2s.listen_tls",
            "[::]:5222 is in both c2s.listen and c2s.listen_tls",
        );
    }

    #[test]
    fn a_broken_key_does_not_cause_made_up_combination_problems() {
        // Each second key is unreadable, so the pair/contradiction checks stay quiet.
        assert_one(
            "[tls]\ncertificate = c.pem\nkey = \"k.pem\"\n",
            2,
            "tls.certificate",
            "strings need quotes",
        );
        assert_one(
            "[tls]\ncertificate = \"c.pem\"\nkey = 5\n",
            3,
            "tls.key",
            "expected a string",
        );
        assert_one(
            "[c2s]\nrequire_encryption = ture\nallow_plain_unencrypted = true\n",
            2,
            "c2s.require_encryption",
            "expected a value",
        );
        assert_one(
            "[c2s]\nlisten = []\nlisten_tls = [\"x\"]\n",
            3,
            "c2s.listen_tls",
            "not ADDR:PORT",
        );
        assert_one(
            "[limits]\nmax_stanza_bytes = 262144\nmax_outbound_queue_bytes = 1.5\n",
            3,
            "limits.max_outbound_queue_bytes",
            "floating-point",
        );
    }

    #[test]
    fn limits_cross_checks_point_at_the_limit() {
        assert_one(
            "[limits]\nmax_outbound_queue_bytes = 8192\n",
            2,
            "limits.max_outbound_queue_bytes",
            "smaller than max_stanza_bytes",
        );
        // Only max_stanza_bytes was written; the default queue no longer holds a stanza.
        assert_one(
            &format!(
                "\n[limits]\nmax_stanza_bytes = {CAP_STANZA_BYTES}\ninbound_burst_bytes = {CAP_STANZA_BYTES}\n"
            ),
            2,
            "limits.max_outbound_queue_bytes",
            "smaller than max_stanza_bytes",
        );
    }

    #[test]
    fn every_problem_is_reported_in_line_order() {
        let text = r#"domain = ""
log_level = "loud"
scram_iterations = 12
bogus = 1

[tls]
key = "k.pem"

[c2s]
listen = [
  "[::]:5222",
  "nowhere",
]
allow_plain_unencrypted = true
listen_tls = [5223]

[limits]
max_xml_depth = 1000
max_xml_depth = 10
[storage]
flush_delay_ms = "20"
"#;
        let found = problems(text);
        let at: Vec<(usize, &str)> = found.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(
            at,
            vec![
                (1, "domain"),
                (2, "log_level"),
                (3, "scram_iterations"),
                (4, "bogus"),
                (7, "tls.key"),
                (12, "c2s.listen"),
                (14, "c2s.allow_plain_unencrypted"),
                (15, "c2s.listen_tls"),
                (18, "limits.max_xml_depth"),
                (19, "limits.max_xml_depth"),
                (21, "storage.flush_delay_ms"),
            ],
            "{found:#?}"
        );
    }

    #[test]
    fn problems_display_as_file_line_key_message() {
        let found = parse("\n\n[c2s]\nlisten = 1\n!\n").unwrap_err();
        let shown: Vec<String> = found.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "/etc/xmppd/xmppd.toml:4: c2s.listen: expected an array of strings, found an integer",
                "/etc/xmppd/xmppd.toml:5: expected a `key = value` line, a [section] header or a # comment, found `!`",
            ]
        );
    }

    #[test]
    fn crlf_line_endings_and_a_bom_are_read() {
        let text = "\u{feff}# written on Windows\r\n[c2s]\r\nlisten = [\r\n  \"127.0.0.1:5222\", # loopback\r\n]\r\nrequire_encryption = false\r\n";
        let config = ok(text);
        assert_eq!(config.c2s.listen, vec!["127.0.0.1:5222".parse().unwrap()]);
        assert!(!config.c2s.require_encryption);
        assert_one(
            "\u{feff}\r\n\r\n[c2s]\r\nlisten = 5\r\n",
            4,
            "c2s.listen",
            "expected an array",
        );
    }

    #[test]
    fn string_escapes_reach_the_values() {
        let config = ok(
            "data_dir = \"/srv/\\u0078mpp \\\"q\\\"\\t\\U0001F600\"\n[tls]\ncertificate = '/a\\b.pem'\nkey = \"/k\"\n",
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/xmpp \"q\"\t😀"));
        assert_eq!(config.tls.certificate, Some(PathBuf::from("/a\\b.pem")));
        assert_one("data_dir = \"/srv/\\u0000\"", 1, "data_dir", "NUL");
    }

    #[test]
    fn suggestion_distance() {
        assert_eq!(edit_distance("listen_tsl", "listen_tls"), 1);
        assert_eq!(edit_distance("domian", "domain"), 1);
        assert_eq!(edit_distance("", "key"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("key", ["certificate", "key"].into_iter()),
            Some("key")
        );
        assert_eq!(closest("xyz", ["key"].into_iter()), None);
        assert_eq!(closest(&"k".repeat(1000), ["key"].into_iter()), None);
    }

    /// Small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Parse must not panic, every problem must point inside the text, and the report
    /// must stay proportional to the input (a quadratic report is quadratic work).
    fn check_survives(text: &str) {
        let lines = text.split('\n').count();
        if let Err(problems) = parse(text) {
            assert!(!problems.is_empty());
            let mut report_bytes = 0;
            for p in problems {
                assert!(
                    p.line <= lines,
                    "line {} of {lines}: {p} in {text:?}",
                    p.line
                );
                report_bytes += p.to_string().len();
            }
            assert!(
                report_bytes <= 150 * text.len() + 10_000,
                "{report_bytes} bytes of problems for {} bytes of input",
                text.len()
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        const PIECES: &[&str] = &[
            "[",
            "]",
            "[[",
            "\"",
            "'",
            "\"\"\"",
            "=",
            " = ",
            "\n",
            "\r\n",
            "\r",
            "#",
            " ",
            "\t",
            ",",
            "{",
            "}",
            ".",
            "\\",
            "\\u",
            "\\U0010FFFF",
            "\\uD800",
            "\\n",
            "0",
            "-1",
            "1_000",
            "_",
            "0x1F",
            "1.5",
            "9223372036854775808",
            "true",
            "false",
            "é",
            "😀",
            "\u{feff}",
            "\u{0}",
            "\u{7f}",
            "domain",
            "listen",
            "listen_tls",
            "c2s",
            "tls",
            "limits",
            "max_connections",
            "[c2s]",
            "[limits]",
            "[tls]",
            "certificate",
            "\"[::]:5222\"",
            "\"x\"",
            "'y'",
            "allow_plain_unencrypted = true",
        ];
        let mut rng = Rng(0x5eed_c0ff_ee00_0001);
        for _ in 0..3000 {
            let mut text = String::new();
            if rng.below(2) == 0 {
                for _ in 0..rng.below(60) {
                    text.push_str(PIECES[rng.below(PIECES.len())]);
                }
            } else {
                let bytes: Vec<u8> = (0..rng.below(120)).map(|_| rng.next() as u8).collect();
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            check_survives(&text);
        }
        // Mutations of a real file reach deeper than soup.
        let example = include_str!("../../config/xmppd.example.toml");
        for _ in 0..300 {
            let mut bytes = example.as_bytes().to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len());
                match rng.below(3) {
                    0 => bytes[at] = rng.next() as u8,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, b"[]\"'=,#\n\\"[rng.below(9)]),
                }
            }
            check_survives(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn pathological_input_takes_linear_time() {
        let n = 100_000;
        let inputs = [
            "[".repeat(n),
            "]".repeat(n),
            format!("a = [{}]", "[".repeat(n)),
            format!("a = [{}", "1,".repeat(n)),
            format!("a = [{}", "\n".repeat(n)),
            format!("a = \"{}\"", "\\".repeat(n)),
            "\"".repeat(n),
            format!("{} = 1", "k".repeat(n)),
            format!("[{}]", "s".repeat(n)),
            format!("a = {}", "9".repeat(n)),
            format!("[limits]\n{}", "max_xml_dept = 1\n".repeat(n / 20)),
            format!("[c2s]\nlisten = [{}]", "\"[::]:1\",".repeat(n / 10)),
            format!(
                "[c2s]\nlisten = [{}]\nlisten_tls = [{}]",
                (0..n / 20)
                    .map(|p| format!("\"[::]:{p}\","))
                    .collect::<String>(),
                (0..n / 20)
                    .map(|p| format!("\"[::1]:{p}\","))
                    .collect::<String>()
            ),
            format!("{} = [{}]", "k".repeat(n / 2), "!,".repeat(n / 4)),
            format!("[{}]\n{}", "s".repeat(n / 2), "k = !\n".repeat(n / 10)),
            "a = [\n\"x\"\n".repeat(n / 10),
        ];
        // No wall-clock bound here (timed unit tests are flaky on a loaded machine):
        // quadratic behaviour on these sizes would take minutes and show up as a hung
        // test, and the fuzz target runs the parser under libFuzzer's timeout.
        for input in &inputs {
            check_survives(input);
        }
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let file = "/etc/xmppd/xmppd.example.toml";
        let text = include_str!("../../config/xmppd.example.toml");
        let result = Config::parse(Path::new(file), text);
        if jid_ready() {
            assert_eq!(result, Ok(defaults_for(file)));
        } else {
            // Until the jid branch is merged, normalize_domain refuses "localhost" too; the
            // domain line must then be the only problem.
            let problems = result.unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:#?}");
            assert_eq!(problems[0].key, "domain");
        }
    }

    #[test]
    fn the_key_table_defaults_are_the_config_defaults() {
        let mut text = String::new();
        let mut section = "";
        for k in all_keys() {
            if k.default == DefaultValue::Unset || (k.key == "domain" && !jid_ready()) {
                continue;
            }
            if k.section != section {
                section = k.section;
                text.push_str(&format!("[{section}]\n"));
            }
            text.push_str(&format!("{} = {}\n", k.key, k.default));
        }
        assert_eq!(ok(&text), defaults_for(FILE), "{text}");
    }

    /// Every key appears in the example file, set or commented out, under its section,
    /// after a comment giving its doc line, its default and (for integers) its range.
    #[test]
    fn example_file_documents_every_key() {
        let text = include_str!("../../config/xmppd.example.toml");
        let mut documented: HashMap<String, String> = HashMap::new();
        let mut section = String::new();
        let mut comment: Vec<&str> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                comment.clear();
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                comment.clear();
                continue;
            }
            let uncommented = line.trim_start_matches('#').trim_start();
            let key = uncommented.split(" = ").next().unwrap_or("");
            let is_key = uncommented.contains(" = ")
                && all_keys().any(|k| k.section == section && k.key == key);
            if is_key {
                documented.insert(dotted(&section, key), comment.join(" "));
                comment.clear();
            } else if let Some(c) = line.strip_prefix('#') {
                comment.push(c.trim());
            }
        }
        for k in all_keys() {
            let name = k.dotted();
            let Some(comment) = documented.get(&name) else {
                panic!("{name} is missing from config/xmppd.example.toml");
            };
            assert!(
                comment.contains(k.doc),
                "{name}: doc {:?} not in {comment:?}",
                k.doc
            );
            let default = format!("Default: {}.", k.default);
            assert!(
                comment.contains(&default),
                "{name}: {default:?} not in {comment:?}"
            );
            if let Kind::Integer { min, max } = k.kind {
                let range = format!("Range: {min}..={max}.");
                assert!(
                    comment.contains(&range),
                    "{name}: {range:?} not in {comment:?}"
                );
            }
        }
    }
}
