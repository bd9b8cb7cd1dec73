"""nano-graphrag's own shapes on one node: batches of 500 ``text_chunks`` records of
~4.8 KB (what a 1200-token chunk weighs) and of ~1.8 KB ``llm_response_cache``
records, against redis-benchmark pipelines of 500 with values of the same size; and
the key-count rows (keys.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis
from competitors import GlideKV, RedisPyAsyncKV, RedisPySyncKV
from dataset import LLM_CACHE, TEXT_CHUNKS, Dataset
from harness import (
    GLIDE,
    LIMIT,
    NANO_A,
    NANO_B,
    RPY_A,
    RPY_S,
    Client,
    Measured,
    Step,
    Workload,
    close_all,
    measure,
    nano,
    nano_blocking,
    verify,
    warm_up,
)
from keys import NAMESPACE as KEYS_NS
from keys import KeyClient, measure_keys
from limits import RedisBenchmark
from report import BATCHES, KEYS, RECORDS, STEADY, render_table

BATCH = 500
CHUNK_TEXT_BYTES = 4690  # + the other fields: ~4.8 KB of JSON per record
CACHE_TEXT_BYTES = 1750  # ~1.8 KB per record
TEXT_PLAN = [
    Step("get_many", "shape_batch_ops", 1, 2, "all"),
    Step("get_fields", "shape_batch_ops", 1, 2, "all"),
    Step("upsert", "shape_upsert_ops", 1, 0, "all"),
]
CACHE_PLAN = [
    Step("get_many", "shape_batch_ops", 1, 2, "all"),
    Step("upsert", "shape_upsert_ops", 1, 0, "all"),
]
ORDER = [NANO_A, NANO_B, RPY_A, RPY_S, GLIDE, LIMIT]


def clients_for(url: str, port: int, data: Dataset, loop: asyncio.AbstractEventLoop) -> list[Client]:
    return [
        Client.of(NANO_A, nano(url), data, loop),
        Client.of(NANO_B, nano_blocking(url), data),
        Client.of(RPY_A, lambda ns: RedisPyAsyncKV(url, ns), data, loop),
        Client.of(RPY_S, lambda ns: RedisPySyncKV(url, ns), data),
        Client.of(GLIDE, lambda ns: GlideKV.create(port, ns), data, loop),
    ]


def key_clients(url: str, port: int, loop: asyncio.AbstractEventLoop) -> list[KeyClient]:
    def at(db: int) -> str:
        return f"{url}/{db}"

    makers: list[tuple[str, Callable[[int], Any], Any]] = [
        (NANO_A, lambda db: nano(at(db))(KEYS_NS), loop),
        (NANO_B, lambda db: nano_blocking(at(db))(KEYS_NS), None),
        (RPY_A, lambda db: RedisPyAsyncKV(at(db), KEYS_NS), loop),
        (RPY_S, lambda db: RedisPySyncKV(at(db), KEYS_NS), None),
        (GLIDE, lambda db: GlideKV.create(port, KEYS_NS, db), loop),
    ]
    return [KeyClient(label, make, lp) for label, make, lp in makers]


def run_shapes(url: str, port: int, prof: dict, bench_binary: str | None) -> dict[str, Any]:
    """Both record shapes (rounds, and redis-benchmark's options) and the key counts."""
    raw = redis.Redis.from_url(url)
    out: dict[str, Any] = {"batch": BATCH}
    for shape, text_bytes, plan in (
        (TEXT_CHUNKS, CHUNK_TEXT_BYTES, TEXT_PLAN),
        (LLM_CACHE, CACHE_TEXT_BYTES, CACHE_PLAN),
    ):
        t0 = time.perf_counter()
        data = Dataset(prof["shape_records"], BATCH, text_bytes, shape, tag=f"_{BATCH}")
        loop = asyncio.new_event_loop()
        clients = clients_for(url, port, data, loop)
        data.load(clients[1].kv)
        verify(clients, data, raw.mget)
        rows: list[Measured] = list(clients)
        limit = None
        if bench_binary is not None:
            limit = RedisBenchmark(bench_binary, port, round(data.avg_bytes), BATCH, len(data.ids), f"{shape}{BATCH}")
            limit.populate(raw)
            rows.append(limit)
        wl = Workload(data, prof["max_seconds"])
        warm_up(rows, wl, plan)
        res = measure(rows, wl, plan, prof, shape)
        close_all(clients)
        if limit is not None:
            limit.remove(raw)
        out[shape] = {
            "rounds": res,
            "records": len(data.ids),
            "avg_bytes": data.avg_bytes,
            "limit_options": limit.options() if limit else {},
            "seconds": time.perf_counter() - t0,
        }
    loop = asyncio.new_event_loop()
    kc = key_clients(url, port, loop)
    out["keys"] = {"rounds": measure_keys(kc, port, prof["keys_small"], prof["keys_large"], prof["keys_rounds"])}
    for c in kc:
        c.close()
    loop.close()
    raw.close()
    return out


def render_shapes(out: dict[str, Any], prof: dict) -> list[str]:
    text, cache = out[TEXT_CHUNKS], out[LLM_CACHE]
    fields = "fields={content, tokens}"
    md = [
        f"## nano-graphrag shapes: batches of {BATCH}, key counts (single node)",
        "",
        f"- rounds: {prof['rounds']} (median reported; key counts: {prof['keys_rounds']}); per round "
        f"{prof['shape_batch_ops']} get_by_ids and {prof['shape_upsert_ops']} upsert batches of {BATCH} per client "
        f"and shape; each loop capped at {prof['max_seconds']:.0f} s",
        f"- text_chunks: {text['records']} records of ~{text['avg_bytes']:,.0f} B (the weight of a 1200-token "
        f"chunk); llm_response_cache: {cache['records']} records of ~{cache['avg_bytes']:,.0f} B "
        '(`{"return": ..., "model": ...}`)',
        "- redis-benchmark: `-P 500` (its default 50 connections) GET / SET of values of the records' "
        "average size, in the same rounds",
        f"- verified once before timing: every client returned equal records (whole and with {fields}) and "
        "wrote records that decode equally; every client's all_keys returned exactly the stored ids, and every "
        "timed drop left the namespace empty (checked after each drop)",
        "- valkey-glide: SCAN / UNLINK through its `scan` and `unlink` calls, as redis-py. The uvloop rows "
        "are in the single-node section only.",
        f"- {STEADY}",
        "",
    ]
    tables = [
        (f"S1. get_by_ids of {BATCH} ~4.8 KB text_chunks records", BATCHES, text, "get_many"),
        (f"S2. get_by_ids of {BATCH} ~4.8 KB text_chunks records, {fields}", BATCHES, text, "get_fields"),
        (f"S3. upsert of {BATCH} ~4.8 KB text_chunks records", RECORDS, text, "upsert"),
        (f"S4. get_by_ids of {BATCH} ~1.8 KB llm_response_cache records", BATCHES, cache, "get_many"),
        (f"S5. upsert of {BATCH} ~1.8 KB llm_response_cache records", RECORDS, cache, "upsert"),
    ]
    for title, metrics, section, kind in tables:
        md.append(
            render_table(title, "One call at a time (higher is better).", metrics, section["rounds"][kind], ORDER)
        )
    keys = out["keys"]["rounds"]

    def n(case: str) -> str:
        return f"{keys[case][NANO_A][0]['n']:,}"

    key_tables = [
        (f"S6. all_keys of {n('all_keys_small')} keys", "all_keys_small"),
        (f"S7. all_keys of {n('all_keys_large')} keys", "all_keys_large"),
        (f"S8. drop of {n('drop_large')} keys", "drop_large"),
    ]
    desc = (
        "The namespace alone in a database of its own (higher keys/s is better); peers: SCAN COUNT 10000 and "
        "decode (all_keys), SCAN COUNT 10000 + UNLINK of each page (drop)."
    )
    for title, case in key_tables:
        md.append(render_table(title, desc, KEYS, keys[case], ORDER))
    return md
