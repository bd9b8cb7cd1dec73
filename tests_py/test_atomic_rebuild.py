"""Atomic community-report rebuilds (`redis_atomic_rebuild`): nano-graphrag drops and
rewrites every report on each insert; with the option, another instance never sees an
empty or partial report set meanwhile."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from nano_graphrag import GraphRAG

from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage
from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken
from topology import Topology

MORE_TEXT = SAMPLE_TEXT.replace("Port Alder", "Harrow Bay").replace("Marisol", "Ottilie")


def rebuild_while_polling(tmp_path: Path, settings: dict[str, Any]) -> tuple[set[str], set[str], list[frozenset[str]]]:
    """Inserts, then re-inserts (a rebuild of every report) while another instance reads
    the report ids over and over; returns the ids before, after, and every set seen."""
    with offline_tiktoken():
        rag = GraphRAG(
            **offline_graphrag_kwargs(str(tmp_path), OfflineModel()),
            key_string_value_json_storage_cls=RedisKVStorage,
            addon_params=settings,
        )
        asyncio.run(rag.ainsert(SAMPLE_TEXT))
        reader = BlockingRedisKVStorage("community_reports", **settings)
        before = set(reader.all_keys())
        seen: list[frozenset[str]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                seen.append(frozenset(reader.all_keys()))

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            asyncio.run(rag.ainsert(MORE_TEXT))
        finally:
            stop.set()
            poller.join()
        after = set(reader.all_keys())
    return before, after, seen


def test_a_reader_never_sees_an_empty_or_partial_report_set(tmp_path: Path, topology: Topology, prefix: str) -> None:
    settings = {
        "redis_url": topology.url,
        "redis_key_prefix": prefix,
        "redis_workspace": "w",
        "redis_atomic_rebuild": True,
    }
    before, after, seen = rebuild_while_polling(tmp_path, settings)
    assert before and after and len(seen) > 10
    assert {s for s in seen} <= {frozenset(before), frozenset(after)}, {len(s) for s in seen}
    reader = BlockingRedisKVStorage("community_reports", **settings)
    assert all(r is not None and "report_string" in r for r in reader.get_by_ids(sorted(after)))


def test_the_writer_reads_its_own_staged_reports(settings: dict[str, Any]) -> None:
    atomic = {**settings, "redis_atomic_rebuild": True}
    writer = BlockingRedisKVStorage("community_reports", **atomic)
    other = BlockingRedisKVStorage("community_reports", **atomic)
    writer.upsert({"0": {"old": True}})
    writer.drop()
    assert writer.all_keys() == [] and other.get_by_id("0") == {"old": True}
    writer.upsert({"0": {"new": True}, "1": {"new": True}})
    assert writer.get_by_id("0") == {"new": True} and other.all_keys() == ["0"]
    writer.index_done_callback()  # the switch
    assert sorted(other.all_keys()) == ["0", "1"] and other.get_by_id("0") == {"new": True}
    # Only community_reports rebuilds this way; other namespaces drop as usual.
    docs = BlockingRedisKVStorage("full_docs", **atomic)
    docs.upsert({"d": {}})
    docs.drop()
    assert docs.all_keys() == [] and docs.settings()["atomic_rebuild"] is False
