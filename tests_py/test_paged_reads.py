"""A large get_by_ids goes out in pages, all in flight at once, each decoded as soon as it
arrives: the result must be exactly what one read per id gives, in the caller's order,
on every topology and both APIs; a record that cannot be decoded fails the whole call,
and the storage keeps working."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nano_graphrag_redis import RedisKVStorage, SerializationError
from topology import Topology

# Several pages of the core's 128 ids, the last one short.
N = 1000


def ids_with_gaps_and_repeats() -> list[str]:
    ids = [f"id-{i}" for i in range(N)]
    ids[7] = ids[900]  # a repeat across pages
    ids[300] = "missing-1"
    ids[-1] = "missing-2"  # the short last page ends with a miss
    return ids


def records() -> dict[str, dict[str, Any]]:
    return {f"id-{i}": {"content": f"chunk {i} " + "é" * (i % 50), "tokens": i, "i": [i]} for i in range(N)}


@pytest.mark.parametrize("api", ["async", "blocking"])
async def test_pages_read_back_in_order(topology: Topology, topo_settings: dict[str, Any], api: str) -> None:
    store = RedisKVStorage("text_chunks", **topo_settings)
    data = records()
    await store.upsert(data)
    ids = ids_with_gaps_and_repeats()
    expected = [data.get(i) for i in ids]
    projected = [None if r is None else {"tokens": r["tokens"]} for r in expected]
    if api == "async":
        got = await store.get_by_ids(ids)
        got_fields = await store.get_by_ids(ids, fields={"tokens"})
        singles = [await store.get_by_id(i) for i in ids[:200]]
    else:
        blocking = store.blocking()
        got = blocking.get_by_ids(ids)
        got_fields = blocking.get_by_ids(ids, fields={"tokens"})
        singles = [blocking.get_by_id(i) for i in ids[:200]]
    assert got == expected
    assert got_fields == projected
    assert singles == expected[:200]
    stats = store.stats()["get_by_ids"]
    assert stats["hits"] >= 2 * (N - 2) and stats["misses"] >= 4
    await store.close()


@pytest.mark.parametrize("api", ["async", "blocking"])
async def test_an_undecodable_record_fails_the_call_and_nothing_else(
    topology: Topology, topo_settings: dict[str, Any], topo_raw: Any, api: str
) -> None:
    store = RedisKVStorage("text_chunks", **topo_settings)
    await store.upsert(records())
    topo_raw.set(store.redis_key("id-555"), b'{"content": "cut off')
    ids = [f"id-{i}" for i in range(N)]
    with pytest.raises(SerializationError, match='"id-555"'):
        if api == "async":
            await store.get_by_ids(ids)
        else:
            store.blocking().get_by_ids(ids)
    topo_raw.set(store.redis_key("id-555"), json.dumps({"content": "fixed"}))
    got = await store.get_by_ids(ids)
    assert got[555] == {"content": "fixed"} and got[554] == records()["id-554"]
    await store.close()
