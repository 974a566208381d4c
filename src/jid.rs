//! XMPP addresses (RFC 7622).
//!
//! A [`Jid`] is one normalised string `local@domain/resource` plus two byte offsets
//! (STYLE.md: not three Strings), so routing compares and hashes a single string and
//! [`Jid::bare_str`] is a slice rather than a copy.
//!
//! Every stanza's `to` and `from` is parsed, and nearly all of them are plain ASCII, so each
//! part has an ASCII fast path that yields exactly what the PRECIS profiles would (a test
//! compares the two on every 1- and 2-character ASCII string); anything else goes through
//! `precis-profiles`. Either way the result is written straight into the one `String` the
//! `Jid` keeps.
//!
//! Domainparts get an IDNA2008-style treatment without an IDNA library (see
//! [`normalize_domain`] for what is and is not checked).

use core::fmt;
use core::fmt::Write as _;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;
use std::borrow::Cow;

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::{OpaqueString, UsernameCaseMapped};

use crate::limits::JID_PART_MAX_BYTES;

/// Why an address was refused; every variant becomes `<jid-malformed/>` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JidError {
    Empty,
    EmptyLocal,
    EmptyDomain,
    EmptyResource,
    LocalTooLong,
    DomainTooLong,
    ResourceTooLong,
    InvalidLocal,
    InvalidDomain,
    InvalidResource,
}

impl fmt::Display for JidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JidError::Empty => "empty address",
            JidError::EmptyLocal => "empty localpart",
            JidError::EmptyDomain => "empty domainpart",
            JidError::EmptyResource => "empty resourcepart",
            JidError::LocalTooLong => "localpart longer than 1023 bytes",
            JidError::DomainTooLong => "domainpart longer than 1023 bytes",
            JidError::ResourceTooLong => "resourcepart longer than 1023 bytes",
            JidError::InvalidLocal => "localpart not allowed by RFC 7622 §3.3",
            JidError::InvalidDomain => "domainpart not allowed by RFC 7622 §3.2",
            JidError::InvalidResource => "resourcepart not allowed by RFC 7622 §3.4",
        })
    }
}

impl std::error::Error for JidError {}

/// No mapping used here shrinks text by more than 3x (a 3-byte fullwidth code point or
/// non-ASCII space becomes one ASCII byte; Hangul jamo compose 9 bytes into 3), so a raw
/// part longer than this can never normalise to `JID_PART_MAX_BYTES`. Refusing it before
/// PRECIS runs bounds the work one hostile attribute can cause.
const RAW_PART_MAX_BYTES: usize = 4 * JID_PART_MAX_BYTES;

/// RFC 1035 §2.3.4: a DNS label is at most 63 octets.
const DNS_LABEL_MAX_BYTES: usize = 63;

/// RFC 7622 §3.3.1: code points PRECIS IdentifierClass allows but XMPP localparts forbid
/// (they would be ambiguous in XMPP URIs, XML and older address parsers).
const LOCALPART_FORBIDDEN: &[u8] = b"\"&'/:<>@";

/// A normalised address held as one string plus part offsets (STYLE.md: not three Strings).
///
/// Invariant: the string re-parses to the same parts (a localpart and a domainpart never
/// contain '@' or '/'), so equal strings always have equal offsets and the derived
/// `Eq`/`Hash`/`Ord` order addresses by their normalised text.
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    /// `local@domain/resource`, every part normalised.
    s: String,
    /// 0 when there is no localpart (it is never empty), else the byte after the '@'.
    domain_start: u16,
    /// Byte index of the '/' before the resource, or `s.len()` when there is none.
    resource_start: u16,
}

