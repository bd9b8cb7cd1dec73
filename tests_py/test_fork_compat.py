"""The remcohendriks/nano-graphrag fork's backups, API health check and management stats,
run (through the stand-ins of fork_backup.py, which mirror its code call for call) on
storages the fork's factory built from this package after ``register()``."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fork_backup import KV_NAMESPACES, KVExporter, check_redis, management_stats
from fork_factory import factory_of, fresh_factory_module
from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage, register
from nano_graphrag_redis.local_server import RedisServer

RECORDS: dict[str, dict[str, Any]] = {
    "full_docs": {
        "doc-1": {"content": "Alice met Bob."},
        "id:with:colons": {"content": "a key segment separator inside the id"},
        "glob*[x]?": {"content": "glob characters inside the id"},
        "ünïcødé 文": {"content": "ü"},
    },
    "text_chunks": {
        "chunk-1": {"content": "Alice met Bob.", "tokens": 4, "full_doc_id": "doc-1"},
        "empty": {},  # falsy records must survive the fork's `if value:`
        "zero": 0,
    },
    "community_reports": {"0": {"report_string": "# Port Alder", "report_json": {"rating": 7.5}}},
    "llm_response_cache": {"hash-1": {"return": "an answer", "model": "offline"}},
}


@pytest.fixture
def fork(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    module = fresh_factory_module()
    monkeypatch.setitem(sys.modules, module.__name__, module)
    register(factory_of(module))
    yield module


def fork_storages(fork: types.ModuleType, global_config: dict[str, Any]) -> dict[str, Any]:
    """What the fork's GraphRAG._init_storage builds with kv_backend="redis"."""
    factory = factory_of(fork)
    return {ns: factory.create_kv_storage("redis", ns, global_config) for ns in KV_NAMESPACES}


@pytest.fixture
def storages(fork: types.ModuleType, settings: dict[str, Any]) -> dict[str, Any]:
    # The fork passes its settings as top-level keys of global_config.
    made = fork_storages(fork, {**settings, "working_dir": "."})
    for ns, kv in made.items():
        assert type(kv) is RedisKVStorage
        kv.blocking().upsert(RECORDS[ns])
    return made


async def test_backup_export_statistics_and_restore(
    storages: dict[str, Any], settings: dict[str, Any], prefix: str, tmp_path: Path, raw: redis.Redis
) -> None:
    # Neighbours the export must leave out: another namespace that a glob on the fork's
    # prefix would match ("full_docs*" is not escaped in a SCAN pattern the way our
    # namespaces are), another prefix, and a key outside any prefix.
    BlockingRedisKVStorage("full_docs_archive", **settings).upsert({"old": {"content": "archived"}})
    BlockingRedisKVStorage("full_docs", redis_url=settings["redis_url"], redis_key_prefix=f"{prefix}x").upsert(
        {"other": {"content": "another prefix"}}
    )
    raw.set(f"{prefix}:full_docs", b"not a record")

    exporter = KVExporter(storages)
    kv_dir = await exporter.export(tmp_path)
    assert exporter.warnings == []  # the RedisKVStorage path was taken for every namespace
    for ns in KV_NAMESPACES:
        assert json.loads((kv_dir / f"{ns}.json").read_text()) == RECORDS[ns], ns

    assert await exporter.get_statistics() == {
        "documents": len(RECORDS["full_docs"]),
        "chunks": len(RECORDS["text_chunks"]),
        "reports": len(RECORDS["community_reports"]),
    }

    for kv in storages.values():
        await kv.drop()
    assert await exporter.get_statistics() == {"documents": 0, "chunks": 0, "reports": 0}
    await exporter.restore(kv_dir)
    assert exporter.warnings == []
    for ns, kv in storages.items():
        assert sorted(await kv.all_keys()) == sorted(RECORDS[ns])
        assert await kv.get_by_ids(list(RECORDS[ns])) == list(RECORDS[ns].values())


async def test_export_is_exact_for_namespaces_with_glob_characters(
    fork: types.ModuleType, settings: dict[str, Any], tmp_path: Path
) -> None:
    factory = factory_of(fork)
    star = factory.create_kv_storage("redis", "a*", settings)
    await star.upsert({"1": {"ns": "a*"}})
    await factory.create_kv_storage("redis", "ab", settings).upsert({"2": {"ns": "ab"}})
    await factory.create_kv_storage("redis", "a*:b", settings).upsert({"3": {"ns": "a*:b"}})
    kv_dir = await KVExporter({"a*": star}).export(tmp_path)
    assert json.loads((kv_dir / "a*.json").read_text()) == {"1": {"ns": "a*"}}


