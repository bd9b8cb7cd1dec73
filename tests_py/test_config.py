"""Settings are resolved in one place: keyword arguments > top-level ``redis_*`` of
global_config > ``addon_params`` > environment > defaults; validated; and the
password never shows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from nano_graphrag_redis import (
    BlockingRedisKVStorage,
    ConfigError,
    RedisKVStorage,
    StorageOperationError,
    StorageUnavailableError,
)
from nano_graphrag_redis.local_server import RedisServer

PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def locked_server() -> Iterator[RedisServer]:
    with RedisServer("--requirepass", PASSWORD) as server:
        yield server


def build(path: str, url: str, password: str | None, monkeypatch: pytest.MonkeyPatch) -> BlockingRedisKVStorage:
    """A storage whose URL and password come through `path` only."""
    settings = {"redis_url": url}
    if password is not None:
        settings["redis_password"] = password
    if path == "kwargs":
        return BlockingRedisKVStorage("full_docs", {}, **settings)
    if path == "global_config":
        return BlockingRedisKVStorage("full_docs", dict(settings))
    if path == "addon_params":
        return BlockingRedisKVStorage("full_docs", {"addon_params": dict(settings)})
    if path == "env":
        for name, value in settings.items():
            monkeypatch.setenv(name.upper(), value)
        return BlockingRedisKVStorage("full_docs", {"addon_params": {}})
    if path == "url":
        host = url.removeprefix("redis://")
        return BlockingRedisKVStorage("full_docs", {}, redis_url=f"redis://:{password}@{host}")
    raise AssertionError(path)


PATHS = ["kwargs", "global_config", "addon_params", "env", "url"]


@pytest.mark.parametrize("path", PATHS)
def test_wrong_password_through_each_path_reaches_the_server(
    path: str, locked_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kv = build(path, locked_server.url, "not-the-password", monkeypatch)
    with pytest.raises(StorageOperationError) as info:
        kv.get_by_id("x")
    message = str(info.value).lower()
    assert "auth" in message or "wrongpass" in message, message
    assert "not-the-password" not in str(info.value)
    assert "not-the-password" not in repr(kv)
    assert "not-the-password" not in caplog.text


@pytest.mark.parametrize("path", PATHS)
def test_right_password_through_each_path_works(
    path: str, locked_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = build(path, locked_server.url, PASSWORD, monkeypatch)
    kv.upsert({"a": {"ok": True}})
    assert kv.get_by_id("a") == {"ok": True}
    assert PASSWORD not in repr(kv)
    assert PASSWORD not in str(kv.settings())
    kv.drop()


def test_no_password_is_refused_by_a_locked_server(locked_server: RedisServer) -> None:
    kv = BlockingRedisKVStorage("full_docs", redis_url=locked_server.url)
    with pytest.raises(StorageOperationError, match="(?i)auth"):
        kv.get_by_id("x")


def test_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "4")
    monkeypatch.setenv("REDIS_MAX_INFLIGHT", "40")
    monkeypatch.setenv("REDIS_RETRY_ATTEMPTS", "4")
    monkeypatch.setenv("REDIS_BREAKER_THRESHOLD", "9")
    config = {
        "redis_socket_timeout": 2,
        "redis_max_inflight": 20,
        "addon_params": {"redis_socket_timeout": 3, "redis_max_inflight": 30, "redis_retry_attempts": 1},
    }
    s = BlockingRedisKVStorage("text_chunks", config, redis_socket_timeout=1).settings()
    assert s["socket_timeout"] == 1  # keyword argument
    assert s["max_inflight"] == 20  # top-level global_config
    assert s["retry_attempts"] == 1  # addon_params
    assert s["breaker_threshold"] == 9  # environment
    assert s["connection_timeout"] == 5  # default
    assert s["url"] == "redis://localhost:6379"
    assert s["key_prefix"] == "nano_graphrag"


def test_none_means_not_set() -> None:
    s = BlockingRedisKVStorage("x", {"redis_url": None, "addon_params": {"redis_url": "redis://h:1"}}).settings()
    assert s["url"] == "redis://h:1"


@pytest.mark.parametrize(
    "where, settings, message",
    [
        (
            "kwargs",
            {"redis_socket_timeout": "soon"},
            'redis_socket_timeout in keyword arguments: expected a number of seconds in (0, 3600], got "soon"',
        ),
        ("kwargs", {"redis_connection_timeout": 0}, "redis_connection_timeout in keyword arguments"),
        (
            "kwargs",
            {"redis_max_inflight": 0},
            "redis_max_inflight in keyword arguments: expected an integer from 1 to 1000000",
        ),
        ("kwargs", {"redis_max_connections": True}, "got True"),
        ("kwargs", {"redis_url": "http://example.com"}, "redis_url in keyword arguments: invalid Redis URL"),
        ("kwargs", {"redis_url": "redis+sentinel://example.com"}, "invalid Redis URL"),
        ("kwargs", {"redis_url": "redis+cluster://example.com/2"}, "only database 0"),
        ("kwargs", {"redis_eviction_check": "maybe"}, '"warn", "refuse", "ignore"'),
        ("kwargs", {"redis_key_prefix": ""}, "must be non-empty and contain no ':'"),
        ("kwargs", {"redis_key_prefix": "app:graphrag"}, "contain no ':'"),
        ("kwargs", {"redis_urll": "redis://x"}, "unknown setting redis_urll in keyword arguments"),
        ("global_config", {"redis_health_check_interval": -1}, "redis_health_check_interval in global_config"),
        ("addon_params", {"redis_retry_attempts": 1.5}, "redis_retry_attempts in global_config['addon_params']"),
        ("addon_params", {"redis_typo": 1}, "unknown setting redis_typo in global_config['addon_params']"),
        ("env", {"REDIS_CONNECTION_TIMEOUT": "abc"}, "REDIS_CONNECTION_TIMEOUT in the environment"),
        ("env", {"REDIS_MAX_INFLIGHT": "-3"}, "REDIS_MAX_INFLIGHT in the environment"),
    ],
)
def test_bad_settings_are_config_errors_naming_setting_and_source(
    where: str, settings: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as info:
        if where == "kwargs":
            BlockingRedisKVStorage("x", {}, **settings)
        elif where == "global_config":
            RedisKVStorage("x", dict(settings))
        elif where == "addon_params":
            RedisKVStorage("x", {"addon_params": dict(settings)})
        else:
            for k, v in settings.items():
                monkeypatch.setenv(k, v)
            RedisKVStorage("x", {})
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


def test_unrelated_redis_env_vars_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "elsewhere")
    monkeypatch.setenv("REDIS_SOMETHING_ELSE", "x")
    BlockingRedisKVStorage("x")


def test_password_never_in_repr_or_settings_or_url_errors() -> None:
    kv = RedisKVStorage("x", redis_url="redis://user:hunter2@host:6379/0", redis_password="other-secret")
    shown = repr(kv) + str(kv.settings())
    assert "hunter2" not in shown and "other-secret" not in shown
    assert "redis://user:***@host:6379/0" in repr(kv)
    assert kv.settings()["password_set"] is True
    with pytest.raises(ConfigError) as info:
        RedisKVStorage("x", redis_url="redis://:hunter2@host:notaport")
    assert "hunter2" not in str(info.value)


def test_constructor_does_no_io_and_needs_no_loop() -> None:
    # GraphRAG builds storages in a synchronous __post_init__, often before any loop.
    kv = RedisKVStorage("full_docs", {"addon_params": {"redis_url": "redis://127.0.0.1:1", "redis_retry_attempts": 0}})
    with pytest.raises(StorageUnavailableError):
        asyncio.run(kv.get_by_id("x"))


def test_unix_socket_url(tmp_path: Any) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer("--unixsocket", str(sock), "--unixsocketperm", "700") as _:
        kv = BlockingRedisKVStorage("full_docs", redis_url=f"unix://{sock}")
        kv.upsert({"a": {"via": "unix"}})
        assert kv.get_by_id("a") == {"via": "unix"}
