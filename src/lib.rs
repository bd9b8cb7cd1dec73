//! nano-graphrag-redis: a Redis key-value storage for nano-graphrag.
//!
//! The Rust core does all Redis work (redis-rs on tokio) and all JSON work; the
//! Python package `nano_graphrag_redis` is a thin, typed adapter around `_core.Store`.

pub mod breaker;
pub mod bridge;
pub mod client;
pub mod codec;
pub mod config;
pub mod errors;
pub mod keys;
pub mod link;
pub mod node;
pub mod py_store;
pub mod runtime;
pub mod store;
pub mod topology;
pub mod urls;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging` (logger names follow the modules,
    // e.g. `nano_graphrag_redis.client`). Ignore a second init (module reloaded).
    let _ = pyo3_log::try_init();
    errors::init(m.py())?;
    m.add_class::<py_store::Store>()?;
    m.add_function(wrap_pyfunction!(py_store::redact_url, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
