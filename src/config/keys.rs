//! Every config key: its section, type, default, range and one-line documentation, and how
//! its value is checked and stored. The README, `--help` and the example file are kept
//! in step with this table (tests below check the example file against it).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use super::Config;
use super::syntax::{Value, quote};
use crate::limits::{
    CAP_ARCHIVE_AGE_DAYS, CAP_ARCHIVE_MESSAGES, CAP_ARCHIVE_MIB, CAP_ARCHIVE_SEGMENT_KIB,
    CAP_FLUSH_DELAY_MS, DEFAULT_ARCHIVE_AGE_DAYS, DEFAULT_ARCHIVE_MESSAGES, DEFAULT_ARCHIVE_MIB,
    DEFAULT_ARCHIVE_SEGMENT_KIB, DEFAULT_COMPACT_LOG_BYTES, DEFAULT_FLUSH_DELAY_MS,
    DEFAULT_SCRAM_ITERATIONS, LIMIT_SPECS, LimitSpec, Limits, MAX_SCRAM_ITERATIONS,
    MIN_SCRAM_ITERATIONS,
};

/// Smallest `storage.compact_log_bytes`: below one flash page's worth of records the
/// server would rewrite its snapshot after nearly every change, wearing the flash it is
/// meant to spare.
pub const MIN_COMPACT_LOG_BYTES: u64 = 4096;
/// Largest `storage.compact_log_bytes`: a bigger log outgrows the flash partition of a
/// typical router, and replaying it at start would take long on a slow core.
pub const MAX_COMPACT_LOG_BYTES: u64 = 64 * 1024 * 1024;

/// The values `log_level` accepts, most severe first.
pub const LOG_LEVELS: &[(&str, log::LevelFilter)] = &[
    ("error", log::LevelFilter::Error),
    ("warn", log::LevelFilter::Warn),
    ("info", log::LevelFilter::Info),
    ("debug", log::LevelFilter::Debug),
    ("trace", log::LevelFilter::Trace),
];

/// What a key accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A domain name, normalised by `jid::normalize_domain` (RFC 7622 §3.2).
    Domain,
    /// A file or directory; relative paths are taken from the config file's directory.
    Path,
    /// One of [`LOG_LEVELS`].
    LogLevel,
    Bool,
    /// An integer within `min..=max`.
    Integer {
        min: u64,
        max: u64,
    },
    /// An array of `ADDR:PORT` strings (IPv6 addresses in brackets); may be empty.
    Addresses,
    /// Issue 7: one of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Issue 7: an array of URIs (`xmpp:`, `mailto:`, `https:` …); may be empty.
    Uris,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Domain => f.write_str("domain name"),
            Kind::Path => f.write_str("path"),
            Kind::LogLevel => f.write_str("error | warn | info | debug | trace"),
            Kind::Bool => f.write_str("true | false"),
            Kind::Integer { min, max } => write!(f, "integer {min}..={max}"),
            Kind::Addresses => f.write_str("array of \"ADDR:PORT\""),
            Kind::Choice(words) => f.write_str(&words.join(" | ")),
            Kind::Uris => f.write_str("array of \"SCHEME:…\" URIs"),
        }
    }
}

/// A key's default, printable as the TOML that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    Str(&'static str),
    Int(u64),
    Bool(bool),
    Strs(&'static [&'static str]),
    /// The key is optional and has no value when absent.
    Unset,
}

impl fmt::Display for DefaultValue {
    /// TOML text (the defaults hold nothing that needs escaping), or `unset`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Str(s) => write!(f, "\"{s}\""),
            DefaultValue::Int(n) => write!(f, "{n}"),
            DefaultValue::Bool(b) => write!(f, "{b}"),
            DefaultValue::Strs(list) => {
                f.write_str("[")?;
                for (i, s) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "\"{s}\"")?;
                }
                f.write_str("]")
            }
            DefaultValue::Unset => f.write_str("unset"),
        }
    }
}