impl Jid {
    /// Parses and normalises an address as found in a `to`/`from` attribute.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        Self::parse_into(String::with_capacity(s.len()), s)
    }

    /// Like [`Jid::parse`], but builds the address in the buffer of `reuse` (an address
    /// no longer needed), so that parsing allocates nothing when it is large enough.
    pub fn parse_reusing(s: &str, reuse: Option<Jid>) -> Result<Jid, JidError> {
        match reuse {
            Some(old) => Self::parse_into(old.s, s),
            None => Self::parse(s),
        }
    }

    fn parse_into(buf: String, s: &str) -> Result<Jid, JidError> {
        if s.is_empty() {
            return Err(JidError::Empty);
        }
        // RFC 7622 §3.1: the resourcepart is everything after the first '/', and the
        // localpart ends at the first '@' of what precedes it, so a resourcepart may hold
        // both '@' and '/'.
        let (bare, resource) = match s.split_once('/') {
            Some((bare, resource)) => (bare, Some(resource)),
            None => (s, None),
        };
        let (local, domain) = match bare.split_once('@') {
            Some((local, domain)) => (Some(local), domain),
            None => (None, bare),
        };
        Self::build(buf, local, domain, resource)
    }

    /// Builds an address from separate parts, normalising each; `Some("")` is an error.
    pub fn from_parts(
        local: Option<&str>,
        domain: &str,
        resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        let capacity =
            local.map_or(0, |l| l.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1);
        Self::build(String::with_capacity(capacity), local, domain, resource)
    }

    /// The address of a server or service: a domainpart alone.
    pub fn domain_jid(domain: &str) -> Result<Jid, JidError> {
        Self::from_parts(None, domain, None)
    }

    /// Writes the normalised parts into `s` (emptied first). Callers size a new buffer
    /// for the raw length: exact for already-normalised ASCII input, so the common case
    /// costs one allocation and one copy.
    fn build(
        mut s: String,
        local: Option<&str>,
        domain: &str,
        resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        s.clear();
        let domain_start = match local {
            Some(local) => {
                push_localpart(&mut s, local)?;
                s.push('@');
                s.len()
            }
            None => 0,
        };
        push_domain(&mut s, domain)?;
        let resource_start = s.len();
        if let Some(resource) = resource {
            s.push('/');
            push_resource(&mut s, resource)?;
        }
        Ok(Jid {
            domain_start: offset(domain_start, JidError::LocalTooLong)?,
            resource_start: offset(resource_start, JidError::DomainTooLong)?,
            s,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.s
    }

    /// Bytes of the buffer holding the address (for callers that keep one for reuse).
    pub fn capacity(&self) -> usize {
        self.s.capacity()
    }

    pub fn local(&self) -> Option<&str> {
        let end = usize::from(self.domain_start).checked_sub(1)?;
        self.s.get(..end)
    }

    pub fn domain(&self) -> &str {
        let range = usize::from(self.domain_start)..usize::from(self.resource_start);
        self.s.get(range).unwrap_or_default()
    }

    pub fn resource(&self) -> Option<&str> {
        self.s.get(usize::from(self.resource_start) + 1..)
    }

    /// `local@domain` (or `domain`), a slice of this address: no allocation.
    pub fn bare_str(&self) -> &str {
        self.s
            .get(..usize::from(self.resource_start))
            .unwrap_or(&self.s)
    }

    pub fn bare(&self) -> Jid {
        Jid {
            s: self.bare_str().to_owned(),
            domain_start: self.domain_start,
            resource_start: self.resource_start,
        }
    }

    /// Like [`Jid::bare`] but reuses this address's buffer.
    pub fn into_bare(mut self) -> Jid {
        let end = usize::from(self.resource_start);
        if self.s.is_char_boundary(end) {
            self.s.truncate(end);
        }
        self
    }

    pub fn is_bare(&self) -> bool {
        usize::from(self.resource_start) >= self.s.len()
    }

    /// A server or service address: no localpart and no resourcepart.
    pub fn is_domain(&self) -> bool {
        self.domain_start == 0 && self.is_bare()
    }

    /// True when both addresses name the same account (or service), whatever the resources.
    pub fn same_bare(&self, other: &Jid) -> bool {
        self.bare_str() == other.bare_str()
    }

    /// This address's domainpart as an address of its own (e.g. to answer for the server).
    pub fn to_domain_jid(&self) -> Jid {
        let domain = self.domain();
        Jid {
            s: domain.to_owned(),
            domain_start: 0,
            resource_start: u16::try_from(domain.len()).unwrap_or(u16::MAX),
        }
    }

    /// The bare part of this address with `resource` (normalised) as its resourcepart.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        let bare = self.bare_str();
        let mut s = String::with_capacity(bare.len() + 1 + resource.len());
        s.push_str(bare);
        s.push('/');
        push_resource(&mut s, resource)?;
        Ok(Jid {
            s,
            domain_start: self.domain_start,
            resource_start: self.resource_start,
        })
    }
}

impl Clone for Jid {
    fn clone(&self) -> Jid {
        Jid {
            s: self.s.clone(),
            ..*self
        }
    }

    /// Reuses this address's buffer.
    fn clone_from(&mut self, source: &Jid) {
        self.s.clone_from(&source.s);
        self.domain_start = source.domain_start;
        self.resource_start = source.resource_start;
    }
}

/// Three parts of at most 1023 bytes keep every offset below 3072, so this cannot fail; it
/// is checked rather than asserted because no input may reach a panic.
fn offset(index: usize, too_long: JidError) -> Result<u16, JidError> {
    u16::try_from(index).map_err(|_| too_long)
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::parse(s)
    }
}

impl AsRef<str> for Jid {
    fn as_ref(&self) -> &str {
        &self.s
    }
}

/// Enforces the localpart rules of RFC 7622 §3.3: the UsernameCaseMapped profile of
/// RFC 8265 §3.3, minus the eight code points of §3.3.1.
pub fn normalize_localpart(s: &str) -> Result<String, JidError> {
    let mut out = String::with_capacity(s.len());
    push_localpart(&mut out, s)?;
    Ok(out)
}

/// Enforces the domainpart rules of RFC 7622 §3.2.
///
/// Done: one trailing dot stripped; `[IPv6]` literals (written back in RFC 5952 form) and
/// dotted-quad IPv4; ASCII labels of 1-63 letters, digits and hyphens with no hyphen at
/// either end, lowercased; the ideographic and fullwidth full stops taken as dots; each
/// non-ASCII label width-mapped, lowercased and NFC-normalised (RFC 5892 via the PRECIS
/// UsernameCaseMapped profile, whose IdentifierClass refuses controls, spaces, symbols,
/// punctuation and compatibility characters, applies the CONTEXTJ/CONTEXTO rules and the
/// RFC 5893 bidi rule per label), no leading combining mark and no "--" in positions 3-4
/// (RFC 5891 §4.2.3).
///
/// Not done (would need punycode or full IDNA tables): A-labels (`xn--`) are kept as ASCII
/// labels instead of being converted to U-labels, so `xn--bcher-kva.example` and
/// `bücher.example` are different addresses; the 63-octet limit is not checked on the
/// A-label form of a U-label; the bidi rule is not applied across the labels of a domain
/// with a right-to-left label; IDNA2008 and PRECIS disagree on a few code points, and this
/// follows PRECIS.
pub fn normalize_domain(s: &str) -> Result<String, JidError> {
    let mut out = String::with_capacity(s.len());
    push_domain(&mut out, s)?;
    Ok(out)
}

