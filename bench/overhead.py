"""What the per-operation metrics cost: the same storage with ``redis_metrics`` on (the
default) and off, on the same server and data, in interleaved rounds."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from dataset import Dataset
from harness import CONCURRENCY, Client, Rounds, Step, Workload, close_all, measure, warm_up
from report import fmt_num, paired

from nano_graphrag_redis import RedisKVStorage

ON = "metrics on (default)"
OFF = "metrics off (redis_metrics=False)"
PLAN = [
    Step("seq", "seq_ops", 64, 500, "all"),
    Step("conc", "conc_ops", CONCURRENCY * 4, 2000, "all"),
    Step("get_many", "batch_ops", 2, 10, "all"),
]
# (workload, metric, higher is better)
ROWS = [("seq", "p50", False), ("conc", "ops", True), ("get_many", "records", True)]


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


def overhead_pct(on: list[dict], off: list[dict], key: str, higher: bool) -> list[float]:
    """Per round: how much longer an operation takes with metrics on, in %."""
    if higher:
        return paired(on, off, lambda a, b: (b[key] / a[key] - 1) * 100)
    return paired(on, off, lambda a, b: (a[key] / b[key] - 1) * 100)


def run_overhead(url: str, data: Dataset, prof: dict) -> dict[str, Any]:
    """Rounds of both storages; ``pct``: workload -> the per-round overheads in %."""
    loop = asyncio.new_event_loop()
    clients = [
        Client.of(ON, lambda ns: RedisKVStorage(ns, redis_url=url), data, loop),
        Client.of(OFF, lambda ns: RedisKVStorage(ns, redis_url=url, redis_metrics=False), data, loop),
    ]
    wl = Workload(data, prof["max_seconds"])
    warm_up(clients, wl, PLAN)
    res = measure(clients, wl, PLAN, {**prof, "rounds": prof["overhead_rounds"]}, "metrics overhead")
    close_all(clients)
    pct = {kind: overhead_pct(res[kind][ON], res[kind][OFF], key, higher) for kind, key, higher in ROWS}
    return {"rounds": res, "pct": pct}


def render_overhead(out: dict[str, Any], prof: dict, batch: int) -> list[str]:
    res: Rounds = out["rounds"]
    md = [
        "## Metrics overhead: redis_metrics on vs off",
        "",
        f"- rounds: {prof['overhead_rounds']}, interleaved (order swapped every round), on the single node, "
        "same data (~1.8 KB text_chunks records); the async API.",
        "- overhead = how much longer an operation takes with metrics on: p50 on / p50 off - 1, or "
        "throughput off / throughput on - 1, per round; the median of the rounds is reported "
        "(target: < 3 %). With 2 noisy cores, a few % either way is within the noise: look at the spread.",
        "",
        "| workload | metrics on | metrics off | overhead (median of rounds) | per round |",
        "|---|---|---|---|---|",
    ]
    names = {"seq": "sequential get_by_id (p50 µs)", "conc": f"{CONCURRENCY} concurrent get_by_id (ops/s)",
             "get_many": f"get_by_ids of {batch} (records/s)"}  # fmt: skip
    for kind, key, _ in ROWS:
        on = statistics.median(r[key] for r in res[kind][ON])
        off = statistics.median(r[key] for r in res[kind][OFF])
        pcts = out["pct"][kind]
        rounds = ", ".join(f"{p:+.1f}" for p in pcts)
        md.append(f"| {names[kind]} | {fmt_num(on)} | {fmt_num(off)} | {statistics.median(pcts):+.1f} % | {rounds} |")
    md.append("")
    return md
