//! XMPP addresses (RFC 7622). STUB: interface only; implementation pending.

use std::fmt;

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

/// A normalised address held as one string plus part offsets (STYLE.md: not three Strings).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    s: String,
    domain_start: u16,
    resource_start: u16,
}

impl Jid {
    pub fn parse(_s: &str) -> Result<Jid, JidError> {
        Err(JidError::Empty)
    }
    pub fn from_parts(
        _local: Option<&str>,
        _domain: &str,
        _resource: Option<&str>,
    ) -> Result<Jid, JidError> {
        Err(JidError::Empty)
    }
    pub fn as_str(&self) -> &str {
        &self.s
    }
    pub fn local(&self) -> Option<&str> {
        None
    }
    pub fn domain(&self) -> &str {
        &self.s[self.domain_start as usize..]
    }
    pub fn resource(&self) -> Option<&str> {
        None
    }
    pub fn bare_str(&self) -> &str {
        &self.s[..self.resource_start as usize]
    }
    pub fn bare(&self) -> Jid {
        self.clone()
    }
    pub fn is_bare(&self) -> bool {
        true
    }
    pub fn with_resource(&self, _resource: &str) -> Result<Jid, JidError> {
        Err(JidError::Empty)
    }
}

pub fn normalize_localpart(_s: &str) -> Result<String, JidError> {
    Err(JidError::Empty)
}
pub fn normalize_domain(_s: &str) -> Result<String, JidError> {
    Err(JidError::Empty)
}
pub fn normalize_resource(_s: &str) -> Result<String, JidError> {
    Err(JidError::Empty)
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
