//! JSON bytes -> Python objects, built directly while parsing (no intermediate tree).
//!
//! Accepts what `json.loads` accepts for UTF-8 input: strict JSON plus `NaN`,
//! `Infinity` and `-Infinity`; ints of any size stay exact; duplicate keys keep the
//! last value; `\ud800`-style escapes of lone surrogates give Python strs holding them.
//! With a projection, only the requested top-level keys are built; the other values are
//! checked but never turned into Python objects.

use std::borrow::Cow;
use std::collections::HashSet;

use pyo3::exceptions::{PyUnicodeDecodeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString};

use super::{scan, MAX_DEPTH};

/// Why stored bytes could not be decoded; the caller adds which key it was.
#[derive(Debug)]
pub enum DecodeError {
    /// Not JSON (or not UTF-8); the message says what and where.
    Invalid(String),
    /// A Python call failed while building objects (e.g. memory).
    Python(PyErr),
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Top-level keys to keep when reading with `fields=...`.
pub type Fields = HashSet<Box<str>>;

/// Decodes one JSON document.
pub fn decode<'py>(py: Python<'py>, bytes: &[u8]) -> Result<Bound<'py, PyAny>> {
    let mut parser = Parser::new(py, bytes);
    let value = parser.value(0)?;
    parser.end()?;
    Ok(value)
}

/// Decodes one JSON document keeping only `fields` of a top-level object.
///
/// Mirrors nano-graphrag's `JsonKVStorage.get_by_ids(ids, fields)`: a falsy stored
/// value (`{}`, `[]`, `""`, `0`, `false`, `null`) gives `None`. A truthy value that is
/// not an object cannot be projected and is returned whole.
pub fn decode_projected<'py>(
    py: Python<'py>,
    bytes: &[u8],
    fields: &Fields,
) -> Result<Option<Bound<'py, PyAny>>> {
    let mut parser = Parser::new(py, bytes);
    parser.skip_ws();
    if parser.peek() != Some(b'{') {
        let value = parser.value(0)?;
        parser.end()?;
        let truthy = value.is_truthy().map_err(DecodeError::Python)?;
        return Ok(truthy.then_some(value));
    }
    let (dict, was_empty) = parser.object(0, Some(fields))?;
    parser.end()?;
    Ok((!was_empty).then(|| dict.into_any()))
}

/// Parses bytes, not `str`: the text is checked to be UTF-8 once, string by string, by
/// whoever reads it (Python's str constructor for values; see [`Text`]). Everything
/// outside strings must be ASCII JSON syntax, which the parser checks byte by byte.
struct Parser<'py, 'a> {
    py: Python<'py>,
    bytes: &'a [u8],
    pos: usize,
}

