//! How records reach Redis: one server, a Redis Cluster, or the master behind Sentinel.
//!
//! Each topology is one file behind the small [`Topology`] trait, so `store.rs` is the
//! same for all of them. They all send through [`Node`]s (one per server: link,
//! breaker, progress clock, in-flight bound) and retry with the same loop
//! ([`crate::client::with_retries`]); what differs is which node a key goes to and
//! how a batch is split.

mod cluster;
mod sentinel;
mod single;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::Cmd;

use crate::config::{ConnectionSettings, Mode};
use crate::errors::Result;
use crate::runtime;

pub use cluster::slot;
pub use single::PAGE;

/// Keys and values as Redis sees them: bytes.
pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

/// Calls `page` with every page of keys a scan finds (keys may repeat across pages).
pub type OnPage<'a> = &'a mut (dyn FnMut(Vec<Key>) + Send);

/// The operations a store needs, for one topology. Batches keep the caller's order
/// (duplicates included) in their results.
pub trait Topology: Send + Sync {
    /// The value of each key, aligned with `keys`; `None` for a missing key or a key
    /// of another type.
    fn get_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<Value>>>>;

    /// Whether each key exists, aligned with `keys`.
    fn exists_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<bool>>>;

    /// `what` of each key in bytes (0 for a missing key), aligned with `keys`.
    fn measure<'a>(&'a self, keys: &'a [Key], what: Measure) -> BoxFuture<'a, Result<Vec<u64>>>;

    /// Writes every record (`SET`, with `EX ttl` when given). `largest` names the
    /// largest value (its id and length) for the size check before sending.
    fn put_many<'a>(
        &'a self,
        records: &'a [(Key, Value)],
        ttl: Option<u64>,
        largest: (&'a [u8], usize),
    ) -> BoxFuture<'a, Result<()>>;

    /// Sets a time to live of `seconds` on the keys that exist.
    fn expire_many<'a>(&'a self, keys: &'a [Key], seconds: u64) -> BoxFuture<'a, Result<()>>;

    /// Removes the keys; how many existed.
    fn unlink_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<u64>>;

    /// Every key matching the `SCAN` pattern, page by page, on every node that holds
    /// keys.
    fn scan<'a>(&'a self, pattern: &'a [u8], page: OnPage<'a>) -> BoxFuture<'a, Result<()>>;

    /// Runs `cmd` once on every server that serves keys (one server; each cluster
    /// master; the master behind Sentinel), all at once.
    fn each_server<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Vec<ServerReply>>>;
}

/// What a key's size means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// The stored value (`STRLEN`): the record's JSON.
    Length,
    /// What the server spends on the key (`MEMORY USAGE`): key, value and overhead.
    Memory,
}

impl Measure {
    /// The command that measures `key`; its reply is an integer, or nil for a missing
    /// key (`MEMORY USAGE`).
    pub fn cmd(self, key: &[u8]) -> Cmd {
        match self {
            Measure::Length => redis::cmd("STRLEN").arg(key).to_owned(),
            // SAMPLES 0: a string's size is exact without sampling, and this never
            // walks a big value.
            Measure::Memory => redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .to_owned(),
        }
    }
}

/// One server's reply to [`Topology::each_server`].
pub struct ServerReply {
    /// The server, for people (never credentials).
    pub server: String,
    pub reply: redis::Value,
    /// From sending the command to its reply (waiting for a connection included).
    pub elapsed: Duration,
}

type Registry = HashMap<ConnectionSettings, Weak<dyn Topology>>;
static SHARED: Mutex<Option<(u64, Registry)>> = Mutex::new(None);

/// The topology for `settings`, shared with every store that uses the same settings.
/// Creating one does no I/O: connections open on the first command.
pub fn shared(settings: &ConnectionSettings) -> Result<Arc<dyn Topology>> {
    let generation = runtime::generation();
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_none_or(|(g, _)| *g != generation) {
        // A forked child must not touch the parent's connections: leak them.
        if let Some(stale) = slot.take() {
            std::mem::forget(stale);
        }
        *slot = Some((generation, HashMap::new()));
    }
    let registry = &mut slot.as_mut().expect("set above").1;
    if let Some(topology) = registry.get(settings).and_then(Weak::upgrade) {
        return Ok(topology);
    }
    registry.retain(|_, weak| weak.strong_count() > 0);
    let topology: Arc<dyn Topology> = match &settings.mode {
        Mode::Single => Arc::new(single::Single::open(settings)?),
        Mode::Cluster { seeds } => Arc::new(cluster::Cluster::open(seeds, settings)?),
        Mode::Sentinel(sentinel) => {
            let sentinel = Arc::new(sentinel::open(sentinel, settings)?);
            sentinel.watch();
            sentinel
        }
    };
    registry.insert(settings.clone(), Arc::downgrade(&topology));
    Ok(topology)
}