/// Enforces the resourcepart rules of RFC 7622 §3.4: the OpaqueString profile of
/// RFC 8265 §4.2 (case and spaces are kept).
pub fn normalize_resource(s: &str) -> Result<String, JidError> {
    let mut out = String::with_capacity(s.len());
    push_resource(&mut out, s)?;
    Ok(out)
}

fn push_localpart(out: &mut String, raw: &str) -> Result<(), JidError> {
    if raw.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    if raw.len() > RAW_PART_MAX_BYTES {
        return Err(JidError::LocalTooLong);
    }
    let start = out.len();
    if raw.is_ascii() {
        push_localpart_ascii(out, raw)?;
    } else {
        push_localpart_precis(out, raw)?;
    }
    // RFC 7622 §3.3: the limit applies to the normalised form.
    if out.len() - start > JID_PART_MAX_BYTES {
        return Err(JidError::LocalTooLong);
    }
    Ok(())
}

/// UsernameCaseMapped on ASCII input: width mapping and NFC change nothing, IdentifierClass
/// allows exactly 0x21-0x7E (RFC 8264 §9.11 ASCII7; space and controls are refused), case
/// mapping is ASCII lowercasing, and the bidi rule only concerns right-to-left text.
fn push_localpart_ascii(out: &mut String, raw: &str) -> Result<(), JidError> {
    if !raw.bytes().all(is_localpart_ascii_byte) {
        return Err(JidError::InvalidLocal);
    }
    push_ascii_lowercase(out, raw);
    Ok(())
}

fn is_localpart_ascii_byte(b: u8) -> bool {
    LOCALPART_ASCII_ALLOWED[usize::from(b)]
}

/// 0x21-0x7E minus RFC 7622 §3.3.1's eight, as a table: one load per byte on the hot path.
const LOCALPART_ASCII_ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        table[b] = true;
        b += 1;
    }
    let mut i = 0;
    while i < LOCALPART_FORBIDDEN.len() {
        table[LOCALPART_FORBIDDEN[i] as usize] = false;
        i += 1;
    }
    table
};

fn push_localpart_precis(out: &mut String, raw: &str) -> Result<(), JidError> {
    let enforced = enforce_stable::<UsernameCaseMapped>(raw).ok_or(JidError::InvalidLocal)?;
    // Checked after enforcement: width mapping turns e.g. FULLWIDTH COMMERCIAL AT into '@'.
    if enforced.bytes().any(|b| LOCALPART_FORBIDDEN.contains(&b)) {
        return Err(JidError::InvalidLocal);
    }
    out.push_str(&enforced);
    Ok(())
}

/// Applies a PRECIS profile and keeps the result only if it is a fixed point.
///
/// Enforcement is meant to be idempotent, but precis-core vets code points against the
/// Unicode version of the IANA PRECIS registry while case mapping and NFC use the newer
/// tables of the standard library: CHEROKEE LETTER I lowercases to a small letter the
/// registry calls unassigned. A normalised address is stored and compared and must
/// re-parse to itself, so such input is refused. An unchanged (borrowed) result is its
/// own fixed point and costs no second pass.
fn enforce_stable<P: PrecisFastInvocation>(raw: &str) -> Option<Cow<'_, str>> {
    let once = P::enforce(raw).ok()?;
    if let Cow::Borrowed(_) = once {
        return Some(once);
    }
    let twice = P::enforce(once.as_ref()).ok()?;
    (twice == once).then_some(once)
}

fn push_resource(out: &mut String, raw: &str) -> Result<(), JidError> {
    if raw.is_empty() {
        return Err(JidError::EmptyResource);
    }
    if raw.len() > RAW_PART_MAX_BYTES {
        return Err(JidError::ResourceTooLong);
    }
    let start = out.len();
    if raw.is_ascii() {
        push_resource_ascii(out, raw)?;
    } else {
        push_resource_precis(out, raw)?;
    }
    // RFC 7622 §3.4: the limit applies to the normalised form.
    if out.len() - start > JID_PART_MAX_BYTES {
        return Err(JidError::ResourceTooLong);
    }
    Ok(())
}

/// OpaqueString on ASCII input: FreeformClass allows 0x21-0x7E and the space (a FREE_PVAL
/// "Spaces" code point, RFC 8264 §9.14) and refuses controls; the additional mapping only
/// touches non-ASCII spaces, NFC changes nothing, and there is no case mapping.
fn push_resource_ascii(out: &mut String, raw: &str) -> Result<(), JidError> {
    if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(JidError::InvalidResource);
    }
    out.push_str(raw);
    Ok(())
}

