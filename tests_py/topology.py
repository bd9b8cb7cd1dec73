"""The three topologies the product runs on, as the parametrized tests see them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.cluster

TOPOLOGIES = ("single", "cluster", "sentinel")


@dataclass
class Topology:
    name: str
    url: str
    #: A redis-py client that sees every key (a RedisCluster for a cluster; the current
    #: master for Sentinel), for assertions behind the storage's back.
    client: Callable[[], Any]


def topology_for(request: pytest.FixtureRequest, name: str) -> Topology:
    """The session topology `name`, started on first use (cluster ~3 s, sentinel ~1 s)."""
    if name == "single":
        server = request.getfixturevalue("redis_server")
        return Topology(name, server.url, lambda: redis.Redis(host="127.0.0.1", port=server.port))
    if name == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return Topology(
            name,
            cluster.url,
            lambda: redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.masters()[0].port),
        )
    if name == "sentinel":
        sentinel = request.getfixturevalue("redis_sentinel")
        return Topology(name, sentinel.url, lambda: redis.Redis(host="127.0.0.1", port=sentinel.master().port))
    raise ValueError(name)
