"""Memory rows: how much the client process grows while it holds many records.

Each measurement runs in a fresh Python process (this file as a script), so nothing
earlier in the benchmark (other clients, caches, freed-but-kept arenas) is counted:
the process connects and warms up, resets the kernel's peak-RSS mark, does ONE
operation while keeping its result, and reports the peak RSS minus the RSS before.
The growth is compared with the payload, the stored JSON of the records it read.

    python bench/memory.py URL NAMESPACE CASE N CLIENT

CASE ``conc``: N ``get_by_id`` awaited at once (``asyncio.gather``), all in flight;
``batch``: one ``get_by_ids`` of N ids. CLIENT ``nano`` (this package) or ``redis-py``
(redis-py asyncio, GET or MGET + json.loads, the reference; for ``conc`` with a pool of
64 connections, as redis-py would otherwise open one connection per call).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from dataset import bulk_ids, bulk_values, json_bytes

NAMESPACE = "bench_memory"
CLIENTS = ("nano", "redis-py")
LOAD_BATCH = 500


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def deep_size(obj: Any) -> int:
    """Bytes of ``obj`` and everything it holds (lists, dicts, their keys and values),
    each object counted once: what the decoded records must take, in any client."""
    seen: set[int] = set()
    total, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack += list(o.keys()) + list(o.values())
        elif isinstance(o, list):
            stack += o
    return total


async def _measure(url: str, namespace: str, case: str, n: int, client: str) -> dict[str, Any]:
    ids = bulk_ids(n)
    if client == "nano":
        from nano_graphrag_redis import RedisKVStorage

        kv: Any = RedisKVStorage(namespace, redis_url=url)
    else:
        from competitors import RedisPyAsyncKV

        kv = RedisPyAsyncKV(url, namespace, max_connections=64 if case == "conc" else None)
    # Warm-up: the connection, the runtime's threads and buffers, the code paths.
    await kv.get_by_ids(ids[:100])
    await asyncio.gather(*(kv.get_by_id(i) for i in ids[:100]))
    gc.collect()
    exact = _reset_peak()
    base_kb = _status_kb("VmRSS")
    if case == "conc":
        got = await asyncio.gather(*(kv.get_by_id(i) for i in ids))
    else:
        got = await kv.get_by_ids(ids)
    peak_kb = _status_kb("VmHWM")
    assert len(got) == n and all(r is not None for r in got), "records missing"
    await kv.close()
    return {
        "base_bytes": base_kb * 1024,
        "growth_bytes": (peak_kb - base_kb) * 1024,
        "objects_bytes": deep_size(got),
        "peak_reset": exact,
    }


def load(blocking_store: Any, n: int) -> None:
    """Writes the ``n`` records the measurements read (the first ``k`` of them are the
    records a measurement of ``k`` reads)."""
    ids, values = bulk_ids(n), bulk_values(n)
    for start in range(0, n, LOAD_BATCH):
        end = start + LOAD_BATCH
        blocking_store.upsert(dict(zip(ids[start:end], values[start:end], strict=True)))


@functools.cache  # the same n is measured for every client
def payload_bytes(n: int) -> int:
    """The stored JSON of the first ``n`` records."""
    return sum(json_bytes(v) for v in bulk_values(n))


def measure(url: str, case: str, n: int, client: str = "nano") -> dict[str, Any]:
    """One measurement in a fresh process; adds the payload and growth / payload."""
    args = [sys.executable, str(Path(__file__)), url, NAMESPACE, case, str(n), client]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed ({case}, {client}):\n{done.stderr[-2000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    payload = payload_bytes(n)
    return {
        "case": case,
        "client": client,
        "n": n,
        "payload_bytes": payload,
        **row,
        "ratio": row["growth_bytes"] / payload,
    }


def run_memory(url: str, n_conc: int, n_batch: int) -> dict[str, Any]:
    """Loads the records (blocking API, batches of 500), measures every case, drops them."""
    from nano_graphrag_redis import BlockingRedisKVStorage

    store = BlockingRedisKVStorage(NAMESPACE, redis_url=url)
    load(store, max(n_conc, n_batch))
    rows = [measure(url, case, n, client) for case, n in (("conc", n_conc), ("batch", n_batch)) for client in CLIENTS]
    store.drop()
    store.close()
    return {"rows": rows}


def render_memory(out: dict[str, Any]) -> list[str]:
    md = [
        "## Client memory",
        "",
        "Each row is one fresh Python process: connect, warm up, reset the peak-RSS mark (`/proc/self/clear_refs`), "
        "then ONE operation whose result is kept; growth = peak RSS (`VmHWM`) - RSS before. Payload = the stored "
        "JSON of the records read (~1.8 KB text_chunks records of English text with Latin-1 accents, which Python "
        "keeps at one byte per character). 'objects' = what the decoded records themselves take "
        "(`sys.getsizeof`, deep), the floor for any client. Target for this package: growth < 2x payload. "
        "redis-py asyncio is shown as a reference (GET / MGET + json.loads; for the concurrent gets with a "
        "BlockingConnectionPool of 64 connections, since it would otherwise open one per call).",
        "",
        "| operation | client | records | payload MB | objects MB | RSS growth MB | growth / payload |",
        "|---|---|---|---|---|---|---|",
    ]
    what = {"conc": "concurrent get_by_id (asyncio.gather, all in flight)", "batch": "one get_by_ids"}
    client = {"nano": "nano-graphrag-redis (async)", "redis-py": "redis-py asyncio"}
    for r in out["rows"]:
        exact = "" if r["peak_reset"] else " (peak since start)"
        md.append(
            f"| {what[r['case']]} | {client[r['client']]} | {r['n']:,} | {r['payload_bytes'] / 1e6:,.1f} "
            f"| {r['objects_bytes'] / 1e6:,.1f} | {r['growth_bytes'] / 1e6:,.1f}{exact} | {r['ratio']:.2f}x |"
        )
    md.append("")
    return md


if __name__ == "__main__":
    url, namespace, case, n, client = sys.argv[1:6]
    print(json.dumps(asyncio.run(_measure(url, namespace, case, int(n), client))))
