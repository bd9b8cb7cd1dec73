//! How a blocking call waits: on its own thread, woken by its own reply.
//!
//! tokio's `block_on` parks the caller until a worker wakes it, so a reply crosses
//! two threads (the worker reads it, then wakes the caller). On a machine whose idle
//! cores are slow to wake, each crossing costs tens of microseconds. Here the caller
//! polls its call's future itself and sleeps in `poll(2)` on two things: an eventfd
//! the future's waker writes (timers, dials, replies a worker read), and the socket
//! its request went out on. A reply then wakes the caller directly, and the caller
//! reads it. The connection's reader task still reads whatever the caller does not.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::connection::Awaited;
use crate::eventfd::EventFd;
use crate::runtime;

/// Polls `work` on this thread until it completes (`Some`) or `slice` has passed
/// (`None`: the caller checks for signals, then calls again). The caller must be in
/// the runtime's context (timers and sockets register with it).
pub fn run_for<F: Future>(mut work: Pin<&mut F>, slice: Duration) -> Option<F::Output> {
    let wake = thread_wake();
    let waker = Waker::from(wake.clone());
    let mut cx = Context::from_waker(&waker);
    let until = Instant::now() + slice;
    let mut awaited: Option<Awaited> = None;
    loop {
        if let Poll::Ready(output) = work.as_mut().poll(&mut cx) {
            return Some(output);
        }
        if let Some(latest) = Awaited::take() {
            awaited = Some(latest);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let readable = wake.sleep(awaited.as_ref().map(Awaited::fd), left);
        if readable && !awaited.as_ref().is_some_and(Awaited::read) {
            awaited = None;
        }
    }
}

/// An eventfd per caller thread, written by the wakers of the futures it polls.
struct ThreadWake {
    fd: EventFd,
}

impl Wake for ThreadWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fd.signal();
    }
}

impl ThreadWake {
    /// Sleeps until woken, `socket` is readable (true) or `timeout` passed.
    fn sleep(&self, socket: Option<std::os::fd::RawFd>, timeout: Duration) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: socket.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfd (a negative fd is ignored).
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
        if ready <= 0 {
            return false;
        }
        if fds[0].revents != 0 {
            self.fd.clear();
        }
        fds[1].revents != 0
    }
}

thread_local! {
    static THREAD_WAKE: std::cell::RefCell<Option<(u64, Arc<ThreadWake>)>> =
        const { std::cell::RefCell::new(None) };
}

/// This thread's eventfd (a new one in a forked child: the parent's is shared with it).
fn thread_wake() -> Arc<ThreadWake> {
    let generation = runtime::generation();
    THREAD_WAKE.with_borrow_mut(|slot| match slot {
        Some((g, wake)) if *g == generation => wake.clone(),
        _ => {
            let fd = EventFd::new().unwrap_or_else(|e| panic!("cannot create an eventfd: {e}"));
            let wake = Arc::new(ThreadWake { fd });
            *slot = Some((generation, wake.clone()));
            wake
        }
    })
}