/// One config key and its documentation.
#[derive(Clone, Copy)]
pub struct KeyDoc {
    /// Empty for the keys at the top of the file, before any `[section]`.
    pub section: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    /// One line saying what the key does.
    pub doc: &'static str,
    setter: Setter,
}

impl KeyDoc {
    /// `c2s.listen`, or `domain` for a top-level key: the name used in problems.
    pub fn dotted(&self) -> String {
        dotted(self.section, self.key)
    }
}

impl fmt::Debug for KeyDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDoc")
            .field("section", &self.section)
            .field("key", &self.key)
            .field("kind", &self.kind)
            .field("default", &self.default)
            .field("doc", &self.doc)
            .finish_non_exhaustive()
    }
}

pub(crate) fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// A problem with one key's value. `line` is set when the problem is on a line of its
/// own (an element of a multi-line array); otherwise it is the key's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    pub line: Option<usize>,
    pub message: String,
}

impl Fault {
    fn at_key(message: impl Into<String>) -> Fault {
        Fault {
            line: None,
            message: message.into(),
        }
    }
}

/// What the setters need besides the value.
pub(crate) struct Context<'a> {
    /// Directory relative paths are resolved against.
    pub base_dir: &'a Path,
}

type Apply = fn(&mut Config, &Value, &Context) -> Result<(), Vec<Fault>>;

