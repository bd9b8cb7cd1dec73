#!/usr/bin/env python3
"""Side-by-side benchmark of nano-graphrag-redis against hand-written Redis KV storages.

    python bench/bench_kv.py [--quick] [--rounds N] [--out FILE] [--uvloop] [--topology T]

Single node (``--topology single``): starts its own throw-away ``redis-server`` on a free
loopback port (never 6379), loads realistic ``text_chunks`` records (~1.8 KB of UTF-8 JSON
each), and then, in the same process, against the same server, measures the same work done by:

* nano-graphrag-redis ``RedisKVStorage`` (async) and its blocking API (``.blocking()``);
* redis-py asyncio (hiredis parser) written the way a user's own ``BaseKVStorage`` would be:
  GET + json.loads, MGET + json.loads, a pipeline of EXISTS, MSET of
  ``json.dumps(ensure_ascii=False)``;
* valkey-glide 2.x async ``GlideClient`` doing the same;
* redis-py sync (the natural competitor of the blocking API).

Cluster (``--topology cluster``): starts its own Redis Cluster (3 masters + 3 replicas) and a
single node, loads ~4.8 KB records, and measures batches of 500 done by nano-graphrag-redis
(async and blocking) on the cluster against redis-py's ``RedisCluster`` (sync and asyncio:
``mget_nonatomic``, a pipeline of EXISTS, ``mset_nonatomic``), and against itself on the
single node. It also counts, on each master, the commands and socket reads one batch cost.
``--topology both`` (the default) runs the two sections one after the other.

Every measurement is repeated for several rounds (client order rotated each round) and the
MEDIAN is reported; see bench/README.md. Speed is never asserted anywhere: this script only
reports.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from glide import (
    Batch,
    GlideClient,
    GlideClientConfiguration,
    NodeAddress,
)

from nano_graphrag_redis import RedisKVStorage

# the throw-away servers the tests and the demo share
from nano_graphrag_redis.local_server import RedisCluster, RedisServer, find_redis_server

HOST = "127.0.0.1"  # loopback only
PREFIX = "nano_graphrag"
READ_NS = "text_chunks"
BATCH = 100  # ids per get_by_ids / upsert / filter_keys call
CONCURRENCY = 64
THREADS = 4
CLUSTER_BATCH = 500  # the cluster section's batches ...
CLUSTER_TEXT_BYTES = 4690  # ... of ~4.8 KB records

# Op counts per round (every loop is also bounded in time by --max-seconds).
PROFILES = {
    "full": dict(
        rounds=5,
        records=2000,
        seq_ops=4000,
        conc_ops=30000,
        batch_ops=300,
        upsert_ops=200,
        filter_ops=800,
        thread_ops=16000,
        max_seconds=15.0,
    ),
    "quick": dict(
        rounds=3,
        records=1000,
        seq_ops=800,
        conc_ops=6000,
        batch_ops=60,
        upsert_ops=40,
        filter_ops=160,
        thread_ops=3200,
        max_seconds=8.0,
    ),
}
# The cluster section's counts (its rounds and time bound are those of PROFILES).
CLUSTER_PROFILES = {
    "full": dict(records=2000, conc_ops=20000, batch_ops=40, upsert_ops=20, filter_ops=100),
    "quick": dict(records=1000, conc_ops=4000, batch_ops=8, upsert_ops=4, filter_ops=20),
}

NANO_A = "nano-graphrag-redis (async)"
NANO_B = "nano-graphrag-redis (blocking)"
RPY_A = "redis-py asyncio"
RPY_S = "redis-py (sync)"
GLIDE = "valkey-glide"
C_NANO_A = NANO_A + " [cluster]"
C_NANO_B = NANO_B + " [cluster]"
C_RPY_A = "redis-py asyncio RedisCluster"
C_RPY_S = "redis-py RedisCluster (sync)"
S_NANO_A = NANO_A + " [single node]"
S_NANO_B = NANO_B + " [single node]"


# --------------------------------------------------------------------------- data

_WORDS = (
    "the graph entity relation community report chunk token summary node edge retrieval "
    "knowledge local global query answer model document source embedding vector cluster "
    "leiden hierarchy description keyword context window prompt response cache storage "
    "redis key value namespace record index insert update delete search rank score"
).split()
_NON_ASCII = [
    "naïve",
    "café",
    "Zürich",
    "résumé",
    "façade",
    "Ελλάδα",
    "東京",
    "知识图谱",
    "Москва",
    "São Paulo",
    "coöperate",
    "—",
    "«quoted»",
    "µs",
    "Ærø",
    "İstanbul",
    "🙂",
]


def make_text(rng: random.Random, target_bytes: int = 1700) -> str:
    """~target_bytes of UTF-8 prose, about 1 word in 12 non-ASCII."""
    words: list[str] = []
    size = 0
    while size < target_bytes:
        w = rng.choice(_NON_ASCII) if rng.random() < 1 / 12 else rng.choice(_WORDS)
        if rng.random() < 0.08:
            w += "."
        words.append(w)
        size += len(w.encode("utf-8")) + 1
    return " ".join(words)


def chunk_id(content: str) -> str:
    return "chunk-" + hashlib.md5(content.encode("utf-8")).hexdigest()


def make_records(n: int, seed: int, text_bytes: int = 1700) -> dict[str, dict[str, Any]]:
    """nano-graphrag ``text_chunks`` records: tokens, content, chunk_order_index, full_doc_id."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        content = make_text(rng, text_bytes)
        doc = "doc-" + hashlib.md5(str(len(out) // 8).encode()).hexdigest()
        out[chunk_id(content)] = {
            "tokens": rng.randint(900, 1200),
            "content": content,
            "chunk_order_index": len(out) % 8,
            "full_doc_id": doc,
        }
    return out


class Dataset:
    """What one section reads (``records``, loaded once), asks for (``ids``, ``miss_ids``)
    and writes (``upsert_batches`` of ``batch`` records)."""

    def __init__(self, n: int, batch: int, text_bytes: int = 1700) -> None:
        self.batch = batch
        self.records = make_records(n, seed=1, text_bytes=text_bytes)
        self.ids = list(self.records)
        self.miss_ids = [f"chunk-missing-{i:05d}" for i in range(2000)]
        src = make_records(1000, seed=2, text_bytes=text_bytes)
        up_ids = list(src)
        self.upsert_batches = [{k: src[k] for k in up_ids[i : i + batch]} for i in range(0, len(up_ids), batch)]
        self.expected = {k: json.loads(json.dumps(v)) for k, v in self.records.items()}
        self.avg_bytes = statistics.mean(len(json.dumps(v, ensure_ascii=False).encode()) for v in self.records.values())

    def load(self, blocking_store: Any) -> None:
        """Writes the read data set with the library itself (compact UTF-8 JSON)."""
        ids = self.ids
        for i in range(0, len(ids), 500):
            blocking_store.upsert({k: self.records[k] for k in ids[i : i + 500]})

    def workload(self, max_seconds: float) -> Workload:
        return Workload(self.ids, self.miss_ids, self.upsert_batches, max_seconds, self.batch)


# --------------------------------------------------------------------------- competitors
# Written as a user would write their own nano-graphrag BaseKVStorage on these clients.


class RedisPyAsyncKV:
    def __init__(self, url: str, namespace: str) -> None:
        self._r = redis.asyncio.Redis.from_url(url)
        self._p = f"{PREFIX}:{namespace}:"

    async def get_by_id(self, id: str) -> dict | None:
        raw = await self._r.get(self._p + id)
        return None if raw is None else json.loads(raw)

    async def get_by_ids(self, ids: list[str], fields: set | None = None) -> list:
        raws = await self._r.mget([self._p + i for i in ids])
        return [None if r is None else json.loads(r) for r in raws]

    async def filter_keys(self, data: list[str]) -> set[str]:
        pipe = self._r.pipeline(transaction=False)
        for i in data:
            pipe.exists(self._p + i)
        res = await pipe.execute()
        return {i for i, n in zip(data, res, strict=False) if not n}

    async def upsert(self, data: dict[str, dict]) -> None:
        await self._r.mset({self._p + k: json.dumps(v, ensure_ascii=False) for k, v in data.items()})

    async def close(self) -> None:
        await self._r.aclose()


class RedisPySyncKV:
    def __init__(self, url: str, namespace: str) -> None:
        self._r = redis.Redis.from_url(url)  # thread-safe: one connection per thread
        self._p = f"{PREFIX}:{namespace}:"

    def get_by_id(self, id: str) -> dict | None:
        raw = self._r.get(self._p + id)
        return None if raw is None else json.loads(raw)

    def get_by_ids(self, ids: list[str], fields: set | None = None) -> list:
        raws = self._r.mget([self._p + i for i in ids])
        return [None if r is None else json.loads(r) for r in raws]

    def filter_keys(self, data: list[str]) -> set[str]:
        pipe = self._r.pipeline(transaction=False)
        for i in data:
            pipe.exists(self._p + i)
        res = pipe.execute()
        return {i for i, n in zip(data, res, strict=False) if not n}

    def upsert(self, data: dict[str, dict]) -> None:
        self._r.mset({self._p + k: json.dumps(v, ensure_ascii=False) for k, v in data.items()})

    def close(self) -> None:
        self._r.close()


def conn_name(label: str) -> str:
    """The CLIENT SETNAME of a redis-py client's connections: the counts tell them apart
    from nano-graphrag-redis's (which stay unnamed)."""
    return "bench-" + "".join(c if c.isalnum() else "-" for c in label)


# On a cluster: the same code on redis-py's cluster clients, with the multi-key calls
# redis-py offers there. mget_nonatomic / mset_nonatomic group the keys by slot and send
# one MGET / MSET per slot, as one pipeline per master (the masters one after the other in
# the sync client, concurrently in the asyncio one). filter_keys stays a non-transactional
# pipeline of EXISTS (redis-py's cluster pipeline also groups it per master). Each record
# travels in one command either way, as in nano-graphrag-redis's per-master pipelines.


class RedisPyAsyncClusterKV(RedisPyAsyncKV):
    def __init__(self, url: str, namespace: str) -> None:
        self._r = redis.asyncio.cluster.RedisCluster.from_url(url, client_name=conn_name(C_RPY_A))
        self._p = f"{PREFIX}:{namespace}:"

    async def get_by_ids(self, ids: list[str], fields: set | None = None) -> list:
        raws = await self._r.mget_nonatomic([self._p + i for i in ids])
        return [None if r is None else json.loads(r) for r in raws]

    async def upsert(self, data: dict[str, dict]) -> None:
        values = {self._p + k: json.dumps(v, ensure_ascii=False) for k, v in data.items()}
        await self._r.mset_nonatomic(values)


class RedisPyClusterKV(RedisPySyncKV):
    def __init__(self, url: str, namespace: str) -> None:
        self._r = redis.cluster.RedisCluster.from_url(url, client_name=conn_name(C_RPY_S))
        self._p = f"{PREFIX}:{namespace}:"

    def get_by_ids(self, ids: list[str], fields: set | None = None) -> list:
        raws = self._r.mget_nonatomic([self._p + i for i in ids])
        return [None if r is None else json.loads(r) for r in raws]

    def upsert(self, data: dict[str, dict]) -> None:
        self._r.mset_nonatomic({self._p + k: json.dumps(v, ensure_ascii=False) for k, v in data.items()})


class GlideKV:
    def __init__(self, client: GlideClient, namespace: str) -> None:
        self._c = client
        self._p = f"{PREFIX}:{namespace}:"

    @classmethod
    async def create(cls, port: int, namespace: str) -> GlideKV:
        # request_timeout 5 s like nano-graphrag-redis's socket timeout (glide's default is
        # 250 ms, which a noisy 2-core machine can exceed on a 180 KB MGET).
        cfg = GlideClientConfiguration([NodeAddress(HOST, port)], request_timeout=5000)
        return cls(await GlideClient.create(cfg), namespace)

    async def get_by_id(self, id: str) -> dict | None:
        raw = await self._c.get(self._p + id)
        return None if raw is None else json.loads(raw)

    async def get_by_ids(self, ids: list[str], fields: set | None = None) -> list:
        raws = await self._c.mget([self._p + i for i in ids])
        return [None if r is None else json.loads(r) for r in raws]

    async def filter_keys(self, data: list[str]) -> set[str]:
        batch = Batch(is_atomic=False)  # a pipeline, like redis-py's transaction=False
        for i in data:
            batch.exists([self._p + i])
        res = await self._c.exec(batch, raise_on_error=True)
        return {i for i, n in zip(data, res or (), strict=False) if not n}

    async def upsert(self, data: dict[str, dict]) -> None:
        await self._c.mset({self._p + k: json.dumps(v, ensure_ascii=False) for k, v in data.items()})

    async def close(self) -> None:
        await self._c.close()


# --------------------------------------------------------------------------- measurements


def _pct(sorted_vals: list[int], q: float) -> float:
    idx = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[idx]


def _latency_result(lat_ns: list[int]) -> dict[str, float]:
    lat_ns.sort()
    return {"p50": _pct(lat_ns, 0.50) / 1000, "p99": _pct(lat_ns, 0.99) / 1000, "n": len(lat_ns)}


class Workload:
    """One timed run of one operation by one client; returns a dict of metrics."""

    def __init__(
        self, ids: list[str], miss_ids: list[str], upsert_batches: list[dict], max_seconds: float, batch: int = BATCH
    ) -> None:
        self.ids = ids
        self.miss_ids = miss_ids
        self.upsert_batches = upsert_batches
        self.max_seconds = max_seconds
        self.batch = batch

    def id_batches(self, n: int, offset: int) -> list[list[str]]:
        ids, size = self.ids, self.batch
        return [[ids[(offset + b * size + j) % len(ids)] for j in range(size)] for b in range(n)]

    def filter_batches(self, n: int, offset: int) -> list[list[str]]:
        """Batches of ``batch`` ids, half stored and half missing, interleaved."""
        half = self.batch // 2
        out = []
        for b in range(n):
            have = [self.ids[(offset + b * half + j) % len(self.ids)] for j in range(half)]
            miss = [self.miss_ids[(b * half + j) % len(self.miss_ids)] for j in range(half)]
            mixed = [x for pair in zip(have, miss, strict=False) for x in pair]
            out.append(mixed)
        return out

    # ---- async

    async def a_seq(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        get, ids, lat = kv.get_by_id, self.ids, []
        clock = time.perf_counter_ns
        t_end = time.perf_counter() + self.max_seconds
        for i in range(n):
            k = ids[(offset + i) % len(ids)]
            t0 = clock()
            await get(k)
            lat.append(clock() - t0)
            if not i & 63 and time.perf_counter() > t_end:
                break
        return _latency_result(lat)

    async def a_conc(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        per = max(1, n // CONCURRENCY)
        ids = self.ids
        t_end = time.perf_counter() + self.max_seconds

        async def worker(w: int) -> int:
            get = kv.get_by_id
            base = offset + w * per
            done = 0
            for j in range(per):
                await get(ids[(base + j) % len(ids)])
                done += 1
                if not j & 31 and time.perf_counter() > t_end:
                    break
            return done

        t0 = time.perf_counter()
        counts = await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
        el = time.perf_counter() - t0
        return {"ops": sum(counts) / el, "n": sum(counts)}

    async def _a_batches(self, fn: Callable[[Any], Awaitable[Any]], batches: list) -> dict:
        t_end = time.perf_counter() + self.max_seconds
        done = 0
        t0 = time.perf_counter()
        for b in batches:
            await fn(b)
            done += 1
            if time.perf_counter() > t_end:
                break
        el = time.perf_counter() - t0
        return {"batches": done / el, "records": done * self.batch / el, "n": done}

    async def a_get_many(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return await self._a_batches(kv.get_by_ids, self.id_batches(n, offset))

    async def a_upsert(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        ub = self.upsert_batches
        batches = [ub[(offset + i) % len(ub)] for i in range(n)]
        return await self._a_batches(kv.upsert, batches)

    async def a_filter(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return await self._a_batches(kv.filter_keys, self.filter_batches(n, offset))

    # ---- blocking

    def b_seq(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        get, ids, lat = kv.get_by_id, self.ids, []
        clock = time.perf_counter_ns
        t_end = time.perf_counter() + self.max_seconds
        for i in range(n):
            k = ids[(offset + i) % len(ids)]
            t0 = clock()
            get(k)
            lat.append(clock() - t0)
            if not i & 63 and time.perf_counter() > t_end:
                break
        return _latency_result(lat)

    def _b_batches(self, fn: Callable[[Any], Any], batches: list) -> dict:
        t_end = time.perf_counter() + self.max_seconds
        done = 0
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
            done += 1
            if time.perf_counter() > t_end:
                break
        el = time.perf_counter() - t0
        return {"batches": done / el, "records": done * self.batch / el, "n": done}

    def b_get_many(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return self._b_batches(kv.get_by_ids, self.id_batches(n, offset))

    def b_upsert(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        ub = self.upsert_batches
        return self._b_batches(kv.upsert, [ub[(offset + i) % len(ub)] for i in range(n)])

    def b_filter(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return self._b_batches(kv.filter_keys, self.filter_batches(n, offset))

    def b_threads(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        per = max(1, n // THREADS)
        ids = self.ids
        counts = [0] * THREADS
        errors: list[BaseException] = []
        barrier = threading.Barrier(THREADS + 1)
        t_end_box = [0.0]

        def worker(w: int) -> None:
            get = kv.get_by_id
            base = offset + w * per
            try:
                barrier.wait(timeout=30)
                t_end = t_end_box[0]
                for j in range(per):
                    get(ids[(base + j) % len(ids)])
                    counts[w] += 1
                    if not j & 31 and time.perf_counter() > t_end:
                        break
            except BaseException as e:  # reported below, never swallowed
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(THREADS)]
        for t in threads:
            t.start()
        t_end_box[0] = time.perf_counter() + self.max_seconds
        barrier.wait(timeout=30)
        t0 = time.perf_counter()
        for t in threads:
            t.join(timeout=self.max_seconds + 30)
        el = time.perf_counter() - t0
        if errors:
            raise errors[0]
        if any(t.is_alive() for t in threads):
            raise RuntimeError("a benchmark thread did not finish in time")
        return {"ops": sum(counts) / el, "n": sum(counts)}


# --------------------------------------------------------------------------- clients and rounds


class Client:
    """One measured client: ``kv`` reads the loaded data set, ``up`` writes to a namespace
    of its own; ``loop`` runs an async client (None for a blocking one)."""

    def __init__(self, label: str, kv: Any, up: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.label = label
        self.kv = kv
        self.up = up
        self.loop = loop

    @property
    def kind(self) -> str:
        return "sync" if self.loop is None else "async"

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, run to completion on the client's loop if it is async."""
        out = fn(*args)
        return out if self.loop is None else self.loop.run_until_complete(out)

    def run(self, wl: Workload, kind: str, n: int, offset: int) -> dict[str, float]:
        """Workload ``a_<kind>`` (async) or ``b_<kind>`` (blocking) on this client."""
        method = getattr(wl, ("b_" if self.loop is None else "a_") + kind)
        return self.call(method, self.up if kind == "upsert" else self.kv, n, offset)

    @classmethod
    def of(cls, label: str, make: Callable[[str], Any], loop: asyncio.AbstractEventLoop | None = None) -> Client:
        """A client whose reader and writer are ``make(namespace)`` (awaited on ``loop``
        when ``make`` is a coroutine function, like glide's)."""
        kv, up = make(READ_NS), make(ns_of(label))
        if loop is not None and inspect.isawaitable(kv):
            kv, up = loop.run_until_complete(kv), loop.run_until_complete(up)
        return cls(label, kv, up, loop)

    def close(self) -> None:
        self.call(self.kv.close)
        self.call(self.up.close)


class Step(NamedTuple):
    """One workload of a section, in the order the rounds run them."""

    kind: str  # Workload method: a_<kind> / b_<kind>
    ops: str  # the profile key of its op count per round
    warm: int  # ops of the same-kind run right before each timed run
    first_warm: int  # ops of the warm-up once at start (0: one pass over the upsert batches)
    who: str  # "all", "async" or "sync" clients


SINGLE_PLAN = [
    Step("seq", "seq_ops", 64, 500, "all"),
    Step("conc", "conc_ops", CONCURRENCY * 4, 2000, "async"),
    Step("get_many", "batch_ops", 2, 10, "all"),
    Step("upsert", "upsert_ops", 2, 0, "all"),
    Step("filter", "filter_ops", 2, 10, "async"),
    Step("threads", "thread_ops", THREADS * 16, 400, "sync"),
]
CLUSTER_PLAN = [
    Step("conc", "conc_ops", CONCURRENCY * 4, 2000, "async"),
    Step("get_many", "batch_ops", 2, 4, "all"),
    Step("upsert", "upsert_ops", 2, 0, "all"),
    Step("filter", "filter_ops", 2, 10, "all"),
]


def ns_of(label: str) -> str:
    """The namespace a client's upserts go to: one per client, same key layout."""
    return "bench_upsert_" + "".join(c if c.isalnum() else "_" for c in label)


def interleave(a: list[str], b: list[str]) -> list[str]:
    return [x for pair in zip(a, b, strict=False) for x in pair]


def verify(clients: list[Client], data: Dataset, read_back: Callable[[list[str]], list]) -> None:
    """Every client returns the same decoded records and missing ids, and writes records
    that ``read_back`` (a neutral reader's MGET) decodes equally."""
    ids, half = data.ids, data.batch // 2
    sample = ids[: data.batch]
    filt = interleave(ids[:half], data.miss_ids[:half])
    want_missing = set(data.miss_ids[:half])
    check_batch = data.upsert_batches[0]
    want_written = {k: json.loads(json.dumps(v)) for k, v in check_batch.items()}
    for c in clients:
        kv, label = c.kv, c.label
        assert c.call(kv.get_by_id, ids[0]) == data.expected[ids[0]], label
        assert c.call(kv.get_by_id, "chunk-missing-x") is None, label
        assert c.call(kv.get_by_ids, sample) == [data.expected[k] for k in sample], label
        assert c.call(kv.filter_keys, filt) == want_missing, label
        c.call(c.up.upsert, check_batch)
        vals = read_back([f"{PREFIX}:{ns_of(label)}:{k}" for k in check_batch])
        got = {k: (None if v is None else json.loads(v)) for k, v in zip(check_batch, vals, strict=False)}
        assert got == want_written, f"{label}: upsert wrote different records"


def takes_part(step: Step, c: Client) -> bool:
    return step.who in ("all", c.kind)


def warm_up(clients: list[Client], wl: Workload, plan: list[Step]) -> None:
    """Once at start: connections, connection pools, caches; every client, every op kind."""
    for c in clients:
        for step in plan:
            if takes_part(step, c):
                c.run(wl, step.kind, step.first_warm or len(wl.upsert_batches), 0)


def rotate(xs: list[Client], r: int) -> list[Client]:
    r %= len(xs)
    return xs[r:] + xs[:r]


def measure(clients: list[Client], wl: Workload, plan: list[Step], prof: dict) -> dict[str, dict[str, list[dict]]]:
    """Per round, per workload, every client taking part (order rotated each round);
    returns workload -> label -> the rounds' results."""
    res: dict[str, dict[str, list[dict]]] = {step.kind: {} for step in plan}
    rounds = prof["rounds"]
    for r in range(rounds):
        off = r * 7919  # different ids each round, same for every client
        print(f"round {r + 1}/{rounds} ...", file=sys.stderr)
        for step in plan:
            at = r if step.kind == "upsert" else off  # upserts: which batch to start from
            for c in rotate([c for c in clients if takes_part(step, c)], r):
                c.run(wl, step.kind, step.warm, at)
                res[step.kind].setdefault(c.label, []).append(c.run(wl, step.kind, prof[step.ops], at))
    return res


def close_all(clients: list[Client]) -> None:
    for c in clients:
        c.close()
    for loop in dict.fromkeys(c.loop for c in clients if c.loop is not None):
        loop.close()


# --------------------------------------------------------------------------- requests per master


Window = list[tuple[int, int, int]]  # per master: (commands, socket reads, bytes in)


class MasterCounters:
    """What each master of a cluster counted, read over an admin connection of our own:
    commands (``INFO commandstats``), socket reads of client connections
    (``total_reads_processed``) and bytes received (``total_net_input_bytes``), since the
    last ``CONFIG RESETSTAT``."""

    OWN = ("cmdstat_config|resetstat", "cmdstat_info", "cmdstat_replconf")  # ours, and the replicas' acks

    def __init__(self, ports: list[int]) -> None:
        self.admins = [redis.Redis(host=HOST, port=p) for p in ports]
        self.baseline = [(0, 0, 0)] * len(ports)
        self.baseline = self.window(lambda: None)  # what the INFO that reads the counters costs

    def read(self) -> Window:
        out = []
        for admin in self.admins:
            info = admin.info("stats", "commandstats")
            cmds = sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_") and k not in self.OWN)
            out.append((cmds, info["total_reads_processed"], info["total_net_input_bytes"]))
        return out

    def window(self, fn: Callable[[], Any]) -> Window:
        """(commands, socket reads, bytes in) per master caused by ``fn()``."""
        for admin in self.admins:
            admin.config_resetstat()
        fn()
        out = []
        for now, base in zip(self.read(), self.baseline, strict=True):
            cmds, reads, bytes_in = (a - b for a, b in zip(now, base, strict=True))
            out.append((cmds, reads, bytes_in))
        return out

    def last_client_ids(self) -> list[int]:
        return [max(int(c["id"]) for c in admin.client_list()) for admin in self.admins]

    def connections_since(self, last_ids: list[int]) -> dict[str, list[int]]:
        """Client name -> how many of its connections (replicas' left out) are open on each
        master and were opened after ``last_ids``."""
        out: dict[str, list[int]] = {}
        for i, (admin, last) in enumerate(zip(self.admins, last_ids, strict=True)):
            for c in admin.client_list():
                if int(c["id"]) > last and "S" not in c["flags"]:
                    out.setdefault(c["name"], [0] * len(self.admins))[i] += 1
        return out

    def close(self) -> None:
        for admin in self.admins:
            admin.close()


def requests_per_master(
    counters: MasterCounters, clients: list[Client], wl: Workload, reps: int = 3
) -> list[tuple[str, str, Window]]:
    """(client, call, per master (commands, socket reads, bytes in)) of ONE batch of each
    kind; of ``reps`` tries, the one with the fewest reads (a replica's once-a-second ack
    or a health-check PING can land in a window, never fewer)."""
    calls: list[tuple[str, Callable[[Client], Any]]] = [
        ("get_by_ids", lambda c: c.call(c.kv.get_by_ids, wl.id_batches(1, 0)[0])),
        ("filter_keys", lambda c: c.call(c.kv.filter_keys, wl.filter_batches(1, 0)[0])),
        ("upsert", lambda c: c.call(c.up.upsert, wl.upsert_batches[0])),
    ]
    rows = []
    for c in clients:
        for name, call in calls:
            tries = [counters.window(functools.partial(call, c)) for _ in range(reps)]
            rows.append((c.label, name, min(tries, key=lambda w: sum(reads for _, reads, _ in w))))
    return rows


# --------------------------------------------------------------------------- reporting


def fmt_num(x: float) -> str:
    if x >= 100_000:
        return f"{x / 1000:,.0f}k"
    if x >= 10_000:
        return f"{x / 1000:,.1f}k"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:,.1f}"


def spread(vals: list[float]) -> str:
    med = statistics.median(vals)
    if med == 0 or len(vals) < 2:
        return "-"
    return f"±{(max(vals) - min(vals)) / 2 / med * 100:.0f}%"


def ratio_str(r: float) -> str:
    return f"{r:.2f}x"


# Which nano-graphrag-redis variant each competitor is compared with.
REFERENCE = {RPY_A: NANO_A, GLIDE: NANO_A, RPY_S: NANO_B}


def ref_of(label: str) -> str | None:
    base, _, loop = label.partition(" [")
    ref = REFERENCE.get(base)
    if ref is None:
        return None
    return ref + (" [" + loop if loop else "")


def render_table(
    title: str,
    desc: str,
    metrics: list[tuple[str, str, bool]],
    results: dict[str, list[dict]],
    order: list[str],
    ref: Callable[[str], str | None] = ref_of,
    subject: str = "nano-graphrag-redis",
) -> str:
    """metrics: (key, header, higher_is_better). results: label -> per-round dicts.
    ``ref(label)``: the row each row is compared with, which ``subject`` names."""
    rows = [name for name in order if name in results]
    if not rows:
        return ""
    med = {name: {k: statistics.median(r[k] for r in results[name]) for k, _, _ in metrics} for name in rows}
    head = ["client"] + [h for _, h, _ in metrics] + ["spread"]
    for _, h, _ in metrics:
        head.append(f"{subject} vs this ({h.split(' ')[0]})")
    lines = [f"### {title}", "", desc, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary: list[str] = []
    for name in rows:
        cells = [name] + [fmt_num(med[name][k]) for k, _, _ in metrics]
        cells.append(spread([r[metrics[0][0]] for r in results[name]]))
        ref_name = ref(name)
        for k, _h, higher in metrics:
            if ref_name is None or ref_name not in med:
                cells.append("—")
                continue
            a, b = med[ref_name][k], med[name][k]
            r = (a / b) if higher else (b / a)
            cells.append(ratio_str(r))
        if ref_name is not None and ref_name in med:
            k, _, higher = metrics[0]
            a, b = med[ref_name][k], med[name][k]
            summary.append(f"{ref_name}: **{ratio_str((a / b) if higher else (b / a))} {name}**")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if summary:
        lines.append(f"Ratio (first metric, >1 = {subject} faster): " + "; ".join(summary))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def versions(binary: str, use_uvloop: bool) -> list[tuple[str, str]]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    srv = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    out = [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("python", sys.version.split()[0] + f" ({platform.python_implementation()})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("redis-server", f"{srv} ({binary})"),
        ("nano-graphrag-redis", dist("nano-graphrag-redis")),
        ("redis-py", f"{dist('redis')} (hiredis {dist('hiredis')})"),
        ("valkey-glide", dist("valkey-glide")),
    ]
    if use_uvloop:
        out.append(("uvloop", dist("uvloop")))
    return out


LATENCY = [("p50", "p50 µs", False), ("p99", "p99 µs", False)]
OPS = [("ops", "ops/s", True)]
BATCHES = [("batches", "batches/s", True), ("records", "records/s", True)]
RECORDS = [("records", "records/s", True)]
IDS = [("batches", "batches/s", True), ("records", "ids/s", True)]

STEADY = "'spread' = half the min–max range of the rounds, relative to the median, of the first metric."


def nano(url: str) -> Callable[[str], RedisKVStorage]:
    return lambda ns: RedisKVStorage(ns, redis_url=url)


def nano_blocking(url: str) -> Callable[[str], Any]:
    return lambda ns: RedisKVStorage(ns, redis_url=url).blocking()


def run_single(
    prof: dict, loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]], binary: str
) -> tuple[list[str], dict]:
    """The single-node section against every competitor: its markdown and raw rounds."""
    data = Dataset(prof["records"], BATCH)
    with RedisServer(binary=binary) as server:
        url = server.url
        print(f"redis-server pid {server.pid} on {url}", file=sys.stderr)
        clients: list[Client] = []
        for suffix, factory in loops:
            loop = factory()
            clients.append(Client.of(NANO_A + suffix, nano(url), loop))
            if not suffix:
                clients.append(Client.of(NANO_B, nano_blocking(url)))
            clients.append(Client.of(RPY_A + suffix, lambda ns: RedisPyAsyncKV(url, ns), loop))
            if not suffix:  # glide: see the uvloop note
                clients.append(Client.of(RPY_S, lambda ns: RedisPySyncKV(url, ns)))
                clients.append(Client.of(GLIDE, lambda ns: GlideKV.create(server.port, ns), loop))

        data.load(next(c for c in clients if c.label == NANO_B).kv)
        raw = redis.Redis.from_url(url)
        stored = [raw.strlen(f"{PREFIX}:{READ_NS}:{k}") for k in data.ids[:200]]
        assert raw.dbsize() == len(data.ids), raw.dbsize()

        verify(clients, data, raw.mget)
        first_written = next(iter(data.upsert_batches[0]))
        up_sizes = {c.label: raw.strlen(f"{PREFIX}:{ns_of(c.label)}:{first_written}") for c in clients}
        print("verified: all clients return equal records, ids and writes", file=sys.stderr)

        wl = data.workload(prof["max_seconds"])
        warm_up(clients, wl, SINGLE_PLAN)
        res = measure(clients, wl, SINGLE_PLAN, prof)
        close_all(clients)
        raw.close()

    md = [
        "## Single node",
        "",
        f"- profile: {prof['rounds']} rounds, median reported; "
        f"per round: {prof['seq_ops']} sequential gets, {prof['conc_ops']} concurrent gets, "
        f"{prof['batch_ops']} get_by_ids / {prof['upsert_ops']} upsert / "
        f"{prof['filter_ops']} filter_keys batches of {BATCH}, "
        f"{prof['thread_ops']} threaded gets; each loop capped at {prof['max_seconds']:.0f} s",
        f"- data: {len(data.ids)} text_chunks records, ~{data.avg_bytes:,.0f} B of UTF-8 JSON each "
        f"(stored by nano-graphrag-redis: {statistics.mean(stored):,.0f} B; "
        f"json.dumps default separators add a few bytes: "
        f"{up_sizes[RPY_A]} B vs {up_sizes[NANO_A]} B for the same upsert record)",
        "- verified once before timing: every client returned equal decoded records, equal "
        "missing-id sets and wrote records that decode equally",
        "- 'nano-graphrag-redis vs this': >1 means nano-graphrag-redis is faster "
        "(throughput ratio, or latency of this client / latency of nano-graphrag-redis). "
        "Async competitors are compared with the async API, redis-py (sync) with the "
        f"blocking API. {STEADY}",
        "",
    ]
    sections = [
        ("1. Sequential get_by_id latency (µs, lower is better)",
         "One get_by_id at a time, awaited (or called) before the next.", LATENCY, "seq"),
        (f"2. {CONCURRENCY} concurrent get_by_id (ops/s, higher is better)",
         f"{CONCURRENCY} asyncio tasks each awaiting get_by_id in a loop, run by asyncio.gather.", OPS, "conc"),
        (f"3. get_by_ids of {BATCH} ids (higher is better)",
         f"One call fetching {BATCH} existing records (one MGET), sequentially.", BATCHES, "get_many"),
        (f"4. upsert of {BATCH} records (records/s, higher is better)",
         f"One call writing {BATCH} records (~180 KB), overwriting existing keys, sequentially.", RECORDS, "upsert"),
        (f"5. filter_keys of {BATCH} ids (higher is better)",
         f"One call checking {BATCH} ids (half stored, half missing), sequentially.", IDS, "filter"),
        (f"6. {THREADS} threads doing single gets (ops/s, higher is better)",
         f"{THREADS} OS threads, one shared blocking client, each calling get_by_id in a loop.", OPS, "threads"),
    ]  # fmt: skip
    order = [c.label for c in clients]
    md += [render_table(title, desc, metrics, res[key], order) for title, desc, metrics, key in sections]
    return md, res


# Which row each cluster row is compared with: the peers with this package on the cluster,
# and this package on the single node with itself on the cluster.
CLUSTER_REFERENCE = {C_RPY_A: C_NANO_A, C_RPY_S: C_NANO_B, S_NANO_A: C_NANO_A, S_NANO_B: C_NANO_B}


def run_cluster(prof: dict, cprof: dict, binary: str) -> tuple[list[str], dict]:
    """The cluster section: this package and redis-py's cluster clients on one Redis
    Cluster, and this package on one node, all in the same run: markdown and raw data."""
    t_start = time.perf_counter()
    prof = {**prof, **cprof}  # the cluster's op counts, the rounds and time bound of prof
    data = Dataset(prof["records"], CLUSTER_BATCH, CLUSTER_TEXT_BYTES)
    loop = asyncio.new_event_loop()
    with RedisCluster(binary=binary) as cluster, RedisServer(binary=binary) as single:
        url, single_url = cluster.url, single.url
        ports = [m.port for m in cluster.masters()]
        peer_url = f"redis://{HOST}:{ports[0]}"  # redis-py finds the other nodes from one
        print(f"Redis Cluster {cluster!r} ({url}); single node on {single_url}", file=sys.stderr)
        counters = MasterCounters(ports)
        before = counters.last_client_ids()

        ours = [Client.of(C_NANO_A, nano(url), loop), Client.of(C_NANO_B, nano_blocking(url))]
        data.load(ours[1].kv)
        assert sum(admin.dbsize() for admin in counters.admins) == len(data.ids)
        raw = redis.cluster.RedisCluster.from_url(peer_url, client_name=conn_name("reader"))
        verify(ours, data, raw.mget_nonatomic)
        peers = [
            Client.of(C_RPY_A, lambda ns: RedisPyAsyncClusterKV(peer_url, ns), loop),
            Client.of(C_RPY_S, lambda ns: RedisPyClusterKV(peer_url, ns)),
        ]
        verify(peers, data, raw.mget_nonatomic)
        one_node = [Client.of(S_NANO_A, nano(single_url), loop), Client.of(S_NANO_B, nano_blocking(single_url))]
        data.load(one_node[1].kv)
        raw_single = redis.Redis.from_url(single_url)
        verify(one_node, data, raw_single.mget)
        print("verified: all clients return equal records, ids and writes", file=sys.stderr)

        wl = data.workload(prof["max_seconds"])
        trips = requests_per_master(counters, ours + peers, wl)
        clients = ours + peers + one_node
        warm_up(clients, wl, CLUSTER_PLAN)
        res = measure(clients, wl, CLUSTER_PLAN, prof)
        connections = counters.connections_since(before)
        close_all(clients)
        for closable in (raw, raw_single, counters):
            closable.close()

    size = data.batch * data.avg_bytes / 1e6
    md = [
        f"## Redis Cluster ({len(ports)} masters + {len(ports)} replicas) vs one node",
        "",
        f"- profile: {prof['rounds']} rounds, median reported; per round: {prof['conc_ops']} concurrent gets, "
        f"{prof['batch_ops']} get_by_ids / {prof['upsert_ops']} upsert / {prof['filter_ops']} filter_keys "
        f"batches of {data.batch}; each loop capped at {prof['max_seconds']:.0f} s; section runtime "
        f"{time.perf_counter() - t_start:.1f} s (cluster start included)",
        f"- data: {len(data.ids)} text_chunks records, ~{data.avg_bytes:,.0f} B of UTF-8 JSON each "
        f"(~{size:.1f} MB per get_by_ids / upsert batch), loaded on the cluster and on the single node",
        "- peers: redis-py's `redis.asyncio.cluster.RedisCluster` and `redis.cluster.RedisCluster` "
        "(`mget_nonatomic`, a non-transactional pipeline of EXISTS, `mset_nonatomic`; see bench/README.md)",
        "- verified once before timing: every client returned equal decoded records, equal "
        "missing-id sets and wrote records that decode equally",
        "- 'nano-graphrag-redis [cluster] vs this': >1 means nano-graphrag-redis on the cluster is faster "
        "than that row: for the redis-py rows, the ratio against the same API (async / blocking) "
        "on the same cluster; for the [single node] rows, the cluster's throughput over the single "
        f"node's (<1: the cluster is slower than one node, on one machine). {STEADY}",
        "",
        render_requests(trips, connections, data.batch),
    ]
    sections = [
        (f"C1. {CONCURRENCY} concurrent get_by_id (ops/s, higher is better)",
         f"{CONCURRENCY} asyncio tasks each awaiting get_by_id in a loop, run by asyncio.gather.", OPS, "conc"),
        (f"C2. get_by_ids of {data.batch} ids (higher is better)",
         f"One call fetching {data.batch} existing records (~{size:.1f} MB), sequentially.", BATCHES, "get_many"),
        (f"C3. upsert of {data.batch} records (records/s, higher is better)",
         f"One call writing {data.batch} records (~{size:.1f} MB), overwriting existing keys, sequentially.",
         RECORDS, "upsert"),
        (f"C4. filter_keys of {data.batch} ids (higher is better)",
         f"One call checking {data.batch} ids (half stored, half missing), sequentially.", IDS, "filter"),
    ]  # fmt: skip
    order = [c.label for c in clients]
    ref = CLUSTER_REFERENCE.get
    subject = "nano-graphrag-redis [cluster]"
    md += [render_table(t, d, m, res[k], order, ref, subject) for t, d, m, k in sections]
    raw_out = {
        "profile": prof,
        "rounds": res,
        "connections_per_master": connections,
        "requests_per_master": [{"client": c, "call": n, "commands_reads_bytes": w} for c, n, w in trips],
    }
    return md, raw_out


def render_requests(trips: list[tuple[str, str, Window]], connections: dict[str, list[int]], batch: int) -> str:
    """The per-master counts of one batch and the connections each client holds, as markdown."""

    def per_master(values: Iterable[int]) -> str:
        return " / ".join(str(v) for v in values)

    lines = [
        f"### Requests per master for ONE batch of {batch}",
        "",
        "Counted by each master (CONFIG RESETSTAT, one call, then INFO): commands executed, socket reads "
        "of client connections (`total_reads_processed`; one read takes what the query buffer has room "
        "for, ~16-20 KB) and KB received; the counter-reading INFO is subtracted, replicas' acks are no "
        "commands here. Of 3 tries, the one with the fewest reads (a replica's once-a-second ack can add one).",
        "",
        "| client | call | commands per master | socket reads per master | KB received per master |",
        "|---|---|---|---|---|",
    ]
    for label, call, window in trips:
        cmds = per_master(c for c, _, _ in window)
        reads = per_master(r for _, r, _ in window)
        kbytes = " / ".join(f"{b / 1024:,.0f}" for _, _, b in window)
        lines.append(f"| {label} | {call} | {cmds} | {reads} | {kbytes} |")
    names = {"": "nano-graphrag-redis (all its storages of this section: async, blocking, every namespace)"}
    names.update({conn_name(label): label for label in (C_RPY_A, C_RPY_S)})
    names[conn_name("reader")] = "redis-py RedisCluster that read the writes back for the check"
    lines += ["", "Connections open on each master at the end of the rounds, opened by this section:", ""]
    lines += ["| client | connections per master |", "|---|---|"]
    lines += [f"| {names.get(name, name)} | {per_master(counts)} |" for name, counts in sorted(connections.items())]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer ops, 3 rounds")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement (median)")
    ap.add_argument("--out", type=str, default=None, help="also write the markdown here")
    ap.add_argument("--uvloop", action="store_true", help="also run the async clients on uvloop (if installed)")
    ap.add_argument(
        "--topology",
        choices=("single", "cluster", "both"),
        default="both",
        help="single node vs every competitor, Redis Cluster vs redis-py's cluster clients, or both (default)",
    )
    ap.add_argument(
        "--redis-server",
        type=str,
        default=None,
        metavar="PATH",
        help="redis-server binary to run (default: as the tests and demo choose)",
    )
    ap.add_argument("--json", type=str, default=None, help="also write every round's raw numbers (JSON) here")
    ap.add_argument("--max-seconds", type=float, default=None, help="time bound of one measurement loop")
    args = ap.parse_args()

    profile = "quick" if args.quick else "full"
    prof = dict(PROFILES[profile])
    if args.rounds is not None:
        if not 1 <= args.rounds <= 50:
            ap.error("--rounds must be between 1 and 50")
        prof["rounds"] = args.rounds
    if args.max_seconds is not None:
        prof["max_seconds"] = max(0.5, min(args.max_seconds, 120.0))
    binary = args.redis_server or find_redis_server()
    if binary is None:
        ap.error("redis-server not found: install it or pass --redis-server")

    loops: list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]] = [("", asyncio.new_event_loop)]
    notes: list[str] = []
    use_uvloop = False
    if args.uvloop:
        try:
            import uvloop  # type: ignore[import-not-found]

            loops.append((" [uvloop]", uvloop.new_event_loop))
            use_uvloop = True
            notes.append(
                "valkey-glide is left out of the uvloop rows: its client never answered on a uvloop "
                "loop driven by run_until_complete (glide 2.6), so it is measured on asyncio only. "
                "The cluster section runs on asyncio only."
            )
        except ImportError:
            msg = "--uvloop given but uvloop is not installed: uvloop rows skipped."
            print(msg, file=sys.stderr)
            notes.append(msg)

    t_start = time.perf_counter()
    vers = versions(binary, use_uvloop)
    body: list[str] = []
    raw: dict[str, Any] = {"versions": dict(vers), "profile": prof}
    if args.topology in ("single", "both"):
        md, raw["rounds"] = run_single(prof, loops, binary)
        body += md
    if args.topology in ("cluster", "both"):
        md, raw["cluster"] = run_cluster(prof, CLUSTER_PROFILES[profile], binary)
        body += md
    elapsed = raw["elapsed_s"] = time.perf_counter() - t_start

    # ---- report
    head: list[str] = ["# nano-graphrag-redis KV benchmark", ""]
    head += [f"- {k}: {v}" for k, v in vers]
    head += [f"- profile: {profile}, topology: {args.topology}", f"- total runtime: {elapsed:.1f} s"]
    head += [f"- note: {n}" for n in notes]
    text = "\n".join(head + [""] + body)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
