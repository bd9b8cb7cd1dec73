#!/usr/bin/env python3
"""Side-by-side benchmark of nano-graphrag-redis against hand-written Redis KV storages.

    python bench/bench_kv.py [--scale F] [--rounds N] [--topology T] [--out FILE] [--json FILE] [--png FILE]

Single node (``--topology single``): one throw-away ``redis-server`` on a free loopback
port (never 6379), and against it, in this process:

* the single-node section: realistic ``text_chunks`` records (~1.8 KB of UTF-8 JSON
  each) read and written by nano-graphrag-redis ``RedisKVStorage`` (async, and its
  blocking API), redis-py asyncio and sync, and valkey-glide (competitors.py), and the async
  clients again on uvloop when it is installed;
* the physical limit: ``redis-benchmark`` against the same server in the same rounds
  (limits.py);
* nano-graphrag's shapes: batches of 500 ~4.8 KB ``text_chunks`` and ~1.8 KB
  ``llm_response_cache`` records, ``all_keys`` and ``drop`` of many keys (shapes.py,
  keys.py);
* the cost of the metrics (``redis_metrics`` on vs off, overhead.py), the client's
  memory (memory.py), and an offline GraphRAG end to end on three key-value backends
  (e2e.py).

Cluster (``--topology cluster``): a Redis Cluster (3 masters + 3 replicas) against
redis-py's cluster clients, batches of 500 ~4.8 KB records (cluster.py). ``--topology
both`` (the default) runs the two.

Every measurement is repeated for several rounds (client order rotated each round) and
the MEDIAN is reported, with the targets of the "Performance round 2" issue on top
(targets.py); see bench/README.md. Speed is never asserted anywhere: this script only
reports.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chart
import e2e
import memory
import overhead
import redis
import shapes
import targets
from cluster import run_cluster
from competitors import PREFIX, GlideKV, RedisPyAsyncKV, RedisPySyncKV
from dataset import Dataset
from harness import (
    CONCURRENCY,
    GLIDE,
    LIMIT,
    NANO_A,
    NANO_B,
    RPY_A,
    RPY_S,
    THREADS,
    UVLOOP,
    Client,
    Measured,
    Step,
    Workload,
    close_all,
    measure,
    nano,
    nano_blocking,
    ns_of,
    verify,
    warm_up,
)
from limits import RedisBenchmark, find_redis_benchmark
from report import BATCHES, IDS, LATENCY, OPS, RECORDS, STEADY, render_limits, render_table, render_targets

from nano_graphrag_redis.local_server import RedisServer, find_redis_server

BATCH = 100  # ids per get_by_ids / upsert / filter_keys call of the single-node section

# Op counts and data sizes at --scale 1 (every loop is also bounded in time by
# --max-seconds); FLOORS keep a tiny scale meaningful (a batch is never cut).
BASE = dict(
    records=2000, seq_ops=1500, conc_ops=8000, batch_ops=100, upsert_ops=60, filter_ops=200, thread_ops=6000,
    shape_records=2000, shape_batch_ops=8, shape_upsert_ops=8,
    keys_small=10_000, keys_large=100_000,
    mem_conc=10_000, mem_batch=200_000,
    e2e_bytes=300_000, e2e_questions=50,
    c_records=2000, c_conc_ops=6000, c_batch_ops=16, c_upsert_ops=8, c_filter_ops=30,
)  # fmt: skip
FLOORS = dict(
    records=BATCH, seq_ops=50, conc_ops=CONCURRENCY * 4, batch_ops=2, upsert_ops=2, filter_ops=2,
    thread_ops=THREADS * 16, shape_records=shapes.BATCH, shape_batch_ops=1, shape_upsert_ops=1,
    keys_small=100, keys_large=1000, mem_conc=100, mem_batch=1000, e2e_bytes=10_000, e2e_questions=3,
    c_records=500, c_conc_ops=CONCURRENCY * 4, c_batch_ops=1, c_upsert_ops=1, c_filter_ops=2,
)  # fmt: skip
QUICK_SCALE = 0.2


def profile(scale: float, rounds: int, max_seconds: float) -> dict[str, Any]:
    prof: dict[str, Any] = {k: max(FLOORS[k], round(v * scale)) for k, v in BASE.items()}
    prof.update(scale=scale, rounds=rounds, max_seconds=max_seconds)
    # The metrics overhead is a few % at most: twice the rounds to see it through the noise.
    # A GraphRAG run, and a drop's reload of its keys, take seconds and vary little: 3 rounds at most.
    prof.update(overhead_rounds=2 * rounds, e2e_rounds=min(rounds, 3), keys_rounds=min(rounds, 3))
    return prof


SINGLE_PLAN = [
    Step("seq", "seq_ops", 64, 500, "all"),
    Step("seq_set", "seq_ops", 64, 500, "limit"),  # redis-benchmark only: no client sets one at a time
    Step("conc", "conc_ops", CONCURRENCY * 4, 2000, "async"),
    Step("conc_set", "conc_ops", CONCURRENCY * 4, 2000, "limit"),
    Step("get_many", "batch_ops", 2, 10, "all"),
    Step("upsert", "upsert_ops", 2, 0, "all"),
    Step("filter", "filter_ops", 2, 10, "async"),
    Step("threads", "thread_ops", THREADS * 16, 400, "sync"),
]

Loops = list[tuple[str, Callable[[], asyncio.AbstractEventLoop]]]


def run_single(
    server: RedisServer, data: Dataset, prof: dict, loops: Loops, bench_binary: str | None
) -> tuple[list[str], dict]:
    """The single-node section against every competitor and redis-benchmark: its
    markdown and raw rounds."""
    url = server.url
    clients: list[Client] = []
    for suffix, factory in loops:
        loop = factory()
        clients.append(Client.of(NANO_A + suffix, nano(url), data, loop))
        if not suffix:
            clients.append(Client.of(NANO_B, nano_blocking(url), data))
        clients.append(Client.of(RPY_A + suffix, lambda ns: RedisPyAsyncKV(url, ns), data, loop))
        if not suffix:  # glide: see the uvloop note
            clients.append(Client.of(RPY_S, lambda ns: RedisPySyncKV(url, ns), data))
            clients.append(Client.of(GLIDE, lambda ns: GlideKV.create(server.port, ns), data, loop))

    data.load(next(c for c in clients if c.label == NANO_B).kv)
    raw = redis.Redis.from_url(url)
    stored = [raw.strlen(f"{PREFIX}:{data.read_ns}:{k}") for k in data.ids[:200]]
    assert raw.dbsize() == len(data.ids), raw.dbsize()
    verify(clients, data, raw.mget)
    first_written = next(iter(data.upsert_batches[0]))
    up_sizes = {c.label: raw.strlen(f"{PREFIX}:{ns_of(c.label)}:{first_written}") for c in clients}
    print("verified: all clients return equal records, ids and writes", file=sys.stderr)

    rows: list[Measured] = list(clients)
    limit = None
    if bench_binary is not None:
        limit = RedisBenchmark(bench_binary, server.port, round(data.avg_bytes), BATCH, len(data.ids), "single")
        limit.populate(raw)
        rows.append(limit)
    wl = Workload(data, prof["max_seconds"])
    warm_up(rows, wl, SINGLE_PLAN)
    res = measure(rows, wl, SINGLE_PLAN, prof, "single node")
    close_all(clients)
    if limit is not None:
        limit.remove(raw)
    raw.close()

    md = [
        "## Single node",
        "",
        f"- rounds: {prof['rounds']} (median reported); "
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
        f"- {LIMIT}: the same GETs / SETs by redis-benchmark in the same rounds, values of "
        f"{round(data.avg_bytes)} B (see 'Against the physical limit')",
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
    order = [c.label for c in rows]
    md += [render_table(title, desc, metrics, res[key], order) for title, desc, metrics, key in sections]
    out = {"rounds": res, "records": len(data.ids), "avg_bytes": data.avg_bytes, "order": order}
    out["limit_options"] = limit.options() if limit else {}
    return md, out


def run_single_node(prof: dict, loops: Loops, binary: str, bench_binary: str | None, notes: list[str]) -> dict:
    """Every single-node section, one after the other, on one server: markdown per
    section, raw results, and each section's seconds."""
    md: dict[str, list[str]] = {}
    raw: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = [time.perf_counter()]

    def lap(section: str) -> None:
        now = time.perf_counter()
        seconds[section], started[0] = now - started[0], now

    with RedisServer(binary=binary) as server:
        url = server.url
        print(f"redis-server pid {server.pid} on {url}", file=sys.stderr)
        data = Dataset(prof["records"], BATCH)
        md["single"], raw["single"] = run_single(server, data, prof, loops, bench_binary)
        lap("single node")
        raw["shapes"] = shapes.run_shapes(url, server.port, prof, bench_binary)
        md["shapes"] = shapes.render_shapes(raw["shapes"], prof)
        lap("shapes and key counts")
        problem = overhead.supported(url)
        if problem is None:
            raw["overhead"] = overhead.run_overhead(url, data, prof)  # the single section's records
            md["overhead"] = overhead.render_overhead(raw["overhead"], prof, BATCH)
        else:
            notes.append(f"metrics overhead not measured: {problem}")
        lap("metrics overhead")
        print("memory ...", file=sys.stderr)
        raw["memory"] = memory.run_memory(url, prof["mem_conc"], prof["mem_batch"])
        md["memory"] = memory.render_memory(raw["memory"])
        lap("memory")
        raw["e2e"] = e2e.run_e2e(url, prof["e2e_bytes"], prof["e2e_questions"], prof["e2e_rounds"])
        md["e2e"] = e2e.render_e2e(raw["e2e"])
        lap("end to end")
    return {"md": md, "raw": raw, "seconds": seconds}


