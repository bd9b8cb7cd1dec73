//! Log records below Python's level must not cost a tokio thread the GIL: pyo3-log
//! caches each logger's level after its first record. This holds the GIL on one
//! thread while another emits records at a disabled level; if a record needed the
//! GIL, the second thread would stall until the timeout.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

const TARGET: &str = "nano_graphrag_redis::client";
const RECORDS: u32 = 1_000_000;

#[test]
fn a_disabled_level_costs_no_gil_once_its_logger_is_known() {
    Python::initialize();
    pyo3_log::try_init().expect("the only logger in this test binary");
    // Python's default: WARNING and above. The first record of a target asks Python
    // for the logger's level (and takes the GIL once).
    log::debug!(target: TARGET, "first record: fills the cache");

    let elapsed = Python::attach(|_py| {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            for i in 0..RECORDS {
                log::debug!(target: TARGET, "retrying after: record {i}");
            }
            done.send(started.elapsed()).unwrap();
        });
        // Still holding the GIL: the records must get through without it.
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("a disabled record waited for the GIL")
    });
    // Reported, not asserted: speed belongs to the benchmark.
    eprintln!("{:?} per disabled record", elapsed / RECORDS);
}