#[derive(Clone, Copy)]
enum Setter {
    Fn(Apply),
    Limit(&'static LimitSpec),
}

impl KeyDoc {
    /// Checks `value` and stores it in `config`; on error `config` is left unchanged.
    pub(crate) fn apply(
        &self,
        config: &mut Config,
        value: &Value,
        ctx: &Context,
    ) -> Result<(), Vec<Fault>> {
        match self.setter {
            Setter::Fn(apply) => apply(config, value, ctx),
            Setter::Limit(spec) => {
                let n = integer_in(value, spec.min, spec.max).map_err(|f| vec![f])?;
                (spec.set)(&mut config.limits, n);
                Ok(())
            }
        }
    }
}

/// Every key outside `[limits]`. The `[limits]` keys come from
/// [`crate::limits::LIMIT_SPECS`], so that their ranges live in one place; use
/// [`all_keys`] for the complete list.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        section: "",
        key: "domain",
        kind: Kind::Domain,
        default: DefaultValue::Str("localhost"),
        doc: "The XMPP domain served: the part after the @ in user addresses.",
        setter: Setter::Fn(set_domain),
    },
    KeyDoc {
        section: "",
        key: "data_dir",
        kind: Kind::Path,
        default: DefaultValue::Str("./xmppd-data"),
        doc: "Directory for the account store, the generated certificate and the control socket.",
        setter: Setter::Fn(set_data_dir),
    },
    KeyDoc {
        section: "",
        key: "log_level",
        kind: Kind::LogLevel,
        default: DefaultValue::Str("info"),
        doc: "Least severe messages logged: error, warn, info, debug or trace.",
        setter: Setter::Fn(set_log_level),
    },
    KeyDoc {
        section: "",
        key: "scram_iterations",
        kind: Kind::Integer {
            min: MIN_SCRAM_ITERATIONS as u64,
            max: MAX_SCRAM_ITERATIONS as u64,
        },
        default: DefaultValue::Int(DEFAULT_SCRAM_ITERATIONS as u64),
        doc: "PBKDF2 iterations for newly set passwords (RFC 7677 asks for at least 4096).",
        setter: Setter::Fn(set_scram_iterations),
    },
    KeyDoc {
        section: "",
        key: "threads",
        kind: Kind::Integer {
            min: 1,
            max: crate::limits::MAX_THREADS as u64,
        },
        default: DefaultValue::Int(crate::limits::DEFAULT_THREADS as u64),
        doc: "Threads serving connections; one suits a household, more help only a login storm on a multi-core board.",
        setter: Setter::Fn(set_threads),
    },
    KeyDoc {
        section: "tls",
        key: "certificate",
        kind: Kind::Path,
        default: DefaultValue::Unset,
        doc: "PEM certificate chain, set together with tls.key; when both are unset a self-signed certificate is generated in data_dir.",
        setter: Setter::Fn(set_tls_certificate),
    },
    KeyDoc {
        section: "tls",
        key: "key",
        kind: Kind::Path,
        default: DefaultValue::Unset,
        doc: "PEM private key of tls.certificate.",
        setter: Setter::Fn(set_tls_key),
    },
    KeyDoc {
        section: "c2s",
        key: "listen",
        kind: Kind::Addresses,
        default: DefaultValue::Strs(&["[::]:5222"]),
        doc: "Addresses for clients that connect in plain text and upgrade with STARTTLS; [] disables them.",
        setter: Setter::Fn(set_listen),
    },
    KeyDoc {
        section: "c2s",
        key: "listen_tls",
        kind: Kind::Addresses,
        default: DefaultValue::Strs(&["[::]:5223"]),
        doc: "Addresses for clients that start with TLS (XEP-0368); [] disables them.",
        setter: Setter::Fn(set_listen_tls),
    },
    KeyDoc {
        section: "c2s",
        key: "require_encryption",
        kind: Kind::Bool,
        default: DefaultValue::Bool(true),
        doc: "Refuse clients that try to log in before starting TLS; turn off only for loopback tests.",
        setter: Setter::Fn(set_require_encryption),
    },
    KeyDoc {
        section: "c2s",
        key: "allow_plain_unencrypted",
        kind: Kind::Bool,
        default: DefaultValue::Bool(false),
        doc: "Offer password login (SASL PLAIN) without TLS; needs require_encryption = false.",
        setter: Setter::Fn(set_allow_plain_unencrypted),
    },
    KeyDoc {
        section: "storage",
        key: "flush_delay_ms",
        kind: Kind::Integer {
            min: 0,
            max: CAP_FLUSH_DELAY_MS as u64,
        },
        default: DefaultValue::Int(DEFAULT_FLUSH_DELAY_MS as u64),
        doc: "Milliseconds a change waits to share one disk write with others (fewer flash writes).",
        setter: Setter::Fn(set_flush_delay_ms),
    },
    KeyDoc {
        section: "storage",
        key: "compact_log_bytes",
        kind: Kind::Integer {
            min: MIN_COMPACT_LOG_BYTES,
            max: MAX_COMPACT_LOG_BYTES,
        },
        default: DefaultValue::Int(DEFAULT_COMPACT_LOG_BYTES),
        doc: "Size in bytes past which the change log is folded into a new snapshot.",
        setter: Setter::Fn(set_compact_log_bytes),
    },
    KeyDoc {
        section: "storage",
        key: "archive_max_messages",
        kind: Kind::Integer {
            min: 100,
            max: CAP_ARCHIVE_MESSAGES as u64,
        },
        default: DefaultValue::Int(DEFAULT_ARCHIVE_MESSAGES as u64),
        doc: "Messages kept in each account's archive (XEP-0313); the oldest go first.",
        setter: Setter::Fn(set_archive_max_messages),
    },
    KeyDoc {
        section: "storage",
        key: "archive_max_age_days",
        kind: Kind::Integer {
            min: 0,
            max: CAP_ARCHIVE_AGE_DAYS as u64,
        },
        default: DefaultValue::Int(DEFAULT_ARCHIVE_AGE_DAYS as u64),
        doc: "Days a message stays in the archive; 0 keeps them until the other bounds.",
        setter: Setter::Fn(set_archive_max_age_days),
    },
    KeyDoc {
        section: "storage",
        key: "archive_max_mib",
        kind: Kind::Integer {
            min: 1,
            max: CAP_ARCHIVE_MIB as u64,
        },
        default: DefaultValue::Int(DEFAULT_ARCHIVE_MIB as u64),
        doc: "MiB of disk the whole archive may use; the oldest segment goes first.",
        setter: Setter::Fn(set_archive_max_mib),
    },
    KeyDoc {
        section: "storage",
        key: "archive_segment_kib",
        kind: Kind::Integer {
            min: 64,
            max: CAP_ARCHIVE_SEGMENT_KIB as u64,
        },
        default: DefaultValue::Int(DEFAULT_ARCHIVE_SEGMENT_KIB as u64),
        doc: "KiB per archive segment file (the unit in which space is reclaimed).",
        setter: Setter::Fn(set_archive_segment_kib),
    },
    // ---- issue 7: in-band registration (XEP-0077) and contact addresses (XEP-0157) ----
    KeyDoc {
        section: "register",
        key: "enabled",
        kind: Kind::Bool,
        default: DefaultValue::Bool(false),
        doc: "Let clients create accounts themselves (XEP-0077 in-band registration).",
        setter: Setter::Fn(set_register_enabled),
    },
    KeyDoc {
        section: "register",
        key: "mode",
        kind: Kind::Choice(&["invite", "open"]),
        default: DefaultValue::Str("invite"),
        doc: "invite: only with a token from `xmppd invite` (XEP-0401/0445); open: anyone who can reach the server.",
        setter: Setter::Fn(set_register_mode),
    },
    KeyDoc {
        section: "contact",
        key: "admin",
        kind: Kind::Uris,
        default: DefaultValue::Strs(&[]),
        doc: "Addresses of the server's administrators, e.g. [\"xmpp:admin@example.org\", \"mailto:admin@example.org\"] (XEP-0157).",
        setter: Setter::Fn(set_contact_admin),
    },
    KeyDoc {
        section: "contact",
        key: "abuse",
        kind: Kind::Uris,
        default: DefaultValue::Strs(&[]),
        doc: "Addresses for reporting abuse (XEP-0157).",
        setter: Setter::Fn(set_contact_abuse),
    },
    KeyDoc {
        section: "contact",
        key: "support",
        kind: Kind::Uris,
        default: DefaultValue::Strs(&[]),
        doc: "Addresses where users get help (XEP-0157).",
        setter: Setter::Fn(set_contact_support),
    },
    KeyDoc {
        section: "contact",
        key: "security",
        kind: Kind::Uris,
        default: DefaultValue::Strs(&[]),
        doc: "Addresses for reporting security problems (XEP-0157).",
        setter: Setter::Fn(set_contact_security),
    },
];

