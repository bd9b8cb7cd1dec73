"""Markdown: numbers, one table per workload (medians of rounds and ratios), the table of
every row against redis-benchmark, and the targets table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable

from harness import GLIDE, LIMIT, NANO_A, NANO_B, RPY_A, RPY_S, Rounds

Metrics = list[tuple[str, str, bool]]  # (key, header, higher is better)

LATENCY: Metrics = [("p50", "p50 µs", False), ("p99", "p99 µs", False)]
OPS: Metrics = [("ops", "ops/s", True)]
BATCHES: Metrics = [("batches", "batches/s", True), ("records", "records/s", True)]
RECORDS: Metrics = [("records", "records/s", True)]
IDS: Metrics = [("batches", "batches/s", True), ("records", "ids/s", True)]
KEYS: Metrics = [("keys", "keys/s", True), ("s", "s per call", False)]

STEADY = "'spread' = half the min–max range of the rounds, relative to the median, of the first metric."


def fmt_num(x: float) -> str:
    if x >= 100_000:
        return f"{x / 1000:,.0f}k"
    if x >= 10_000:
        return f"{x / 1000:,.1f}k"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:,.1f}"
    return f"{x:.3f}"


def spread(vals: list[float]) -> str:
    med = statistics.median(vals)
    if med == 0 or len(vals) < 2:
        return "-"
    return f"±{(max(vals) - min(vals)) / 2 / med * 100:.0f}%"


def ratio_str(r: float) -> str:
    return f"{r:.2f}x"


def median_of(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def paired(a: list[dict], b: list[dict], fn: Callable[[dict, dict], float]) -> list[float]:
    """``fn`` of two rows' results of the same round, for every round both have."""
    return [fn(x, y) for x, y in zip(a, b, strict=False)]


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
    metrics: Metrics,
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
    med = {name: {k: median_of(results[name], k) for k, _, _ in metrics} for name in rows}
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
            cells.append(ratio_str((a / b) if higher else (b / a)))
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


ROW_NAMES = {
    "seq": "sequential get_by_id",
    "seq_set": "SET one at a time, redis-benchmark only",
    "conc": "64 concurrent get_by_id",
    "conc_set": "SET on 64 connections, redis-benchmark only",
    "get_many": "get_by_ids",
    "get_fields": "get_by_ids with fields",
    "upsert": "upsert",
}


def render_limits(sections: list[tuple[str, Rounds, int, dict[str, str]]], order: Iterable[str]) -> str:
    """Per section and workload, redis-benchmark's rate (or p50) and every client's
    ``this / limit`` (the median of the per-round ratios). ``sections``: (name, rounds,
    batch, workload -> redis-benchmark's options for it)."""
    clients = [x for x in order if x != LIMIT]
    head = ["section", "workload", "redis-benchmark", "limit"] + clients
    lines = [
        "## Against the physical limit: redis-benchmark on the same server",
        "",
        "redis-benchmark (C, no JSON, values of the records' average size; every GET hits) in the same rounds, "
        "against the same server. Each client's cell is 'this / limit', the median of the per-round ratios: for "
        "throughput 1.00x = as fast as redis-benchmark (higher is better), for the p50 latency 1.00x = the same "
        "p50 (lower is better). get_by_ids with fields is compared with the plain GET pipeline.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, rounds, batch, options in sections:
        for kind, res in rounds.items():
            limit_kind = "get_many" if kind == "get_fields" else kind
            limit = rounds.get(limit_kind, {}).get(LIMIT)
            if limit is None:
                continue
            key, unit = _limit_metric(kind)
            what = ROW_NAMES[kind] + (f" of {batch}" if kind in ("get_many", "get_fields", "upsert") else "")
            cells = [name, f"{what} ({unit})", f"`{options[limit_kind]}`", fmt_num(median_of(limit, key))]
            for label in clients:
                if label in res:
                    ratios = paired(res[label], limit, lambda a, b, k=key: a[k] / b[k])
                    cells.append(ratio_str(statistics.median(ratios)))
                else:
                    cells.append("—")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _limit_metric(kind: str) -> tuple[str, str]:
    """The metric (key, unit) a workload is compared with redis-benchmark on."""
    if kind in ("seq", "seq_set"):
        return "p50", "µs p50"
    if kind in ("conc", "conc_set"):
        return "ops", "ops/s"
    return "records", "records/s"


def render_targets(rows: list[dict]) -> str:
    lines = [
        "## Targets",
        "",
        "Each measured value is the median of the per-round ratios of two rows measured in the same rounds "
        "(memory: one measurement in a fresh process). Reported, never asserted.",
        "",
        "| # | target | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for i, t in enumerate(rows, 1):
        measured = "n/a" if t["value"] is None else t["fmt"].format(t["value"])
        met = "n/a" if t["met"] is None else ("✓ met" if t["met"] else "✗ missed")
        lines.append(f"| {i} | {t['name']} | {measured} | {t['goal']} | {met} |")
    lines.append("")
    return "\n".join(lines)
