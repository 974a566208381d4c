//! The server side of SCRAM (RFC 5802, RFC 7677) with `tls-exporter` channel binding
//! (RFC 9266): parsing the two client messages, building server-first and verifying the
//! proof.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::credentials::{ScramHash, constant_time_eq};
use super::{Credentials, NormalizeLocalpart, SaslContext, SaslFailure, Step, authzid_acceptable};
use crate::limits::DEFAULT_SCRAM_ITERATIONS;
use crate::time::Entropy;

/// Random bytes behind our half of the nonce. RFC 5802 §5.1 only asks for a nonce that is
/// unpredictable; 192 bits (32 base64 characters) is far beyond guessing range.
pub(crate) const SERVER_NONCE_RANDOM_BYTES: usize = 24;

/// The only channel-binding type we offer: RFC 9266 (`tls-unique` is unsafe with TLS 1.3).
const CHANNEL_BINDING_TYPE: &str = "tls-exporter";

/// Salt length for accounts that do not exist; matches new accounts' salts
/// (`credentials::SALT_BYTES`) so the two cannot be told apart.
const FAKE_SALT_BYTES: usize = super::credentials::SALT_BYTES;

pub(crate) fn random_server_nonce(rng: &mut dyn Entropy) -> String {
    let mut bytes = [0u8; SERVER_NONCE_RANDOM_BYTES];
    rng.fill(&mut bytes);
    BASE64.encode(bytes)
}

/// RFC 5802 §7 `gs2-cbind-flag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CbindFlag<'a> {
    /// `n`: the client does not support channel binding.
    Unsupported,
    /// `y`: the client supports it but thinks the server does not.
    ClientOnly,
    /// `p=<cb-name>`: the client requires this binding type.
    Required(&'a str),
}

#[derive(Debug)]
struct ClientFirst<'a> {
    flag: CbindFlag<'a>,
    /// `gs2-header`, echoed back (base64) in client-final's `c=`.
    gs2_header: &'a str,
    authzid: Option<String>,
    username: String,
    client_nonce: &'a str,
    /// `client-first-message-bare`, the first part of AuthMessage.
    bare: &'a str,
}

#[derive(Debug)]
struct ClientFinal<'a> {
    /// `client-final-message-without-proof`, the last part of AuthMessage.
    without_proof: &'a str,
    channel_binding: Vec<u8>,
    nonce: &'a str,
    proof: Vec<u8>,
}

/// What the server keeps between server-first and client-final. It holds the parts of
/// AuthMessage sent so far rather than the messages themselves, and the keys it needs.
pub(crate) struct ScramPending {
    hash: ScramHash,
    /// False for an account that does not exist: the exchange runs to the end with dummy
    /// keys and fails there, like a wrong password (RFC 5802 §9 on user enumeration).
    known_user: bool,
    username: String,
    stored_key: [u8; ScramHash::MAX_LEN],
    server_key: [u8; ScramHash::MAX_LEN],
    /// `gs2-header` ‖ `client-first-message-bare` "," `server-first-message` ",".
    transcript: Vec<u8>,
    gs2_header_len: u16,
    nonce_start: u16,
    nonce_end: u16,
}

