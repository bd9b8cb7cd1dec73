"""The competitors: nano-graphrag key-value storages a user would write on other clients.

Each does what nano-graphrag asks of a ``BaseKVStorage`` the plain way on its client:
GET + json.loads, MGET + json.loads (and ``fields`` projected as nano-graphrag's
JsonKVStorage does), a pipeline of EXISTS, MSET of ``json.dumps(ensure_ascii=False)``,
SCAN (COUNT 10000) for ``all_keys``, and SCAN + UNLINK page by page for ``drop``.
All use this package's key layout, ``{prefix}:{namespace}:{id}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from glide import Batch, GlideClient, GlideClientConfiguration, NodeAddress
from nano_graphrag.base import BaseKVStorage

HOST = "127.0.0.1"  # loopback only
PREFIX = "nano_graphrag"
# Keys per SCAN page: large pages mean few round trips (the server's default is 10).
SCAN_COUNT = 10_000


def decode(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


def project(records: list[Any], fields: set[str] | frozenset[str] | None) -> list[Any]:
    """``fields`` applied as nano-graphrag's JsonKVStorage does (a falsy record reads as None)."""
    if fields is None:
        return records
    return [{k: v for k, v in r.items() if k in fields} if r else None for r in records]


def encode(data: dict[str, Any], prefix: str) -> dict[str, str]:
    return {prefix + k: json.dumps(v, ensure_ascii=False) for k, v in data.items()}


class _RedisPyAsyncOps:
    """The operations on a ``redis.asyncio`` client ``_r``, keys under ``_p``."""

    _r: Any
    _p: str

    async def get_by_id(self, id: str) -> Any:
        return decode(await self._r.get(self._p + id))

    async def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list:
        raws = await self._r.mget([self._p + i for i in ids])
        return project([decode(r) for r in raws], fields)

    async def filter_keys(self, data: list[str]) -> set[str]:
        pipe = self._r.pipeline(transaction=False)
        for i in data:
            pipe.exists(self._p + i)
        res = await pipe.execute()
        return {i for i, n in zip(data, res, strict=False) if not n}

    async def upsert(self, data: dict[str, Any]) -> None:
        await self._r.mset(encode(data, self._p))

    async def all_keys(self) -> list[str]:
        cut, out, cursor = len(self._p), [], 0
        while True:
            cursor, keys = await self._r.scan(cursor, match=self._p + "*", count=SCAN_COUNT)
            out += [k[cut:].decode() for k in keys]
            if cursor == 0:
                return out

    async def drop(self) -> None:
        cursor = 0
        while True:
            cursor, keys = await self._r.scan(cursor, match=self._p + "*", count=SCAN_COUNT)
            if keys:
                await self._r.unlink(*keys)
            if cursor == 0:
                return

    async def close(self) -> None:
        await self._r.aclose()


class RedisPyAsyncKV(_RedisPyAsyncOps):
    def __init__(self, url: str, namespace: str, prefix: str = PREFIX, max_connections: int | None = None) -> None:
        if max_connections is None:  # redis-py's default: a connection per concurrent call
            self._r = redis.asyncio.Redis.from_url(url)
        else:  # what a careful user does for thousands of concurrent calls (maxclients is 10000)
            pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=max_connections)
            self._r = redis.asyncio.Redis(connection_pool=pool)
        self._p = f"{prefix}:{namespace}:"


@dataclass
class RedisPyKVStorage(_RedisPyAsyncOps, BaseKVStorage):
    """The same, as a real nano-graphrag ``BaseKVStorage`` for GraphRAG's
    ``key_string_value_json_storage_cls`` (settings from ``addon_params``)."""

    def __post_init__(self) -> None:
        addon = self.global_config.get("addon_params", {})
        self._r = redis.asyncio.Redis.from_url(addon["redis_url"])
        self._p = f"{addon.get('redis_key_prefix', PREFIX)}:{self.namespace}:"


