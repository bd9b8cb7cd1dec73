//! One server (also the master behind Sentinel, through a resolving link).
//!
//! Reads go out as pages of [`PAGE`] keys, each its own request, all in flight at once:
//! each page is small enough that a healthy server answers it well within the socket
//! timeout, and a page that fails is retried alone. A write batch is one request, all
//! or nothing: `MSET`, or `MULTI`/`EXEC` of `SET ... EX` when there is a TTL.

use std::time::Instant;

use futures_util::future::{try_join_all, BoxFuture};
use redis::{Cmd, Pipeline};

use super::{Key, Measure, OnPage, ServerReply, Topology, Value};
use crate::client::Request;
use crate::config::ConnectionSettings;
use crate::errors::Result;
use crate::link::{Fixed, Target};
use crate::node::{redis_client, Node};

/// Keys per `MGET` / `EXISTS` pipeline / `UNLINK`: big enough for few round trips,
/// small enough that one command never stalls the server.
pub const PAGE: usize = 1000;

/// The `SCAN` page size (`COUNT`): a hint of how many slots of the keyspace one call
/// visits; 10,000 costs the server about a millisecond, and a scan of a namespace
/// fewer round trips.
pub const SCAN_COUNT: usize = 10_000;

pub struct Single {
    node: Node,
}

impl Single {
    pub fn open(settings: &ConnectionSettings) -> Result<Single> {
        let client = redis_client(&settings.url, settings)?;
        Ok(Single::on(Box::new(Fixed(client)), settings))
    }

    /// A single-server topology on whatever server `target` names.
    pub fn on(target: Box<dyn Target>, settings: &ConnectionSettings) -> Single {
        Single {
            node: Node::new(target, settings),
        }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }
}

/// `SET key value [EX ttl]`.
pub fn set(key: &[u8], value: &[u8], ttl: Option<u64>) -> Cmd {
    // Sized up front: a record's bytes are copied into the command once, not regrown.
    let mut cmd = Cmd::with_capacity(5, key.len() + value.len() + 32);
    cmd.arg("SET").arg(key).arg(value);
    if let Some(ttl) = ttl {
        cmd.arg("EX").arg(ttl);
    }
    cmd
}

/// The pages of `keys`, each turned into one request by `build` and sent on `node`, all
/// in flight at once; results flattened in order.
pub async fn paged<T, R>(node: &Node, keys: &[Key], build: impl Fn(&[Key]) -> R) -> Result<Vec<T>>
where
    T: redis::FromRedisValue,
    R: Into<Owned>,
{
    let pages = keys.chunks(PAGE).map(|chunk| {
        let request: Owned = build(chunk).into();
        async move { node.query::<Vec<T>>(request.request()).await }
    });
    Ok(try_join_all(pages).await?.into_iter().flatten().collect())
}

/// A request owned until it is sent.
pub enum Owned {
    Cmd(Cmd),
    Pipeline(Pipeline),
}

impl From<Cmd> for Owned {
    fn from(cmd: Cmd) -> Owned {
        Owned::Cmd(cmd)
    }
}

impl From<Pipeline> for Owned {
    fn from(pipe: Pipeline) -> Owned {
        Owned::Pipeline(pipe)
    }
}

impl Owned {
    pub fn request(&self) -> Request<'_> {
        match self {
            Owned::Cmd(cmd) => Request::cmd(cmd),
            Owned::Pipeline(pipe) => Request::pipeline(pipe),
        }
    }
}

/// `command key...` (`MGET`, `UNLINK`).
fn with_keys(command: &str, keys: &[Key]) -> Cmd {
    let mut cmd = redis::cmd(command);
    for key in keys {
        cmd.arg(key);
    }
    cmd
}

/// A pipeline of `command(key)` for each key.
fn per_key(keys: &[Key], command: impl Fn(&[u8]) -> Cmd) -> Pipeline {
    let mut pipe = Pipeline::with_capacity(keys.len());
    for key in keys {
        pipe.add_command(command(key));
    }
    pipe
}

