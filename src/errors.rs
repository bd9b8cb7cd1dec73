//! One error type for the core, the one place where redis-rs errors are classified and
//! described, and the one place where errors become Python exceptions.
//!
//! The Python classes live in `nano_graphrag_redis/errors.py` (they need multiple
//! inheritance: `ConfigError` is also a `ValueError`, and so on). `_core` looks them up
//! when it is imported, so raising one never runs Python code: a pending Ctrl-C can
//! never turn a storage error into something else.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use redis::{ErrorKind, RedisError};

use crate::metrics;

/// Everything that can go wrong in the core. Messages are one line, in this package's
/// words, and never hold a password.
#[derive(Clone, Debug, thiserror::Error)]
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
    /// The server answered with an error (auth, ACL, OOM, too large, ...).
    #[error("{0}")]
    Operation(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Classifies a redis-rs error that ends a call.
    pub fn from_redis(err: &RedisError, secret: Option<&str>) -> Error {
        let message = describe(err, secret);
        // Something that does not speak Redis is, for the caller, no Redis at all.
        if is_connection_failure(err) || err.kind() == ErrorKind::Parse {
            Error::Unavailable(message)
        } else {
            Error::Operation(message)
        }
    }
}

/// Errors that mean "the server did not answer", as opposed to "it answered no".
/// These are retried, and they break the connection they happened on.
pub fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || is_max_clients(err)
}

/// The server is there but cannot serve right now: loading its dataset, failing over.
pub fn is_busy(err: &RedisError) -> bool {
    server_error(err).is_some_and(|(code, _)| {
        matches!(
            code.as_str(),
            "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN"
        )
    })
}

/// The request went to a server that does not hold its key (any more): a cluster
/// redirect, or a write to a replica (a master demoted by a failover).
pub fn is_redirect(err: &RedisError) -> bool {
    server_error(err).is_some_and(|(code, _)| matches!(code.as_str(), "MOVED" | "ASK"))
        || is_readonly(err)
}

/// Where a cluster redirect points: `(asking, host:port)` for `ASK <slot> <host:port>`
/// (a slot being migrated: ask there once, after `ASKING`) and `MOVED <slot> <host:port>`
/// (the slot's new owner).
pub fn redirect_target(err: &RedisError) -> Option<(bool, String)> {
    let (code, detail) = server_error(err)?;
    let asking = match code.as_str() {
        "ASK" => true,
        "MOVED" => false,
        _ => return None,
    };
    Some((asking, detail.split_whitespace().nth(1)?.to_owned()))
}

/// A write reached a replica: the master this client knew was demoted.
pub fn is_readonly(err: &RedisError) -> bool {
    server_error(err).is_some_and(|(code, _)| code == "READONLY")
}

/// Errors while connecting that no retry will fix and that must reach the caller
/// as they are (rather than be taken for a server without `CONFIG`).
pub fn must_stop(err: &RedisError) -> bool {
    err.kind() == ErrorKind::AuthenticationFailed
        || err.kind() == ErrorKind::Parse
        || server_error(err).is_some_and(|(code, _)| code == "NOAUTH" || code == "WRONGPASS")
}

/// A server at `maxclients` answers the new connection with this and closes it.
fn is_max_clients(err: &RedisError) -> bool {
    err.to_string().contains(MAX_CLIENTS)
}

const MAX_CLIENTS: &str = "max number of clients reached";

/// The server's own `(CODE, detail)`, taken out of redis-rs' wrappers: a pipeline
/// error lists every failed command, and the first one says why.
/// (A transaction aborted by `EXECABORT` says why in the errors of its commands.)
fn server_error(err: &RedisError) -> Option<(String, String)> {
    if let Some(errors) = err.clone().into_server_errors() {
        if let Some((_, first)) = errors.first() {
            return Some((
                first.code().to_owned(),
                first.details().unwrap_or_default().to_owned(),
            ));
        }
    }
    let code = err.code()?;
    Some((code.to_owned(), err.detail().unwrap_or_default().to_owned()))
}

