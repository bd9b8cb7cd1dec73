"""What Cluster and Sentinel add beyond the shared contract: URLs, credentials on every
topology, and what a batch on a cluster is (not atomic, per master)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from nano_graphrag_redis import BlockingRedisKVStorage, ConfigError, StorageOperationError
from nano_graphrag_redis.local_server import RedisCluster, RedisSentinelSet

SECRET = "cl-Pa55-w0rd"


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def protected(request: pytest.FixtureRequest) -> Iterator[RedisCluster | RedisSentinelSet]:
    """A private topology whose data nodes require SECRET."""
    topology: RedisCluster | RedisSentinelSet = (
        RedisCluster(password=SECRET) if request.param == "cluster" else RedisSentinelSet(password=SECRET)
    )
    with topology:
        yield topology


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://:{password}@{rest}"


@pytest.mark.slow
def test_credentials_work_on_every_topology_and_never_show(
    protected: RedisCluster | RedisSentinelSet, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    by_url = BlockingRedisKVStorage("docs", redis_url=with_password(protected.url, SECRET), redis_key_prefix=prefix)
    by_setting = BlockingRedisKVStorage("docs", redis_url=protected.url, redis_password=SECRET, redis_key_prefix=prefix)
    by_url.upsert({f"k{i}": {"i": i} for i in range(200)})
    assert by_setting.get_by_ids(["k0", "k199", "nope"]) == [{"i": 0}, {"i": 199}, None]
    assert len(by_setting.all_keys()) == 200
    shown = [repr(by_url), str(by_url.settings())]
    wrong = BlockingRedisKVStorage(
        "docs", redis_url=with_password(protected.url, "wrong-" + SECRET), redis_key_prefix=prefix
    )
    missing = BlockingRedisKVStorage("docs", redis_url=protected.url, redis_key_prefix=prefix)
    with caplog.at_level(logging.DEBUG):
        for kv in (wrong, missing):
            with pytest.raises(StorageOperationError) as info:
                kv.get_by_ids(["k0", "k1"])
            shown.append(str(info.value))
    assert "authentication failed" in shown[-2] or "WRONGPASS" in shown[-2], shown[-2]
    assert "NOAUTH" in shown[-1], shown[-1]
    for text in [*shown, caplog.text]:
        assert SECRET not in text


def test_cluster_batches_go_one_pipeline_per_master(redis_cluster: RedisCluster, prefix: str) -> None:
    masters = redis_cluster.masters()
    clients = [redis.Redis(host="127.0.0.1", port=m.port) for m in masters]

    def normal_clients() -> list[set[str]]:
        # Connections of other live storages of this session count too: compare sets.
        return [
            {c["id"] for c in client.client_list() if c["flags"] == "N" and c["id"] != str(client.client_id())}
            for client in clients
        ]

    before = normal_clients()
    kv = BlockingRedisKVStorage("docs", redis_url=redis_cluster.url, redis_key_prefix=prefix)
    ids = [f"id-{i}" for i in range(500)]
    kv.upsert({i: {"v": i} for i in ids})
    for client in clients:
        client.config_resetstat()
    assert kv.get_by_ids(ids) == [{"v": i} for i in ids]
    # Each key is read once, on the master that owns it; every master got its share.
    calls = [client.info("commandstats").get("cmdstat_mget", {}).get("calls", 0) for client in clients]
    assert sum(calls) == 500 and all(c > 0 for c in calls), calls
    # One new connection per master carries it all (no pool).
    added = [len(now - then) for now, then in zip(normal_clients(), before, strict=True)]
    assert added == [1] * len(masters), added
    for client in clients:
        client.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://127.0.0.1:1", "names the master"),
        ("redis+sentinel://127.0.0.1:1/m/zero", "must be a number"),
        ("redis+cluster://127.0.0.1:1/1", "only database 0"),
        ("redis+cluster://127.0.0.1:x", "invalid port"),
        ("redis+cluster://", "empty host"),
    ],
)
def test_bad_scale_out_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BlockingRedisKVStorage("docs", redis_url=url)


def test_redis_cluster_setting_turns_a_plain_url_into_a_seed(redis_cluster: RedisCluster, prefix: str) -> None:
    seed = redis_cluster.masters()[0]
    kv = BlockingRedisKVStorage("docs", redis_url=seed.url, redis_cluster=True, redis_key_prefix=prefix)
    assert kv.settings()["mode"] == "cluster"
    kv.upsert({f"k{i}": {"i": i} for i in range(100)})  # spread over every master
    assert len(kv.all_keys()) == 100
    with pytest.raises(ConfigError, match="redis_cluster"):
        BlockingRedisKVStorage("docs", redis_url="unix:///tmp/x.sock", redis_cluster=True)


def test_a_sentinel_that_does_not_know_the_master_says_so(redis_sentinel: RedisSentinelSet) -> None:
    url = redis_sentinel.url.rsplit("/", 1)[0] + "/no-such-master"
    kv = BlockingRedisKVStorage("docs", redis_url=url)
    with pytest.raises(ConfigError, match="no-such-master"):
        kv.get_by_id("a")


def test_settings_say_which_topology(topology: Any) -> None:
    assert BlockingRedisKVStorage("docs", redis_url=topology.url).settings()["mode"] == topology.name
