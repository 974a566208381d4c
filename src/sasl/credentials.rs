//! Stored SCRAM keys: the server never keeps a password, only what RFC 5802 §3 lets it
//! verify a proof with (StoredKey) and prove itself with (ServerKey).

use std::borrow::Cow;
use std::num::NonZeroU32;

use precis_core::profile::Profile;
use precis_profiles::OpaqueString;
use ring::{digest, hmac, pbkdf2};

use crate::time::Entropy;

/// Salt length for new passwords. RFC 5802 leaves it open; 128 bits makes a collision
/// between two accounts' salts (and so shared precomputation) negligible.
pub const SALT_BYTES: usize = 16;

/// Longest password accepted, in UTF-8 bytes. PRECIS sets no bound; this one keeps the
/// normalisation and HMAC key work bounded, and is far above any typed or generated
/// password.
pub const PASSWORD_MAX_BYTES: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys<const N: usize> {
    pub stored_key: [u8; N],
    pub server_key: [u8; N],
}

/// Both hash families share one salt and iteration count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub sha1: ScramKeys<20>,
    pub sha256: ScramKeys<32>,
}

/// Why a password cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordError {
    Empty,
    TooLong,
    /// Not valid under the PRECIS OpaqueString profile (RFC 8265 §4.2).
    Invalid,
}

impl Credentials {
    /// Derives the stored keys from a password (normalised here with OpaqueString).
    ///
    /// An iteration count of 0 is raised to 1 (PBKDF2 needs at least one round) and the
    /// raised value is stored, so the advertised `i=` always matches the derivation.
    pub fn derive(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Credentials, PasswordError> {
        let prepared = prepare_password(password)?;
        let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        let password = prepared.as_bytes();
        Ok(Credentials {
            salt: salt.to_vec(),
            iterations: rounds.get(),
            sha1: derive_keys(ScramHash::Sha1, password, salt, rounds),
            sha256: derive_keys(ScramHash::Sha256, password, salt, rounds),
        })
    }

    /// Derives the stored keys with a fresh [`SALT_BYTES`]-byte salt from `rng`.
    pub fn new_random(
        password: &str,
        iterations: u32,
        rng: &mut dyn Entropy,
    ) -> Result<Credentials, PasswordError> {
        let mut salt = [0u8; SALT_BYTES];
        rng.fill(&mut salt);
        Credentials::derive(password, &salt, iterations)
    }

    /// Checks a plaintext password (for SASL PLAIN) against the stored SHA-256 keys in
    /// constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let Ok(prepared) = prepare_password(password) else {
            return false;
        };
        let Some(rounds) = NonZeroU32::new(self.iterations) else {
            return false;
        };
        let candidate: ScramKeys<32> =
            derive_keys(ScramHash::Sha256, prepared.as_bytes(), &self.salt, rounds);
        constant_time_eq(&candidate.stored_key, &self.sha256.stored_key)
    }

    /// StoredKey and ServerKey for one hash family.
    pub(crate) fn keys_for(&self, hash: ScramHash) -> (&[u8], &[u8]) {
        match hash {
            ScramHash::Sha1 => (&self.sha1.stored_key, &self.sha1.server_key),
            ScramHash::Sha256 => (&self.sha256.stored_key, &self.sha256.server_key),
        }
    }
}

#[cfg(test)]
impl Credentials {
    /// Credentials whose every byte is `b`: distinct per `b`, and no PBKDF2 to wait for.
    pub(crate) fn filled(b: u8) -> Credentials {
        Credentials {
            salt: vec![b; 16],
            iterations: 4096,
            sha1: ScramKeys {
                stored_key: [b; 20],
                server_key: [b; 20],
            },
            sha256: ScramKeys {
                stored_key: [b; 32],
                server_key: [b; 32],
            },
        }
    }
}

/// RFC 8265 §4.2 OpaqueString enforcement, the password preparation RFC 7677 §4 asks
/// SCRAM-SHA-256 to use (it replaces SASLprep, RFC 4013). Both ends of SCRAM must prepare
/// the password the same way or the keys will not match.
pub(crate) fn prepare_password(password: &str) -> Result<Cow<'_, str>, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    let prepared = OpaqueString::new()
        .enforce(password)
        .map_err(|_| PasswordError::Invalid)?;
    if prepared.is_empty() {
        return Err(PasswordError::Empty);
    }
    if prepared.len() > PASSWORD_MAX_BYTES {
        return Err(PasswordError::TooLong);
    }
    Ok(prepared)
}

/// The hash function H of a SCRAM family (RFC 5802 §2.2, RFC 7677).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// Longest output of any family, for fixed-size buffers.
    pub(crate) const MAX_LEN: usize = 32;

    pub(crate) fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            // RFC 5802 mandates SHA-1 for SCRAM-SHA-1; HMAC-SHA-1 is not affected by the
            // SHA-1 collision attacks.
            ScramHash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => hmac::HMAC_SHA256,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            ScramHash::Sha256 => &digest::SHA256,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        }
    }

    /// HMAC(key, part1 ‖ part2 ‖ …), so callers can sign a message held in pieces.
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        let mut context = hmac::Context::with_key(&key);
        for part in parts {
            context.update(part);
        }
        context.sign()
    }

    pub(crate) fn hash(self, data: &[u8]) -> digest::Digest {
        digest::digest(self.digest_algorithm(), data)
    }
}

