"""The public surface: exports, the BaseKVStorage shape, the async and blocking APIs
kept in step, and the hand-written stub of the native module checked against it."""

from __future__ import annotations

import inspect
import subprocess
import sys
from dataclasses import fields, is_dataclass

from nano_graphrag.base import BaseKVStorage

import nano_graphrag_redis as pkg
from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") or name in ("__init__",)
    }


def test_exports() -> None:
    for name in pkg.__all__:
        assert hasattr(pkg, name), name
    assert pkg.__version__


def test_is_a_dataclass_base_kv_storage() -> None:
    kv = RedisKVStorage(namespace="full_docs", global_config={})
    assert isinstance(kv, BaseKVStorage)
    assert is_dataclass(kv)
    assert [f.name for f in fields(kv)] == ["namespace", "global_config"]
    for name in ["all_keys", "get_by_id", "get_by_ids", "filter_keys", "upsert", "drop", "delete_by_id", "close"]:
        assert inspect.iscoroutinefunction(getattr(RedisKVStorage, name)), name


def test_async_and_blocking_apis_are_in_step() -> None:
    async_api = public_methods(RedisKVStorage)
    blocking_api = public_methods(BlockingRedisKVStorage)
    # The same operations with the same parameters; only `blocking()` is async-only.
    assert set(async_api) - {"blocking"} == set(blocking_api)
    for name, signature in blocking_api.items():
        assert list(signature.parameters) == list(async_api[name].parameters), name
        if name != "__init__":  # documented by the class docstring
            assert getattr(RedisKVStorage, name).__doc__, name
            assert getattr(BlockingRedisKVStorage, name).__doc__, name


def test_blocking_view_shares_namespace_and_settings() -> None:
    kv = RedisKVStorage("text_chunks", {"addon_params": {"redis_key_prefix": "p"}}, redis_socket_timeout=2)
    view = kv.blocking()
    assert isinstance(view, BlockingRedisKVStorage)
    assert view.namespace == "text_chunks"
    assert view.settings() == kv.settings()
    assert view.redis_key("a") == kv.redis_key("a") == b"p:text_chunks:a"


def test_stub_matches_the_native_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "nano_graphrag_redis._core"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
