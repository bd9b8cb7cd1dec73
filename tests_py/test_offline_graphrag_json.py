"""The offline kit runs GraphRAG end to end with nano-graphrag's own JsonKVStorage.

This is the baseline the Redis storage is compared against: if these tests fail, the
problem is the offline kit (or nano-graphrag), not the Redis backend. The last test
checks the RedisServer helper the Redis tests rely on.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
import redis
import tiktoken
from nano_graphrag import GraphRAG, QueryParam
from nano_graphrag.prompt import PROMPTS

from nano_graphrag_redis import offline
from nano_graphrag_redis.local_server import RedisServer
from nano_graphrag_redis.offline import (
    SAMPLE_TEXT,
    OfflineModel,
    offline_embedding_func,
    offline_encoding,
    offline_graphrag_kwargs,
    offline_tiktoken,
)

# The insert's clustering imports graspologic, whose umap import emits an ImportWarning
# ("Tensorflow not installed") that pyproject's filterwarnings=error would turn into a
# failure. Python itself ignores ImportWarning by default.
pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

QUESTIONS = {
    "local": "Who is Marisol Vance?",
    "global": "What are the main communities around Port Alder?",
    "naive": "What does Tobias Reed do in the harbour?",
}


async def _ask_all(rag: GraphRAG) -> dict[str, str]:
    return {mode: await rag.aquery(q, QueryParam(mode=mode)) for mode, q in QUESTIONS.items()}


def test_markers_match_the_installed_prompts() -> None:
    # OfflineModel recognises prompts by these phrases; a nano-graphrag upgrade that
    # rewords a template must fail here, not as a confusing parse error later.
    markers = {
        "entity_extraction": offline.MARKER_ENTITY_EXTRACTION,
        "entiti_continue_extraction": offline.MARKER_GLEAN_CONTINUE,
        "entiti_if_loop_extraction": offline.MARKER_GLEAN_IF_LOOP,
        "summarize_entity_descriptions": offline.MARKER_SUMMARIZE,
        "community_report": offline.MARKER_COMMUNITY_REPORT,
        "global_map_rag_points": offline.MARKER_GLOBAL_MAP,
    }
    for key, marker in markers.items():
        holders = [k for k, v in PROMPTS.items() if isinstance(v, str) and marker in v]
        assert holders == [key], (marker, holders)
    assert PROMPTS["DEFAULT_TUPLE_DELIMITER"] == offline.TUPLE_DELIMITER
    assert PROMPTS["DEFAULT_RECORD_DELIMITER"] == offline.RECORD_DELIMITER
    assert PROMPTS["DEFAULT_COMPLETION_DELIMITER"] == offline.COMPLETION_DELIMITER


def test_offline_tiktoken_patches_and_restores() -> None:
    import nano_graphrag._utils as ng_utils

    before = (tiktoken.encoding_for_model, tiktoken.get_encoding, ng_utils.ENCODER)
    with offline_tiktoken() as enc:
        assert enc is offline_encoding()
        assert tiktoken.encoding_for_model("gpt-4o") is enc
        assert tiktoken.get_encoding("cl100k_base") is enc
        assert ng_utils.encode_string_by_tiktoken("Port Alder") == list(b"Port Alder")
        assert enc.decode(enc.encode(SAMPLE_TEXT)) == SAMPLE_TEXT
    after = (tiktoken.encoding_for_model, tiktoken.get_encoding, ng_utils.ENCODER)
    assert all(a is b for a, b in zip(before, after, strict=True))


def test_offline_embedding_is_deterministic_and_normalised() -> None:
    func = offline_embedding_func()
    assert func.embedding_dim == 64
    texts = ["Marisol Vance", "Who is Marisol Vance?", "the ferry timetable"]
    first = asyncio.run(func(texts))
    second = asyncio.run(func(list(texts)))
    assert first.shape == (3, 64)
    assert np.array_equal(first, second)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # Shared words give a higher cosine than unrelated words (hashed bag of words).
    assert float(first[0] @ first[1]) > float(first[0] @ first[2])


def test_graphrag_offline_with_json_storage(tmp_path: Path) -> None:
    fail = PROMPTS["fail_response"]
    with offline_tiktoken():
        model = OfflineModel()
        rag = GraphRAG(**offline_graphrag_kwargs(str(tmp_path), model))
        asyncio.run(rag.ainsert(SAMPLE_TEXT))
        calls_after_insert = model.calls
        # 1 extraction + 1 gleaning call per chunk, plus community reports.
        assert calls_after_insert >= 6

        answers = asyncio.run(_ask_all(rag))
        for mode, answer in answers.items():
            assert isinstance(answer, str) and answer.strip(), mode
            assert answer != fail, mode
            assert QUESTIONS[mode] in answer, (mode, answer)
        assert model.calls > calls_after_insert

        reports = json.loads((tmp_path / "kv_store_community_reports.json").read_text())
        assert reports and all("report_json" in r for r in reports.values())
        chunks = json.loads((tmp_path / "kv_store_text_chunks.json").read_text())
        assert len(chunks) >= 3
        cache = json.loads((tmp_path / "kv_store_llm_response_cache.json").read_text())
        assert len(cache) == model.calls
        assert all(set(v) == {"return", "model"} for v in cache.values())

        # nano-graphrag builds the local-query context partly by iterating Python sets
        # (edges, chunk ids), and a graph reloaded from graphml has a different adjacency
        # order than the one built during the insert. So the local prompt right after an
        # insert can differ from the prompt after a reload. Two GraphRAGs that both load the
        # same working_dir in one process do build identical prompts: compare those.
        model_reloaded = OfflineModel()
        rag_reloaded = GraphRAG(**offline_graphrag_kwargs(str(tmp_path), model_reloaded))
        reloaded_answers = asyncio.run(_ask_all(rag_reloaded))
        assert all(a != fail for a in reloaded_answers.values())

        # A fresh GraphRAG on the same working_dir: everything comes from the LLM cache.
        model2 = OfflineModel()
        rag2 = GraphRAG(**offline_graphrag_kwargs(str(tmp_path), model2))
        asyncio.run(rag2.ainsert(SAMPLE_TEXT))  # already stored: no work at all
        assert asyncio.run(_ask_all(rag2)) == reloaded_answers
        assert model2.calls == 0


def test_redis_server_helper() -> None:
    server = RedisServer().start()
    try:
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}"
        client = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            assert client.ping() is True
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.info("server")["process_id"] == server.pid
        finally:
            client.close()

        # restart(): same port, new process, empty data (no persistence).
        first_pid, port = server.pid, server.port
        server.restart()
        assert (server.port, server.running) == (port, True)
        assert server.pid != first_pid
        client = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            assert client.get("greeting") is None
        finally:
            client.close()
        pid = server.pid
    finally:
        server.close()
    assert not server.running
    assert not os.path.exists(server.dir)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"redis-server pid {pid} is still alive")
