//! The connection to one server: opened lazily, one dial at a time, re-opened after it
//! breaks.
//!
//! - A dial runs in its own task and every caller that needs a connection meanwhile
//!   waits for that dial's outcome: N callers never make N dials, and a caller that
//!   gives up (deadline, cancel, Ctrl-C) never cancels the dial the others wait for.
//! - After a failed dial the next one waits a backoff (100 ms doubling to 1 s, with
//!   jitter), so a restarting server is not hammered and a brief outage costs a few
//!   dials, not one per caller.
//! - Each dial that fails to reach the server and each broken connection is one event
//!   for the circuit breaker (a dial the server refuses, e.g. a wrong password, is not).
//! - Each connection keeps a progress clock (the last reply it delivered): a request
//!   times out when the connection delivered nothing for `socket_timeout`, not when
//!   the request as a whole took longer than that (a big batch against a busy but
//!   healthy server keeps making progress).
//! - Right after connecting, the server's limits are read once (`proto-max-bulk-len`)
//!   and its eviction policy checked.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, Either};
use redis::{AsyncConnectionConfig, RedisError, RedisResult};
use tokio::sync::watch;

use crate::breaker::{Breaker, Phase};
use crate::config::{ConnectionSettings, EvictionCheck};
use crate::connection::Wire;
use crate::errors::{self, Error};
use crate::metrics::{self, BreakerState, ServerMetrics};
use crate::runtime;

/// What the server accepts, read once per connection.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// `proto-max-bulk-len`: the largest argument (key or value) the server accepts.
    pub max_bulk_len: u64,
}

/// Redis' default `proto-max-bulk-len` (512 MB), assumed where `CONFIG` is disabled.
const DEFAULT_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;

/// A live connection as handed to a request.
#[derive(Clone)]
pub struct Up {
    /// The number of the dial that opened it: names it for `broken` and the breaker.
    pub id: u64,
    pub conn: Wire,
    pub progress: Arc<Progress>,
    pub limits: ServerLimits,
}

/// Why no connection could be had.
#[derive(Clone, Debug)]
pub enum DialFailure {
    /// The server could not be reached (or closed on us): worth waiting for. Holds
    /// the reason, described and scrubbed.
    Connection(String),
    /// The server answered no (authentication, refused eviction policy): final.
    Final(Error),
}

enum Stage {
    Down,
    Dialing(watch::Receiver<Option<Result<Up, DialFailure>>>),
    Up(Up),
}

struct State {
    phase: Stage,
    /// Failed dials in a row (paces the next one).
    failed_dials: u32,
    /// No dial starts before this instant.
    next_dial: Instant,
    /// A final failure of the last dial, handed to callers until `next_dial`.
    last_final: Option<Error>,
    /// Whether any dial succeeded yet (the next success is then a reconnect).
    was_up: bool,
}

/// Where a link dials: a fixed server, or the server a resolver names at the time of
/// the dial (the master behind Sentinel).
pub trait Target: Send + Sync + 'static {
    /// The client to dial now.
    fn resolve(&self) -> BoxFuture<'_, Result<redis::Client, DialFailure>>;

    /// Checks a fresh connection before any request uses it (Sentinel: that the server
    /// is still a master).
    fn verify<'a>(&'a self, _conn: &'a mut Wire) -> BoxFuture<'a, Result<(), DialFailure>> {
        Box::pin(async { Ok(()) })
    }

    /// The server, for messages (never with credentials).
    fn describe(&self) -> String;

    /// The server's name in metrics: stable for the link's life, never credentials.
    fn metrics_name(&self) -> String {
        self.describe()
    }
}

/// A server at a fixed address.
pub struct Fixed(pub redis::Client);

impl Target for Fixed {
    fn resolve(&self) -> BoxFuture<'_, Result<redis::Client, DialFailure>> {
        Box::pin(async { Ok(self.0.clone()) })
    }

    fn describe(&self) -> String {
        self.0.get_connection_info().addr().to_string()
    }
}

pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    target: Box<dyn Target>,
    config: AsyncConnectionConfig,
    settings: ConnectionSettings,
    secret: Option<String>,
    breaker: Breaker,
    dials: AtomicU64,
    state: Mutex<State>,
    metrics: Arc<ServerMetrics>,
}

