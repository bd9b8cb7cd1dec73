"""Moving records between nano-graphrag's JSON files and Redis.

``migrate`` reads every ``kv_store_{namespace}.json`` that JsonKVStorage wrote and
writes it to Redis; ``export`` writes Redis back to such files (the rollback path), in
exactly JsonKVStorage's format. Both work namespace by namespace in batches.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RedisKVError
from .storage import BlockingRedisKVStorage

__all__ = [
    "STANDARD_NAMESPACES",
    "MigrationError",
    "NamespaceReport",
    "find_json_stores",
    "load_json_store",
    "migrate",
    "export",
    "read_records",
    "write_json_store",
]

STANDARD_NAMESPACES = ("full_docs", "text_chunks", "llm_response_cache", "community_reports")
_FILE = re.compile(r"^kv_store_(?P<namespace>.+)\.json$")


class MigrationError(RedisKVError):
    """Input that cannot be migrated (a corrupt file), or a failed verification."""


@dataclass
class NamespaceReport:
    namespace: str
    total: int = 0
    written: int = 0
    skipped: int = 0
    mismatched: list[str] = field(default_factory=list)


def find_json_stores(working_dir: Path, namespaces: Iterable[str] | None = None) -> dict[str, Path]:
    """``{namespace: path}`` of the JsonKVStorage files in ``working_dir``."""
    wanted = set(namespaces) if namespaces else None
    found = {}
    for path in sorted(working_dir.glob("kv_store_*.json")):
        match = _FILE.match(path.name)
        if match and (wanted is None or match["namespace"] in wanted):
            found[match["namespace"]] = path
    return found


def load_json_store(path: Path) -> dict[str, Any]:
    """A JsonKVStorage file's records; a corrupt or partial file is a MigrationError."""
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MigrationError(f"{path}: cannot be read as JSON ({e}); nothing was written for it") from None
    if not isinstance(data, dict):
        raise MigrationError(f"{path}: expected a JSON object of id -> record, got {type(data).__name__}")
    return data


def _batches(ids: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def migrate(
    records: dict[str, Any],
    store: BlockingRedisKVStorage,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    verify: bool = False,
    batch_size: int = 500,
    progress: Callable[[int], None] = lambda n: None,
) -> NamespaceReport:
    """Writes ``records`` to ``store`` in batches. Existing records are skipped unless
    ``overwrite``, so running it twice changes nothing. With ``verify``, every record is
    read back and compared. With ``dry_run``, nothing is written."""
    report = NamespaceReport(store.namespace, total=len(records))
    for ids in _batches(list(records), batch_size):
        if overwrite:
            todo = ids
        else:
            missing = store.filter_keys(ids)
            todo = [i for i in ids if i in missing]
        report.skipped += len(ids) - len(todo)
        if todo and not dry_run:
            store.upsert({i: records[i] for i in todo})
        report.written += len(todo)
        progress(len(ids))
    if verify and not dry_run:
        report.mismatched = verify_records(records, store, batch_size)
    return report


def verify_records(records: dict[str, Any], store: BlockingRedisKVStorage, batch_size: int = 500) -> list[str]:
    """The ids whose stored record differs from ``records`` (or is missing)."""
    mismatched = []
    for ids in _batches(list(records), batch_size):
        for rid, stored in zip(ids, store.get_by_ids(ids), strict=True):
            if stored != records[rid]:
                mismatched.append(rid)
    return mismatched


def read_records(
    store: BlockingRedisKVStorage, ids: Iterable[str] | None = None, batch_size: int = 500
) -> dict[str, Any]:
    """``{id: record}`` of ``ids`` (default: every id of ``store``), sorted by id, read in
    batches. Ids whose record is gone by the time it is read (expired) are left out."""
    ordered = sorted(store.all_keys() if ids is None else ids)
    data: dict[str, Any] = {}
    for batch in _batches(ordered, batch_size):
        for rid, record in zip(batch, store.get_by_ids(batch), strict=True):
            if record is not None:  # expired between the scan and the read
                data[rid] = record
    return data


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temp file next to ``path``, created as ``open(path, "w")`` would
    create ``path``: mode 0666 minus the umask (tempfile.mkstemp would make it 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_json_store(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` to ``path`` as JsonKVStorage does
    (``json.dump(..., indent=2, ensure_ascii=False)``), through a temp file and an
    atomic rename, so an interrupted write never leaves a truncated file. The file gets
    the permissions ``open(path, "w")`` would give it: an existing file's mode is kept,
    a new file follows the umask (0644 under umask 022)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            try:
                os.fchmod(f.fileno(), stat.S_IMODE(path.stat().st_mode))
            except FileNotFoundError:
                pass  # a new file: the umask already applied
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def export(store: BlockingRedisKVStorage, path: Path, batch_size: int = 500) -> int:
    """Writes every record of ``store`` to ``path`` (see :func:`write_json_store`).
    Returns the number of records."""
    data = read_records(store, batch_size=batch_size)
    write_json_store(path, data)
    return len(data)
