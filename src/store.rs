//! The storage operations, in plain async Rust (no Python): one namespace of records,
//! each a Redis string holding JSON bytes, keyed by [`KeySpace`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::future::try_join_all;
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
    pub fn key(&self, id: &[u8]) -> Vec<u8> {
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

    /// The stored bytes of record `id`. `MGET` rather than `GET`: a key of another
    /// type reads as absent here exactly as it does in [`Self::get_many`].
    pub async fn get(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        let cmd = redis::cmd("MGET").arg(self.keys.key(id)).to_owned();
        let [value]: [Option<Vec<u8>>; 1] = self.client()?.query(Request::cmd(&cmd)).await?;
        Ok(value)
    }

    /// Values aligned with `ids` (duplicates kept). Pages of [`BATCH`] keys go out as
    /// separate requests, all in flight at once: each is small enough that a healthy
    /// server answers it well within the socket timeout, and a page that fails is
    /// retried alone.
    pub async fn get_many(&self, ids: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let client = self.client()?;
        let pages = ids.chunks(BATCH).map(|chunk| {
            let mut cmd = redis::cmd("MGET");
            for id in chunk {
                cmd.arg(self.keys.key(id));
            }
            let client = &client;
            async move {
                client
                    .query::<Vec<Option<Vec<u8>>>>(Request::cmd(&cmd))
                    .await
            }
        });
        let pages = try_join_all(pages).await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Which of `ids` are stored, aligned with `ids`: pipelined `EXISTS`, paged like
    /// [`Self::get_many`].
    pub async fn exists_many(&self, ids: &[Vec<u8>]) -> Result<Vec<bool>> {
        let client = self.client()?;
        let pages = ids.chunks(BATCH).map(|chunk| {
            let mut pipe = Pipeline::with_capacity(chunk.len());
            for id in chunk {
                pipe.cmd("EXISTS").arg(self.keys.key(id));
            }
            let client = &client;
            async move { client.query::<Vec<bool>>(Request::pipeline(&pipe)).await }
        });
        let pages = try_join_all(pages).await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Writes every record whole, all or nothing: one `MSET`, or a `MULTI`/`EXEC` of
    /// `SET key value EX ttl` when the namespace has a TTL (set with the value, never
    /// as a second step). A value larger than the server accepts fails before sending.
    pub async fn put_many(&self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let Some((largest_id, largest)) = records.iter().max_by_key(|(_, v)| v.len()) else {
            return Ok(());
        };
        let single = |id: &[u8], value: &[u8]| match self.settings.ttl {
            None => redis::cmd("SET")
                .arg(self.keys.key(id))
                .arg(value)
                .to_owned(),
            Some(ttl) => set_ex(self.keys.key(id), value, ttl),
        };
        let write = match (self.settings.ttl, records) {
            (_, [(id, value)]) => Write::Cmd(single(id, value)),
            (None, _) => {
                let mut cmd = redis::cmd("MSET");
                for (id, value) in records {
                    cmd.arg(self.keys.key(id)).arg(value);
                }
                Write::Cmd(cmd)
            }
            (Some(ttl), _) => {
                let mut pipe = Pipeline::with_capacity(records.len());
                pipe.atomic();
                for (id, value) in records {
                    pipe.add_command(set_ex(self.keys.key(id), value, ttl))
                        .ignore();
                }
                Write::Pipeline(pipe)
            }
        };
        let request = match &write {
            Write::Cmd(cmd) => Request::cmd(cmd),
            Write::Pipeline(pipe) => Request::pipeline(pipe),
        };
        self.client()?
            .query::<()>(request.with_largest_value(largest_id, largest.len()))
            .await
    }

    /// Whether the record existed.
    pub async fn delete(&self, id: &[u8]) -> Result<bool> {
        let cmd = redis::cmd("UNLINK").arg(self.keys.key(id)).to_owned();
        let removed: u64 = self.client()?.query(Request::cmd(&cmd)).await?;
        Ok(removed > 0)
    }

    /// Every id of this namespace (in no particular order), as stored bytes.
    pub async fn ids(&self) -> Result<Vec<Vec<u8>>> {
        // SCAN may return a key twice (when the table is resized mid-scan).
        let mut seen = HashSet::new();
        self.scan(|keys| {
            for key in keys {
                if let Some(id) = self.keys.id(&key) {
                    seen.insert(id.to_vec());
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
                    client.query::<u64>(Request::cmd(&cmd)).await
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
            let (next, keys): (u64, Vec<Vec<u8>>) = client.query(Request::cmd(&cmd)).await?;
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
        self.client()?.query::<()>(Request::cmd(&cmd)).await
    }
}

/// A write request, owned until it is sent.
enum Write {
    Cmd(Cmd),
    Pipeline(Pipeline),
}

fn set_ex(key: Vec<u8>, value: &[u8], ttl: u64) -> Cmd {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(ttl)
        .to_owned()
}
