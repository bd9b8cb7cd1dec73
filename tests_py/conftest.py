"""Shared fixtures: one real redis-server per test session (and, for the tests that ask
for them, one Redis Cluster and one Sentinel set), a fresh key prefix per test (so tests
never see each other's keys), and a clean environment."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from nano_graphrag_redis.local_server import RedisCluster, RedisSentinelSet, RedisServer
from topology import TOPOLOGIES, Topology, topology_for


def pytest_configure(config: pytest.Config) -> None:
    # Registered, because the suite turns warnings (here: an unknown mark) into errors.
    config.addinivalue_line("markers", "slow: takes seconds (a failover, a private topology); -m 'not slow' skips it")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's REDIS_URL / REDIS_TTL_* must not leak into the tests.
    for name in list(os.environ):
        if name.startswith("REDIS_") or name.startswith("NANO_GRAPHRAG_REDIS_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """3 masters + 3 replicas, started when a test first asks for it (~3 s), shared by the
    rest of the session. A test that fails a node over must leave the cluster healthy
    (restart_node); roles may then be swapped, so ask for them (masters()), never assume."""
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    """A master + 1 replica watched by 3 sentinels ("mymaster"), started when a test first
    asks for it (~1 s), shared by the rest of the session. Same rule as redis_cluster: a
    failover must leave it healthy, and the master is whatever master() says."""
    with RedisSentinelSet() as sentinel:
        yield sentinel


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(redis_url: str, prefix: str) -> dict[str, Any]:
    """Keyword settings for a storage on the session server, under this test's prefix."""
    return {"redis_url": redis_url, "redis_key_prefix": prefix}


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client for looking at (and writing) keys directly."""
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    client.close()


@pytest.fixture(params=TOPOLOGIES)
def topology(request: pytest.FixtureRequest) -> Topology:
    """Runs a test on one server, on the session cluster and on the session Sentinel set."""
    return topology_for(request, request.param)


@pytest.fixture
def topo_settings(topology: Topology, prefix: str) -> dict[str, Any]:
    """Keyword settings for a storage on `topology`, under this test's prefix."""
    return {"redis_url": topology.url, "redis_key_prefix": prefix}


@pytest.fixture
def topo_raw(topology: Topology) -> Iterator[Any]:
    """A redis-py client that sees every key of `topology`."""
    client = topology.client()
    yield client
    client.close()
