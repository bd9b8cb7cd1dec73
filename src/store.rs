//! The storage operations, in plain async Rust (no Python): one namespace of records,
//! each a Redis string holding JSON bytes, keyed by [`KeySpace`]. The same for every
//! topology (see `topology/`).
//!
//! Atomic rebuilds (`redis_atomic_rebuild`, `community_reports` only): nano-graphrag
//! drops and rewrites every report on each insert, so a reader in another process would
//! see none, or some, meanwhile. With the option the records live in generations (see
//! `keys.rs`). `drop()` starts a new generation that only this instance reads and
//! writes; [`Store::commit`] (from `index_done_callback`) makes it live with one `SET`
//! of the live-generation key, and gives the old generation's records a grace TTL, so a
//! reader that resolved the old generation just before still finds them. Other
//! instances resolve the live generation on every call (one `GET` more).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Settings;
use crate::errors::{Error, Result};
use crate::keys::KeySpace;
use crate::metrics::{self, NamespaceMetrics, Operation, OperationMetrics};
use crate::runtime;
use crate::topology::{self, Measure, ServerReply, Topology};

pub struct Store {
    settings: Settings,
    keys: KeySpace,
    /// The shared topology, tagged with the fork generation it belongs to.
    topology: Mutex<Option<(u64, Arc<dyn Topology>)>>,
    /// With atomic rebuilds: the generation this instance stages since its `drop()`.
    staging: Mutex<Option<u64>>,
    /// `None` with `redis_metrics = false`.
    metrics: Option<&'static NamespaceMetrics>,
}

/// What [`Store::namespace_stats`] found. The sizes are sums over the sample.
pub struct NamespaceStats {
    pub records: u64,
    pub sampled: u64,
    /// The stored JSON of the sampled records (`STRLEN`).
    pub value_bytes: u64,
    /// What the server spends on the sampled keys (`MEMORY USAGE`); `None` where the
    /// server does not allow `MEMORY`.
    pub memory_bytes: Option<u64>,
}

/// The fewest ids [`Store::ids_paged`] hands over at a time (but the last part).
const IDS_PER_PART: usize = 10_000;

/// How long [`Store::get_paged`] waits for its caller to take a page before it ends.
const CALLER_GONE: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the records of a replaced generation stay readable after the switch.
const REBUILD_GRACE_SECONDS: u64 = 60;

impl Store {
    /// Does no I/O: the connection opens on the first operation.
    pub fn new(settings: Settings) -> Store {
        Store {
            keys: KeySpace::new(
                &settings.key_prefix,
                settings.workspace.as_deref(),
                &settings.namespace,
            ),
            metrics: settings
                .metrics
                .then(|| metrics::namespace(&settings.namespace, settings.workspace.as_deref())),
            settings,
            topology: Mutex::new(None),
            staging: Mutex::new(None),
        }
    }