/// One line describing `err`, in this package's words, keeping the server's reason;
/// `secret` (the password, when set) is scrubbed: errors travel to logs.
pub fn describe(err: &RedisError, secret: Option<&str>) -> String {
    let text = if err.kind() == ErrorKind::Parse {
        NOT_REDIS.to_owned()
    } else if is_max_clients(err) {
        refused_connection(MAX_CLIENTS)
    } else if let Some((code, detail)) = server_error(err) {
        match code.as_str() {
            "NOAUTH" => {
                "the server requires a password (NOAUTH): set redis_password or put it in the URL"
                    .to_owned()
            }
            "WRONGPASS" => format!("authentication failed: {code} {detail}"),
            _ => format!("the server refused the command: {code} {detail}"),
        }
    } else if err.kind() == ErrorKind::AuthenticationFailed {
        format!(
            "authentication failed: {}",
            err.detail().unwrap_or("no detail")
        )
    } else {
        lower_first(&err.to_string())
    };
    one_line(&scrub(&text, secret))
}

/// What a reply that is not RESP means to the user.
pub const NOT_REDIS: &str =
    "the reply is not in the Redis protocol (is a Redis server listening there?)";

/// The server's refusal of a new connection, in this package's words.
pub fn refused_connection(reason: &str) -> String {
    format!("the server refused the connection: {}", one_line(reason))
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replaces every occurrence of `secret` in `text`.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

struct Classes {
    config: Py<PyType>,
    serialization: Py<PyType>,
    unavailable: Py<PyType>,
    operation: Py<PyType>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn classes(py: Python<'_>) -> PyResult<&Classes> {
    CLASSES.get_or_try_init(py, || {
        let module = py.import("nano_graphrag_redis.errors")?;
        let class = |name: &str| -> PyResult<Py<PyType>> {
            Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind())
        };
        Ok(Classes {
            config: class("ConfigError")?,
            serialization: class("SerializationError")?,
            unavailable: class("StorageUnavailableError")?,
            operation: class("StorageOperationError")?,
        })
    })
}

/// The kind of a failed call, for metrics.
pub fn kind(err: &Error) -> metrics::ErrorKind {
    match err {
        Error::Config(_) => metrics::ErrorKind::Config,
        Error::Serialization(_) => metrics::ErrorKind::Serialization,
        Error::Unavailable(_) => metrics::ErrorKind::Unavailable,
        Error::Operation(_) => metrics::ErrorKind::Operation,
    }
}

/// The kind of an exception a call raised in Python code (building its arguments or
/// its result), for metrics.
pub fn py_kind(py: Python<'_>, err: &PyErr) -> metrics::ErrorKind {
    let Ok(classes) = classes(py) else {
        return metrics::ErrorKind::Other;
    };
    let is = |class: &Py<PyType>| err.is_instance(py, class.bind(py));
    if is(&classes.serialization) {
        metrics::ErrorKind::Serialization
    } else if is(&classes.config) {
        metrics::ErrorKind::Config
    } else if is(&classes.unavailable) {
        metrics::ErrorKind::Unavailable
    } else if is(&classes.operation) {
        metrics::ErrorKind::Operation
    } else if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
        metrics::ErrorKind::Cancelled
    } else {
        metrics::ErrorKind::Other
    }
}

/// Looks the exception classes up; `_core` calls it when it is imported.
pub fn init(py: Python<'_>) -> PyResult<()> {
    classes(py).map(drop)
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        Python::attach(|py| {
            let Ok(classes) = classes(py) else {
                // Only if the package itself is broken; still say what happened.
                return PyRuntimeError::new_err(err.to_string());
            };
            let (class, message) = match err {
                Error::Config(m) => (&classes.config, m),
                Error::Serialization(m) => (&classes.serialization, m),
                Error::Unavailable(m) => (&classes.unavailable, m),
                Error::Operation(m) => (&classes.operation, m),
            };
            PyErr::from_type(class.bind(py).clone(), message)
        })
    }
}