fn push_resource_precis(out: &mut String, raw: &str) -> Result<(), JidError> {
    let enforced = enforce_stable::<OpaqueString>(raw).ok_or(JidError::InvalidResource)?;
    out.push_str(&enforced);
    Ok(())
}

fn push_domain(out: &mut String, raw: &str) -> Result<(), JidError> {
    if raw.len() > RAW_PART_MAX_BYTES {
        return Err(JidError::DomainTooLong);
    }
    let start = out.len();
    if let Some(literal) = raw.strip_prefix('[') {
        push_ipv6_literal(out, literal)?;
    } else {
        // RFC 7622 §3.2: a final label separator is stripped before the domainpart is
        // used for routing or comparison, so `example.com.` is `example.com`.
        let name = raw.strip_suffix(is_label_separator).unwrap_or(raw);
        if name.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if name.is_ascii() {
            push_domain_ascii(out, name)?;
        } else {
            push_domain_unicode(out, name)?;
        }
        check_numeric_domain(out.get(start..).unwrap_or_default())?;
    }
    // RFC 7622 §3.2: the limit applies to the normalised form.
    if out.len() - start > JID_PART_MAX_BYTES {
        return Err(JidError::DomainTooLong);
    }
    Ok(())
}

/// RFC 3986 §3.2.2 IP-literal, IPv6 only (no IPvFuture, no zone). Written back in the
/// RFC 5952 canonical form so that `[::1]` and `[0:0::1]` are the same address.
fn push_ipv6_literal(out: &mut String, after_bracket: &str) -> Result<(), JidError> {
    let text = after_bracket
        .strip_suffix(']')
        .ok_or(JidError::InvalidDomain)?;
    let addr = Ipv6Addr::from_str(text).map_err(|_| JidError::InvalidDomain)?;
    write!(out, "[{addr}]").map_err(|_| JidError::InvalidDomain)
}

fn push_domain_ascii(out: &mut String, name: &str) -> Result<(), JidError> {
    if !name.split('.').all(is_ldh_label) {
        return Err(JidError::InvalidDomain);
    }
    push_ascii_lowercase(out, name);
    Ok(())
}

/// Labels of RFC 5890 §2.3.1 (LDH) within the RFC 1035 length limit, in either case.
fn is_ldh_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DNS_LABEL_MAX_BYTES
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// The ideographic (U+3002), fullwidth (U+FF0E) and halfwidth ideographic (U+FF61) full
/// stops separate labels like '.', as in IDNA (RFC 3490 §3.1, UTS #46 mapping).
fn is_label_separator(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{ff0e}' | '\u{ff61}')
}

fn push_domain_unicode(out: &mut String, name: &str) -> Result<(), JidError> {
    for (index, label) in name.split(is_label_separator).enumerate() {
        if index > 0 {
            out.push('.');
        }
        push_label_unicode(out, label)?;
    }
    Ok(())
}

fn push_label_unicode(out: &mut String, label: &str) -> Result<(), JidError> {
    if label.is_ascii() {
        if !is_ldh_label(label) {
            return Err(JidError::InvalidDomain);
        }
        push_ascii_lowercase(out, label);
        return Ok(());
    }
    // RFC 7622 §3.2.2 asks for RFC 5892's width mapping, case mapping and NFC;
    // UsernameCaseMapped does those and vets code points with IdentifierClass, which
    // derives from the same Unicode properties as IDNA2008's PVALID (RFC 8264 §8).
    let enforced = enforce_stable::<UsernameCaseMapped>(label).ok_or(JidError::InvalidDomain)?;
    let valid = if enforced.is_ascii() {
        // Fullwidth letters map to a plain NR-LDH label.
        is_ldh_label(&enforced)
    } else {
        is_u_label(&enforced)
    };
    if !valid {
        return Err(JidError::InvalidDomain);
    }
    out.push_str(&enforced);
    Ok(())
}

/// The structural U-label rules PRECIS does not cover (RFC 5891 §4.2.3.1-4.2.3.2 and
/// LDH for the ASCII code points of the label).
fn is_u_label(label: &str) -> bool {
    let ascii_ok = label
        .bytes()
        .filter(u8::is_ascii)
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let hyphen_ends = label.starts_with('-') || label.ends_with('-');
    let hyphens_3_4 = label.chars().skip(2).take(2).eq("--".chars());
    let leading_mark = label
        .chars()
        .next()
        .is_none_or(unicode_normalization::char::is_combining_mark);
    ascii_ok && !hyphen_ends && !hyphens_3_4 && !leading_mark
}

/// RFC 1123 §2.1: a top-level label is never all digits, so a name ending in one can only
/// be an RFC 3986 IPv4address (four decimal octets, no leading zeros).
fn check_numeric_domain(domain: &str) -> Result<(), JidError> {
    let last = domain.rsplit('.').next().unwrap_or(domain);
    if last.is_empty() || !last.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Ipv4Addr::from_str(domain)
        .map(|_| ())
        .map_err(|_| JidError::InvalidDomain)
}

