"""Cache hygiene (count, size, purge, delete by model, delete by ids), in the API and the
CLI: always scoped to one workspace and namespace, never touching anything else, and
writing nothing under --dry-run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nano_graphrag_redis import BlockingRedisKVStorage, hygiene
from nano_graphrag_redis.cli import main
from topology import Topology

CACHE = "llm_response_cache"


def entries(model: str, n: int, tag: str) -> dict[str, Any]:
    return {f"{tag}-{model}-{i}": {"return": f"answer {i}", "model": model} for i in range(n)}


@pytest.fixture
def scene(topology: Topology, prefix: str) -> dict[str, Any]:
    """Workspace "w" with cache entries of two models; the same ids in workspace "other",
    in no workspace, in a neighbour namespace and under another prefix: all must survive."""
    base = {"redis_url": topology.url, "redis_key_prefix": prefix}
    mine = {**base, "redis_workspace": "w"}
    records = {**entries("gpt-4o", 30, "a"), **entries("gpt-4o-mini", 20, "b"), **entries("old-model", 25, "c")}
    BlockingRedisKVStorage(CACHE, **mine).upsert(records)
    neighbours = [
        BlockingRedisKVStorage(CACHE, **base, redis_workspace="other"),
        BlockingRedisKVStorage(CACHE, **base),
        BlockingRedisKVStorage("llm_response_cache2", **mine),
        BlockingRedisKVStorage(CACHE, **{**mine, "redis_key_prefix": prefix + "x"}),
    ]
    for neighbour in neighbours:
        neighbour.upsert(records)
    return {"settings": mine, "records": records, "neighbours": neighbours, "topology": topology}


def untouched(scene: dict[str, Any]) -> bool:
    return all(sorted(n.all_keys()) == sorted(scene["records"]) for n in scene["neighbours"])


def test_usage_counts_records_and_bytes(scene: dict[str, Any]) -> None:
    store = BlockingRedisKVStorage(CACHE, **scene["settings"])
    used = hygiene.usage(store)
    expected = sum(len(json.dumps(v, separators=(",", ":"))) for v in scene["records"].values())
    assert (used.records, used.bytes, used.workspace) == (75, expected, "w")


def test_delete_model_removes_only_that_models_answers(scene: dict[str, Any]) -> None:
    store = BlockingRedisKVStorage(CACHE, **scene["settings"])
    assert len(hygiene.delete_model(store, "old-model", dry_run=True)) == 25
    assert len(store.all_keys()) == 75  # dry run: nothing written
    assert sorted(hygiene.delete_model(store, "old-model")) == sorted(k for k in scene["records"] if "old-model" in k)
    assert len(hygiene.delete_model(store, "gpt-4o*")) == 50  # a glob
    assert store.all_keys() == []
    assert untouched(scene)


def test_purge_and_delete_ids(scene: dict[str, Any]) -> None:
    store = BlockingRedisKVStorage(CACHE, **scene["settings"])
    some = list(scene["records"])[:10] + ["never-stored"]
    assert hygiene.delete_ids(store, some, dry_run=True) == 10
    assert hygiene.delete_ids(store, some) == 10
    assert hygiene.purge(store, dry_run=True) == 65 and len(store.all_keys()) == 65
    assert hygiene.purge(store) == 65 and store.all_keys() == []
    assert untouched(scene)


def test_the_cache_command(scene: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    settings = scene["settings"]
    common = ["--redis-url", settings["redis_url"], "--key-prefix", settings["redis_key_prefix"]]
    common += ["--workspace", "w", "--quiet"]
    assert main(["cache", "stats", "--namespace", CACHE, *common]) == 0
    assert "llm_response_cache: 75 records" in capsys.readouterr().out
    assert main(["cache", "delete-model", "old-model", "--dry-run", *common]) == 0
    assert "would remove 25 entries of model 'old-model'" in capsys.readouterr().out
    assert main(["cache", "delete-model", "old-model", *common]) == 0
    assert "removed 25 entries" in capsys.readouterr().out
    assert main(["cache", "delete-ids", "a-gpt-4o-0", "nope", "--namespace", CACHE, *common]) == 0
    assert "removed 1 of 2 records" in capsys.readouterr().out
    assert main(["cache", "purge", "--namespace", CACHE, *common]) == 0
    assert "removed 49 records" in capsys.readouterr().out
    assert untouched(scene)
    # Arguments that depend on each other: usage errors, exit 2, nothing removed.
    assert main(["cache", "purge", *common]) == 2  # purge needs --namespace
    assert main(["cache", "delete-model", *common]) == 2
    assert main(["cache", "delete-ids", "--namespace", CACHE, *common]) == 2
    assert "usage error" in capsys.readouterr().err
