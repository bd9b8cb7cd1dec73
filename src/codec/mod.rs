//! Records as UTF-8 JSON: encoding from and decoding to Python objects.

mod decode;
mod encode;
mod scan;

pub use decode::Fields;
pub use encode::{write_float, write_string};

use pyo3::prelude::*;

use crate::errors::Error;

/// Deepest nesting accepted either way; deeper input is almost surely a cycle.
pub const MAX_DEPTH: usize = 1024;

/// Encodes one record into a buffer of `capacity` bytes to start with (records of a
/// batch are alike: the previous one's size saves the regrowing); the error names the
/// record's id.
pub fn encode_record(
    id: &[u8],
    value: &Bound<'_, PyAny>,
    capacity: usize,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(capacity.max(128));
    encode::encode(value, &mut out).map_err(|e| {
        let id = String::from_utf8_lossy(id);
        Error::Serialization(format!("record {id:?}: {}", e.0))
    })?;
    Ok(out)
}

/// Decodes one stored value, keeping only `fields` when given (see
/// [`decode::decode_projected`] for the `None` it can return then).
pub fn decode_record<'py>(
    py: Python<'py>,
    id: &[u8],
    bytes: &[u8],
    fields: Option<&Fields>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let result = match fields {
        None => decode::decode(py, bytes).map(Some),
        Some(fields) => decode::decode_projected(py, bytes, fields),
    };
    match result {
        Ok(value) => Ok(value),
        Err(decode::DecodeError::Python(err)) => Err(err),
        Err(decode::DecodeError::Invalid(why)) => Err(Error::Serialization(format!(
            "stored value of {:?} is not valid JSON: {why}",
            String::from_utf8_lossy(id)
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyDict;

    /// Decodes with the codec and with Python's `json.loads`; they must agree.
    fn agrees(py: Python<'_>, text: &str) {
        let ours = decode_record(py, b"t", text.as_bytes(), None)
            .unwrap()
            .unwrap();
        let theirs = py
            .import("json")
            .unwrap()
            .call_method1("loads", (text,))
            .unwrap();
        assert!(ours.eq(&theirs).unwrap(), "{text}: {ours:?} != {theirs:?}");
        assert_eq!(
            ours.get_type().name().unwrap().to_string(),
            theirs.get_type().name().unwrap().to_string()
        );
    }

    #[test]
    fn decodes_like_json_loads() {
        Python::attach(|py| {
            for text in [
                r#"{"a": [1, -2, 3.5, -0.0, 1e300, true, false, null], "b": {"c": "d"}}"#,
                r#""esc \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00""#,
                "123456789012345678901234567890",
                "-9223372036854775809",
                "9223372036854775807",
                " [ ] ",
                "{}",
                r#"{"dup": 1, "dup": 2}"#,
                "\"ünïcödé 😀\"",
                "0",
                "-0",
                "1E5",
                // Lone surrogates, and escapes that only look like pairs.
                r#""\ud800""#,
                r#""a\udc00b\udbff""#,
                r#""\ud800\ud800\udc00""#,
                r#""\ud800\u0041\ud83d""#,
                r#""\ude00\ud83d""#,
                r#"{"\ud800 k": ["\udfff", "\n\ud800é"]}"#,
            ] {
                agrees(py, text);
            }
        });
    }

    #[test]
    fn rejects_what_json_loads_rejects() {
        Python::attach(|py| {
            for text in [
                "",
                "01",
                "1.",
                ".5",
                "[1,]",
                "{\"a\" 1}",
                "\"\u{1}\"",
                "tru",
                "[1] 2",
                "\"open",
                "{'a': 1}",
                "+1",
                r#""\ud800\u12""#,
                r#""\ud800\x""#,
            ] {
                let err = decode_record(py, b"bad", text.as_bytes(), None).unwrap_err();
                assert!(err.to_string().contains("\"bad\""), "{text}: {err}");
            }
        });
    }

    #[test]
    fn projection_builds_only_requested_fields() {
        Python::attach(|py| {
            let fields: Fields = ["a", "c"].into_iter().map(Into::into).collect();
            let got = decode_record(
                py,
                b"t",
                br#"{"a": 1, "b": {"x": [1, 2]}, "c": "z"}"#,
                Some(&fields),
            )
            .unwrap()
            .unwrap();
            let want = PyDict::new(py);
            want.set_item("a", 1).unwrap();
            want.set_item("c", "z").unwrap();
            assert!(got.eq(&want).unwrap());
            // JsonKVStorage's quirk: a falsy record reads as None under projection.
            assert!(decode_record(py, b"t", b"{}", Some(&fields))
                .unwrap()
                .is_none());
            assert!(decode_record(py, b"t", b"0", Some(&fields))
                .unwrap()
                .is_none());
            // Dropped values are still validated.
            assert!(decode_record(py, b"t", br#"{"b": [1,], "a": 1}"#, Some(&fields)).is_err());
        });
    }

    #[test]
    fn lone_surrogates_are_escaped_and_read_back() {
        Python::attach(|py| {
            let value = py
                .eval(
                    c"{'a': 'x\\ud800\\n', '\\udfff': ['\\ud83d\\ude00', '\\U0001f600']}",
                    None,
                    None,
                )
                .unwrap();
            let bytes = encode_record(b"t", &value, 0).unwrap();
            assert_eq!(
                std::str::from_utf8(&bytes).unwrap(),
                r#"{"a":"x\ud800\n","\udfff":["\ud83d\ude00","😀"]}"#
            );
            let back = decode_record(py, b"t", &bytes, None).unwrap().unwrap();
            // The two lone halves of a pair come back joined, as json.loads joins them.
            let want = py
                .eval(
                    c"{'a': 'x\\ud800\\n', '\\udfff': ['\\U0001f600', '\\U0001f600']}",
                    None,
                    None,
                )
                .unwrap();
            assert!(back.eq(&want).unwrap(), "{back:?}");
            // Regression: a key with a lone surrogate that the projection drops made the
            // json.loads fallback this replaced raise UnicodeEncodeError.
            let fields: Fields = ["a".into()].into_iter().collect();
            let got = decode_record(py, b"t", &bytes, Some(&fields))
                .unwrap()
                .unwrap();
            assert!(got
                .eq(py.eval(c"{'a': 'x\\ud800\\n'}", None, None).unwrap())
                .unwrap());
        });
    }

    /// Regression: past Python's int digit limit `int()` raised ValueError out of the
    /// codec; json.loads refuses such a document, so it is a SerializationError, also
    /// where a projection drops the number.
    #[test]
    fn ints_past_pythons_digit_limit_are_not_readable_json() {
        Python::attach(|py| {
            let digits = "7".repeat(5000);
            let fields: Fields = ["a".into()].into_iter().collect();
            for (text, fields) in [
                (digits.clone(), None),
                (format!(r#"{{"a": 1, "b": [-{digits}]}}"#), Some(&fields)),
            ] {
                let err = decode_record(py, b"big", text.as_bytes(), fields).unwrap_err();
                let message = err.to_string();
                assert!(message.contains(r#""big" is not valid JSON"#), "{message}");
            }
        });
    }

    #[test]
    fn encodes_and_decodes_back() {
        Python::attach(|py| {
            let value = py
                .eval(
                    c"{'k': [1, 2.5, None, True, 'é', {'n': 10**30}], 3: 'int key'}",
                    None,
                    None,
                )
                .unwrap();
            let bytes = encode_record(b"t", &value, 0).unwrap();
            assert_eq!(
                std::str::from_utf8(&bytes).unwrap(),
                r#"{"k":[1,2.5,null,true,"é",{"n":1000000000000000000000000000000}],"3":"int key"}"#
            );
            let set = py.eval(c"{'bad': {1}}", None, None).unwrap();
            let err = encode_record(b"rec", &set, 0).unwrap_err();
            assert!(err.to_string().contains("set"), "{err}");
        });
    }
}
