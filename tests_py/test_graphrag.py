"""A real nano-graphrag GraphRAG, offline, with RedisKVStorage as its key-value storage:
insert, then local / global / naive queries; Redis ends up holding all four namespaces,
and another GraphRAG on the same Redis is served from the Redis LLM cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from nano_graphrag import GraphRAG, QueryParam
from nano_graphrag.prompt import PROMPTS

from nano_graphrag_redis import RedisKVStorage
from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken
from topology import Topology

QUESTIONS = {
    "local": "Who is Marisol Vance?",
    "global": "What are the main communities around Port Alder?",
    "naive": "What does Tobias Reed do in the harbour?",
}


def graphrag(working_dir: Path, model: OfflineModel, redis_url: str, prefix: str) -> GraphRAG:
    return GraphRAG(
        **offline_graphrag_kwargs(str(working_dir), model),
        key_string_value_json_storage_cls=RedisKVStorage,
        addon_params={"redis_url": redis_url, "redis_key_prefix": prefix},
    )


async def ask(rag: GraphRAG, modes: list[str]) -> dict[str, str]:
    return {mode: await rag.aquery(QUESTIONS[mode], QueryParam(mode=mode)) for mode in modes}


def namespace_keys(raw: Any, prefix: str, namespace: str) -> list[bytes]:
    return list(raw.scan_iter(match=f"{prefix}:{namespace}:*", count=1000))


def test_graphrag_on_redis(tmp_path: Path, topology: Topology, prefix: str, topo_raw: Any) -> None:
    redis_url, raw = topology.url, topo_raw
    fail = PROMPTS["fail_response"]
    with offline_tiktoken():
        model = OfflineModel()
        rag = graphrag(tmp_path, model, redis_url, prefix)
        assert all(
            isinstance(s, RedisKVStorage)
            for s in [rag.full_docs, rag.text_chunks, rag.llm_response_cache, rag.community_reports]
        )
        asyncio.run(rag.ainsert(SAMPLE_TEXT))
        answers = asyncio.run(ask(rag, list(QUESTIONS)))
        for mode, answer in answers.items():
            assert answer and answer != fail, mode
            assert QUESTIONS[mode] in answer, (mode, answer)

        # Everything key-value lives in Redis: no JSON KV files were written.
        assert not list(tmp_path.glob("kv_store_*.json"))
        docs = namespace_keys(raw, prefix, "full_docs")
        chunks = namespace_keys(raw, prefix, "text_chunks")
        cache = namespace_keys(raw, prefix, "llm_response_cache")
        reports = namespace_keys(raw, prefix, "community_reports")
        assert len(docs) == 1
        assert len(chunks) >= 3
        assert len(cache) == model.calls
        assert len(reports) >= 1
        chunk = json.loads(raw.get(chunks[0]))
        assert set(chunk) >= {"tokens", "content", "chunk_order_index", "full_doc_id"}
        assert set(json.loads(raw.get(cache[0]))) == {"return", "model"}
        assert "report_json" in json.loads(raw.get(reports[0]))
        assert 0 < raw.ttl(cache[0]) <= 12 * 3600
        assert 12 * 3600 < raw.ttl(reports[0]) <= 24 * 3600
        assert raw.ttl(docs[0]) == -1 and raw.ttl(chunks[0]) == -1

        # A second GraphRAG on the same Redis: the same insert finds everything stored
        # (filter_keys), and the global and naive queries come from the Redis cache.
        model2 = OfflineModel()
        rag2 = graphrag(tmp_path, model2, redis_url, prefix)
        asyncio.run(rag2.ainsert(SAMPLE_TEXT))
        assert model2.calls == 0
        assert asyncio.run(ask(rag2, ["global", "naive"])) == {m: answers[m] for m in ["global", "naive"]}
        assert model2.calls == 0
        # Local queries iterate Python sets, so a graph reloaded from disk may phrase the
        # prompt differently from the one built during the insert (see the offline kit).
        # Two reloaded GraphRAGs phrase it the same: the second is served from Redis.
        local2 = asyncio.run(ask(rag2, ["local"]))
        model3 = OfflineModel()
        rag3 = graphrag(tmp_path, model3, redis_url, prefix)
        assert asyncio.run(ask(rag3, list(QUESTIONS))) == {**answers, **local2}
        assert model3.calls == 0


def test_index_done_callback_is_cheap_and_does_no_io(settings: dict[str, Any]) -> None:
    # It runs after every LLM call: no BGSAVE, no SCAN. With an unreachable server it
    # must still return at once.
    kv = RedisKVStorage("llm_response_cache", redis_url="redis://127.0.0.1:1")
    asyncio.run(kv.index_done_callback())
    asyncio.run(kv.index_start_callback())
    asyncio.run(kv.query_done_callback())


@pytest.mark.parametrize("namespace", ["full_docs", "text_chunks", "llm_response_cache", "community_reports"])
def test_constructed_exactly_as_graphrag_does(namespace: str, tmp_path: Path) -> None:
    from dataclasses import asdict, fields

    from nano_graphrag.base import BaseKVStorage

    with offline_tiktoken():
        rag = GraphRAG(
            **offline_graphrag_kwargs(str(tmp_path), OfflineModel()),
            key_string_value_json_storage_cls=RedisKVStorage,
            addon_params={"redis_url": "redis://127.0.0.1:1"},  # never contacted here
        )
    kv = RedisKVStorage(namespace=namespace, global_config=asdict(rag))
    assert isinstance(kv, BaseKVStorage)
    assert [f.name for f in fields(kv)] == ["namespace", "global_config"]
    assert kv.settings()["url"] == "redis://127.0.0.1:1"
