//! Replies in the Redis protocol (RESP2 and RESP3): where the next one ends in a read
//! buffer, and the value it holds.
//!
//! Finding the end is a scan of headers only: a bulk string is skipped by its length,
//! so a reply of 500 values of 5 KB costs 500 header reads, and a reply that arrived
//! in part says how many bytes it needs before it is worth scanning again. The types
//! every command here gets back (`+ - : $ *`) are built directly; anything else (RESP3
//! maps, doubles, ...) is handed, as one whole reply, to redis-rs' parser.

use redis::{ErrorKind, RedisError, RedisResult, Value};

/// How much of a buffer the next reply takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole reply of this many bytes.
    Whole(usize),
    /// Not all there: not worth scanning again before the buffer holds this many bytes.
    Partial(usize),
}

/// Where the reply at the start of `buf` ends.
pub fn frame(buf: &[u8]) -> RedisResult<Frame> {
    let mut pos = 0;
    // Values still to read: the reply, then the elements its aggregates announce.
    let mut left: u64 = 1;
    while left > 0 {
        let Some(&kind) = buf.get(pos) else {
            return Ok(Frame::Partial(pos + 1));
        };
        // Checked before waiting for the line: what is not RESP may never send one.
        if !b"+-:,#(_$!=*~>%|".contains(&kind) {
            return Err(not_resp());
        }
        let Some(line) = line_at(buf, pos)? else {
            return Ok(Frame::Partial(buf.len() + 1));
        };
        let next = pos + 1 + line.len() + 2;
        left -= 1;
        match kind {
            b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => pos = next,
            b'$' | b'!' | b'=' => match length(line)? {
                None => pos = next,
                Some(len) => {
                    pos = next.saturating_add(len).saturating_add(2);
                    if pos > buf.len() {
                        return Ok(Frame::Partial(pos));
                    }
                }
            },
            b'*' | b'~' | b'>' => {
                left = left.saturating_add(length(line)?.unwrap_or(0) as u64);
                pos = next;
            }
            // A map's entries are two values each; an attribute is followed by the
            // value it describes.
            b'%' | b'|' => {
                let entries = length(line)?.unwrap_or(0) as u64;
                left = left
                    .saturating_add(entries.saturating_mul(2))
                    .saturating_add(u64::from(kind == b'|'));
                pos = next;
            }
            _ => return Err(not_resp()),
        }
    }
    Ok(Frame::Whole(pos))
}

/// The value of one whole reply (as [`frame`] measured it).
pub fn value(reply: &[u8]) -> RedisResult<Value> {
    let mut reader = Reader { buf: reply, pos: 0 };
    reader.value()
}

/// Whether a whole reply is an out-of-band RESP3 push (not the answer to a request).
pub fn is_push(reply: &[u8]) -> bool {
    reply.first() == Some(&b'>')
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn value(&mut self) -> RedisResult<Value> {
        let start = self.pos;
        let kind = self.buf[start];
        let line = line_at(self.buf, start)?.ok_or_else(not_resp)?;
        self.pos = start + 1 + line.len() + 2;
        Ok(match kind {
            b'+' if line == b"OK" => Value::Okay,
            b'+' => Value::SimpleString(String::from_utf8_lossy(line).into_owned()),
            b':' => Value::Int(integer(line)?),
            b'$' => match length(line)? {
                None => Value::Nil,
                Some(len) => {
                    let data = self.buf[self.pos..self.pos + len].to_vec();
                    self.pos += len + 2;
                    Value::BulkString(data)
                }
            },
            b'*' => match length(line)? {
                None => Value::Nil,
                Some(len) => {
                    let mut items = Vec::with_capacity(len.min(1 << 16));
                    for _ in 0..len {
                        items.push(self.value()?);
                    }
                    Value::Array(items)
                }
            },
            // Errors and RESP3's other types: rare here, so redis-rs builds them.
            _ => {
                let Frame::Whole(len) = frame(&self.buf[start..])? else {
                    return Err(not_resp());
                };
                self.pos = start + len;
                redis::parse_redis_value(&self.buf[start..start + len])?
            }
        })
    }
}

