//! A circuit breaker: after `threshold` connection failures in a row, calls fail at
//! once for `cooldown`; then calls are let through again, and the first failure
//! opens it anew while the first success closes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Breaker {
    /// 0 turns the breaker off.
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(remaining)` while open.
    pub fn admit(&self) -> Result<(), Duration> {
        let state = self.state();
        match state.open_until {
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.admit().is_err()
    }

    pub fn success(&self) {
        let mut state = self.state();
        if state.failures != 0 || state.open_until.is_some() {
            *state = State::default();
        }
    }

    pub fn failure(&self) {
        if self.threshold == 0 {
            return;
        }
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            state.open_until = Some(Instant::now() + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_closes_on_success() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure();
        assert!(b.admit().is_ok());
        b.failure();
        assert!(b.admit().is_err());
        b.success();
        assert!(b.admit().is_ok());
    }

    #[test]
    fn lets_calls_through_after_cooldown() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.failure();
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.admit().is_ok());
        b.failure();
        assert!(b.is_open());
    }

    #[test]
    fn threshold_zero_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            b.failure();
        }
        assert!(b.admit().is_ok());
    }
}