impl<'py, 'a> Parser<'py, 'a> {
    fn new(py: Python<'py>, bytes: &'a [u8]) -> Self {
        Parser { py, bytes, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn end(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos != self.bytes.len() {
            return Err(self.invalid("extra data"));
        }
        Ok(())
    }

    #[cold]
    fn invalid(&self, what: &str) -> DecodeError {
        DecodeError::Invalid(format!("{what} at byte {}", self.pos))
    }

    fn expect(&mut self, literal: &[u8]) -> Result<()> {
        if self.bytes[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(self.invalid("expecting value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Bound<'py, PyAny>> {
        self.skip_ws();
        let py = self.py;
        match self.peek() {
            Some(b'"') => {
                let at = self.pos;
                Ok(self.string()?.into_py(py, at)?.into_any())
            }
            Some(b'{') => Ok(self.object(depth, None)?.0.into_any()),
            Some(b'[') => self.array(depth),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self
                .expect(b"true")
                .map(|_| true.into_pyobject(py).unwrap().to_owned().into_any()),
            Some(b'f') => self
                .expect(b"false")
                .map(|_| false.into_pyobject(py).unwrap().to_owned().into_any()),
            Some(b'n') => self.expect(b"null").map(|_| py.None().into_bound(py)),
            Some(b'N') => self
                .expect(b"NaN")
                .map(|_| PyFloat::new(py, f64::NAN).into_any()),
            Some(b'I') => self
                .expect(b"Infinity")
                .map(|_| PyFloat::new(py, f64::INFINITY).into_any()),
            _ => Err(self.invalid("expecting value")),
        }
    }

    /// Parses an object; with `keep`, only those keys are built. Returns the dict and
    /// whether the JSON object itself was empty.
    fn object(
        &mut self,
        depth: usize,
        keep: Option<&Fields>,
    ) -> Result<(Bound<'py, PyDict>, bool)> {
        let depth = self.enter(depth)?;
        let dict = PyDict::new(self.py);
        let empty = self.items(b'}', |p| {
            let at = p.pos;
            let key = p.member_key()?;
            // A key with lone surrogates never equals a field (fields are UTF-8).
            if keep.is_some_and(|fields| !key.as_str().is_some_and(|k| fields.contains(k))) {
                return p.skip_value(depth);
            }
            let value = p.value(depth)?;
            dict.set_item(key.into_py(p.py, at)?, value)
                .map_err(DecodeError::Python)
        })?;
        Ok((dict, empty))
    }

    fn array(&mut self, depth: usize) -> Result<Bound<'py, PyAny>> {
        let depth = self.enter(depth)?;
        let mut items = Vec::new();
        self.items(b']', |p| {
            items.push(p.value(depth)?);
            Ok(())
        })?;
        PyList::new(self.py, items)
            .map(Bound::into_any)
            .map_err(DecodeError::Python)
    }

    /// Walks the members of an object or array, from its opening bracket to `close`,
    /// calling `member` for each; returns whether there were none.
    fn items(
        &mut self,
        close: u8,
        mut member: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<bool> {
        self.pos += 1; // the opening bracket
        self.skip_ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        loop {
            member(self)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(false);
                }
                _ => return Err(self.invalid("expecting ',' delimiter")),
            }
        }
    }

    /// Parses `"key":` inside an object; the key is checked to be UTF-8 (keys are short,
    /// and a projection compares them with the fields).
    fn member_key(&mut self) -> Result<Text<'a>> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(self.invalid("expecting property name in double quotes"));
        }
        let at = self.pos;
        let key = self.string()?.checked().map_err(|_| self.not_utf8(at))?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.invalid("expecting ':' delimiter"));
        }
        self.pos += 1;
        Ok(key)
    }

    fn enter(&self, depth: usize) -> Result<usize> {
        if depth >= MAX_DEPTH {
            return Err(self.invalid("nesting too deep"));
        }
        Ok(depth + 1)
    }

    /// Scans a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`, or `-Infinity`.
    /// Returns its text and whether it is an integer.
    fn number_text(&mut self) -> Result<Option<(&'a str, bool)>> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
            if self.peek() == Some(b'I') {
                self.expect(b"Infinity")?;
                return Ok(None);
            }
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.invalid("expecting value")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.invalid("expecting digits after '.'"));
            }
            self.digits();
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.invalid("expecting exponent digits"));
            }
            self.digits();
            integer = false;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).expect("ASCII digits");
        Ok(Some((text, integer)))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn number(&mut self) -> Result<Bound<'py, PyAny>> {
        let py = self.py;
        let Some((text, integer)) = self.number_text()? else {
            return Ok(PyFloat::new(py, f64::NEG_INFINITY).into_any());
        };
        if !integer {
            // Rust's parser rounds correctly, like Python's float().
            let v: f64 = text.parse().map_err(|_| self.invalid("bad number"))?;
            return Ok(PyFloat::new(py, v).into_any());
        }
        match text.parse::<i64>() {
            Ok(v) => Ok(v.into_pyobject(py).unwrap().into_any()),
            Err(_) => big_int(py, text),
        }
    }

    /// Parses a string literal; borrows from the input when it has no escapes.
    fn string(&mut self) -> Result<Text<'a>> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut owned: Option<Buf> = None;
        loop {
            let plain = scan::plain_prefix(&self.bytes[self.pos..]);
            let run = &self.bytes[self.pos..self.pos + plain];
            self.pos += plain;
            match self.peek() {
                None => return Err(self.invalid("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return match owned {
                        None => Ok(Text::Raw(&self.bytes[start..self.pos - 1])),
                        Some(mut s) => {
                            s.push_run(run).map_err(|_| self.not_utf8(start - 1))?;
                            Ok(s.into_text())
                        }
                    };
                }
                Some(b'\\') => {
                    let s = owned.get_or_insert_with(|| Buf::Utf8(String::new()));
                    s.push_run(run).map_err(|_| self.not_utf8(start - 1))?;
                    self.pos += 1; // backslash
                    self.escape(s)?;
                }
                Some(_) => return Err(self.invalid("invalid control character")),
            }
        }
    }

    #[cold]
    fn not_utf8(&self, at: usize) -> DecodeError {
        DecodeError::Invalid(format!("not UTF-8: the string at byte {at}"))
    }

    fn escape(&mut self, out: &mut Buf) -> Result<()> {
        let c = self
            .peek()
            .ok_or_else(|| self.invalid("unterminated string"))?;
        self.pos += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(out),
            _ => return Err(self.invalid("invalid \\escape")),
        };
        out.push(ch);
        Ok(())
    }

    fn unicode_escape(&mut self, out: &mut Buf) -> Result<()> {
        let unit = self.hex4()?;
        if (0xD800..=0xDBFF).contains(&unit) && self.bytes[self.pos..].starts_with(b"\\u") {
            // As in json.loads: a high surrogate joins an escaped low one right after it;
            // any other escape there is read on its own, and the high one stays lone.
            let next = self.pos;
            self.pos += 2;
            let low = self.hex4()?;
            if (0xDC00..=0xDFFF).contains(&low) {
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                out.push(char::from_u32(code).ok_or_else(|| self.invalid("invalid \\u escape"))?);
                return Ok(());
            }
            self.pos = next;
        }
        match char::from_u32(unit) {
            Some(ch) => out.push(ch),
            None => out.push_surrogate(unit), // U+D800..U+DFFF, lone
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32> {
        let hex = self
            .bytes
            .get(self.pos..self.pos + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.invalid("invalid \\uXXXX escape"))?;
        self.pos += 4;
        let hex = std::str::from_utf8(hex).expect("ASCII hex digits");
        Ok(u32::from_str_radix(hex, 16).expect("checked hex digits"))
    }

    /// Validates a number a projection drops. An integer too long for 64 bits still goes
    /// through Python's `int()`: past its digit limit json.loads refuses the whole
    /// document, so the projection must refuse it too.
    fn skip_number(&mut self) -> Result<()> {
        if let Some((text, true)) = self.number_text()? {
            if text.parse::<i64>().is_err() {
                big_int(self.py, text)?;
            }
        }
        Ok(())
    }

    /// Validates one value without building it (for keys a projection drops).
    fn skip_value(&mut self, depth: usize) -> Result<()> {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => {
                // Not built, but json.loads would refuse the document all the same.
                let at = self.pos;
                let text = self.string()?;
                text.checked().map(drop).map_err(|_| self.not_utf8(at))
            }
            Some(b'{') => {
                let depth = self.enter(depth)?;
                self.items(b'}', |p| {
                    p.member_key()?;
                    p.skip_value(depth)
                })
                .map(drop)
            }
            Some(b'[') => {
                let depth = self.enter(depth)?;
                self.items(b']', |p| p.skip_value(depth)).map(drop)
            }
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            Some(b't') => self.expect(b"true"),
            Some(b'f') => self.expect(b"false"),
            Some(b'n') => self.expect(b"null"),
            Some(b'N') => self.expect(b"NaN"),
            Some(b'I') => self.expect(b"Infinity"),
            _ => Err(self.invalid("expecting value")),
        }
    }
}

