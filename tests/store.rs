//! The storage operations against a real `redis-server` (one per test).

mod common;

use std::collections::BTreeSet;

use common::{block_on, ids, info_field, records, store, RedisServer};
use nano_graphrag_redis::config::Raw;
use nano_graphrag_redis::errors::Error;
use redis::Commands;

/// What `TTL key` says (-2: no such key, -1: no expiry).
fn ttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query(conn).expect("TTL")
}

fn dbsize(conn: &mut redis::Connection) -> u64 {
    redis::cmd("DBSIZE").query(conn).expect("DBSIZE")
}

fn sorted(ids: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut ids = ids;
    ids.sort();
    ids
}

#[test]
fn put_then_get_round_trips_bytes_under_the_documented_key() {
    let server = RedisServer::start(&[]);
    let store = store("text_chunks", &server.url(), &[]);
    // Not just JSON text: NUL, invalid UTF-8 and an empty value must survive as is.
    let binary: &[u8] = b"{\"a\":1}\x00\xff\xfe";
    let written = records(&[("chunk-1", binary), ("empty", b"")]);
    block_on(store.put_many(written.clone())).unwrap();

    assert_eq!(
        block_on(store.get(b"chunk-1")).unwrap().as_deref(),
        Some(binary)
    );
    // An empty value is a record, not a miss.
    assert_eq!(block_on(store.get(b"empty")).unwrap(), Some(Vec::new()));
    assert_eq!(block_on(store.get(b"missing")).unwrap(), None);

    // The layout other tools rely on: `{prefix}:{namespace}:{id}`.
    let raw: Vec<u8> = server
        .conn()
        .get(b"nano_graphrag:text_chunks:chunk-1")
        .unwrap();
    assert_eq!(raw, binary);
}

#[test]
fn get_many_is_aligned_with_ids() {
    let server = RedisServer::start(&[]);
    let store = store("docs", &server.url(), &[]);
    block_on(store.put_many(records(&[("a", b"A"), ("b", b"B")]))).unwrap();

    let got = block_on(store.get_many(&ids(&["b", "missing", "a", "b", "a"]))).unwrap();
    // One slot per requested id, in order, duplicates kept, a miss is None.
    assert_eq!(
        got,
        vec![
            Some(b"B".to_vec()),
            None,
            Some(b"A".to_vec()),
            Some(b"B".to_vec()),
            Some(b"A".to_vec()),
        ]
    );
}

#[test]
fn get_many_stays_aligned_across_mget_pages() {
    let server = RedisServer::start(&[]);
    let store = store("docs", &server.url(), &[]);
    // 2500 ids span three MGET pages of 1000; every 7th id is never written, so a
    // page that dropped or shifted a slot would misalign everything after it.
    let all: Vec<Vec<u8>> = (0..2500).map(|i| format!("id-{i}").into_bytes()).collect();
    let written: Vec<(Vec<u8>, Vec<u8>)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 0)
        .map(|(i, id)| (id.clone(), format!("value of id-{i}").into_bytes()))
        .collect();
    block_on(store.put_many(written.clone())).unwrap();

    let got = block_on(store.get_many(&all)).unwrap();
    assert_eq!(got.len(), all.len());
    for (i, (id, value)) in all.iter().zip(&got).enumerate() {
        let expected = (i % 7 != 0).then(|| format!("value of id-{i}").into_bytes());
        assert_eq!(value, &expected, "slot {i} ({id:?})");
    }
}

#[test]
fn exists_many_reports_each_id() {
    let server = RedisServer::start(&[]);
    let store = store("docs", &server.url(), &[]);
    block_on(store.put_many(records(&[("a", b"1"), ("c", b"3")]))).unwrap();
    // A record of another namespace with the same id does not count.
    let other = common::store("other", &server.url(), &[]);
    block_on(other.put_many(records(&[("b", b"2")]))).unwrap();

    let got = block_on(store.exists_many(&ids(&["a", "b", "c", "a", "zzz"]))).unwrap();
    assert_eq!(got, vec![true, false, true, true, false]);
}

#[test]
fn put_many_with_ttl_sets_the_expiry_with_every_record() {
    let server = RedisServer::start(&[]);
    let mut conn = server.conn();
    let ttl_secs = 100;
    let store = store("docs", &server.url(), &[("redis_ttl", Raw::Int(ttl_secs))]);
    // Both write paths: a single record (one SET EX) and a batch (MULTI/EXEC).
    block_on(store.put_many(records(&[("single", b"1")]))).unwrap();
    block_on(store.put_many(records(&[("x", b"1"), ("y", b"2"), ("z", b"3")]))).unwrap();

    for id in ["single", "x", "y", "z"] {
        let left = ttl(&mut conn, &format!("nano_graphrag:docs:{id}"));
        assert!(
            left > 0 && left <= ttl_secs,
            "TTL of {id} is {left}, want (0, {ttl_secs}]"
        );
    }
    assert_eq!(block_on(store.get(b"y")).unwrap(), Some(b"2".to_vec()));
}

