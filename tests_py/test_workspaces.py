"""Workspaces: several GraphRAG projects on one Redis that never see each other, an
opt-in shared LLM cache, strings that break other backends, and shared connections
that stay safely owned."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from nano_graphrag import GraphRAG, QueryParam

from nano_graphrag_redis import BlockingRedisKVStorage, ConfigError, RedisKVStorage
from nano_graphrag_redis.cli import main
from nano_graphrag_redis.migration import STANDARD_NAMESPACES
from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken
from topology import Topology

OTHER_TEXT = SAMPLE_TEXT.replace("Port Alder", "Harrow Bay").replace("Marisol", "Ottilie")


def project(working_dir: Path, model: OfflineModel, settings: dict[str, Any]) -> GraphRAG:
    return GraphRAG(
        **offline_graphrag_kwargs(str(working_dir), model),
        key_string_value_json_storage_cls=RedisKVStorage,
        addon_params=settings,
    )


def snapshot(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every record of the four namespaces, as the storage reads them."""
    out = {}
    for namespace in STANDARD_NAMESPACES:
        kv = BlockingRedisKVStorage(namespace, **settings)
        ids = sorted(kv.all_keys())
        out[namespace] = dict(zip(ids, kv.get_by_ids(ids), strict=True))
    return out


def test_two_projects_on_one_redis_never_touch_each_other(tmp_path: Path, topology: Topology, prefix: str) -> None:
    # nano-graphrag drops community_reports on every insert: without workspaces the
    # second project's insert would delete the first one's reports.
    a = {"redis_url": topology.url, "redis_key_prefix": prefix, "redis_workspace": "project-a"}
    b = {**a, "redis_workspace": "project-b"}
    with offline_tiktoken():
        asyncio.run(project(tmp_path / "a", OfflineModel(), a).ainsert(SAMPLE_TEXT))
        before = snapshot(a)
        assert all(before[ns] for ns in STANDARD_NAMESPACES)
        rag_b = project(tmp_path / "b", OfflineModel(), b)
        asyncio.run(rag_b.ainsert(OTHER_TEXT))
        answer = asyncio.run(rag_b.aquery("What happened in Harrow Bay?", QueryParam(mode="global")))
    assert answer
    assert snapshot(a) == before  # every record of project A, intact
    b_records = snapshot(b)
    assert all(b_records[ns] for ns in STANDARD_NAMESPACES)
    assert set(b_records["full_docs"]).isdisjoint(before["full_docs"])
    # And no workspace at all sees neither.
    assert snapshot({"redis_url": topology.url, "redis_key_prefix": prefix}) == {ns: {} for ns in STANDARD_NAMESPACES}


def test_a_shared_llm_cache_serves_every_workspace(tmp_path: Path, redis_url: str, prefix: str) -> None:
    shared = {"redis_url": redis_url, "redis_key_prefix": prefix, "redis_shared_llm_cache": True}
    with offline_tiktoken():
        first = OfflineModel()
        asyncio.run(project(tmp_path / "a", first, {**shared, "redis_workspace": "a"}).ainsert(SAMPLE_TEXT))
        assert first.calls > 0
        # Another workspace inserting the same text: every model call is a cache hit...
        second = OfflineModel()
        asyncio.run(project(tmp_path / "b", second, {**shared, "redis_workspace": "b"}).ainsert(SAMPLE_TEXT))
        assert second.calls == 0
        # ...while its documents, chunks and reports are its own.
        assert snapshot({**shared, "redis_workspace": "b"})["full_docs"]
        # Without the shared cache, a third workspace pays for its own calls.
        third = OfflineModel()
        isolated = {"redis_url": redis_url, "redis_key_prefix": prefix, "redis_workspace": "c"}
        asyncio.run(project(tmp_path / "c", third, isolated).ainsert(SAMPLE_TEXT))
        assert third.calls == first.calls


