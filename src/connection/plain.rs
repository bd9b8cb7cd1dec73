//! Our own multiplexed connection, over TCP or a Unix socket.
//!
//! Many requests share one socket and are answered in order, as with redis-rs'
//! multiplexed connection. What differs is where the work happens:
//! - A request alone on the connection, made off the runtime's workers (a blocking
//!   caller, an event loop), is written right there with a non-blocking `send`: no
//!   thread is woken to write it. What the socket does not take at once is left to a
//!   flush task.
//! - Requests made while others are in flight, or made on a worker, are gathered: the
//!   first one starts a flush task (which yields once on a worker), so they leave in
//!   one write.
//! - Whoever waits reads: the reader task, a blocking caller sleeping on the socket,
//!   an event loop watching it. Each takes the read lock, finds whole replies by their
//!   headers (see `resp.rs`) and hands each to the request at the head of the queue.
//!
//! A request whose caller stopped waiting still has its reply read, then dropped, so
//! a reply never reaches the wrong caller. When the socket fails, every waiting
//! request gets the error and the connection refuses new ones (the link dials again).
//! The tasks end with the last handle.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use redis::{RedisError, RedisResult, Value};
use tokio::sync::{oneshot, watch};

use super::resp::{self, Frame};
use crate::runtime;

/// Reads ask the kernel for at least this much.
const READ_CHUNK: usize = 64 * 1024;
/// A read buffer grown past this by a big reply is given back once it is empty.
const KEPT_BUFFER: usize = 1024 * 1024;
/// A reply announcing more than this is read into a buffer grown step by step, not
/// reserved at once (a broken server could announce anything).
const MAX_RESERVE: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Conn {
    shared: Arc<Shared>,
    /// Dropped with the last handle: ends the reader and any flush.
    _alive: Arc<watch::Sender<()>>,
}

enum Socket {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

struct Shared {
    socket: Socket,
    out: Mutex<Outbox>,
    /// Held by whoever reads: the reader task, or a blocking caller waiting for its reply.
    read: Mutex<ReadState>,
    /// Changes (its sender is dropped) when the last handle is gone.
    alive: watch::Receiver<()>,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Outbox {
    /// The requests sent and not yet answered, in the order they were written.
    waiting: VecDeque<Waiting>,
    /// Bytes not yet written; a flush task is running whenever `flushing` is set.
    backlog: Vec<u8>,
    flushing: bool,
    /// Set once the socket failed: new requests get this error.
    broken: Option<RedisError>,
}

struct ReadState {
    buf: Vec<u8>,
    /// Bytes the next reply needs before it is worth scanning again.
    need: usize,
}

/// A request waiting for its replies.
struct Waiting {
    /// Replies to read and drop first (a transaction's `MULTI` and `QUEUED`s).
    skip: usize,
    /// Replies to hand back.
    keep: usize,
    transaction: bool,
    replies: Vec<Value>,
    /// A transaction's command the server refused while queueing it: the request's
    /// error, as it says why the `EXEC` failed (`EXECABORT` alone does not).
    refused: Option<RedisError>,
    failed: Option<RedisError>,
    reply: oneshot::Sender<RedisResult<Vec<Value>>>,
}

impl Waiting {
    /// Takes the next reply; true once the request has all of its replies.
    fn take(&mut self, reply: RedisResult<Value>) -> bool {
        match reply {
            Ok(value) if self.skip > 0 => {
                if self.transaction && self.refused.is_none() {
                    self.refused = value.extract_error().err();
                }
            }
            Ok(value) => self.replies.push(value),
            Err(err) => {
                self.failed.get_or_insert(err);
                // Counted, so the replies that follow still line up.
                if self.skip == 0 {
                    self.replies.push(Value::Nil);
                }
            }
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.replies.len() == self.keep
    }

    fn answer(self) {
        let result = match self.failed.or(self.refused) {
            Some(err) => Err(err),
            None => Ok(self.replies),
        };
        // The caller may have stopped waiting: the reply is dropped.
        let _ = self.reply.send(result);
    }
}

impl Conn {
    /// Connects to `host:port` (each address it resolves to, in turn).
    pub async fn tcp(host: &str, port: u16) -> RedisResult<Conn> {
        let socket = tokio::net::TcpStream::connect((host, port)).await?;
        // Requests are written whole; Nagle would only hold the next one back.
        socket.set_nodelay(true)?;
        Ok(Conn::start(Socket::Tcp(socket)))
    }

    #[cfg(unix)]
    pub async fn unix(path: &std::path::Path) -> RedisResult<Conn> {
        let socket = tokio::net::UnixStream::connect(path).await?;
        Ok(Conn::start(Socket::Unix(socket)))
    }

    fn start(socket: Socket) -> Conn {
        let (alive, alive_rx) = watch::channel(());
        let runtime = runtime::runtime().handle().clone();
        let shared = Arc::new(Shared {
            socket,
            out: Mutex::new(Outbox::default()),
            read: Mutex::new(ReadState {
                buf: Vec::with_capacity(READ_CHUNK),
                need: 1,
            }),
            alive: alive_rx,
            runtime: runtime.clone(),
        });
        runtime.spawn(read_replies(shared.clone()));
        Conn {
            shared,
            _alive: Arc::new(alive),
        }
    }