/// A link that does not keep its connection alive: for reading its gauges.
pub struct WeakLink(Weak<Inner>);

impl WeakLink {
    /// Whether the link is connected and its breaker's state; `None` once it is gone.
    pub fn status(&self) -> Option<(bool, BreakerState)> {
        let inner = self.0.upgrade()?;
        let connected = matches!(inner.state().phase, Stage::Up(_));
        let breaker = match inner.breaker.phase() {
            Phase::Closed => BreakerState::Closed,
            Phase::HalfOpen => BreakerState::HalfOpen,
            Phase::Open(_) => BreakerState::Open,
        };
        Some((connected, breaker))
    }
}

impl Link {
    pub fn new(target: Box<dyn Target>, settings: &ConnectionSettings) -> Link {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connection_timeout))
            // Requests are timed by progress (see `Progress`), not by redis-rs.
            .set_response_timeout(None);
        let metrics = metrics::server(&target.metrics_name());
        let link = Link {
            inner: Arc::new(Inner {
                target,
                metrics,
                config,
                secret: settings.secret(),
                breaker: Breaker::new(settings.breaker_threshold, settings.breaker_cooldown),
                settings: settings.clone(),
                dials: AtomicU64::new(0),
                state: Mutex::new(State {
                    phase: Stage::Down,
                    failed_dials: 0,
                    next_dial: Instant::now(),
                    last_final: None,
                    was_up: false,
                }),
            }),
        };
        link.spawn_health_check();
        link
    }

    /// The server's address without credentials, for messages.
    pub fn describe_server(&self) -> String {
        self.inner.describe_server()
    }

    /// The counters of this link's server.
    pub fn metrics(&self) -> &ServerMetrics {
        &self.inner.metrics
    }

    pub fn downgrade(&self) -> WeakLink {
        WeakLink(Arc::downgrade(&self.inner))
    }

    /// A live connection, dialing if there is none. `retrying` callers (they already
    /// saw a failure) wait out an open breaker for its probe; fresh callers fail fast.
    /// The caller bounds the wait by its deadline (it may drop this future).
    pub async fn connection(&self, retrying: bool) -> Result<Up, DialFailure> {
        loop {
            let wait = {
                let mut state = self.inner.state();
                match &state.phase {
                    Stage::Up(up) => return Ok(up.clone()),
                    Stage::Dialing(rx) => Wait::Dial(rx.clone()),
                    Stage::Down => match self.inner.breaker.phase() {
                        Phase::Open(until) if !retrying => {
                            return Err(DialFailure::Final(self.inner.breaker_open(until)))
                        }
                        Phase::Open(until) => Wait::Until(until),
                        _ if Instant::now() < state.next_dial => match &state.last_final {
                            Some(err) => return Err(DialFailure::Final(err.clone())),
                            None => Wait::Until(state.next_dial),
                        },
                        _ => Wait::Dial(self.inner.start_dial(&mut state)),
                    },
                }
            };
            match wait {
                Wait::Until(instant) => tokio::time::sleep_until(instant.into()).await,
                Wait::Dial(mut rx) => {
                    let outcome = match rx.wait_for(Option::is_some).await {
                        Ok(outcome) => outcome.clone().expect("waited for Some"),
                        // The dial task is gone (runtime shutting down): try again.
                        Err(_) => continue,
                    };
                    return outcome;
                }
            }
        }
    }

    /// Connection `id` failed (reset, stalled, ...): forget it and count the event.
    pub fn broken(&self, id: u64, why: &str) {
        self.inner.broken(id, why);
    }

    /// Drops the live connection without counting a failure: the next request dials
    /// again (Sentinel: the master moved).
    pub fn invalidate(&self, why: &str) {
        let mut state = self.inner.state();
        if matches!(state.phase, Stage::Up(_)) {
            state.phase = Stage::Down;
            state.next_dial = Instant::now();
            drop(state);
            log::info!("leaving Redis at {}: {why}", self.inner.describe_server());
        }
    }

    /// A reply arrived: the server is up.
    pub fn healthy(&self) {
        self.inner.healthy();
    }

    /// Sends PING now and then so a dead socket is found before a caller needs it.
    fn spawn_health_check(&self) {
        let interval = self.inner.settings.health_check_interval;
        if interval.is_zero() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let timeout = self.inner.settings.socket_timeout;
        runtime::runtime().spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let current = match &inner.state().phase {
                    Stage::Up(up) => up.clone(),
                    _ => continue,
                };
                let Up {
                    id,
                    mut conn,
                    progress,
                    ..
                } = current;
                let ping = redis::cmd("PING");
                let reply = progress
                    .watch(timeout, ping.query_async::<()>(&mut conn))
                    .await;
                match reply {
                    Ok(()) => progress.touch(),
                    Err(err) if errors::is_connection_failure(&err) => {
                        inner.broken(id, &format!("health check failed: {}", inner.scrub(&err)))
                    }
                    Err(_) => progress.touch(),
                }
            }
        });
    }
}

