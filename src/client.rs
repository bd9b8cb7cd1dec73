//! A connection to one Redis server, shared by every store with the same settings.
//!
//! One multiplexed socket carries all commands (many in flight at once), so
//! concurrency never needs more sockets: there is no pool to run dry. What bounds the
//! load is a semaphore of `max_inflight` permits: callers past it wait (backpressure),
//! they do not fail. Connection-level failures are retried with exponential backoff
//! and jitter within a deadline (every command sent here is idempotent), and a circuit
//! breaker fails fast while the server stays down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline};
use tokio::sync::Semaphore;

use crate::breaker::Breaker;
use crate::config::{ConnectionSettings, EvictionCheck, TlsFiles};
use crate::errors::{is_connection_failure, Error, Result};
use crate::runtime;

/// One request: a command or a pipeline (a `MULTI`/`EXEC` transaction when atomic).
#[derive(Clone, Copy)]
pub enum Request<'a> {
    Cmd(&'a Cmd),
    Pipeline(&'a Pipeline),
}

pub struct Client {
    settings: ConnectionSettings,
    secret: Option<String>,
    redis: redis::Client,
    config: AsyncConnectionConfig,
    /// The live connection and a counter that tells connections apart, so a failure
    /// seen on an old one never throws away its replacement.
    link: RwLock<Option<(u64, MultiplexedConnection)>>,
    connecting: tokio::sync::Mutex<u64>,
    /// Connection attempts started; tells a caller that queued for `connecting`
    /// whether someone else dialed (and failed) while it waited.
    dials: AtomicU64,
    /// Set once the server's eviction policy was checked (on the first connection).
    policy_checked: AtomicBool,
    inflight: Semaphore,
    breaker: Breaker,
}

impl Client {
    fn new(settings: ConnectionSettings) -> Result<Client> {
        install_crypto_provider();
        let secret = settings.secret();
        let mut info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| Error::from_redis(&e, secret.as_deref()))?;
        let mut redis_info = info.redis_settings().clone();
        if let Some(username) = &settings.username {
            redis_info = redis_info.set_username(username);
        }
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password);
        }
        info = info.set_redis_settings(redis_info);
        let redis = open_client(info, &settings.tls)
            .map_err(|e| Error::from_redis(&e, secret.as_deref()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connection_timeout))
            .set_response_timeout(Some(settings.socket_timeout));
        Ok(Client {
            secret,
            redis,
            config,
            link: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(0),
            dials: AtomicU64::new(0),
            policy_checked: AtomicBool::new(false),
            inflight: Semaphore::new(settings.max_inflight),
            breaker: Breaker::new(settings.breaker_threshold, settings.breaker_cooldown),
            settings,
        })
    }

    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    /// Runs `request`, retrying connection-level failures; returns the typed reply.
    pub async fn query<T: FromRedisValue>(&self, request: Request<'_>) -> Result<T> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let failure = match self.attempt(request).await {
                Ok(value) => return Ok(value),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Connection(err)) => err,
            };
            let pause = backoff(attempt);
            let in_time = started.elapsed() + pause < self.settings.retry_deadline;
            let why = self.scrub(&failure);
            if attempt >= self.settings.retry_attempts || !in_time || self.breaker.is_open() {
                return Err(Error::Unavailable(format!(
                    "Redis at {} is unavailable: {why}",
                    self.describe_server()
                )));
            }
            log::debug!("retrying after a connection failure: {why}");
            attempt += 1;
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt<T: FromRedisValue>(
        &self,
        request: Request<'_>,
    ) -> std::result::Result<T, Failure> {
        self.breaker.admit().map_err(|until| {
            Failure::Final(Error::Unavailable(format!(
                "Redis at {} is unavailable (circuit breaker open for {:.1}s more after repeated failures)",
                self.describe_server(),
                until.as_secs_f64()
            )))
        })?;
        let _permit = self
            .inflight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let (id, mut conn) = self.connection().await?;
        let reply = match request {
            Request::Cmd(cmd) => cmd.query_async::<T>(&mut conn).await,
            Request::Pipeline(pipe) => pipe.query_async::<T>(&mut conn).await,
        };
        match reply {
            Ok(value) => {
                self.breaker.success();
                Ok(value)
            }
            Err(err) => Err(self.classify(err, Some(id))),
        }
    }

    /// Sorts an error into retryable or final, forgetting a broken connection.
    fn classify(&self, err: redis::RedisError, connection: Option<u64>) -> Failure {
        if is_connection_failure(&err) {
            self.breaker.failure();
            if let Some(id) = connection {
                self.forget(id);
            }
            Failure::Connection(err)
        } else {
            // The server answered: it is up, whatever it said.
            self.breaker.success();
            Failure::Final(Error::from_redis(&err, self.secret.as_deref()))
        }
    }

    /// The live connection, opening one if there is none.
    async fn connection(&self) -> std::result::Result<(u64, MultiplexedConnection), Failure> {
        if let Some((id, conn)) = self.link.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok((*id, conn.clone()));
        }
        // One caller connects; the others wait for its result instead of dialing too.
        let dials_seen = self.dials.load(Ordering::Acquire);
        let mut counter = self.connecting.lock().await;
        if let Some((id, conn)) = self.link.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok((*id, conn.clone()));
        }
        if self.dials.load(Ordering::Acquire) != dials_seen {
            // The attempt we waited for failed. Share its failure instead of queueing
            // for another full connect timeout: N waiters would otherwise take N times
            // as long, past any deadline. (Not counted again by the breaker.)
            return Err(Failure::Connection(redis::RedisError::from(
                std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the connection attempt this call waited for failed",
                ),
            )));
        }
        self.dials.fetch_add(1, Ordering::AcqRel);
        let conn = self
            .redis
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| self.classify(e, None))?;
        if !self.policy_checked.load(Ordering::Acquire) {
            self.check_eviction_policy(conn.clone()).await?;
            self.policy_checked.store(true, Ordering::Release);
        }
        *counter += 1;
        let id = *counter;
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some((id, conn.clone()));
        Ok((id, conn))
    }

    fn forget(&self, id: u64) {
        let mut link = self.link.write().unwrap_or_else(|e| e.into_inner());
        if link.as_ref().is_some_and(|(current, _)| *current == id) {
            *link = None;
        }
    }

    /// An `allkeys-*` policy may evict documents and chunks, which have no TTL and
    /// cannot be recomputed. Servers that disable `CONFIG` are tolerated.
    async fn check_eviction_policy(
        &self,
        mut conn: MultiplexedConnection,
    ) -> std::result::Result<(), Failure> {
        if self.settings.eviction_check == EvictionCheck::Ignore {
            return Ok(());
        }
        let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        let policy = match reply {
            Ok(pair) => pair.get(1).cloned().unwrap_or_default(),
            Err(err) if is_connection_failure(&err) => return Err(self.classify(err, None)),
            Err(err) => {
                let why = self.scrub(&err);
                log::debug!("cannot read maxmemory-policy (CONFIG disabled?): {why}");
                return Ok(());
            }
        };
        if !policy.starts_with("allkeys-") {
            return Ok(());
        }
        let message = format!(
            "Redis at {} has maxmemory-policy {policy}: under memory pressure it evicts \
             records without a TTL (documents, chunks); use volatile-lru or noeviction",
            self.describe_server()
        );
        if self.settings.eviction_check == EvictionCheck::Refuse {
            return Err(Failure::Final(Error::Operation(format!(
                "{message} (refused because redis_eviction_check is \"refuse\")"
            ))));
        }
        log::warn!("{message}");
        Ok(())
    }

    /// An error's text with the password removed: everything logged or raised goes
    /// through here.
    fn scrub(&self, err: &redis::RedisError) -> String {
        crate::errors::scrub(&err.to_string(), self.secret.as_deref())
    }

    /// The server's address without credentials, for messages.
    fn describe_server(&self) -> String {
        self.redis.get_connection_info().addr().to_string()
    }

    /// Sends PING now and then so a dead socket is found before a caller needs it.
    fn spawn_health_check(client: &Arc<Client>) {
        let interval = client.settings.health_check_interval;
        if interval.is_zero() {
            return;
        }
        let weak: Weak<Client> = Arc::downgrade(client);
        runtime::runtime().spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(client) = weak.upgrade() else { return };
                let current = client
                    .link
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if let Some((id, mut conn)) = current {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut conn).await;
                    if let Err(err) = pong {
                        if is_connection_failure(&err) {
                            let why = client.scrub(&err);
                            log::debug!("health check failed, will reconnect: {why}");
                            client.forget(id);
                        }
                    }
                }
            }
        });
    }
}

