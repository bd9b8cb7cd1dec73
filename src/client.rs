//! Requests, how one attempt can fail, and the retry loop every topology shares.
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

use std::future::Future;
use std::time::Instant;

use redis::{Cmd, Pipeline};

use crate::config::ConnectionSettings;
use crate::errors::{self, Error, Result};
use crate::link;

/// One request: a command or a pipeline (a `MULTI`/`EXEC` transaction when atomic),
/// with the size of its largest value so the server's limit is checked before sending.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub(crate) kind: Kind<'a>,
    /// `(record id, bytes)` of the largest value in the request.
    largest: Option<(&'a [u8], usize)>,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind<'a> {
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
    pub(crate) fn check_size(&self, limits: link::ServerLimits) -> Result<()> {
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

/// How one attempt failed; each retryable failure holds its reason, described and
/// scrubbed.
pub enum Failure {
    /// No connection could be had (the request was not sent).
    Dial(String),
    /// Sent, and the connection failed under it (reset, stall), or the request went to
    /// the wrong node (a cluster redirect): try again at once.
    Sent(String),
    /// The server is busy or failing over (`LOADING`, `TRYAGAIN`, ...): try again later.
    Busy(String),
    /// Nothing a retry would change.
    Final(Error),
}

/// What a server's error reply means for a retry: busy (later), a redirect or a
/// demoted master (at once, elsewhere), or final.
pub fn refusal(err: &redis::RedisError, secret: Option<&str>) -> Failure {
    let why = || errors::describe(err, secret);
    if errors::is_busy(err) {
        Failure::Busy(why())
    } else if errors::is_redirect(err) {
        Failure::Sent(why())
    } else {
        Failure::Final(Error::from_redis(err, secret))
    }
}

/// Runs `attempt` until it succeeds, fails for good, runs out of retries or reaches the
/// deadline. `attempt` gets `retrying`: whether an earlier attempt failed (such calls
/// wait for an open breaker's probe instead of failing fast). `server` names the
/// server in messages.
pub async fn with_retries<T, F, Fut>(
    settings: &ConnectionSettings,
    server: impl Fn() -> String,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    let deadline = Instant::now() + settings.retry_deadline;
    let attempts = settings.retry_attempts;
    let mut last: Option<String> = None;
    let unavailable = |why: Option<&str>, how: &str| {
        Error::Unavailable(format!(
            "Redis at {} is unavailable: {}; {how}",
            server(),
            why.unwrap_or("no connection could be made in time")
        ))
    };
    let retries = async {
        let mut retries = 0u32;
        loop {
            let (why, busy) = match attempt(last.is_some()).await {
                Ok(value) => return Ok(value),
                Err(Failure::Final(err)) => return Err(err),
                Err(Failure::Dial(why)) | Err(Failure::Sent(why)) => (why, false),
                Err(Failure::Busy(why)) => (why, true),
            };
            if retries >= attempts {
                return Err(unavailable(
                    Some(&why),
                    &format!(
                        "tried {} times (redis_retry_attempts = {attempts})",
                        retries + 1
                    ),
                ));
            }
            retries += 1;
            crate::metrics::retried();
            log::debug!("retrying after: {why}");
            last = Some(why);
            if busy {
                // The server answered "not now": reconnecting would not help, waiting does.
                tokio::time::sleep(link::backoff(retries)).await;
            }
        }
    };
    match tokio::time::timeout_at(deadline.into(), retries).await {
        Ok(result) => result,
        Err(_) => Err(unavailable(
            last.as_deref(),
            &format!(
                "gave up at redis_retry_deadline = {}s",
                settings.retry_deadline.as_secs_f64()
            ),
        )),
    }
}
