"""nano-graphrag key-value storages backed by Redis.

:class:`RedisKVStorage` is a drop-in ``BaseKVStorage``::

    GraphRAG(key_string_value_json_storage_cls=RedisKVStorage,
             addon_params={"redis_url": "redis://localhost:6379"})

:class:`BlockingRedisKVStorage` offers the same operations to code without an event
loop (scripts, threads); it waits with the GIL released.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

from nano_graphrag.base import BaseKVStorage

from ._core import Store
from .fork_compat import BlockingForkCompat, ForkCompat

__all__ = ["RedisKVStorage", "BlockingRedisKVStorage"]

Record = Any


class _Facade:
    """What both storages share: the core store they wrap, and what they say about
    themselves."""

    namespace: str
    global_config: dict[str, Any]
    _store: Store

    def _open(
        self, namespace: str, global_config: dict[str, Any] | None, settings: dict[str, Any], blocking: bool
    ) -> None:
        self.namespace = namespace
        self.global_config = global_config if global_config is not None else {}
        self._store = Store(namespace, self.global_config, settings or None, blocking)

    def redis_key(self, id: str) -> bytes:
        """The Redis key that holds record ``id``."""
        return self._store.key(id)

    def settings(self) -> dict[str, Any]:
        """The resolved settings, safe to log (no password)."""
        return self._store.describe()

    def __repr__(self) -> str:
        d = self._store.describe()
        ttl = d["ttl"] if d["ttl"] is not None else "none"
        workspace = f", workspace={d['workspace']!r}" if d["workspace"] else ""
        return (
            f"{type(self).__name__}(namespace={d['namespace']!r}, url={d['url']!r}, "
            f"key_prefix={d['key_prefix']!r}{workspace}, ttl={ttl})"
        )


@dataclass(init=False, repr=False, eq=False)
class RedisKVStorage(_Facade, ForkCompat, BaseKVStorage):
    """A nano-graphrag ``BaseKVStorage`` that keeps each record as a JSON string in Redis.

    Built by GraphRAG as ``RedisKVStorage(namespace=..., global_config=...)``; the
    constructor validates settings but does no I/O (the connection opens on first use,
    and is shared with every storage that has the same connection settings).

    Settings come from, in order of precedence: keyword arguments here
    (``redis_url=...``), top-level ``redis_*`` keys of ``global_config``,
    ``global_config["addon_params"]``, environment variables (``REDIS_URL``, ...),
    defaults. See the README for the full table.

    Every method may raise :class:`~nano_graphrag_redis.errors.RedisKVError`
    subclasses: ``StorageUnavailableError`` (unreachable after retries),
    ``StorageOperationError`` (the server said no), ``SerializationError``.

    :class:`~nano_graphrag_redis.fork_compat.ForkCompat` adds what the
    remcohendriks/nano-graphrag fork's backups, health check and stats call
    (``_prefix``, ``_redis_client``, ``_ensure_initialized``, ``get_stats``); the fork
    finds them by this class's name, so keep it (a subclass is named differently).
    """

    def __init__(
        self,
        namespace: str,
        global_config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self._open(namespace, global_config, settings, blocking=False)

    async def all_keys(self) -> list[str]:
        """Every id of this namespace, in no particular order."""
        return await self._store.ids()

    async def get_by_id(self, id: str) -> Record | None:
        """The record stored under ``id``, or None."""
        return await self._store.get(id)

    async def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list[Record | None]:
        """Records aligned with ``ids`` (None where missing), in one round trip.

        With ``fields``, each record keeps only those keys; as in nano-graphrag's
        JsonKVStorage, an empty (falsy) record then reads as None.
        """
        return await self._store.get_many(ids, fields)

    async def filter_keys(self, data: list[str]) -> set[str]:
        """The ids of ``data`` that are NOT stored."""
        return await self._store.missing(data)

    async def upsert(self, data: dict[str, Record]) -> None:
        """Stores every record whole, replacing what was there; all or nothing.

        Every value is encoded before anything is sent: one value that JSON cannot
        hold raises ``SerializationError`` and nothing of the batch is written.
        """
        await self._store.put(data)

    async def drop(self) -> None:
        """Removes every record of this namespace (and nothing else)."""
        await self._store.clear()

    async def delete_by_id(self, id: str) -> bool:
        """Removes one record; True if it existed."""
        return await self._store.delete(id)

    async def ping(self) -> None:
        """One round trip to Redis; raises if it cannot be reached."""
        await self._store.ping()

    async def index_done_callback(self) -> None:
        """Every write is already in Redis. With ``redis_atomic_rebuild`` it makes a
        rebuilt ``community_reports`` live in one switch; otherwise it does nothing (it
        runs after every LLM call, so it must stay O(1))."""
        if self._store.staging:
            await self._store.commit()

    async def close(self) -> None:
        """Lets go of the shared connection (closed when no storage uses it). Using the
        storage again reconnects."""
        self._store.close()

    async def __aenter__(self) -> RedisKVStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def blocking(self) -> BlockingRedisKVStorage:
        """A blocking storage of the same namespace and settings (sharing the
        connection)."""
        view = BlockingRedisKVStorage.__new__(BlockingRedisKVStorage)
        view.namespace = self.namespace
        view.global_config = self.global_config
        view._store = self._store.as_blocking()
        return view


class BlockingRedisKVStorage(_Facade, BlockingForkCompat):
    """The operations of :class:`RedisKVStorage`, for code without an event loop.

    Same constructor, same settings, same results and errors; each call waits for
    Redis with the GIL released, so threads run in parallel.
    """

    def __init__(
        self,
        namespace: str,
        global_config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self._open(namespace, global_config, settings, blocking=True)

    def all_keys(self) -> list[str]:
        """Every id of this namespace, in no particular order."""
        return self._store.ids()

    def get_by_id(self, id: str) -> Record | None:
        """The record stored under ``id``, or None."""
        return self._store.get(id)

    def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list[Record | None]:
        """Records aligned with ``ids``; see :meth:`RedisKVStorage.get_by_ids`."""
        return self._store.get_many(ids, fields)

    def filter_keys(self, data: list[str]) -> set[str]:
        """The ids of ``data`` that are NOT stored."""
        return self._store.missing(data)

    def upsert(self, data: dict[str, Record]) -> None:
        """Stores every record whole; all or nothing (see :meth:`RedisKVStorage.upsert`)."""
        self._store.put(data)

    def drop(self) -> None:
        """Removes every record of this namespace (and nothing else)."""
        self._store.clear()

    def delete_by_id(self, id: str) -> bool:
        """Removes one record; True if it existed."""
        return self._store.delete(id)

    def ping(self) -> None:
        """One round trip to Redis; raises if it cannot be reached."""
        self._store.ping()

    def index_start_callback(self) -> None:
        """Nothing to do."""

    def index_done_callback(self) -> None:
        """Makes a staged atomic rebuild live (see :meth:`RedisKVStorage.index_done_callback`)."""
        if self._store.staging:
            self._store.commit()

    def query_done_callback(self) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Lets go of the shared connection (closed when no storage uses it)."""
        self._store.close()

    def __enter__(self) -> BlockingRedisKVStorage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