/// RFC 5802 §3: SaltedPassword, then StoredKey = H(HMAC(SaltedPassword, "Client Key"))
/// and ServerKey = HMAC(SaltedPassword, "Server Key"). `N` is the family's output length.
fn derive_keys<const N: usize>(
    hash: ScramHash,
    password: &[u8],
    salt: &[u8],
    rounds: NonZeroU32,
) -> ScramKeys<N> {
    let mut salted_password = [0u8; N];
    pbkdf2::derive(
        hash.pbkdf2_algorithm(),
        rounds,
        salt,
        password,
        &mut salted_password,
    );
    let client_key = hash.hmac(&salted_password, &[b"Client Key"]);
    let stored_key = hash.hash(client_key.as_ref());
    let server_key = hash.hmac(&salted_password, &[b"Server Key"]);
    ScramKeys {
        stored_key: copy_to_array(stored_key.as_ref()),
        server_key: copy_to_array(server_key.as_ref()),
    }
}

fn copy_to_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (dst, src) in out.iter_mut().zip(bytes) {
        *dst = *src;
    }
    out
}

/// Equality that takes the same time wherever the inputs differ. ring's public constant-time
/// comparison is `hmac::verify` (its `constant_time` module is deprecated with no
/// side-channel promise), so compare by MACing one side and verifying the other
/// ("double HMAC"): equal MACs imply equal inputs.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"xmppd constant-time comparison");
    let tag = hmac::sign(&key, b);
    hmac::verify(&key, a, tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    struct CountingEntropy(u8);
    impl Entropy for CountingEntropy {
        fn fill(&mut self, buf: &mut [u8]) {
            for byte in buf {
                self.0 = self.0.wrapping_add(1);
                *byte = self.0;
            }
        }
    }

    fn rfc7677_salt() -> Vec<u8> {
        BASE64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap_or_default()
    }

    #[test]
    fn derive_matches_rfc7677_keys_through_proof() {
        // RFC 7677 §3: with StoredKey from "pencil", the RFC's ClientProof must check out.
        let creds = Credentials::derive("pencil", &rfc7677_salt(), 4096);
        let Ok(creds) = creds else {
            panic!("derive failed: {creds:?}");
        };
        let auth_message = b"n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,\
            i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = BASE64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap_or_default();
        let signature = ScramHash::Sha256.hmac(&creds.sha256.stored_key, &[auth_message]);
        let client_key: Vec<u8> = proof
            .iter()
            .zip(signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            ScramHash::Sha256.hash(&client_key).as_ref(),
            &creds.sha256.stored_key
        );
        let server_signature = ScramHash::Sha256.hmac(&creds.sha256.server_key, &[auth_message]);
        assert_eq!(
            BASE64.encode(server_signature.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(creds.iterations, 4096);
        assert_eq!(creds.salt, rfc7677_salt());
    }

    #[test]
    fn verify_password_accepts_only_the_password() {
        let creds = Credentials::derive("pencil", &rfc7677_salt(), 64);
        let Ok(creds) = creds else {
            panic!("derive failed");
        };
        assert!(creds.verify_password("pencil"));
        assert!(!creds.verify_password("Pencil"));
        assert!(!creds.verify_password("pencil "));
        assert!(!creds.verify_password(""));
        assert!(!creds.verify_password("\u{7}"));
    }

    #[test]
    fn verify_password_fails_on_zero_iterations() {
        let Ok(mut creds) = Credentials::derive("pencil", b"salt", 1) else {
            panic!("derive failed");
        };
        creds.iterations = 0;
        assert!(!creds.verify_password("pencil"));
    }

    #[test]
    fn derive_rejects_unusable_passwords() {
        assert_eq!(
            Credentials::derive("", b"salt", 1),
            Err(PasswordError::Empty)
        );
        let long = "a".repeat(PASSWORD_MAX_BYTES + 1);
        assert_eq!(
            Credentials::derive(&long, b"salt", 1),
            Err(PasswordError::TooLong)
        );
        assert!(Credentials::derive(&"a".repeat(PASSWORD_MAX_BYTES), b"salt", 1).is_ok());
        // RFC 8265 §4.2: control characters are disallowed in OpaqueString.
        assert_eq!(
            Credentials::derive("pass\u{7}word", b"salt", 1),
            Err(PasswordError::Invalid)
        );
    }

    #[test]
    fn derive_normalises_with_opaque_string() {
        // RFC 8265 §4.2.1: non-ASCII spaces map to U+0020, and NFC is applied.
        let spaced = Credentials::derive("correct\u{3000}horse", b"salt", 2);
        let ascii = Credentials::derive("correct horse", b"salt", 2);
        assert_eq!(spaced, ascii);
        let decomposed = Credentials::derive("cafe\u{301}", b"salt", 2);
        let composed = Credentials::derive("caf\u{e9}", b"salt", 2);
        assert_eq!(decomposed, composed);
        let Ok(composed) = composed else {
            panic!("derive failed");
        };
        assert!(composed.verify_password("cafe\u{301}"));
    }

    #[test]
    fn zero_iterations_are_raised_to_one_and_stored() {
        let zero = Credentials::derive("pencil", b"salt", 0);
        let one = Credentials::derive("pencil", b"salt", 1);
        assert_eq!(zero, one);
        assert_eq!(zero.map(|c| c.iterations), Ok(1));
    }

    #[test]
    fn new_random_draws_a_fresh_salt() {
        let a = Credentials::new_random("pencil", 2, &mut CountingEntropy(0));
        let b = Credentials::new_random("pencil", 2, &mut CountingEntropy(100));
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("new_random failed");
        };
        assert_eq!(a.salt.len(), SALT_BYTES);
        assert_eq!(a.salt.first(), Some(&1));
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.sha256, b.sha256);
        assert!(a.verify_password("pencil"));
        assert!(b.verify_password("pencil"));
    }

    #[test]
    fn constant_time_eq_compares_contents_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
