//! The storage operations, in plain async Rust (no Python): one namespace of records,
//! each a Redis string holding JSON bytes, keyed by [`KeySpace`]. The same for every
//! topology (see `topology/`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::config::Settings;
use crate::errors::Result;
use crate::keys::KeySpace;
use crate::runtime;
use crate::topology::{self, Topology};

pub struct Store {
    settings: Settings,
    keys: KeySpace,
    /// The shared topology, tagged with the fork generation it belongs to.
    topology: Mutex<Option<(u64, Arc<dyn Topology>)>>,
}

impl Store {
    /// Does no I/O: the connection opens on the first operation.
    pub fn new(settings: Settings) -> Store {
        Store {
            keys: KeySpace::new(
                &settings.key_prefix,
                settings.workspace.as_deref(),
                &settings.namespace,
            ),
            settings,
            topology: Mutex::new(None),
        }
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
        let keys = [self.keys.key(id)];
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
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| self.keys.key(id)).collect();
        self.topology()?.get_many(&keys).await
    }

    /// Which of `ids` are stored, aligned with `ids`.
    pub async fn exists_many(&self, ids: &[Vec<u8>]) -> Result<Vec<bool>> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| self.keys.key(id)).collect();
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
        for (id, _) in &mut records {
            *id = self.keys.key(id);
        }
        self.topology()?
            .put_many(&records, self.settings.ttl, (&largest.0, largest.1))
            .await
    }

    /// The stored size in bytes of each record (0 where missing), aligned with `ids`.
    pub async fn sizes(&self, ids: &[Vec<u8>]) -> Result<Vec<u64>> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| self.keys.key(id)).collect();
        self.topology()?.sizes(&keys).await
    }

    /// Removes the records of `ids`; how many existed.
    pub async fn delete_many(&self, ids: &[Vec<u8>]) -> Result<u64> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| self.keys.key(id)).collect();
        self.topology()?.unlink_many(&keys).await
    }

    /// Whether the record existed.
    pub async fn delete(&self, id: &[u8]) -> Result<bool> {
        let removed = self.topology()?.unlink_many(&[self.keys.key(id)]).await?;
        Ok(removed > 0)
    }

    /// Every id of this namespace (in no particular order), as stored bytes.
    pub async fn ids(&self) -> Result<Vec<Vec<u8>>> {
        let keys = self.scan().await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| self.keys.id(&key).map(<[u8]>::to_vec))
            .collect())
    }

    /// Removes every record of this namespace and nothing else (`SCAN MATCH` on this
    /// namespace's escaped key pattern, then `UNLINK`). Returns how many.
    pub async fn clear(&self) -> Result<u64> {
        let keys: Vec<Vec<u8>> = self.scan().await?.into_iter().collect();
        self.topology()?.unlink_many(&keys).await
    }

    /// This namespace's keys, each once (`SCAN` may return a key twice).
    async fn scan(&self) -> Result<HashSet<Vec<u8>>> {
        let pattern = self.keys.pattern();
        let mut seen = HashSet::new();
        let mut page = |keys: Vec<Vec<u8>>| seen.extend(keys);
        self.topology()?.scan(&pattern, &mut page).await?;
        Ok(seen)
    }

    /// Round trip to the server(s) (connects if needed).
    pub async fn ping(&self) -> Result<()> {
        self.topology()?.ping().await
    }
}