/// Handles client-first and answers with server-first (RFC 5802 §5).
pub(crate) fn handle_client_first(
    hash: ScramHash,
    plus: bool,
    message: &[u8],
    server_nonce: &str,
    ctx: &SaslContext<'_>,
    lookup: &dyn Fn(&str) -> Option<Credentials>,
    normalize: NormalizeLocalpart,
) -> Result<(ScramPending, Vec<u8>), SaslFailure> {
    let first = parse_client_first(message)?;
    check_channel_binding_policy(first.flag, plus, ctx)?;
    let normalized = normalize(&first.username);
    if let Some(authzid) = &first.authzid {
        let acceptable = normalized
            .as_deref()
            .is_some_and(|user| authzid_acceptable(authzid, user, ctx.domain, normalize));
        if !acceptable {
            return Err(SaslFailure::InvalidAuthzid);
        }
    }
    let credentials = normalized.as_deref().and_then(lookup);
    let username = normalized.unwrap_or(first.username);

    let mut stored_key = [0u8; ScramHash::MAX_LEN];
    let mut server_key = [0u8; ScramHash::MAX_LEN];
    let (salt, iterations) = match &credentials {
        Some(creds) => {
            let (stored, server) = creds.keys_for(hash);
            copy_prefix(&mut stored_key, stored);
            copy_prefix(&mut server_key, server);
            (creds.salt.clone(), creds.iterations)
        }
        None => (
            fake_salt(ctx.server_secret, &username),
            DEFAULT_SCRAM_ITERATIONS,
        ),
    };

    let server_first = format!(
        "r={}{},s={},i={}",
        first.client_nonce,
        server_nonce,
        BASE64.encode(&salt),
        iterations
    );
    let mut transcript =
        Vec::with_capacity(first.gs2_header.len() + first.bare.len() + server_first.len() + 2);
    transcript.extend_from_slice(first.gs2_header.as_bytes());
    transcript.extend_from_slice(first.bare.as_bytes());
    transcript.push(b',');
    let nonce_start = transcript.len() + "r=".len();
    let nonce_end = nonce_start + first.client_nonce.len() + server_nonce.len();
    transcript.extend_from_slice(server_first.as_bytes());
    transcript.push(b',');

    let pending = ScramPending {
        hash,
        known_user: credentials.is_some(),
        username,
        stored_key,
        server_key,
        gs2_header_len: offset(first.gs2_header.len())?,
        nonce_start: offset(nonce_start)?,
        nonce_end: offset(nonce_end)?,
        transcript,
    };
    Ok((pending, server_first.into_bytes()))
}

impl ScramPending {
    /// Verifies client-final (RFC 5802 §5, §3) and, on success, returns server-final as
    /// the `<success/>` additional data.
    pub(crate) fn finish(self, message: &[u8], ctx: &SaslContext<'_>) -> Step {
        match self.verify(message, ctx) {
            Ok(server_final) => Step::Success {
                username: self.username,
                additional: Some(server_final),
            },
            Err(failure) => Step::Failure(failure),
        }
    }

    fn verify(&self, message: &[u8], ctx: &SaslContext<'_>) -> Result<Vec<u8>, SaslFailure> {
        let last = parse_client_final(message)?;
        if last.proof.len() != self.hash.output_len() {
            return Err(SaslFailure::MalformedRequest);
        }
        // Every check below runs whether or not the account exists, and each failure is
        // the same not-authorized, so the outcome says nothing about the account.
        let binding_ok = self.channel_binding_matches(&last.channel_binding, ctx);
        let nonce_ok = self.combined_nonce() == Some(last.nonce.as_bytes());
        let auth_message_prefix = self.auth_message_prefix();
        let without_proof = last.without_proof.as_bytes();
        let key_len = self.hash.output_len();
        let stored_key = self.stored_key.get(..key_len).unwrap_or_default();
        let server_key = self.server_key.get(..key_len).unwrap_or_default();

        let client_signature = self
            .hash
            .hmac(stored_key, &[auth_message_prefix, without_proof]);
        let mut client_key = [0u8; ScramHash::MAX_LEN];
        for ((key, proof), signature) in client_key
            .iter_mut()
            .zip(&last.proof)
            .zip(client_signature.as_ref())
        {
            *key = proof ^ signature;
        }
        let client_key = client_key.get(..key_len).unwrap_or_default();
        let proof_ok = constant_time_eq(self.hash.hash(client_key).as_ref(), stored_key);

        if !(binding_ok & nonce_ok & proof_ok & self.known_user) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_signature = self
            .hash
            .hmac(server_key, &[auth_message_prefix, without_proof]);
        Ok(format!("v={}", BASE64.encode(server_signature.as_ref())).into_bytes())
    }

    /// RFC 5802 §6 / RFC 9266: `c=` must carry the gs2-header and, for `p=`, the
    /// tls-exporter data of this very connection. A mismatch means a man in the middle.
    fn channel_binding_matches(&self, received: &[u8], ctx: &SaslContext<'_>) -> bool {
        let Some(gs2_header) = self.transcript.get(..usize::from(self.gs2_header_len)) else {
            return false;
        };
        let Some(cb_data) = expected_cb_data(gs2_header, ctx) else {
            return false;
        };
        let expected = [gs2_header, cb_data].concat();
        constant_time_eq(received, &expected)
    }

