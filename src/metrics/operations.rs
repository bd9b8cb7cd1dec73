//! What each storage operation did, per namespace: calls, errors by kind, retries,
//! records and bytes, `get_by_id` hits and misses, latency.
//!
//! A call costs two clock reads and three relaxed atomic additions (calls, a latency
//! bucket, the latency sum), plus one or two for what it read or wrote. In flight is
//! not a counter of its own: it is the calls that have not recorded a latency yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::histogram::Histogram;

/// The storage operations, named as nano-graphrag (or this package) calls them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    GetById,
    GetByIds,
    FilterKeys,
    Upsert,
    AllKeys,
    Drop,
    DeleteById,
    DeleteMany,
    Measure,
    NamespaceStats,
    IndexDone,
    Ping,
}

impl Operation {
    pub const ALL: [Operation; 12] = [
        Operation::GetById,
        Operation::GetByIds,
        Operation::FilterKeys,
        Operation::Upsert,
        Operation::AllKeys,
        Operation::Drop,
        Operation::DeleteById,
        Operation::DeleteMany,
        Operation::Measure,
        Operation::NamespaceStats,
        Operation::IndexDone,
        Operation::Ping,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::GetById => "get_by_id",
            Operation::GetByIds => "get_by_ids",
            Operation::FilterKeys => "filter_keys",
            Operation::Upsert => "upsert",
            Operation::AllKeys => "all_keys",
            Operation::Drop => "drop",
            Operation::DeleteById => "delete_by_id",
            Operation::DeleteMany => "delete_many",
            Operation::Measure => "measure",
            Operation::NamespaceStats => "namespace_stats",
            Operation::IndexDone => "index_done_callback",
            Operation::Ping => "ping",
        }
    }
}

/// Why a call failed, for `errors_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Config,
    Serialization,
    Unavailable,
    Operation,
    /// The caller stopped waiting (Ctrl-C in a blocking call).
    Cancelled,
    /// Anything else raised while building the result (e.g. `MemoryError`).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Config,
        ErrorKind::Serialization,
        ErrorKind::Unavailable,
        ErrorKind::Operation,
        ErrorKind::Cancelled,
        ErrorKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Serialization => "serialization",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Operation => "operation",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Other => "other",
        }
    }
}

/// The counters of one operation of one namespace.
pub struct OperationMetrics {
    pub(super) calls: AtomicU64,
    pub(super) latency: Histogram,
    pub(super) errors: [AtomicU64; ErrorKind::ALL.len()],
    pub(super) retries: AtomicU64,
    pub(super) records_read: AtomicU64,
    pub(super) bytes_read: AtomicU64,
    pub(super) records_written: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
}

impl OperationMetrics {
    const fn new() -> OperationMetrics {
        OperationMetrics {
            calls: AtomicU64::new(0),
            latency: Histogram::new(),
            errors: [const { AtomicU64::new(0) }; ErrorKind::ALL.len()],
            retries: AtomicU64::new(0),
            records_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// A request of this operation was sent again after a connection failure.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every operation of one namespace (of one workspace).
pub struct NamespaceMetrics {
    pub namespace: String,
    pub workspace: Option<String>,
    pub(super) operations: [OperationMetrics; Operation::ALL.len()],
}

impl NamespaceMetrics {
    pub(super) fn new(namespace: &str, workspace: Option<&str>) -> NamespaceMetrics {
        NamespaceMetrics {
            namespace: namespace.to_owned(),
            workspace: workspace.map(str::to_owned),
            operations: [const { OperationMetrics::new() }; Operation::ALL.len()],
        }
    }

    pub fn operation(&self, operation: Operation) -> &OperationMetrics {
        &self.operations[operation as usize]
    }
}

/// One call being measured. It records exactly once: the first of
/// [`Call::succeeded`] and [`Call::failed`], or, if dropped before either, as cancelled. Without metrics
/// (`redis_metrics = false`) it does nothing at all, not even read the clock.
pub struct Call {
    measured: Option<(&'static OperationMetrics, Instant)>,
}

impl Call {
    pub fn start(metrics: Option<&'static OperationMetrics>) -> Call {
        Call {
            measured: metrics.map(|m| {
                m.calls.fetch_add(1, Ordering::Relaxed);
                (m, Instant::now())
            }),
        }
    }

    /// The operation's counters, for [`super::scope`] (retries).
    pub fn metrics(&self) -> Option<&'static OperationMetrics> {
        self.measured.map(|(m, _)| m)
    }

    /// `records` records of `bytes` bytes in total came back.
    pub fn read(&self, records: u64, bytes: u64) {
        if let Some((m, _)) = self.measured {
            m.records_read.fetch_add(records, Ordering::Relaxed);
            m.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// `records` records of `bytes` bytes in total were written.
    pub fn wrote(&self, records: u64, bytes: u64) {
        if let Some((m, _)) = self.measured {
            m.records_written.fetch_add(records, Ordering::Relaxed);
            m.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Lookups that found their record (`get_by_id` on the LLM cache: cache hits)
    /// and lookups that did not.
    pub fn looked_up(&self, hits: u64, misses: u64) {
        if let Some((m, _)) = self.measured {
            if hits > 0 {
                m.hits.fetch_add(hits, Ordering::Relaxed);
            }
            if misses > 0 {
                m.misses.fetch_add(misses, Ordering::Relaxed);
            }
        }
    }

    pub fn succeeded(&mut self) {
        self.finish(None);
    }

    pub fn failed(&mut self, kind: ErrorKind) {
        self.finish(Some(kind));
    }

    fn finish(&mut self, error: Option<ErrorKind>) {
        if let Some((m, started)) = self.measured.take() {
            if let Some(kind) = error {
                m.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
            }
            m.latency.record(started.elapsed());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Some(ErrorKind::Cancelled));
    }
}
