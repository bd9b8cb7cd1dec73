"""What the factory-style fork remcohendriks/nano-graphrag calls on a KV storage
besides the ``BaseKVStorage`` operations, so its backups, health check and stats work
with :class:`~nano_graphrag_redis.RedisKVStorage`.

The fork's tools pick a code path by the storage's class NAME and then use private
attributes of the fork's own ``RedisKVStorage`` (``nano_graphrag/_storage/kv_redis.py``,
a redis-py client with ``decode_responses=False``). Checked against the fork at commit
670ae32:

- ``nano_graphrag/backup/exporters/kv_exporter.py``, ``KVExporter._export_redis_storage``
  and ``KVExporter.get_statistics`` (when ``type(storage).__name__ == "RedisKVStorage"``)::

      await storage._ensure_initialized()
      prefix = storage._prefix
      cursor, keys = await storage._redis_client.scan(cursor, match=f"{prefix}*", count=1000)
      ...                                     # until cursor == 0
      value = await storage._redis_client.get(key)   # for each key; JSON bytes or None
      original_key = key.decode().replace(prefix, "", 1)

  (its restore, ``_restore_redis_storage``, only calls the public ``upsert``);
- ``nano_graphrag/api/routers/health.py``, ``check_redis``: if the storage has
  ``_redis_client``, ``await _ensure_initialized()`` then
  ``return await _redis_client.ping()``, healthy only if that is ``True`` (without the
  attribute it reports Redis healthy without asking it);
- ``nano_graphrag/api/routers/management.py``, ``get_stats``:
  ``await storage.get_stats()`` when the storage has it.

:class:`ForkCompat` provides exactly these, on top of the storage's public operations
(``all_keys``, ``get_by_id``, ``ping``, ``redis_key``, ``settings``). ``_redis_client``
is NOT a Redis client: it has exactly ``scan``, ``get`` and ``ping``, restricted to the
storage's own namespace; anything else is an ``AttributeError``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

__all__ = ["ForkCompat", "ForkRedisClient", "BlockingForkCompat"]


class _Storage(Protocol):
    """The public operations of RedisKVStorage the compatibility surface is built on."""

    @property
    def namespace(self) -> str: ...
    def redis_key(self, id: str) -> bytes: ...
    def settings(self) -> dict[str, Any]: ...
    async def all_keys(self) -> list[str]: ...
    async def get_by_id(self, id: str) -> Any: ...
    async def ping(self) -> None: ...


class _BlockingStorage(Protocol):
    @property
    def namespace(self) -> str: ...
    def settings(self) -> dict[str, Any]: ...
    def ping(self) -> None: ...


def _stats(namespace: str, described: dict[str, Any]) -> dict[str, Any]:
    return {
        "backend": "nano-graphrag-redis",
        "namespace": namespace,
        "key_prefix": described["key_prefix"],
        "ttl_seconds": described["ttl"] or 0,  # 0 = no expiry, as in the fork
    }


def _prefix_of(storage: _Storage) -> str:
    # Keys are "{prefix}:{escaped namespace}:{id}" with the id unescaped, so the key of
    # the empty id is exactly what precedes every id of this namespace.
    return storage.redis_key("").decode("utf-8")


class ForkRedisClient:
    """The part of a redis-py asyncio client the fork calls through
    ``storage._redis_client``, for one storage's namespace only."""

    def __init__(self, storage: _Storage) -> None:
        self._storage = storage

    async def ping(self) -> bool:
        """One round trip to Redis: True, or raises (``StorageUnavailableError``, ...)."""
        await self._storage.ping()
        return True

    async def scan(
        self, cursor: int = 0, match: str | bytes | None = None, count: int | None = None
    ) -> tuple[int, list[bytes]]:
        """``(0, keys)``: every key of this namespace in one page (``count`` is a hint, as
        in Redis), as bytes, as redis-py returns them. ``match`` may only be this
        namespace's ``f"{_prefix}*"`` (or None); ``cursor`` only 0, the cursor this method
        hands out. Namespaces and ids are matched exactly, whatever glob characters they
        hold."""
        prefix = _prefix_of(self._storage)
        if isinstance(match, bytes):
            match = match.decode("utf-8")
        if match is not None and match != f"{prefix}*":
            raise ValueError(
                f"this adapter scans only its own namespace: match must be {prefix + '*'!r}, not {match!r}"
            )
        if cursor != 0:
            raise ValueError(f"unknown scan cursor {cursor!r}: this adapter returns every key at cursor 0")
        return 0, [self._storage.redis_key(id) for id in await self._storage.all_keys()]

    async def get(self, name: str | bytes) -> bytes | None:
        """The record under key ``name`` (a key :meth:`scan` returned) as JSON bytes, in
        the compact form this package stores; None if there is none."""
        key = name.decode("utf-8") if isinstance(name, bytes) else name
        prefix = _prefix_of(self._storage)
        if not key.startswith(prefix):
            raise ValueError(f"key {key!r} is not in this storage's namespace (prefix {prefix!r})")
        record = await self._storage.get_by_id(key[len(prefix) :])
        if record is None:
            return None
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ForkCompat:
    """Mixed into :class:`~nano_graphrag_redis.RedisKVStorage`: the private attributes
    the fork's backup exporter and API health check use, and a cheap ``get_stats()``
    for its management stats. See the module docstring for what calls what."""

    @property
    def _prefix(self: _Storage) -> str:
        """What precedes every id in this namespace's Redis keys (``nano_graphrag:full_docs:``)."""
        return _prefix_of(self)

    @property
    def _redis_client(self: _Storage) -> ForkRedisClient:
        """An adapter with the ``scan``/``get``/``ping`` the fork calls (not a Redis client)."""
        return ForkRedisClient(self)

    async def _ensure_initialized(self) -> None:
        """Nothing to do: the connection opens on first use (the fork's own class
        connects and PINGs here)."""

    async def get_stats(self: _Storage) -> dict[str, Any]:
        """What this storage is, after one PING (raises if Redis cannot be reached).

        Cheap on purpose: one round trip, no SCAN, no MEMORY USAGE, so it carries no
        record count (counting a namespace means scanning the whole keyspace)."""
        await self.ping()
        return _stats(self.namespace, self.settings())


class BlockingForkCompat:
    """Mixed into :class:`~nano_graphrag_redis.BlockingRedisKVStorage`: the same
    ``get_stats()``, blocking, so the two APIs stay in step (the fork itself only uses
    the async class)."""

    def get_stats(self: _BlockingStorage) -> dict[str, Any]:
        """What this storage is, after one PING (raises if Redis cannot be reached); see
        :meth:`ForkCompat.get_stats`."""
        self.ping()
        return _stats(self.namespace, self.settings())