/// A redis-rs client; with TLS files, one that trusts that CA and/or presents that
/// client certificate (`rediss://` without files uses the system's roots).
fn open_client(info: redis::ConnectionInfo, tls: &TlsFiles) -> redis::RedisResult<redis::Client> {
    if *tls == TlsFiles::default() {
        return redis::Client::open(info);
    }
    let read = |path: &String| {
        std::fs::read(path).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read a TLS file",
                format!("{path}: {e}"),
            ))
        })
    };
    let client_tls = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    let root_cert = tls.ca_cert.as_ref().map(read).transpose()?;
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
}

enum Failure {
    /// The server did not answer: worth another try.
    Connection(redis::RedisError),
    /// Nothing a retry would change.
    Final(Error),
}

/// Exponential backoff with jitter: 25 ms, 50 ms, 100 ms, ... capped at 1 s, each
/// scaled by a random factor in [0.5, 1] so clients that failed together spread out.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(25).saturating_mul(1 << attempt.min(6));
    base.min(Duration::from_secs(1))
        .mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// redis-rs compiles rustls without choosing a crypto provider: without one, the
/// first `rediss://` connection would panic.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means the process already has a provider (another library set one): fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

type Registry = HashMap<ConnectionSettings, Weak<Client>>;
static CLIENTS: Mutex<Option<(u64, Registry)>> = Mutex::new(None);

/// The client for `settings`, shared with every store that uses the same settings.
/// Creating one does no I/O: the connection opens on the first command.
pub fn shared(settings: &ConnectionSettings) -> Result<Arc<Client>> {
    let generation = runtime::generation();
    let mut slot = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_none_or(|(g, _)| *g != generation) {
        // A forked child must not touch the parent's connections: leak them.
        if let Some(stale) = slot.take() {
            std::mem::forget(stale);
        }
        *slot = Some((generation, HashMap::new()));
    }
    let registry = &mut slot.as_mut().expect("set above").1;
    if let Some(client) = registry.get(settings).and_then(Weak::upgrade) {
        return Ok(client);
    }
    registry.retain(|_, weak| weak.strong_count() > 0);
    let client = Arc::new(Client::new(settings.clone())?);
    Client::spawn_health_check(&client);
    registry.insert(settings.clone(), Arc::downgrade(&client));
    Ok(client)
}
