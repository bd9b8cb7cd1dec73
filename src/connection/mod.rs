//! The connection requests travel on, one per server (see `link.rs` for its life).
//!
//! - `plain`: our own multiplexed connection over TCP or a Unix socket. The thread
//!   that waits does the I/O: a lone request is written by its caller's thread, and a
//!   blocking caller or an event loop reads replies off the socket itself.
//! - `Wire::Tls`: redis-rs' multiplexed connection, for `rediss://` (its rustls stream is
//!   driven by one task, which writes every request).
//!
//! Both speak through redis-rs' `ConnectionLike`, so commands and pipelines are built
//! and their replies converted the same way on either.

mod handshake;
mod plain;
pub mod resp;

pub use plain::Awaited;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, ConnectionAddr, Pipeline, RedisFuture, Value};

#[derive(Clone)]
pub enum Wire {
    Plain { conn: plain::Conn, db: i64 },
    Tls(MultiplexedConnection),
}

impl Wire {
    /// Connects to `client`'s server and authenticates (`AUTH`/`HELLO`, `SELECT`).
    pub async fn open(
        client: &redis::Client,
        config: &AsyncConnectionConfig,
    ) -> redis::RedisResult<Wire> {
        let info = client.get_connection_info();
        let conn = match info.addr() {
            ConnectionAddr::Tcp(host, port) => plain::Conn::tcp(host, *port).await?,
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => plain::Conn::unix(path).await?,
            _ => {
                return client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
                    .map(Wire::Tls)
            }
        };
        let settings = info.redis_settings();
        let mut wire = Wire::Plain {
            conn,
            db: settings.db(),
        };
        handshake::run(&mut wire, settings).await?;
        Ok(wire)
    }
}

impl ConnectionLike for Wire {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Wire::Plain { conn, .. } => Box::pin(async move {
                let mut replies = conn.request(&cmd.get_packed_command(), 0, 1, false).await?;
                Ok(replies.pop().unwrap_or(Value::Nil))
            }),
            Wire::Tls(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Wire::Plain { conn, .. } => Box::pin(async move {
                conn.request(
                    &pipeline.get_packed_pipeline(),
                    offset,
                    count,
                    pipeline.is_transaction(),
                )
                .await
            }),
            Wire::Tls(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Wire::Plain { db, .. } => *db,
            Wire::Tls(conn) => conn.get_db(),
        }
    }
}