/// Integers past 64 bits: Python parses the digits, so they stay exact. Past Python's
/// digit limit (`sys.get_int_max_str_digits()`, 4300 by default) `int()` refuses, as
/// `json.loads` does; for a stored value that means it is not JSON Python can read.
#[cold]
fn big_int<'py>(py: Python<'py>, digits: &str) -> Result<Bound<'py, PyAny>> {
    py.get_type::<pyo3::types::PyInt>()
        .call1((digits,))
        .map_err(|e| {
            if e.is_instance_of::<PyValueError>(py) {
                DecodeError::Invalid(format!("integer of {} digits: {e}", digits.len()))
            } else {
                DecodeError::Python(e)
            }
        })
}

/// A decoded JSON string: the input's own bytes when it has no escapes (not yet checked
/// to be UTF-8: making the Python str checks them, in the same pass that builds it),
/// UTF-8 built from a string with escapes, or, in the rare document with `\ud800`-style
/// escapes of lone surrogates, a string a Python str can hold but a Rust `str` cannot.
enum Text<'a> {
    Raw(&'a [u8]),
    Utf8(Cow<'a, str>),
    /// In Python's `surrogatepass` UTF-8: each lone surrogate as three bytes.
    Surrogates(Vec<u8>),
}

impl<'a> Text<'a> {
    /// The same text with raw bytes checked to be UTF-8.
    fn checked(self) -> std::result::Result<Text<'a>, std::str::Utf8Error> {
        Ok(match self {
            Text::Raw(bytes) => Text::Utf8(Cow::Borrowed(std::str::from_utf8(bytes)?)),
            other => other,
        })
    }

    /// The text as a Rust `str`; `None` when it holds lone surrogates or is unchecked.
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Utf8(s) => Some(s),
            Text::Raw(_) | Text::Surrogates(_) => None,
        }
    }

    /// The Python str; `at` (the string's offset) names it if it is not UTF-8.
    fn into_py<'py>(self, py: Python<'py>, at: usize) -> Result<Bound<'py, PyString>> {
        match self {
            Text::Raw(bytes) => PyString::from_bytes(py, bytes).map_err(|e| {
                if e.is_instance_of::<PyUnicodeDecodeError>(py) {
                    DecodeError::Invalid(format!("not UTF-8: the string at byte {at}"))
                } else {
                    DecodeError::Python(e)
                }
            }),
            Text::Utf8(s) => Ok(PyString::new(py, &s)),
            Text::Surrogates(bytes) => surrogates_to_py(py, &bytes),
        }
    }
}