enum Wait {
    Until(Instant),
    Dial(watch::Receiver<Option<Result<Up, DialFailure>>>),
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn describe_server(&self) -> String {
        self.target.describe()
    }

    fn scrub(&self, err: &RedisError) -> String {
        errors::describe(err, self.secret.as_deref())
    }

    fn breaker_open(&self, until: Instant) -> Error {
        let left = until.saturating_duration_since(Instant::now());
        Error::Unavailable(format!(
            "Redis at {} is unavailable (circuit breaker open for {:.1}s more after repeated connection failures)",
            self.describe_server(),
            left.as_secs_f64()
        ))
    }

    /// Starts a dial in its own task; the state becomes `Dialing`.
    fn start_dial(
        self: &Arc<Self>,
        state: &mut State,
    ) -> watch::Receiver<Option<Result<Up, DialFailure>>> {
        let id = self.dials.fetch_add(1, Ordering::AcqRel) + 1;
        let (tx, rx) = watch::channel(None);
        state.phase = Stage::Dialing(rx.clone());
        let inner = self.clone();
        runtime::runtime().spawn(async move {
            let outcome = inner.dial(id).await;
            inner.finish_dial(id, &outcome);
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn dial(&self, id: u64) -> Result<Up, DialFailure> {
        let timeout = self.settings.connection_timeout;
        let mut dialed: Option<redis::Client> = None;
        let connect = async {
            let client = dialed.insert(self.target.resolve().await?);
            let mut conn = Wire::open(client, &self.config)
                .await
                .map_err(|e| self.dial_failure(&e))?;
            self.target.verify(&mut conn).await?;
            let limits = self.inspect_server(&mut conn).await?;
            Ok(Up {
                id,
                conn,
                progress: Arc::new(Progress::new()),
                limits,
            })
        };
        let outcome = match tokio::time::timeout(timeout, connect).await {
            Ok(outcome) => outcome,
            Err(_) => Err(DialFailure::Connection(format!(
                "no connection within redis_connection_timeout = {}s",
                timeout.as_secs_f64()
            ))),
        };
        match outcome {
            Err(DialFailure::Connection(why)) if closed_on_us(&why) => {
                let diagnosis = match &dialed {
                    Some(client) => self.diagnose(client).await,
                    None => None,
                };
                Err(diagnosis.unwrap_or(DialFailure::Connection(why)))
            }
            outcome => outcome,
        }
    }

    fn dial_failure(&self, err: &RedisError) -> DialFailure {
        if errors::is_connection_failure(err) {
            DialFailure::Connection(self.scrub(err))
        } else {
            DialFailure::Final(Error::from_redis(err, self.secret.as_deref()))
        }
    }

    /// The connection was closed under a dial: ask the address directly what it is.
    /// A Redis server at `maxclients` writes its refusal and closes before a client
    /// reads it, and something that is not Redis (an HTTP server) may close at once;
    /// a bare `PING` on a fresh socket and its first reply line tell them apart.
    #[cold]
    async fn diagnose(&self, client: &redis::Client) -> Option<DialFailure> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let probe = async {
            let mut reply = vec![0u8; 256];
            let n = match client.get_connection_info().addr() {
                redis::ConnectionAddr::Tcp(host, port) => {
                    let mut socket = tokio::net::TcpStream::connect((host.as_str(), *port))
                        .await
                        .ok()?;
                    socket.write_all(b"PING\r\n").await.ok()?;
                    socket.read(&mut reply).await.ok()?
                }
                #[cfg(unix)]
                redis::ConnectionAddr::Unix(path) => {
                    let mut socket = tokio::net::UnixStream::connect(path).await.ok()?;
                    socket.write_all(b"PING\r\n").await.ok()?;
                    socket.read(&mut reply).await.ok()?
                }
                // TLS: the handshake itself would have failed differently.
                _ => return None,
            };
            reply.truncate(n);
            Some(reply)
        };
        let reply = tokio::time::timeout(Duration::from_millis(500), probe)
            .await
            .ok()??;
        let line = String::from_utf8_lossy(&reply);
        let line = line.lines().next().unwrap_or_default();
        match line.as_bytes().first() {
            Some(b'-') => Some(DialFailure::Connection(errors::refused_connection(
                line[1..].trim_start_matches("ERR "),
            ))),
            Some(
                b'+' | b':' | b'$' | b'*' | b'_' | b'%' | b'>' | b'#' | b'=' | b',' | b'(' | b'|'
                | b'~',
            ) => None,
            Some(_) => Some(DialFailure::Final(Error::Unavailable(format!(
                "Redis at {}: {}",
                self.describe_server(),
                errors::NOT_REDIS
            )))),
            None => None,
        }
    }

    /// Reads the server's limits and checks its eviction policy. `CONFIG` may be
    /// disabled or forbidden (managed services, ACL users): then defaults apply.
    async fn inspect_server(&self, conn: &mut Wire) -> Result<ServerLimits, DialFailure> {
        let mut pipe = redis::pipe();
        pipe.cmd("CONFIG").arg("GET").arg("proto-max-bulk-len");
        pipe.cmd("CONFIG").arg("GET").arg("maxmemory-policy");
        let reply: redis::RedisResult<(Vec<String>, Vec<String>)> = pipe.query_async(conn).await;
        let (bulk, policy) = match reply {
            Ok(pair) => pair,
            Err(err) if errors::is_connection_failure(&err) || errors::must_stop(&err) => {
                return Err(self.dial_failure(&err))
            }
            Err(err) => {
                log::debug!(
                    "cannot read the server's settings (CONFIG disabled?): {}",
                    self.scrub(&err)
                );
                (Vec::new(), Vec::new())
            }
        };
        let max_bulk_len = bulk
            .get(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_BULK_LEN);
        if let Some(policy) = policy.get(1) {
            self.check_eviction_policy(policy)?;
        }
        Ok(ServerLimits { max_bulk_len })
    }

    /// An `allkeys-*` policy may evict documents and chunks, which have no TTL and
    /// cannot be recomputed. Checked on every new connection (a policy changed at run
    /// time is seen at the next reconnect); warned once per server and policy.
    fn check_eviction_policy(&self, policy: &str) -> Result<(), DialFailure> {
        if self.settings.eviction_check == EvictionCheck::Ignore || !policy.starts_with("allkeys-")
        {
            return Ok(());
        }
        let server = self.describe_server();
        let message = format!(
            "Redis at {server} has maxmemory-policy {policy}: under memory pressure it evicts \
             records without a TTL (documents, chunks); use volatile-lru or noeviction"
        );
        if self.settings.eviction_check == EvictionCheck::Refuse {
            return Err(DialFailure::Final(Error::Operation(format!(
                "{message} (refused because redis_eviction_check is \"refuse\")"
            ))));
        }
        static WARNED: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
        let first = WARNED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert((server, policy.to_owned()));
        if first {
            log::warn!("{message}");
        }
        Ok(())
    }

    fn finish_dial(&self, id: u64, outcome: &Result<Up, DialFailure>) {
        let mut state = self.state();
        match outcome {
            Ok(up) => {
                let reconnected = state.failed_dials > 0;
                self.metrics.connected(state.was_up);
                state.phase = Stage::Up(up.clone());
                state.failed_dials = 0;
                state.last_final = None;
                state.was_up = true;
                // Logged after the lock is let go: a record may wait for the GIL, and a
                // thread holding the GIL may be waiting for this lock.
                drop(state);
                if reconnected {
                    log::info!("reconnected to Redis at {}", self.describe_server());
                } else {
                    log::debug!("connected to Redis at {}", self.describe_server());
                }
                self.healthy();
            }
            Err(failure) => {
                state.phase = Stage::Down;
                state.next_dial = Instant::now() + backoff(state.failed_dials);
                state.failed_dials = state.failed_dials.saturating_add(1);
                state.last_final = match failure {
                    DialFailure::Final(err) => Some(err.clone()),
                    DialFailure::Connection(_) => None,
                };
                let first = state.failed_dials == 1;
                drop(state);
                self.metrics.dial_failed();
                if let DialFailure::Connection(why) = failure {
                    let server = self.describe_server();
                    // Callers get the error; a lasting outage gets a warning when the
                    // breaker opens, not one per failed dial.
                    if first {
                        log::info!("cannot connect to Redis at {server}: {why}");
                    } else {
                        log::debug!("cannot connect to Redis at {server}: {why}");
                    }
                    self.count_failure(id);
                }
            }
        }
    }

    fn broken(&self, id: u64, why: &str) {
        let mut state = self.state();
        let Stage::Up(up) = &state.phase else {
            return;
        };
        if up.id != id {
            return;
        }
        state.phase = Stage::Down;
        state.next_dial = Instant::now();
        drop(state);
        log::warn!(
            "connection to Redis at {} lost ({why}); reconnecting",
            self.describe_server()
        );
        self.metrics.connection_lost();
        self.count_failure(id);
    }

    /// A reply or a connection: closes the breaker if it was open (said once).
    fn healthy(&self) {
        if self.breaker.success() {
            log::info!(
                "circuit breaker closed: Redis at {} answers again",
                self.describe_server()
            );
        }
    }

    fn count_failure(&self, event: u64) {
        if self.breaker.failure(event) {
            self.metrics.breaker_opened();
            log::warn!(
                "circuit breaker open: Redis at {} failed {} times in a row; new calls fail fast for {:.1}s",
                self.describe_server(),
                self.settings.breaker_threshold,
                self.settings.breaker_cooldown.as_secs_f64()
            );
        }
    }
}

/// The last time a connection delivered a reply, as nanoseconds since a process-wide
/// epoch (an atomic: every reply stores it, so no lock on the hot path).
pub struct Progress {
    last_reply: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Progress {
    fn new() -> Progress {
        let progress = Progress {
            last_reply: AtomicU64::new(0),
        };
        progress.touch();
        progress
    }

    /// A reply arrived on this connection.
    pub fn touch(&self) {
        let nanos = epoch().elapsed().as_nanos() as u64;
        self.last_reply.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last_reply(&self) -> Instant {
        epoch() + Duration::from_nanos(self.last_reply.load(Ordering::Relaxed))
    }

    /// Runs `request` on this connection until it completes, or fails it with a
    /// timeout once the connection delivered nothing for `timeout`.
    pub async fn watch<T>(
        &self,
        timeout: Duration,
        request: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        let started = Instant::now();
        let request = std::pin::pin!(request);
        let stalled = std::pin::pin!(self.stalled(started, timeout));
        match futures_util::future::select(request, stalled).await {
            Either::Left((reply, _)) => reply,
            Either::Right(((), _)) => Err(stall_error(timeout)),
        }
    }

    /// Completes once the connection delivered nothing for `timeout` since `started`
    /// (the request's send) or since its last reply, whichever is later.
    async fn stalled(&self, started: Instant, timeout: Duration) {
        loop {
            let due = started.max(self.last_reply()) + timeout;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Whether a dial failed because the peer closed the connection (rather than refused
/// it or never answered): the case [`Inner::diagnose`] looks into.
fn closed_on_us(why: &str) -> bool {
    [
        "broken pipe",
        "connection reset",
        "unexpected end",
        "connection closed",
        "dropped",
        "protocol",
    ]
    .iter()
    .any(|sign| why.to_ascii_lowercase().contains(sign))
}

/// The error of a request whose connection made no progress for `timeout`.
fn stall_error(timeout: Duration) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "no reply for {}s (redis_socket_timeout)",
            timeout.as_secs_f64()
        ),
    ))
}

/// Exponential backoff with jitter: 100 ms, 200 ms, 400 ms, ... capped at 1 s, each
/// scaled by a random factor in [0.5, 1] so clients that failed together spread out.
/// With the default 3 retries a call rides out a restart of about 150-300 ms (a
/// broken connection is redialed at once, then twice more after these pauses).
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(4));
    base.min(Duration::from_secs(1))
        .mul_f64(0.5 + fastrand::f64() * 0.5)
}