def versions(binary: str, bench_binary: str | None, use_uvloop: bool) -> list[tuple[str, str]]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def version_of(tool: str) -> str:
        return subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()

    out = [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("python", sys.version.split()[0] + f" ({platform.python_implementation()})"),
        ("platform", f"{platform.platform()}, {os.cpu_count()} CPUs"),
        ("redis-server", f"{version_of(binary)} ({binary})"),
        ("redis-benchmark", f"{version_of(bench_binary)} ({bench_binary})" if bench_binary else "not found"),
        ("nano-graphrag-redis", dist("nano-graphrag-redis")),
        ("nano-graphrag", dist("nano-graphrag")),
        ("redis-py", f"{dist('redis')} (hiredis {dist('hiredis')})"),
        ("valkey-glide", dist("valkey-glide")),
    ]
    if use_uvloop:
        out.append(("uvloop", dist("uvloop")))
    return out


def event_loops(want: bool | None, notes: list[str]) -> Loops:
    """asyncio's loop, and uvloop's unless ``--no-uvloop`` or not installed."""
    loops: Loops = [("", asyncio.new_event_loop)]
    if want is False:
        return loops
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        notes.append("uvloop is not installed: no uvloop rows.")
        return loops
    loops.append((UVLOOP, uvloop.new_event_loop))
    notes.append(
        "uvloop rows: the single-node section's async clients, except valkey-glide: its client never answered "
        "on a uvloop loop driven by run_until_complete (glide 2.6), so it is measured on asyncio only. "
        "The other sections run on asyncio only."
    )
    return loops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=None, help="op counts and data sizes x F (default 1.0)")
    ap.add_argument("--quick", action="store_true", help=f"a smoke run: --scale {QUICK_SCALE}, 3 rounds")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per measurement (median; default 5)")
    ap.add_argument(
        "--topology",
        choices=("single", "cluster", "both"),
        default="both",
        help="the single-node sections, the Redis Cluster section, or both (default)",
    )
    ap.add_argument("--out", type=str, default=None, help="also write the markdown report here")
    ap.add_argument("--json", type=str, default=None, help="also write every round of every row (JSON) here")
    ap.add_argument("--png", type=str, default=None, help="the chart (default: --out with .png; needs matplotlib)")
    ap.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="uvloop rows in the single-node section (default: when uvloop is installed)",
    )
    ap.add_argument(
        "--redis-server",
        type=str,
        default=None,
        metavar="PATH",
        help="redis-server binary to run (default: as the tests and demo choose); redis-benchmark is taken from "
        "the same directory, else PATH",
    )
    ap.add_argument("--max-seconds", type=float, default=None, help="time bound of one measurement loop")
    args = ap.parse_args()

    scale = args.scale if args.scale is not None else (QUICK_SCALE if args.quick else 1.0)
    if not 0 < scale <= 10:
        ap.error("--scale must be in (0, 10]")
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    if not 1 <= rounds <= 50:
        ap.error("--rounds must be between 1 and 50")
    max_seconds = max(0.5, min(args.max_seconds, 120.0)) if args.max_seconds else (8.0 if args.quick else 15.0)
    prof = profile(scale, rounds, max_seconds)
    binary = args.redis_server or find_redis_server()
    if binary is None:
        ap.error("redis-server not found: install it or pass --redis-server")
    bench_binary = find_redis_benchmark(binary)

    notes: list[str] = []
    if bench_binary is None:
        notes.append("redis-benchmark not found next to redis-server nor on PATH: no limit rows.")
    loops = event_loops(args.uvloop, notes)
    t_start = time.perf_counter()
    vers = versions(binary, bench_binary, len(loops) > 1)
    seconds: dict[str, float] = {}
    raw: dict[str, Any] = {"versions": dict(vers), "profile": prof, "topology": args.topology, "seconds": seconds}
    body: list[str] = []
    if args.topology in ("single", "both"):
        single = run_single_node(prof, loops, binary, bench_binary, notes)
        raw.update(single["raw"])
        seconds.update(single["seconds"])
        md = single["md"]
        limit_sections = [
            ("single node, ~1.8 KB", raw["single"]["rounds"], BATCH, raw["single"]["limit_options"]),
            ("shapes, ~4.8 KB text_chunks", raw["shapes"]["text_chunks"]["rounds"], shapes.BATCH,
             raw["shapes"]["text_chunks"]["limit_options"]),
            ("shapes, ~1.8 KB llm_response_cache", raw["shapes"]["llm_response_cache"]["rounds"], shapes.BATCH,
             raw["shapes"]["llm_response_cache"]["limit_options"]),
        ]  # fmt: skip
        if bench_binary is not None:
            body.append(render_limits(limit_sections, raw["single"]["order"]))
        for key in ("single", "shapes", "overhead", "memory", "e2e"):
            body += md.get(key, [])
    if args.topology in ("cluster", "both"):
        t0 = time.perf_counter()
        md_cluster, raw["cluster"] = run_cluster(prof, binary)
        body += md_cluster
        seconds["cluster"] = time.perf_counter() - t0
    raw["targets"] = rows = targets.evaluate(raw)
    elapsed = raw["elapsed_s"] = time.perf_counter() - t_start

    png = args.png or (str(Path(args.out).with_suffix(".png")) if args.out else None)
    if png and any(t["score"] is not None for t in rows):
        problem = chart.draw(rows, raw.get("e2e"), png)
        notes.append(problem or f"chart: {png}")
    elif png:
        notes.append("no chart: the targets need the single-node sections")

    head: list[str] = ["# nano-graphrag-redis KV benchmark", ""]
    head += [f"- {k}: {v}" for k, v in vers]
    head += [
        f"- scale: {scale:g}, rounds: {rounds}, topology: {args.topology}",
        f"- total runtime: {elapsed:.1f} s (" + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()) + ")",
    ]
    head += [f"- note: {n}" for n in notes]
    head.append("")
    if args.topology in ("single", "both"):
        head.append(render_targets(rows))
    text = "\n".join(head + body)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
