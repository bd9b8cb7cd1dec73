//! The metrics (see `metrics/`) as Python data, for `stats()` and the Prometheus
//! collector in `nano_graphrag_redis/metrics.py`.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::metrics::{self, OperationSnapshot, ServerSnapshot};

/// Everything measured in this process: `{"operations": [...], "servers": [...]}`,
/// one dict per namespace and operation called at least once, and per server a link
/// was made to. O(namespaces + servers): never asks Redis anything.
#[pyfunction]
pub fn metrics_snapshot(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let operations = PyList::empty(py);
    for row in metrics::operations() {
        operations.append(operation(py, &row)?)?;
    }
    let servers = PyList::empty(py);
    for row in metrics::servers() {
        servers.append(server(py, &row)?)?;
    }
    let d = PyDict::new(py);
    d.set_item("operations", operations)?;
    d.set_item("servers", servers)?;
    Ok(d)
}

pub fn operation<'py>(py: Python<'py>, row: &OperationSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("namespace", &row.namespace)?;
    d.set_item("workspace", row.workspace.as_deref())?;
    d.set_item("operation", row.operation.name())?;
    d.set_item("calls", row.calls)?;
    d.set_item("in_flight", row.in_flight)?;
    let errors = PyDict::new(py);
    for (kind, n) in row.errors {
        errors.set_item(kind.name(), n)?;
    }
    d.set_item("errors", errors)?;
    d.set_item("retries", row.retries)?;
    d.set_item("records_read", row.records_read)?;
    d.set_item("bytes_read", row.bytes_read)?;
    d.set_item("records_written", row.records_written)?;
    d.set_item("bytes_written", row.bytes_written)?;
    d.set_item("hits", row.hits)?;
    d.set_item("misses", row.misses)?;
    let latency = PyDict::new(py);
    let histogram = &row.latency;
    latency.set_item("count", histogram.count())?;
    latency.set_item("sum_seconds", histogram.sum_nanos as f64 / 1e9)?;
    latency.set_item("p50_seconds", histogram.quantile(0.5))?;
    latency.set_item("p99_seconds", histogram.quantile(0.99))?;
    let buckets = PyList::empty(py);
    let mut cumulative = 0;
    for (i, n) in histogram.counts.iter().enumerate() {
        cumulative += n;
        buckets.append((metrics::upper_bound(i), cumulative))?;
    }
    latency.set_item("buckets", buckets)?;
    d.set_item("latency", latency)?;
    Ok(d)
}

fn server<'py>(py: Python<'py>, row: &ServerSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("server", &row.server)?;
    d.set_item("connections", row.connections)?;
    d.set_item("in_flight", row.in_flight)?;
    d.set_item("breaker", row.breaker.name())?;
    d.set_item("breaker_state", row.breaker as u8)?;
    d.set_item("connects", row.connects)?;
    d.set_item("reconnects", row.reconnects)?;
    d.set_item("dial_failures", row.dial_failures)?;
    d.set_item("connections_lost", row.connections_lost)?;
    d.set_item("breaker_opens", row.breaker_opens)?;
    Ok(d)
}
