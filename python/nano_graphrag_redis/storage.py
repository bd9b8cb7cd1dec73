"""nano-graphrag key-value storages backed by Redis.

:class:`RedisKVStorage` is a drop-in ``BaseKVStorage``::

    GraphRAG(key_string_value_json_storage_cls=RedisKVStorage,
             addon_params={"redis_url": "redis://localhost:6379"})

:class:`BlockingRedisKVStorage` offers the same operations to code without an event
loop (scripts, threads); it waits with the GIL released.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from nano_graphrag.base import BaseKVStorage

from ._core import Store
from .fork_compat import BlockingForkCompat, ForkCompat
from .tracing import one, sized, traced, traced_async

__all__ = ["RedisKVStorage", "BlockingRedisKVStorage"]

Record = Any
#: ``progress(stage, count)``: ``("scanned", keys found so far)``, then
#: ``("measured", records measured so far)``.
Progress = Callable[[str, int], object]
#: Records whose size :meth:`RedisKVStorage.namespace_stats` measures by default.
DEFAULT_SAMPLE = 1000


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

    def stats(self) -> dict[str, dict[str, Any]]:
        """This namespace's metrics in this process, per operation called so far (see
        :func:`nano_graphrag_redis.metrics.stats` for the fields). O(1): counters
        kept in memory, no I/O. Empty with ``redis_metrics=False``."""
        return self._store.stats()

    def _namespace_report(self, raw: dict[str, int | None]) -> dict[str, Any]:
        records, sampled = raw["records"] or 0, raw["sampled"] or 0
        scale = records / sampled if sampled else 0.0
        memory = raw["memory_bytes"]
        return {
            "namespace": self.namespace,
            "workspace": self.settings()["workspace"],
            "records": records,
            "sampled": sampled,
            "exact": sampled == records,
            "value_bytes": round((raw["value_bytes"] or 0) * scale),
            "memory_bytes": None if memory is None else round(memory * scale),
        }

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

    @traced_async("all_keys")
    def all_keys(self) -> Awaitable[list[str]]:
        """Every id of this namespace, in no particular order."""
        return self._store.ids()

    @traced_async("get_by_id", one)
    def get_by_id(self, id: str) -> Awaitable[Record | None]:
        """The record stored under ``id``, or None."""
        return self._store.get(id)

    @traced_async("get_by_ids", sized)
    def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> Awaitable[list[Record | None]]:
        """Records aligned with ``ids`` (None where missing), in one round trip.

        With ``fields``, each record keeps only those keys; as in nano-graphrag's
        JsonKVStorage, an empty (falsy) record then reads as None.
        """
        return self._store.get_many(ids, fields)

    @traced_async("filter_keys", sized)
    def filter_keys(self, data: list[str]) -> Awaitable[set[str]]:
        """The ids of ``data`` that are NOT stored."""
        return self._store.missing(data)

    @traced_async("upsert", sized)
    def upsert(self, data: dict[str, Record]) -> Awaitable[None]:
        """Stores every record whole, replacing what was there; all or nothing.

        Every value is encoded before anything is sent: one value that JSON cannot
        hold raises ``SerializationError`` and nothing of the batch is written.
        """
        return self._store.put(data)

    @traced_async("drop")
    async def drop(self) -> None:
        """Removes every record of this namespace (and nothing else)."""
        await self._store.clear()

    @traced_async("delete_by_id", one)
    def delete_by_id(self, id: str) -> Awaitable[bool]:
        """Removes one record; True if it existed."""
        return self._store.delete(id)

    @traced_async("ping")
    def ping(self) -> Awaitable[None]:
        """One round trip to Redis; raises if it cannot be reached."""
        return self._store.ping()

    async def namespace_stats(
        self, sample: int | None = DEFAULT_SAMPLE, progress: Progress | None = None
    ) -> dict[str, Any]:
        """How big this namespace is: HEAVY, it scans the namespace (``SCAN``), then
        measures ``sample`` records picked at random (``STRLEN`` and ``MEMORY USAGE``;
        every record with ``sample=None``). For scripts and the CLI, never a hot path;
        the cheap, O(1) numbers are :meth:`stats`.

        Returns ``{"namespace", "workspace", "records", "sampled", "exact",
        "value_bytes", "memory_bytes"}``: the sizes are estimates for the whole
        namespace (exact when ``exact``); ``memory_bytes`` is None where the server
        forbids ``MEMORY``. ``progress(stage, count)`` hears how far it got.
        """
        return self._namespace_report(await self._store.namespace_stats(sample, progress))

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

    @traced("all_keys")
    def all_keys(self) -> list[str]:
        """Every id of this namespace, in no particular order."""
        return self._store.ids()

    @traced("get_by_id", one)
    def get_by_id(self, id: str) -> Record | None:
        """The record stored under ``id``, or None."""
        return self._store.get(id)

    @traced("get_by_ids", sized)
    def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list[Record | None]:
        """Records aligned with ``ids``; see :meth:`RedisKVStorage.get_by_ids`."""
        return self._store.get_many(ids, fields)

    @traced("filter_keys", sized)
    def filter_keys(self, data: list[str]) -> set[str]:
        """The ids of ``data`` that are NOT stored."""
        return self._store.missing(data)

    @traced("upsert", sized)
    def upsert(self, data: dict[str, Record]) -> None:
        """Stores every record whole; all or nothing (see :meth:`RedisKVStorage.upsert`)."""
        self._store.put(data)

    @traced("drop")
    def drop(self) -> None:
        """Removes every record of this namespace (and nothing else)."""
        self._store.clear()

    @traced("delete_by_id", one)
    def delete_by_id(self, id: str) -> bool:
        """Removes one record; True if it existed."""
        return self._store.delete(id)

    @traced("ping")
    def ping(self) -> None:
        """One round trip to Redis; raises if it cannot be reached."""
        self._store.ping()

    def namespace_stats(self, sample: int | None = DEFAULT_SAMPLE, progress: Progress | None = None) -> dict[str, Any]:
        """How big this namespace is; HEAVY (it scans): see
        :meth:`RedisKVStorage.namespace_stats`."""
        return self._namespace_report(self._store.namespace_stats(sample, progress))

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
