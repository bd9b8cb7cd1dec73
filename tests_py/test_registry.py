"""Registration with factory-style forks, discovery through the entry point, and the
fork's way of configuring (top-level ``redis_*`` keys of global_config, CODEX-001)."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import redis
from nano_graphrag._storage import JsonKVStorage

from fork_factory import factory_of, fresh_factory_module
from nano_graphrag_redis import RedisKVStorage
from nano_graphrag_redis.registry import ENTRY_POINT_GROUP, register


@pytest.fixture
def fork(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = fresh_factory_module()
    # register() finds the module-level _register_backends through sys.modules, as it
    # would for the real fork; this unique name exists only for this test.
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_the_trap_naive_registration_loses_json(fork: types.ModuleType, tmp_path: Path) -> None:
    factory = factory_of(fork)
    factory.register_kv("redis", lambda: RedisKVStorage)
    with pytest.raises(ValueError, match="Unknown KV backend: json"):
        factory.create_kv_storage("json", "full_docs", {"working_dir": str(tmp_path)})


def test_register_keeps_the_builtins_and_wins_redis(fork: types.ModuleType, tmp_path: Path) -> None:
    factory = factory_of(fork)
    register(factory)
    json_kv = factory.create_kv_storage("json", "full_docs", {"working_dir": str(tmp_path)})
    assert isinstance(json_kv, JsonKVStorage)
    redis_kv = factory.create_kv_storage("redis", "full_docs", {"redis_url": "redis://127.0.0.1:1"})
    assert type(redis_kv) is RedisKVStorage


def test_register_after_the_factory_was_used(fork: types.ModuleType, tmp_path: Path) -> None:
    factory = factory_of(fork)
    factory.create_kv_storage("json", "full_docs", {"working_dir": str(tmp_path)})  # built-ins now in
    register(factory)
    assert factory.create_kv_storage("redis", "x", {}).__class__ is RedisKVStorage
    assert isinstance(factory.create_kv_storage("json", "x", {"working_dir": str(tmp_path)}), JsonKVStorage)


def test_top_level_redis_settings_reach_the_connection(
    fork: types.ModuleType, redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    """CODEX-001: the fork passes redis_url & co. as top-level global_config keys."""
    factory = factory_of(fork)
    register(factory)
    global_config = {"redis_url": redis_url, "redis_key_prefix": prefix, "redis_socket_timeout": 2, "working_dir": "."}
    kv = factory.create_kv_storage("redis", "full_docs", global_config)
    assert kv.settings()["url"] == redis_url
    assert kv.settings()["socket_timeout"] == 2
    kv.blocking().upsert({"d": {"content": "c"}})
    assert raw.get(f"{prefix}:full_docs:d") == b'{"content":"c"}'


def test_entry_point_discovery(fork: types.ModuleType, tmp_path: Path) -> None:
    (ep,) = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "redis"]
    assert ep.load() is RedisKVStorage
    factory = factory_of(fork)
    fork._register_backends()
    factory.register_kv(ep.name, ep.load)  # how a host registers what it discovers
    kv: Any = factory.create_kv_storage("redis", "text_chunks", {})
    assert isinstance(kv, RedisKVStorage)
    assert isinstance(factory.create_kv_storage("json", "x", {"working_dir": str(tmp_path)}), JsonKVStorage)


def test_a_reset_factory_forgets_the_registration(fork: types.ModuleType, tmp_path: Path) -> None:
    """Registration lives in the factory's class-level tables of one process: a reset
    (as the fork's own tests do, ``StorageFactory._kv_backends = {}``) drops it, and
    register() must run again."""
    factory = factory_of(fork)
    register(factory)
    assert type(factory.create_kv_storage("redis", "x", {})) is RedisKVStorage

    factory._kv_backends = {}  # emptied: the built-ins come back, "redis" is the fork's own again, silently
    assert type(factory.create_kv_storage("redis", "x", {})).__name__ == "ForkOwnRedisKVStorage"
    register(factory)
    assert type(factory.create_kv_storage("redis", "x", {})) is RedisKVStorage

    factory._kv_backends = {"json": lambda: JsonKVStorage}  # reset to a table without "redis"
    with pytest.raises(ValueError, match="Unknown KV backend: redis"):
        factory.create_kv_storage("redis", "x", {})
    register(factory)
    assert type(factory.create_kv_storage("redis", "x", {})) is RedisKVStorage
    assert isinstance(factory.create_kv_storage("json", "x", {"working_dir": str(tmp_path)}), JsonKVStorage)