    /// The counters of `operation` on this namespace (`None` without metrics).
    pub fn metrics(&self, operation: Operation) -> Option<&'static OperationMetrics> {
        self.metrics.map(|m| m.operation(operation))
    }

    /// Whether this instance stages a rebuild that [`Self::commit`] will make live.
    pub fn staging(&self) -> bool {
        self.staging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The keys reads and writes use now: this namespace's, or with atomic rebuilds the
    /// generation this instance stages, else the live one.
    async fn keys(&self) -> Result<Cow<'_, KeySpace>> {
        if !self.settings.atomic_rebuild {
            return Ok(Cow::Borrowed(&self.keys));
        }
        let staged = *self.staging.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(generation) = staged {
            return Ok(Cow::Owned(self.keys.generation(generation)));
        }
        Ok(match self.live_generation().await? {
            Some(generation) => Cow::Owned(self.keys.generation(generation)),
            None => Cow::Borrowed(&self.keys),
        })
    }

    async fn live_generation(&self) -> Result<Option<u64>> {
        let key = [self.keys.live_generation_key()];
        let value = self.topology()?.get_many(&key).await?.pop().flatten();
        Ok(value.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
    }

    /// Makes the staged generation live (one `SET`), then lets the replaced one expire
    /// after a grace period. Does nothing, and no I/O, when nothing is staged.
    pub async fn commit(&self) -> Result<()> {
        let staged = *self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let Some(generation) = staged else {
            return Ok(());
        };
        let topology = self.topology()?;
        let old = match self.live_generation().await? {
            Some(old) => Cow::Owned(self.keys.generation(old)),
            None => Cow::Borrowed(&self.keys),
        };
        let live = self.keys.live_generation_key();
        let number = generation.to_string().into_bytes();
        let len = number.len();
        topology
            .put_many(&[(live, number)], None, (b"live generation", len))
            .await?;
        self.staging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let replaced: Vec<Vec<u8>> = self.scan(&old).await?.into_iter().collect();
        topology.expire_many(&replaced, REBUILD_GRACE_SECONDS).await
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Redis key of record `id`.
    pub fn key(&self, id: &[u8]) -> Vec<u8> {
        self.keys.key(id)
    }

    fn topology(&self) -> Result<Arc<dyn Topology>> {
        let generation = runtime::generation();
        let mut slot = self.topology.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, topology)) = slot.as_ref() {
            if *g == generation {
                return Ok(topology.clone());
            }
        }
        let topology = topology::shared(&self.settings.connection)?;
        *slot = Some((generation, topology.clone()));
        Ok(topology)
    }

    /// Forgets this store's handle on the shared connections; they close when no store
    /// uses them any more. The store reconnects if used again.
    pub fn release(&self) {
        self.topology
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// The stored bytes of record `id` (a key of another type reads as absent, exactly
    /// as in [`Self::get_many`]).
    pub async fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        let keys = [self.keys().await?.key(id)];
        let [value]: [Option<Vec<u8>>; 1] = self
            .topology()?
            .get_many(&keys)
            .await?
            .try_into()
            .expect("one value per key");
        Ok(value)
    }

    /// Values aligned with `ids` (duplicates kept).
    pub async fn get_many(&self, ids: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let space = self.keys().await?;
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| space.key(id)).collect();
        self.topology()?.get_many(&keys).await
    }

    /// [`Self::get_many`] in pages of `page` ids: `each(offset, values)` hears every
    /// page as it arrives (in any order), so its values can be used while later pages
    /// are on their way. A page is asked for only with a permit of `unused`, which the
    /// caller gives back once it is done with a page: the pages read but not yet used
    /// stay bounded, however many ids there are. Stops at the first page that fails.
    pub async fn get_paged(
        &self,
        ids: &[Vec<u8>],
        page: usize,
        unused: &tokio::sync::Semaphore,
        each: &mut (dyn FnMut(usize, Vec<Option<Vec<u8>>>) + Send),
    ) -> Result<()> {
        use futures_util::stream::{FuturesUnordered, StreamExt};

        let space = self.keys().await?;
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| space.key(id)).collect();
        let topology = self.topology()?;
        let mut pages: FuturesUnordered<_> = keys
            .chunks(page.max(1))
            .enumerate()
            .map(|(i, chunk)| {
                let topology = &topology;
                async move {
                    // A caller that takes no page for this long is gone (its event loop
                    // stopped): end instead of waiting forever.
                    match tokio::time::timeout(CALLER_GONE, unused.acquire()).await {
                        Ok(permit) => permit.map(|p| p.forget()).ok(),
                        Err(_) => {
                            let why = format!(
                                "the caller took no page of a get_by_ids for {} s",
                                CALLER_GONE.as_secs()
                            );
                            return (i * page, Err(Error::Unavailable(why)));
                        }
                    };
                    (i * page, topology.get_many(chunk).await)
                }
            })
            .collect();
        while let Some((offset, values)) = pages.next().await {
            each(offset, values?);
        }
        Ok(())
    }

    /// Which of `ids` are stored, aligned with `ids`.
    pub async fn exists_many(&self, ids: &[Vec<u8>]) -> Result<Vec<bool>> {
        let space = self.keys().await?;
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| space.key(id)).collect();
        self.topology()?.exists_many(&keys).await
    }

    /// Writes every record `(id, value)` whole, with the namespace's TTL in the same
    /// command. All or nothing where the topology allows it (one server); see
    /// [`Topology::put_many`].
    pub async fn put_many(&self, mut records: Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
        let Some(largest) = (0..records.len()).max_by_key(|&i| records[i].1.len()) else {
            return Ok(());
        };
        let largest = (records[largest].0.clone(), records[largest].1.len());
        let space = self.keys().await?;
        for (id, _) in &mut records {
            *id = space.key(id);
        }
        self.topology()?
            .put_many(&records, self.settings.ttl, (&largest.0, largest.1))
            .await
    }

    /// `what` of each record in bytes (0 where missing), aligned with `ids`.
    pub async fn measure(&self, ids: &[Vec<u8>], what: Measure) -> Result<Vec<u64>> {
        let space = self.keys().await?;
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| space.key(id)).collect();
        self.topology()?.measure(&keys, what).await
    }

    /// How many records the namespace holds, and the size of `sample` of them picked
    /// at random (all of them with `None`): a `SCAN` of the namespace, then `STRLEN`
    /// and `MEMORY USAGE` of the sample. Heavy: for scripts and the CLI, never for a
    /// hot path. `progress` hears `("scanned", keys so far)` after each scan page and
    /// `("measured", records so far)` after each measured page.
    pub async fn namespace_stats(
        &self,
        sample: Option<usize>,
        progress: &mut (dyn FnMut(&str, u64) + Send),
    ) -> Result<NamespaceStats> {
        let space = self.keys().await?;
        let mut scanned = |n: u64| progress("scanned", n);
        let mut keys: Vec<Vec<u8>> = self
            .scan_counting(&space, &mut scanned)
            .await?
            .into_iter()
            .collect();
        let records = keys.len() as u64;
        let sampled = sample.map_or(keys.len(), |n| n.min(keys.len()));
        // A partial Fisher-Yates shuffle: the first `sampled` keys are a uniform sample.
        for i in 0..sampled {
            let pick = fastrand::usize(i..keys.len());
            keys.swap(i, pick);
        }
        keys.truncate(sampled);
        let topology = self.topology()?;
        let mut stats = NamespaceStats {
            records,
            sampled: 0,
            value_bytes: 0,
            memory_bytes: Some(0),
        };
        for page in keys.chunks(topology::PAGE) {
            let lengths = topology.measure(page, Measure::Length).await?;
            stats.value_bytes += lengths.iter().sum::<u64>();
            if stats.memory_bytes.is_some() {
                // MEMORY may be forbidden (ACL) or missing (proxies): sizes stay.
                stats.memory_bytes = match topology.measure(page, Measure::Memory).await {
                    Ok(memory) => stats.memory_bytes.map(|m| m + memory.iter().sum::<u64>()),
                    Err(crate::errors::Error::Operation(_)) => None,
                    Err(err) => return Err(err),
                };
            }
            stats.sampled += page.len() as u64;
            progress("measured", stats.sampled);
        }
        Ok(stats)
    }

    /// Removes the records of `ids`; how many existed.
    pub async fn delete_many(&self, ids: &[Vec<u8>]) -> Result<u64> {
        let space = self.keys().await?;
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| space.key(id)).collect();
        self.topology()?.unlink_many(&keys).await
    }

    /// Whether the record existed.
    pub async fn delete(&self, id: &[u8]) -> Result<bool> {
        let key = self.keys().await?.key(id);
        let removed = self.topology()?.unlink_many(&[key]).await?;
        Ok(removed > 0)
    }

    /// Every id of this namespace (in no particular order), as stored bytes.
    pub async fn ids(&self) -> Result<Vec<Vec<u8>>> {
        let mut ids = Vec::new();
        self.ids_paged(&mut |page| ids.extend(page)).await?;
        Ok(ids)
    }

    /// [`Self::ids`] in parts of at least [`IDS_PER_PART`] ids (the rest last), as the
    /// scan finds them: each id once (`SCAN` may return a key twice), so a part can be
    /// used while the scan goes on. Parts, not pages: each part costs the caller a turn
    /// with the GIL, and a namespace of a few thousand ids is better handed over once.
    pub async fn ids_paged(&self, each: &mut (dyn FnMut(Vec<Vec<u8>>) + Send)) -> Result<()> {
        let space = self.keys().await?;
        let mut seen = HashSet::with_hasher(foldhash::fast::RandomState::default());
        let mut part = Vec::new();
        let mut page = |keys: Vec<Vec<u8>>| {
            part.extend(keys.into_iter().filter_map(|key| {
                let id = space.id(&key)?.to_vec();
                seen.insert(key).then_some(id)
            }));
            if part.len() >= IDS_PER_PART {
                each(std::mem::take(&mut part));
            }
        };
        self.topology()?.scan(&space.pattern(), &mut page).await?;
        if !part.is_empty() {
            each(part);
        }
        Ok(())
    }

    /// Removes every record of this namespace and nothing else (`SCAN MATCH` on this
    /// namespace's escaped key pattern, then `UNLINK`). Returns how many.
    /// With atomic rebuilds, starts a new generation instead: empty for this instance,
    /// invisible to others until [`Self::commit`]; returns 0.
    pub async fn clear(&self) -> Result<u64> {
        if self.settings.atomic_rebuild {
            // Unique without a round trip: nanoseconds since the epoch.
            let generation = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            *self.staging.lock().unwrap_or_else(|e| e.into_inner()) = Some(generation);
            return Ok(0);
        }
        // Each page found is unlinked while the scan goes on: one request of each in
        // flight. Deleting during a SCAN is safe: it still returns every key that
        // stays, and a key it returns twice is simply unlinked twice (counted once).
        let topology = self.topology()?;
        let (found, mut to_unlink) = tokio::sync::mpsc::unbounded_channel();
        let scan = async {
            let mut found = move |keys: Vec<Vec<u8>>| drop(found.send(keys));
            topology.scan(&self.keys.pattern(), &mut found).await
        };
        let unlink = async {
            let mut removed = 0;
            while let Some(keys) = to_unlink.recv().await {
                removed += topology.unlink_many(&keys).await?;
            }
            Ok(removed)
        };
        let ((), removed) = futures_util::future::try_join(scan, unlink).await?;
        Ok(removed)
    }

    /// The keys of `space`, each once (`SCAN` may return a key twice).
    async fn scan(&self, space: &KeySpace) -> Result<HashSet<Vec<u8>>> {
        self.scan_counting(space, &mut |_| {}).await
    }

    /// [`Self::scan`], telling `counted` how many keys it found after each page.
    async fn scan_counting(
        &self,
        space: &KeySpace,
        counted: &mut (dyn FnMut(u64) + Send),
    ) -> Result<HashSet<Vec<u8>>> {
        let pattern = space.pattern();
        let mut seen = HashSet::new();
        let mut page = |keys: Vec<Vec<u8>>| {
            seen.extend(keys);
            counted(seen.len() as u64);
        };
        self.topology()?.scan(&pattern, &mut page).await?;
        Ok(seen)
    }

    /// Round trip to the server(s) (connects if needed).
    pub async fn ping(&self) -> Result<()> {
        self.on_each_server(&redis::cmd("PING")).await.map(drop)
    }

    /// `cmd` on every server that serves keys, each reply timed.
    pub async fn on_each_server(&self, cmd: &redis::Cmd) -> Result<Vec<ServerReply>> {
        self.topology()?.each_server(cmd).await
    }
}