fn push_ascii_lowercase(out: &mut String, ascii: &str) {
    let start = out.len();
    out.push_str(ascii);
    if let Some(pushed) = out.get_mut(start..) {
        pushed.make_ascii_lowercase();
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.s)
    }
}
impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({})", self.s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    fn jid(s: &str) -> Jid {
        match Jid::parse(s) {
            Ok(j) => j,
            Err(e) => panic!("{s:?} should parse, got {e:?}"),
        }
    }

    fn parts(j: &Jid) -> (Option<&str>, &str, Option<&str>) {
        (j.local(), j.domain(), j.resource())
    }

    #[test]
    fn parsing_into_a_reused_buffer_gives_the_same_address_or_error() {
        let mut buffer = Some(jid("someone-with-a-long-name@example.com/a-long-resource"));
        for s in [
            "juliet@example.com/balcony",
            "Juliet@EXAMPLE.com",
            "example.com",
            "x@y/z@w/v",
            "",
            "@example.com",
            "a@b/",
            "élan@example.com",
        ] {
            let reused = Jid::parse_reusing(s, buffer.take());
            assert_eq!(reused, Jid::parse(s), "{s:?}");
            if let Ok(j) = reused {
                assert_eq!(parts(&j), parts(&jid(s)), "{s:?}");
                buffer = Some(j);
            }
        }
        let mut copy = jid("a@b/c");
        copy.clone_from(&jid("romeo@example.net/orchard"));
        assert_eq!(copy, jid("romeo@example.net/orchard"));
        assert_eq!(
            parts(&copy),
            (Some("romeo"), "example.net", Some("orchard"))
        );
        copy.clone_from(&jid("example.org"));
        assert_eq!(parts(&copy), (None, "example.org", None));
    }

    /// RFC 7622 §3.5.1, with the normalised parts each must produce.
    #[test]
    fn rfc7622_valid_examples() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("juliet@example.com", Some("juliet"), "example.com", None),
            (
                "juliet@example.com/foo",
                Some("juliet"),
                "example.com",
                Some("foo"),
            ),
            (
                "juliet@example.com/foo bar",
                Some("juliet"),
                "example.com",
                Some("foo bar"),
            ),
            (
                "juliet@example.com/foo@bar",
                Some("juliet"),
                "example.com",
                Some("foo@bar"),
            ),
            (
                "foo\\20bar@example.com",
                Some("foo\\20bar"),
                "example.com",
                None,
            ),
            (
                "fussball@example.com",
                Some("fussball"),
                "example.com",
                None,
            ),
            // PRECIS lowercases but does not case-fold: ß stays ß.
            (
                "fu\u{df}ball@example.com",
                Some("fu\u{df}ball"),
                "example.com",
                None,
            ),
            ("\u{3c0}@example.com", Some("\u{3c0}"), "example.com", None),
            (
                "\u{3a3}@example.com/foo",
                Some("\u{3c3}"),
                "example.com",
                Some("foo"),
            ),
            (
                "\u{3c3}@example.com/foo",
                Some("\u{3c3}"),
                "example.com",
                Some("foo"),
            ),
            (
                "\u{3c2}@example.com/foo",
                Some("\u{3c2}"),
                "example.com",
                Some("foo"),
            ),
            (
                "king@example.com/\u{265a}",
                Some("king"),
                "example.com",
                Some("\u{265a}"),
            ),
            ("example.com", None, "example.com", None),
            ("example.com/foobar", None, "example.com", Some("foobar")),
            (
                "a.example.com/b@example.net",
                None,
                "a.example.com",
                Some("b@example.net"),
            ),
        ];
        for &(input, local, domain, resource) in cases {
            let j = jid(input);
            assert_eq!(parts(&j), (local, domain, resource), "{input}");
        }
    }

    /// RFC 7622 §3.5.2.
    #[test]
    fn rfc7622_invalid_examples() {
        let cases: &[(&str, JidError)] = &[
            ("\"juliet\"@example.com", JidError::InvalidLocal),
            ("foo bar@example.com", JidError::InvalidLocal),
            // ROMAN NUMERAL FOUR is a compatibility character (IdentifierClass: ID_DIS).
            ("henry\u{2163}@example.com", JidError::InvalidLocal),
            ("\u{265a}@example.com", JidError::InvalidLocal),
            ("juliet@", JidError::EmptyDomain),
            ("/foobar", JidError::EmptyDomain),
        ];
        for &(input, err) in cases {
            assert_eq!(Jid::parse(input), Err(err), "{input}");
        }
    }

    #[test]
    fn empty_parts_next_to_separators_are_errors() {
        let cases: &[(&str, JidError)] = &[
            ("", JidError::Empty),
            ("a@/b", JidError::EmptyDomain),
            ("@b", JidError::EmptyLocal),
            ("@", JidError::EmptyLocal),
            ("b/", JidError::EmptyResource),
            ("a@b/", JidError::EmptyResource),
            ("/", JidError::EmptyDomain),
            (".", JidError::EmptyDomain),
            ("a@.", JidError::EmptyDomain),
        ];
        for &(input, err) in cases {
            assert_eq!(Jid::parse(input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn splitting_follows_first_slash_then_first_at() {
        let j = jid("a@b/c@d/e");
        assert_eq!(parts(&j), (Some("a"), "b", Some("c@d/e")));
        let j = jid("b/c@d");
        assert_eq!(parts(&j), (None, "b", Some("c@d")));
        // A second '@' before the '/' lands in the domainpart, which refuses it.
        assert_eq!(Jid::parse("a@b@c"), Err(JidError::InvalidDomain));
    }

    #[test]
    fn case_is_folded_in_local_and_domain_but_kept_in_resource() {
        let j = jid("Juliet@Example.COM/Balcony");
        assert_eq!(j.as_str(), "juliet@example.com/Balcony");
        assert_eq!(j, jid("juliet@EXAMPLE.com/Balcony"));
        assert_ne!(j, jid("juliet@example.com/balcony"));
        let hash = |j: &Jid| {
            let mut h = DefaultHasher::new();
            j.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&j), hash(&jid("JULIET@example.com/Balcony")));
    }

    #[test]
    fn fullwidth_and_compatibility_characters() {
        // Width mapping (RFC 8265 §3.3.1) applies to local and domain, not to the resource.
        let j = jid("\u{ff2a}\u{ff35}\u{ff2c}\u{ff29}\u{ff25}\u{ff34}@\u{ff25}xample.com/\u{ff22}");
        assert_eq!(parts(&j), (Some("juliet"), "example.com", Some("\u{ff22}")));
        // FULLWIDTH COMMERCIAL AT becomes '@', which a localpart may not hold.
        assert_eq!(
            Jid::parse("a\u{ff20}b@example.com"),
            Err(JidError::InvalidLocal)
        );
        // LATIN SMALL LIGATURE FI is a compatibility character.
        assert_eq!(
            Jid::parse("\u{fb01}@example.com"),
            Err(JidError::InvalidLocal)
        );
        // Non-ASCII spaces become U+0020 in a resource (RFC 8265 §4.2.2).
        assert_eq!(jid("a@b/x\u{3000}y").resource(), Some("x y"));
        // NFC: A + COMBINING RING ABOVE composes; ANGSTROM SIGN is a compatibility form.
        assert_eq!(jid("A\u{30a}@b/A\u{30a}").as_str(), "\u{e5}@b/\u{c5}");
        assert_eq!(jid("a@b/\u{212b}").resource(), Some("\u{c5}"));
    }

    #[test]
    fn localpart_refuses_the_rfc7622_extra_characters() {
        for c in ['"', '&', '\'', '/', ':', '<', '>', '@'] {
            let input = format!("a{c}b");
            assert_eq!(
                normalize_localpart(&input),
                Err(JidError::InvalidLocal),
                "{c}"
            );
        }
        assert_eq!(normalize_localpart("a\u{7f}"), Err(JidError::InvalidLocal));
        assert_eq!(normalize_localpart("a\tb"), Err(JidError::InvalidLocal));
        assert_eq!(normalize_localpart("a\u{a0}b"), Err(JidError::InvalidLocal));
        assert_eq!(
            normalize_localpart("a!#$%*+,;=?[]^_`{|}~"),
            Ok("a!#$%*+,;=?[]^_`{|}~".into())
        );
    }

    #[test]
    fn resource_keeps_spaces_and_refuses_controls() {
        assert_eq!(normalize_resource(" a b "), Ok(" a b ".into()));
        assert_eq!(normalize_resource("a\nb"), Err(JidError::InvalidResource));
        assert_eq!(normalize_resource("a\u{0}"), Err(JidError::InvalidResource));
        assert_eq!(
            normalize_resource("a\u{200b}"),
            Err(JidError::InvalidResource)
        );
        assert_eq!(normalize_resource(""), Err(JidError::EmptyResource));
    }

    #[test]
    fn domain_names() {
        let ok: &[(&str, &str)] = &[
            ("example.com.", "example.com"),
            ("EXAMPLE.com", "example.com"),
            ("localhost", "localhost"),
            ("a-b.c0m", "a-b.c0m"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("B\u{fc}cher.example", "b\u{fc}cher.example"),
            ("b\u{fc}cher\u{3002}example\u{ff0e}", "b\u{fc}cher.example"),
            ("b\u{fc}cher\u{ff61}\u{ff25}\u{ff38}", "b\u{fc}cher.ex"),
            ("\u{ff25}\u{ff38}.com", "ex.com"),
            ("u\u{308}.example", "\u{fc}.example"),
            ("\u{3c0}.example", "\u{3c0}.example"),
            ("192.168.1.1", "192.168.1.1"),
            ("1.example", "1.example"),
            ("[::1]", "[::1]"),
            ("[2001:DB8:0:0::1]", "[2001:db8::1]"),
        ];
        for &(input, want) in ok {
            assert_eq!(normalize_domain(input).as_deref(), Ok(want), "{input}");
        }
        let bad: &[&str] = &[
            "example..com",
            "example.com..",
            ".example.com",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a b.com",
            "a\u{0}.com",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3",
            "example.123",
            "[::1",
            "[zz]",
            "[v1.x]",
            "[::1].",
            "[::1]x",
            "\u{265a}.example",
            "b\u{fc}-.example",
            "-b\u{fc}.example",
            "ab--\u{fc}.example",
            "\u{301}a.example",
            "a\u{3000}b.example",
            "\u{fc}\u{ff0f}.example",
            "\u{fc}\u{3002}\u{3002}example",
        ];
        for &input in bad {
            assert_eq!(
                normalize_domain(input),
                Err(JidError::InvalidDomain),
                "{input:?}"
            );
        }
    }

    #[test]
    fn dns_label_length_limit() {
        let label63 = "a".repeat(63);
        assert!(normalize_domain(&format!("{label63}.com")).is_ok());
        assert_eq!(
            normalize_domain(&format!("a{label63}.com")),
            Err(JidError::InvalidDomain)
        );
    }

    #[test]
    fn part_lengths_at_1023_and_1024_bytes() {
        let max = "a".repeat(JID_PART_MAX_BYTES);
        let over = "a".repeat(JID_PART_MAX_BYTES + 1);
        let j = jid(&format!("{max}@example.com/{max}"));
        assert_eq!(j.local().map(str::len), Some(1023));
        assert_eq!(j.resource().map(str::len), Some(1023));
        assert_eq!(
            Jid::parse(&format!("{over}@example.com")),
            Err(JidError::LocalTooLong)
        );
        assert_eq!(
            Jid::parse(&format!("example.com/{over}")),
            Err(JidError::ResourceTooLong)
        );

        // 16 labels of 63 bytes and 15 dots make 1023 bytes.
        let label = "b".repeat(63);
        let domain_max = vec![label.as_str(); 16].join(".");
        assert_eq!(domain_max.len(), 1023);
        let domain_over = format!(
            "{}.{}.a",
            vec![label.as_str(); 15].join("."),
            "c".repeat(62)
        );
        assert_eq!(domain_over.len(), 1024);
        let j = jid(&format!("{max}@{domain_max}/{max}"));
        assert_eq!(j.domain().len(), 1023);
        assert_eq!(j.as_str().len(), 3 * 1023 + 2);
        assert_eq!(Jid::parse(&domain_over), Err(JidError::DomainTooLong));

        // Non-ASCII: 511 two-byte letters plus one byte is 1023 bytes, one more is too many.
        let e = "\u{e9}".repeat(511);
        assert!(normalize_localpart(&format!("{e}a")).is_ok());
        assert_eq!(
            normalize_localpart(&format!("{e}ab")),
            Err(JidError::LocalTooLong)
        );
        assert!(normalize_resource(&format!("{e}a")).is_ok());
        assert_eq!(
            normalize_resource(&format!("{e}ab")),
            Err(JidError::ResourceTooLong)
        );

        // The limit is on the normalised form: 1023 fullwidth letters (3069 raw bytes) fit.
        let wide = "\u{ff41}".repeat(JID_PART_MAX_BYTES);
        assert_eq!(normalize_localpart(&wide).map(|s| s.len()), Ok(1023));
        let wide_over = "\u{ff41}".repeat(JID_PART_MAX_BYTES + 1);
        assert_eq!(normalize_localpart(&wide_over), Err(JidError::LocalTooLong));
        // Raw input far beyond any possible normalised length is refused before PRECIS.
        let huge = "\u{e9}".repeat(RAW_PART_MAX_BYTES);
        assert_eq!(normalize_localpart(&huge), Err(JidError::LocalTooLong));
        assert_eq!(normalize_resource(&huge), Err(JidError::ResourceTooLong));
        assert_eq!(normalize_domain(&huge), Err(JidError::DomainTooLong));
    }

    #[test]
    fn bare_and_full_relationships() {
        let full = jid("juliet@example.com/balcony");
        assert!(!full.is_bare());
        assert!(!full.is_domain());
        assert_eq!(full.bare_str(), "juliet@example.com");
        let bare = full.bare();
        assert_eq!(bare.as_str(), "juliet@example.com");
        assert!(bare.is_bare());
        assert_eq!(parts(&bare), (Some("juliet"), "example.com", None));
        assert_eq!(bare, jid("juliet@example.com"));
        assert_eq!(full.clone().into_bare(), bare);
        assert!(full.same_bare(&bare));
        assert!(!full.same_bare(&jid("romeo@example.com/balcony")));
        assert_eq!(bare.bare(), bare);

        let other = full.with_resource("Orchard").map_err(|e| e.to_string());
        assert_eq!(
            other.as_ref().map(Jid::as_str),
            Ok("juliet@example.com/Orchard")
        );
        assert_eq!(full.with_resource(""), Err(JidError::EmptyResource));
        assert_eq!(full.with_resource("a\u{0}"), Err(JidError::InvalidResource));
        let again = bare.with_resource("balcony");
        assert_eq!(again.as_ref(), Ok(&full));

        let server = full.to_domain_jid();
        assert_eq!(server, jid("example.com"));
        assert!(server.is_domain());
        assert_eq!(server.local(), None);
        assert_eq!(server.bare_str(), "example.com");
        assert_eq!(Jid::domain_jid("Example.COM."), Ok(server.clone()));
        assert_eq!(Jid::domain_jid(""), Err(JidError::EmptyDomain));
        let service = jid("example.com/x");
        assert!(!service.is_domain());
        assert_eq!(service.bare(), server);
    }

    #[test]
    fn from_parts_matches_parse_and_refuses_present_empty_parts() {
        let j = Jid::from_parts(Some("Juliet"), "Example.com", Some("Balcony"));
        assert_eq!(j, Ok(jid("juliet@example.com/Balcony")));
        assert_eq!(
            Jid::from_parts(None, "example.com", None),
            Ok(jid("example.com"))
        );
        assert_eq!(
            Jid::from_parts(Some(""), "example.com", None),
            Err(JidError::EmptyLocal)
        );
        assert_eq!(
            Jid::from_parts(None, "example.com", Some("")),
            Err(JidError::EmptyResource)
        );
        assert_eq!(Jid::from_parts(None, "", None), Err(JidError::EmptyDomain));
        // A part may not smuggle a separator in.
        assert_eq!(
            Jid::from_parts(Some("a@b"), "c", None),
            Err(JidError::InvalidLocal)
        );
        assert_eq!(
            Jid::from_parts(None, "a/b", None),
            Err(JidError::InvalidDomain)
        );
        let odd = Jid::from_parts(None, "c", Some("x@y/z"));
        assert_eq!(odd, Ok(jid("c/x@y/z")));
    }

    #[test]
    fn normalised_addresses_reparse_to_themselves() {
        for input in [
            "Juliet@Example.COM/Balcony",
            "\u{3a3}@example.com/foo",
            "fu\u{df}ball@B\u{fc}cher.example./x y",
            "A\u{30a}@[2001:DB8::1]/\u{212b}",
            "a.example.com/b@example.net",
            "\u{130}@example.com",
        ] {
            let j = jid(input);
            assert_eq!(jid(j.as_str()), j, "{input}");
            let rebuilt = Jid::from_parts(j.local(), j.domain(), j.resource());
            assert_eq!(rebuilt.as_ref(), Ok(&j), "{input}");
        }
    }

    #[test]
    fn unstable_normalisations_are_refused() {
        // CHEROKEE LETTER I lowercases to CHEROKEE SMALL LETTER I (Unicode 8), which the
        // PRECIS registry's Unicode version does not know: accepting it would store an
        // address that no longer parses.
        assert_eq!(normalize_localpart("\u{13a2}"), Err(JidError::InvalidLocal));
        assert_eq!(normalize_localpart("\u{ab72}"), Err(JidError::InvalidLocal));
        assert_eq!(
            normalize_domain("\u{13a2}.example"),
            Err(JidError::InvalidDomain)
        );
    }

    #[test]
    fn order_is_that_of_the_normalised_text() {
        let mut v = [jid("b@x"), jid("A@x"), jid("a@x/r"), jid("x")];
        v.sort();
        let texts: Vec<&str> = v.iter().map(Jid::as_str).collect();
        assert_eq!(texts, ["a@x", "a@x/r", "b@x", "x"]);
    }

    /// Every ASCII string of one or two characters (controls included).
    fn short_ascii_strings() -> impl Iterator<Item = String> {
        let singles = (0u8..0x80).map(|a| char::from(a).to_string());
        let pairs = (0u8..0x80).flat_map(|a| {
            (0u8..0x80).map(move |b| [char::from(a), char::from(b)].iter().collect())
        });
        singles.chain(pairs)
    }

    fn via(f: fn(&mut String, &str) -> Result<(), JidError>, s: &str) -> Result<String, JidError> {
        let mut out = String::new();
        f(&mut out, s).map(|()| out)
    }

    #[test]
    fn ascii_fast_paths_match_precis() {
        let mut accepted = [0usize; 3];
        for s in short_ascii_strings() {
            let fast = via(push_localpart_ascii, &s);
            assert_eq!(fast, via(push_localpart_precis, &s), "localpart {s:?}");
            let fast_r = via(push_resource_ascii, &s);
            assert_eq!(fast_r, via(push_resource_precis, &s), "resource {s:?}");
            let fast_d = via(push_domain_ascii, &s);
            assert_eq!(fast_d, via(push_domain_unicode, &s), "domain {s:?}");
            accepted[0] += usize::from(fast.is_ok());
            accepted[1] += usize::from(fast_r.is_ok());
            accepted[2] += usize::from(fast_d.is_ok());
        }
        // Not vacuous: 86 allowed localpart bytes, 95 resource bytes, and 63 LDH bytes of
        // which a lone '-' or one at either end of a pair is refused.
        assert_eq!(
            accepted,
            [86 + 86 * 86, 95 + 95 * 95, 62 + 63 * 63 - 2 * 63 + 1]
        );
    }

    #[test]
    fn no_panic_on_any_code_point() {
        // Every 23rd code point, alone, after a letter and before a combining mark, in each
        // part (every code point passed when this was run once with step 1 in release).
        for cp in (0..=0x10ffffu32).step_by(23) {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            for text in [c.to_string(), format!("a{c}"), format!("{c}\u{301}")] {
                let _ = normalize_localpart(&text);
                let _ = normalize_resource(&text);
                let _ = normalize_domain(&text);
                if let Ok(j) = Jid::parse(&format!("{text}@{text}/{text}")) {
                    assert_eq!(jid(j.as_str()), j);
                }
            }
        }
    }

    #[test]
    fn jid_stays_small() {
        // One String plus two u16 offsets, padded: 32 bytes on 64-bit, 16 on 32-bit boards.
        let size = size_of::<Jid>();
        assert!(
            size <= size_of::<String>() + size_of::<usize>(),
            "Jid is {size} bytes"
        );
    }
}
