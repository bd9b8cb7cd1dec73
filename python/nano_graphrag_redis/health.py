"""What the servers behind a storage say about themselves: version, role, round trip,
memory and eviction policy, persistence, load. Used by ``nano-graphrag-redis ping``
and ``stats``; each call is a few round trips per server (``PING``, ``INFO``,
``CONFIG GET``), never a scan.
"""

from __future__ import annotations

import statistics
from typing import Any

from .errors import StorageOperationError
from .storage import BlockingRedisKVStorage

__all__ = ["parse_info", "server_reports", "EVICTING"]

#: Eviction policies that may evict records without a TTL (documents, chunks).
EVICTING = ("allkeys-",)


def parse_info(text: str) -> dict[str, str]:
    """``INFO``'s ``field:value`` lines as a dict (section headers and blanks skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def _config(storage: BlockingRedisKVStorage, name: str) -> dict[str, str | None]:
    """``CONFIG GET name`` per server; None where ``CONFIG`` is disabled or forbidden
    (managed services, ACL users)."""
    try:
        replies = storage._store.on_each_server(["CONFIG", "GET", name])
    except StorageOperationError:
        return {}
    values: dict[str, str | None] = {}
    for server, reply, _ in replies:
        pairs = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else dict(reply or {})
        values[server] = pairs.get(name)
    return values


def server_reports(storage: BlockingRedisKVStorage, pings: int = 10) -> list[dict[str, Any]]:
    """One report per server that serves keys (raises if one cannot be reached)::

    {"server", "version", "mode", "role", "rtt_ms": {"min", "p50", "max"},
     "memory": {"used_bytes", "maxmemory_bytes", "policy"},
     "persistence": {"rdb_save", "rdb_last_save_ok", "seconds_since_save",
                     "changes_since_save", "aof_enabled", "appendfsync"},
     "load": {"connected_clients", "ops_per_sec", "keyspace_hits",
              "keyspace_misses", "keys"},
     "warnings": [...]}

    ``rdb_save`` and ``appendfsync`` are None where ``CONFIG`` is not allowed.
    """
    rtts: dict[str, list[float]] = {}
    for _ in range(max(1, pings)):
        for server, _, seconds in storage._store.on_each_server(["PING"]):
            rtts.setdefault(server, []).append(seconds * 1000)
    infos = {server: parse_info(text) for server, text, _ in storage._store.on_each_server(["INFO"])}
    save = _config(storage, "save")
    fsync = _config(storage, "appendfsync")
    reports = []
    for server, info in infos.items():
        times = sorted(rtts.get(server, [0.0]))
        keys = sum(
            int(part.split("=")[1])
            for name, value in info.items()
            if name.startswith("db")
            for part in value.split(",")
            if part.startswith("keys=")
        )
        report = {
            "server": server,
            "version": info.get("redis_version"),
            "mode": info.get("redis_mode"),
            "role": info.get("role"),
            "rtt_ms": {"min": times[0], "p50": statistics.median(times), "max": times[-1]},
            "memory": {
                "used_bytes": _int(info.get("used_memory")),
                "maxmemory_bytes": _int(info.get("maxmemory")),
                "policy": info.get("maxmemory_policy"),
            },
            "persistence": {
                "rdb_save": save.get(server),
                "rdb_last_save_ok": info.get("rdb_last_bgsave_status") == "ok",
                "seconds_since_save": _since(info),
                "changes_since_save": _int(info.get("rdb_changes_since_last_save")),
                "aof_enabled": info.get("aof_enabled") == "1",
                "appendfsync": fsync.get(server),
            },
            "load": {
                "connected_clients": _int(info.get("connected_clients")),
                "ops_per_sec": _int(info.get("instantaneous_ops_per_sec")),
                "keyspace_hits": _int(info.get("keyspace_hits")),
                "keyspace_misses": _int(info.get("keyspace_misses")),
                "keys": keys,
            },
        }
        report["warnings"] = _warnings(report)
        reports.append(report)
    return reports


def _warnings(report: dict[str, Any]) -> list[str]:
    warnings = []
    policy = report["memory"]["policy"] or ""
    if policy.startswith(EVICTING):
        warnings.append(
            f"maxmemory-policy {policy}: under memory pressure Redis evicts records without a TTL "
            "(documents, chunks); use volatile-lru or noeviction"
        )
    persistence = report["persistence"]
    if persistence["rdb_save"] == "" and not persistence["aof_enabled"]:
        warnings.append("no persistence (no RDB save schedule, AOF off): a restart loses every record")
    elif not persistence["rdb_last_save_ok"] and persistence["rdb_save"]:
        warnings.append("the last RDB save failed (rdb_last_bgsave_status is not ok)")
    return warnings


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _since(info: dict[str, str]) -> int | None:
    last, now = _int(info.get("rdb_last_save_time")), _int(info.get("server_time_usec"))
    if last is None or now is None:
        return None
    return max(0, now // 1_000_000 - last)
