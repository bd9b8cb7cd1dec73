//! Python object -> JSON bytes, written straight into a buffer (no intermediate tree).
//!
//! The output is byte-for-byte what
//! `json.dumps(value, ensure_ascii=False, separators=(",", ":"))` produces, so records
//! written here, by nano-graphrag's JSON backend or by redis-py with `json.dumps` are
//! interchangeable, and a record read back equals `json.loads(json.dumps(record))`.
//! That includes Python's choices: tuples become lists, non-str dict keys become
//! strings, and NaN / Infinity are written as `NaN` / `Infinity` (not strict JSON, but
//! what `json.dumps` writes and `json.loads` reads). A str with lone surrogates, which
//! has no UTF-8 form, has them written as `\udXXX` escapes, as
//! `json.dumps(ensure_ascii=True)` writes them; the rest of it is unchanged.

use std::io::Write;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::{scan, MAX_DEPTH};

/// Why a value could not be encoded; the caller adds which record it was.
#[derive(Debug)]
pub struct EncodeError(pub String);

type Result<T> = std::result::Result<T, EncodeError>;

/// Appends the JSON text of `obj` to `out`.
pub fn encode(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<()> {
    Encoder { out }.value(obj, 0)
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn value(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> Result<()> {
        // Exact types first, in the order records use them most.
        if let Ok(s) = obj.cast_exact::<PyString>() {
            return self.string(s);
        }
        if let Ok(d) = obj.cast_exact::<PyDict>() {
            return self.dict(d, depth);
        }
        if let Ok(i) = obj.cast_exact::<PyInt>() {
            return self.int(i);
        }
        if let Ok(l) = obj.cast_exact::<PyList>() {
            return self.sequence(l.iter(), depth);
        }
        if let Ok(f) = obj.cast_exact::<PyFloat>() {
            self.float(f.value());
            return Ok(());
        }
        if obj.is_none() {
            self.out.extend_from_slice(b"null");
            return Ok(());
        }
        if let Ok(b) = obj.cast_exact::<PyBool>() {
            self.out
                .extend_from_slice(if b.is_true() { b"true" } else { b"false" });
            return Ok(());
        }
        self.subclass_or_reject(obj, depth)
    }

    /// Subclasses of the JSON types (str enums, IntEnum, OrderedDict, tuples, ...)
    /// encode as their base type, as `json.dumps` does; everything else is refused.
    #[cold]
    fn subclass_or_reject(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> Result<()> {
        if let Ok(s) = obj.cast::<PyString>() {
            return self.string(s);
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return self.dict(d, depth);
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return self.sequence(t.iter(), depth);
        }
        if let Ok(l) = obj.cast::<PyList>() {
            return self.sequence(l.iter(), depth);
        }
        if let Ok(i) = obj.cast::<PyInt>() {
            return self.int(i);
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            self.float(f.value());
            return Ok(());
        }
        Err(EncodeError(format!(
            "Object of type {} is not JSON serializable",
            type_name(obj)
        )))
    }

    fn string(&mut self, s: &Bound<'_, PyString>) -> Result<()> {
        match s.to_str() {
            Ok(text) => {
                write_string(self.out, text);
                Ok(())
            }
            Err(_) => self.string_with_surrogates(s),
        }
    }

    /// A Python str may hold lone surrogates (U+D800..U+DFFF, e.g. from `surrogateescape`
    /// decoding), which UTF-8 cannot. Python's `surrogatepass` UTF-8 gives each as three
    /// bytes; those become `\udXXX` escapes, everything else is written as usual.
    #[cold]
    fn string_with_surrogates(&mut self, s: &Bound<'_, PyString>) -> Result<()> {
        // `str.encode` itself: a subclass may override `encode`, json.dumps never calls it.
        let encoded = s
            .py()
            .get_type::<PyString>()
            .call_method1("encode", (s, "utf-8", "surrogatepass"))
            .map_err(|e| EncodeError(format!("str cannot be written: {e}")))?;
        let bytes = encoded
            .cast::<PyBytes>()
            .map_err(|e| EncodeError(format!("str cannot be written: {e}")))?
            .as_bytes();
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        let mut start = 0;
        let mut from = 0;
        while let Some(offset) = memchr::memchr(0xED, &bytes[from..]) {
            let at = from + offset;
            // 0xED leads U+D000..U+DFFF; a second byte of 0xA0 or more means a surrogate.
            let (Some(&b1 @ 0xA0..=0xBF), Some(&b2)) = (bytes.get(at + 1), bytes.get(at + 2))
            else {
                from = at + 1;
                continue;
            };
            let run = std::str::from_utf8(&bytes[start..at])
                .map_err(|e| EncodeError(format!("str cannot be written: {e}")))?;
            write_escaped(self.out, run);
            let unit = 0xD000 | (u16::from(b1 & 0x3F) << 6) | u16::from(b2 & 0x3F);
            self.out.extend_from_slice(b"\\u");
            for shift in [12, 8, 4, 0] {
                self.out.push(HEX[usize::from((unit >> shift) & 0xF)]);
            }
            start = at + 3;
            from = start;
        }
        let run = std::str::from_utf8(&bytes[start..])
            .map_err(|e| EncodeError(format!("str cannot be written: {e}")))?;
        write_escaped(self.out, run);
        self.out.push(b'"');
        Ok(())
    }

    fn int(&mut self, i: &Bound<'_, PyInt>) -> Result<()> {
        if let Ok(v) = i.extract::<i64>() {
            // Writing into a Vec cannot fail.
            let _ = write!(self.out, "{v}");
            return Ok(());
        }
        self.big_int(i)
    }

    /// Ints beyond 64 bits stay exact: Python prints them.
    #[cold]
    fn big_int(&mut self, i: &Bound<'_, PyAny>) -> Result<()> {
        let py = i.py();
        let text = py
            .get_type::<PyInt>()
            .call_method1("__repr__", (i,))
            .and_then(|r| r.extract::<String>())
            .map_err(|e| EncodeError(format!("int cannot be written: {e}")))?;
        self.out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn float(&mut self, v: f64) {
        write_float(self.out, v);
    }

    fn sequence<'py>(
        &mut self,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
        depth: usize,
    ) -> Result<()> {
        let depth = enter(depth)?;
        self.out.push(b'[');
        let mut first = true;
        for item in items {
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.value(&item, depth)?;
        }
        self.out.push(b']');
        Ok(())
    }

    fn dict(&mut self, d: &Bound<'_, PyDict>, depth: usize) -> Result<()> {
        let depth = enter(depth)?;
        self.out.push(b'{');
        let mut first = true;
        for (key, value) in d.iter() {
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.key(&key)?;
            self.out.push(b':');
            self.value(&value, depth)?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// JSON object keys are strings; like `json.dumps`, other scalar keys are converted.
    fn key(&mut self, key: &Bound<'_, PyAny>) -> Result<()> {
        if let Ok(s) = key.cast::<PyString>() {
            return self.string(s);
        }
        self.out.push(b'"');
        if let Ok(f) = key.cast::<PyFloat>() {
            write_float(self.out, f.value());
        } else if let Ok(b) = key.cast::<PyBool>() {
            self.out
                .extend_from_slice(if b.is_true() { b"true" } else { b"false" });
        } else if key.is_none() {
            self.out.extend_from_slice(b"null");
        } else if let Ok(i) = key.cast::<PyInt>() {
            self.int(i)?;
        } else {
            return Err(EncodeError(format!(
                "keys must be str, int, float, bool or None, not {}",
                type_name(key)
            )));
        }
        self.out.push(b'"');
        Ok(())
    }
}

fn enter(depth: usize) -> Result<usize> {
    if depth >= MAX_DEPTH {
        return Err(EncodeError(format!(
            "nesting deeper than {MAX_DEPTH} levels (or a circular reference)"
        )));
    }
    Ok(depth + 1)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes a JSON string the way `json.dumps(..., ensure_ascii=False)` does: only `"`,
/// `\` and control characters are escaped; everything else is copied as UTF-8.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    write_escaped(out, text);
    out.push(b'"');
}

/// The inside of a JSON string literal: `text` with `"`, `\` and controls escaped.
#[inline]
fn write_escaped(out: &mut Vec<u8>, text: &str) {
    let mut rest = text.as_bytes();
    loop {
        let plain = scan::plain_prefix(rest);
        out.extend_from_slice(&rest[..plain]);
        let Some(&b) = rest.get(plain) else {
            return;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        rest = &rest[plain + 1..];
    }
}

/// Writes `v` as Python's `repr(float)` does (shortest round-trip digits, exponent
/// form when the decimal point is before position -4 or after 16), NaN and the
/// infinities as `json.dumps` writes them.
pub fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let sci = shortest_digits(v.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.as_bytes();
    // Python's `decpt`: the value is 0.DIGITS x 10^decpt.
    let decpt = exponent + 1;
    let n = digits.len() as i32;
    if v == 0.0 {
        out.extend_from_slice(b"0.0");
    } else if decpt <= -4 || decpt > 16 {
        out.push(digits[0]);
        if n > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let e = decpt - 1;
        out.push(b'e');
        out.push(if e < 0 { b'-' } else { b'+' });
        let e = e.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(e.to_string().as_bytes());
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
        out.extend_from_slice(digits);
    } else if decpt < n {
        out.extend_from_slice(&digits[..decpt as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[decpt as usize..]);
    } else {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', (decpt - n) as usize));
        out.extend_from_slice(b".0");
    }
}

/// The shortest digits that read back as `v` (finite, not negative), in `{:e}` form
/// ("1.2345e-7"), picked as Python's `repr` picks them: of two candidates equally near
/// `v`, the even one. Rust's `{:e}` is shortest too, but rounds such a tie up
/// (70368744177664.625 -> "7.036874417766463e13", Python "...62"), so its last digit is
/// odd then. `{:.N$e}` rounds exactly with ties to even; when it differs and still reads
/// back as `v`, it is Python's choice.
fn shortest_digits(v: f64) -> String {
    let sci = format!("{v:e}");
    let mantissa = sci.split('e').next().unwrap_or_default();
    // In a tie the candidates lie half a unit of their last digit from `v`, within half
    // an ulp (<= v * 2^-53): that takes 16 digits or more, so short reprs (0.1, 2.5)
    // never pay for the second formatting.
    let digits = mantissa.len() - usize::from(mantissa.contains('.'));
    if digits < 16 || mantissa.bytes().last().is_some_and(|d| d % 2 == 0) {
        return sci;
    }
    let precision = digits - 1; // after the point
    let exact = format!("{v:.precision$e}");
    if exact != sci && exact.parse::<f64>() == Ok(v) {
        return exact;
    }
    sci
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float_text(v: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (123456.789, "123456.789"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-2.5, "-2.5"),
            // 70368744177664.625 exactly: two shortest candidates equally near, Python
            // takes the even one.
            (f64::from_bits(0x42d0_0000_0000_0028), "70368744177664.62"),
            (-f64::from_bits(0x42d0_0000_0000_0028), "-70368744177664.62"),
        ];
        for (v, want) in cases {
            assert_eq!(float_text(v), want, "{v:?}");
        }
    }

    /// Python's `repr` decides: random bit patterns, and values with a few binary fraction
    /// digits, whose exact decimal expansion is short enough for two shortest candidates
    /// to be equally near (the ties Rust's `{:e}` rounds the other way).
    #[test]
    fn floats_match_python_repr_at_random() {
        Python::attach(|py| {
            let repr = py.get_type::<PyFloat>().getattr("__repr__").unwrap();
            let mut rng = fastrand::Rng::with_seed(20240607);
            for i in 0..200_000 {
                let v = if i % 2 == 0 {
                    f64::from_bits(rng.u64(..))
                } else {
                    let mantissa = rng.u64(1 << 40..1 << 53) as f64;
                    mantissa * 2f64.powi(rng.i32(-12..12))
                };
                if !v.is_finite() {
                    continue;
                }
                let want: String = repr.call1((v,)).unwrap().extract().unwrap();
                assert_eq!(float_text(v), want, "{:?}", v.to_bits());
            }
        });
    }

    #[test]
    fn strings_escape_like_json_dumps() {
        let mut out = Vec::new();
        write_string(&mut out, "a\"b\\c\nd\u{1}é\u{2028}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é\u{2028}\""
        );
    }
}