impl Topology for Single {
    fn get_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<Value>>>> {
        Box::pin(paged(&self.node, keys, |page| with_keys("MGET", page)))
    }

    fn exists_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(paged(&self.node, keys, |page| {
            per_key(page, |key| redis::cmd("EXISTS").arg(key).to_owned())
        }))
    }

    fn measure<'a>(&'a self, keys: &'a [Key], what: Measure) -> BoxFuture<'a, Result<Vec<u64>>> {
        Box::pin(async move {
            let sizes: Vec<Option<u64>> =
                paged(&self.node, keys, |page| per_key(page, |key| what.cmd(key))).await?;
            Ok(sizes.into_iter().map(Option::unwrap_or_default).collect())
        })
    }

    fn expire_many<'a>(&'a self, keys: &'a [Key], seconds: u64) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let set: Vec<bool> = paged(&self.node, keys, |page| {
                let mut pipe = Pipeline::with_capacity(page.len());
                for key in page {
                    pipe.cmd("EXPIRE").arg(key).arg(seconds);
                }
                pipe
            })
            .await?;
            drop(set);
            Ok(())
        })
    }

    fn put_many<'a>(
        &'a self,
        records: &'a [(Key, Value)],
        ttl: Option<u64>,
        largest: (&'a [u8], usize),
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let write: Owned = match (ttl, records) {
                (_, [(key, value)]) => set(key, value, ttl).into(),
                (None, _) => {
                    let bytes: usize = records.iter().map(|(k, v)| k.len() + v.len()).sum();
                    let mut cmd = Cmd::with_capacity(1 + 2 * records.len(), 4 + bytes);
                    cmd.arg("MSET");
                    for (key, value) in records {
                        cmd.arg(key).arg(value);
                    }
                    cmd.into()
                }
                (Some(_), _) => {
                    let mut pipe = Pipeline::with_capacity(records.len());
                    pipe.atomic();
                    for (key, value) in records {
                        pipe.add_command(set(key, value, ttl)).ignore();
                    }
                    pipe.into()
                }
            };
            let request = write.request().with_largest_value(largest.0, largest.1);
            self.node.query::<()>(request).await
        })
    }

    fn unlink_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let pages = keys.chunks(PAGE).map(|chunk| async move {
                let cmd = with_keys("UNLINK", chunk);
                self.node.query::<u64>(Request::cmd(&cmd)).await
            });
            Ok(try_join_all(pages).await?.into_iter().sum())
        })
    }

    fn scan<'a>(&'a self, pattern: &'a [u8], page: OnPage<'a>) -> BoxFuture<'a, Result<()>> {
        Box::pin(scan_node(&self.node, pattern, page))
    }

    fn each_server<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Vec<ServerReply>>> {
        Box::pin(async move { Ok(vec![on_server(&self.node, cmd).await?]) })
    }
}

/// `cmd` on `node`, timed.
pub async fn on_server(node: &Node, cmd: &Cmd) -> Result<ServerReply> {
    let started = Instant::now();
    let reply = node.query(Request::cmd(cmd)).await?;
    Ok(ServerReply {
        server: node.describe(),
        reply,
        elapsed: started.elapsed(),
    })
}

/// `SCAN MATCH pattern` over one node, page by page. The next page is asked for
/// before this one is handed to `page`, so the server scans while the caller works.
pub async fn scan_node(node: &Node, pattern: &[u8], page: OnPage<'_>) -> Result<()> {
    let scan = |cursor: u64| {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        async move { node.query::<(u64, Vec<Key>)>(Request::cmd(&cmd)).await }
    };
    let (mut cursor, mut keys) = scan(0).await?;
    while cursor != 0 {
        let use_page = async {
            // The next SCAN is queued for the connection's task; let it go out (on
            // this worker, maybe) before the page keeps the thread busy.
            tokio::task::yield_now().await;
            page(keys)
        };
        let (next, ()) = futures_util::future::join(scan(cursor), use_page).await;
        (cursor, keys) = next?;
    }
    page(keys);
    Ok(())
}
