//! Stored SCRAM keys: the server never keeps a password, only what RFC 5802 §3 lets it
//! verify a proof with. STUB.

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
    pub fn derive(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Credentials, PasswordError> {
        let _ = password;
        Ok(Credentials {
            salt: salt.to_vec(),
            iterations,
            sha1: ScramKeys {
                stored_key: [0; 20],
                server_key: [0; 20],
            },
            sha256: ScramKeys {
                stored_key: [0; 32],
                server_key: [0; 32],
            },
        })
    }
    /// Checks a plaintext password (for SASL PLAIN) against the stored SHA-256 keys in
    /// constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let _ = password;
        false
    }
}
