//! Escaping of text and attribute values written by the server. STUB.

/// Appends `s` escaped for use as character data.
pub fn escape_text(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

/// Appends `s` escaped for use inside a single- or double-quoted attribute value.
pub fn escape_attr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}