    fn combined_nonce(&self) -> Option<&[u8]> {
        self.transcript
            .get(usize::from(self.nonce_start)..usize::from(self.nonce_end))
    }

    /// `client-first-message-bare` "," `server-first-message` ",".
    fn auth_message_prefix(&self) -> &[u8] {
        self.transcript
            .get(usize::from(self.gs2_header_len)..)
            .unwrap_or_default()
    }
}

/// The channel-binding data that follows the gs2-header in `c=`: nothing for `n`/`y`,
/// the exporter output for `p=`. `None` when `p=` was used but the connection has none.
fn expected_cb_data<'a>(gs2_header: &[u8], ctx: &SaslContext<'a>) -> Option<&'a [u8]> {
    if gs2_header.starts_with(b"p=") {
        ctx.channel_binding
    } else {
        Some(&[])
    }
}

/// RFC 5802 §6 and RFC 9266 channel-binding negotiation rules.
fn check_channel_binding_policy(
    flag: CbindFlag<'_>,
    plus: bool,
    ctx: &SaslContext<'_>,
) -> Result<(), SaslFailure> {
    match (flag, plus) {
        (CbindFlag::Required(name), true) => {
            if name == CHANNEL_BINDING_TYPE && ctx.channel_binding.is_some() {
                Ok(())
            } else {
                // RFC 5802 §5.1 `e=unsupported-channel-binding-type`.
                Err(SaslFailure::NotAuthorized)
            }
        }
        // RFC 5802 §6: "p" is only for the -PLUS mechanisms, and a -PLUS mechanism
        // is only ever used with "p".
        (CbindFlag::Required(_), false) | (_, true) => Err(SaslFailure::MalformedRequest),
        // RFC 5802 §6: "y" while we offered -PLUS means someone stripped -PLUS from our
        // mechanism list; the server MUST fail the authentication.
        (CbindFlag::ClientOnly, false) if ctx.channel_binding.is_some() => {
            Err(SaslFailure::NotAuthorized)
        }
        (CbindFlag::ClientOnly | CbindFlag::Unsupported, false) => Ok(()),
    }
}

/// Salt for a missing account: stable per username, so repeated probes see the same
/// salt as they would for a real account, and unguessable without `server_secret`.
fn fake_salt(server_secret: &[u8], username: &str) -> Vec<u8> {
    let tag = ScramHash::Sha256.hmac(server_secret, &[username.as_bytes()]);
    tag.as_ref()
        .get(..FAKE_SALT_BYTES)
        .unwrap_or_default()
        .to_vec()
}

fn copy_prefix(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

fn offset(value: usize) -> Result<u16, SaslFailure> {
    u16::try_from(value).map_err(|_| SaslFailure::MalformedRequest)
}

/// The username a client-first message claims, for throttling failed logins per account.
pub(crate) fn claimed_username(message: &[u8]) -> Option<String> {
    parse_client_first(message).ok().map(|f| f.username)
}

/// RFC 5802 §7: `gs2-header client-first-message-bare`, where
/// `client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]`.
fn parse_client_first(message: &[u8]) -> Result<ClientFirst<'_>, SaslFailure> {
    let text = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let (flag_text, rest) = text.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
    let flag = parse_cbind_flag(flag_text)?;
    let (authzid_text, bare) = rest.split_once(',').ok_or(SaslFailure::MalformedRequest)?;
    let authzid = parse_authzid(authzid_text)?;
    let gs2_header = text
        .len()
        .checked_sub(bare.len())
        .and_then(|end| text.get(..end))
        .ok_or(SaslFailure::MalformedRequest)?;

    let mut attributes = bare.split(',');
    let username = attributes
        .next()
        .and_then(|attr| attr.strip_prefix("n="))
        .ok_or(SaslFailure::MalformedRequest)
        .and_then(decode_saslname)?;
    let client_nonce = nonce_attribute(&mut attributes)?;
    check_extensions(attributes)?;

    Ok(ClientFirst {
        flag,
        gs2_header,
        authzid,
        username,
        client_nonce,
        bare,
    })
}