#[test]
fn put_many_without_ttl_never_expires() {
    let server = RedisServer::start(&[]);
    let mut conn = server.conn();
    let store = store("docs", &server.url(), &[]);
    assert_eq!(store.settings().ttl, None);
    // Both write paths: a single record (SET) and a batch (MSET).
    block_on(store.put_many(records(&[("single", b"1")]))).unwrap();
    block_on(store.put_many(records(&[("x", b"1"), ("y", b"2")]))).unwrap();
    for id in ["single", "x", "y"] {
        assert_eq!(
            ttl(&mut conn, &format!("nano_graphrag:docs:{id}")),
            -1,
            "{id}"
        );
    }
}

#[test]
fn llm_response_cache_expires_after_twelve_hours_by_default() {
    let server = RedisServer::start(&[]);
    let mut conn = server.conn();
    let store = store("llm_response_cache", &server.url(), &[]);
    block_on(store.put_many(records(&[("h1", b"1"), ("h2", b"2")]))).unwrap();
    let twelve_hours = 12 * 3600;
    for id in ["h1", "h2"] {
        let left = ttl(&mut conn, &format!("nano_graphrag:llm_response_cache:{id}"));
        // A few seconds of slack for a slow machine, but clearly the 12 h default.
        assert!(
            left > twelve_hours - 60 && left <= twelve_hours,
            "TTL of {id} is {left}"
        );
    }
}

/// All or nothing: when the server rejects part of a batch (here: out of memory
/// half-way through), no record of the batch may be written. A plain pipeline of
/// SETs would leave the first records behind; MSET and MULTI/EXEC do not.
#[test]
fn put_many_is_all_or_nothing_when_the_server_rejects_part_of_a_batch() {
    let server = RedisServer::start(&[]);
    let mut conn = server.conn();
    // Room for ~2 MB more than the server uses now; the batch below needs ~5 MB.
    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    let used: u64 = info_field(&info, "used_memory").unwrap().parse().unwrap();
    let limit = used + 2 * 1024 * 1024;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(limit)
        .query(&mut conn)
        .unwrap();

    let big = vec![b'x'; 128 * 1024];
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..40)
        .map(|i| (format!("r{i}").into_bytes(), big.clone()))
        .collect();
    let batch_ids: Vec<Vec<u8>> = batch.iter().map(|(id, _)| id.clone()).collect();

    for (label, extra) in [
        ("MSET (no TTL)", vec![]),
        ("MULTI/EXEC (TTL)", vec![("redis_ttl", Raw::Int(100))]),
    ] {
        let store = store("docs", &server.url(), &extra);
        let err = block_on(store.put_many(batch.clone())).expect_err(label);
        // The server said no (the OOM we provoked): an operation error, not "unavailable".
        assert!(
            matches!(&err, Error::Operation(m) if m.contains("OOM")),
            "{label}: {err:?}"
        );
        let stored = block_on(store.exists_many(&batch_ids)).unwrap();
        assert!(
            stored.iter().all(|s| !s),
            "{label}: partial write {stored:?}"
        );
        // The server is fine with a batch that fits.
        block_on(store.put_many(records(&[("small-1", b"1"), ("small-2", b"2")]))).unwrap();
    }
    assert_eq!(dbsize(&mut conn), 2);
}

#[test]
fn delete_reports_whether_the_record_existed() {
    let server = RedisServer::start(&[]);
    let store = store("docs", &server.url(), &[]);
    block_on(store.put_many(records(&[("a", b"1"), ("b", b"2")]))).unwrap();

    assert!(block_on(store.delete(b"a")).unwrap());
    assert!(!block_on(store.delete(b"a")).unwrap());
    assert!(!block_on(store.delete(b"never-written")).unwrap());
    assert_eq!(block_on(store.get(b"a")).unwrap(), None);
    // Only the named record went.
    assert_eq!(block_on(store.get(b"b")).unwrap(), Some(b"2".to_vec()));
}

