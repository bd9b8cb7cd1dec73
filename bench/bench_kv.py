#!/usr/bin/env python3
"""Side-by-side benchmark of nano-graphrag-redis against hand-written Redis KV storages.

    python bench/bench_kv.py [--quick] [--rounds N] [--out FILE] [--uvloop]

Starts its own throw-away ``redis-server`` on a free loopback port (never 6379), loads
realistic ``text_chunks`` records (~1.8 KB of UTF-8 JSON each), and then, in the same
process, against the same server, measures the same work done by:

* nano-graphrag-redis ``RedisKVStorage`` (async) and its blocking API (``.blocking()``);
* redis-py asyncio (hiredis parser) written the way a user's own ``BaseKVStorage`` would be:
  GET + json.loads, MGET + json.loads, a pipeline of EXISTS, MSET of
  ``json.dumps(ensure_ascii=False)``;
* valkey-glide 2.x async ``GlideClient`` doing the same;
* redis-py sync (the natural competitor of the blocking API).

Every measurement is repeated for several rounds (client order rotated each round) and the
MEDIAN is reported; see bench/README.md. Speed is never asserted anywhere: this script only
reports.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

try:  # the throw-away redis-server helper shared by the tests and the demo
    from nano_graphrag_redis.local_server import RedisServer
except ImportError:  # older layout: the helper lived in the repo's tests_py/
    sys.path.insert(0, str(REPO / "tests_py"))
    from redis_server import RedisServer  # type: ignore[no-redef]

import redis  # noqa: E402
import redis.asyncio  # noqa: E402
from glide import (  # noqa: E402
    Batch,
    GlideClient,
    GlideClientConfiguration,
    NodeAddress,
)

from nano_graphrag_redis import RedisKVStorage  # noqa: E402

HOST = "127.0.0.1"  # loopback only
PREFIX = "nano_graphrag"
READ_NS = "text_chunks"
BATCH = 100  # ids per get_by_ids / upsert / filter_keys call
CONCURRENCY = 64
THREADS = 4

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

NANO_A = "nano-graphrag-redis (async)"
NANO_B = "nano-graphrag-redis (blocking)"
RPY_A = "redis-py asyncio"
RPY_S = "redis-py (sync)"
GLIDE = "valkey-glide"


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


def make_records(n: int, seed: int) -> dict[str, dict[str, Any]]:
    """nano-graphrag ``text_chunks`` records: tokens, content, chunk_order_index, full_doc_id."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        content = make_text(rng)
        doc = "doc-" + hashlib.md5(str(len(out) // 8).encode()).hexdigest()
        out[chunk_id(content)] = {
            "tokens": rng.randint(900, 1200),
            "content": content,
            "chunk_order_index": len(out) % 8,
            "full_doc_id": doc,
        }
    return out


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

    def __init__(self, ids: list[str], miss_ids: list[str], upsert_batches: list[dict], max_seconds: float) -> None:
        self.ids = ids
        self.miss_ids = miss_ids
        self.upsert_batches = upsert_batches
        self.max_seconds = max_seconds

    def _id_batches(self, n: int, offset: int) -> list[list[str]]:
        ids = self.ids
        return [[ids[(offset + b * BATCH + j) % len(ids)] for j in range(BATCH)] for b in range(n)]

    def _filter_batches(self, n: int, offset: int) -> list[list[str]]:
        out = []
        for b in range(n):
            have = [self.ids[(offset + b * 50 + j) % len(self.ids)] for j in range(50)]
            miss = [self.miss_ids[(b * 50 + j) % len(self.miss_ids)] for j in range(50)]
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
        return {"batches": done / el, "records": done * BATCH / el, "n": done}

    async def a_get_many(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return await self._a_batches(kv.get_by_ids, self._id_batches(n, offset))

    async def a_upsert(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        ub = self.upsert_batches
        batches = [ub[(offset + i) % len(ub)] for i in range(n)]
        return await self._a_batches(kv.upsert, batches)

    async def a_filter(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return await self._a_batches(kv.filter_keys, self._filter_batches(n, offset))

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
        return {"batches": done / el, "records": done * BATCH / el, "n": done}

    def b_get_many(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        return self._b_batches(kv.get_by_ids, self._id_batches(n, offset))

    def b_upsert(self, kv: Any, n: int, offset: int) -> dict[str, float]:
        ub = self.upsert_batches
        return self._b_batches(kv.upsert, [ub[(offset + i) % len(ub)] for i in range(n)])

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
    title: str, desc: str, metrics: list[tuple[str, str, bool]], results: dict[str, list[dict]], order: list[str]
) -> str:
    """metrics: (key, header, higher_is_better). results: label -> per-round dicts."""
    rows = [name for name in order if name in results]
    if not rows:
        return ""
    med = {name: {k: statistics.median(r[k] for r in results[name]) for k, _, _ in metrics} for name in rows}
    head = ["client"] + [h for _, h, _ in metrics] + ["spread"]
    for _, h, _ in metrics:
        head.append(f"nano-graphrag-redis vs this ({h.split(' ')[0]})")
    lines = [f"### {title}", "", desc, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary: list[str] = []
    for name in rows:
        cells = [name] + [fmt_num(med[name][k]) for k, _, _ in metrics]
        cells.append(spread([r[metrics[0][0]] for r in results[name]]))
        ref = ref_of(name)
        for k, _h, higher in metrics:
            if ref is None or ref not in med:
                cells.append("—")
                continue
            a, b = med[ref][k], med[name][k]
            r = (a / b) if higher else (b / a)
            cells.append(ratio_str(r))
        if ref is not None and ref in med:
            k, _, higher = metrics[0]
            a, b = med[ref][k], med[name][k]
            summary.append(f"{ref}: **{ratio_str((a / b) if higher else (b / a))} {name}**")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if summary:
        lines.append("Ratio (first metric, >1 = nano-graphrag-redis faster): " + "; ".join(summary))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def versions(server: RedisServer, use_uvloop: bool) -> list[tuple[str, str]]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    srv = subprocess.run([server.binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    out = [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("python", sys.version.split()[0] + f" ({platform.python_implementation()})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("redis-server", f"{srv} ({server.binary})"),
        ("nano-graphrag-redis", dist("nano-graphrag-redis")),
        ("redis-py", f"{dist('redis')} (hiredis {dist('hiredis')})"),
        ("valkey-glide", dist("valkey-glide")),
    ]
    if use_uvloop:
        out.append(("uvloop", dist("uvloop")))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer ops, 3 rounds")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement (median)")
    ap.add_argument("--out", type=str, default=None, help="also write the markdown here")
    ap.add_argument("--uvloop", action="store_true", help="also run the async clients on uvloop (if installed)")
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

    prof = dict(PROFILES["quick" if args.quick else "full"])
    if args.rounds is not None:
        if not 1 <= args.rounds <= 50:
            ap.error("--rounds must be between 1 and 50")
        prof["rounds"] = args.rounds
    if args.max_seconds is not None:
        prof["max_seconds"] = max(0.5, min(args.max_seconds, 120.0))

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
                "loop driven by run_until_complete (glide 2.6), so it is measured on asyncio only."
            )
        except ImportError:
            msg = "--uvloop given but uvloop is not installed: uvloop rows skipped."
            print(msg, file=sys.stderr)
            notes.append(msg)

    t_start = time.perf_counter()
    rounds = prof["rounds"]
    records = make_records(prof["records"], seed=1)
    ids = list(records)
    miss_ids = [f"chunk-missing-{i:05d}" for i in range(2000)]
    upsert_src = make_records(1000, seed=2)
    up_ids = list(upsert_src)
    upsert_batches = [{k: upsert_src[k] for k in up_ids[i : i + BATCH]} for i in range(0, len(up_ids), BATCH)]
    expected = {k: json.loads(json.dumps(v)) for k, v in records.items()}
    avg_bytes = statistics.mean(len(json.dumps(v, ensure_ascii=False).encode()) for v in records.values())

    server_kw = {"binary": args.redis_server} if args.redis_server else {}
    with RedisServer(**server_kw) as server:
        url = server.url
        print(f"redis-server pid {server.pid} on {url}", file=sys.stderr)
        vers = versions(server, use_uvloop)

        # ---- clients
        sync_clients: dict[str, Any] = {}
        nano_loader = RedisKVStorage(READ_NS, redis_url=url).blocking()
        sync_clients[NANO_B] = nano_loader
        sync_clients[RPY_S] = RedisPySyncKV(url, READ_NS)

        # upsert targets: one namespace per client, same key layout
        def ns_of(label: str) -> str:
            return "bench_upsert_" + "".join(c if c.isalnum() else "_" for c in label)

        sync_up = {
            NANO_B: RedisKVStorage(ns_of(NANO_B), redis_url=url).blocking(),
            RPY_S: RedisPySyncKV(url, ns_of(RPY_S)),
        }

        # load the read data set with the library itself (compact UTF-8 JSON)
        for i in range(0, len(ids), 500):
            nano_loader.upsert({k: records[k] for k in ids[i : i + 500]})
        raw = redis.Redis.from_url(url)
        stored = [raw.strlen(f"{PREFIX}:{READ_NS}:{k}") for k in ids[:200]]
        assert raw.dbsize() == len(ids), raw.dbsize()

        loop_objs: list[tuple[str, asyncio.AbstractEventLoop, dict, dict]] = []
        for suffix, factory in loops:
            loop = factory()

            async def make(suffix: str = suffix) -> tuple[dict, dict]:
                rd = {
                    NANO_A + suffix: RedisKVStorage(READ_NS, redis_url=url),
                    RPY_A + suffix: RedisPyAsyncKV(url, READ_NS),
                }
                up = {
                    NANO_A + suffix: RedisKVStorage(ns_of(NANO_A + suffix), redis_url=url),
                    RPY_A + suffix: RedisPyAsyncKV(url, ns_of(RPY_A + suffix)),
                }
                if not suffix:  # see the uvloop note
                    rd[GLIDE] = await GlideKV.create(server.port, READ_NS)
                    up[GLIDE] = await GlideKV.create(server.port, ns_of(GLIDE))
                return rd, up

            rd, up = loop.run_until_complete(make())
            loop_objs.append((suffix, loop, rd, up))

        # ---- verify once: every client returns the same decoded records / ids / writes
        sample = ids[:BATCH]
        filt = [x for pair in zip(ids[:50], miss_ids[:50], strict=False) for x in pair]
        want_missing = set(miss_ids[:50])
        check_batch = upsert_batches[0]
        want_written = {k: json.loads(json.dumps(v)) for k, v in check_batch.items()}

        def check_written(label: str) -> None:
            ns = ns_of(label)
            vals = raw.mget([f"{PREFIX}:{ns}:{k}" for k in check_batch])
            got = {k: (None if v is None else json.loads(v)) for k, v in zip(check_batch, vals, strict=False)}
            assert got == want_written, f"{label}: upsert wrote different records"

        for label, kv in sync_clients.items():
            assert kv.get_by_id(ids[0]) == expected[ids[0]], label
            assert kv.get_by_id("chunk-missing-x") is None, label
            assert kv.get_by_ids(sample) == [expected[k] for k in sample], label
            assert kv.filter_keys(filt) == want_missing, label
            sync_up[label].upsert(check_batch)
            check_written(label)
        for _suffix, loop, rd, up in loop_objs:
            for label, kv in rd.items():

                async def verify(kv: Any = kv, label: str = label, up: dict = up) -> None:
                    assert await kv.get_by_id(ids[0]) == expected[ids[0]], label
                    assert await kv.get_by_id("chunk-missing-x") is None, label
                    got = await kv.get_by_ids(sample)
                    assert got == [expected[k] for k in sample], label
                    assert await kv.filter_keys(filt) == want_missing, label
                    await up[label].upsert(check_batch)

                loop.run_until_complete(verify())
                check_written(label)
        up_sizes = {}
        for label in list(sync_clients) + [name for _, _, rd, _ in loop_objs for name in rd]:
            k = next(iter(check_batch))
            up_sizes[label] = raw.strlen(f"{PREFIX}:{ns_of(label)}:{k}")
        print("verified: all clients return equal records, ids and writes", file=sys.stderr)

        wl = Workload(ids, miss_ids, upsert_batches, prof["max_seconds"])

        # ---- warm-up (connections, pools, JIT-less caches): every client, every op kind
        for label, kv in sync_clients.items():
            wl.b_seq(kv, 500, 0)
            wl.b_get_many(kv, 10, 0)
            wl.b_upsert(sync_up[label], len(upsert_batches), 0)
            wl.b_threads(kv, 400, 0)
        for _suffix, loop, rd, up in loop_objs:
            for label, kv in rd.items():
                loop.run_until_complete(wl.a_seq(kv, 500, 0))
                loop.run_until_complete(wl.a_conc(kv, 2000, 0))
                loop.run_until_complete(wl.a_get_many(kv, 10, 0))
                loop.run_until_complete(wl.a_filter(kv, 10, 0))
                loop.run_until_complete(wl.a_upsert(up[label], len(upsert_batches), 0))

        # ---- measure: per round, per workload, every client (rotated order)
        res: dict[str, dict[str, list[dict]]] = {w: {} for w in ("seq", "conc", "many", "upsert", "filter", "threads")}
        async_labels = [name for _, _, rd, _ in loop_objs for name in rd]
        all_labels = [NANO_A, NANO_B, RPY_A, RPY_S, GLIDE]
        for sfx, _, _, _ in loop_objs[1:]:
            all_labels += [NANO_A + sfx, RPY_A + sfx]

        def find_async(label: str) -> tuple[asyncio.AbstractEventLoop, Any, Any]:
            for _s, loop, rd, up in loop_objs:
                if label in rd:
                    return loop, rd[label], up[label]
            raise KeyError(label)

        def rotate(xs: list[str], r: int) -> list[str]:
            r %= len(xs)
            return xs[r:] + xs[:r]

        warm = 64  # short same-kind warm-up right before each timed run
        for r in range(rounds):
            off = r * 7919  # different ids each round, same for every client
            print(f"round {r + 1}/{rounds} ...", file=sys.stderr)
            seq_labels = rotate(list(all_labels), r)
            for label in seq_labels:
                if label in sync_clients:
                    kv = sync_clients[label]
                    wl.b_seq(kv, warm, off)
                    out = wl.b_seq(kv, prof["seq_ops"], off)
                else:
                    loop, kv, _ = find_async(label)
                    loop.run_until_complete(wl.a_seq(kv, warm, off))
                    out = loop.run_until_complete(wl.a_seq(kv, prof["seq_ops"], off))
                res["seq"].setdefault(label, []).append(out)
            for label in rotate(async_labels, r):
                loop, kv, _ = find_async(label)
                loop.run_until_complete(wl.a_conc(kv, CONCURRENCY * 4, off))
                out = loop.run_until_complete(wl.a_conc(kv, prof["conc_ops"], off))
                res["conc"].setdefault(label, []).append(out)
            for label in seq_labels:
                if label in sync_clients:
                    kv = sync_clients[label]
                    wl.b_get_many(kv, 2, off)
                    out = wl.b_get_many(kv, prof["batch_ops"], off)
                else:
                    loop, kv, _ = find_async(label)
                    loop.run_until_complete(wl.a_get_many(kv, 2, off))
                    out = loop.run_until_complete(wl.a_get_many(kv, prof["batch_ops"], off))
                res["many"].setdefault(label, []).append(out)
            for label in seq_labels:
                if label in sync_clients:
                    kv = sync_up[label]
                    wl.b_upsert(kv, 2, r)
                    out = wl.b_upsert(kv, prof["upsert_ops"], r)
                else:
                    loop, _, kv = find_async(label)
                    loop.run_until_complete(wl.a_upsert(kv, 2, r))
                    out = loop.run_until_complete(wl.a_upsert(kv, prof["upsert_ops"], r))
                res["upsert"].setdefault(label, []).append(out)
            for label in rotate(async_labels, r):
                loop, kv, _ = find_async(label)
                loop.run_until_complete(wl.a_filter(kv, 2, off))
                out = loop.run_until_complete(wl.a_filter(kv, prof["filter_ops"], off))
                res["filter"].setdefault(label, []).append(out)
            for label in rotate(list(sync_clients), r):
                kv = sync_clients[label]
                wl.b_threads(kv, THREADS * 16, off)
                out = wl.b_threads(kv, prof["thread_ops"], off)
                res["threads"].setdefault(label, []).append(out)

        # ---- close everything we opened
        for _s, loop, rd, up in loop_objs:

            async def close_all(rd: dict = rd, up: dict = up) -> None:
                for kv in list(rd.values()) + list(up.values()):
                    await kv.close()

            loop.run_until_complete(close_all())
            loop.close()
        for kv in list(sync_clients.values()) + list(sync_up.values()):
            kv.close()
        raw.close()

    elapsed = time.perf_counter() - t_start

    # ---- report
    md: list[str] = ["# nano-graphrag-redis KV benchmark", ""]
    md += [f"- {k}: {v}" for k, v in vers]
    md += [
        f"- profile: {'quick' if args.quick else 'full'}, {rounds} rounds, median reported; "
        f"per round: {prof['seq_ops']} sequential gets, {prof['conc_ops']} concurrent gets, "
        f"{prof['batch_ops']} get_by_ids / {prof['upsert_ops']} upsert / "
        f"{prof['filter_ops']} filter_keys batches of {BATCH}, "
        f"{prof['thread_ops']} threaded gets; each loop capped at {prof['max_seconds']:.0f} s",
        f"- data: {len(ids)} text_chunks records, ~{avg_bytes:,.0f} B of UTF-8 JSON each "
        f"(stored by nano-graphrag-redis: {statistics.mean(stored):,.0f} B; "
        f"json.dumps default separators add a few bytes: "
        f"{up_sizes[RPY_A]} B vs {up_sizes[NANO_A]} B for the same upsert record)",
        "- verified once before timing: every client returned equal decoded records, equal "
        "missing-id sets and wrote records that decode equally",
        "- 'nano-graphrag-redis vs this': >1 means nano-graphrag-redis is faster "
        "(throughput ratio, or latency of this client / latency of nano-graphrag-redis). "
        "Async competitors are compared with the async API, redis-py (sync) with the "
        "blocking API. 'spread' = half the min–max range of the rounds, relative to the "
        "median, of the first metric.",
        f"- total runtime: {elapsed:.1f} s",
    ]
    md += [f"- note: {n}" for n in notes]
    md.append("")

    sections = [
        (
            "1. Sequential get_by_id latency (µs, lower is better)",
            "One get_by_id at a time, awaited (or called) before the next.",
            [("p50", "p50 µs", False), ("p99", "p99 µs", False)],
            "seq",
        ),
        (
            f"2. {CONCURRENCY} concurrent get_by_id (ops/s, higher is better)",
            f"{CONCURRENCY} asyncio tasks each awaiting get_by_id in a loop, run by asyncio.gather.",
            [("ops", "ops/s", True)],
            "conc",
        ),
        (
            f"3. get_by_ids of {BATCH} ids (higher is better)",
            f"One call fetching {BATCH} existing records (one MGET), sequentially.",
            [("batches", "batches/s", True), ("records", "records/s", True)],
            "many",
        ),
        (
            f"4. upsert of {BATCH} records (records/s, higher is better)",
            f"One call writing {BATCH} records (~180 KB), overwriting existing keys, sequentially.",
            [("records", "records/s", True)],
            "upsert",
        ),
        (
            f"5. filter_keys of {BATCH} ids (higher is better)",
            f"One call checking {BATCH} ids (half stored, half missing), sequentially.",
            [("batches", "batches/s", True), ("records", "ids/s", True)],
            "filter",
        ),
        (
            f"6. {THREADS} threads doing single gets (ops/s, higher is better)",
            f"{THREADS} OS threads, one shared blocking client, each calling get_by_id in a loop.",
            [("ops", "ops/s", True)],
            "threads",
        ),
    ]
    for title, desc, metrics, key in sections:
        md.append(render_table(title, desc, metrics, res[key], all_labels))
    text = "\n".join(md)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"versions": dict(vers), "profile": prof, "elapsed_s": elapsed, "rounds": res},
                indent=1,
                ensure_ascii=False,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