def test_the_key_layout_is_documented_and_unambiguous(settings: dict[str, Any]) -> None:
    kv = BlockingRedisKVStorage("text_chunks", **settings, redis_workspace="proj.1")
    prefix = settings["redis_key_prefix"]
    assert kv.redis_key("c-1") == f"{prefix}:proj.1%:text_chunks:c-1".encode()
    plain = BlockingRedisKVStorage("text_chunks", **settings)
    assert plain.redis_key("c-1") == f"{prefix}:text_chunks:c-1".encode()
    # The namespace "proj.1%" of no workspace cannot reach the workspace's keys.
    lookalike = BlockingRedisKVStorage("proj.1%", **settings)
    lookalike.upsert({"text_chunks:c-1": {"fake": True}})
    kv.upsert({"c-1": {"real": True}})
    assert kv.get_by_id("c-1") == {"real": True} and kv.all_keys() == ["c-1"]
    assert lookalike.all_keys() == ["text_chunks:c-1"]


@pytest.mark.parametrize("bad", ["a:b", "a%", "two words", "x*", "{tag}", "ünï", "x" * 65])
def test_a_workspace_that_could_make_keys_ambiguous_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="redis_workspace"):
        BlockingRedisKVStorage("docs", redis_workspace=bad)


def test_every_settings_source_can_name_the_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RedisKVStorage("d", {}, redis_workspace="w1").settings()["workspace"] == "w1"
    assert RedisKVStorage("d", {"redis_workspace": "w2"}).settings()["workspace"] == "w2"
    assert RedisKVStorage("d", {"addon_params": {"redis_workspace": "w3"}}).settings()["workspace"] == "w3"
    monkeypatch.setenv("REDIS_WORKSPACE", "w4")
    assert RedisKVStorage("d", {}).settings()["workspace"] == "w4"


ODD_VALUES = {
    "surrogate": {"s": "\ud800 lone", "k\udfff": ["\udc00"]},
    "nul": {"s": "a\x00b", "\x00": "\x00"},
    "emoji": {"s": "😀🧪👩‍👩‍👧", "🔑": "🗝"},
}


def test_strings_that_break_other_backends_round_trip(topology: Topology, prefix: str) -> None:
    kv = BlockingRedisKVStorage("docs", redis_url=topology.url, redis_key_prefix=prefix, redis_workspace="w")
    long_id = "i" * 10_000
    batch = {**ODD_VALUES, long_id: {"long": True}, "\ud83d-id": {"id": "lone"}, "plain": {"v": 1}}
    kv.upsert(batch)  # one odd value never fails the batch...
    assert kv.get_by_ids(list(batch)) == list(batch.values())
    assert sorted(kv.all_keys()) == sorted(batch)
    kv.upsert({"after": {"v": 2}})  # ...nor later writes
    assert kv.get_by_id("after") == {"v": 2}


def test_closing_one_workspace_never_breaks_another(topology: Topology, prefix: str) -> None:
    base = {"redis_url": topology.url, "redis_key_prefix": prefix}
    a = BlockingRedisKVStorage("docs", **base, redis_workspace="a")
    b = BlockingRedisKVStorage("docs", **base, redis_workspace="b")
    a.upsert({"x": {"v": "a"}})
    b.upsert({"x": {"v": "b"}})
    a.close()
    assert b.get_by_id("x") == {"v": "b"}  # the shared connection is still b's
    assert a.get_by_id("x") == {"v": "a"}  # and a closed storage reconnects on use


def test_migrate_and_export_one_workspace_at_a_time(
    tmp_path: Path, redis_url: str, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "json"
    source.mkdir()
    (source / "kv_store_full_docs.json").write_text('{"d1": {"content": "doc"}}', encoding="utf-8")
    common = ["--redis-url", redis_url, "--key-prefix", prefix, "--quiet"]
    assert main(["migrate", "--working-dir", str(source), "--workspace", "moved", *common]) == 0
    moved = BlockingRedisKVStorage("full_docs", redis_url=redis_url, redis_key_prefix=prefix, redis_workspace="moved")
    assert moved.get_by_id("d1") == {"content": "doc"}
    assert BlockingRedisKVStorage("full_docs", redis_url=redis_url, redis_key_prefix=prefix).all_keys() == []
    back = tmp_path / "back"
    args = ["export", "--working-dir", str(back), "--workspace", "moved", "--namespace", "full_docs", *common]
    assert main(args) == 0
    assert (back / "kv_store_full_docs.json").read_text(encoding="utf-8").count("d1") == 1
    capsys.readouterr()
