//! A circuit breaker that counts connection *events*, not requests.
//!
//! An event is one failed dial or one connection that broke (by stall, reset or
//! timeout), named by the number of the dial that made it: a hundred requests failing
//! on the same broken connection are one event, so a short stall never opens the
//! breaker by itself. After `threshold` events in a row without a reply in between, the
//! breaker opens for `cooldown`: new calls fail at once. When the cooldown ends, the
//! next dial is the probe (the link dials one at a time, so there is one probe); its
//! success closes the breaker, its failure opens it for another cooldown. Calls that
//! were already retrying wait for the probe instead of failing (see `link.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the breaker stands, for messages and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Closed,
    /// Failing fast until the given instant.
    Open(Instant),
    /// The cooldown is over: the next dial is a probe.
    HalfOpen,
}

pub struct Breaker {
    /// 0 turns the breaker off.
    threshold: u32,
    cooldown: Duration,
    /// False while no failure is counted: lets the hot path skip the lock.
    troubled: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    /// The newest event counted; an event is counted at most once.
    last_event: u64,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            troubled: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn phase(&self) -> Phase {
        if !self.troubled.load(Ordering::Acquire) {
            return Phase::Closed;
        }
        match self.state().open_until {
            None => Phase::Closed,
            Some(until) if Instant::now() < until => Phase::Open(until),
            Some(_) => Phase::HalfOpen,
        }
    }

    /// The server answered: whatever was wrong is over. Returns true if this closed
    /// an open (or half-open) breaker, so the caller logs the transition once.
    pub fn success(&self) -> bool {
        if !self.troubled.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut state = self.state();
        state.failures = 0;
        state.open_until.take().is_some()
    }

    /// Records connection event `event` (a dial number, increasing). Returns true if
    /// this opened the breaker (so the caller logs the transition once).
    pub fn failure(&self, event: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut state = self.state();
        if event <= state.last_event {
            return false;
        }
        state.last_event = event;
        state.failures = state.failures.saturating_add(1);
        self.troubled.store(true, Ordering::Release);
        if state.failures < self.threshold {
            return false;
        }
        let was_open = state.open_until.is_some();
        state.open_until = Some(Instant::now() + self.cooldown);
        !was_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_counts_once_however_many_requests_see_it() {
        let b = Breaker::new(2, Duration::from_secs(60));
        for _ in 0..100 {
            b.failure(7);
        }
        assert_eq!(b.phase(), Phase::Closed);
        assert!(b.failure(8), "the second event opens it");
        assert!(matches!(b.phase(), Phase::Open(_)));
        assert!(b.success(), "closing an open breaker is a transition");
        assert_eq!(b.phase(), Phase::Closed);
        assert!(!b.success(), "closing a closed one is not");
    }

    #[test]
    fn half_open_after_cooldown_and_a_failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_millis(1));
        assert!(b.failure(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(b.phase(), Phase::HalfOpen);
        assert!(!b.failure(2), "already open: not a new transition");
        assert!(matches!(b.phase(), Phase::Open(_)));
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for event in 1..100 {
            b.failure(event);
        }
        assert_eq!(b.phase(), Phase::Closed);
    }
}
