//! The TOML subset of the config file, read into a flat list of section headers and
//! `key = value` entries, each with its line number.
//!
//! Every file this accepts is valid TOML with the same meaning (TOML 1.0), so ordinary
//! TOML tools can read and edit it; constructs the server never needs (dotted keys,
//! nested tables, inline tables, floats, dates, multi-line strings) are refused with a
//! message saying so rather than half-supported.
//!
//! The reader never recurses, never looks back, and every loop consumes input, so it runs
//! in time linear in the input and cannot be made to overflow the stack. After a syntax
//! error it resumes at the next line (or, inside an array, at the next element) so that
//! one mistake does not hide the others.

/// A value as written. Arrays keep the line of each element, so that a bad element of
/// an array spread over several lines is reported on its own line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<(usize, String)>),
    Ints(Vec<(usize, i64)>),
    /// `[]`, which fits any array type.
    EmptyArray,
}

impl Value {
    /// "a string", "an integer", ...: the words used in "expected X, found Y" messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Strs(_) => "an array of strings",
            Value::Ints(_) => "an array of integers",
            Value::EmptyArray => "an empty array",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `name` is `None` when the header could not be read; the keys that follow it are
    /// then skipped without further complaint, since their section is unknown.
    Section { line: usize, name: Option<String> },
    Entry {
        line: usize,
        key: String,
        value: Value,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    /// Dotted key whose value was being read; empty outside a `key = value`.
    pub key: String,
    pub message: String,
}

/// Reads `text` into items, collecting every syntax error rather than stopping at the
/// first. Items are only produced for lines that were read without error.
pub(crate) fn parse(text: &str) -> (Vec<Item>, Vec<SyntaxError>) {
    let mut parser = Parser {
        src: text,
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
        section: String::new(),
        key: String::new(),
        items: Vec::new(),
        errors: Vec::new(),
    };
    parser.document();
    (parser.items, parser.errors)
}

/// How to carry on after an error has been recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recover {
    /// Skip the rest of the current line.
    SkipLine,
    /// The position is already where reading should resume (an unclosed array stopped
    /// at the start of the next statement, or the end of the input).
    Resume,
}

type Step<T> = Result<T, Recover>;

/// Longest piece of user text quoted back in a message; keeps problems readable when
/// the input is garbage.
const QUOTE_MAX_CHARS: usize = 40;

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    /// Name of the last section header read (as written, even if unknown), for keys in
    /// error messages.
    section: String,
    /// Dotted key of the entry being read, empty outside an entry.
    key: String,
    items: Vec<Item>,
    errors: Vec<SyntaxError>,
}

fn is_bare_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Bytes that may make up an unquoted scalar (integer, boolean, or a float or date we
/// refuse): read as one word so the message can quote it whole.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.' | b':')
}

/// TOML forbids control characters other than tab in strings and comments (TOML 1.0,
/// "Comment" and "String").
fn is_forbidden_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// A bare key or section name cut to a length no real key reaches. Every error inside
/// one entry carries the key, so an uncut megabyte-long key repeated per error would
/// make the work quadratic.
fn shorten(name: &str) -> &str {
    const KEY_MAX_BYTES: usize = 64;
    // Bare keys are ASCII, so any byte offset is a char boundary.
    name.get(..KEY_MAX_BYTES).unwrap_or(name)
}

