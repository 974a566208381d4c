//! SASL client side: SCRAM-SHA-1 (RFC 5802) without channel binding, and PLAIN (RFC 4616).
//!
//! The client keeps ClientKey/ServerKey per (password, salt, iterations), as RFC 5802 §5.1
//! allows ("the client can store SaltedPassword"), so a login storm measures the server and
//! not the generator's PBKDF2.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    MalformedServerFirst,
    NonceMismatch,
    BadIterations,
    ServerSignatureMismatch,
}

/// ClientKey, ServerKey.
type Keys = ([u8; 20], [u8; 20]);
/// (password, salt, iterations) → keys.
type KeyCache = Mutex<HashMap<(String, Vec<u8>, u32), Keys>>;

fn key_cache() -> &'static KeyCache {
    static CACHE: OnceLock<KeyCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn derive_keys(password: &str, salt: &[u8], iterations: NonZeroU32) -> Keys {
    let key = (password.to_string(), salt.to_vec(), iterations.get());
    if let Ok(cache) = key_cache().lock()
        && let Some(keys) = cache.get(&key)
    {
        return *keys;
    }
    let mut salted = [0u8; 20];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA1,
        iterations,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let salted_key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salted);
    let mut client_key = [0u8; 20];
    client_key.copy_from_slice(hmac::sign(&salted_key, b"Client Key").as_ref());
    let mut server_key = [0u8; 20];
    server_key.copy_from_slice(hmac::sign(&salted_key, b"Server Key").as_ref());
    if let Ok(mut cache) = key_cache().lock() {
        cache.insert(key, (client_key, server_key));
    }
    (client_key, server_key)
}

/// RFC 5802 §5.1: "=" and "," in the username are escaped.
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

pub fn client_nonce() -> String {
    let mut raw = [0u8; 18];
    // SystemRandom only fails if the OS has no randomness; a fixed nonce still works then.
    let _ = ring::rand::SystemRandom::new().fill(&mut raw);
    B64.encode(raw)
}

/// One SCRAM-SHA-1 exchange in progress.
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    nonce: String,
    auth_message: String,
    server_key: [u8; 20],
}

impl ScramClient {
    /// Returns the client and the client-first-message (gs2 header "n,,": no channel binding).
    pub fn start(user: &str, password: &str, nonce: String) -> (ScramClient, String) {
        let client_first_bare = format!("n={},r={}", sasl_name(user), nonce);
        let first = format!("n,,{client_first_bare}");
        let client = ScramClient {
            password: password.to_string(),
            client_first_bare,
            nonce,
            auth_message: String::new(),
            server_key: [0; 20],
        };
        (client, first)
    }

    /// Takes the server-first-message, returns the client-final-message.
    pub fn respond(&mut self, server_first: &str) -> Result<String, ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(v),
                Some(("i=", v)) => iterations = Some(v),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::MalformedServerFirst);
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::MalformedServerFirst)?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or(ScramError::BadIterations)?;
        let (client_key, server_key) = derive_keys(&self.password, &salt, iterations);
        self.server_key = server_key;
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let stored_key = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &client_key);
        let stored_key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, stored_key.as_ref());
        let signature = hmac::sign(&stored_key, self.auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(signature.as_ref()) {
            *p ^= s;
        }
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final-message `v=...` (RFC 5802 §5.1: the client authenticates the
    /// server too).
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.server_key);
        let expected = hmac::sign(&key, self.auth_message.as_bytes());
        let got = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::ServerSignatureMismatch)?;
        if got.as_slice() == expected.as_ref() {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

/// RFC 4616 message: authzid empty, authcid, password.
pub fn plain_message(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 §5 example exchange (user "user", password "pencil").
    #[test]
    fn rfc5802_example() {
        let (mut c, first) =
            ScramClient::start("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL".into());
        assert_eq!(first, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .respond("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert_eq!(c.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), Ok(()));
        assert_eq!(c.verify("v=AAAA"), Err(ScramError::ServerSignatureMismatch));
    }

    #[test]
    fn rejects_foreign_nonce_and_garbage() {
        let (mut c, _) = ScramClient::start("u", "p", "abc".into());
        assert_eq!(
            c.respond("r=xyz1,s=QSXCR+Q6sek8bf92,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(c.respond("garbage"), Err(ScramError::MalformedServerFirst));
        assert_eq!(
            c.respond("r=abcd,s=QSXCR+Q6sek8bf92,i=0"),
            Err(ScramError::BadIterations)
        );
    }

    #[test]
    fn escapes_names_and_encodes_plain() {
        assert_eq!(sasl_name("a=b,c"), "a=3Db=2Cc");
        assert_eq!(plain_message("u", "p"), "AHUAcA==");
    }
}
