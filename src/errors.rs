//! One error type for the core, and the one place where it becomes a Python exception.
//!
//! The Python classes live in `nano_graphrag_redis/errors.py` (they need multiple
//! inheritance: `ConfigError` is also a `ValueError`, and so on); Rust looks them up once.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing, malformed or out of range.
    #[error("{0}")]
    Config(String),
    /// A value or key cannot be encoded (nothing was sent), or stored bytes are not JSON.
    #[error("{0}")]
    Serialization(String),
    /// The server cannot be reached: refused, timed out, dropped, or the breaker is open.
    #[error("{0}")]
    Unavailable(String),
    /// The server answered with an error (auth, ACL, OOM, wrong type, ...).
    #[error("{0}")]
    Operation(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Classifies a redis-rs error. `secret` (the password, when set) is scrubbed from
    /// the message: errors travel to logs and must never carry it.
    pub fn from_redis(err: &redis::RedisError, secret: Option<&str>) -> Error {
        let message = scrub(&describe(err), secret);
        if is_connection_failure(err) {
            Error::Unavailable(message)
        } else {
            Error::Operation(message)
        }
    }
}

/// Errors that mean "the server did not answer", as opposed to "it answered no".
/// These, and only these, are retried and counted by the circuit breaker.
pub fn is_connection_failure(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(err.kind(), redis::ErrorKind::Parse)
        // Server still loading its dataset or failing over: try again shortly.
        || matches!(err.code(), Some("LOADING" | "MASTERDOWN" | "TRYAGAIN"))
}

fn describe(err: &redis::RedisError) -> String {
    if err.kind() == redis::ErrorKind::AuthenticationFailed {
        return format!("authentication failed: {err}");
    }
    err.to_string()
}

/// Replaces every occurrence of `secret` in `text`.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn exception_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module = ERRORS_MODULE
        .get_or_try_init(py, || {
            py.import("nano_graphrag_redis.errors").map(Bound::unbind)
        })?
        .bind(py);
    Ok(module.getattr(name)?.cast_into::<PyType>()?)
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| {
            let (name, message) = match err {
                Error::Config(m) => ("ConfigError", m),
                Error::Serialization(m) => ("SerializationError", m),
                Error::Unavailable(m) => ("StorageUnavailableError", m),
                Error::Operation(m) => ("StorageOperationError", m),
            };
            match exception_class(py, name) {
                Ok(class) => PyErr::from_type(class, message),
                // Only if the package itself is broken; still say what happened.
                Err(_) => PyRuntimeError::new_err(format!("{name}: {message}")),
            }
        })
    }
}