/// Every key the config file knows: [`KEYS`], then one `[limits]` key per entry of
/// [`LIMIT_SPECS`], in file order.
pub fn all_keys() -> impl Iterator<Item = KeyDoc> {
    let limits = Limits::default();
    KEYS.iter()
        .copied()
        .chain(LIMIT_SPECS.iter().map(move |spec| KeyDoc {
            section: "limits",
            key: spec.key,
            kind: Kind::Integer {
                min: spec.min,
                max: spec.max,
            },
            default: DefaultValue::Int((spec.get)(&limits)),
            doc: spec.doc,
            setter: Setter::Limit(spec),
        }))
}

// ---- value checks shared by the setters ----

fn wrong_type(expected: &str, found: &Value) -> Fault {
    let hint = match (expected, found) {
        ("an array of strings", Value::Str(s)) => format!(" (write [{}])", quote_toml(s)),
        ("an integer", Value::Str(_)) | ("true or false", Value::Str(_)) => {
            " (without quotes)".to_string()
        }
        _ => String::new(),
    };
    Fault::at_key(format!(
        "expected {expected}, found {}{hint}",
        found.kind_name()
    ))
}

fn quote_toml(s: &str) -> String {
    let shown = quote(s);
    format!("\"{}\"", shown.trim_matches('`'))
}

fn string(value: &Value) -> Result<&str, Fault> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(wrong_type("a string", other)),
    }
}

