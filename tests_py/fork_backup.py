"""Stand-ins for the code of the factory-style fork remcohendriks/nano-graphrag (commit
670ae32, MIT) that reaches into a KV storage beyond ``BaseKVStorage``. The fork cannot
be installed in CI (it replaces the ``nano_graphrag`` package), so its code paths are
mirrored here call for call; only logging, FastAPI and pydantic are left out.

- :class:`KVExporter`: ``nano_graphrag/backup/exporters/kv_exporter.py``, ``KVExporter``
  (``export``/``_export_namespace``/``_export_redis_storage``, ``restore``/
  ``_restore_namespace``/``_restore_redis_storage``, ``get_statistics``). It is what
  ``BackupManager._export_kv``/``_restore_kv`` (``nano_graphrag/backup/manager.py``) run
  on ``full_docs``, ``text_chunks``, ``community_reports``, ``llm_response_cache``.
- :func:`check_redis`: ``nano_graphrag/api/routers/health.py``, ``check_redis``, and how
  ``health_check`` turns its result into a flag (``redis_health is True``).
- :func:`management_stats`: ``nano_graphrag/api/routers/management.py``, ``get_stats``
  (its KV part).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

KV_NAMESPACES = ("full_docs", "text_chunks", "community_reports", "llm_response_cache")


class KVExporter:
    def __init__(self, storages: dict[str, Any]) -> None:
        self.storages = storages
        self.warnings: list[str] = []  # the fork logs these (logger.warning)

    async def export(self, output_dir: Path) -> Path:
        kv_dir = output_dir / "kv"
        kv_dir.mkdir(parents=True, exist_ok=True)
        for namespace, storage in self.storages.items():
            await self._export_namespace(storage, namespace, kv_dir)
        return kv_dir

    async def _export_namespace(self, storage: Any, namespace: str, output_dir: Path) -> None:
        storage_type = type(storage).__name__
        if storage_type == "JsonKVStorage":
            await self._export_json_storage(storage, namespace, output_dir)
        elif storage_type == "RedisKVStorage":
            await self._export_redis_storage(storage, namespace, output_dir)
        else:
            self.warnings.append(f"Unknown KV storage type: {storage_type}")

    async def _export_json_storage(self, storage: Any, namespace: str, output_dir: Path) -> None:
        all_data = await storage.get_by_ids(await storage.all_keys())
        with open(output_dir / f"{namespace}.json", "w") as f:
            json.dump(all_data, f, indent=2, default=str)

    async def _export_redis_storage(self, storage: Any, namespace: str, output_dir: Path) -> None:
        await storage._ensure_initialized()
        prefix = storage._prefix
        cursor = 0
        all_keys = []
        while True:
            cursor, keys = await storage._redis_client.scan(cursor, match=f"{prefix}*", count=1000)
            all_keys.extend(keys)
            if cursor == 0:
                break
        all_data = {}
        for key in all_keys:
            original_key = key.decode() if isinstance(key, bytes) else key
            original_key = original_key.replace(prefix, "", 1)
            value = await storage._redis_client.get(key)
            if value:
                value_str = value.decode() if isinstance(value, bytes) else value
                try:
                    all_data[original_key] = json.loads(value_str)
                except json.JSONDecodeError:
                    all_data[original_key] = value_str
        with open(output_dir / f"{namespace}.json", "w") as f:
            json.dump(all_data, f, indent=2, default=str)

    async def restore(self, kv_dir: Path) -> None:
        for namespace, storage in self.storages.items():
            json_file = kv_dir / f"{namespace}.json"
            if not json_file.exists():
                self.warnings.append(f"No backup file for namespace: {namespace}")
                continue
            await self._restore_namespace(storage, namespace, json_file)

    async def _restore_namespace(self, storage: Any, namespace: str, json_file: Path) -> None:
        with open(json_file) as f:
            data = json.load(f)
        storage_type = type(storage).__name__
        if storage_type == "JsonKVStorage":
            for key, value in data.items():
                await storage.upsert({key: value})
        elif storage_type == "RedisKVStorage":
            await storage.upsert(data)

    async def get_statistics(self) -> dict[str, int]:
        stats = {}
        for namespace, storage in self.storages.items():
            storage_type = type(storage).__name__
            if storage_type == "JsonKVStorage":
                stats[namespace] = len(await storage.all_keys())
            elif storage_type == "RedisKVStorage":
                await storage._ensure_initialized()
                prefix = storage._prefix
                cursor = 0
                key_count = 0
                while True:
                    cursor, keys = await storage._redis_client.scan(cursor, match=f"{prefix}*", count=1000)
                    key_count += len(keys)
                    if cursor == 0:
                        break
                stats[namespace] = key_count
        return {
            "documents": stats.get("full_docs", 0),
            "chunks": stats.get("text_chunks", 0),
            "reports": stats.get("community_reports", 0),
        }


async def check_redis(full_docs: Any) -> bool:
    """``check_redis(graphrag)`` with ``graphrag.full_docs`` passed directly, followed by
    ``health_check``'s ``redis_ok = redis_health is True``."""

    async def check() -> Any:
        try:
            if hasattr(full_docs, "_redis_client"):
                await full_docs._ensure_initialized()
                return await full_docs._redis_client.ping()
            return True  # "Assume healthy if using JSON storage"
        except Exception:
            return False

    (result,) = await asyncio.gather(check(), return_exceptions=True)
    return result is True


async def management_stats(full_docs: Any, text_chunks: Any, community_reports: Any) -> dict[str, Any]:
    """The KV part of ``get_stats(graphrag)``."""
    stats: dict[str, Any] = {}
    try:
        if hasattr(full_docs, "get_stats"):
            stats["documents"] = await full_docs.get_stats()
        if hasattr(text_chunks, "get_stats"):
            stats["chunks"] = await text_chunks.get_stats()
        if hasattr(community_reports, "get_stats"):
            stats["communities"] = await community_reports.get_stats()
    except Exception as e:
        stats["kv_error"] = str(e)
    return stats
