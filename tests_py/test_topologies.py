"""The local topologies that the Cluster and Sentinel tests run against
(``local_server.RedisCluster`` and ``RedisSentinelSet``), checked with redis-py.

The session fixtures ``redis_cluster`` and ``redis_sentinel`` are shared. The failover
tests (marked slow) disturb them and leave them healthy again, with roles swapped: a
killed master is restarted and rejoins as a replica, a ``SENTINEL FAILOVER`` is not undone.
So every test asks for the current roles (``masters()``, ``master()``). The password
tests start private instances."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.sentinel import Sentinel

from nano_graphrag_redis.local_server import RedisCluster, RedisSentinelSet, RedisServer

PASSWORD = "topology-secret"


def cluster_client(cluster: RedisCluster) -> ClusterClient:
    nodes = [ClusterNode("127.0.0.1", master.port) for master in cluster.masters()]
    return ClusterClient(startup_nodes=nodes, password=cluster.password, socket_timeout=5)


def sentinel_client(sentinels: RedisSentinelSet) -> Sentinel:
    addresses = [("127.0.0.1", sentinel.port) for sentinel in sentinels.sentinels]
    return Sentinel(addresses, password=sentinels.password, socket_timeout=5)


def node_client(node: RedisServer, password: str | None = None) -> redis.Redis:
    # retry=None: redis-py would otherwise retry (and back off on) an AuthenticationError.
    return redis.Redis(host="127.0.0.1", port=node.port, password=password, socket_timeout=5, retry=None)


def write_replicated(client: ClusterClient, prefix: str, count: int = 60) -> dict[str, str]:
    """Write ``count`` keys and WAIT until every master's replica has them."""
    values = {f"{prefix}:{i}": f"value-{i}" for i in range(count)}
    for key, value in values.items():
        client.set(key, value)
    # WAIT runs on each master on the connection that wrote there; redis-py sums the acks.
    primaries = client.get_primaries()
    assert client.execute_command("WAIT", 1, 5000, target_nodes=primaries) == len(primaries)
    return values


def assert_readable(cluster: RedisCluster, values: dict[str, str]) -> None:
    client = cluster_client(cluster)  # a fresh client: the slot map of after the failover
    try:
        assert {key: client.get(key) for key in values} == {key: value.encode() for key, value in values.items()}
    finally:
        client.close()


# --- Redis Cluster ---------------------------------------------------------------------


def test_cluster_has_three_masters_with_a_replica_each(redis_cluster: RedisCluster) -> None:
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert (len(masters), len(replicas)) == (3, 3)
    assert all(len(redis_cluster.replicas_of(master)) == 1 for master in masters)
    assert redis_cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in masters)
    for node in redis_cluster.nodes:
        assert node.port <= 55535 and 6379 not in (node.port, node.port + 10000)
        info = node_client(node).execute_command("CLUSTER INFO")
        assert (info["cluster_state"], info["cluster_slots_ok"], info["cluster_known_nodes"]) == ("ok", "16384", "6")

    client = cluster_client(redis_cluster)
    try:
        slots = client.cluster_slots()
        assert sum(end - start + 1 for start, end in slots) == 16384
        assert {entry["primary"][1] for entry in slots.values()} == {m.port for m in masters}
        assert {entry["replicas"][0][1] for entry in slots.values()} == {r.port for r in replicas}
    finally:
        client.close()


def test_cluster_spreads_keys_over_every_master(redis_cluster: RedisCluster, prefix: str) -> None:
    client = cluster_client(redis_cluster)
    try:
        for i in range(60):
            client.set(f"{prefix}:{i}", i)
        assert [client.get(f"{prefix}:{i}") for i in range(60)] == [str(i).encode() for i in range(60)]
    finally:
        client.close()
    per_master = [len(list(node_client(m).scan_iter(match=f"{prefix}:*"))) for m in redis_cluster.masters()]
    assert sum(per_master) == 60 and all(per_master), per_master


@pytest.mark.slow
def test_cluster_failover_keeps_replicated_data(redis_cluster: RedisCluster, prefix: str) -> None:
    client = cluster_client(redis_cluster)
    try:
        values = write_replicated(client, prefix)
    finally:
        client.close()
    replicas_before = {m.port: redis_cluster.replicas_of(m) for m in redis_cluster.masters()}

    old = redis_cluster.kill_master()
    try:
        assert not old.running and replicas_before[old.port]
        started = time.monotonic()
        new = redis_cluster.wait_for_failover(old, timeout=30)
        print(f"cluster failover: {time.monotonic() - started:.1f} s")
        assert new in replicas_before[old.port]
        assert new in redis_cluster.masters() and old not in redis_cluster.masters()
        assert_readable(redis_cluster, values)
    finally:
        redis_cluster.restart_node(old)  # leaves the shared cluster healthy, roles swapped
    assert redis_cluster.replicas_of(new) == [old]
    assert_readable(redis_cluster, values)


# --- Sentinel --------------------------------------------------------------------------


