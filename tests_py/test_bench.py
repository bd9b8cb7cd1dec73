"""The benchmark still runs and reports every row: bench/bench_kv.py at a tiny scale, one
round, both topologies, in a subprocess. Correctness only: speed is measured by the
benchmark and never asserted by a test, so no number here is compared with another."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_kv.py"

NANO_A = "nano-graphrag-redis (async)"
NANO_B = "nano-graphrag-redis (blocking)"
RPY_A = "redis-py asyncio"
RPY_S = "redis-py (sync)"
GLIDE = "valkey-glide"
LIMIT = "redis-benchmark (limit)"
UVLOOP = " [uvloop]"
CLIENTS = [NANO_A, NANO_B, RPY_A, RPY_S, GLIDE]

# workload -> the rows it has (the redis-benchmark row is checked apart: it needs the binary)
SINGLE = {
    "seq": CLIENTS,
    "conc": [NANO_A, RPY_A, GLIDE],
    "get_many": CLIENTS,
    "upsert": CLIENTS,
    "filter": [NANO_A, RPY_A, GLIDE],
    "threads": [NANO_B, RPY_S],
}
WITH_LIMIT = {"seq", "conc", "get_many", "upsert"}
SHAPES = {"text_chunks": ["get_many", "get_fields", "upsert"], "llm_response_cache": ["get_many", "upsert"]}
KEY_CASES = ["all_keys_small", "all_keys_large", "drop_large"]
CLUSTER = {
    "conc": ["nano-graphrag-redis (async) [cluster]", "redis-py asyncio RedisCluster"],
    "get_many": ["nano-graphrag-redis (blocking) [cluster]", "redis-py RedisCluster (sync)"],
    "upsert": ["nano-graphrag-redis (async) [single node]", "nano-graphrag-redis (blocking) [single node]"],
    "filter": ["nano-graphrag-redis (async) [cluster]", "redis-py asyncio RedisCluster"],
}
TARGETS = 15


def positive(rounds: list[dict[str, Any]], where: str, allow_zero: tuple[str, ...] = ()) -> None:
    assert rounds, f"{where}: no rounds"
    for r in rounds:
        for key, value in r.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert math.isfinite(value), (where, key, value)
                assert value > 0 or (key in allow_zero and value == 0), (where, key, value)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    args = [sys.executable, str(BENCH), "--scale", "0.02", "--rounds", "1", "--topology", "both"]
    args += ["--json", str(out / "raw.json"), "--out", str(out / "report.md")]
    # As conftest does for the tests: a developer's REDIS_* settings must not reach the storages.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "NANO_GRAPHRAG_REDIS_"))}
    # A session of its own: on a timeout, its process group (the benchmark and the servers
    # it started) is stopped by id, so no redis-server outlives the test.
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the benchmark did not finish in 150 s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    return {
        "raw": json.loads((out / "raw.json").read_text(encoding="utf-8")),
        "md": (out / "report.md").read_text(encoding="utf-8"),
        "stdout": stdout,
        "png": out / "report.png",
    }


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_every_row_has_positive_numbers(run: dict[str, Any]) -> None:
    raw = run["raw"]
    has_limit = raw["versions"]["redis-benchmark"] != "not found"
    has_uvloop = importlib.util.find_spec("uvloop") is not None

    single = raw["single"]["rounds"]
    for kind, labels in SINGLE.items():
        want = set(labels)
        if has_uvloop and kind in ("seq", "conc", "get_many", "upsert", "filter"):
            want |= {NANO_A + UVLOOP, RPY_A + UVLOOP}
        if has_limit and kind in WITH_LIMIT:
            want.add(LIMIT)
        assert set(single[kind]) == want, kind
        for label, rounds in single[kind].items():
            positive(rounds, f"single {kind} {label}")
    if has_limit:  # redis-benchmark's SETs one at a time, which no client row matches
        for kind in ("seq_set", "conc_set"):
            assert set(single[kind]) == {LIMIT}, kind
            positive(single[kind][LIMIT], f"single {kind}")

    for shape, kinds in SHAPES.items():
        rounds = raw["shapes"][shape]["rounds"]
        for kind in kinds:
            want = set(CLIENTS) | ({LIMIT} if has_limit and kind in WITH_LIMIT else set())
            assert set(rounds[kind]) == want, (shape, kind)
            for label, r in rounds[kind].items():
                positive(r, f"{shape} {kind} {label}")
    keys = raw["shapes"]["keys"]["rounds"]
    assert set(keys) == set(KEY_CASES)
    for case in KEY_CASES:
        assert set(keys[case]) == set(CLIENTS), case
        for label, r in keys[case].items():
            positive(r, f"{case} {label}")

    overhead = raw["overhead"]
    for kind in ("seq", "conc", "get_many"):
        for label, r in overhead["rounds"][kind].items():
            positive(r, f"overhead {kind} {label}")
        assert overhead["pct"][kind] and all(math.isfinite(p) for p in overhead["pct"][kind]), kind

    memory = raw["memory"]["rows"]
    cases = [(m["case"], m["client"]) for m in memory]
    assert cases == [("conc", "nano"), ("conc", "redis-py"), ("batch", "nano"), ("batch", "redis-py")]
    for m in memory:
        # A tiny read can fit in memory the process already had: growth may be 0, never less.
        positive([m], f"memory {m['case']} {m['client']}", allow_zero=("growth_bytes", "ratio"))

    e2e = raw["e2e"]["rounds"]
    assert len(e2e) == 3
    for backend, r in e2e.items():
        positive(r, f"e2e {backend}")
    assert len({r[0]["llm_calls"] for r in e2e.values()}) == 1, "the backends did different work"

    cluster = raw["cluster"]["rounds"]
    for kind, labels in CLUSTER.items():
        assert set(labels) <= set(cluster[kind]), kind
        for label, r in cluster[kind].items():
            positive(r, f"cluster {kind} {label}")

    targets = raw["targets"]
    assert len(targets) == TARGETS
    for t in targets:
        limit_row = "redis-benchmark" in t["name"]
        if limit_row and not has_limit:
            continue
        assert t["value"] is not None and math.isfinite(t["value"]), t["name"]
        assert isinstance(t["met"], bool), t["name"]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_report_has_the_targets_table_and_every_section(run: dict[str, Any]) -> None:
    md = run["md"]
    assert run["stdout"].strip() == md.strip()
    assert "## Targets" in md
    table = md.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert "| # | target | measured | goal | met |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == TARGETS
    assert all(("met" in row) or ("missed" in row) or ("n/a" in row) for row in rows)
    for heading in (
        "## Single node",
        "## nano-graphrag shapes",
        "## Metrics overhead",
        "## Client memory",
        "## End to end",
        "## Redis Cluster",
    ):
        assert heading in md, heading
    if importlib.util.find_spec("matplotlib") is not None:
        assert run["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in md
