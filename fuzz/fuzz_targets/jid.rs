//! The JID parser and normalisers (`jid::Jid`, `jid::normalize_*`, RFC 7622).
//!
//! Input: UTF-8 text (invalid sequences become U+FFFD). The whole text is parsed as an
//! address and given to each normaliser; split at NUL characters, its first three pieces
//! are also given to `Jid::from_parts` as localpart, domainpart and resourcepart.
//!
//! Properties:
//! - no panic (the work is bounded: parts over 4 KiB are refused before PRECIS runs);
//! - a parsed address is a fixed point: `as_str()` parses to an equal address, and so do
//!   its parts through `from_parts`; each part is ≤ 1023 bytes, non-empty, and
//!   normalises to itself;
//! - every normaliser is idempotent and its output is ≤ 1023 bytes;
//! - `bare`, `into_bare`, `to_domain_jid` and `with_resource` agree with the parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xmppd::jid::{Jid, JidError, normalize_domain, normalize_localpart, normalize_resource};
use xmppd::limits::JID_PART_MAX_BYTES;

type Normalizer = fn(&str) -> Result<String, JidError>;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(jid) = Jid::parse(&text) {
        check_jid(&jid);
    }
    for normalize in [
        normalize_localpart as Normalizer,
        normalize_domain,
        normalize_resource,
    ] {
        if let Ok(part) = normalize(&text) {
            check_part(normalize, &part);
        }
    }
    let mut pieces = text.split('\0');
    if let (Some(local), Some(domain), Some(resource)) =
        (pieces.next(), pieces.next(), pieces.next())
    {
        // An empty piece stands for an absent part (Some("") is an error by contract).
        let local = Some(local).filter(|l| !l.is_empty());
        let resource = Some(resource).filter(|r| !r.is_empty());
        if let Ok(jid) = Jid::from_parts(local, domain, resource) {
            check_jid(&jid);
        }
    }
});

fn check_part(normalize: Normalizer, part: &str) {
    assert!(!part.is_empty(), "a normaliser returned an empty part");
    assert!(
        part.len() <= JID_PART_MAX_BYTES,
        "a normalised part is {} bytes",
        part.len()
    );
    assert_eq!(
        normalize(part).as_deref(),
        Ok(part),
        "normalisation is not idempotent"
    );
}

fn check_jid(jid: &Jid) {
    let s = jid.as_str();
    assert_eq!(
        Jid::parse(s).as_ref(),
        Ok(jid),
        "{s:?} does not parse to itself"
    );
    let (local, domain, resource) = (jid.local(), jid.domain(), jid.resource());
    if let Some(local) = local {
        check_part(normalize_localpart, local);
    }
    check_part(normalize_domain, domain);
    if let Some(resource) = resource {
        check_part(normalize_resource, resource);
    }
    assert_eq!(
        Jid::from_parts(local, domain, resource).as_ref(),
        Ok(jid),
        "{s:?} is not rebuilt from its parts"
    );

    let expected_bare = match local {
        Some(l) => format!("{l}@{domain}"),
        None => domain.to_string(),
    };
    assert_eq!(jid.bare_str(), expected_bare);
    let bare = jid.bare();
    assert_eq!(bare.as_str(), expected_bare);
    assert!(bare.is_bare() && bare.resource().is_none());
    assert_eq!(bare.local(), local);
    assert_eq!(bare.domain(), domain);
    assert_eq!(jid.clone().into_bare(), bare);
    assert!(jid.same_bare(&bare));
    assert_eq!(jid.is_bare(), resource.is_none());
    assert_eq!(jid.is_domain(), local.is_none() && resource.is_none());
    assert_eq!(Ok(jid.to_domain_jid()), Jid::domain_jid(domain));
    if let Some(resource) = resource {
        assert_eq!(bare.with_resource(resource).as_ref(), Ok(jid));
        assert_eq!(s, format!("{expected_bare}/{resource}"));
    } else {
        assert_eq!(s, expected_bare);
    }
}