pub(crate) fn quote(s: &str) -> String {
    let mut shown: String = s.chars().take(QUOTE_MAX_CHARS).collect();
    if shown.len() < s.len() {
        shown.push('…');
    }
    format!("`{shown}`")
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos.saturating_add(ahead)).copied()
    }

    fn bump(&mut self) {
        if self.pos < self.bytes.len() {
            self.pos += 1;
        }
    }

    fn at_newline(&self) -> bool {
        match self.peek() {
            Some(b'\n') => true,
            Some(b'\r') => self.peek_at(1) == Some(b'\n'),
            _ => false,
        }
    }

    /// Consumes `\n` or `\r\n` if the position is at one.
    fn eat_newline(&mut self) -> bool {
        match self.peek() {
            Some(b'\n') => {
                self.pos += 1;
                self.line += 1;
                true
            }
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => {
                self.pos += 2;
                self.line += 1;
                true
            }
            _ => false,
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Moves past the next line feed (or to the end of the input).
    fn skip_to_next_line(&mut self) {
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'\n' {
                self.line += 1;
                return;
            }
        }
    }

    /// What is at the position, for "found X" in messages.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the file".into(),
            Some(b'\n') => "the end of the line".into(),
            Some(b'\r') if self.peek_at(1) == Some(b'\n') => "the end of the line".into(),
            Some(_) => match self
                .src
                .get(self.pos..)
                .and_then(|rest| rest.chars().next())
            {
                Some(c) if c.is_control() => format!("the control character U+{:04X}", c as u32),
                Some(c) => format!("`{c}`"),
                None => "an unreadable character".into(),
            },
        }
    }

    fn record_at(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(SyntaxError {
            line,
            key: self.key.clone(),
            message: message.into(),
        });
    }

    fn record(&mut self, message: impl Into<String>) {
        self.record_at(self.line, message);
    }

    /// Records an error on the current line and asks the caller to skip that line.
    fn fail<T>(&mut self, message: impl Into<String>) -> Step<T> {
        self.record(message);
        Err(Recover::SkipLine)
    }

    fn document(&mut self) {
        // A UTF-8 byte order mark is not TOML, but Windows editors write one; it carries
        // no meaning, so it is dropped rather than reported.
        if self.src.starts_with('\u{feff}') {
            self.pos = '\u{feff}'.len_utf8();
        }
        while self.pos < self.bytes.len() {
            let start = self.pos;
            self.key.clear();
            match self.statement() {
                Ok(()) => {}
                Err(Recover::SkipLine) => self.skip_to_next_line(),
                Err(Recover::Resume) => {}
            }
            if self.pos == start {
                // Every statement consumes input; this guard keeps the loop finite even if
                // a future change breaks that.
                self.skip_to_next_line();
            }
        }
    }

    fn statement(&mut self) -> Step<()> {
        self.skip_blanks();
        match self.peek() {
            None => Ok(()),
            Some(b'[') => self.section_header(),
            Some(b) if is_bare_key_byte(b) => self.entry(),
            Some(b'"' | b'\'') => {
                self.fail("quoted keys are not supported; write the key without quotes")
            }
            Some(b'\n' | b'\r' | b'#') => self.end_of_line(),
            Some(_) => {
                let found = self.found();
                self.fail(format!(
                    "expected a `key = value` line, a [section] header or a # comment, found {found}"
                ))
            }
        }
    }

    /// After a statement: blanks, an optional comment, then a line ending or the end of
    /// the input.
    fn end_of_line(&mut self) -> Step<()> {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.comment();
        }
        if self.eat_newline() || self.peek().is_none() {
            return Ok(());
        }
        let found = self.found();
        if self.peek() == Some(b'\r') {
            return self.fail("carriage return not followed by a line feed");
        }
        self.fail(format!("expected the end of the line, found {found}"))
    }

    /// Skips a comment up to (not including) its line ending, reporting at most one
    /// forbidden control character per comment.
    fn comment(&mut self) {
        let mut reported = false;
        while let Some(b) = self.peek() {
            if self.at_newline() {
                return;
            }
            if is_forbidden_control(b) && !reported {
                reported = true;
                self.record(format!(
                    "control character U+{b:04X} in a comment is not allowed in TOML"
                ));
            }
            self.pos += 1;
        }
    }

    fn bare_key(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_bare_key_byte) {
            self.pos += 1;
        }
        self.src.get(start..self.pos).unwrap_or("")
    }

    fn section_header(&mut self) -> Step<()> {
        let line = self.line;
        let result = self.section_name();
        match result {
            Ok(name) => {
                self.section = name.to_string();
                self.items.push(Item::Section {
                    line,
                    name: Some(name.to_string()),
                });
                self.end_of_line()
            }
            Err(recover) => {
                self.section.clear();
                self.items.push(Item::Section { line, name: None });
                Err(recover)
            }
        }
    }

    fn section_name(&mut self) -> Step<&'a str> {
        self.bump(); // `[`
        if self.peek() == Some(b'[') {
            return self.fail("arrays of tables ([[...]]) are not supported");
        }
        self.skip_blanks();
        let name = self.bare_key();
        if name.is_empty() {
            if matches!(self.peek(), Some(b'"' | b'\'')) {
                return self.fail("quoted section names are not supported");
            }
            let found = self.found();
            return self.fail(format!("expected a section name, found {found}"));
        }
        self.skip_blanks();
        match self.peek() {
            Some(b']') => {
                self.bump();
                Ok(name)
            }
            Some(b'.') => self.fail("nested sections ([a.b]) are not supported"),
            _ => {
                let found = self.found();
                self.fail(format!(
                    "expected `]` after the section name, found {found}"
                ))
            }
        }
    }

    fn entry(&mut self) -> Step<()> {
        let line = self.line;
        let key = self.bare_key();
        self.key = if self.section.is_empty() {
            shorten(key).to_string()
        } else {
            format!("{}.{}", shorten(&self.section), shorten(key))
        };
        self.skip_blanks();
        match self.peek() {
            Some(b'=') => self.bump(),
            Some(b'.') => {
                return self.fail("dotted keys are not supported; use a [section] header");
            }
            _ => {
                let found = self.found();
                return self.fail(format!("expected `=` after the key, found {found}"));
            }
        }
        self.skip_blanks();
        let value = self.value()?;
        self.end_of_line()?;
        if let Some(value) = value {
            self.items.push(Item::Entry {
                line,
                key: key.to_string(),
                value,
            });
        }
        Ok(())
    }

    /// `Ok(None)`: an array was read to its end but held errors (already recorded).
    fn value(&mut self) -> Step<Option<Value>> {
        match self.peek() {
            Some(b'[') => self.array(),
            Some(b'{') => self.fail("inline tables ({...}) are not supported"),
            None | Some(b'\n' | b'\r' | b'#') => self.fail(
                "expected a value after `=`: a \"string\", an integer, true, false or an [array]",
            ),
            _ => self.scalar().map(Some),
        }
    }

    fn scalar(&mut self) -> Step<Value> {
        match self.peek() {
            Some(b'"') => self.basic_string().map(Value::Str),
            Some(b'\'') => self.literal_string().map(Value::Str),
            _ => self.word(),
        }
    }

    /// An unquoted value: `true`, `false` or a decimal integer.
    fn word(&mut self) -> Step<Value> {
        let start = self.pos;
        while self.peek().is_some_and(is_word_byte) {
            self.pos += 1;
        }
        let word = self.src.get(start..self.pos).unwrap_or("");
        match word {
            "" => {
                let found = self.found();
                self.fail(format!(
                    "expected a value: a \"string\", an integer, true, false or an [array]; found {found}"
                ))
            }
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => match parse_integer(word) {
                Ok(n) => Ok(Value::Int(n)),
                Err(message) => self.fail(message),
            },
        }
    }

    fn basic_string(&mut self) -> Step<String> {
        self.bump(); // `"`
        if self.peek() == Some(b'"') && self.peek_at(1) == Some(b'"') {
            return self.fail("multi-line strings (\"\"\") are not supported");
        }
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b != b'"' && b != b'\\' && !is_forbidden_control(b))
            {
                self.pos += 1;
            }
            // The run stops only at ASCII bytes, so both ends are on char boundaries.
            out.push_str(self.src.get(run_start..self.pos).unwrap_or(""));
            match self.peek() {
                Some(b'"') => {
                    self.bump();
                    return Ok(out);
                }
                Some(b'\\') => out.push(self.escape()?),
                Some(b) if is_forbidden_control(b) && !self.at_newline() => {
                    return self.fail(format!(
                        "control character U+{b:04X} in a string; write it as an escape"
                    ));
                }
                _ => {
                    return self
                        .fail("unterminated string: expected a closing `\"` on the same line");
                }
            }
        }
    }

    fn escape(&mut self) -> Step<char> {
        self.bump(); // `\`
        let Some(b) = self.peek() else {
            return self.fail("unterminated string: expected a closing `\"` on the same line");
        };
        let simple = match b {
            b'b' => Some('\u{8}'),
            b't' => Some('\t'),
            b'n' => Some('\n'),
            b'f' => Some('\u{c}'),
            b'r' => Some('\r'),
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            _ => None,
        };
        if let Some(c) = simple {
            self.bump();
            return Ok(c);
        }
        match b {
            b'u' => self.unicode_escape(4),
            b'U' => self.unicode_escape(8),
            _ if self.at_newline() => {
                self.fail("unterminated string: expected a closing `\"` on the same line")
            }
            _ => {
                let escaped = self.src.get(self.pos..).and_then(|r| r.chars().next());
                let shown = match escaped {
                    Some(c) if !c.is_control() => format!("\\{c}"),
                    _ => format!("\\ followed by {}", self.found()),
                };
                self.fail(format!(
                    "invalid escape {shown} in a string (valid: \\\" \\\\ \\b \\f \\n \\r \\t \\uXXXX \\UXXXXXXXX)"
                ))
            }
        }
    }

    fn unicode_escape(&mut self, digits: usize) -> Step<char> {
        let letter = if digits == 4 { 'u' } else { 'U' };
        self.bump(); // `u` or `U`
        let mut code: u32 = 0;
        for _ in 0..digits {
            let digit = self.peek().and_then(|b| (b as char).to_digit(16));
            let Some(digit) = digit else {
                return self.fail(format!("\\{letter} needs exactly {digits} hex digits"));
            };
            code = (code << 4) | digit;
            self.bump();
        }
        match char::from_u32(code) {
            Some(c) => Ok(c),
            None => self.fail(format!(
                "\\{letter}{code:0digits$X} is not a Unicode scalar value"
            )),
        }
    }

    fn literal_string(&mut self) -> Step<String> {
        self.bump(); // `'`
        if self.peek() == Some(b'\'') && self.peek_at(1) == Some(b'\'') {
            return self.fail("multi-line strings (''') are not supported");
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b != b'\'' && !is_forbidden_control(b))
        {
            self.pos += 1;
        }
        let text = self.src.get(start..self.pos).unwrap_or("").to_string();
        match self.peek() {
            Some(b'\'') => {
                self.bump();
                Ok(text)
            }
            Some(b) if !self.at_newline() => self.fail(format!(
                "control character U+{b:04X} in a literal string is not allowed"
            )),
            _ => self.fail("unterminated string: expected a closing `'` on the same line"),
        }
    }

    /// Blanks, line endings and comments between array elements. Returns whether a line
    /// ending was crossed.
    fn array_gap(&mut self) -> bool {
        let mut crossed = false;
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'#') => self.comment(),
                Some(b'\n' | b'\r') => {
                    if self.eat_newline() {
                        crossed = true;
                    } else {
                        self.record("carriage return not followed by a line feed");
                        self.bump();
                    }
                }
                _ => return crossed,
            }
        }
    }

    /// Whether the position (at the start of a line) holds `key =` or `[section]`: an
    /// array that reaches such a line was left unclosed, and reading resumes there so the
    /// statement is not lost.
    fn looks_like_statement(&self) -> bool {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let mut i = 0;
        let is_header = rest.first() == Some(&b'[');
        if is_header {
            i += 1;
            while matches!(rest.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
        }
        let key_start = i;
        while rest.get(i).is_some_and(|&b| is_bare_key_byte(b)) {
            i += 1;
        }
        if i == key_start {
            return false;
        }
        while matches!(rest.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if !is_header {
            return rest.get(i) == Some(&b'=');
        }
        if rest.get(i) != Some(&b']') {
            return false;
        }
        // `[x]` alone on its line is a header; `[x],` is a (refused) nested array.
        i += 1;
        while matches!(rest.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        matches!(rest.get(i), None | Some(b'\n' | b'\r' | b'#'))
    }

    fn array(&mut self) -> Step<Option<Value>> {
        let open_line = self.line;
        self.bump(); // `[`
        let mut strs: Vec<(usize, String)> = Vec::new();
        let mut ints: Vec<(usize, i64)> = Vec::new();
        let mut broken = false;
        let mut mix_reported = false;
        loop {
            let crossed = self.array_gap();
            match self.peek() {
                Some(b']') => {
                    self.bump();
                    break;
                }
                None => return self.unclosed_array(open_line),
                Some(_) if crossed && self.looks_like_statement() => {
                    return self.unclosed_array(open_line);
                }
                Some(_) => {}
            }
            let element_line = self.line;
            match self.array_element() {
                Ok(Value::Str(s)) => strs.push((element_line, s)),
                Ok(Value::Int(n)) => ints.push((element_line, n)),
                Ok(_) => {}
                Err(_) => {
                    broken = true;
                    self.skip_to_array_separator();
                    if !matches!(self.peek(), Some(b',' | b']')) {
                        // The bad element ran to the end of its line: the next line holds
                        // the next element, not a missing comma.
                        continue;
                    }
                }
            }
            if !strs.is_empty() && !ints.is_empty() && !mix_reported {
                mix_reported = true;
                broken = true;
                self.record("an array must hold only strings or only integers");
            }
            let crossed = self.array_gap();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    break;
                }
                None => return self.unclosed_array(open_line),
                Some(_) if crossed && self.looks_like_statement() => {
                    return self.unclosed_array(open_line);
                }
                Some(_) => {
                    let found = self.found();
                    self.record(format!(
                        "expected `,` or `]` after an array element, found {found}"
                    ));
                    broken = true;
                    self.skip_to_array_separator();
                    if self.peek() == Some(b',') {
                        self.bump();
                    }
                }
            }
        }
        Ok(match (broken, strs.is_empty(), ints.is_empty()) {
            (true, _, _) => None,
            (false, true, true) => Some(Value::EmptyArray),
            (false, false, _) => Some(Value::Strs(strs)),
            (false, true, false) => Some(Value::Ints(ints)),
        })
    }

    fn array_element(&mut self) -> Step<Value> {
        match self.peek() {
            Some(b'[') => {
                self.record("nested arrays are not supported");
                self.skip_nested_array();
                Err(Recover::SkipLine)
            }
            Some(b'{') => self.fail("inline tables ({...}) are not supported"),
            _ => match self.scalar()? {
                Value::Bool(_) => {
                    self.fail("an array may hold only strings or integers, not true/false")
                }
                value => Ok(value),
            },
        }
    }

    /// Moves past a nested array on the same line, so that its `]` does not close the
    /// outer one. Counts brackets instead of recursing: nesting depth costs no stack.
    fn skip_nested_array(&mut self) {
        let mut depth: usize = 0;
        while let Some(b) = self.peek() {
            if self.at_newline() {
                return;
            }
            self.pos += 1;
            match b {
                b'[' => depth += 1,
                b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Recovery inside an array: on to the next `,`, `]` or line ending, so the elements
    /// after a bad one are still checked.
    fn skip_to_array_separator(&mut self) {
        while let Some(b) = self.peek() {
            if b == b',' || b == b']' || self.at_newline() {
                return;
            }
            self.pos += 1;
        }
    }

    fn unclosed_array(&mut self, open_line: usize) -> Step<Option<Value>> {
        self.record_at(
            open_line,
            format!("the array opened on line {open_line} is not closed: expected `]`"),
        );
        Err(Recover::Resume)
    }
}

/// A TOML decimal integer: optional sign, no leading zeros, `_` only between digits,
/// within i64 (TOML 1.0, "Integer").
fn parse_integer(word: &str) -> Result<i64, String> {
    let shown = quote(word);
    let (negative, digits) = match word.as_bytes().first() {
        Some(b'-') => (true, word.get(1..).unwrap_or("")),
        Some(b'+') => (false, word.get(1..).unwrap_or("")),
        _ => (false, word),
    };
    let lower = digits.to_ascii_lowercase();
    if lower == "inf" || lower == "nan" {
        return Err(format!("{shown}: floating-point numbers are not supported"));
    }
    if !digits.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return Err(format!(
            "expected a value: a \"string\", an integer, true, false or an [array]; found {shown} (strings need quotes)"
        ));
    }
    if lower.starts_with("0x") || lower.starts_with("0o") || lower.starts_with("0b") {
        return Err(format!("{shown}: only decimal integers are supported"));
    }
    if digits.contains(':') || digits.contains('-') {
        return Err(format!("{shown}: dates and times are not supported"));
    }
    if digits.contains('.') || lower.contains('e') {
        return Err(format!("{shown}: floating-point numbers are not supported"));
    }
    let mut magnitude: u64 = 0;
    let mut after_underscore = true; // so that a leading `_` is refused
    let mut overflow = false;
    for b in digits.bytes() {
        match b {
            b'_' if !after_underscore => after_underscore = true,
            b'_' => return Err(format!("{shown}: `_` must stand between two digits")),
            b'0'..=b'9' => {
                after_underscore = false;
                match magnitude
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u64::from(b - b'0')))
                {
                    Some(m) => magnitude = m,
                    None => overflow = true,
                }
            }
            _ => return Err(format!("{shown} is not a valid integer")),
        }
    }
    if after_underscore {
        return Err(format!("{shown}: `_` must stand between two digits"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(format!("{shown}: leading zeros are not allowed"));
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    match value {
        Some(v) if !overflow => Ok(v),
        _ => Err(format!("{shown} does not fit in a 64-bit integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(usize, String, Value)> {
        let (items, errors) = parse(text);
        assert!(errors.is_empty(), "unexpected errors: {errors:?}");
        items
            .into_iter()
            .filter_map(|item| match item {
                Item::Entry { line, key, value } => Some((line, key, value)),
                Item::Section { .. } => None,
            })
            .collect()
    }

    fn value_of(text: &str) -> Value {
        let mut e = entries(text);
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0).2
    }

    fn errors(text: &str) -> Vec<(usize, String, String)> {
        parse(text)
            .1
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect()
    }

    fn single_error(text: &str) -> (usize, String, String) {
        let mut e = errors(text);
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    /// `text` (a line `a = …`) holds one error, at key `a`, whose message has `needle`.
    fn expect_value_error(text: &str, needle: &str) {
        let (line, key, message) = single_error(text);
        assert_eq!((line, key.as_str()), (1, "a"), "{text}");
        assert!(message.contains(needle), "{text}: {message}");
    }

    #[test]
    fn reads_sections_and_scalars_with_lines() {
        let (items, errors) = parse(
            "# top\n\na = \"x\" # trailing\nb = -12\n[sec]\n  c = true\nd=false\n[ other ]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            items,
            vec![
                Item::Entry {
                    line: 3,
                    key: "a".into(),
                    value: Value::Str("x".into())
                },
                Item::Entry {
                    line: 4,
                    key: "b".into(),
                    value: Value::Int(-12)
                },
                Item::Section {
                    line: 5,
                    name: Some("sec".into())
                },
                Item::Entry {
                    line: 6,
                    key: "c".into(),
                    value: Value::Bool(true)
                },
                Item::Entry {
                    line: 7,
                    key: "d".into(),
                    value: Value::Bool(false)
                },
                Item::Section {
                    line: 8,
                    name: Some("other".into())
                },
            ]
        );
    }

    #[test]
    fn integers_follow_toml() {
        assert_eq!(value_of("a = 1_048_576"), Value::Int(1_048_576));
        assert_eq!(value_of("a = +7"), Value::Int(7));
        assert_eq!(value_of("a = 0"), Value::Int(0));
        assert_eq!(value_of("a = -0"), Value::Int(0));
        assert_eq!(value_of("a = -9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(value_of("a = 9223372036854775807"), Value::Int(i64::MAX));
        for (text, needle) in [
            ("a = 9223372036854775808", "64-bit"),
            ("a = -9223372036854775809", "64-bit"),
            ("a = 99999999999999999999999999", "64-bit"),
            ("a = 012", "leading zeros"),
            ("a = 1__0", "between two digits"),
            ("a = 1_", "between two digits"),
            ("a = _1", "expected a value"),
            ("a = 0x1F", "decimal"),
            ("a = 1.5", "floating-point"),
            ("a = 1e3", "floating-point"),
            ("a = inf", "floating-point"),
            ("a = -nan", "floating-point"),
            ("a = 1979-05-27", "dates"),
            ("a = 07:32:00", "dates"),
            ("a = 12abc", "not a valid integer"),
            ("a = yes", "strings need quotes"),
            ("a = True", "strings need quotes"),
        ] {
            expect_value_error(text, needle);
        }
    }

    #[test]
    fn basic_string_escapes() {
        assert_eq!(
            value_of(r#"a = "q\" b\\ n\n t\t r\r \u00e9 \U0001F600 \b\f""#),
            Value::Str("q\" b\\ n\n t\t r\r é 😀 \u{8}\u{c}".into())
        );
        assert_eq!(value_of("a = \"\""), Value::Str(String::new()));
        assert_eq!(value_of("a = \"naïve ✓\""), Value::Str("naïve ✓".into()));
        for (text, needle) in [
            (r#"a = "\x41""#, "invalid escape \\x"),
            (r#"a = "\u00e""#, "exactly 4 hex digits"),
            (r#"a = "\U0001F60""#, "exactly 8 hex digits"),
            (r#"a = "\uD800""#, "not a Unicode scalar value"),
            (r#"a = "\U00110000""#, "not a Unicode scalar value"),
            ("a = \"abc", "unterminated"),
            ("a = \"abc\\", "unterminated"),
            ("a = \"a\u{1}b\"", "control character U+0001"),
            ("a = \"\"\"x\"\"\"", "multi-line"),
        ] {
            expect_value_error(text, needle);
        }
    }

    #[test]
    fn literal_strings_take_backslashes_verbatim() {
        assert_eq!(
            value_of(r"a = 'C:\path\n'"),
            Value::Str(r"C:\path\n".into())
        );
        assert_eq!(value_of("a = ''"), Value::Str(String::new()));
        assert!(single_error("a = 'abc").2.contains("unterminated"));
        assert!(single_error("a = '''x'''").2.contains("multi-line"));
    }

    #[test]
    fn arrays_span_lines_with_comments_and_trailing_comma() {
        let text = "a = [ # opening comment\n  \"x\", # first\n\n  'y',\n]\nb = [1, 2,3]\nc = []\nd = [\n]\n";
        let e = entries(text);
        assert_eq!(
            e,
            vec![
                (
                    1,
                    "a".into(),
                    Value::Strs(vec![(2, "x".into()), (4, "y".into())])
                ),
                (6, "b".into(), Value::Ints(vec![(6, 1), (6, 2), (6, 3)])),
                (7, "c".into(), Value::EmptyArray),
                (8, "d".into(), Value::EmptyArray),
            ]
        );
    }

    #[test]
    fn array_errors_point_at_the_element_and_keep_going() {
        let text = "[s]\na = [\n  \"ok\",\n  1.5,\n  \"unterminated\n  true,\n]\nb = 3\n";
        let (items, errs) = parse(text);
        let errs: Vec<_> = errs.into_iter().map(|e| (e.line, e.key)).collect();
        assert_eq!(
            errs,
            vec![
                (4, "s.a".to_string()),
                (5, "s.a".to_string()),
                (6, "s.a".to_string())
            ]
        );
        // The broken array yields no entry, but the line after it is read normally.
        assert_eq!(
            items.last(),
            Some(&Item::Entry {
                line: 8,
                key: "b".into(),
                value: Value::Int(3)
            })
        );
    }

    #[test]
    fn mixed_and_nested_arrays_are_refused() {
        assert!(
            single_error("a = [1, \"x\"]")
                .2
                .contains("only strings or only integers")
        );
        assert!(single_error("a = [[1]]").2.contains("nested arrays"));
        assert!(
            single_error("a = [\"x\", [[1], [2]], \"y\"]")
                .2
                .contains("nested arrays")
        );
        assert!(single_error("a = [true]").2.contains("not true/false"));
        assert!(single_error("a = [1 2]").2.contains("expected `,` or `]`"));
    }

    #[test]
    fn unclosed_array_resumes_at_the_next_statement() {
        let text = "a = [\"x\",\n\"y\"\nb = 1\n[sec]\n";
        let (items, errs) = parse(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 1);
        assert!(
            errs[0].message.contains("not closed"),
            "{}",
            errs[0].message
        );
        assert_eq!(
            items,
            vec![
                Item::Entry {
                    line: 3,
                    key: "b".into(),
                    value: Value::Int(1)
                },
                Item::Section {
                    line: 4,
                    name: Some("sec".into())
                },
            ]
        );
        // A nested array on its own line is not mistaken for a section header.
        let (line, _, message) = single_error("a = [\n  [1],\n]\n");
        assert_eq!(line, 2);
        assert!(message.contains("nested arrays"), "{message}");
        let (line, _, message) = single_error("a = [1,\n[sec] # next\n");
        assert_eq!(line, 1);
        assert!(message.contains("not closed"), "{message}");
        let (line, _, message) = single_error("a = [1,\n2,\n");
        assert_eq!(line, 1);
        assert!(message.contains("not closed"));
    }

    #[test]
    fn unsupported_toml_is_named() {
        for (text, line, needle) in [
            ("[[srv]]\n", 1, "arrays of tables"),
            ("\n[a.b]\n", 2, "nested sections"),
            ("[\"a\"]\n", 1, "quoted section names"),
            ("[]\n", 1, "expected a section name"),
            ("[a\n", 1, "expected `]`"),
            ("a.b = 1\n", 1, "dotted keys"),
            ("\"a\" = 1\n", 1, "quoted keys"),
            ("a = {x = 1}\n", 1, "inline tables"),
            ("a 1\n", 1, "expected `=`"),
            ("a =\n", 1, "expected a value"),
            ("a = # nothing\n", 1, "expected a value"),
            ("a = 1 b\n", 1, "expected the end of the line, found `b`"),
            ("[s] x\n", 1, "expected the end of the line"),
            ("= 1\n", 1, "found `=`"),
            ("a = 1\r2\n", 1, "carriage return"),
            ("# bell \u{7}\n", 1, "control character U+0007"),
        ] {
            let (l, _, message) = single_error(text);
            assert_eq!(l, line, "{text:?}");
            assert!(message.contains(needle), "{text:?}: {message}");
        }
    }

    #[test]
    fn crlf_and_bom() {
        let text = "\u{feff}# c\r\na = \"x\"\r\n[s]\r\nb = [\r\n  1,\r\n  2\r\n]\r\n";
        assert_eq!(
            entries(text),
            vec![
                (2, "a".into(), Value::Str("x".into())),
                (4, "b".into(), Value::Ints(vec![(5, 1), (6, 2)])),
            ]
        );
        // A CRLF ends an unterminated string like an LF, rather than being a control char.
        assert!(single_error("a = \"x\r\n").2.contains("unterminated"));
    }

    #[test]
    fn one_error_per_bad_line_and_good_lines_still_read() {
        let text = "a = 1\n!!!\nb = \nc = 2\n[x\nd = 3\n";
        let (items, errs) = parse(text);
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        let keys: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                Item::Entry { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, vec!["a", "c", "d"]);
    }

    #[test]
    fn long_garbage_is_quoted_briefly() {
        let long = "z".repeat(1000);
        let (_, _, message) = single_error(&format!("a = 1{long}"));
        assert!(message.len() < 200, "{message}");
    }
}
