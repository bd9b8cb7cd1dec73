//! The storage operations, in plain async Rust (no Python): one namespace of records,
//! each a Redis string holding JSON bytes, keyed by [`KeySpace`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use redis::{Cmd, Pipeline};

use crate::client::{self, Client, Request};
use crate::config::Settings;
use crate::errors::Result;
use crate::keys::KeySpace;
use crate::runtime;

/// Keys per `MGET` / `UNLINK`, and the `SCAN` page size: big enough for few round
/// trips, small enough that one command never stalls the server.
const BATCH: usize = 1000;

pub struct Store {
    settings: Settings,
    keys: KeySpace,
    /// The shared client, tagged with the fork generation it belongs to.
    client: Mutex<Option<(u64, Arc<Client>)>>,
}

impl Store {
    /// Does no I/O: the connection opens on the first operation.
    pub fn new(settings: Settings) -> Store {
        Store {
            keys: KeySpace::new(&settings.key_prefix, &settings.namespace),
            settings,
            client: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Redis key of record `id`.
    pub fn key(&self, id: &str) -> Vec<u8> {
        self.keys.key(id)
    }

    fn client(&self) -> Result<Arc<Client>> {
        let generation = runtime::generation();
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, client)) = slot.as_ref() {
            if *g == generation {
                return Ok(client.clone());
            }
        }
        let client = client::shared(&self.settings.connection)?;
        *slot = Some((generation, client.clone()));
        Ok(client)
    }

    /// Forgets this store's handle on the shared connection; the connection closes when
    /// no store uses it any more. The store reconnects if used again.
    pub fn release(&self) {
        self.client.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub async fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let cmd = redis::cmd("GET").arg(self.keys.key(id)).to_owned();
        self.client()?.query(Request::Cmd(&cmd)).await
    }

    /// Values aligned with `ids` (duplicates kept), in one round trip.
    pub async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Pipeline::new();
        for chunk in ids.chunks(BATCH) {
            let mut cmd = redis::cmd("MGET");
            for id in chunk {
                cmd.arg(self.keys.key(id));
            }
            pipe.add_command(cmd);
        }
        let pages: Vec<Vec<Option<Vec<u8>>>> =
            self.client()?.query(Request::Pipeline(&pipe)).await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Which of `ids` are stored, aligned with `ids`, in one round trip.
    pub async fn exists_many(&self, ids: &[String]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = Pipeline::new();
        for id in ids {
            pipe.cmd("EXISTS").arg(self.keys.key(id));
        }
        self.client()?.query(Request::Pipeline(&pipe)).await
    }

    /// Writes every record whole, all or nothing: one `MSET`, or a `MULTI`/`EXEC` of
    /// `SET key value EX ttl` when the namespace has a TTL (set with the value, never
    /// as a second step).
    pub async fn put_many(&self, records: &[(String, Vec<u8>)]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let client = self.client()?;
        match (self.settings.ttl, records) {
            (None, [(id, value)]) => {
                let cmd = redis::cmd("SET")
                    .arg(self.keys.key(id))
                    .arg(value)
                    .to_owned();
                client.query::<()>(Request::Cmd(&cmd)).await
            }
            (None, _) => {
                let mut cmd = redis::cmd("MSET");
                for (id, value) in records {
                    cmd.arg(self.keys.key(id)).arg(value);
                }
                client.query::<()>(Request::Cmd(&cmd)).await
            }
            (Some(ttl), [(id, value)]) => {
                let cmd = set_ex(self.keys.key(id), value, ttl);
                client.query::<()>(Request::Cmd(&cmd)).await
            }
            (Some(ttl), _) => {
                let mut pipe = Pipeline::new();
                pipe.atomic();
                for (id, value) in records {
                    pipe.add_command(set_ex(self.keys.key(id), value, ttl))
                        .ignore();
                }
                client.query::<()>(Request::Pipeline(&pipe)).await
            }
        }
    }

    /// Whether the record existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let cmd = redis::cmd("UNLINK").arg(self.keys.key(id)).to_owned();
        let removed: u64 = self.client()?.query(Request::Cmd(&cmd)).await?;
        Ok(removed > 0)
    }

    /// Every id of this namespace (in no particular order).
    pub async fn ids(&self) -> Result<Vec<String>> {
        let mut seen = HashSet::new();
        self.scan(|keys| {
            for key in keys {
                if let Some(id) = self.keys.id(&key) {
                    seen.insert(String::from_utf8_lossy(id).into_owned());
                }
            }
            async { Ok(()) }
        })
        .await?;
        Ok(seen.into_iter().collect())
    }

    /// Removes every record of this namespace and nothing else (`SCAN MATCH` on this
    /// namespace's escaped key pattern + `UNLINK`, page by page). Returns how many.
    pub async fn clear(&self) -> Result<u64> {
        let client = self.client()?;
        let counts = self
            .scan(|keys| {
                let client = client.clone();
                async move {
                    if keys.is_empty() {
                        return Ok(0u64);
                    }
                    let mut cmd = redis::cmd("UNLINK");
                    for key in &keys {
                        cmd.arg(key);
                    }
                    client.query::<u64>(Request::Cmd(&cmd)).await
                }
            })
            .await?;
        Ok(counts.into_iter().sum())
    }

    /// Calls `page` with each `SCAN` page of this namespace's keys.
    async fn scan<F, Fut, T>(&self, mut page: F) -> Result<Vec<T>>
    where
        F: FnMut(Vec<Vec<u8>>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let client = self.client()?;
        let pattern = self.keys.pattern();
        let mut cursor: u64 = 0;
        let mut results = Vec::new();
        loop {
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .to_owned();
            let (next, keys): (u64, Vec<Vec<u8>>) = client.query(Request::Cmd(&cmd)).await?;
            results.push(page(keys).await?);
            if next == 0 {
                return Ok(results);
            }
            cursor = next;
        }
    }

    /// Round trip to the server (connects if needed).
    pub async fn ping(&self) -> Result<()> {
        let cmd: Cmd = redis::cmd("PING");
        self.client()?.query::<()>(Request::Cmd(&cmd)).await
    }
}

fn set_ex(key: Vec<u8>, value: &[u8], ttl: u64) -> Cmd {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(ttl)
        .to_owned()
}
