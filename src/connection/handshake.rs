//! What a new plain connection says first: who it is (`AUTH`, or `HELLO 3` for RESP3)
//! and which database it uses (`SELECT`), in one round trip. The server's refusal
//! comes back as its own error (`WRONGPASS ...`), which says more than a generic
//! "authentication failed".

use redis::aio::ConnectionLike;
use redis::{RedisConnectionInfo, RedisResult, Value};

use super::Wire;

pub async fn run(wire: &mut Wire, info: &RedisConnectionInfo) -> RedisResult<()> {
    match send(wire, info, info.username()).await {
        // Servers before 6.0 know no users: `AUTH user password` has too many arguments.
        Err(err) if info.username().is_some() && is_old_auth(&err) => send(wire, info, None).await,
        outcome => outcome,
    }
}

async fn send(
    wire: &mut Wire,
    info: &RedisConnectionInfo,
    username: Option<&str>,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    if info.protocol().supports_resp3() {
        let hello = pipe.cmd("HELLO").arg(3);
        if let Some(password) = info.password() {
            hello
                .arg("AUTH")
                .arg(username.unwrap_or("default"))
                .arg(password);
        }
    } else if let Some(password) = info.password() {
        let auth = pipe.cmd("AUTH");
        if let Some(username) = username {
            auth.arg(username);
        }
        auth.arg(password);
    }
    if info.db() != 0 {
        pipe.cmd("SELECT").arg(info.db());
    }
    if pipe.is_empty() {
        return Ok(());
    }
    let replies = wire.req_packed_commands(&pipe, 0, pipe.len()).await?;
    replies
        .into_iter()
        .try_for_each(|reply| Value::extract_error(reply).map(drop))
}

fn is_old_auth(err: &redis::RedisError) -> bool {
    err.detail()
        .is_some_and(|d| d.contains("wrong number of arguments for 'auth'"))
}
