//! The master behind Redis Sentinel: a single-server topology whose link dials whatever
//! server the sentinels name as master at the time of the dial.
//!
//! A failover must move the writes to the new master quickly, and never leave them on
//! the old one (which keeps acknowledging writes until it is demoted, and they are
//! lost). So the client:
//! - asks the sentinels for the master on every dial, and checks `ROLE` on the new
//!   connection (a server that is not a master is not used);
//! - asks them again every [`WATCH_EVERY`] and leaves a connection whose server is no
//!   longer the one they name (within that period of the promotion);
//! - leaves at once on `READONLY` (a write reached a demoted master) or a broken
//!   connection, and redials.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;

use crate::connection::Wire;
use redis::{AsyncConnectionConfig, Cmd};

use super::single::Single;
use super::{Key, Measure, OnPage, ServerReply, Topology, Value};
use crate::config::{ConnectionSettings, SentinelSettings};
use crate::errors::{self, Error, Result};
use crate::link::{DialFailure, Target};
use crate::node::{redis_client_with, Auth};
use crate::runtime;

/// How often the sentinels are asked whether the master moved.
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub struct Sentinel {
    single: Single,
    resolver: Arc<Resolver>,
}

struct Resolver {
    settings: ConnectionSettings,
    sentinel: SentinelSettings,
    /// A client per sentinel (`host:port`), with the sentinels' credentials.
    sentinels: Vec<(String, redis::Client)>,
    /// A connection per sentinel, opened on first use.
    connections: tokio::sync::Mutex<Vec<Option<MultiplexedConnection>>>,
    /// `host:port` of the master the link dialed last.
    dialed: Mutex<Option<String>>,
}

pub fn open(sentinel: &SentinelSettings, settings: &ConnectionSettings) -> Result<Sentinel> {
    let auth = Auth {
        username: sentinel.username.clone(),
        password: sentinel.password.clone(),
    };
    let sentinels = sentinel
        .url
        .sentinels
        .iter()
        .map(|host| {
            let url = sentinel.url.sentinel_url(host, sentinel.tls);
            Ok((host.clone(), redis_client_with(&url, &auth, settings)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let resolver = Arc::new(Resolver {
        settings: settings.clone(),
        sentinel: sentinel.clone(),
        connections: tokio::sync::Mutex::new(vec![None; sentinels.len()]),
        sentinels,
        dialed: Mutex::new(None),
    });
    let sentinel = Sentinel {
        single: Single::on(Box::new(SentinelTarget(resolver.clone())), settings),
        resolver,
    };
    Ok(sentinel)
}

impl Sentinel {
    /// Starts the watcher; it stops when the topology is dropped.
    pub fn watch(self: &Arc<Self>) {
        let weak: Weak<Sentinel> = Arc::downgrade(self);
        runtime::runtime().spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(sentinel) = weak.upgrade() else {
                    return;
                };
                let dialed = sentinel.resolver.dialed();
                let Some(dialed) = dialed else { continue };
                if let Ok(Some(now)) = sentinel.resolver.ask().await {
                    if now != dialed {
                        sentinel.single.node().link().invalidate(&format!(
                            "the sentinels name {now} as master of {} now",
                            sentinel.resolver.sentinel.url.master_name
                        ));
                    }
                }
            }
        });
    }
}

impl Resolver {
    fn dialed(&self) -> Option<String> {
        self.dialed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn describe(&self) -> String {
        let at = self
            .dialed()
            .map(|a| format!(" (at {a})"))
            .unwrap_or_default();
        let sentinels: Vec<&str> = self.sentinels.iter().map(|(h, _)| h.as_str()).collect();
        format!(
            "the master {:?}{at} of the sentinels {}",
            self.sentinel.url.master_name,
            sentinels.join(",")
        )
    }

    /// `host:port` of the master, from the first sentinel that answers; `Ok(None)` when
    /// the sentinels that answered do not know the master's name.
    async fn ask(&self) -> std::result::Result<Option<String>, String> {
        let mut connections = self.connections.lock().await;
        let mut last = "no sentinel answered".to_owned();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.connection_timeout))
            .set_response_timeout(Some(self.settings.socket_timeout));
        let secret = self.sentinel.password.as_deref();
        for (i, (host, client)) in self.sentinels.iter().enumerate() {
            if connections[i].is_none() {
                match client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(conn) => connections[i] = Some(conn),
                    Err(err) => {
                        last = format!("sentinel {host}: {}", errors::describe(&err, secret));
                        continue;
                    }
                }
            }
            let conn = connections[i].as_mut().expect("connected above");
            let reply: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.sentinel.url.master_name)
                .query_async(conn)
                .await;
            match reply {
                Ok(Some((host, port))) => return Ok(Some(format!("{host}:{port}"))),
                Ok(None) => return Ok(None),
                Err(err) => {
                    if errors::is_connection_failure(&err) {
                        connections[i] = None;
                    }
                    last = format!("sentinel {host}: {}", errors::describe(&err, secret));
                }
            }
        }
        Err(last)
    }
}