fn boolean(value: &Value) -> Result<bool, Fault> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(wrong_type("true or false", other)),
    }
}

fn integer_in(value: &Value, min: u64, max: u64) -> Result<u64, Fault> {
    let n = match value {
        Value::Int(n) => *n,
        other => return Err(wrong_type("an integer", other)),
    };
    match u64::try_from(n) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Fault::at_key(format!(
            "{n} is outside the permitted range {min}..={max}"
        ))),
    }
}

fn integer_u32(value: &Value, min: u32, max: u32) -> Result<u32, Fault> {
    let n = integer_in(value, u64::from(min), u64::from(max))?;
    u32::try_from(n).map_err(|_| Fault::at_key(format!("{n} does not fit in 32 bits")))
}

/// Relative paths are taken from the config file's directory, not the working
/// directory, so that `xmppd -c /etc/xmppd/xmppd.toml` means the same from anywhere.
fn path(value: &Value, ctx: &Context) -> Result<PathBuf, Fault> {
    let s = string(value)?;
    if s.is_empty() {
        return Err(Fault::at_key("empty path"));
    }
    if s.contains('\0') {
        return Err(Fault::at_key("a path cannot contain a NUL character"));
    }
    Ok(resolve_path(ctx.base_dir, Path::new(s)))
}

pub(crate) fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let tail: PathBuf = path
        .components()
        .skip_while(|c| *c == Component::CurDir)
        .collect();
    base_dir.join(tail)
}

fn addresses(value: &Value) -> Result<Vec<SocketAddr>, Vec<Fault>> {
    let elements: &[(usize, String)] = match value {
        Value::Strs(list) => list,
        Value::EmptyArray => &[],
        other => return Err(vec![wrong_type("an array of strings", other)]),
    };
    let mut faults = Vec::new();
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Vec::with_capacity(elements.len());
    for (line, text) in elements {
        match text.parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(first) = seen.insert(addr, *line) {
                    faults.push(Fault {
                        line: Some(*line),
                        message: format!("{addr} is listed twice (first on line {first})"),
                    });
                }
                out.push(addr);
            }
            Err(_) => faults.push(Fault {
                line: Some(*line),
                message: format!(
                    "{} is not ADDR:PORT (for example \"0.0.0.0:5222\" or \"[::]:5222\"; host names are not looked up)",
                    quote(text)
                ),
            }),
        }
    }
    if faults.is_empty() {
        Ok(out)
    } else {
        Err(faults)
    }
}

fn one<T>(result: Result<T, Fault>) -> Result<T, Vec<Fault>> {
    result.map_err(|f| vec![f])
}

// ---- setters ----

fn set_domain(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    let text = one(string(value))?;
    config.domain = one(check_domain(text))?;
    Ok(())
}

/// The served domain must be a valid JID domainpart (RFC 7622 §3.2), stored normalised so
/// that it compares equal to the domain of every parsed JID.
fn check_domain(text: &str) -> Result<String, Fault> {
    use crate::jid::JidError;
    crate::jid::normalize_domain(text).map_err(|e| {
        let why = match e {
            JidError::Empty | JidError::EmptyDomain => "it is empty",
            JidError::DomainTooLong => "it is longer than 1023 bytes",
            _ => "it is not a valid domain name or IP address (RFC 7622 §3.2)",
        };
        Fault::at_key(format!("{} is not a usable domain: {why}", quote(text)))
    })
}

fn set_data_dir(config: &mut Config, value: &Value, ctx: &Context) -> Result<(), Vec<Fault>> {
    config.data_dir = one(path(value, ctx))?;
    Ok(())
}

fn set_log_level(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    let text = one(string(value))?;
    match LOG_LEVELS.iter().find(|(name, _)| *name == text) {
        Some((_, level)) => {
            config.log_level = *level;
            Ok(())
        }
        None => Err(vec![Fault::at_key(format!(
            "{} is not a log level; use one of error, warn, info, debug, trace",
            quote(text)
        ))]),
    }
}

