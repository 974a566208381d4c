//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the stored
//! SCRAM-SHA-256 keys.

use super::credentials::ScramKeys;
use super::{Credentials, NormalizeLocalpart, SaslContext, SaslFailure, Step, authzid_acceptable};
use crate::limits::DEFAULT_SCRAM_ITERATIONS;

#[derive(Debug, PartialEq, Eq)]
struct PlainMessage<'a> {
    authzid: &'a str,
    authcid: &'a str,
    password: &'a str,
}

pub(crate) fn authenticate(
    message: &[u8],
    ctx: &SaslContext<'_>,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    normalize: NormalizeLocalpart,
) -> Step {
    let plain = match parse(message) {
        Ok(plain) => plain,
        Err(failure) => return Step::Failure(failure),
    };
    let Some(username) = normalize(plain.authcid) else {
        // No such account can exist; still pay for a derivation (below).
        burn_a_password_check(plain.password);
        return Step::Failure(SaslFailure::NotAuthorized);
    };
    if !plain.authzid.is_empty()
        && !authzid_acceptable(plain.authzid, &username, ctx.domain, normalize)
    {
        return Step::Failure(SaslFailure::InvalidAuthzid);
    }
    let verified = match lookup(&username) {
        Some(credentials) => credentials.verify_password(plain.password),
        None => {
            // The PBKDF2 work dominates the time of a check; doing it for a missing
            // account too keeps response time from telling which accounts exist.
            burn_a_password_check(plain.password);
            false
        }
    };
    if verified {
        Step::Success {
            username,
            additional: None,
        }
    } else {
        Step::Failure(SaslFailure::NotAuthorized)
    }
}

/// The authcid a PLAIN message claims, for throttling failed logins per account.
pub(crate) fn claimed_authcid(message: &[u8]) -> Option<&str> {
    parse(message).ok().map(|p| p.authcid)
}

/// Does the work of a password check whose answer is thrown away; `black_box` keeps the
/// optimiser from removing it.
fn burn_a_password_check(password: &str) {
    std::hint::black_box(dummy_credentials().verify_password(std::hint::black_box(password)));
}

/// Credentials no password matches (StoredKey is all zeros, which no hash output is in
/// practice), with the default cost so a check against them takes as long as a real one.
fn dummy_credentials() -> Credentials {
    Credentials {
        salt: vec![0; super::credentials::SALT_BYTES],
        iterations: DEFAULT_SCRAM_ITERATIONS,
        sha1: ScramKeys {
            stored_key: [0; 20],
            server_key: [0; 20],
        },
        sha256: ScramKeys {
            stored_key: [0; 32],
            server_key: [0; 32],
        },
    }
}

/// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`, where authcid and
/// passwd are non-empty and no part contains NUL.
fn parse(message: &[u8]) -> Result<PlainMessage<'_>, SaslFailure> {
    let mut parts = message.split(|&byte| byte == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let utf8 = |bytes| std::str::from_utf8(bytes).map_err(|_| SaslFailure::MalformedRequest);
    Ok(PlainMessage {
        authzid: utf8(authzid)?,
        authcid: utf8(authcid)?,
        password: utf8(password)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_parts() {
        assert_eq!(
            parse(b"user@example.org\0user\0pencil"),
            Ok(PlainMessage {
                authzid: "user@example.org",
                authcid: "user",
                password: "pencil",
            })
        );
        assert_eq!(
            parse(b"\0user\0p\xc3\xa9ncil"),
            Ok(PlainMessage {
                authzid: "",
                authcid: "user",
                password: "p\u{e9}ncil",
            })
        );
    }

    #[test]
    fn rejects_malformed_messages() {
        let cases: &[&[u8]] = &[
            b"",
            b"user",
            b"\0user",
            b"\0\0pencil",
            b"\0user\0",
            b"\0user\0pen\0cil",
            b"\0us\xffer\0pencil",
            b"\0user\0pen\xffcil",
            b"\xff\0user\0pencil",
        ];
        for case in cases {
            assert_eq!(
                parse(case),
                Err(SaslFailure::MalformedRequest),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn dummy_credentials_match_no_password() {
        let dummy = dummy_credentials();
        assert!(!dummy.verify_password("pencil"));
        assert!(!dummy.verify_password("x"));
    }
}
