"""How a measurement runs: one workload (``Workload``) by one client (``Client``), every
client of a section in rotated order each round (``measure``), after a check that every
client reads and writes the same records (``verify``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from competitors import PREFIX
from dataset import Dataset

from nano_graphrag_redis import RedisKVStorage

CONCURRENCY = 64
THREADS = 4

NANO_A = "nano-graphrag-redis (async)"
NANO_B = "nano-graphrag-redis (blocking)"
RPY_A = "redis-py asyncio"
RPY_S = "redis-py (sync)"
GLIDE = "valkey-glide"
LIMIT = "redis-benchmark (limit)"
UVLOOP = " [uvloop]"


def _pct(sorted_vals: list[int], q: float) -> float:
    idx = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[idx]


def latency_result(lat_ns: list[int]) -> dict[str, float]:
    lat_ns.sort()
    return {"p50": _pct(lat_ns, 0.50) / 1000, "p99": _pct(lat_ns, 0.99) / 1000, "n": len(lat_ns)}


class Workload:
    """One timed run of one operation by one client; returns a dict of metrics. Every
    loop is bounded by its op count and by ``max_seconds``."""

    def __init__(self, data: Dataset, max_seconds: float) -> None:
        self.ids = data.ids
        self.miss_ids = data.miss_ids
        self.upsert_batches = data.upsert_batches
        self.fields = data.fields
        self.max_seconds = max_seconds
        self.batch = data.batch

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
            out.append(interleave(have, miss))
        return out

    def upsert_run(self, n: int, offset: int) -> list[dict]:
        ub = self.upsert_batches
        return [ub[(offset + i) % len(ub)] for i in range(n)]

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
        return latency_result(lat)

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

    async def a_get_fields(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        fields = set(self.fields or ())
        return await self._a_batches(lambda b: kv.get_by_ids(b, fields), self.id_batches(n, offset))

    async def a_upsert(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return await self._a_batches(kv.upsert, self.upsert_run(n, offset))

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
        return latency_result(lat)

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

    def b_get_fields(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        fields = set(self.fields or ())
        return self._b_batches(lambda b: kv.get_by_ids(b, fields), self.id_batches(n, offset))

    def b_upsert(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return self._b_batches(kv.upsert, self.upsert_run(n, offset))

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


class Step(NamedTuple):
    """One workload of a section, in the order the rounds run them."""

    kind: str  # Workload method: a_<kind> / b_<kind>
    ops: str  # the profile key of its op count per round
    warm: int  # ops of the same-kind run right before each timed run
    first_warm: int  # ops of the warm-up once at start (0: one pass over the upsert batches)
    who: str  # "all", "async" or "sync" clients, or "limit" (redis-benchmark only)


class Measured(Protocol):
    """What ``measure`` needs of a row: a ``Client``, or redis-benchmark (limits.py)."""

    label: str

    def does(self, step: Step) -> bool: ...
    def run(self, wl: Workload, kind: str, n: int, offset: int) -> dict[str, float]: ...
    def close(self) -> None: ...


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

    def does(self, step: Step) -> bool:
        return step.who in ("all", self.kind)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, run to completion on the client's loop if it is async."""
        out = fn(*args)
        return out if self.loop is None else self.loop.run_until_complete(out)

    def run(self, wl: Workload, kind: str, n: int, offset: int) -> dict[str, float]:
        """Workload ``a_<kind>`` (async) or ``b_<kind>`` (blocking) on this client."""
        method = getattr(wl, ("b_" if self.loop is None else "a_") + kind)
        return self.call(method, self.up if kind == "upsert" else self.kv, n, offset)

    @classmethod
    def of(
        cls,
        label: str,
        make: Callable[[str], Any],
        data: Dataset,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Client:
        """A client reading ``data``'s namespace and writing its own, both ``make(namespace)``
        (awaited on ``loop`` when ``make`` is a coroutine function, like glide's)."""
        kv, up = make(data.read_ns), make(ns_of(label, data.tag))
        if loop is not None and inspect.isawaitable(kv):
            kv, up = loop.run_until_complete(kv), loop.run_until_complete(up)
        return cls(label, kv, up, loop)

    def close(self) -> None:
        self.call(self.kv.close)
        self.call(self.up.close)


def nano(url: str) -> Callable[[str], RedisKVStorage]:
    """This package's storage of a namespace (the factory ``Client.of`` takes)."""
    return lambda ns: RedisKVStorage(ns, redis_url=url)


def nano_blocking(url: str) -> Callable[[str], Any]:
    """Its blocking API."""
    return lambda ns: RedisKVStorage(ns, redis_url=url).blocking()


def ns_of(label: str, tag: str = "") -> str:
    """The namespace a client's upserts go to: one per client (and data set), same layout."""
    return "bench_upsert_" + "".join(c if c.isalnum() else "_" for c in label) + tag


def interleave(a: list[str], b: list[str]) -> list[str]:
    return [x for pair in zip(a, b, strict=False) for x in pair]


def verify(clients: list[Client], data: Dataset, read_back: Callable[[list[str]], list]) -> None:
    """Every client returns the same decoded records (whole and with ``data.fields``) and
    missing ids, and writes records that ``read_back`` (a neutral reader's MGET) decodes
    equally: no client is measured doing less work."""
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
        if data.fields is not None:
            got = c.call(kv.get_by_ids, sample + ["chunk-missing-x"], set(data.fields))
            assert got == [data.projected(k) for k in sample] + [None], f"{label}: fields"
        assert c.call(kv.filter_keys, filt) == want_missing, label
        c.call(c.up.upsert, check_batch)
        vals = read_back([f"{PREFIX}:{ns_of(label, data.tag)}:{k}" for k in check_batch])
        got = {k: (None if v is None else json.loads(v)) for k, v in zip(check_batch, vals, strict=False)}
        assert got == want_written, f"{label}: upsert wrote different records"


def warm_up(clients: list[Measured], wl: Workload, plan: list[Step]) -> None:
    """Once at start: connections, connection pools, caches; every client, every op kind."""
    for c in clients:
        for step in plan:
            if c.does(step):
                c.run(wl, step.kind, step.first_warm or len(wl.upsert_batches), 0)


def rotate(xs: list, r: int) -> list:
    r %= len(xs)
    return xs[r:] + xs[:r]


Rounds = dict[str, dict[str, list[dict]]]  # workload -> label -> one dict per round


def measure(clients: list[Measured], wl: Workload, plan: list[Step], prof: dict, what: str = "") -> Rounds:
    """Per round, per workload, every client taking part (order rotated each round);
    returns workload -> label -> the rounds' results."""
    res: Rounds = {step.kind: {} for step in plan}
    rounds = prof["rounds"]
    for r in range(rounds):
        off = r * 7919  # different ids each round, same for every client
        print(f"{what} round {r + 1}/{rounds} ...", file=sys.stderr)
        for step in plan:
            at = r if step.kind == "upsert" else off  # upserts: which batch to start from
            for c in rotate([c for c in clients if c.does(step)], r):
                c.run(wl, step.kind, step.warm, at)
                res[step.kind].setdefault(c.label, []).append(c.run(wl, step.kind, prof[step.ops], at))
    return res


def close_all(clients: list[Client]) -> None:
    for c in clients:
        c.close()
    for loop in dict.fromkeys(c.loop for c in clients if c.loop is not None):
        loop.close()