/// The line after the type byte at `pos`, without its CRLF; `None` if not all there.
fn line_at(buf: &[u8], pos: usize) -> RedisResult<Option<&[u8]>> {
    let Some(rest) = buf.get(pos + 1..) else {
        return Ok(None);
    };
    let Some(end) = memchr::memchr(b'\n', rest) else {
        return Ok(None);
    };
    match rest[..end].split_last() {
        Some((b'\r', line)) => Ok(Some(line)),
        _ => Err(not_resp()),
    }
}

fn integer(line: &[u8]) -> RedisResult<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(not_resp)
}

/// A length; `None` for RESP2's null (`-1`).
fn length(line: &[u8]) -> RedisResult<Option<usize>> {
    match integer(line)? {
        -1 => Ok(None),
        n if n >= 0 => usize::try_from(n).map(Some).map_err(|_| not_resp()),
        _ => Err(not_resp()),
    }
}

/// What a reply that is not RESP becomes: a parse error, which this package reports
/// as "not a Redis server".
pub fn not_resp() -> RedisError {
    RedisError::from((ErrorKind::Parse, "the reply is not in the Redis protocol"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> Value {
        assert_eq!(frame(buf).unwrap(), Frame::Whole(buf.len()), "{buf:?}");
        value(buf).unwrap()
    }

    #[test]
    fn builds_the_common_types() {
        assert_eq!(whole(b"+OK\r\n"), Value::Okay);
        assert_eq!(whole(b"+QUEUED\r\n"), Value::SimpleString("QUEUED".into()));
        assert_eq!(whole(b":-42\r\n"), Value::Int(-42));
        assert_eq!(whole(b"$-1\r\n"), Value::Nil);
        assert_eq!(whole(b"$0\r\n\r\n"), Value::BulkString(vec![]));
        assert_eq!(
            whole(b"$4\r\na\r\nb\r\n"),
            Value::BulkString(b"a\r\nb".to_vec())
        );
        assert_eq!(
            whole(b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n"),
            Value::Array(vec![
                Value::BulkString(b"a".to_vec()),
                Value::Nil,
                Value::Array(vec![Value::Int(1)]),
            ])
        );
        assert_eq!(whole(b"*-1\r\n"), Value::Nil);
    }

    #[test]
    fn errors_and_resp3_types_come_from_redis_rs() {
        let Value::ServerError(err) = whole(b"-NOAUTH Authentication required.\r\n") else {
            panic!("not a server error");
        };
        assert_eq!(err.code(), "NOAUTH");
        let Value::Array(items) = whole(b"*2\r\n-ERR no\r\n%1\r\n+a\r\n,1.5\r\n") else {
            panic!("not an array");
        };
        assert!(matches!(items[0], Value::ServerError(_)));
        assert_eq!(
            items[1],
            Value::Map(vec![(Value::SimpleString("a".into()), Value::Double(1.5))])
        );
        assert_eq!(whole(b"_\r\n"), Value::Nil);
    }

    #[test]
    fn partial_replies_say_how_much_more_they_need() {
        assert_eq!(frame(b"").unwrap(), Frame::Partial(1));
        assert_eq!(frame(b"+O").unwrap(), Frame::Partial(3));
        assert_eq!(frame(b"$10\r\nabc").unwrap(), Frame::Partial(17));
        assert_eq!(frame(b"*2\r\n:1\r\n").unwrap(), Frame::Partial(9));
        let two = b"*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n";
        for cut in 0..two.len() {
            assert!(matches!(frame(&two[..cut]).unwrap(), Frame::Partial(n) if n > cut));
        }
        // Only the first reply counts.
        assert_eq!(frame(b":1\r\n:2\r\n").unwrap(), Frame::Whole(4));
    }

    #[test]
    fn what_is_not_resp_is_a_parse_error() {
        for garbage in [&b"HTTP/1.1 400 Bad Request\r\n"[..], b"$x\r\n", b"*-2\r\n"] {
            let err = frame(garbage).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Parse, "{garbage:?}");
        }
    }

    #[test]
    fn a_push_is_told_apart() {
        let push = b">2\r\n+invalidate\r\n*0\r\n";
        assert_eq!(frame(push).unwrap(), Frame::Whole(push.len()));
        assert!(is_push(push));
        assert!(!is_push(b"*0\r\n"));
    }
}