#[test]
fn ids_lists_exactly_this_namespaces_ids() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let store = store("docs", &url, &[]);
    // Ids with the separator and with every glob metacharacter are ids like any other.
    let own = [
        "plain", "a:b", "a:b:c", "*", "?", "[x]", "]", "\\", "h*llo", "", "ünï",
    ];
    let own_records: Vec<(Vec<u8>, Vec<u8>)> = own
        .iter()
        .map(|id| (id.as_bytes().to_vec(), b"v".to_vec()))
        .collect();
    block_on(store.put_many(own_records.clone())).unwrap();

    // Neighbours that a sloppy SCAN pattern would pick up.
    for namespace in ["docs2", "doc", "do*", "other"] {
        let neighbour = common::store(namespace, &url, &[]);
        block_on(neighbour.put_many(records(&[("intruder", b"x")]))).unwrap();
    }
    let other_prefix = common::store("docs", &url, &[("redis_key_prefix", common::text("other"))]);
    block_on(other_prefix.put_many(records(&[("intruder", b"x")]))).unwrap();
    let mut conn = server.conn();
    let _: () = conn.set("docs:intruder", "x").unwrap();
    let _: () = conn.set("nano_graphrag:docs", "x").unwrap();

    let expected = sorted(own.iter().map(|id| id.as_bytes().to_vec()).collect());
    assert_eq!(sorted(block_on(store.ids()).unwrap()), expected);
    assert_eq!(
        block_on(other_prefix.ids()).unwrap(),
        vec![b"intruder".to_vec()]
    );
}

#[test]
fn clear_removes_all_its_records_and_nothing_else() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let mut conn = server.conn();
    // `a*` is a glob: unescaped, its SCAN pattern would also match namespace `ab`.
    let star = store("a*", &url, &[]);
    let ab = store("ab", &url, &[]);
    // 3000 records: more than one SCAN page (and one UNLINK batch) of 1000.
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
        .map(|i| (format!("r{i}").into_bytes(), b"v".to_vec()))
        .collect();
    block_on(star.put_many(many.clone())).unwrap();
    block_on(ab.put_many(records(&[("r1", b"ab1"), ("r2", b"ab2")]))).unwrap();
    // Keys outside the prefix, and near misses inside it.
    for key in [
        "a*:r1",
        "other:a*:r1",
        "nano_graphrag:a*",
        "nano_graphrag:a:r1",
    ] {
        let _: () = conn.set(key, "foreign").unwrap();
    }
    assert_eq!(block_on(star.ids()).unwrap().len(), 3000);

    assert_eq!(block_on(star.clear()).unwrap(), 3000);
    assert_eq!(block_on(star.ids()).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(
        block_on(ab.get_many(&ids(&["r1", "r2"]))).unwrap(),
        vec![Some(b"ab1".to_vec()), Some(b"ab2".to_vec())]
    );
    for key in [
        "a*:r1",
        "other:a*:r1",
        "nano_graphrag:a*",
        "nano_graphrag:a:r1",
    ] {
        let value: Option<String> = conn.get(key).unwrap();
        assert_eq!(value.as_deref(), Some("foreign"), "{key}");
    }
    assert_eq!(dbsize(&mut conn), 2 + 4);
    // Clearing an empty namespace is fine and says so.
    assert_eq!(block_on(star.clear()).unwrap(), 0);
}

#[test]
fn namespace_x_never_sees_records_of_namespace_x_colon_y() {
    let server = RedisServer::start(&[]);
    let x = store("x", &server.url(), &[]);
    let xy = store("x:y", &server.url(), &[]);
    // Without escaping, x:y's record "1" and x's record "y:1" would share a key.
    block_on(xy.put_many(records(&[("1", b"of x:y")]))).unwrap();
    block_on(x.put_many(records(&[("y:2", b"of x")]))).unwrap();

    assert_eq!(block_on(x.get(b"y:1")).unwrap(), None);
    assert_eq!(block_on(x.ids()).unwrap(), vec![b"y:2".to_vec()]);
    assert_eq!(block_on(xy.ids()).unwrap(), vec![b"1".to_vec()]);

    assert_eq!(block_on(x.clear()).unwrap(), 1);
    assert_eq!(block_on(xy.get(b"1")).unwrap(), Some(b"of x:y".to_vec()));
}

#[test]
fn empty_inputs_do_no_harm() {
    let server = RedisServer::start(&[]);
    let mut conn = server.conn();
    let store = store("docs", &server.url(), &[("redis_ttl", Raw::Int(60))]);
    let plain = common::store("docs", &server.url(), &[]);
    block_on(store.put_many(records(&[("keep", b"1")]))).unwrap();

    for s in [&store, &plain] {
        block_on(s.put_many(Vec::new())).unwrap();
        assert_eq!(
            block_on(s.get_many(&[])).unwrap(),
            Vec::<Option<Vec<u8>>>::new()
        );
        assert_eq!(block_on(s.exists_many(&[])).unwrap(), Vec::<bool>::new());
    }
    let empty_namespace = common::store("nothing-here", &server.url(), &[]);
    assert_eq!(
        block_on(empty_namespace.ids()).unwrap(),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(block_on(empty_namespace.clear()).unwrap(), 0);

    let keys: BTreeSet<String> = conn.keys("*").unwrap();
    assert_eq!(keys, BTreeSet::from(["nano_graphrag:docs:keep".to_owned()]));
    assert_eq!(block_on(store.get(b"keep")).unwrap(), Some(b"1".to_vec()));
}
