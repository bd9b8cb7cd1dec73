//! nano-graphrag-redis: a Redis key-value storage for nano-graphrag.
//!
//! The Rust core does all Redis work (redis-rs on tokio) and all JSON work; the
//! Python package `nano_graphrag_redis` is a thin, typed adapter around `_core.Store`.

pub mod breaker;
pub mod bridge;
#[cfg(target_os = "linux")]
pub mod caller;
pub mod client;
pub mod codec;
pub mod config;
pub mod connection;
pub mod errors;
#[cfg(target_os = "linux")]
pub mod eventfd;
pub mod keys;
pub mod link;
pub mod metrics;
pub mod node;
pub mod py_metrics;
pub mod py_store;
pub mod runtime;
pub mod store;
pub mod topology;
pub mod urls;

use std::sync::OnceLock;

use pyo3::prelude::*;

static LOG_LEVELS: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

/// Makes Rust log records follow Python's logging levels as they are now.
///
/// pyo3-log caches each logger's level at its first record, so a record below the
/// level costs no GIL on a tokio thread; the price is that a level changed later is
/// not seen. Each new store calls this (storages are made after logging is set up),
/// and so can anyone who changes levels at run time.
pub fn refresh_log_levels() {
    if let Some(handle) = LOG_LEVELS.get() {
        handle.reset();
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` (logger names follow the modules,
    // e.g. `nano_graphrag_redis.client`). Ignore a second init (module reloaded).
    if let Ok(handle) = pyo3_log::try_init() {
        let _ = LOG_LEVELS.set(handle);
    }
    errors::init(m.py())?;
    m.add_class::<py_store::Store>()?;
    m.add_function(wrap_pyfunction!(py_store::redact_url, m)?)?;
    m.add_function(wrap_pyfunction!(py_metrics::metrics_snapshot, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
