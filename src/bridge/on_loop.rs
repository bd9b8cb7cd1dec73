//! Calls whose work runs on their event loop's thread, woken by their own reply.
//!
//! A call spawned on tokio crosses threads three times: the loop hands it to a worker,
//! the reply wakes the worker, the worker wakes the loop. On a machine whose idle
//! cores are slow to wake, that is most of a sequential call's time. Here a call's
//! future is polled first on the loop thread, where it writes its request itself, and
//! the loop watches the connection's socket (`add_reader`): the reply wakes the loop,
//! which reads it, polls the future again and resolves the asyncio future, all in one
//! callback. No other thread is involved.
//!
//! The connection's reader task still reads whatever the loop does not (the loop may
//! be busy, or closed). A future woken off the loop thread (by that reader task, a
//! timer, a blocking caller that read its reply) is polled on tokio and hands its
//! result over as spawned calls do: a call never depends on its loop to finish, so a
//! loop closed with calls in flight strands nothing (their permits, their replies).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};

use super::{complete, Bridge, Completion, Item};
use crate::connection::Awaited;
use crate::runtime;

type Work = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// A call polled on its loop's thread when it can be, on tokio otherwise.
pub(super) struct LoopTask {
    work: Mutex<Option<Work>>,
    /// The asyncio future, taken when the result is handed over.
    future: Mutex<Option<Py<PyAny>>>,
    bridge: Arc<Bridge>,
    /// Set while a poll is queued, so a burst of wakes queues one.
    queued: AtomicBool,
}

/// Starts `work` on the loop thread; its result resolves `future`.
pub(super) fn start(
    py: Python<'_>,
    event_loop: &Bound<'_, PyAny>,
    bridge: &Arc<Bridge>,
    future: Py<PyAny>,
    work: impl Future<Output = Completion> + Send + 'static,
) -> PyResult<()> {
    runtime::calling();
    let task = Arc::new(LoopTask {
        work: Mutex::new(Some(Box::pin(work))),
        future: Mutex::new(Some(future)),
        bridge: bridge.clone(),
        queued: AtomicBool::new(false),
    });
    bridge.in_loop_callback(py, || task.run_on_loop(py));
    if let Some(conn) = Awaited::take() {
        watch(py, event_loop, bridge, conn);
    }
    Ok(())
}

impl LoopTask {
    /// Polls the work once on the loop thread; when it is done, resolves its future
    /// right here. The GIL is released while polling: a tokio thread may hold a lock
    /// the work needs (a link's state) while it waits for the GIL to log a record.
    pub(super) fn run_on_loop(self: &Arc<Self>, py: Python<'_>) {
        if let Some(completion) = py.detach(|| self.poll_once()) {
            if let Some(future) = self.take_future() {
                complete(py, future.bind(py), completion);
            }
        }
    }

    /// Has tokio poll the work from now on (until a wake finds it in its loop again).
    pub(super) fn go_on_on_tokio(self: Arc<Self>) {
        let runtime = self.bridge.runtime.clone();
        runtime.spawn(async move { self.run_on_tokio() });
    }

    /// Polls the work once on tokio; when it is done, the result goes through the
    /// loop's queue.
    fn run_on_tokio(self: &Arc<Self>) {
        if let Some(completion) = self.poll_once() {
            if let Some(future) = self.take_future() {
                self.bridge.push(Item::Done(future, completion));
            }
        }
    }

    /// Polls the work; its completion once it is done (a panic becomes an error).
    fn poll_once(self: &Arc<Self>) -> Option<Completion> {
        self.queued.store(false, Ordering::Release);
        let mut work = self.work.lock().unwrap_or_else(|e| e.into_inner());
        let pending = work.as_mut()?;
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let polled = {
            let _context = self.bridge.runtime.enter();
            catch_unwind(AssertUnwindSafe(|| pending.as_mut().poll(&mut cx)))
        };
        let completion: Completion = match polled {
            Ok(Poll::Pending) => return None,
            Ok(Poll::Ready(completion)) => completion,
            Err(_) => Box::new(|_| {
                Err(PyRuntimeError::new_err(
                    "internal error: a Redis task panicked",
                ))
            }),
        };
        *work = None;
        Some(completion)
    }

    fn take_future(&self) -> Option<Py<PyAny>> {
        self.future.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Wake for LoopTask {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.bridge.in_callback() {
            self.bridge.push(Item::Poll(self.clone()));
        } else {
            self.clone().go_on_on_tokio();
        }
    }
}

/// Has the loop watch `conn`'s socket (once per loop and connection), if it can. A
/// loop that cannot is served by the connection's reader task, as every loop was
/// before: never an error for the call.
fn watch(py: Python<'_>, event_loop: &Bound<'_, PyAny>, bridge: &Arc<Bridge>, conn: Awaited) {
    if !bridge.watches_sockets() || !bridge.start_watching(conn.key()) {
        return;
    }
    let fd = conn.fd();
    let watched = PyWeakrefReference::new(event_loop).and_then(|weak| {
        let ready = SocketReady {
            key: conn.key(),
            conn,
            bridge: bridge.clone(),
            event_loop: weak.unbind(),
        };
        event_loop.call_method1(intern!(py, "add_reader"), (fd, ready))
    });
    if let Err(err) = watched {
        log::debug!("the event loop cannot watch the connection's socket: {err}");
    }
}

/// The loop's callback when a watched socket is readable: reads the replies, then runs
/// the polls they woke. It holds the connection, so the descriptor stays open (and
/// cannot be reused) until the loop stops watching it, once the connection is over.
#[pyclass(frozen, module = "nano_graphrag_redis._core")]
struct SocketReady {
    conn: Awaited,
    key: usize,
    bridge: Arc<Bridge>,
    event_loop: Py<PyWeakrefReference>,
}

#[pymethods]
impl SocketReady {
    fn __call__(&self, py: Python<'_>) {
        self.bridge.in_loop_callback(py, || {
            // Read without the GIL: a tokio thread reading meanwhile holds the same lock.
            let open = py.detach(|| self.conn.read());
            if open && !self.conn.is_over() {
                return;
            }
            if let Some(event_loop) = self.event_loop.bind(py).upgrade() {
                if let Err(err) =
                    event_loop.call_method1(intern!(py, "remove_reader"), (self.conn.fd(),))
                {
                    log::debug!("cannot stop watching a closed connection: {err}");
                }
            }
            self.bridge.stop_watching(self.key);
        });
    }
}