#[cold]
fn surrogates_to_py<'py>(py: Python<'py>, bytes: &[u8]) -> Result<Bound<'py, PyString>> {
    PyString::from_encoded_object(
        PyBytes::new(py, bytes).as_any(),
        Some(c"utf-8"),
        Some(c"surrogatepass"),
    )
    .map_err(DecodeError::Python)
}

/// Where a string with escapes is built: a `String` until a lone surrogate shows up.
enum Buf {
    Utf8(String),
    Surrogates(Vec<u8>),
}

impl Buf {
    /// Appends a run of the input between escapes, checked to be UTF-8 (a raw encoded
    /// surrogate is not, even where `surrogatepass` would take it).
    fn push_run(&mut self, run: &[u8]) -> std::result::Result<(), std::str::Utf8Error> {
        let run = std::str::from_utf8(run)?;
        match self {
            Buf::Utf8(text) => text.push_str(run),
            Buf::Surrogates(bytes) => bytes.extend_from_slice(run.as_bytes()),
        }
        Ok(())
    }

    fn push(&mut self, ch: char) {
        match self {
            Buf::Utf8(text) => text.push(ch),
            Buf::Surrogates(bytes) => {
                bytes.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes())
            }
        }
    }

    /// Appends the surrogate `unit` (U+D800..U+DFFF) as `surrogatepass` UTF-8 does.
    #[cold]
    fn push_surrogate(&mut self, unit: u32) {
        if let Buf::Utf8(text) = self {
            *self = Buf::Surrogates(std::mem::take(text).into_bytes());
        }
        if let Buf::Surrogates(bytes) = self {
            bytes.extend_from_slice(&[
                0xED,
                0x80 | ((unit >> 6) & 0x3F) as u8,
                0x80 | (unit & 0x3F) as u8,
            ]);
        }
    }

    fn into_text<'a>(self) -> Text<'a> {
        match self {
            Buf::Utf8(text) => Text::Utf8(Cow::Owned(text)),
            Buf::Surrogates(bytes) => Text::Surrogates(bytes),
        }
    }
}
