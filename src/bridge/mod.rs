//! Hands results from tokio to asyncio without making tokio threads take the GIL.
//!
//! The naive path (one `future_into_py` per call) has every finishing tokio task take
//! the GIL and call `call_soon_threadsafe`: measured here it is slower than redis-py.
//! Instead each event loop gets one bridge: a queue of finished calls plus an eventfd
//! registered with `loop.add_reader`. A tokio task pushes `(future, completion)` and
//! writes the eventfd only when the queue goes from empty to non-empty; the reader
//! callback, on the loop thread with the GIL, reads the eventfd first, then swaps the
//! whole queue out and resolves every future in one pass, building the Python results
//! (JSON decoding included) right there. Loops without `add_reader` (and platforms
//! without eventfd) get the same queue, woken by `call_soon_threadsafe` once per batch.
//!
//! Calls of one request (`spawn`) do not start on tokio at all: they run on the loop
//! thread while they can, and the loop reads their replies itself (`on_loop.rs`).
//! Calls whose result comes in parts (`spawn_stepped`) run on tokio.
//!
//! Cancelling a Python future only marks it: the Redis reply is still read and then
//! dropped, so a reply can never reach the wrong caller.

mod on_loop;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};

use crate::runtime;

/// Builds a call's Python result, on the loop thread, with the GIL.
pub type Completion = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// Builds a part of a call's result, with the GIL, while the rest is still in flight.
pub type Step = Box<dyn FnOnce(Python<'_>) + Send>;

/// Where a running call hands the parts of its result: to the thread that builds the
/// Python result (the event loop's, or the blocking caller's), which runs each step in
/// the order given, and all of them before the call's own result is built.
pub struct Steps(Sink);

enum Sink {
    Loop(Arc<Bridge>),
    Caller(tokio::sync::mpsc::UnboundedSender<Step>),
}

impl Steps {
    pub fn run(&self, step: Step) {
        match &self.0 {
            Sink::Loop(bridge) => bridge.push(Item::Step(step)),
            // The caller stopped waiting (Ctrl-C): nobody needs the part any more.
            Sink::Caller(caller) => drop(caller.send(step)),
        }
    }
}

/// Starts `work` and returns an asyncio future of the running loop that resolves to
/// `convert(result)`. The work runs on the loop's thread while it can, woken by its
/// reply (see `on_loop.rs`), and on tokio otherwise.
pub fn spawn<W, T, C>(py: Python<'_>, work: W, convert: C) -> PyResult<Py<PyAny>>
where
    W: Future<Output = crate::errors::Result<T>> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let (event_loop, bridge, future) = new_call(py)?;
    let handle = future.clone_ref(py);
    on_loop::start(py, &event_loop, &bridge, handle, completed(work, convert))?;
    Ok(future)
}

/// The running loop, its bridge, and a new asyncio future of it for a call's result.
fn new_call(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Arc<Bridge>, Py<PyAny>)> {
    let event_loop = running_loop(py)?;
    let bridge = bridge_for(py, &event_loop)?;
    let future = event_loop
        .call_method0(intern!(py, "create_future"))?
        .unbind();
    Ok((event_loop, bridge, future))
}

/// `work`, then how its outcome (a panic included) becomes the call's Python result.
async fn completed<W, T, C>(work: W, convert: C) -> Completion
where
    W: Future<Output = crate::errors::Result<T>>,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    match CatchUnwind(work).await {
        Ok(Ok(value)) => Box::new(move |py| convert(py, value)),
        Ok(Err(err)) => Box::new(move |_| Err(err.into())),
        Err(()) => Box::new(|_| {
            Err(PyRuntimeError::new_err(
                "internal error: a Redis task panicked",
            ))
        }),
    }
}

/// [`spawn`] for work that hands parts of its result to the loop thread as they come
/// ([`Steps`]): they are built there while later parts are still in flight.
pub fn spawn_stepped<M, W, T, C>(py: Python<'_>, make: M, convert: C) -> PyResult<Py<PyAny>>
where
    M: FnOnce(Steps) -> W,
    W: Future<Output = crate::errors::Result<T>> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let (_, bridge, future) = new_call(py)?;
    let handle = future.clone_ref(py);
    let work = completed(make(Steps(Sink::Loop(bridge.clone()))), convert);
    bridge.runtime.clone().spawn(async move {
        let completion = work.await;
        bridge.push(Item::Done(handle, completion));
    });
    Ok(future)
}