    /// Sends `request` (packed commands) and waits for its replies: `skip` of them
    /// dropped, then `keep` handed back.
    pub async fn request(
        &self,
        request: &[u8],
        skip: usize,
        keep: usize,
        transaction: bool,
    ) -> RedisResult<Vec<Value>> {
        if skip + keep == 0 {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.shared.submit(
            request,
            Waiting {
                skip,
                keep,
                transaction,
                replies: Vec::with_capacity(keep),
                refused: None,
                failed: None,
                reply,
            },
        )?;
        // Only a connection torn down mid-request drops a waiting request unanswered.
        answer
            .await
            .unwrap_or_else(|_| Err(closed("connection closed under the request")))
    }
}

impl Shared {
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `waiting` and writes `request`: here if nothing is queued before it and
    /// this is not a worker thread, else through the flush task. Queueing and writing
    /// under one lock keeps replies in the order of `waiting`.
    fn submit(self: &Arc<Self>, request: &[u8], waiting: Waiting) -> RedisResult<()> {
        let on_worker = runtime::on_worker();
        if !on_worker {
            AWAITED.set(Arc::downgrade(self));
        }
        let mut out = self.outbox();
        if let Some(err) = &out.broken {
            return Err(err.clone());
        }
        // Alone on the connection, a request leaves at once from this thread; with
        // others in flight it joins the flush, which writes a whole batch at a time.
        let alone = out.waiting.is_empty();
        out.waiting.push_back(waiting);
        if out.flushing || on_worker || !alone {
            out.backlog.extend_from_slice(request);
            self.start_flush(&mut out, true);
            return Ok(());
        }
        let written = match self.socket.try_write(request) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                drop(out);
                // The request is answered with the error, like every other waiting one.
                self.fail(e.into());
                return Ok(());
            }
        };
        if written < request.len() {
            out.backlog.extend_from_slice(&request[written..]);
            self.start_flush(&mut out, false);
        }
        Ok(())
    }

    fn start_flush(self: &Arc<Self>, out: &mut Outbox, gather: bool) {
        if !out.flushing {
            out.flushing = true;
            self.runtime.spawn(flush(self.clone(), gather));
        }
    }

    /// Answers every waiting request with `err` and refuses new ones.
    fn fail(&self, err: RedisError) {
        let waiting = {
            let mut out = self.outbox();
            if out.broken.is_none() {
                // Later requests see a closed connection (retried on a new one), even
                // when this failure was something else (a reply that is not RESP).
                out.broken = Some(if err.is_io_error() {
                    err.clone()
                } else {
                    closed(&format!("connection closed after an error ({err})"))
                });
            }
            out.backlog = Vec::new();
            std::mem::take(&mut out.waiting)
        };
        self.socket.shutdown();
        for waiting in waiting {
            let _ = waiting.reply.send(Err(err.clone()));
        }
    }

    /// Hands each reply to the request it answers.
    fn dispatch(&self, replies: Vec<RedisResult<Value>>) -> RedisResult<()> {
        let mut answered = Vec::new();
        let outcome = {
            let mut out = self.outbox();
            let mut outcome = Ok(());
            for reply in replies {
                let Some(first) = out.waiting.front_mut() else {
                    outcome = Err(resp::not_resp());
                    break;
                };
                if first.take(reply) {
                    answered.extend(out.waiting.pop_front());
                }
            }
            outcome
        };
        answered.into_iter().for_each(Waiting::answer);
        outcome
    }
}

thread_local! {
    /// The connection this thread last wrote a request on (callers' threads only).
    static AWAITED: RefCell<Weak<Shared>> = const { RefCell::new(Weak::new()) };
}

/// The connection a blocking caller waits on for its reply: the caller sleeps on its
/// socket and reads the reply itself (see `caller.rs`).
pub struct Awaited(Arc<Shared>);

impl Awaited {
    /// The connection of the last request this thread wrote, if any since the last
    /// call (and still open).
    pub fn take() -> Option<Awaited> {
        AWAITED.take().upgrade().map(Awaited)
    }

    #[cfg(unix)]
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.0.socket.raw_fd()
    }

    /// Reads what the socket has and hands out the replies; false once the connection
    /// failed (nothing more to wait for there).
    pub fn read(&self) -> bool {
        self.0.read_available(Reader::Caller).is_ok()
    }

    /// Whether the connection failed or its last handle is gone: no reply will come.
    pub fn is_over(&self) -> bool {
        self.0.alive.has_changed().is_err() || self.0.outbox().broken.is_some()
    }

