"""End to end: what moving the key-value storage to Redis costs a GraphRAG user.

An offline GraphRAG (this package's ``offline`` kit: byte-level tiktoken, a deterministic
fake LLM and embedding, no network) inserts a synthetic corpus and answers questions
(mostly local, some global and naive), once per key-value backend, each in a working
dir and under a key prefix of its own, so no run sees another's LLM cache:

* nano-graphrag's ``JsonKVStorage`` (the default: a dict, written to a JSON file by
  ``index_done_callback``, which nano-graphrag calls after every LLM call);
* this package's ``RedisKVStorage``;
* ``competitors.RedisPyKVStorage``, the same interface written on redis.asyncio.

The graph (NetworkX), the vector DBs (nano-vectordb) and the model are the same in
every run; only the key-value storage differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import redis
from competitors import RedisPyKVStorage
from harness import rotate
from nano_graphrag import GraphRAG, QueryParam
from report import median_of, paired, spread

from nano_graphrag_redis import RedisKVStorage
from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken

JSON = "JsonKVStorage (nano-graphrag default)"
NANO = "nano-graphrag-redis RedisKVStorage"
RPY = "redis-py asyncio BaseKVStorage"
BACKENDS = {JSON: None, NANO: RedisKVStorage, RPY: RedisPyKVStorage}
KV_NAMESPACES = ("full_docs", "text_chunks", "llm_response_cache", "community_reports")

DOC_BYTES = 10_000
# One token is one byte with the offline encoding: 4800-byte chunks are about the size of
# nano-graphrag's default 1200-token chunks of English with a real tokenizer.
CHUNK_BYTES = 4800
OVERLAP_BYTES = 400
# Per 10 questions: 7 local, 2 global, 1 naive (the first three cover every mode).
MODES = ["local", "global", "naive", "local", "local", "local", "local", "local", "global", "local"]

_FIRST = (
    "Marisol Tobias Ingrid Elena Oskar Lucia Anders Priya Mateo Helga "
    "Ravi Noor Casimir Yuki Bram Sunniva Idris Talia Emeric Wren"
).split()
_LAST = (
    "Vance Reed Park Lindqvist Moreau Okafor Brandt Castell Duarte Halloran "
    "Ibsen Kovac Marchetti Novak Quill Rosen Sato Thorne Varga Whitlock"
).split()
_PLACES = [
    "Port Alder", "Kestrel Island", "Mount Ferrow", "Lake Sorrel", "Greyhaven", "Cinder Bay",
    "Thistle Valley", "Harrow Coast", "Marrow River", "Port Eskel", "Gull Island", "Saltmere",
]  # fmt: skip
_ORGS = [
    "Alder Bay Institute", "Northwind Ferry Company", "Harbor Ledger", "Saltmere Cooperative",
    "Ferrow Mining Company", "Cinder Bay Museum", "Thistle Valley Council", "Harrow Coast Trust",
    "Lantern Guild", "Kestrel Society",
]  # fmt: skip
_EVENTS = ["Lighthouse Festival", "Ferrow Regatta", "Harvest Fair", "Lantern Parade", "Saltmere Festival"]
_SENTENCES = [
    "{p} met {q} at the {org} in {place} to plan the next season.",
    "{p} works for the {org}, which keeps an office in {place}.",
    "Every year {place} hosts the {event}, and {p} helps to organise it with {q}.",
    "{q} wrote a long report about the {org} and its work near {place}.",
    "{p} and {q} disagreed about the future of {place}, but the {org} found a compromise.",
    "During the {event}, {p} led visitors from {place} to the rooms of the {org}.",
    "{q} grew up in {place} and later joined the {org} as an adviser to {p}.",
    "The {org} asked {p} to count the seals near {place} before the {event}.",
]
_FILLER = [
    "the tide came in slowly that evening and the boats stayed in the harbour.",
    "the records of those years are kept in a cabinet by the window.",
    "nobody remembers exactly when the old pier was rebuilt.",
    "the weather turned cold early, and the ferries ran half empty.",
]


def corpus(total_bytes: int) -> list[str]:
    """Documents of ~10 KB about a shared cast (people, places, organisations, events);
    each document favours its own part of the cast, so the graph has communities."""
    rng = random.Random(7)
    people = [f"{f} {last}" for f, last in zip(_FIRST * 2, _LAST + _LAST[::-1], strict=True)]
    docs: list[str] = []
    for d in range(max(1, round(total_bytes / DOC_BYTES))):
        cast = [people[(d * 3 + k) % len(people)] for k in range(6)]
        size, sentences = 0, []
        while size < min(DOC_BYTES, total_bytes):
            p, q = rng.sample(cast, 2)
            s = rng.choice(_SENTENCES).format(
                p=p,
                q=q,
                org=_ORGS[(d + rng.randrange(2)) % len(_ORGS)],
                place=_PLACES[(d + rng.randrange(3)) % len(_PLACES)],
                event=_EVENTS[(d + rng.randrange(2)) % len(_EVENTS)],
            )
            if rng.random() < 0.3:
                s += " Later, " + rng.choice(_FILLER)
            sentences.append(s)
            size += len(s) + 1
            if len(sentences) % 6 == 0:
                sentences[-1] += "\n\n"
        docs.append(" ".join(sentences))
    return docs


def questions(n: int) -> list[tuple[str, str]]:
    rng = random.Random(11)
    people = [f"{f} {last}" for f, last in zip(_FIRST, _LAST, strict=True)]
    out = []
    for i in range(n):
        mode = MODES[i % len(MODES)]
        if mode == "local":
            p = rng.choice(people)
            q = f"Who is {p}?" if i % 2 else f"What does {p} do at the {rng.choice(_ORGS)}?"
        elif mode == "global":
            q = f"What are the main communities around {rng.choice(_PLACES)}?"
        else:
            q = f"What happens at the {rng.choice(_EVENTS)}?"
        out.append((mode, q))
    return out


class _Discard(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """nano-graphrag's INFO log and its progress prints (to stdout, where the report goes)
    are dropped while it runs; warnings still show."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        with contextlib.redirect_stdout(_Discard()):
            yield
    finally:
        logging.disable(previous)


