"""The targets of "Performance round 2", evaluated on one run's raw results.

Each target is a ratio of two rows measured in the same rounds (the median of the
per-round ratios), a memory ratio, or a metrics overhead in %. ``score`` puts them on
one scale for the chart: >= 1 means the target is met.
"""

from __future__ import annotations

import statistics
from typing import Any

from harness import GLIDE, LIMIT, NANO_A, NANO_B, RPY_A
from report import paired


def _ratio(a: list[dict] | None, b: list[dict] | None, key: str) -> float | None:
    if not a or not b:
        return None
    return statistics.median(paired(a, b, lambda x, y: x[key] / y[key]))


def _row(name: str, value: float | None, op: str, goal: float, fmt: str = "{:.2f}x") -> dict[str, Any]:
    """``op``: ">=" (at least ``goal``), "<=" or "<" (at most)."""
    met = score = None
    if value is not None:
        met = value >= goal if op == ">=" else (value <= goal if op == "<=" else value < goal)
        score = value / goal if op == ">=" else (goal / value if value > 0 else float("inf"))
    goal_text = {">=": "≥ ", "<=": "≤ ", "<": "< "}[op] + fmt.format(goal)
    return {"name": name, "value": value, "op": op, "goal_value": goal, "goal": goal_text, "fmt": fmt,
            "met": met, "score": score}  # fmt: skip


def _overhead_row(name: str, pcts: list[float] | None, goal_pct: float = 3.0) -> dict[str, Any]:
    row = _row(name, None if not pcts else statistics.median(pcts), "<", goal_pct, "{:+.1f} %")
    if row["value"] is not None:  # the time factors: 1.03 allowed over 1 + overhead measured
        row["score"] = (1 + goal_pct / 100) / (1 + row["value"] / 100)
    return row


def evaluate(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets table's rows; a value is None where its section did not run."""
    single = raw.get("single", {}).get("rounds", {})
    shapes = raw.get("shapes", {}).get("text_chunks", {}).get("rounds", {})
    keys = raw.get("shapes", {}).get("keys", {}).get("rounds", {})
    overhead = raw.get("overhead", {}).get("pct", {})
    memory = {m["case"]: m for m in raw.get("memory", {}).get("rows", []) if m["client"] == "nano"}

    def get(rounds: dict, kind: str, label: str) -> list[dict] | None:
        return rounds.get(kind, {}).get(label)

    def n_keys(case: str) -> str:
        rows = keys.get(case, {}).get(NANO_A)
        return f"{rows[0]['n']:,}" if rows else "?"

    def mem_n(case: str) -> str:
        return f"{memory[case]['n']:,}" if case in memory else "?"

    batch = raw.get("shapes", {}).get("batch", 500)
    vs_limit = f"redis-benchmark `-P {batch}`"
    return [
        _row(f"upsert of {batch} ~4.8 KB text_chunks records (async) vs {vs_limit} SET",
             _ratio(get(shapes, "upsert", NANO_A), get(shapes, "upsert", LIMIT), "records"), ">=", 0.7),
        _row(f"get_by_ids of {batch} ~4.8 KB records (async) vs {vs_limit} GET",
             _ratio(get(shapes, "get_many", NANO_A), get(shapes, "get_many", LIMIT), "records"), ">=", 0.85),
        _row(f"get_by_ids of {batch} with fields={{content, tokens}} (async) vs {vs_limit} GET",
             _ratio(get(shapes, "get_fields", NANO_A), get(shapes, "get_many", LIMIT), "records"), ">=", 0.9),
        _row(f"all_keys of {n_keys('all_keys_small')} keys (async) vs redis-py asyncio SCAN",
             _ratio(get(keys, "all_keys_small", NANO_A), get(keys, "all_keys_small", RPY_A), "keys"), ">=", 1.5),
        _row(f"all_keys of {n_keys('all_keys_large')} keys (async) vs redis-py asyncio SCAN",
             _ratio(get(keys, "all_keys_large", NANO_A), get(keys, "all_keys_large", RPY_A), "keys"), ">=", 1.5),
        _row(f"drop of {n_keys('drop_large')} keys (async) vs redis-py asyncio SCAN + UNLINK",
             _ratio(get(keys, "drop_large", NANO_A), get(keys, "drop_large", RPY_A), "keys"), ">=", 1.5),
        _row("64 concurrent get_by_id (async) vs valkey-glide",
             _ratio(get(single, "conc", NANO_A), get(single, "conc", GLIDE), "ops"), ">=", 3.0),
        _row("64 concurrent get_by_id (async) vs redis-benchmark `-c 64` GET",
             _ratio(get(single, "conc", NANO_A), get(single, "conc", LIMIT), "ops"), ">=", 1.2),
        _row("sequential get_by_id p50: redis-py asyncio p50 / this (async) p50",
             _ratio(get(single, "seq", RPY_A), get(single, "seq", NANO_A), "p50"), ">=", 1.25),
        _row("sequential get_by_id p50: this (blocking) / redis-benchmark `-c 1` GET p50",
             _ratio(get(single, "seq", NANO_B), get(single, "seq", LIMIT), "p50"), "<=", 1.5),
        _row(f"memory: {mem_n('conc')} concurrent get_by_id of ~1.8 KB records, RSS growth / payload",
             memory["conc"]["ratio"] if "conc" in memory else None, "<", 2.0),
        _row(f"memory: get_by_ids of {mem_n('batch')} ~1.8 KB records, RSS growth / payload",
             memory["batch"]["ratio"] if "batch" in memory else None, "<", 2.0),
        _overhead_row("metrics overhead, client CPU per op: sequential get_by_id", overhead.get("seq")),
        _overhead_row("metrics overhead, client CPU per op: 64 concurrent get_by_id", overhead.get("conc")),
        _overhead_row("metrics overhead, client CPU per op: get_by_ids of 100", overhead.get("get_many")),
    ]  # fmt: skip