async def test_the_adapter_is_the_fork_clients_shape(storages: dict[str, Any], prefix: str) -> None:
    kv = storages["full_docs"]
    assert kv._prefix == f"{prefix}:full_docs:"
    assert await kv._ensure_initialized() is None
    client = kv._redis_client
    cursor, keys = await client.scan(0, match=f"{kv._prefix}*", count=1000)
    assert cursor == 0 and all(isinstance(k, bytes) for k in keys)
    assert sorted(keys) == sorted(f"{kv._prefix}{rid}".encode() for rid in RECORDS["full_docs"])
    assert await client.get(f"{kv._prefix}doc-1".encode()) == b'{"content":"Alice met Bob."}'
    assert await client.get(f"{kv._prefix}doc-1") == b'{"content":"Alice met Bob."}'  # str keys too
    assert await client.get(f"{kv._prefix}missing") is None
    assert await client.ping() is True
    # Only this namespace, only the cursor it hands out, and no other Redis command.
    with pytest.raises(ValueError, match="only its own namespace"):
        await client.scan(0, match=f"{prefix}:*")
    with pytest.raises(ValueError, match="cursor"):
        await client.scan(17, match=f"{kv._prefix}*")
    with pytest.raises(ValueError, match="not in this storage's namespace"):
        await client.get(f"{prefix}:text_chunks:chunk-1")
    with pytest.raises(AttributeError):
        client.set  # noqa: B018


async def test_health_check_pings_and_sees_an_outage(fork: types.ModuleType) -> None:
    with RedisServer() as server:
        global_config = {
            "redis_url": server.url,
            "redis_connection_timeout": 1,
            "redis_retry_attempts": 0,
            "redis_breaker_threshold": 0,
        }
        full_docs = factory_of(fork).create_kv_storage("redis", "full_docs", global_config)
        assert await check_redis(full_docs) is True
        server.stop()
        assert await check_redis(full_docs) is False  # pinged: not "assumed healthy"


async def test_management_stats(fork: types.ModuleType, settings: dict[str, Any], prefix: str) -> None:
    made = fork_storages(fork, settings)
    stats = await management_stats(made["full_docs"], made["text_chunks"], made["community_reports"])
    assert "kv_error" not in stats
    assert stats["documents"] == {
        "backend": "nano-graphrag-redis",
        "namespace": "full_docs",
        "key_prefix": prefix,
        "ttl_seconds": 0,
    }
    assert stats["chunks"]["namespace"] == "text_chunks"
    assert stats["communities"]["ttl_seconds"] == 24 * 3600
    json.dumps(stats)  # the endpoint returns it as JSON


async def test_management_stats_report_an_outage(fork: types.ModuleType) -> None:
    with RedisServer() as server:
        url = server.url
    made = fork_storages(fork, {"redis_url": url, "redis_retry_attempts": 0, "redis_breaker_threshold": 0})
    stats = await management_stats(made["full_docs"], made["text_chunks"], made["community_reports"])
    assert set(stats) == {"kv_error"} and url.removeprefix("redis://") in stats["kv_error"]


async def test_get_stats_is_cheap(storages: dict[str, Any], raw: redis.Redis) -> None:
    await storages["full_docs"].ping()  # connected (and the eviction-policy check done)
    raw.config_resetstat()
    await storages["full_docs"].get_stats()
    commands = set(raw.info("commandstats"))
    assert "cmdstat_ping" in commands
    assert not commands & {"cmdstat_scan", "cmdstat_keys", "cmdstat_memory", "cmdstat_get", "cmdstat_mget"}


async def test_a_renamed_subclass_loses_the_forks_backup(settings: dict[str, Any], tmp_path: Path) -> None:
    """The fork dispatches on the class NAME: why the README says to keep it."""

    class CountingKV(RedisKVStorage):
        pass

    exporter = KVExporter({"full_docs": CountingKV("full_docs", **settings)})
    kv_dir = await exporter.export(tmp_path)
    assert exporter.warnings == ["Unknown KV storage type: CountingKV"]
    assert not (kv_dir / "full_docs.json").exists()


def test_blocking_get_stats_is_the_same(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("llm_response_cache", **settings)
    assert kv.blocking().get_stats() == {
        "backend": "nano-graphrag-redis",
        "namespace": "llm_response_cache",
        "key_prefix": settings["redis_key_prefix"],
        "ttl_seconds": 12 * 3600,
    }
