//! Failure handling against real (and deliberately broken) servers: timeouts,
//! retries, reconnects, the circuit breaker, auth, the eviction-policy check and
//! backpressure.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, free_port, ids, records, store, text, RedisServer};
use nano_graphrag_redis::config::Raw;
use nano_graphrag_redis::errors::Error;
use nano_graphrag_redis::runtime::runtime;
use nano_graphrag_redis::store::Store;
use redis::Commands;

fn secs(value: f64) -> Raw {
    Raw::Float(value)
}

/// A server that completes the TCP handshake (the kernel does that for the listen
/// backlog) but never reads or answers: every attempt must end by a timeout.
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    (listener, url)
}

#[track_caller]
fn expect_unavailable(result: Result<(), Error>) -> String {
    match result {
        Err(Error::Unavailable(message)) => message,
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

#[track_caller]
fn expect_operation(result: Result<(), Error>) -> String {
    match result {
        Err(Error::Operation(message)) => message,
        other => panic!("expected Error::Operation, got {other:?}"),
    }
}

#[test]
fn unreachable_server_is_unavailable_within_seconds() {
    // Nothing listens here: connections are refused at once.
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let store = store("docs", &url, &[("redis_connection_timeout", Raw::Int(1))]);

    let started = Instant::now();
    let message = expect_unavailable(block_on(store.ping()));
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The message says which server, so an operator can act on it.
    assert!(message.contains(&port.to_string()), "{message}");
    // Reads fail the same way (they are not silently empty).
    assert!(matches!(
        block_on(store.get(b"a")),
        Err(Error::Unavailable(_))
    ));
}

#[test]
fn silent_server_is_unavailable_within_timeout_plus_retry_deadline() {
    let (_listener, url) = silent_server();
    let connect_timeout = 0.5;
    let retry_deadline = 1.5;
    // Many attempts allowed and the breaker off: only the deadline can end the retries.
    let store = store(
        "docs",
        &url,
        &[
            ("redis_connection_timeout", secs(connect_timeout)),
            ("redis_socket_timeout", secs(connect_timeout)),
            ("redis_retry_deadline", secs(retry_deadline)),
            ("redis_retry_attempts", Raw::Int(100)),
            ("redis_breaker_threshold", Raw::Int(0)),
        ],
    );

    let started = Instant::now();
    expect_unavailable(block_on(store.ping()));
    let elapsed = started.elapsed().as_secs_f64();
    // It did keep trying for (most of) the deadline: more than one attempt...
    assert!(
        elapsed >= 2.0 * connect_timeout,
        "gave up after {elapsed:.2}s"
    );
    // ...but no attempt starts after the deadline, so the last one ends within a
    // connect timeout of it (plus scheduling slack).
    let bound = retry_deadline + connect_timeout + 0.5;
    assert!(elapsed <= bound, "took {elapsed:.2}s, bound {bound:.2}s");
}

/// Concurrent callers against a silent server must each be bounded like a single
/// caller: they must not queue up behind one another's connection attempts.
#[test]
fn concurrent_callers_against_a_silent_server_are_each_bounded() {
    let (_listener, url) = silent_server();
    let store = Arc::new(store(
        "docs",
        &url,
        &[
            ("redis_connection_timeout", secs(0.5)),
            ("redis_socket_timeout", secs(0.5)),
            ("redis_retry_deadline", secs(0.5)),
            ("redis_retry_attempts", Raw::Int(1)),
            ("redis_breaker_threshold", Raw::Int(0)),
        ],
    ));

    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            runtime().spawn(async move { store.ping().await })
        })
        .collect();
    for call in calls {
        expect_unavailable(block_on(call).unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One caller needs at most connect timeout + deadline = 1 s; 8 callers in a row
    // would need 4 s or more.
    assert!(elapsed <= 2.0, "8 concurrent calls took {elapsed:.2}s");
}

#[test]
fn restarted_server_is_reconnected_on_the_next_operation() {
    let mut server = RedisServer::start(&[]);
    // The breaker is off so that only reconnecting is under test here.
    let store = store(
        "docs",
        &server.url(),
        &[
            ("redis_breaker_threshold", Raw::Int(0)),
            ("redis_connection_timeout", Raw::Int(1)),
        ],
    );
    block_on(store.put_many(records(&[("a", b"1")]))).unwrap();

    server.stop();
    expect_unavailable(block_on(store.ping()));

    // The shared connection is dead; the next operation must reconnect by itself
    // (no warm-up call) and succeed. The restarted server is empty: no persistence.
    server.restart();
    block_on(store.put_many(records(&[("b", b"2")]))).unwrap();
    assert_eq!(block_on(store.get(b"b")).unwrap(), Some(b"2".to_vec()));
    assert_eq!(block_on(store.get(b"a")).unwrap(), None);

    // Also when the connection died unnoticed: restart without a failing call between.
    server.restart();
    assert_eq!(block_on(store.get(b"b")).unwrap(), None);
}

#[test]
fn open_breaker_fails_fast() {
    let (_listener, url) = silent_server();
    let connect_timeout = Duration::from_millis(500);
    let store = store(
        "docs",
        &url,
        &[
            (
                "redis_connection_timeout",
                secs(connect_timeout.as_secs_f64()),
            ),
            ("redis_socket_timeout", secs(connect_timeout.as_secs_f64())),
            ("redis_breaker_threshold", Raw::Int(2)),
            ("redis_breaker_cooldown", Raw::Int(60)),
            ("redis_retry_attempts", Raw::Int(1)),
        ],
    );
    // Two attempts, two timeouts: that reaches the threshold.
    let started = Instant::now();
    expect_unavailable(block_on(store.ping()));
    assert!(
        started.elapsed() >= 2 * connect_timeout,
        "the failures were real timeouts"
    );

    for _ in 0..3 {
        let started = Instant::now();
        let message = expect_unavailable(block_on(store.ping()));
        let elapsed = started.elapsed();
        assert!(elapsed < connect_timeout / 5, "not fast: {elapsed:?}");
        assert!(message.contains("circuit breaker"), "{message}");
    }
}

#[test]
fn breaker_lets_calls_through_again_after_the_cooldown() {
    let mut server = RedisServer::start(&[]);
    let cooldown = Duration::from_millis(1500);
    let store = store(
        "docs",
        &server.url(),
        &[
            ("redis_connection_timeout", Raw::Int(1)),
            ("redis_breaker_threshold", Raw::Int(2)),
            ("redis_breaker_cooldown", secs(cooldown.as_secs_f64())),
            ("redis_retry_attempts", Raw::Int(3)),
        ],
    );
    block_on(store.ping()).unwrap();
    server.stop();
    expect_unavailable(block_on(store.ping()));

    // The server is back, but the breaker is still open: calls fail without trying.
    server.restart();
    let message = expect_unavailable(block_on(store.ping()));
    assert!(message.contains("circuit breaker"), "{message}");

    // After the cooldown a call goes through, and its success closes the breaker.
    std::thread::sleep(cooldown + Duration::from_millis(100));
    block_on(store.ping()).unwrap();
    block_on(store.put_many(records(&[("a", b"1")]))).unwrap();
}

#[test]
fn server_errors_are_final_and_do_not_trip_the_breaker() {
    let server = RedisServer::start(&["--maxmemory", "1", "--maxmemory-policy", "noeviction"]);
    let store = store(
        "docs",
        &server.url(),
        &[("redis_breaker_threshold", Raw::Int(1))],
    );
    for _ in 0..3 {
        let message = expect_operation(block_on(store.put_many(records(&[("a", b"1")]))));
        assert!(message.contains("OOM"), "{message}");
    }
    // The server answered every time: it is up, so the breaker stays closed.
    block_on(store.ping()).unwrap();
}

/// A key of another type inside a namespace is not a record of this store: reads
/// treat it as absent, the same for one id and for many (documented in the README).
#[test]
fn a_key_of_another_type_reads_as_absent() {
    let server = RedisServer::start(&[]);
    let store = store("docs", &server.url(), &[]);
    let _: () = server
        .conn()
        .hset("nano_graphrag:docs:h", "f", "v")
        .unwrap();
    assert_eq!(block_on(store.get(b"h")).unwrap(), None);
    assert_eq!(block_on(store.get_many(&ids(&["h"]))).unwrap(), vec![None]);
}

#[test]
fn wrong_password_is_an_operation_error_that_does_not_leak_it() {
    let server = RedisServer::start(&["--requirepass", "right-pass-3141"]);
    let wrong = "wrong-pass-2718";

    // As a setting...
    let by_setting = store("docs", &server.url(), &[("redis_password", text(wrong))]);
    let started = Instant::now();
    let message = expect_operation(block_on(by_setting.ping()));
    assert!(!message.contains(wrong), "password leaked: {message}");
    assert!(message.to_lowercase().contains("auth"), "{message}");
    // An answer "no" is not retried until a deadline.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // ...and inside the URL.
    let url = format!("redis://:{wrong}@127.0.0.1:{}", server.port());
    let by_url = store("docs", &url, &[]);
    let message = expect_operation(block_on(by_url.ping()));
    assert!(!message.contains(wrong), "password leaked: {message}");

    // No password at all: the server refuses the command.
    let none = store("docs", &server.url(), &[]);
    expect_operation(block_on(none.ping()));

    let right = store(
        "docs",
        &server.url(),
        &[("redis_password", text("right-pass-3141"))],
    );
    block_on(right.put_many(records(&[("a", b"1")]))).unwrap();
    assert_eq!(block_on(right.get(b"a")).unwrap(), Some(b"1".to_vec()));
}

#[test]
fn evicting_policy_is_refused_or_warned_about_as_configured() {
    let server = RedisServer::start(&["--maxmemory-policy", "allkeys-lru"]);
    let refuse = store(
        "docs",
        &server.url(),
        &[("redis_eviction_check", text("refuse"))],
    );
    // Every call is refused, not only the first (the check never passed).
    for _ in 0..2 {
        let message = expect_operation(block_on(refuse.put_many(records(&[("a", b"1")]))));
        assert!(message.contains("allkeys-lru"), "{message}");
    }
    assert!(!server
        .conn()
        .exists::<_, bool>("nano_graphrag:docs:a")
        .unwrap());

    for check in ["warn", "ignore"] {
        let store = store(
            "docs",
            &server.url(),
            &[("redis_eviction_check", text(check))],
        );
        block_on(store.put_many(records(&[("a", b"1")]))).unwrap();
        assert_eq!(
            block_on(store.get(b"a")).unwrap(),
            Some(b"1".to_vec()),
            "{check}"
        );
    }

    // "refuse" only refuses evicting policies.
    let safe = RedisServer::start(&["--maxmemory-policy", "volatile-lru"]);
    let store = store(
        "docs",
        &safe.url(),
        &[("redis_eviction_check", text("refuse"))],
    );
    block_on(store.ping()).unwrap();
}

#[test]
fn max_inflight_applies_backpressure_not_errors() {
    let server = RedisServer::start(&[]);
    let store = Arc::new(store(
        "docs",
        &server.url(),
        &[("redis_max_inflight", Raw::Int(4))],
    ));
    let written: Vec<(Vec<u8>, Vec<u8>)> = (0..50)
        .map(|i| (format!("id-{i}").into_bytes(), format!("v{i}").into_bytes()))
        .collect();
    block_on(store.put_many(written.clone())).unwrap();

    // 500 callers at once, 4 permits: the rest wait their turn.
    let calls: Vec<_> = (0..500)
        .map(|i| {
            let store: Arc<Store> = store.clone();
            runtime()
                .spawn(async move { (i, store.get(format!("id-{}", i % 50).as_bytes()).await) })
        })
        .collect();
    for call in calls {
        let (i, result) = block_on(call).unwrap();
        let value = result.unwrap_or_else(|e| panic!("call {i} failed: {e:?}"));
        assert_eq!(value, Some(format!("v{}", i % 50).into_bytes()), "call {i}");
    }
}