struct SentinelTarget(Arc<Resolver>);

impl Target for SentinelTarget {
    fn resolve(&self) -> BoxFuture<'_, std::result::Result<redis::Client, DialFailure>> {
        Box::pin(async move {
            let resolver = &self.0;
            let address = match resolver.ask().await {
                Ok(Some(address)) => address,
                Ok(None) => {
                    return Err(DialFailure::Final(Error::Config(format!(
                        "the sentinels do not know a master named {:?} (redis_url)",
                        resolver.sentinel.url.master_name
                    ))))
                }
                Err(why) => return Err(DialFailure::Connection(why)),
            };
            let (host, port) = address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .ok_or_else(|| DialFailure::Connection(format!("bad master address {address}")))?;
            let url = resolver.sentinel.url.master_url(host, port);
            let client =
                crate::node::redis_client(&url, &resolver.settings).map_err(DialFailure::Final)?;
            *resolver.dialed.lock().unwrap_or_else(|e| e.into_inner()) = Some(address);
            Ok(client)
        })
    }

    fn verify<'a>(
        &'a self,
        conn: &'a mut Wire,
    ) -> BoxFuture<'a, std::result::Result<(), DialFailure>> {
        Box::pin(async move {
            let role: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(conn).await;
            let is_master = match &role {
                Ok(redis::Value::Array(items)) => matches!(
                    items.first(),
                    Some(redis::Value::BulkString(r)) if r.as_slice() == b"master"
                ),
                // The server said why it will not answer (NOAUTH, ...): that is the error.
                Err(err) if errors::must_stop(err) => {
                    let secret = self.0.settings.secret();
                    return Err(DialFailure::Final(Error::from_redis(
                        err,
                        secret.as_deref(),
                    )));
                }
                _ => false,
            };
            if is_master {
                Ok(())
            } else {
                Err(DialFailure::Connection(format!(
                    "{} is not a master (a failover is in progress)",
                    self.0.describe()
                )))
            }
        })
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    /// The master moves between servers; its name does not.
    fn metrics_name(&self) -> String {
        format!("sentinel/{}", self.0.sentinel.url.master_name)
    }
}

impl Topology for Sentinel {
    fn get_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<Value>>>> {
        self.single.get_many(keys)
    }

    fn exists_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<bool>>> {
        self.single.exists_many(keys)
    }

    fn measure<'a>(&'a self, keys: &'a [Key], what: Measure) -> BoxFuture<'a, Result<Vec<u64>>> {
        self.single.measure(keys, what)
    }

    fn expire_many<'a>(&'a self, keys: &'a [Key], seconds: u64) -> BoxFuture<'a, Result<()>> {
        self.single.expire_many(keys, seconds)
    }

    fn put_many<'a>(
        &'a self,
        records: &'a [(Key, Value)],
        ttl: Option<u64>,
        largest: (&'a [u8], usize),
    ) -> BoxFuture<'a, Result<()>> {
        self.single.put_many(records, ttl, largest)
    }

    fn unlink_many<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<u64>> {
        self.single.unlink_many(keys)
    }

    fn scan<'a>(&'a self, pattern: &'a [u8], page: OnPage<'a>) -> BoxFuture<'a, Result<()>> {
        self.single.scan(pattern, page)
    }

    fn each_server<'a>(&'a self, cmd: &'a Cmd) -> BoxFuture<'a, Result<Vec<ServerReply>>> {
        self.single.each_server(cmd)
    }
}
