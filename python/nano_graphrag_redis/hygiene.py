"""Cache hygiene: how big a namespace is, and removing what is stale.

Every function works on one storage, so on one namespace of one workspace: it never
touches another workspace, another namespace or keys outside the key prefix. Each
scans the namespace (``SCAN``): a few round trips per thousand records, meant for a
script or the CLI (``nano-graphrag-redis cache ...``), not for a hot path. With
``dry_run`` nothing is written.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .storage import BlockingRedisKVStorage

__all__ = ["Usage", "usage", "purge", "delete_model", "delete_ids"]

#: Records per round trip.
PAGE = 1000

Progress = Callable[[int], object]


@dataclass(frozen=True)
class Usage:
    namespace: str
    workspace: str | None
    records: int
    #: The stored JSON, in bytes (keys and Redis' own overhead not included).
    bytes: int
    #: What the server spends on the records (``MEMORY USAGE``: keys and overhead
    #: included); None where the server forbids ``MEMORY``.
    memory_bytes: int | None = None


def _pages(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), PAGE):
        yield ids[start : start + PAGE]


def usage(storage: BlockingRedisKVStorage, progress: Progress | None = None) -> Usage:
    """How many records the namespace holds, how many bytes of JSON and of server
    memory: :meth:`~nano_graphrag_redis.BlockingRedisKVStorage.namespace_stats` of every
    record (exact). ``progress(n)`` hears each page of ``n`` records measured."""
    measured = 0

    def on_progress(stage: str, count: int) -> None:
        nonlocal measured
        if stage == "measured" and progress:
            progress(count - measured)
            measured = count

    found = storage.namespace_stats(sample=None, progress=on_progress)
    return Usage(storage.namespace, found["workspace"], found["records"], found["value_bytes"], found["memory_bytes"])


def purge(storage: BlockingRedisKVStorage, dry_run: bool = False) -> int:
    """Removes every record of the namespace; how many there were."""
    if dry_run:
        return len(storage.all_keys())
    return int(storage._store.clear())


def delete_model(
    storage: BlockingRedisKVStorage, model: str, dry_run: bool = False, progress: Progress | None = None
) -> list[str]:
    """Removes the cache entries whose ``model`` field matches ``model`` (an exact name,
    or a glob such as ``gpt-4*``): the stale answers after a model change. Returns their
    ids."""
    matched: list[str] = []
    for page in _pages(storage.all_keys()):
        records = storage.get_by_ids(page, fields={"model"})
        found = [
            id
            for id, record in zip(page, records, strict=True)
            if isinstance(record, dict)
            and isinstance(record.get("model"), str)
            and fnmatch.fnmatchcase(record["model"], model)
        ]
        if found and not dry_run:
            storage._store.delete_many(found)
        matched += found
        if progress:
            progress(len(page))
    return matched


def delete_ids(storage: BlockingRedisKVStorage, ids: list[str], dry_run: bool = False) -> int:
    """Removes the records of ``ids``; how many existed."""
    if dry_run:
        return len(ids) - len(storage.filter_keys(ids))
    return int(storage._store.delete_many(ids))
