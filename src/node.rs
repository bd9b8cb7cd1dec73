//! One Redis server as the topologies use it: its link (connection, breaker, progress
//! clock) and the bound on commands in flight.
//!
//! One multiplexed socket carries all commands (many in flight at once), so
//! concurrency never needs more sockets: there is no pool to run dry. What bounds the
//! load is a semaphore of `max_inflight` permits: callers past it wait (backpressure),
//! they do not fail.

use std::sync::Arc;

use redis::{FromRedisValue, IntoConnectionInfo};
use tokio::sync::Semaphore;

use crate::client::{refusal, with_retries, Failure, Kind, Request};
use crate::config::{ConnectionSettings, TlsFiles};
use crate::errors::{self, Error, Result};
use crate::link::{DialFailure, Link, Target};
use crate::metrics::Gauges;

pub struct Node {
    settings: ConnectionSettings,
    secret: Option<String>,
    link: Link,
    inflight: Arc<Semaphore>,
}

impl Node {
    pub fn new(target: Box<dyn Target>, settings: &ConnectionSettings) -> Node {
        let node = Node {
            secret: settings.secret(),
            link: Link::new(target, settings),
            inflight: Arc::new(Semaphore::new(settings.max_inflight)),
            settings: settings.clone(),
        };
        node.attach_gauges();
        node
    }

    /// Lets the server's metrics read this node's gauges (until the node is gone).
    fn attach_gauges(&self) {
        let link = self.link.downgrade();
        let permits = Arc::downgrade(&self.inflight);
        let max = self.settings.max_inflight;
        self.link.metrics().attach(Box::new(move || {
            let (connected, breaker) = link.status()?;
            let available = permits.upgrade()?.available_permits();
            Some(Gauges {
                connected,
                in_flight: max.saturating_sub(available) as u64,
                breaker,
            })
        }));
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The server, for messages.
    pub fn describe(&self) -> String {
        self.link.describe_server()
    }

    /// Runs `request` on this server with the retries of [`with_retries`].
    pub async fn query<T: FromRedisValue>(&self, request: Request<'_>) -> Result<T> {
        with_retries(
            &self.settings,
            || self.describe(),
            |retrying| self.send(request, retrying),
        )
        .await
    }

    /// One attempt: a connection (dialing if needed), the size check, the send, the
    /// reply watched by the connection's progress clock.
    pub async fn send<T: FromRedisValue>(
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
                DialFailure::Connection(why) => Failure::Dial(why),
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
                let why = errors::describe(&err, self.secret.as_deref());
                self.link.broken(up.id, &why);
                Err(Failure::Sent(why))
            }
            Err(err) => {
                // The server answered: it is up, whatever it said.
                up.progress.touch();
                self.link.healthy();
                Err(self.refusal(&err))
            }
        }
    }

    /// What a server's error reply means for a retry.
    fn refusal(&self, err: &redis::RedisError) -> Failure {
        if errors::is_readonly(err) {
            // A write reached a replica: this server was demoted. Leave it.
            self.link
                .invalidate("the server is a replica now (READONLY)");
        }
        refusal(err, self.secret.as_deref())
    }
}

/// Credentials that override a URL's.
#[derive(Default)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A redis-rs client for `url` with the settings' credentials and TLS files.
pub fn redis_client(url: &str, settings: &ConnectionSettings) -> Result<redis::Client> {
    let auth = Auth {
        username: settings.username.clone(),
        password: settings.password.clone(),
    };
    redis_client_with(url, &auth, settings)
}

/// A redis-rs client for `url` with `auth` and the settings' TLS files.
pub fn redis_client_with(
    url: &str,
    auth: &Auth,
    settings: &ConnectionSettings,
) -> Result<redis::Client> {
    install_crypto_provider();
    let secret = auth.password.clone().or_else(|| settings.secret());
    let scrubbed = |e: redis::RedisError| Error::from_redis(&e, secret.as_deref());
    let mut info = url.into_connection_info().map_err(scrubbed)?;
    let mut redis_info = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(username) = &auth.username {
        redis_info = redis_info.set_username(username);
    }
    if let Some(password) = &auth.password {
        redis_info = redis_info.set_password(password);
    }
    info = info.set_redis_settings(redis_info);
    open_client(info, &settings.tls).map_err(scrubbed)
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
