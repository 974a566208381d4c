//! Escaping of what the server writes, and reference checking/unescaping of what it reads.
//!
//! RFC 6120 §11.1 allows only the five predefined entities and character references in
//! XMPP; anything else (`&foo;`) would need a DTD and is not-well-formed here.

use std::borrow::Cow;

/// Why a reference or character cannot be accepted.
pub type EscapeError = &'static str;

/// Appends `s` escaped for use as character data. `\r` is written as a character
/// reference because a parser turns a literal one into `\n` (XML 1.0 §2.11); characters
/// XML 1.0 does not allow at all are replaced with U+FFFD so that the output stays
/// well-formed whatever the string came from.
pub fn escape_text(out: &mut Vec<u8>, s: &str) {
    escape_with(out, s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '\r' => Some("&#xD;"),
        _ => None,
    });
}

/// Appends `s` escaped for use inside a single- or double-quoted attribute value. Tab,
/// CR and LF are written as character references because attribute-value normalisation
/// (XML 1.0 §3.3.3) turns literal ones into spaces.
pub fn escape_attr(out: &mut Vec<u8>, s: &str) {
    escape_with(out, s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '\'' => Some("&apos;"),
        '"' => Some("&quot;"),
        '\t' => Some("&#x9;"),
        '\n' => Some("&#xA;"),
        '\r' => Some("&#xD;"),
        _ => None,
    });
}

fn escape_with(out: &mut Vec<u8>, s: &str, replacement: impl Fn(char) -> Option<&'static str>) {
    let mut run_start = 0;
    for (i, c) in s.char_indices() {
        let substitute = match replacement(c) {
            Some(r) => r,
            None if is_xml_char(c) => continue,
            None => "\u{FFFD}",
        };
        out.extend_from_slice(s.get(run_start..i).unwrap_or_default().as_bytes());
        out.extend_from_slice(substitute.as_bytes());
        run_start = i + c.len_utf8();
    }
    out.extend_from_slice(s.get(run_start..).unwrap_or_default().as_bytes());
}

/// `Char` of XML 1.0 §2.2 (surrogates cannot occur in a `char`).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Checks every `&` in raw character data or an attribute value starts a predefined entity
/// or a character reference to an allowed character, without allocating.
pub fn check_references(raw: &str) -> Result<(), EscapeError> {
    for (i, _) in raw.match_indices('&') {
        parse_reference(raw.get(i..).unwrap_or_default())?;
    }
    Ok(())
}

/// Raw character data to its value: references resolved, line ends normalised to `\n`
/// (XML 1.0 §2.11). Borrows when there is nothing to change.
pub fn unescape_text(raw: &str) -> Result<Cow<'_, str>, EscapeError> {
    unescape(raw, false)
}

/// Raw attribute value to its value: references resolved, literal tab/CR/LF (and CR LF)
/// turned into one space each (XML 1.0 §3.3.3, CDATA-type normalisation).
pub fn unescape_attr(raw: &str) -> Result<Cow<'_, str>, EscapeError> {
    unescape(raw, true)
}

/// Line-end normalisation only, for CDATA sections (XML 1.0 §2.11 applies before parsing).
pub fn normalize_line_ends(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\r') {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
}

