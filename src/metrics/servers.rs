//! What the connections to each server did: dials, reconnects, lost connections,
//! breaker openings (counters, bumped on those rare events only), and what they hold
//! now: open connections, commands in flight, breaker state (read from the links
//! themselves when a snapshot is taken, so the hot path pays nothing for them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The state of one link's circuit breaker, for the `breaker_state` gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// What one link to the server holds at the moment it is read.
#[derive(Clone, Copy, Debug)]
pub struct Gauges {
    pub connected: bool,
    pub in_flight: u64,
    pub breaker: BreakerState,
}

/// Reads a link's gauges; `None` once the link is gone.
pub type Probe = Box<dyn Fn() -> Option<Gauges> + Send + Sync>;

/// One server, as every link to it in this process sees it (the single server, a
/// cluster master, the master behind Sentinel).
pub struct ServerMetrics {
    /// The server (`host:port`, or `sentinel/{master name}`): never credentials.
    pub server: String,
    pub(super) connects: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) dial_failures: AtomicU64,
    pub(super) connections_lost: AtomicU64,
    pub(super) breaker_opens: AtomicU64,
    probes: Mutex<Vec<Probe>>,
}

/// Counters and gauges of one server, summed over its links.
#[derive(Clone, Debug)]
pub struct ServerSnapshot {
    pub server: String,
    pub connections: u64,
    pub in_flight: u64,
    /// The worst state among the links.
    pub breaker: BreakerState,
    pub connects: u64,
    pub reconnects: u64,
    pub dial_failures: u64,
    pub connections_lost: u64,
    pub breaker_opens: u64,
}

impl ServerMetrics {
    pub(super) fn new(server: &str) -> ServerMetrics {
        ServerMetrics {
            server: server.to_owned(),
            connects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dial_failures: AtomicU64::new(0),
            connections_lost: AtomicU64::new(0),
            breaker_opens: AtomicU64::new(0),
            probes: Mutex::new(Vec::new()),
        }
    }

    /// A link to this server exists: its gauges count until `probe` returns `None`.
    pub fn attach(&self, probe: Probe) {
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(probe);
    }

    /// A dial succeeded; `again` when the link had a connection before.
    pub fn connected(&self, again: bool) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        if again {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dial_failed(&self) {
        self.dial_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_lost(&self) {
        self.connections_lost.fetch_add(1, Ordering::Relaxed);
    }

    pub fn breaker_opened(&self) {
        self.breaker_opens.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> ServerSnapshot {
        let mut connections = 0;
        let mut in_flight = 0;
        let mut breaker = BreakerState::Closed;
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|probe| match probe() {
                Some(gauges) => {
                    connections += u64::from(gauges.connected);
                    in_flight += gauges.in_flight;
                    breaker = breaker.max(gauges.breaker);
                    true
                }
                None => false,
            });
        ServerSnapshot {
            server: self.server.clone(),
            connections,
            in_flight,
            breaker,
            connects: self.connects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            dial_failures: self.dial_failures.load(Ordering::Relaxed),
            connections_lost: self.connections_lost.load(Ordering::Relaxed),
            breaker_opens: self.breaker_opens.load(Ordering::Relaxed),
        }
    }
}