    /// The connection's identity (for a set of watched connections).
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

/// The reader task: reads whenever the socket has data (unless a waiting caller read
/// it first), until the connection fails or the last handle is gone.
async fn read_replies(shared: Arc<Shared>) {
    let mut alive = shared.alive.clone();
    loop {
        let Some(ready) = unless_gone(&mut alive, shared.socket.readable()).await else {
            // Event loops watching the socket see it end, and let it go.
            return shared.socket.shutdown();
        };
        if let Err(e) = ready {
            return shared.fail(e.into());
        }
        if shared.read_available(Reader::Task).is_err() {
            return;
        }
    }
}

/// Who reads: the reader task through tokio, which tracks the socket's readiness, or a
/// caller's thread with a plain `recv`, which tokio does not see.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Task,
    Caller,
}

impl Shared {
    /// Reads everything the socket has and hands out the whole replies in it. `Err`
    /// once the connection failed (its requests have their error).
    fn read_available(&self, reader: Reader) -> Result<(), ()> {
        let mut state = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let ReadState { buf, need } = &mut *state;
        loop {
            if self.outbox().broken.is_some() {
                return Err(());
            }
            let missing = need.saturating_sub(buf.len());
            buf.reserve(missing.clamp(READ_CHUNK, MAX_RESERVE));
            let read = match reader {
                Reader::Task => self.socket.try_read_buf(buf),
                Reader::Caller => self.socket.recv(buf),
            };
            match read {
                Ok(0) => {
                    self.fail(closed("connection closed by the server"));
                    return Err(());
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(e.into());
                    return Err(());
                }
            }
            if buf.len() < *need {
                continue;
            }
            let mut replies = Vec::new();
            let mut start = 0;
            let scanned = loop {
                match resp::frame(&buf[start..]) {
                    Ok(Frame::Whole(len)) => {
                        let reply = &buf[start..start + len];
                        start += len;
                        if !resp::is_push(reply) {
                            replies.push(resp::value(reply));
                        }
                    }
                    Ok(Frame::Partial(len)) => break Ok(len),
                    Err(err) => break Err(err),
                }
            };
            let dispatched = self.dispatch(replies);
            match (scanned, dispatched) {
                (Ok(len), Ok(())) => *need = len,
                (Err(err), _) | (_, Err(err)) => {
                    self.fail(err);
                    return Err(());
                }
            }
            buf.drain(..start);
            if buf.is_empty() && buf.capacity() > KEPT_BUFFER {
                *buf = Vec::with_capacity(READ_CHUNK);
            }
        }
    }
}

/// The flush task: writes the backlog until it is empty. Started for requests made on
/// a worker, it first yields, so the other requests of that turn join the same write.
async fn flush(shared: Arc<Shared>, gather: bool) {
    if gather {
        tokio::task::yield_now().await;
    }
    let mut alive = shared.alive.clone();
    let mut chunk = Vec::new();
    loop {
        {
            let mut out = shared.outbox();
            if out.backlog.is_empty() || out.broken.is_some() {
                out.flushing = false;
                return;
            }
            chunk.clear();
            std::mem::swap(&mut chunk, &mut out.backlog);
        }
        let Some(written) = unless_gone(&mut alive, shared.socket.write_all(&chunk)).await else {
            return;
        };
        if let Err(e) = written {
            return shared.fail(e.into());
        }
        if chunk.capacity() > KEPT_BUFFER {
            chunk = Vec::new();
        }
    }
}

/// Runs `work` unless the last handle goes first (`None` then).
async fn unless_gone<T>(
    alive: &mut watch::Receiver<()>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    use futures_util::future::{select, Either};
    match select(std::pin::pin!(work), std::pin::pin!(alive.changed())).await {
        Either::Left((done, _)) => Some(done),
        Either::Right(_) => None,
    }
}

impl Socket {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable().await,
            #[cfg(unix)]
            Socket::Unix(s) => s.readable().await,
        }
    }

    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_read_buf(buf),
            #[cfg(unix)]
            Socket::Unix(s) => s.try_read_buf(buf),
        }
    }

    /// A non-blocking `recv` into `buf`'s spare capacity, past tokio's readiness.
    #[cfg(unix)]
    fn recv(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let spare = buf.spare_capacity_mut();
        // SAFETY: `recv` writes at most `spare.len()` bytes into memory `buf` owns, and
        // only the bytes it reports written are then counted as initialized.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        unsafe { buf.set_len(buf.len() + n as usize) };
        Ok(n as usize)
    }

    /// Ends the connection both ways: the server sees it closed, and whoever watches
    /// the socket sees it readable (at its end) and lets it go.
    fn shutdown(&self) {
        #[cfg(unix)]
        // SAFETY: a plain syscall on a descriptor this socket owns.
        unsafe {
            libc::shutdown(self.raw_fd(), libc::SHUT_RDWR);
        }
    }

    /// Callers read only where they can wait on the socket (see `caller.rs`).
    #[cfg(not(unix))]
    fn recv(&self, _buf: &mut Vec<u8>) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    #[cfg(unix)]
    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_write(bytes),
            #[cfg(unix)]
            Socket::Unix(s) => s.try_write(bytes),
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.writable().await,
            #[cfg(unix)]
            Socket::Unix(s) => s.writable().await,
        }
    }

    async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.writable().await?;
            match self.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A connection that is gone, as redis-rs reports one (an I/O error: retried).
fn closed(why: &str) -> RedisError {
    io::Error::new(io::ErrorKind::ConnectionReset, why.to_owned()).into()
}