fn set_scram_iterations(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.scram_iterations = one(integer_u32(
        value,
        MIN_SCRAM_ITERATIONS,
        MAX_SCRAM_ITERATIONS,
    ))?;
    Ok(())
}

fn set_threads(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.threads = one(integer_u32(value, 1, crate::limits::MAX_THREADS))?;
    Ok(())
}

fn set_tls_certificate(
    config: &mut Config,
    value: &Value,
    ctx: &Context,
) -> Result<(), Vec<Fault>> {
    config.tls.certificate = Some(one(path(value, ctx))?);
    Ok(())
}

fn set_tls_key(config: &mut Config, value: &Value, ctx: &Context) -> Result<(), Vec<Fault>> {
    config.tls.key = Some(one(path(value, ctx))?);
    Ok(())
}

fn set_listen(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.c2s.listen = addresses(value)?;
    Ok(())
}

fn set_listen_tls(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.c2s.listen_tls = addresses(value)?;
    Ok(())
}

fn set_require_encryption(
    config: &mut Config,
    value: &Value,
    _: &Context,
) -> Result<(), Vec<Fault>> {
    config.c2s.require_encryption = one(boolean(value))?;
    Ok(())
}

fn set_allow_plain_unencrypted(
    config: &mut Config,
    value: &Value,
    _: &Context,
) -> Result<(), Vec<Fault>> {
    config.c2s.allow_plain_unencrypted = one(boolean(value))?;
    Ok(())
}

fn set_flush_delay_ms(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.storage.flush_delay_ms = one(integer_u32(value, 0, CAP_FLUSH_DELAY_MS))?;
    Ok(())
}

fn set_archive_max_messages(
    config: &mut Config,
    value: &Value,
    _: &Context,
) -> Result<(), Vec<Fault>> {
    config.storage.archive_max_messages = one(integer_u32(value, 100, CAP_ARCHIVE_MESSAGES))?;
    Ok(())
}

fn set_archive_max_age_days(
    config: &mut Config,
    value: &Value,
    _: &Context,
) -> Result<(), Vec<Fault>> {
    config.storage.archive_max_age_days = one(integer_u32(value, 0, CAP_ARCHIVE_AGE_DAYS))?;
    Ok(())
}

fn set_archive_max_mib(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.storage.archive_max_mib = one(integer_u32(value, 1, CAP_ARCHIVE_MIB))?;
    Ok(())
}

fn set_archive_segment_kib(
    config: &mut Config,
    value: &Value,
    _: &Context,
) -> Result<(), Vec<Fault>> {
    config.storage.archive_segment_kib = one(integer_u32(value, 64, CAP_ARCHIVE_SEGMENT_KIB))?;
    Ok(())
}

fn set_compact_log_bytes(
    config: &mut Config,
    value: &Value,
    _: &Context,
) -> Result<(), Vec<Fault>> {
    config.storage.compact_log_bytes = one(integer_in(
        value,
        MIN_COMPACT_LOG_BYTES,
        MAX_COMPACT_LOG_BYTES,
    ))?;
    Ok(())
}

// ---- issue 7 setters ----

fn set_register_enabled(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.register.enabled = one(boolean(value))?;
    Ok(())
}

fn set_register_mode(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    let text = one(string(value))?;
    config.register.open = match text {
        "open" => true,
        "invite" => false,
        other => {
            return Err(vec![Fault::at_key(format!(
                "{} is not a registration mode; use \"invite\" or \"open\"",
                quote(other)
            ))]);
        }
    };
    Ok(())
}