/// How often a blocking call looks for signals (Ctrl-C) while it waits.
const SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs `work` to completion on the caller's thread, with the GIL released while
/// waiting. On Linux the caller sleeps on its request's socket and reads the reply
/// itself (`caller.rs`); elsewhere tokio's `block_on` wakes it.
///
/// The wait is cut into slices; between slices the GIL is taken to run Python's signal
/// handlers, so Ctrl-C raises `KeyboardInterrupt` within a slice instead of after the
/// call's deadline. The interrupted call is dropped (cancelled), which a multiplexed
/// connection handles safely. A fast call never sees a slice end: it costs nothing.
pub fn block_on<W, T>(py: Python<'_>, work: W) -> PyResult<T>
where
    W: Future<Output = crate::errors::Result<T>> + Send,
    T: Send,
{
    let rt = runtime::runtime();
    runtime::calling();
    let mut work = std::pin::pin!(work);
    loop {
        #[cfg(target_os = "linux")]
        let slice = py.detach(|| {
            let _context = rt.enter();
            crate::caller::run_for(work.as_mut(), SIGNAL_CHECK)
        });
        // The timer is made inside `block_on`: it needs the runtime's context.
        #[cfg(not(target_os = "linux"))]
        let slice = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(SIGNAL_CHECK, work.as_mut()).await })
                .ok()
        });
        match slice {
            Some(result) => return result.map_err(PyErr::from),
            None => py.check_signals()?,
        }
    }
}

/// [`block_on`] for work that hands parts of its result to the caller ([`Steps`]): the
/// caller builds each one, with the GIL, while later parts are still in flight.
pub fn block_on_stepped<M, W, T>(py: Python<'_>, make: M) -> PyResult<T>
where
    M: FnOnce(Steps) -> W,
    W: Future<Output = crate::errors::Result<T>> + Send,
    T: Send,
{
    use futures_util::future::{select, Either, FutureExt};

    let (parts, mut next_part) = tokio::sync::mpsc::unbounded_channel();
    let mut work = std::pin::pin!(make(Steps(Sink::Caller(parts))));
    loop {
        let (step, done) = block_on(py, async {
            match select(std::pin::pin!(next_part.recv()), work.as_mut()).await {
                // Work often ends right after handing over its last part: one more poll
                // sees that, and saves the caller a second turn for the GIL (which
                // costs up to the switch interval when other threads run Python).
                Either::Left((step, _)) => Ok((step, work.as_mut().now_or_never())),
                Either::Right((result, _)) => Ok((None, Some(result))),
            }
        })?;
        match (step, done) {
            (Some(step), None) => step(py),
            (step, Some(result)) => {
                let result = result?;
                step.into_iter().for_each(|step| step(py));
                while let Ok(step) = next_part.try_recv() {
                    step(py);
                }
                return Ok(result);
            }
            // The work let go of its steps: only its result is left.
            (None, None) => return block_on(py, work.as_mut()),
        }
    }
}

fn running_loop<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()
}

struct Bridge {
    queue: Mutex<Vec<Item>>,
    wake: Wake,
    /// The runtime of the generation the bridge was made in (bridges are per
    /// generation), kept so a call does not look it up.
    runtime: tokio::runtime::Handle,
    /// The connections whose sockets the loop watches (see `on_loop.rs`).
    watched: Mutex<HashSet<usize>>,
}

/// What the loop thread does with a queued item.
enum Item {
    /// A call finished: resolve its future with what the completion builds.
    Done(Py<PyAny>, Completion),
    /// A part of a call's result arrived: build it now.
    Step(Step),
    /// A call running on the loop was woken there: poll it again.
    Poll(Arc<on_loop::LoopTask>),
}

enum Wake {
    /// Linux: an eventfd the loop watches with `add_reader`.
    #[cfg(target_os = "linux")]
    EventFd(crate::eventfd::EventFd),
    /// Elsewhere: `loop.call_soon_threadsafe`, called once per batch.
    Threadsafe(Py<PyAny>),
}

