//! A latency histogram that any thread records into without a lock: one atomic
//! counter per bucket and one for the sum.
//!
//! Buckets double: the first holds up to 16 µs, the last finite one up to 16.8 s
//! (16 µs × 2^20), then +Inf. A bucket is found with one subtraction, one division and
//! a leading-zeros count, so recording costs two relaxed atomic additions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Finite buckets plus +Inf.
pub const BUCKETS: usize = 22;

/// The upper bound of the first bucket, in nanoseconds.
const FIRST_BOUND_NANOS: u64 = 16_000;

pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

/// What a histogram held at one moment: per-bucket (not cumulative) counts.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub counts: [u64; BUCKETS],
    pub sum_nanos: u64,
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS],
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn record(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// The upper bound of bucket `i` in seconds (`f64::INFINITY` for the last).
pub fn upper_bound(i: usize) -> f64 {
    if i + 1 >= BUCKETS {
        return f64::INFINITY;
    }
    (FIRST_BOUND_NANOS << i) as f64 / 1e9
}

/// The bucket of a duration: the first whose upper bound is at least `nanos`.
fn bucket(nanos: u64) -> usize {
    let above_first = nanos.saturating_sub(1) / FIRST_BOUND_NANOS;
    let i = (u64::BITS - above_first.leading_zeros()) as usize;
    i.min(BUCKETS - 1)
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile in seconds, interpolated within its bucket as Prometheus'
    /// `histogram_quantile` does; `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { upper_bound(i - 1) };
                let upper = upper_bound(i);
                if upper.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duration_lands_in_the_first_bucket_that_holds_it() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(16_000), 0);
        assert_eq!(bucket(16_001), 1);
        assert_eq!(bucket(32_000), 1);
        assert_eq!(bucket(32_001), 2);
        assert_eq!(bucket(16_000 << 20), 20);
        assert_eq!(bucket((16_000 << 20) + 1), BUCKETS - 1);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        for i in 0..BUCKETS - 1 {
            let bound = (upper_bound(i) * 1e9).round() as u64;
            assert_eq!(bucket(bound), i);
            assert_eq!(bucket(bound + 1), i + 1);
        }
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Histogram::new();
        for _ in 0..99 {
            h.record(Duration::from_micros(10));
        }
        h.record(Duration::from_millis(3));
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > 0.0 && p50 <= 16e-6, "{p50}");
        let p100 = s.quantile(1.0).unwrap();
        assert!((2.048e-3..=4.096e-3).contains(&p100), "{p100}");
        assert_eq!(Histogram::new().snapshot().quantile(0.99), None);
    }
}
