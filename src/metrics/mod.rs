//! Metrics kept in the process, for `stats()` and the Prometheus collector: per
//! namespace and operation (`operations.rs`) and per server (`servers.rs`).
//!
//! Everything on the hot path is a relaxed atomic addition; the registries below are
//! locked only when a store or a link is created and when a snapshot is taken. Their
//! entries live as long as the process (a counter must never go back), so each
//! namespace and each server costs a few hundred bytes once, however many stores come
//! and go. A snapshot is O(namespaces + servers): it never asks Redis anything.

mod histogram;
mod operations;
mod servers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub use histogram::{upper_bound, Snapshot as HistogramSnapshot, BUCKETS};
pub use operations::{Call, ErrorKind, NamespaceMetrics, Operation, OperationMetrics};
pub use servers::{BreakerState, Gauges, Probe, ServerMetrics, ServerSnapshot};

type NamespaceKey = (Option<String>, String);

static NAMESPACES: Mutex<Vec<&'static NamespaceMetrics>> = Mutex::new(Vec::new());
static SERVERS: Mutex<Option<HashMap<String, Arc<ServerMetrics>>>> = Mutex::new(None);

/// The metrics of `namespace` in `workspace`, shared by every store of that namespace.
pub fn namespace(namespace: &str, workspace: Option<&str>) -> &'static NamespaceMetrics {
    let mut all = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
    let key: NamespaceKey = (workspace.map(str::to_owned), namespace.to_owned());
    if let Some(found) = all
        .iter()
        .find(|m| (m.workspace.as_ref(), &m.namespace) == (key.0.as_ref(), &key.1))
    {
        return found;
    }
    let metrics: &'static NamespaceMetrics =
        Box::leak(Box::new(NamespaceMetrics::new(namespace, workspace)));
    all.push(metrics);
    metrics
}

/// The metrics of `server`, shared by every link to it.
pub fn server(server: &str) -> Arc<ServerMetrics> {
    SERVERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .entry(server.to_owned())
        .or_insert_with(|| Arc::new(ServerMetrics::new(server)))
        .clone()
}

tokio::task_local! {
    /// The operation a task works for, so the retry loop deep below can count its
    /// retries without every layer passing the counters down.
    static CURRENT: &'static OperationMetrics;
}

/// Runs `work` with its retries counted for the call's operation.
pub async fn scope<F: Future>(call: Option<&'static OperationMetrics>, work: F) -> F::Output {
    match call {
        Some(metrics) => CURRENT.scope(metrics, work).await,
        None => work.await,
    }
}

/// A request is sent again (called by the retry loop).
pub fn retried() {
    let _ = CURRENT.try_with(|metrics| metrics.retried());
}

/// One operation of one namespace, as read at one moment.
#[derive(Clone, Debug)]
pub struct OperationSnapshot {
    pub namespace: String,
    pub workspace: Option<String>,
    pub operation: Operation,
    pub calls: u64,
    pub in_flight: u64,
    pub errors: [(ErrorKind, u64); ErrorKind::ALL.len()],
    pub retries: u64,
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_written: u64,
    pub bytes_written: u64,
    pub hits: u64,
    pub misses: u64,
    pub latency: HistogramSnapshot,
}

/// Every operation that was called at least once.
pub fn operations() -> Vec<OperationSnapshot> {
    let all = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut rows = Vec::new();
    for ns in all {
        for operation in Operation::ALL {
            let m = ns.operation(operation);
            // The latency first: a call that finishes between the two reads then shows
            // as in flight, never as a negative number.
            let latency = m.latency.snapshot();
            let calls = m.calls.load(Ordering::Relaxed);
            if calls == 0 {
                continue;
            }
            let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
            rows.push(OperationSnapshot {
                namespace: ns.namespace.clone(),
                workspace: ns.workspace.clone(),
                operation,
                calls,
                in_flight: calls.saturating_sub(latency.count()),
                errors: std::array::from_fn(|i| (ErrorKind::ALL[i], load(&m.errors[i]))),
                retries: load(&m.retries),
                records_read: load(&m.records_read),
                bytes_read: load(&m.bytes_read),
                records_written: load(&m.records_written),
                bytes_written: load(&m.bytes_written),
                hits: load(&m.hits),
                misses: load(&m.misses),
                latency,
            });
        }
    }
    rows
}

/// Every server a link was made to, sorted by name.
pub fn servers() -> Vec<ServerSnapshot> {
    let all: Vec<Arc<ServerMetrics>> = SERVERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default();
    let mut rows: Vec<ServerSnapshot> = all.iter().map(|s| s.snapshot()).collect();
    rows.sort_by(|a, b| a.server.cmp(&b.server));
    rows
}