fn parse_cbind_flag(text: &str) -> Result<CbindFlag<'_>, SaslFailure> {
    match text {
        "n" => Ok(CbindFlag::Unsupported),
        "y" => Ok(CbindFlag::ClientOnly),
        _ => text
            .strip_prefix("p=")
            .filter(|name| is_cb_name(name))
            .map(CbindFlag::Required)
            .ok_or(SaslFailure::MalformedRequest),
    }
}

/// `[ "a=" saslname ]`. An empty `a=` is read as no authzid: it cannot name anyone else.
fn parse_authzid(text: &str) -> Result<Option<String>, SaslFailure> {
    if text.is_empty() {
        return Ok(None);
    }
    let value = text
        .strip_prefix("a=")
        .ok_or(SaslFailure::MalformedRequest)?;
    if value.is_empty() {
        return Ok(None);
    }
    decode_saslname(value).map(Some)
}

/// RFC 5802 §5.1: in a saslname "," is sent as "=2C" and "=" as "=3D"; any other "="
/// sequence MUST make the server fail. NUL is outside `value-safe-char`.
fn decode_saslname(text: &str) -> Result<String, SaslFailure> {
    if text.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find(['=', '\0']) {
        let (plain, escape) = rest
            .split_at_checked(position)
            .ok_or(SaslFailure::MalformedRequest)?;
        decoded.push_str(plain);
        if let Some(after) = escape.strip_prefix("=2C") {
            decoded.push(',');
            rest = after;
        } else if let Some(after) = escape.strip_prefix("=3D") {
            decoded.push('=');
            rest = after;
        } else {
            return Err(SaslFailure::MalformedRequest);
        }
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// RFC 5802 §7 `client-final-message = channel-binding "," nonce ["," extensions] ","
/// proof`.
fn parse_client_final(message: &[u8]) -> Result<ClientFinal<'_>, SaslFailure> {
    let text = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let (without_proof, proof_attr) = text.rsplit_once(',').ok_or(SaslFailure::MalformedRequest)?;
    let proof = proof_attr
        .strip_prefix("p=")
        .ok_or(SaslFailure::MalformedRequest)
        .and_then(decode_base64)?;

    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|attr| attr.strip_prefix("c="))
        .ok_or(SaslFailure::MalformedRequest)
        .and_then(decode_base64)?;
    let nonce = nonce_attribute(&mut attributes)?;
    check_extensions(attributes)?;

    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// RFC 5802 §7 `nonce = "r=" c-nonce [s-nonce]`, printable characters only: the next
/// attribute of both client messages.
fn nonce_attribute<'a>(
    attributes: &mut impl Iterator<Item = &'a str>,
) -> Result<&'a str, SaslFailure> {
    attributes
        .next()
        .and_then(|attr| attr.strip_prefix("r="))
        .filter(|nonce| is_printable(nonce))
        .ok_or(SaslFailure::MalformedRequest)
}

/// RFC 5802 §7 `extensions = attr-val *("," attr-val)`: unknown ones are ignored, but
/// §5.1 says a mandatory extension (`m=`) MUST make authentication fail.
fn check_extensions<'a>(attributes: impl Iterator<Item = &'a str>) -> Result<(), SaslFailure> {
    for attribute in attributes {
        let mut chars = attribute.chars();
        let name = chars.next();
        let well_formed = name.is_some_and(|c| c.is_ascii_alphabetic())
            && chars.next() == Some('=')
            && !chars.as_str().is_empty()
            && !chars.as_str().contains('\0');
        if !well_formed || name == Some('m') {
            return Err(SaslFailure::MalformedRequest);
        }
    }
    Ok(())
}

fn decode_base64(text: &str) -> Result<Vec<u8>, SaslFailure> {
    if text.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    BASE64
        .decode(text)
        .map_err(|_| SaslFailure::MalformedRequest)
}

/// RFC 5802 §7 `printable = %x21-2B / %x2D-7E`, at least one.
fn is_printable(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| matches!(b, 0x21..=0x2B | 0x2D..=0x7E))
}

