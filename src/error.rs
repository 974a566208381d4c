//! Wire error conditions, and the one place where internal failure reasons become them.
//!
//! Stream errors (RFC 6120 §4.9.3) end the connection; stanza errors (RFC 6120 §8.3.3) are
//! answered to the sender and the stream goes on. Internal error enums elsewhere in the crate
//! implement `From<…> for StreamCondition` / `StanzaCondition` here, like rustls maps
//! `PeerMisbehaved` to TLS alerts in one table.

use crate::xml::FrameError;

/// RFC 6120 §4.9.3: every defined stream error condition, by its element name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamCondition {
    /// The element name under `urn:ietf:params:xml:ns:xmpp-streams`.
    pub fn element_name(self) -> &'static str {
        use StreamCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }
}

/// RFC 6120 §8.3.2: the `type` attribute of a stanza error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// RFC 6120 §8.3.3: every defined stanza error condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StanzaCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl StanzaCondition {
    /// The element name under `urn:ietf:params:xml:ns:xmpp-stanzas`.
    pub fn element_name(self) -> &'static str {
        use StanzaCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives in its examples for each condition; a caller
    /// that needs another type says so with [`StanzaError::with_type`].
    pub fn default_type(self) -> ErrorType {
        use StanzaCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stanza error to send back: condition, type and optional human-readable text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: StanzaCondition,
    pub error_type: ErrorType,
    pub text: Option<&'static str>,
}

impl StanzaError {
    pub fn new(condition: StanzaCondition) -> Self {
        StanzaError {
            condition,
            error_type: condition.default_type(),
            text: None,
        }
    }
    pub fn with_type(mut self, t: ErrorType) -> Self {
        self.error_type = t;
        self
    }
    pub fn with_text(mut self, text: &'static str) -> Self {
        self.text = Some(text);
        self
    }
}

impl From<StanzaCondition> for StanzaError {
    fn from(c: StanzaCondition) -> Self {
        StanzaError::new(c)
    }
}

/// RFC 6120 §4.9.3 / §11: what each framing fault is called on the wire.
impl From<FrameError> for StreamCondition {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::NotWellFormed(_) => StreamCondition::NotWellFormed,
            FrameError::RestrictedXml => StreamCondition::RestrictedXml,
            // §4.9.3.14: a stanza over the advertised size limit is a policy violation.
            FrameError::TooLarge | FrameError::TooDeep | FrameError::TooManyAttributes => {
                StreamCondition::PolicyViolation
            }
            FrameError::UnsupportedEncoding => StreamCondition::UnsupportedEncoding,
            FrameError::InvalidNamespace => StreamCondition::InvalidNamespace,
            FrameError::BadNamespacePrefix => StreamCondition::BadNamespacePrefix,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc_spelling() {
        assert_eq!(
            StreamCondition::UnsupportedStanzaType.element_name(),
            "unsupported-stanza-type"
        );
        assert_eq!(
            StreamCondition::SystemShutdown.element_name(),
            "system-shutdown"
        );
        assert_eq!(
            StanzaCondition::ServiceUnavailable.element_name(),
            "service-unavailable"
        );
        assert_eq!(
            StanzaCondition::JidMalformed.default_type(),
            ErrorType::Modify
        );
    }
}
