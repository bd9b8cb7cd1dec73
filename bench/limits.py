"""The physical limit: ``redis-benchmark`` (C, hiredis-style, no JSON) doing the same
GETs and SETs against the same server, in the same rounds as the clients.

It is one more row of a section (``measure`` runs it like a client): GET and SET with
one connection (``-c 1``, p50 latency), with 64 connections (``-c 64``, ops/s), and
pipelines of a batch's size (``-P batch`` with redis-benchmark's default 50 connections,
records/s: the server's batch throughput, as the performance targets define it), with
values the size of the section's records. Its keys are ``bench_limit:<tag>:<12 digits>`` (the
form ``-r`` gives ``__rand_int__``), all written before the first GET, so every GET hits
a value of the right size; no other client's keys look like that.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from typing import Any

from competitors import HOST
from harness import CONCURRENCY, LIMIT, Step, Workload

# redis-benchmark times a run in whole milliseconds: a run of fewer requests than this
# can end within one and report an infinite rate.
MIN_REQUESTS = {"seq": 2000, "conc": 20_000, "batch": 50_000}
# Connections of the pipelined rows: redis-benchmark's default. One connection pipelining
# GETs reads replies faster still (~2x here) than any client that decodes JSON could use.
BATCH_CLIENTS = 50


def find_redis_benchmark(server_binary: str) -> str | None:
    """``redis-benchmark`` next to ``redis-server`` (the same build), else on PATH."""
    near = os.path.join(os.path.dirname(server_binary), "redis-benchmark")
    return near if os.access(near, os.X_OK) else shutil.which("redis-benchmark")


class RedisBenchmark:
    """redis-benchmark as a row of ``measure``: ``seq``, ``conc``, ``get_many`` and
    ``upsert``, with the same metrics the clients report, and SETs one at a time
    (``seq_set``, ``conc_set``: steps no client takes part in)."""

    label = LIMIT

    def __init__(self, binary: str, port: int, value_bytes: int, batch: int, keys: int, tag: str) -> None:
        self.binary = binary
        self.port = port
        self.value_bytes = value_bytes
        self.batch = batch
        self.keys = keys
        self.key = f"bench_limit:{tag}:__rand_int__"
        self.value = "x" * value_bytes

    def populate(self, raw: Any) -> None:
        """Writes every key ``-r`` can draw, with a value of the benchmark's size."""
        prefix = self.key.replace("__rand_int__", "")
        for start in range(0, self.keys, 1000):
            raw.mset({f"{prefix}{i:012d}": self.value for i in range(start, min(self.keys, start + 1000))})

    def remove(self, raw: Any) -> None:
        prefix = self.key.replace("__rand_int__", "")
        for start in range(0, self.keys, 1000):
            raw.unlink(*(f"{prefix}{i:012d}" for i in range(start, min(self.keys, start + 1000))))

    def options(self) -> dict[str, str]:
        """Workload -> the redis-benchmark options it runs (for the report)."""
        get = f"-r {self.keys} GET {self.key}"
        set_ = f"-r {self.keys} SET {self.key} <{self.value_bytes} B>"
        return {
            "seq": f"-c 1 {get}",
            "seq_set": f"-c 1 {set_}",
            "conc": f"-c {CONCURRENCY} {get}",
            "conc_set": f"-c {CONCURRENCY} {set_}",
            "get_many": f"-c {BATCH_CLIENTS} -P {self.batch} {get}",
            "upsert": f"-c {BATCH_CLIENTS} -P {self.batch} {set_}",
        }

    def does(self, step: Step) -> bool:
        return step.kind in ("seq", "seq_set", "conc", "conc_set", "get_many", "upsert")

    def run(self, wl: Workload, kind: str, n: int, offset: int) -> dict[str, float]:
        get, set_ = ("GET", self.key), ("SET", self.key, self.value)
        if kind in ("seq", "seq_set"):
            n = max(n, MIN_REQUESTS["seq"])
            row = self.bench(1, 1, n, *(get if kind == "seq" else set_))
            return {"p50": row["p50_us"], "p99": row["p99_us"], "n": n}
        if kind in ("conc", "conc_set"):
            n = max(n, MIN_REQUESTS["conc"])
            row = self.bench(CONCURRENCY, 1, n, *(get if kind == "conc" else set_))
            return {"ops": row["rps"], "n": n}
        requests = max(n * self.batch, MIN_REQUESTS["batch"])
        row = self.bench(BATCH_CLIENTS, self.batch, requests, *(get if kind == "get_many" else set_))
        return {"batches": row["rps"] / self.batch, "records": row["rps"], "n": requests // self.batch}

    def bench(self, clients: int, pipeline: int, requests: int, *command: str) -> dict[str, float]:
        """One redis-benchmark run of ``command``: requests/s and latency percentiles (µs)."""
        args = [self.binary, "-h", HOST, "-p", str(self.port), "-c", str(clients), "-P", str(pipeline)]
        args += ["-n", str(requests), "-r", str(self.keys), "--csv", *command]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"redis-benchmark exited with {done.returncode}: {done.stderr.strip()[:500]}")
        # --csv: a header, then one row per test: test, rps, avg, min, p50, p95, p99, max (ms)
        rows = [r for r in csv.reader(done.stdout.splitlines()) if r and r[0] != "test"]
        if len(rows) != 1:
            raise RuntimeError(f"unexpected redis-benchmark output: {done.stdout[:500]!r}")
        row = rows[0]
        out = {"rps": float(row[1]), "p50_us": float(row[4]) * 1000, "p99_us": float(row[6]) * 1000}
        if not all(0 < v < float("inf") for v in out.values()):
            raise RuntimeError(f"redis-benchmark reported {out} for {requests} requests")
        return out

    def close(self) -> None:
        """Nothing to close: every run is its own process."""