class RedisPySyncKV:
    def __init__(self, url: str, namespace: str, prefix: str = PREFIX) -> None:
        self._r = redis.Redis.from_url(url)  # thread-safe: one connection per thread
        self._p = f"{prefix}:{namespace}:"

    def get_by_id(self, id: str) -> Any:
        return decode(self._r.get(self._p + id))

    def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list:
        raws = self._r.mget([self._p + i for i in ids])
        return project([decode(r) for r in raws], fields)

    def filter_keys(self, data: list[str]) -> set[str]:
        pipe = self._r.pipeline(transaction=False)
        for i in data:
            pipe.exists(self._p + i)
        res = pipe.execute()
        return {i for i, n in zip(data, res, strict=False) if not n}

    def upsert(self, data: dict[str, Any]) -> None:
        self._r.mset(encode(data, self._p))

    def all_keys(self) -> list[str]:
        cut, out, cursor = len(self._p), [], 0
        while True:
            cursor, keys = self._r.scan(cursor, match=self._p + "*", count=SCAN_COUNT)
            out += [k[cut:].decode() for k in keys]
            if cursor == 0:
                return out

    def drop(self) -> None:
        cursor = 0
        while True:
            cursor, keys = self._r.scan(cursor, match=self._p + "*", count=SCAN_COUNT)
            if keys:
                self._r.unlink(*keys)
            if cursor == 0:
                return

    def close(self) -> None:
        self._r.close()


def conn_name(label: str) -> str:
    """The CLIENT SETNAME of a redis-py client's connections: the counts tell them apart
    from nano-graphrag-redis's (which stay unnamed)."""
    return "bench-" + "".join(c if c.isalnum() else "-" for c in label)


# On a cluster: the same code on redis-py's cluster clients, with the multi-key calls
# redis-py offers there. mget_nonatomic / mset_nonatomic group the keys by slot and send
# one MGET / MSET per slot, as one pipeline per master (the masters one after the other in
# the sync client, concurrently in the asyncio one). filter_keys stays a non-transactional
# pipeline of EXISTS (redis-py's cluster pipeline also groups it per master). Each record
# travels in one command either way, as in nano-graphrag-redis's per-master pipelines.


class RedisPyAsyncClusterKV(RedisPyAsyncKV):
    def __init__(self, url: str, namespace: str, label: str) -> None:
        self._r = redis.asyncio.cluster.RedisCluster.from_url(url, client_name=conn_name(label))
        self._p = f"{PREFIX}:{namespace}:"

    async def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list:
        raws = await self._r.mget_nonatomic([self._p + i for i in ids])
        return project([decode(r) for r in raws], fields)

    async def upsert(self, data: dict[str, Any]) -> None:
        await self._r.mset_nonatomic(encode(data, self._p))


class RedisPyClusterKV(RedisPySyncKV):
    def __init__(self, url: str, namespace: str, label: str) -> None:
        self._r = redis.cluster.RedisCluster.from_url(url, client_name=conn_name(label))
        self._p = f"{PREFIX}:{namespace}:"

    def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list:
        raws = self._r.mget_nonatomic([self._p + i for i in ids])
        return project([decode(r) for r in raws], fields)

    def upsert(self, data: dict[str, Any]) -> None:
        self._r.mset_nonatomic(encode(data, self._p))


class GlideKV:
    def __init__(self, client: GlideClient, namespace: str, prefix: str = PREFIX) -> None:
        self._c = client
        self._p = f"{prefix}:{namespace}:"

    @classmethod
    async def create(cls, port: int, namespace: str, db: int = 0) -> GlideKV:
        # request_timeout 5 s like nano-graphrag-redis's socket timeout (glide's default is
        # 250 ms, which a noisy 2-core machine can exceed on a 2.4 MB MGET).
        cfg = GlideClientConfiguration([NodeAddress(HOST, port)], request_timeout=5000, database_id=db or None)
        return cls(await GlideClient.create(cfg), namespace)

    async def get_by_id(self, id: str) -> Any:
        return decode(await self._c.get(self._p + id))

    async def get_by_ids(self, ids: list[str], fields: set[str] | None = None) -> list:
        raws = await self._c.mget([self._p + i for i in ids])
        return project([decode(r) for r in raws], fields)

    async def filter_keys(self, data: list[str]) -> set[str]:
        batch = Batch(is_atomic=False)  # a pipeline, like redis-py's transaction=False
        for i in data:
            batch.exists([self._p + i])
        res = await self._c.exec(batch, raise_on_error=True)
        return {i for i, n in zip(data, res or (), strict=False) if not n}

    async def upsert(self, data: dict[str, Any]) -> None:
        await self._c.mset(encode(data, self._p))

    async def all_keys(self) -> list[str]:
        cut, out, cursor = len(self._p), [], b"0"
        while True:
            cursor, keys = await self._c.scan(cursor, match=self._p + "*", count=SCAN_COUNT)
            out += [k[cut:].decode() for k in keys]
            if cursor == b"0":
                return out

    async def drop(self) -> None:
        cursor = b"0"
        while True:
            cursor, keys = await self._c.scan(cursor, match=self._p + "*", count=SCAN_COUNT)
            if keys:
                await self._c.unlink(keys)
            if cursor == b"0":
                return

    async def close(self) -> None:
        await self._c.close()
