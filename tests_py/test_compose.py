"""docker-compose-redis.yml: Docker does not run here, so start a real redis-server
with exactly the compose file's command and check the server took every setting."""

from __future__ import annotations

from pathlib import Path

import redis
import yaml

from nano_graphrag_redis import BlockingRedisKVStorage
from nano_graphrag_redis.local_server import RedisServer

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose-redis.yml"


def test_compose_command_is_valid_and_safe() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    redis_service = spec["services"]["redis"]
    command = redis_service["command"]
    assert command[0] == "redis-server"
    assert redis_service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "redisinsight" in spec["services"]

    # The helper's own --save ""/--appendonly no come first; the compose arguments,
    # appended after them, win, as they would in the container.
    with RedisServer(*command[1:]) as server:
        client = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("save")["save"] == "900 1 300 10 60 10000"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        assert int(client.config_get("maxmemory")["maxmemory"]) == 2 * 1024**3
        client.close()
        # The storage accepts this server even when told to refuse evicting policies.
        kv = BlockingRedisKVStorage("full_docs", redis_url=server.url, redis_eviction_check="refuse")
        kv.upsert({"d": {"content": "kept"}})
        assert kv.get_by_id("d") == {"content": "kept"}