impl Bridge {
    fn new(wake: Wake) -> Bridge {
        Bridge {
            queue: Mutex::new(Vec::new()),
            wake,
            runtime: runtime::runtime().handle().clone(),
            watched: Mutex::new(HashSet::new()),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Item>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` as a callback of this bridge's loop, then everything queued meanwhile.
    /// Wakes of this loop's calls in the meantime are polls made right here (see
    /// [`Bridge::in_callback`]), before the loop gets control back: it may stop and
    /// close right after, and its queue must hold nothing a call needs to finish. A
    /// call still queued after [`DRAIN_ROUNDS`] (one that keeps waking itself) goes
    /// on on tokio.
    fn in_loop_callback<R>(&self, py: Python<'_>, f: impl FnOnce() -> R) -> R {
        let key = self as *const Bridge as usize;
        let outer = IN_CALLBACK.replace(key);
        let result = f();
        for _ in 0..DRAIN_ROUNDS {
            if !self.drain_queue(py) {
                break;
            }
        }
        IN_CALLBACK.set(outer);
        let polls: Vec<Arc<on_loop::LoopTask>> = {
            let mut queue = self.queue();
            let mut polls = Vec::new();
            for item in std::mem::take(&mut *queue) {
                match item {
                    Item::Poll(task) => polls.push(task),
                    other => queue.push(other),
                }
            }
            polls
        };
        polls
            .into_iter()
            .for_each(on_loop::LoopTask::go_on_on_tokio);
        result
    }

    /// Whether this thread is inside one of this loop's callbacks, which polls what it
    /// is given before it returns ([`Bridge::in_loop_callback`]). Anywhere else
    /// (another thread, or this thread running another loop after this one closed)
    /// the loop may never run again.
    fn in_callback(&self) -> bool {
        IN_CALLBACK.get() == self as *const Bridge as usize
    }

    /// Whether the loop can watch sockets (it has `add_reader`, as its eventfd showed).
    fn watches_sockets(&self) -> bool {
        #[cfg(target_os = "linux")]
        return matches!(self.wake, Wake::EventFd(_));
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// True if the loop did not watch connection `key` yet (it does from now on).
    fn start_watching(&self, key: usize) -> bool {
        self.watched().insert(key)
    }

    fn stop_watching(&self, key: usize) {
        self.watched().remove(&key);
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by tokio tasks; takes the GIL only in the `Threadsafe` mode.
    fn push(self: &Arc<Self>, item: Item) {
        let was_empty = {
            let mut queue = self.queue();
            let was_empty = queue.is_empty();
            queue.push(item);
            was_empty
        };
        if was_empty {
            self.wake();
        }
    }

    fn wake(self: &Arc<Self>) {
        match &self.wake {
            #[cfg(target_os = "linux")]
            Wake::EventFd(fd) => fd.signal(),
            Wake::Threadsafe(call_soon_threadsafe) => Python::attach(|py| {
                let drain = Drain {
                    bridge: self.clone(),
                };
                if let Err(err) =
                    Py::new(py, drain).and_then(|drain| call_soon_threadsafe.call1(py, (drain,)))
                {
                    // The loop is closed: nobody is waiting for these results any more.
                    log::debug!("cannot wake a closed event loop: {err}");
                }
            }),
        }
    }

    /// On the loop thread: resolves every finished call, runs every queued step and
    /// poll.
    fn drain(&self, py: Python<'_>) {
        self.in_loop_callback(py, || ());
    }

    /// Handles what is queued now; false if there was nothing.
    fn drain_queue(&self, py: Python<'_>) -> bool {
        #[cfg(target_os = "linux")]
        if let Wake::EventFd(fd) = &self.wake {
            // Cleared FIRST: a push that lands after the swap below always signals
            // again, so no wake-up is lost.
            fd.clear();
        }
        let finished = std::mem::take(&mut *self.queue());
        let any = !finished.is_empty();
        for item in finished {
            // Each item in its own error scope: one failure never strands the rest.
            match item {
                Item::Done(future, completion) => complete(py, future.bind(py), completion),
                Item::Poll(task) => task.run_on_loop(py),
                // A step records its own errors for the call's completion; a panic
                // leaves that record poisoned, which the completion reports.
                Item::Step(step) => drop(catch_unwind(AssertUnwindSafe(|| step(py)))),
            }
        }
        any
    }
}

/// How many times a loop callback drains its queue before handing what is left to
/// tokio.
const DRAIN_ROUNDS: usize = 16;

/// Builds a call's result and resolves its asyncio future with it.
fn complete(py: Python<'_>, future: &Bound<'_, PyAny>, completion: Completion) {
    let outcome = catch_unwind(AssertUnwindSafe(|| completion(py))).unwrap_or_else(|_| {
        Err(PyRuntimeError::new_err(
            "internal error: building a result panicked",
        ))
    });
    resolve(py, future, outcome);
}

thread_local! {
    /// The bridge whose loop callback this thread is running (0: none).
    static IN_CALLBACK: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn resolve(py: Python<'_>, future: &Bound<'_, PyAny>, outcome: PyResult<Py<PyAny>>) {
    let done = match outcome {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
        Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),)),
    };
    // Fails only for a future the caller cancelled (InvalidStateError): drop the result.
    if let Err(err) = done {
        log::debug!("result for a cancelled call dropped: {err}");
    }
}

/// The reader callback (or `call_soon_threadsafe` callback) of a bridge. It owns the
/// bridge, so the eventfd stays open as long as the loop watches it.
#[pyclass(frozen, module = "nano_graphrag_redis._core")]
struct Drain {
    bridge: Arc<Bridge>,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        self.bridge.drain(py);
    }
}

struct Entry {
    event_loop: Py<PyWeakrefReference>,
    bridge: Arc<Bridge>,
}

type Registry = HashMap<usize, Entry>;
static BRIDGES: Mutex<Option<(u64, Registry)>> = Mutex::new(None);

fn registry() -> std::sync::MutexGuard<'static, Option<(u64, Registry)>> {
    BRIDGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bridge of `event_loop`, created on its first call. The registry lock is never
/// held across a Python call (one could run a finalizer that needs it).
fn bridge_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Bridge>> {
    let key = event_loop.as_ptr() as usize;
    let generation = runtime::generation();
    {
        let mut slot = registry();
        if slot.as_ref().is_none_or(|(g, _)| *g != generation) {
            // After fork: the parent's bridges belong to its loops and runtime.
            if let Some(stale) = slot.take() {
                std::mem::forget(stale);
            }
            *slot = Some((generation, HashMap::new()));
        }
        let bridges = &slot.as_ref().expect("set above").1;
        if let Some(entry) = bridges.get(&key) {
            if entry
                .event_loop
                .bind(py)
                .upgrade()
                .is_some_and(|l| l.is(event_loop))
            {
                return Ok(entry.bridge.clone());
            }
        }
    }
    sweep(py);
    let bridge = new_bridge(py, event_loop)?;
    let entry = Entry {
        event_loop: PyWeakrefReference::new(event_loop)?.unbind(),
        bridge: bridge.clone(),
    };
    if let Some((_, bridges)) = registry().as_mut() {
        bridges.insert(key, entry);
    }
    Ok(bridge)
}

/// Forgets the bridges of loops that are closed or gone.
fn sweep(py: Python<'_>) {
    let candidates: Vec<(usize, Py<PyWeakrefReference>)> = match registry().as_ref() {
        Some((_, bridges)) => bridges
            .iter()
            .map(|(k, e)| (*k, e.event_loop.clone_ref(py)))
            .collect(),
        None => return,
    };
    let stale: Vec<usize> = candidates
        .into_iter()
        .filter(|(_, weak)| match weak.bind(py).upgrade() {
            None => true,
            Some(l) => l
                .call_method0(intern!(py, "is_closed"))
                .and_then(|c| c.is_truthy())
                .unwrap_or(true),
        })
        .map(|(k, _)| k)
        .collect();
    let removed: Vec<Entry> = match registry().as_mut() {
        Some((_, bridges)) => stale.iter().filter_map(|k| bridges.remove(k)).collect(),
        None => Vec::new(),
    };
    // Dropped here, outside the lock: may release Python objects.
    drop(removed);
}

/// Whether bridges wake their loop through an eventfd (Linux, unless
/// `NANO_GRAPHRAG_REDIS_WAKE=threadsafe`); otherwise a tokio thread takes the GIL to
/// call `call_soon_threadsafe` once per batch of results.
pub fn wakes_by_eventfd() -> bool {
    cfg!(target_os = "linux")
        && std::env::var_os("NANO_GRAPHRAG_REDIS_WAKE").is_none_or(|v| v != "threadsafe")
}

fn new_bridge(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Bridge>> {
    #[cfg(target_os = "linux")]
    if wakes_by_eventfd() {
        use std::os::fd::AsRawFd;
        let fd = crate::eventfd::EventFd::new()?;
        let raw = fd.as_raw_fd();
        let bridge = Arc::new(Bridge::new(Wake::EventFd(fd)));
        let drain = Py::new(
            py,
            Drain {
                bridge: bridge.clone(),
            },
        )?;
        match event_loop.call_method1(intern!(py, "add_reader"), (raw, drain)) {
            Ok(_) => return Ok(bridge),
            Err(err) if err.is_instance_of::<PyNotImplementedError>(py) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Arc::new(Bridge::new(Wake::Threadsafe(
        event_loop
            .getattr(intern!(py, "call_soon_threadsafe"))?
            .unbind(),
    ))))
}

/// Turns a panic inside `F` into `Err(())`, so the caller's future still resolves.
struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