def test_sentinels_report_the_master(redis_sentinel: RedisSentinelSet) -> None:
    master = redis_sentinel.master()
    assert redis_sentinel.master_address() == ("127.0.0.1", master.port)
    for sentinel in redis_sentinel.sentinels:
        assert node_client(sentinel).sentinel_get_master_addr_by_name("mymaster") == (b"127.0.0.1", master.port)
    assert node_client(master).role()[0] == b"master"
    assert redis_sentinel.replicas() == [node for node in redis_sentinel.nodes if node is not master]
    ports = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in redis_sentinel.sentinels)
    assert redis_sentinel.url == f"redis+sentinel://{ports}/mymaster"
    assert redis_sentinel.master_name == "mymaster"


def test_sentinel_master_for_writes_and_replica_reads(redis_sentinel: RedisSentinelSet, prefix: str) -> None:
    sentinel = sentinel_client(redis_sentinel)
    master = sentinel.master_for("mymaster")
    master.set(f"{prefix}:k", "v")
    assert master.get(f"{prefix}:k") == b"v"
    assert master.wait(1, 5000) == 1
    assert sentinel.slave_for("mymaster").get(f"{prefix}:k") == b"v"


@pytest.mark.slow
def test_sentinel_failover_promotes_the_replica(redis_sentinel: RedisSentinelSet, prefix: str) -> None:
    old = redis_sentinel.master()
    before = sentinel_client(redis_sentinel).master_for("mymaster")
    before.set(f"{prefix}:before", "1")
    assert before.wait(1, 5000) == 1

    started = time.monotonic()
    new = redis_sentinel.failover(timeout=30)  # leaves the shared set healthy, roles swapped
    print(f"sentinel failover: {time.monotonic() - started:.1f} s")

    assert new is not old and redis_sentinel.master_address() == ("127.0.0.1", new.port)
    assert node_client(new).role()[0] == b"master"
    role = node_client(old).role()
    assert (role[0], role[2], role[3]) == (b"slave", new.port, b"connected")
    master = sentinel_client(redis_sentinel).master_for("mymaster")
    master.set(f"{prefix}:after", "2")
    assert (master.get(f"{prefix}:before"), master.get(f"{prefix}:after")) == (b"1", b"2")
    with pytest.raises(redis.ReadOnlyError):
        node_client(old).set(f"{prefix}:refused", "x")


@pytest.mark.slow
def test_sentinel_kill_master_fails_over_and_the_old_master_rejoins(
    redis_sentinel: RedisSentinelSet, prefix: str
) -> None:
    master = sentinel_client(redis_sentinel).master_for("mymaster")
    master.set(f"{prefix}:k", "v")
    assert master.wait(1, 5000) == 1

    old = redis_sentinel.kill_master()
    try:
        started = time.monotonic()
        new = redis_sentinel.wait_for_failover(old, timeout=30)
        print(f"sentinel failover after kill -9: {time.monotonic() - started:.1f} s")
        assert new is not old and redis_sentinel.master() is new
        assert sentinel_client(redis_sentinel).master_for("mymaster").get(f"{prefix}:k") == b"v"
    finally:
        redis_sentinel.restart_node(old)  # leaves the shared set healthy: old rejoins as a replica
    assert redis_sentinel.replicas() == [old]
    assert node_client(old).get(f"{prefix}:k") == b"v"


# --- Passwords (private instances) ----------------------------------------------------


@pytest.mark.slow
def test_cluster_with_a_password(prefix: str) -> None:
    with RedisCluster(password=PASSWORD) as cluster:
        with pytest.raises(redis.AuthenticationError):
            node_client(cluster.nodes[0]).ping()
        assert all(node_client(node, PASSWORD).ping() for node in cluster.nodes)
        client = cluster_client(cluster)
        try:
            values = write_replicated(client, prefix, count=10)
        finally:
            client.close()
        # Replicas authenticate to their master (masterauth), also after a failover.
        old = cluster.kill_master()
        new = cluster.wait_for_failover(old, timeout=30)
        cluster.restart_node(old)
        assert cluster.replicas_of(new) == [old]
        assert_readable(cluster, values)


@pytest.mark.slow
def test_sentinel_set_with_a_password(prefix: str) -> None:
    with RedisSentinelSet(password=PASSWORD) as sentinels:
        with pytest.raises(redis.AuthenticationError):
            Sentinel([("127.0.0.1", sentinels.sentinels[0].port)]).master_for("mymaster", retry=None).ping()
        master = sentinel_client(sentinels).master_for("mymaster")
        master.set(f"{prefix}:k", "v")
        assert master.wait(1, 5000) == 1
        old = sentinels.master()
        new = sentinels.failover(timeout=30)  # sentinel auth-pass + masterauth on the old master
        assert sentinels.replicas_of(new) == [old]
        assert sentinel_client(sentinels).master_for("mymaster").get(f"{prefix}:k") == b"v"


# --- The harness itself -----------------------------------------------------------------


def test_a_node_that_does_not_start_is_a_clear_error_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A private temp root: other processes on the machine create such dirs in /tmp too.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cluster = RedisCluster(extra_args=("--no-such-directive", "1"))
    # The log tail names the culprit.
    with pytest.raises(RuntimeError, match="(?s)exited with code.*no-such-directive"):
        cluster.start()
    assert not any(node.running for node in cluster.nodes)
    assert list(tmp_path.iterdir()) == []


def test_at_least_three_cluster_masters() -> None:
    with pytest.raises(ValueError, match="3 masters"):
        RedisCluster(masters=2)