async def run_once(backend: str, url: str, prefix: str, docs: list[str], asks: list[tuple[str, str]]) -> dict:
    """One GraphRAG life: build, insert ``docs``, answer ``asks``; seconds and what it stored."""
    cls = BACKENDS[backend]
    model = OfflineModel()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as work:
        kwargs = offline_graphrag_kwargs(work, model)
        kwargs.update(chunk_token_size=CHUNK_BYTES, chunk_overlap_token_size=OVERLAP_BYTES)
        if cls is not None:
            kwargs.update(key_string_value_json_storage_cls=cls)
            kwargs["addon_params"] = {"redis_url": url, "redis_key_prefix": prefix}
        t0 = time.perf_counter()
        rag = GraphRAG(**kwargs)
        await rag.ainsert(docs)
        t1 = time.perf_counter()
        answers = [await rag.aquery(q, QueryParam(mode=mode)) for mode, q in asks]
        t2 = time.perf_counter()
        storages = [getattr(rag, ns) for ns in KV_NAMESPACES]
        stored = {ns: sorted(await s.all_keys()) for ns, s in zip(KV_NAMESPACES, storages, strict=True)}
        for s in storages:
            if hasattr(s, "close"):
                await s.close()
    assert all(answers), f"{backend}: empty answer"
    return {"insert_s": t1 - t0, "query_s": t2 - t1, "total_s": t2 - t0, "llm_calls": model.calls, "stored": stored}


def _forget(raw: redis.Redis, prefix: str) -> None:
    for key in raw.scan_iter(match=prefix + ":*", count=10_000):
        raw.unlink(key)


def run_e2e(url: str, doc_bytes: int, n_questions: int, rounds: int) -> dict[str, Any]:
    """Every backend, ``rounds`` times (order rotated): per backend, each round's seconds;
    checks that every backend stored the same ids in every key-value namespace."""
    docs, asks = corpus(doc_bytes), questions(n_questions)
    raw = redis.Redis.from_url(url)
    res: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    counts: dict[str, dict[str, int]] = {}
    with offline_tiktoken(), quiet():
        # Untimed: the imports and first calls of clustering, embedding and the vector DB.
        for b in BACKENDS:
            asyncio.run(run_once(b, url, "bench_e2e_warm", [SAMPLE_TEXT], questions(3)))
            _forget(raw, "bench_e2e_warm")
        stored_first: dict[str, list[str]] | None = None
        for r in range(rounds):
            print(f"end-to-end round {r + 1}/{rounds} ...", file=sys.stderr)
            for i, b in enumerate(rotate(list(BACKENDS), r)):
                prefix = f"bench_e2e_{r}_{i}"
                out = asyncio.run(run_once(b, url, prefix, docs, asks))
                _forget(raw, prefix)
                stored = out.pop("stored")
                counts[b] = {ns: len(ids) for ns, ids in stored.items()}
                # The LLM cache may differ: a local query's prompt iterates Python sets.
                del stored["llm_response_cache"]
                stored_first = stored_first or stored
                assert stored == stored_first, f"{b} stored different ids than another backend"
                res[b].append(out)
    raw.close()
    return {
        "rounds": res,
        "records": counts[JSON],
        "corpus_bytes": sum(len(d.encode()) for d in docs),
        "documents": len(docs),
        "questions": {m: sum(1 for mode, _ in asks if mode == m) for m in ("local", "global", "naive")},
    }


def render_e2e(out: dict[str, Any]) -> list[str]:
    rounds = out["rounds"]
    n_rounds = len(rounds[JSON])
    asks = out["questions"]
    recs = ", ".join(f"{ns} {n}" for ns, n in out["records"].items())
    md = [
        "## End to end: an offline GraphRAG on three key-value backends",
        "",
        f"- corpus: {out['documents']} synthetic documents, {out['corpus_bytes'] / 1e3:,.0f} KB, chunks of "
        f"{CHUNK_BYTES} bytes (offline byte-level tokens: about a real 1200-token chunk); "
        f"{sum(asks.values())} questions: {asks['local']} local, {asks['global']} global, {asks['naive']} naive",
        "- one run = build GraphRAG, insert the corpus, answer the questions, with the package's offline model "
        "and embedding (no network); every backend in its own temp working dir and key prefix (no shared LLM "
        f"cache); rounds: {n_rounds} (backends rotated, median reported)",
        f"- records stored per run: {recs}; every backend stored the same ids (checked each run)",
        "- 'time vs JsonKVStorage': the median of the per-round ratios of total seconds, > 1 = slower than "
        "nano-graphrag's default (which keeps everything in a dict and rewrites a JSON file after every LLM call)",
        "",
        "| backend | insert s | queries s | total s | spread | time vs JsonKVStorage | LLM calls |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in BACKENDS:
        rs = rounds[b]
        vs = statistics.median(paired(rs, rounds[JSON], lambda a, j: a["total_s"] / j["total_s"]))
        seconds = " | ".join(f"{median_of(rs, k):.2f}" for k in ("insert_s", "query_s", "total_s"))
        md.append(f"| {b} | {seconds} | {spread([r['total_s'] for r in rs])} | {vs:.2f}x | {rs[0]['llm_calls']} |")
    md.append("")
    return md