fn unescape(raw: &str, attribute: bool) -> Result<Cow<'_, str>, EscapeError> {
    let mut out = String::new();
    if unescape_into(&mut out, raw, attribute)? {
        Ok(Cow::Owned(out))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// [`unescape_attr`] appending to `out`, for callers that keep a buffer: `false` (and
/// nothing appended) when the value is the raw text itself.
pub fn unescape_attr_into(out: &mut String, raw: &str) -> Result<bool, EscapeError> {
    unescape_into(out, raw, true)
}

fn unescape_into(out: &mut String, raw: &str, attribute: bool) -> Result<bool, EscapeError> {
    let special = |c: char| c == '&' || c == '\r' || (attribute && (c == '\n' || c == '\t'));
    let Some(first) = raw.find(special) else {
        return Ok(false);
    };
    let (plain, mut rest) = raw.split_at_checked(first).unwrap_or((raw, ""));
    out.reserve(raw.len());
    out.push_str(plain);
    while let Some(c) = rest.chars().next() {
        match c {
            '&' => {
                let (value, used) = parse_reference(rest)?;
                out.push(value);
                rest = rest.get(used..).unwrap_or_default();
            }
            '\r' => {
                out.push(if attribute { ' ' } else { '\n' });
                rest = rest
                    .strip_prefix("\r\n")
                    .unwrap_or(rest.get(1..).unwrap_or_default());
            }
            '\n' | '\t' if attribute => {
                out.push(' ');
                rest = rest.get(1..).unwrap_or_default();
            }
            _ => {
                let run = rest.find(special).unwrap_or(rest.len());
                let (plain, tail) = rest
                    .split_at_checked(run.max(c.len_utf8()))
                    .unwrap_or((rest, ""));
                out.push_str(plain);
                rest = tail;
            }
        }
    }
    Ok(true)
}

/// Parses the reference at the start of `s` (which starts with `&`). Returns the character
/// it stands for and the number of bytes it occupies.
fn parse_reference(s: &str) -> Result<(char, usize), EscapeError> {
    let body_and_rest = s.strip_prefix('&').ok_or("malformed reference")?;
    let end = body_and_rest.find(';').ok_or("malformed reference")?;
    let body = body_and_rest.get(..end).unwrap_or_default();
    let used = end + 2;
    let c = match body {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "apos" => '\'',
        "quot" => '"',
        _ => match body.strip_prefix('#') {
            Some(number) => parse_char_reference(number)?,
            None => return Err("undefined entity reference"),
        },
    };
    Ok((c, used))
}

/// `CharRef ::= '&#' [0-9]+ ';' | '&#x' [0-9a-fA-F]+ ';'` naming a `Char` (XML 1.0 §4.1).
fn parse_char_reference(number: &str) -> Result<char, EscapeError> {
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() {
        return Err("malformed character reference");
    }
    let mut value: u32 = 0;
    for d in digits.chars() {
        let digit = d.to_digit(radix).ok_or("malformed character reference")?;
        value = value
            .checked_mul(radix)
            .and_then(|v| v.checked_add(digit))
            .filter(|v| *v <= 0x10_FFFF)
            .ok_or("character reference out of range")?;
    }
    char::from_u32(value)
        .filter(|c| is_xml_char(*c))
        .ok_or("character reference to a character not allowed in XML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        let mut v = Vec::new();
        escape_text(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    fn attr(s: &str) -> String {
        let mut v = Vec::new();
        escape_attr(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_text() {
        assert_eq!(text("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(text("quotes ' \" stay"), "quotes ' \" stay");
        assert_eq!(text("line\r\nend\ttab"), "line&#xD;\nend\ttab");
        assert_eq!(text("héllo ☃ 𝄞"), "héllo ☃ 𝄞");
        assert_eq!(text(""), "");
    }

    #[test]
    fn escapes_attributes() {
        assert_eq!(
            attr("it's \"x\" <&>"),
            "it&apos;s &quot;x&quot; &lt;&amp;&gt;"
        );
        assert_eq!(attr("a\tb\nc\rd"), "a&#x9;b&#xA;c&#xD;d");
    }

    #[test]
    fn replaces_characters_xml_forbids() {
        assert_eq!(
            text("a\u{0}b\u{1b}c\u{FFFE}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(attr("\u{8}"), "\u{FFFD}");
    }

    #[test]
    fn unescapes_predefined_entities_and_char_refs() {
        assert_eq!(
            unescape_text("&lt;&gt;&amp;&apos;&quot;&#65;&#x42;&#x1D11E;").unwrap(),
            "<>&'\"AB𝄞"
        );
        assert_eq!(unescape_text("&#0000065;").unwrap(), "A");
        assert!(matches!(
            unescape_text("plain").unwrap(),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "&foo;",
            "&amp",
            "&",
            "a & b",
            "&#;",
            "&#x;",
            "&#X41;",
            "&#xZZ;",
            "&#0;",
            "&#x1;",
            "&#xD800;",
            "&#xFFFE;",
            "&#x110000;",
            "&#99999999999999999999;",
            "&lt",
            "&#-1;",
            "&#x 41;",
            "&LT;",
        ] {
            assert!(unescape_text(bad).is_err(), "{bad}");
            assert!(unescape_attr(bad).is_err(), "{bad}");
            assert!(check_references(bad).is_err(), "{bad}");
        }
        assert!(check_references("&amp; &#x9; &#10; &#13; ok").is_ok());
    }

    #[test]
    fn normalises_line_ends_and_attribute_whitespace() {
        assert_eq!(unescape_text("a\r\nb\rc\nd\te").unwrap(), "a\nb\nc\nd\te");
        assert_eq!(unescape_attr("a\r\nb\rc\nd\te").unwrap(), "a b c d e");
        // Character references are not normalised: that is how \n survives in attributes.
        assert_eq!(unescape_attr("a&#xA;b&#x9;c&#xD;").unwrap(), "a\nb\tc\r");
        assert_eq!(normalize_line_ends("x\r\ny\r"), "x\ny\n");
    }

    #[test]
    fn attribute_escape_round_trips() {
        for s in [
            "plain",
            "a\tb\nc\r\nd",
            "<&>'\"",
            "ünïcödé 𝄞",
            " lead and trail ",
        ] {
            assert_eq!(unescape_attr(&attr(s)).unwrap(), s);
        }
        for s in ["a\r\nb", "x\ry", "<&>"] {
            assert_eq!(unescape_text(&text(s)).unwrap(), s);
        }
    }
}
