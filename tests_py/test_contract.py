"""The BaseKVStorage contract, run identically against:

* ``RedisKVStorage`` (async) and its blocking API (``BlockingRedisKVStorage``), each on
  one server, on a Redis Cluster and on the master behind Sentinel,
* nano-graphrag's own ``JsonKVStorage``, which defines the expected semantics.

Every check here must pass for all three; Redis-only behaviour lives elsewhere.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nano_graphrag._storage import JsonKVStorage

from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage
from topology import TOPOLOGIES, topology_for

Factory = Callable[[str], Any]


class AsyncOverBlocking:
    """Presents a blocking storage with the async method names the suite awaits."""

    def __init__(self, storage: BlockingRedisKVStorage) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._storage, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


@pytest.fixture(params=[f"{api}-{t}" for api in ("redis", "blocking") for t in TOPOLOGIES] + ["json"])
def make(request: pytest.FixtureRequest, prefix: str, tmp_path: Path) -> Factory:
    kind, _, topology = request.param.partition("-")
    if topology:
        settings = {"redis_url": topology_for(request, topology).url, "redis_key_prefix": prefix}
    if kind == "redis":
        return lambda ns: RedisKVStorage(namespace=ns, global_config={}, **settings)
    if kind == "blocking":
        return lambda ns: AsyncOverBlocking(BlockingRedisKVStorage(ns, {}, **settings))
    return lambda ns: JsonKVStorage(namespace=ns, global_config={"working_dir": str(tmp_path)})


CHUNK = {
    "tokens": 1200,
    "content": "Alice met Bob in Paris. — «Grüße» 你好 😀",
    "chunk_order_index": 0,
    "full_doc_id": "doc-1f3",
}
REPORT = {
    "report_string": "# Title\n\nBody",
    "report_json": {"title": "T", "rating": 7.5, "findings": [{"summary": "s", "explanation": "e"}]},
    "level": 0,
    "title": "Cluster 0",
    "edges": [["A", "B"], ["B", "C"]],
    "nodes": ["A", "B", "C"],
    "chunk_ids": ["c1", "c2"],
    "occurrence": 0.25,
    "sub_communities": [],
}
VALUES: dict[str, Any] = {
    "chunk": CHUNK,
    "report": REPORT,
    "cache": {"return": "answer", "model": "gpt-4o"},
    "unicode": {"s": 'ünïcödé \u2028 \x00 \t "quoted" \\ 𝄞'},
    "big_int": {"n": 2**200, "neg": -(2**70), "zero": 0},
    "floats": {"a": 0.1, "b": 1e-7, "c": 1.7976931348623157e308, "d": -0.0, "e": 1e16},
    "nested": {"a": {"b": {"c": [1, [2, [3, {"d": None}]]]}}},
    "empty_containers": {"l": [], "d": {}, "s": ""},
    "bools": {"t": True, "f": False, "n": None},
    "list_value": [1, "two", 3.0, None],
    "string_value": "just a string",
    "megabyte": {"content": "x" * (1024 * 1024)},
}


async def test_empty_storage(make: Factory) -> None:
    kv = make("full_docs")
    assert await kv.get_by_id("nope") is None
    assert await kv.get_by_ids([]) == []
    assert await kv.get_by_ids(["a", "b"]) == [None, None]
    assert await kv.filter_keys([]) == set()
    assert await kv.all_keys() == []
    await kv.upsert({})
    assert await kv.all_keys() == []


@pytest.mark.parametrize("name", sorted(VALUES))
async def test_values_round_trip(make: Factory, name: str) -> None:
    kv = make("text_chunks")
    value = copy.deepcopy(VALUES[name])
    await kv.upsert({name: value})
    assert await kv.get_by_id(name) == VALUES[name]
    assert await kv.get_by_ids([name]) == [VALUES[name]]


async def test_get_by_ids_is_aligned_with_duplicates_and_missing(make: Factory) -> None:
    kv = make("text_chunks")
    await kv.upsert({"a": {"v": 1}, "b": {"v": 2}})
    got = await kv.get_by_ids(["b", "missing", "a", "b", "a"])
    assert got == [{"v": 2}, None, {"v": 1}, {"v": 2}, {"v": 1}]


async def test_get_by_ids_projects_fields(make: Factory) -> None:
    kv = make("text_chunks")
    await kv.upsert(
        {
            "full": {"content": "c", "tokens": 3, "full_doc_id": "d"},
            "partial": {"tokens": 5},
            "none_of_them": {"other": 1},
            "empty": {},
        }
    )
    got = await kv.get_by_ids(["full", "partial", "none_of_them", "empty", "missing"], fields={"content", "tokens"})
    assert got == [{"content": "c", "tokens": 3}, {"tokens": 5}, {}, None, None]
    assert await kv.get_by_ids(["full"], fields=set()) == [{}]


async def test_filter_keys_returns_the_ids_not_stored(make: Factory) -> None:
    kv = make("full_docs")
    await kv.upsert({"a": {"content": "1"}, "c": {"content": "3"}})
    assert await kv.filter_keys(["a", "b", "c", "d", "b"]) == {"b", "d"}
    assert await kv.filter_keys(["a", "c"]) == set()


async def test_upsert_replaces_records_whole(make: Factory) -> None:
    kv = make("full_docs")
    await kv.upsert({"a": {"x": 1, "y": 2}, "b": {"x": 0}})
    await kv.upsert({"a": {"z": 3}})
    assert await kv.get_by_id("a") == {"z": 3}
    assert await kv.get_by_id("b") == {"x": 0}


async def test_all_keys_and_drop(make: Factory) -> None:
    kv = make("community_reports")
    other = make("text_chunks")
    await kv.upsert({str(i): {"level": i} for i in range(25)})
    await other.upsert({"keep": {"v": 1}})
    assert sorted(await kv.all_keys()) == sorted(str(i) for i in range(25))
    await kv.drop()
    assert await kv.all_keys() == []
    assert await kv.get_by_id("3") is None
    assert await other.get_by_id("keep") == {"v": 1}
    # Usable after a drop.
    await kv.upsert({"new": {"level": 1}})
    assert await kv.all_keys() == ["new"]


@pytest.mark.parametrize(
    "record_id",
    ["", "with space", "colon:inside", "glob*?[x]\\", "ünïcödé", "emoji😀", "a" * 1000],
)
async def test_any_string_is_an_id(make: Factory, record_id: str) -> None:
    kv = make("full_docs")
    await kv.upsert({record_id: {"content": record_id}})
    assert await kv.get_by_id(record_id) == {"content": record_id}
    assert await kv.filter_keys([record_id]) == set()
    assert await kv.all_keys() == [record_id]


async def test_callbacks_are_harmless(make: Factory) -> None:
    kv = make("llm_response_cache")
    await kv.upsert({"h": {"return": "r", "model": "m"}})
    await kv.index_start_callback()
    await kv.index_done_callback()
    await kv.query_done_callback()
    assert await kv.get_by_id("h") == {"return": "r", "model": "m"}
