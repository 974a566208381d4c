//! SASL for c2s (RFC 6120 §6): mechanism negotiation state, SCRAM (RFC 5802, RFC 7677) with
//! optional `tls-exporter` channel binding (RFC 9266), and PLAIN (RFC 4616). STUB.

pub mod credentials;

pub use credentials::{Credentials, ScramKeys};

use crate::time::Entropy;

/// Mechanisms in order of preference (strongest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
    /// Whether the mechanism needs channel-binding data from the TLS layer.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }
}

/// RFC 6120 §6.5: SASL failure conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    pub fn element_name(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// What the connection knows that SASL needs.
pub struct SaslContext<'a> {
    /// Our domain: a PLAIN/SCRAM authzid, when present, must be `user@domain`.
    pub domain: &'a str,
    /// `tls-exporter` channel-binding data (RFC 9266), when the stream is encrypted and the
    /// TLS layer could export it.
    pub channel_binding: Option<&'a [u8]>,
    /// Secret used to derive a stable fake salt for unknown users, so that a SCRAM exchange
    /// for a missing account looks the same on the wire as a wrong password.
    pub server_secret: &'a [u8],
}

/// Result of one SASL step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge/>` with these (raw, not yet base64) bytes.
    Challenge(Vec<u8>),
    /// Authentication succeeded for this normalised localpart; send `<success/>` with the
    /// additional data (SCRAM server-final message) if any.
    Success {
        username: String,
        additional: Option<Vec<u8>>,
    },
    Failure(SaslFailure),
}

/// One SASL exchange in progress on a connection.
pub struct SaslServer {
    mechanism: Mechanism,
}

impl SaslServer {
    /// Starts `mechanism` with the client's initial response (decoded from base64; `None`
    /// when the `<auth/>` element was empty, `Some(b"")` for `=`). `lookup` returns the
    /// stored credentials of a normalised localpart.
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
        ctx: &SaslContext<'_>,
        lookup: &dyn Fn(&str) -> Option<Credentials>,
        rng: &mut dyn Entropy,
    ) -> (SaslServer, Step) {
        let _ = (initial, ctx, lookup, rng);
        (
            SaslServer { mechanism },
            Step::Failure(SaslFailure::TemporaryAuthFailure),
        )
    }
    /// Continues with the client's `<response/>` payload (decoded from base64).
    pub fn step(
        &mut self,
        response: &[u8],
        ctx: &SaslContext<'_>,
        lookup: &dyn Fn(&str) -> Option<Credentials>,
    ) -> Step {
        let _ = (response, ctx, lookup);
        Step::Failure(SaslFailure::TemporaryAuthFailure)
    }
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }
}
