"""Errors: one small hierarchy, each class also the built-in a caller would catch; an
unreachable server fails fast and typed, never hangs."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import nano_graphrag_redis as pkg
from nano_graphrag_redis import (
    BlockingRedisKVStorage,
    ConfigError,
    RedisKVError,
    RedisKVStorage,
    SerializationError,
    StorageOperationError,
    StorageUnavailableError,
)
from nano_graphrag_redis.local_server import RedisServer


def test_hierarchy() -> None:
    assert issubclass(ConfigError, RedisKVError) and issubclass(ConfigError, ValueError)
    assert issubclass(SerializationError, RedisKVError) and issubclass(SerializationError, TypeError)
    assert issubclass(StorageUnavailableError, RedisKVError) and issubclass(StorageUnavailableError, ConnectionError)
    assert issubclass(StorageOperationError, RedisKVError)
    for name in [
        "RedisKVError",
        "ConfigError",
        "SerializationError",
        "StorageUnavailableError",
        "StorageOperationError",
    ]:
        assert name in pkg.__all__


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mute_server() -> Iterator[int]:
    """Accepts TCP connections (the kernel does) but never answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def test_refused_connection_fails_fast() -> None:
    kv = BlockingRedisKVStorage("x", redis_url=f"redis://127.0.0.1:{closed_port()}", redis_connection_timeout=1)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="unavailable"):
        kv.get_by_id("a")
    assert time.monotonic() - started < 1.0


async def test_server_that_never_answers_times_out(mute_server: int) -> None:
    kv = RedisKVStorage(
        "x",
        redis_url=f"redis://127.0.0.1:{mute_server}",
        redis_connection_timeout=0.3,
        redis_socket_timeout=0.3,
        redis_retry_deadline=0.5,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError):
        await asyncio.wait_for(kv.get_by_id("a"), 10)
    # One attempt (0.3 s) plus at most one more within the 0.5 s retry deadline.
    assert time.monotonic() - started < 1.5


def test_breaker_fails_fast_while_server_is_down() -> None:
    kv = BlockingRedisKVStorage(
        "x",
        redis_url=f"redis://127.0.0.1:{closed_port()}",
        redis_breaker_threshold=2,
        redis_breaker_cooldown=30,
        redis_retry_attempts=0,
    )
    for _ in range(2):
        with pytest.raises(StorageUnavailableError):
            kv.get_by_id("a")
    with pytest.raises(StorageUnavailableError, match="circuit breaker"):
        kv.get_by_id("a")


def test_outage_then_recovery() -> None:
    with RedisServer() as server:
        kv = BlockingRedisKVStorage(
            "x", redis_url=server.url, redis_breaker_threshold=0, redis_retry_attempts=2, redis_connection_timeout=1
        )
        kv.upsert({"a": {"v": 1}})
        server.stop()
        with pytest.raises(StorageUnavailableError):
            kv.get_by_id("a")
        server.start()  # same port, empty (no persistence)
        kv.upsert({"b": {"v": 2}})
        assert kv.get_by_id("b") == {"v": 2}


def test_restart_between_calls_is_retried_transparently() -> None:
    with RedisServer() as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url)
        kv.upsert({"a": {"v": 1}})
        server.restart()  # the open connection is now dead
        assert kv.get_by_id("a") is None  # reconnected, answered (data is gone)


def test_server_error_is_an_operation_error() -> None:
    with RedisServer("--maxmemory", "1", "--maxmemory-policy", "noeviction") as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url)
        with pytest.raises(StorageOperationError, match="^the server refused the command: OOM ") as info:
            kv.upsert({"a": {"v": 1}})
        assert "\n" not in str(info.value)


def test_a_key_of_another_type_reads_as_absent(settings: dict[str, Any], raw: redis.Redis) -> None:
    # Not a record of this storage: absent for one id and for many alike (README: Semantics).
    kv = BlockingRedisKVStorage("x", **settings)
    raw.rpush(kv.redis_key("list"), b"not a string")
    assert kv.get_by_id("list") is None
    assert kv.get_by_ids(["list"]) == [None]


def test_eviction_policy_refused_or_warned(caplog: pytest.LogCaptureFixture) -> None:
    with RedisServer("--maxmemory-policy", "allkeys-lru") as server:
        refuse = BlockingRedisKVStorage("x", redis_url=server.url, redis_eviction_check="refuse")
        with pytest.raises(StorageOperationError, match="allkeys-lru"):
            refuse.get_by_id("a")
        warn = BlockingRedisKVStorage("x", redis_url=server.url)
        with caplog.at_level("WARNING"):
            warn.upsert({"a": {}})
        assert any("allkeys-lru" in r.getMessage() for r in caplog.records)
        assert warn.get_by_id("a") == {}


def test_config_command_disabled_is_tolerated() -> None:
    with RedisServer("--rename-command", "CONFIG", "") as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url, redis_eviction_check="refuse")
        kv.upsert({"a": {"v": 1}})
        assert kv.get_by_id("a") == {"v": 1}