/// RFC 5802 §7 `cb-name = 1*(ALPHA / DIGIT / "." / "-")`.
fn is_cb_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_escapes_decode() {
        assert_eq!(decode_saslname("a=2Cb=3Dc"), Ok("a,b=c".to_string()));
        assert_eq!(decode_saslname("plain"), Ok("plain".to_string()));
        assert_eq!(decode_saslname("=3D"), Ok("=".to_string()));
        assert_eq!(
            decode_saslname("\u{e9}t\u{e9}"),
            Ok("\u{e9}t\u{e9}".to_string())
        );
    }

    #[test]
    fn saslname_rejects_other_escapes() {
        for bad in ["", "=", "a=", "a=2", "a=2c", "a=3d", "a=41", "a\0b", "=2"] {
            assert_eq!(
                decode_saslname(bad),
                Err(SaslFailure::MalformedRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_first_parses_all_parts() {
        let parsed = parse_client_first(b"p=tls-exporter,a=me@x,n=us=2Cer,r=abc,x=1");
        let Ok(first) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(first.flag, CbindFlag::Required("tls-exporter"));
        assert_eq!(first.gs2_header, "p=tls-exporter,a=me@x,");
        assert_eq!(first.authzid.as_deref(), Some("me@x"));
        assert_eq!(first.username, "us,er");
        assert_eq!(first.client_nonce, "abc");
        assert_eq!(first.bare, "n=us=2Cer,r=abc,x=1");
    }

    #[test]
    fn client_first_rejects_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=user,r=abc",
            b"p=,,n=user,r=abc",
            b"p=tls_exporter,,n=user,r=abc",
            b"F,n,,n=user,r=abc",
            b"n,b=user,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=user,r=abc,m=ext",
            b"n,,n=user,r=abc,1=x",
            b"n,,n=user,r=abc,x=",
            b"n,,n=user,r=abc,",
            b"n,,n=,r=abc",
            b"n,,n=us=41er,r=abc",
            b"n,,n=user,r=",
            b"n,,n=user,r=a\x7fb",
            b"n,,n=user,r=a b",
            b"n,,n=user",
            b"n,,r=abc,n=user",
            b"n,,user,r=abc",
            b"n,,n=user,r=abc\xff",
            b"n,,n=us\0er,r=abc",
        ];
        for case in cases {
            assert!(
                parse_client_first(case).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn client_final_parses_all_parts() {
        let parsed = parse_client_final(b"c=biws,r=abc,x=ext,p=AAAA");
        let Ok(last) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(last.without_proof, "c=biws,r=abc,x=ext");
        assert_eq!(last.channel_binding, b"n,,");
        assert_eq!(last.nonce, "abc");
        assert_eq!(last.proof, [0, 0, 0]);
    }

    #[test]
    fn client_final_rejects_malformed() {
        let cases: &[&[u8]] = &[
            b"",
            b"c=biws,r=abc",
            b"c=biws,r=abc,p=",
            b"c=biws,r=abc,p=!!!!",
            b"c=biws,r=abc,p=AAA",
            b"c=,r=abc,p=AAAA",
            b"r=abc,c=biws,p=AAAA",
            b"c=biws,p=AAAA",
            b"c=biws,r=abc,m=x,p=AAAA",
            b"c=biws,r=abc,p=AAAA,x=y",
            b"c=biws,r=,p=AAAA",
            b"c=bi,ws,r=abc,p=AAAA",
            b"c=biws,r=abc,p=AAAA\xff",
        ];
        for case in cases {
            assert!(
                parse_client_final(case).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn fake_salt_is_stable_per_user_and_secret() {
        let a = fake_salt(b"secret", "alice");
        assert_eq!(a.len(), FAKE_SALT_BYTES);
        assert_eq!(a, fake_salt(b"secret", "alice"));
        assert_ne!(a, fake_salt(b"secret", "bob"));
        assert_ne!(a, fake_salt(b"other", "alice"));
    }

    #[test]
    fn random_server_nonce_is_printable_and_fresh() {
        struct Counter(u8);
        impl Entropy for Counter {
            fn fill(&mut self, buf: &mut [u8]) {
                for b in buf {
                    self.0 = self.0.wrapping_add(7);
                    *b = self.0;
                }
            }
        }
        let mut rng = Counter(0);
        let first = random_server_nonce(&mut rng);
        let second = random_server_nonce(&mut rng);
        assert_eq!(first.len(), 32);
        assert!(is_printable(&first));
        assert_ne!(first, second);
    }
}