/// XEP-0157 §2: each value is a URI; a scheme is what makes it one.
fn uris(value: &Value) -> Result<Vec<String>, Vec<Fault>> {
    let elements: &[(usize, String)] = match value {
        Value::Strs(list) => list,
        Value::EmptyArray => &[],
        other => return Err(vec![wrong_type("an array of strings", other)]),
    };
    let mut faults = Vec::new();
    let mut out = Vec::new();
    for (line, text) in elements {
        let scheme_ok = text.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if scheme_ok {
            out.push(text.clone());
        } else {
            faults.push(Fault {
                line: Some(*line),
                message: format!(
                    "{} is not a URI (write for example \"xmpp:admin@example.org\" or \"mailto:admin@example.org\")",
                    quote(text)
                ),
            });
        }
    }
    if faults.is_empty() {
        Ok(out)
    } else {
        Err(faults)
    }
}

fn set_contact_admin(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.contact.admin = uris(value)?;
    Ok(())
}

fn set_contact_abuse(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.contact.abuse = uris(value)?;
    Ok(())
}

fn set_contact_support(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.contact.support = uris(value)?;
    Ok(())
}

fn set_contact_security(config: &mut Config, value: &Value, _: &Context) -> Result<(), Vec<Fault>> {
    config.contact.security = uris(value)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_contact_keys_are_checked() {
        let ok = super::super::Config::parse(
            Path::new("x.toml"),
            "[register]\nenabled = true\nmode = \"open\"\n[contact]\nadmin = [\"xmpp:admin@example.org\", \"mailto:a@example.org\"]\n",
        )
        .expect("valid");
        assert!(ok.register.enabled && ok.register.open);
        assert_eq!(ok.contact.admin.len(), 2);
        let bad = super::super::Config::parse(
            Path::new("x.toml"),
            "[register]\nmode = \"closed\"\n[contact]\nabuse = [\"admin@example.org\"]\n",
        )
        .expect_err("invalid");
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].message.contains("registration mode"));
        assert!(bad[1].message.contains("not a URI"));
    }

    #[test]
    fn limit_specs_are_documented() {
        assert!(LIMIT_SPECS.iter().all(|s| !s.doc.is_empty()));
    }

    #[test]
    fn keys_are_unique_and_documented() {
        let keys: Vec<KeyDoc> = all_keys().collect();
        assert_eq!(keys.len(), KEYS.len() + LIMIT_SPECS.len());
        for (i, a) in keys.iter().enumerate() {
            assert!(!a.doc.is_empty(), "{} has no doc", a.dotted());
            assert!(
                a.doc.ends_with('.') && !a.doc.contains('\n'),
                "{}: one sentence per doc",
                a.dotted()
            );
            for b in &keys[i + 1..] {
                assert_ne!(a.dotted(), b.dotted());
            }
        }
    }

    #[test]
    fn integer_defaults_are_within_their_ranges() {
        for k in all_keys() {
            if let (Kind::Integer { min, max }, DefaultValue::Int(d)) = (k.kind, k.default) {
                assert!((min..=max).contains(&d), "{}", k.dotted());
            }
        }
    }

    #[test]
    fn defaults_print_as_toml() {
        assert_eq!(DefaultValue::Str("info").to_string(), "\"info\"");
        assert_eq!(
            DefaultValue::Strs(&["[::]:5222", "0.0.0.0:1"]).to_string(),
            "[\"[::]:5222\", \"0.0.0.0:1\"]"
        );
        assert_eq!(DefaultValue::Int(20).to_string(), "20");
        assert_eq!(DefaultValue::Bool(false).to_string(), "false");
    }

    #[test]
    fn relative_paths_join_the_config_directory() {
        let base = Path::new("/etc/xmppd");
        assert_eq!(
            resolve_path(base, Path::new("./data")),
            PathBuf::from("/etc/xmppd/data")
        );
        assert_eq!(
            resolve_path(base, Path::new("../x/key.pem")),
            PathBuf::from("/etc/xmppd/../x/key.pem")
        );
        assert_eq!(
            resolve_path(base, Path::new("/abs/key.pem")),
            PathBuf::from("/abs/key.pem")
        );
        assert_eq!(
            resolve_path(Path::new(""), Path::new("./data")),
            PathBuf::from("data")
        );
    }
}
