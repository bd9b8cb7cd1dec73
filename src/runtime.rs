//! The process-wide tokio runtime, rebuilt in a child after `fork()`.
//!
//! A forked child inherits the runtime's memory but not its threads, so the old
//! runtime (and every connection driven by it) is unusable there. A `pthread_atfork`
//! handler bumps a generation counter in the child; whoever caches runtime-bound state
//! compares generations and rebuilds. The parent's objects are leaked in the child on
//! purpose: dropping them would wait for threads that do not exist.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static RUNTIME: Mutex<Option<(u64, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);
#[cfg(unix)]
static AT_FORK: Once = Once::new();

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    // Only an atomic store: nothing else is safe between fork and exec.
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Changes in a forked child; state tagged with an older value belongs to the parent.
pub fn generation() -> u64 {
    // Windows has no fork(): there the generation never changes.
    #[cfg(unix)]
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
    GENERATION.load(Ordering::SeqCst)
}

/// The runtime of this process (created on first use).
pub fn runtime() -> Arc<tokio::runtime::Runtime> {
    let generation = generation();
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((g, rt)) = slot.as_ref() {
        if *g == generation {
            return rt.clone();
        }
    }
    if let Some(stale) = slot.take() {
        std::mem::forget(stale);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads())
            .thread_name("nano-graphrag-redis")
            .on_thread_start(|| ON_WORKER.set(true))
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime"),
    );
    *slot = Some((generation, rt.clone()));
    rt
}

/// Set by every call made off the workers; the heartbeat clears it each tick.
static CALLED: AtomicBool = AtomicBool::new(false);
/// `generation + 1` of the runtime whose heartbeat runs (0: none).
static HEARTBEAT: AtomicU64 = AtomicU64::new(0);
const HEARTBEAT_TICK: Duration = Duration::from_millis(500);

/// Keeps a timer due within half a second while calls are made off the workers (by a
/// blocking caller, or on an event loop's thread). Each call sets timers seconds away
/// (its deadline, its stall timeout), and tokio wakes its worker to re-arm whenever a
/// new timer is due before every timer it knows: without this one, a lone call woke
/// the worker just to set its timers (half a context switch per call, measured).
/// The heartbeat stops after a second without calls; the next call starts it again.
pub fn calling() {
    CALLED.store(true, Ordering::Relaxed);
    let running = generation() + 1;
    if HEARTBEAT.load(Ordering::Relaxed) == running
        || HEARTBEAT.swap(running, Ordering::AcqRel) == running
    {
        return;
    }
    runtime().spawn(async move {
        let mut idle_ticks = 0;
        while idle_ticks < 2 {
            tokio::time::sleep(HEARTBEAT_TICK).await;
            idle_ticks = if CALLED.swap(false, Ordering::Relaxed) {
                0
            } else {
                idle_ticks + 1
            };
        }
        // A call in between still finds the heartbeat running and does not start one:
        // it only costs that call a wake-up, never correctness.
        let _ = HEARTBEAT.compare_exchange(running, 0, Ordering::AcqRel, Ordering::Relaxed);
    });
}

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is one of the runtime's (a worker, or its blocking pool): work
/// here runs on tokio, not on a caller's thread.
pub fn on_worker() -> bool {
    ON_WORKER.get()
}

/// One worker where results reach asyncio through an eventfd (Linux): Redis I/O needs
/// little CPU (the Python side is the bottleneck), and with a second worker each call
/// from Python woke both (tokio lets a worker that found work wake another to keep
/// searching): five context switches per call instead of three. Measured on 2 cores
/// (bench/RESULTS.md), one worker gave lower sequential latency, more concurrent gets
/// per second and a faster GraphRAG end to end. Elsewhere a worker takes the GIL to wake
/// the loop, and a second one keeps the I/O going meanwhile.
/// `NANO_GRAPHRAG_REDIS_THREADS` overrides.
fn worker_threads() -> usize {
    std::env::var("NANO_GRAPHRAG_REDIS_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(if crate::bridge::wakes_by_eventfd() {
            1
        } else {
            2
        })
}
