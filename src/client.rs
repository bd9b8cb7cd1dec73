//! A client of one Redis server, shared by every store with the same settings.
//!
//! One multiplexed socket carries all commands (many in flight at once), so
//! concurrency never needs more sockets: there is no pool to run dry. What bounds the
//! load is a semaphore of `max_inflight` permits: callers past it wait (backpressure),
//! they do not fail.
//!
//! A request (one command or one pipeline) is retried after a connection failure
//! (every command sent here is idempotent):
//! - it is tried again at most `retry_attempts` times, each failure it sees counting
//!   once: a send that failed, or a dial it waited for that failed (the link paces its
//!   dials and shares each one among the callers that wait);
//! - it never runs past `retry_deadline` from its start: a hard bound that cuts any
//!   wait (dial, backoff, breaker, reply);
//! - it times out when its connection delivers no reply for `socket_timeout`
//!   (no progress), however long the request itself takes while replies flow.
//!
//! The circuit breaker (see `breaker.rs`) makes new calls fail fast while the server
//! stays down; calls already retrying wait for its probe within their deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use redis::{Cmd, FromRedisValue, IntoConnectionInfo, Pipeline};
use tokio::sync::Semaphore;

use crate::config::{ConnectionSettings, TlsFiles};
use crate::errors::{self, Error, Result};
use crate::link::{self, DialFailure, Link};
use crate::runtime;

/// One request: a command or a pipeline (a `MULTI`/`EXEC` transaction when atomic),
/// with the size of its largest value so the server's limit is checked before sending.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    kind: Kind<'a>,
    /// `(record id, bytes)` of the largest value in the request.
    largest: Option<(&'a [u8], usize)>,
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Cmd(&'a Cmd),
    Pipeline(&'a Pipeline),
}

impl<'a> Request<'a> {
    pub fn cmd(cmd: &'a Cmd) -> Request<'a> {
        Request {
            kind: Kind::Cmd(cmd),
            largest: None,
        }
    }

    pub fn pipeline(pipe: &'a Pipeline) -> Request<'a> {
        Request {
            kind: Kind::Pipeline(pipe),
            largest: None,
        }
    }

    /// Declares the largest value the request carries (record `id`, `len` bytes).
    pub fn with_largest_value(mut self, id: &'a [u8], len: usize) -> Request<'a> {
        self.largest = Some((id, len));
        self
    }

    /// A value the server would refuse is a final error, found before sending: sent,
    /// it would make the server close the connection (and look like an outage).
    fn check_size(&self, limits: link::ServerLimits) -> Result<()> {
        match self.largest {
            Some((id, len)) if len as u64 > limits.max_bulk_len => Err(Error::Operation(format!(
                "record {:?} is {len} bytes, more than the server accepts (proto-max-bulk-len {} bytes); nothing was written",
                String::from_utf8_lossy(id),
                limits.max_bulk_len
            ))),
            _ => Ok(()),
        }
    }
}

pub struct Client {
    settings: ConnectionSettings,
    secret: Option<String>,
    link: Link,
    inflight: Semaphore,
}

/// How one attempt failed; each retryable failure holds its reason, described and
/// scrubbed.
enum Failure {
    /// No connection could be had (the request was not sent).
    Dial(String),
    /// Sent, and the connection failed under it (reset, stall).
    Sent(String),
    /// The server is busy or failing over (`LOADING`, `TRYAGAIN`, ...): try again later.
    Busy(String),
    /// Nothing a retry would change.
    Final(Error),
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
        let mut redis_info = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(username) = &settings.username {
            redis_info = redis_info.set_username(username);
        }
        if let Some(password) = &settings.password {
            redis_info = redis_info.set_password(password);
        }
        info = info.set_redis_settings(redis_info);
        let redis = open_client(info, &settings.tls)
            .map_err(|e| Error::from_redis(&e, secret.as_deref()))?;
        Ok(Client {
            link: Link::new(redis, &settings),
            inflight: Semaphore::new(settings.max_inflight),
            secret,
            settings,
        })
    }

    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    /// Runs `request`, retrying connection-level failures; returns the typed reply.
    pub async fn query<T: FromRedisValue>(&self, request: Request<'_>) -> Result<T> {
        let deadline = Instant::now() + self.settings.retry_deadline;
        let mut last: Option<String> = None;
        let outcome =
            tokio::time::timeout_at(deadline.into(), self.retry(request, &mut last)).await;
        match outcome {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(
                last.as_deref(),
                &format!(
                    "gave up at redis_retry_deadline = {}s",
                    self.settings.retry_deadline.as_secs_f64()
                ),
            )),
        }
    }

    async fn retry<T: FromRedisValue>(
        &self,
        request: Request<'_>,
        last: &mut Option<String>,
    ) -> Result<T> {
        let attempts = self.settings.retry_attempts;
        let mut retries = 0u32;
        loop {
            let (err, busy) = match self.attempt(request, last.is_some()).await {
                Ok(value) => return Ok(value),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Dial(err)) | Err(Failure::Sent(err)) => (err, false),
                Err(Failure::Busy(err)) => (err, true),
            };
            if retries >= attempts {
                return Err(self.unavailable(
                    Some(&err),
                    &format!(
                        "tried {} times (redis_retry_attempts = {attempts})",
                        retries + 1
                    ),
                ));
            }
            retries += 1;
            log::debug!("retrying after: {err}");
            if busy {
                // The server answered "not now": reconnecting would not help, waiting does.
                tokio::time::sleep(link::backoff(retries)).await;
            }
            *last = Some(err);
        }
    }

    async fn attempt<T: FromRedisValue>(
        &self,
        request: Request<'_>,
        retrying: bool,
    ) -> std::result::Result<T, Failure> {
        let _permit = self
            .inflight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let up = self
            .link
            .connection(retrying)
            .await
            .map_err(|failure| match failure {
                DialFailure::Connection(err) => Failure::Dial(err),
                DialFailure::Final(err) => Failure::Final(err),
            })?;
        request.check_size(up.limits).map_err(Failure::Final)?;
        let mut conn = up.conn;
        let send = async {
            match request.kind {
                Kind::Cmd(cmd) => cmd.query_async::<T>(&mut conn).await,
                Kind::Pipeline(pipe) => pipe.query_async::<T>(&mut conn).await,
            }
        };
        let reply = up.progress.watch(self.settings.socket_timeout, send).await;
        match reply {
            Ok(value) => {
                up.progress.touch();
                self.link.healthy();
                Ok(value)
            }
            Err(err) if errors::is_connection_failure(&err) => {
                let why = errors::describe(&err, self.secret());
                self.link.broken(up.id, &why);
                Err(Failure::Sent(why))
            }
            Err(err) => {
                // The server answered: it is up, whatever it said.
                up.progress.touch();
                self.link.healthy();
                if errors::is_busy(&err) {
                    Err(Failure::Busy(errors::describe(&err, self.secret())))
                } else {
                    Err(Failure::Final(Error::from_redis(&err, self.secret())))
                }
            }
        }
    }

    fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    fn unavailable(&self, why: Option<&str>, how: &str) -> Error {
        let why = why.unwrap_or("no connection");
        Error::Unavailable(format!(
            "Redis at {} is unavailable: {why}; {how}",
            self.link.describe_server()
        ))
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
    registry.insert(settings.clone(), Arc::downgrade(&client));
    Ok(client)
}
