//! Records as UTF-8 JSON: encoding from and decoding to Python objects.

mod decode;
mod encode;

pub use decode::Fields;
pub use encode::{write_float, write_string};

use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::errors::Error;

/// Deepest nesting accepted either way; deeper input is almost surely a cycle.
pub const MAX_DEPTH: usize = 1024;

/// Encodes one record; the error names the record's id.
pub fn encode_record(id: &str, value: &Bound<'_, PyAny>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    encode::encode(value, &mut out)
        .map_err(|e| Error::Serialization(format!("record {id:?}: {}", e.0)))?;
    Ok(out)
}

/// Decodes one stored value, keeping only `fields` when given (see
/// [`decode::decode_projected`] for the `None` it can return then).
pub fn decode_record<'py>(
    py: Python<'py>,
    id: &str,
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
            "stored value of {id:?} is not valid JSON: {why}"
        ))
        .into()),
        Err(decode::DecodeError::LoneSurrogate) => decode_with_python(py, id, bytes, fields),
    }
}

/// Lone surrogates (`"\ud800"`) are legal for Python's `json` but cannot live in a
/// Rust `str`; such documents, which only Python writers produce, go to `json.loads`.
#[cold]
fn decode_with_python<'py>(
    py: Python<'py>,
    id: &str,
    bytes: &[u8],
    fields: Option<&Fields>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let text = std::str::from_utf8(bytes).expect("decoder checked UTF-8");
    let value = py
        .import("json")?
        .call_method1("loads", (PyString::new(py, text),))
        .map_err(|e| Error::Serialization(format!("stored value of {id:?}: {e}")))?;
    let Some(fields) = fields else {
        return Ok(Some(value));
    };
    if !value.is_truthy()? {
        return Ok(None);
    }
    let Ok(dict) = value.cast::<pyo3::types::PyDict>() else {
        return Ok(Some(value));
    };
    let kept = pyo3::types::PyDict::new(py);
    for (k, v) in dict.iter() {
        if fields.contains(k.extract::<&str>()?) {
            kept.set_item(k, v)?;
        }
    }
    Ok(Some(kept.into_any()))
}
