"""What the per-operation metrics cost: the same storage with ``redis_metrics`` on (the
default) and off, on the same server and data.

The cost is a few tens of nanoseconds per call, far below what two noisy cores let a
wall clock resolve between rounds seconds apart (rounds here swing by ±50 %). So it is
measured as the client's CPU time per operation (``time.process_time``: the loop
thread and the core's threads, not the server), in many short blocks that alternate
on / off / off / on, and reported as the median over pairs of neighbouring blocks.
Wall-clock time per operation is shown beside it."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dataset import Dataset
from harness import CONCURRENCY
from report import fmt_num

from nano_graphrag_redis import RedisKVStorage

ON = "metrics on (default)"
OFF = "metrics off (redis_metrics=False)"
BLOCK_SECONDS = 0.15  # one block of one workload on one storage
BATCH = 100
NAMES = {
    "seq": "sequential get_by_id",
    "conc": f"{CONCURRENCY} concurrent get_by_id",
    "get_many": f"get_by_ids of {BATCH}",
}


def supported(url: str) -> str | None:
    """None if the installed build takes ``redis_metrics``; else why not."""
    try:
        off = RedisKVStorage("probe", redis_url=url, redis_metrics=False).settings()
    except Exception as e:  # the build's own error, reported as is
        keys = sorted(RedisKVStorage("probe", redis_url=url).settings())
        return f"RedisKVStorage(redis_metrics=False) failed ({e}); its settings() keys: {', '.join(keys)}"
    if off.get("metrics") is not False:
        return f"redis_metrics=False is accepted but settings() says metrics={off.get('metrics')!r}"
    return None


Work = Callable[[RedisKVStorage, list[str], int], Awaitable[int]]


async def seq(kv: RedisKVStorage, ids: list[str], n: int) -> int:
    for i in range(n):
        await kv.get_by_id(ids[i % len(ids)])
    return n


async def conc(kv: RedisKVStorage, ids: list[str], n: int) -> int:
    each = max(1, n // CONCURRENCY)

    async def task(t: int) -> None:
        for i in range(each):
            await kv.get_by_id(ids[(t * each + i) % len(ids)])

    await asyncio.gather(*(task(t) for t in range(CONCURRENCY)))
    return each * CONCURRENCY


async def get_many(kv: RedisKVStorage, ids: list[str], n: int) -> int:
    for i in range(n):
        start = (i * BATCH) % max(1, len(ids) - BATCH)
        await kv.get_by_ids(ids[start : start + BATCH])
    return n * BATCH


WORK: dict[str, Work] = {"seq": seq, "conc": conc, "get_many": get_many}


async def block(kv: RedisKVStorage, work: Work, ids: list[str], n: int) -> dict[str, float]:
    """One block: ``n`` calls; CPU and wall time per operation (µs)."""
    cpu, wall = time.process_time(), time.perf_counter()
    ops = await work(kv, ids, n)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us": cpu / ops * 1e6, "wall_us": wall / ops * 1e6, "ops": ops}


async def calls_per_block(kv: RedisKVStorage, work: Work, ids: list[str]) -> int:
    """How many calls fill about BLOCK_SECONDS (from a short trial)."""
    trial = await block(kv, work, ids, 8)
    per_call = trial["wall_us"] * trial["ops"] / 8 / 1e6
    return max(4, round(BLOCK_SECONDS / max(per_call, 1e-6)))


async def measure(url: str, ids: list[str], pairs: int) -> dict[str, dict[str, list[dict[str, float]]]]:
    storages = {
        ON: RedisKVStorage(ids_ns(), redis_url=url),
        OFF: RedisKVStorage(ids_ns(), redis_url=url, redis_metrics=False),
    }
    out: dict[str, dict[str, list[dict[str, float]]]] = {}
    for kind, work in WORK.items():
        n = await calls_per_block(storages[ON], work, ids)
        for kv in storages.values():  # warm both: connection, bridge, caches
            await block(kv, work, ids, n)
        rows: dict[str, list[dict[str, float]]] = {ON: [], OFF: []}
        for p in range(pairs):
            order = (ON, OFF) if p % 2 == 0 else (OFF, ON)
            for label in order:
                rows[label].append(await block(storages[label], work, ids, n))
        out[kind] = rows
    for kv in storages.values():
        await kv.close()
    return out


def ids_ns() -> str:
    return "text_chunks"  # the single section's records, loaded by the caller


def run_overhead(url: str, data: Dataset, prof: dict) -> dict[str, Any]:
    """``rounds``: workload -> {ON, OFF} -> one result per block; ``pct``: workload ->
    the CPU overhead in % of each pair of neighbouring blocks."""
    RedisKVStorage(ids_ns(), redis_url=url).blocking().upsert({k: data.records[k] for k in data.ids[:1000]})
    rounds = asyncio.run(measure(url, data.ids[:1000], prof["overhead_rounds"]))
    pct = {
        kind: [(on["cpu_us"] / off["cpu_us"] - 1) * 100 for on, off in zip(rows[ON], rows[OFF], strict=True)]
        for kind, rows in rounds.items()
    }
    return {"rounds": rounds, "pct": pct}


def render_overhead(out: dict[str, Any], prof: dict, batch: int) -> list[str]:
    res = out["rounds"]
    md = [
        "## Metrics overhead: redis_metrics on vs off",
        "",
        f"- {prof['overhead_rounds']} pairs of blocks of ~{BLOCK_SECONDS:.2f} s per workload, on / off "
        "alternating (off / on every other pair), on the single node, ~1.8 KB text_chunks records, the async API.",
        "- overhead = the client's CPU time per operation (all its threads, not the server's) with metrics "
        "on / off - 1, per pair; the median of the pairs is reported (target: < 3 %). Wall-clock time per "
        "operation is shown too: it swings with the machine far more than the metrics could move it.",
        "",
        "| workload | CPU µs/op on | CPU µs/op off | overhead (median of pairs) | wall µs/op on | wall µs/op off |",
        "|---|---|---|---|---|---|",
    ]
    for kind, rows in res.items():

        def med(label: str, key: str, rows: dict = rows) -> str:
            return fmt_num(statistics.median(r[key] for r in rows[label]))

        pcts = out["pct"][kind]
        md.append(
            f"| {NAMES[kind]} | {med(ON, 'cpu_us')} | {med(OFF, 'cpu_us')} | {statistics.median(pcts):+.1f} % "
            f"| {med(ON, 'wall_us')} | {med(OFF, 'wall_us')} |"
        )
    md.append("")
    return md
