"""The benchmark's data: nano-graphrag-shaped records, made deterministically (seeded)."""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from typing import Any

_WORDS = (
    "the graph entity relation community report chunk token summary node edge retrieval "
    "knowledge local global query answer model document source embedding vector cluster "
    "leiden hierarchy description keyword context window prompt response cache storage "
    "redis key value namespace record index insert update delete search rank score"
).split()
_NON_ASCII = [
    "naïve",
    "café",
    "Zürich",
    "résumé",
    "façade",
    "Ελλάδα",
    "東京",
    "知识图谱",
    "Москва",
    "São Paulo",
    "coöperate",
    "—",
    "«quoted»",
    "µs",
    "Ærø",
    "İstanbul",
    "🙂",
]
_LATIN_1 = [w for w in _NON_ASCII if max(map(ord, w)) < 256]

TEXT_CHUNKS = "text_chunks"
LLM_CACHE = "llm_response_cache"
#: What nano-graphrag asks of text_chunks when it needs the text and its size only.
CHUNK_FIELDS = frozenset({"content", "tokens"})


def make_text(rng: random.Random, target_bytes: int = 1700, non_ascii: list[str] = _NON_ASCII) -> str:
    """~target_bytes of UTF-8 prose, about 1 word in 12 non-ASCII."""
    words: list[str] = []
    size = 0
    while size < target_bytes:
        w = rng.choice(non_ascii) if rng.random() < 1 / 12 else rng.choice(_WORDS)
        if rng.random() < 0.08:
            w += "."
        words.append(w)
        size += len(w.encode("utf-8")) + 1
    return " ".join(words)


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def make_records(n: int, seed: int, text_bytes: int = 1700) -> dict[str, dict[str, Any]]:
    """nano-graphrag ``text_chunks`` records: tokens, content, chunk_order_index, full_doc_id."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        content = make_text(rng, text_bytes)
        out["chunk-" + md5(content)] = {
            "tokens": rng.randint(900, 1200),
            "content": content,
            "chunk_order_index": len(out) % 8,
            "full_doc_id": "doc-" + md5(str(len(out) // 8)),
        }
    return out


def make_cache_records(n: int, seed: int, text_bytes: int = 1700) -> dict[str, dict[str, Any]]:
    """nano-graphrag ``llm_response_cache`` records: ``{"return": answer, "model": name}``
    under the md5 of the prompt, as ``nano_graphrag._llm`` writes them."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    while len(out) < n:
        answer = make_text(rng, text_bytes)
        out[md5(answer)] = {"return": answer, "model": "gpt-4o-mini"}
    return out


def json_bytes(record: Any) -> int:
    """The size of ``record`` as this package stores it: compact UTF-8 JSON."""
    return len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


class Dataset:
    """What one section reads (``records``, loaded once into ``read_ns``), asks for
    (``ids``, ``miss_ids``) and writes (``upsert_batches`` of ``batch`` records, each
    client into a namespace of its own)."""

    def __init__(self, n: int, batch: int, text_bytes: int = 1700, shape: str = TEXT_CHUNKS, tag: str = "") -> None:
        make = make_cache_records if shape == LLM_CACHE else make_records
        self.shape = shape
        self.batch = batch
        self.read_ns = shape + tag  # the tag keeps two datasets of one shape apart
        self.tag = tag
        self.fields = CHUNK_FIELDS if shape == TEXT_CHUNKS else None
        self.records = make(n, seed=1, text_bytes=text_bytes)
        self.ids = list(self.records)
        self.miss_ids = [f"chunk-missing-{i:05d}" for i in range(2000)]
        # At least two batches, so consecutive upserts never write the same records.
        src = make(max(1000, 2 * batch), seed=2, text_bytes=text_bytes)
        up_ids = list(src)
        self.upsert_batches = [{k: src[k] for k in up_ids[i : i + batch]} for i in range(0, len(up_ids), batch)]
        self.expected = {k: json.loads(json.dumps(v)) for k, v in self.records.items()}
        self.avg_bytes = statistics.mean(json_bytes(v) for v in self.records.values())

    def load(self, blocking_store: Any) -> None:
        """Writes the read data set with the library itself (compact UTF-8 JSON)."""
        ids = self.ids
        for i in range(0, len(ids), 500):
            blocking_store.upsert({k: self.records[k] for k in ids[i : i + 500]})

    def projected(self, id: str) -> dict[str, Any] | None:
        """What ``get_by_ids([id], fields=self.fields)`` returns (JsonKVStorage's rule)."""
        record = self.expected.get(id)
        if not record or self.fields is None:
            return record
        return {k: v for k, v in record.items() if k in self.fields}


def key_ids(n: int, tag: str) -> list[str]:
    """``n`` distinct ids shaped like nano-graphrag's (a prefix and an md5)."""
    return ["chunk-" + md5(f"{tag}-{i}") for i in range(n)]


def key_values(ids: list[str]) -> list[bytes]:
    """Small records (~150 B) for the key-count rows (SCAN and UNLINK do not look at
    values), encoded once as this package stores them."""
    return [
        json.dumps({"return": f"answer {i} " + "x" * 100, "model": "gpt-4o-mini"}, separators=(",", ":")).encode()
        for i, _ in enumerate(ids)
    ]


def bulk_ids(n: int) -> list[str]:
    """The ids of :func:`bulk_values`, cheap to make again in another process."""
    return ["chunk-" + md5(f"bulk-{i}") for i in range(n)]


def bulk_values(n: int) -> list[dict[str, Any]]:
    """``n`` distinct ~1.8 KB ``text_chunks`` records of English text, made fast: 64 texts
    reused with a distinct tail (the memory rows need many records, not many distinct
    texts). Their non-ASCII words are Latin-1, as in most English text: Python keeps such a
    string at one byte per character, where one CJK character or emoji would make the
    whole string take 2 or 4 per character, in any client."""
    rng = random.Random(3)
    texts = [make_text(rng, 1680, _LATIN_1) for _ in range(64)]
    return [
        {
            "tokens": 900 + i % 300,
            "content": f"{texts[i % 64]} {i:08d}",
            "chunk_order_index": i % 8,
            "full_doc_id": f"doc-{i // 8:08d}",
        }
        for i in range(n)
    ]
