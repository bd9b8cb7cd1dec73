"""Failovers under load, on the session cluster and Sentinel set: the client follows the
new master without a restart, within its retry budget.

Redis replicates asynchronously, so a failover may lose writes the old master had
acknowledged but not yet replicated; these tests report how many (they print it: run
with -s), and assert what the client controls: no call fails inside the retry budget,
and writes reach the new master soon after its promotion.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from nano_graphrag_redis import BlockingRedisKVStorage
from nano_graphrag_redis.local_server import RedisCluster, RedisSentinelSet

# Enough retries to ride out a failover (cluster-node-timeout 1 s + election here).
PATIENT = {"redis_retry_attempts": 60, "redis_retry_deadline": 20}


@dataclass
class Workload:
    """Writers (and a reader) that run until stopped, recording every outcome."""

    kv: BlockingRedisKVStorage
    writers: int = 4
    acked: list[tuple[float, str]] = field(default_factory=list)
    failed: list[tuple[float, str]] = field(default_factory=list)
    slowest: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for w in range(self.writers):
            self.threads.append(threading.Thread(target=self._write, args=(w,)))
        self.threads.append(threading.Thread(target=self._read))
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _call(self, call: Any, *args: Any) -> bool:
        started = time.monotonic()
        try:
            call(*args)
            return True
        except Exception as e:  # noqa: BLE001 - recorded and asserted on
            self.failed.append((time.monotonic(), str(e)))
            return False
        finally:
            self.slowest = max(self.slowest, time.monotonic() - started)

    def _write(self, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"w{w}-{n}"
            if self._call(self.kv.upsert, {key: {"n": n, "batch": [key] * 3}}):
                self.acked.append((time.monotonic(), key))
            n += 1

    def _read(self) -> None:
        while not self.stop.is_set():
            recent = [key for _, key in self.acked[-50:]]
            self._call(self.kv.get_by_ids, recent)
            self._call(self.kv.filter_keys, recent)

    def lost(self) -> list[tuple[float, str]]:
        keys = [key for _, key in self.acked]
        found = self.kv.get_by_ids(keys)
        return [entry for entry, value in zip(self.acked, found, strict=True) if value is None]


@pytest.mark.slow
def test_cluster_master_killed_under_load(redis_cluster: RedisCluster, prefix: str) -> None:
    kv = BlockingRedisKVStorage("docs", redis_url=redis_cluster.url, redis_key_prefix=prefix, **PATIENT)
    load = Workload(kv)
    load.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    old = redis_cluster.kill_master()
    try:
        redis_cluster.wait_for_failover(old)
        promoted_after = time.monotonic() - killed_at
        time.sleep(1.5)  # writes keep flowing on the new master
    finally:
        load.finish()
        redis_cluster.restart_node(old)
    lost = load.lost()
    after = [t for t, _ in load.acked if t > killed_at]
    print(
        f"\ncluster failover: promoted {promoted_after:.2f}s after the kill; {len(load.acked)} writes acked, "
        f"{len(after)} after the kill, {len(lost)} lost; {len(load.failed)} calls failed; "
        f"slowest call {load.slowest:.2f}s"
    )
    assert load.failed == [], load.failed[:3]
    assert after and after[-1] > killed_at + promoted_after  # recovered: writes after the failover
    assert len(lost) < len(load.acked) // 10  # only what asynchronous replication dropped


@pytest.mark.slow
def test_sentinel_failover_moves_writes_to_the_new_master(redis_sentinel: RedisSentinelSet, prefix: str) -> None:
    kv = BlockingRedisKVStorage("docs", redis_url=redis_sentinel.url, redis_key_prefix=prefix, **PATIENT)
    load = Workload(kv)
    old_master = redis_sentinel.master()
    replica = next(node for node in redis_sentinel.nodes if node is not old_master)
    promoted: list[float] = []

    def watch_promotion() -> None:
        probe = redis.Redis(host="127.0.0.1", port=replica.port)
        while not promoted and not load.stop.is_set():
            if probe.execute_command("ROLE")[0] == b"master":
                promoted.append(time.monotonic())
            time.sleep(0.005)
        probe.close()

    load.start()
    time.sleep(1.0)
    watcher = threading.Thread(target=watch_promotion)
    watcher.start()
    try:
        redis_sentinel.failover()
        time.sleep(1.0)
    finally:
        load.finish()
        watcher.join()
    assert promoted, "the replica was never promoted"
    lost = load.lost()
    # Writes acknowledged after the promotion went to the old master: lost. The last of
    # them says how long the client kept writing there.
    late = [t - promoted[0] for t, _ in lost if t > promoted[0]]
    switched_within = max(late, default=0.0)
    print(
        f"\nsentinel failover: {len(load.acked)} writes acked, {len(lost)} lost, the last lost one "
        f"{switched_within:.2f}s after the promotion; {len(load.failed)} calls failed; "
        f"slowest call {load.slowest:.2f}s"
    )
    assert load.failed == [], load.failed[:3]
    assert switched_within < 2.0
    assert redis_sentinel.master() is replica
    kv.upsert({"after": {"ok": True}})
    assert redis.Redis(host="127.0.0.1", port=replica.port).exists(kv.redis_key("after"))


@pytest.mark.slow
def test_cluster_resharding_under_load(redis_cluster: RedisCluster, prefix: str) -> None:
    # Slots move between masters (MIGRATE key by key: ASK, then MOVED) while writers and
    # a reader run; afterwards every acknowledged write is readable and all_keys sees
    # each exactly once.
    kv = BlockingRedisKVStorage("docs", redis_url=redis_cluster.url, redis_key_prefix=prefix, **PATIENT)
    kv.upsert({f"seed-{i}": {"i": i} for i in range(3000)})
    source, target = redis_cluster.masters()[:2]
    ids = {
        node: subprocess.run(
            ["redis-cli", "-p", str(node.port), "CLUSTER", "MYID"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for node in (source, target)
    }
    load = Workload(kv)
    load.start()
    try:
        moved = subprocess.run(
            [
                "redis-cli", "--cluster", "reshard", f"127.0.0.1:{source.port}",
                "--cluster-from", ids[source], "--cluster-to", ids[target],
                "--cluster-slots", "1500", "--cluster-yes", "--cluster-pipeline", "10",
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert moved.returncode == 0, moved.stdout[-2000:] + moved.stderr[-2000:]
        time.sleep(0.5)
    finally:
        load.finish()
        redis_cluster.wait_healthy()
    print(f"\ncluster resharding: {len(load.acked)} writes acked, {len(load.failed)} calls failed")
    assert load.failed == [], load.failed[:3]
    assert load.lost() == []
    expected = {f"seed-{i}" for i in range(3000)} | {key for _, key in load.acked}
    keys = kv.all_keys()
    assert len(keys) == len(set(keys)) and set(keys) == expected
