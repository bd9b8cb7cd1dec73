"""A GraphRAG worker process for the shared-cache test: inserts the sample text and asks
the global and naive questions on Redis, then prints JSON with its model call count and
answers. Run as a script: ``python graphrag_worker.py URL PREFIX WORKING_DIR``."""

from __future__ import annotations

import asyncio
import json
import sys

from nano_graphrag import GraphRAG, QueryParam

from nano_graphrag_redis import RedisKVStorage
from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken

QUESTIONS = {
    "global": "What are the main communities around Port Alder?",
    "naive": "What does Tobias Reed do in the harbour?",
}


async def work(url: str, prefix: str, working_dir: str) -> dict[str, object]:
    model = OfflineModel()
    rag = GraphRAG(
        **offline_graphrag_kwargs(working_dir, model),
        key_string_value_json_storage_cls=RedisKVStorage,
        addon_params={"redis_url": url, "redis_key_prefix": prefix},
    )
    await rag.ainsert(SAMPLE_TEXT)
    answers = {mode: await rag.aquery(q, QueryParam(mode=mode)) for mode, q in QUESTIONS.items()}
    return {"calls": model.calls, "answers": answers}


if __name__ == "__main__":
    url, prefix, working_dir = sys.argv[1:4]
    with offline_tiktoken():
        result = asyncio.run(work(url, prefix, working_dir))
    print(json.dumps(result))
