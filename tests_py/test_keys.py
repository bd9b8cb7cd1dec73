"""Key layout ``{prefix}:{namespace}:{id}``: namespaces and prefixes never leak into
each other, whatever characters they hold."""

from __future__ import annotations

from typing import Any

import redis

from nano_graphrag_redis import BlockingRedisKVStorage


def store(settings: dict[str, Any], namespace: str) -> BlockingRedisKVStorage:
    return BlockingRedisKVStorage(namespace, **settings)


def test_default_layout_is_prefix_namespace_id(redis_url: str) -> None:
    kv = BlockingRedisKVStorage("text_chunks", redis_url=redis_url)
    assert kv.redis_key("chunk-1") == b"nano_graphrag:text_chunks:chunk-1"


def test_glob_namespace_never_touches_its_matches(settings: dict[str, Any], raw: redis.Redis) -> None:
    star, ab = store(settings, "a*"), store(settings, "ab")
    star.upsert({"1": {"v": "star"}})
    ab.upsert({"1": {"v": "ab"}, "2": {"v": "ab"}})
    assert star.all_keys() == ["1"]
    star.drop()
    assert star.all_keys() == []
    assert sorted(ab.all_keys()) == ["1", "2"]
    assert ab.get_by_id("1") == {"v": "ab"}


def test_every_glob_character(settings: dict[str, Any]) -> None:
    names = ["?", "[ab]", "a\\", "*", "[", "]", "x?y", "a"]
    stores = {n: store(settings, n) for n in names}
    for dropped in names:
        for n, kv in stores.items():
            kv.upsert({"id": {"ns": n}})
        stores[dropped].drop()
        assert stores[dropped].all_keys() == []
        for n in names:
            if n != dropped:
                assert stores[n].get_by_id("id") == {"ns": n}, (dropped, n)


def test_namespace_x_never_sees_x_colon_y(settings: dict[str, Any]) -> None:
    x, xy = store(settings, "x"), store(settings, "x:y")
    xy.upsert({"1": {"from": "x:y"}})
    x.upsert({"y:1": {"from": "x"}})
    assert x.all_keys() == ["y:1"]
    assert xy.all_keys() == ["1"]
    assert xy.get_by_id("1") == {"from": "x:y"}
    x.drop()
    assert xy.get_by_id("1") == {"from": "x:y"}


def test_keys_outside_the_prefix_survive(settings: dict[str, Any], prefix: str, raw: redis.Redis) -> None:
    foreign = [
        f"{prefix}x:full_docs:1",  # a prefix that merely starts with ours
        f"other:{prefix}:full_docs:1",
        "full_docs:1",
        f"{prefix}:full_docs",  # no id separator
    ]
    for key in foreign:
        raw.set(key, b"keep")
    kv = store(settings, "full_docs")
    kv.upsert({str(i): {"i": i} for i in range(10)})
    kv.drop()
    assert kv.all_keys() == []
    for key in foreign:
        assert raw.get(key) == b"keep", key
    raw.delete(*foreign)


def test_drop_removes_more_than_one_scan_page(settings: dict[str, Any], raw: redis.Redis) -> None:
    kv = store(settings, "text_chunks")
    kv.upsert({f"c{i}": {"i": i} for i in range(2500)})
    assert len(kv.all_keys()) == 2500
    kv.drop()
    assert kv.all_keys() == []
    assert raw.keys(kv.redis_key("*")) == []


def test_prefix_separates_projects(redis_url: str, prefix: str) -> None:
    # Community report ids are "0", "1", ...: two projects must not collide.
    one = BlockingRedisKVStorage("community_reports", redis_url=redis_url, redis_key_prefix=prefix + "_one")
    two = BlockingRedisKVStorage("community_reports", redis_url=redis_url, redis_key_prefix=prefix + "_two")
    one.upsert({"0": {"title": "one"}})
    two.upsert({"0": {"title": "two"}})
    one.drop()
    assert two.get_by_id("0") == {"title": "two"}
