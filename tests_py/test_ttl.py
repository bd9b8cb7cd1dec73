"""TTL per namespace: 12 h for the LLM cache, 24 h for community reports, none for
documents and chunks; overridable by environment and settings; set in the same
command as the value."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from nano_graphrag_redis import BlockingRedisKVStorage, ConfigError


def ttl_of(raw: redis.Redis, kv: BlockingRedisKVStorage, rid: str) -> int:
    return int(raw.ttl(kv.redis_key(rid)))


@pytest.mark.parametrize(
    "namespace, expected",
    [("llm_response_cache", 43200), ("community_reports", 86400), ("full_docs", -1), ("text_chunks", -1)],
)
def test_default_ttls(settings: dict[str, Any], raw: redis.Redis, namespace: str, expected: int) -> None:
    kv = BlockingRedisKVStorage(namespace, **settings)
    kv.upsert({"one": {"v": 1}})
    kv.upsert({f"many{i}": {"v": i} for i in range(5)})
    for rid in ["one"] + [f"many{i}" for i in range(5)]:
        ttl = ttl_of(raw, kv, rid)
        if expected < 0:
            assert ttl == -1
        else:
            assert expected - 5 <= ttl <= expected


def test_environment_overrides_default(
    settings: dict[str, Any], raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_TTL_LLM_RESPONSE_CACHE", "0")
    monkeypatch.setenv("REDIS_TTL_FULL_DOCS", "600")
    cache = BlockingRedisKVStorage("llm_response_cache", **settings)
    docs = BlockingRedisKVStorage("full_docs", **settings)
    cache.upsert({"h": {"return": "r"}})
    docs.upsert({"d": {"content": "c"}})
    assert ttl_of(raw, cache, "h") == -1
    assert 595 <= ttl_of(raw, docs, "d") <= 600


def test_settings_override_environment(
    settings: dict[str, Any], raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_TTL_TEXT_CHUNKS", "600")
    config = {"addon_params": {"redis_ttl_text_chunks": 300}}
    via_config = BlockingRedisKVStorage("text_chunks", config, **settings)
    via_kwarg = BlockingRedisKVStorage("text_chunks", config, redis_ttl=100, **settings)
    via_config.upsert({"a": {}})
    assert 295 <= ttl_of(raw, via_config, "a") <= 300
    via_kwarg.upsert({"b": {}})
    assert 95 <= ttl_of(raw, via_kwarg, "b") <= 100


def test_namespace_with_odd_characters_uses_underscored_env_name(
    settings: dict[str, Any], raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_TTL_MY_CACHE_V2", "60")
    kv = BlockingRedisKVStorage("my-cache.v2", **settings)
    kv.upsert({"k": {}})
    assert 55 <= ttl_of(raw, kv, "k") <= 60


@pytest.mark.parametrize("bad", ["-1", "1.5", "soon", "", " 12x"])
def test_invalid_ttl_env_is_a_config_error_naming_the_variable(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_TTL_COMMUNITY_REPORTS", bad)
    with pytest.raises(ConfigError, match="REDIS_TTL_COMMUNITY_REPORTS"):
        BlockingRedisKVStorage("community_reports")


@pytest.mark.parametrize("bad", [-5, 2.5, "x", True, [1]])
def test_invalid_ttl_setting_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="redis_ttl_full_docs in global_config\\['addon_params'\\]"):
        BlockingRedisKVStorage("full_docs", {"addon_params": {"redis_ttl_full_docs": bad}})


def test_ttl_is_set_with_the_value_in_one_command(settings: dict[str, Any], redis_server: Any) -> None:
    """MONITOR shows every command the server runs: SET ... EX, and never EXPIRE."""
    seen: list[str] = []
    monitor_client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    ready = threading.Event()
    kv = BlockingRedisKVStorage("llm_response_cache", **settings)

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            for event in monitor.listen():
                seen.append(event["command"])
                if "STOP-MARKER" in event["command"]:
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(5)
    kv.upsert({"one": {"return": "r"}})
    kv.upsert({"a": {"return": "1"}, "b": {"return": "2"}})
    marker = redis.Redis(host="127.0.0.1", port=redis_server.port)
    marker.get("STOP-MARKER")
    thread.join(5)
    marker.close()
    monitor_client.close()
    ours = [c for c in seen if kv.redis_key("").decode() in c]
    assert len([c for c in ours if c.startswith("SET ") and " EX 43200" in c]) == 3, ours
    assert not any(c.startswith(("EXPIRE", "PEXPIRE", "SETEX")) for c in seen), seen
    assert "MULTI" in seen and "EXEC" in seen
