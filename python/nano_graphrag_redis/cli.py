"""The ``nano-graphrag-redis`` command (also ``python -m nano_graphrag_redis``).

Exit codes: 0 success, 1 failure (Redis, input data, verification), 2 usage or
configuration error. Errors print as one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, RedisKVError

DEFAULT_URL = "redis://localhost:6379"  # the same as demo.DEFAULT_URL (not imported: demo is heavy)


def _common(defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes. They are accepted before and after the command
    name; only the top level sets defaults, so a subcommand never overwrites a value
    given before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        # None, not $REDIS_URL or DEFAULT_URL: the demo must know whether a URL was given
        # (see _redis_url).
        default=None if defaults else argparse.SUPPRESS,
        help=f"Redis URL (default: $REDIS_URL or {DEFAULT_URL}); the password may also come from $REDIS_PASSWORD",
    )
    common.add_argument(
        "--workspace",
        default=None if defaults else argparse.SUPPRESS,
        help="the workspace (project) whose records to use (default: $REDIS_WORKSPACE, or none: "
        "then every project on this Redis shares the records)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    parser = argparse.ArgumentParser(
        prog="nano-graphrag-redis",
        description="Redis key-value storage for nano-graphrag: demo, migration, export, health and stats.",
        parents=[_common(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run GraphRAG on Redis end to end (starts a throwaway redis-server if none is reachable)",
        description="Insert a small bundled text into GraphRAG on Redis and ask a question. Without "
        "OPENAI_API_KEY a built-in offline deterministic model answers. Run it twice: the second run "
        "is served from the Redis LLM cache. A URL you give (--redis-url or $REDIS_URL) is used, and the demo "
        f"fails if it cannot reach it; only when none is given and nothing answers at {DEFAULT_URL} does it "
        "start a throwaway redis-server.",
    )
    demo.add_argument(
        "--working-dir",
        type=Path,
        default=Path("nano_graphrag_redis_demo"),
        help="GraphRAG working directory (graph, vectors, throwaway Redis data); default %(default)s",
    )
    demo.add_argument("--question", default=None, help="the question to ask")
    demo.add_argument("--mode", choices=["local", "global", "naive"], default="global", help="query mode")
    demo.add_argument("--key-prefix", default="nano_graphrag_demo", help="Redis key prefix (default %(default)s)")
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="also show nano-graphrag's log (its progress lines show whenever stdout is a terminal)",
    )

    for name, helptext, description in [
        (
            "migrate",
            "copy JsonKVStorage files (kv_store_*.json) into Redis",
            "Load every kv_store_{namespace}.json of a working directory and write it to Redis in batches. "
            "Existing records are skipped unless --overwrite; running it twice changes nothing. Every file is "
            "read and checked before anything is written.",
        ),
        (
            "export",
            "write Redis back to kv_store_*.json files (rollback)",
            "Write each namespace to kv_store_{namespace}.json in the format nano-graphrag's JsonKVStorage "
            "loads, through a temp file and an atomic rename.",
        ),
    ]:
        p = sub.add_parser(name, parents=[common], help=helptext, description=description)
        p.add_argument("--working-dir", type=Path, required=True, help="nano-graphrag working directory")
        p.add_argument(
            "--namespace",
            action="append",
            dest="namespaces",
            metavar="NS",
            help="only this namespace (repeatable); default: "
            + ("every kv_store_*.json file" if name == "migrate" else "the four nano-graphrag namespaces"),
        )
        p.add_argument(
            "--key-prefix", default=None, help="Redis key prefix (default: $REDIS_KEY_PREFIX or nano_graphrag)"
        )
        p.add_argument(
            "--batch-size", type=_positive_int, default=500, help="records per round trip (default %(default)s)"
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "migrate":
            p.add_argument("--dry-run", action="store_true", help="report what would be written, write nothing")
            p.add_argument("--overwrite", action="store_true", help="replace records that already exist")
            p.add_argument("--verify", action="store_true", help="read every record back and compare")
        else:
            p.add_argument(
                "--allow-empty",
                action="store_true",
                help="write the files even when no namespace has a record (otherwise that is an error)",
            )
    cache = sub.add_parser(
        "cache",
        parents=[common],
        help="count, size and clean a workspace's records (stale LLM answers, ...)",
        description="Cache hygiene, scoped to one key prefix and workspace: never touches another "
        "workspace, namespace or foreign keys. Every action scans the namespace (SCAN).",
    )
    cache.add_argument(
        "action",
        choices=["stats", "purge", "delete-model", "delete-ids"],
        help="stats: records and bytes per namespace; purge: remove every record of the namespaces; "
        "delete-model MODEL: remove cache entries of that model (a name or a glob, e.g. 'gpt-4*'); "
        "delete-ids ID...: remove those records",
    )
    cache.add_argument("values", nargs="*", metavar="ARG", help="the model (delete-model) or the ids (delete-ids)")
    cache.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="namespace (repeatable); default: llm_response_cache for delete-model, the four "
        "nano-graphrag namespaces for stats, required for purge and delete-ids",
    )
    cache.add_argument(
        "--key-prefix", default=None, help="Redis key prefix (default: $REDIS_KEY_PREFIX or nano_graphrag)"
    )
    cache.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    cache.add_argument("--quiet", action="store_true", help="no progress bar")

    ping = sub.add_parser(
        "ping",
        parents=[common],
        help="check the Redis servers: version, mode, round trip, eviction policy, persistence",
        description="Ask every server that serves keys (one server, each cluster master, the master behind "
        "Sentinel) for its version, role, round-trip time (PING), memory and eviction policy, and persistence "
        "settings, and warn about settings that can lose records. Exit 1 if a server cannot be reached.",
    )
    ping.add_argument("--count", type=_positive_int, default=10, help="PINGs per server (default %(default)s)")
    ping.add_argument("--json", action="store_true", help="print one JSON document")

    stats = sub.add_parser(
        "stats",
        parents=[common],
        help="server load, this process's client metrics, and (heavy, on request) records per namespace",
        description="Print each server's load (INFO: memory, clients, ops/s, keyspace hits), the client "
        "metrics this process gathered, and with --namespaces how many records each namespace holds and "
        "its size, estimated from a random sample (this scans the namespaces: heavy on big databases).",
    )
    stats.add_argument("--namespaces", action="store_true", help="also count and size the namespaces (SCAN: heavy)")
    stats.add_argument(
        "--namespace",
        action="append",
        dest="namespace_names",
        metavar="NS",
        help="with --namespaces: this namespace (repeatable); default the four nano-graphrag namespaces",
    )
    stats.add_argument(
        "--sample",
        type=int,
        default=1000,
        help="with --namespaces: records measured per namespace (0: all, exact); default %(default)s",
    )
    stats.add_argument(
        "--key-prefix", default=None, help="Redis key prefix (default: $REDIS_KEY_PREFIX or nano_graphrag)"
    )
    stats.add_argument("--json", action="store_true", help="print one JSON document")
    stats.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _redis_url(args: argparse.Namespace) -> tuple[str | None, str]:
    """The URL the user gave and where it came from (``--redis-url``, else
    ``$REDIS_URL``), or ``(None, "")`` when they gave none."""
    if args.redis_url is not None:
        return args.redis_url, "--redis-url"
    if "REDIS_URL" in os.environ:
        return os.environ["REDIS_URL"], "REDIS_URL"
    return None, ""


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    url, _ = _redis_url(args)
    settings: dict[str, Any] = {"redis_url": DEFAULT_URL if url is None else url}
    if getattr(args, "key_prefix", None):
        settings["redis_key_prefix"] = args.key_prefix
    if getattr(args, "workspace", None):
        settings["redis_workspace"] = args.workspace
    return settings


def _progress(total: int, label: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="rec", disable=quiet or not sys.stderr.isatty(), leave=False)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DEFAULT_QUESTION, run_demo

    url, given_by = _redis_url(args)
    run_demo(
        url,
        args.working_dir,
        args.question or DEFAULT_QUESTION,
        args.mode,
        args.key_prefix,
        given_by=given_by,
        verbose=args.verbose or args.debug,
        workspace=args.workspace,
    )
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .migration import MigrationError, find_json_stores, load_json_store, migrate
    from .storage import BlockingRedisKVStorage

    if not args.working_dir.is_dir():
        what = "is not a directory" if args.working_dir.exists() else "does not exist"
        raise MigrationError(f"working directory {args.working_dir} {what}")
    files = find_json_stores(args.working_dir)
    if not files:
        raise MigrationError(f"no kv_store_*.json files to migrate in {args.working_dir}")
    if args.namespaces:
        unknown = [ns for ns in dict.fromkeys(args.namespaces) if ns not in files]
        if unknown:
            names = ", ".join(f"{ns!r} (kv_store_{ns}.json)" for ns in unknown)
            raise MigrationError(
                f"no such namespace in {args.working_dir}: {names}; namespaces there: {', '.join(files)}"
            )
        files = {ns: path for ns, path in files.items() if ns in args.namespaces}
    # Read and check every file before writing anything.
    loaded = {namespace: load_json_store(path) for namespace, path in files.items()}
    failed = False
    for namespace, records in loaded.items():
        store = BlockingRedisKVStorage(namespace, **_settings(args))
        with _progress(len(records), namespace, args.quiet) as bar:
            report = migrate(
                records,
                store,
                overwrite=args.overwrite,
                dry_run=args.dry_run,
                verify=args.verify,
                batch_size=args.batch_size,
                progress=bar.update,
            )
        verb = "would write" if args.dry_run else "written"
        line = f"{namespace}: {report.total} records, {report.written} {verb}, {report.skipped} already in Redis"
        if args.verify and not args.dry_run:
            line += f", {len(report.mismatched)} differ" if report.mismatched else ", all verified"
            failed |= bool(report.mismatched)
        print(line)
    return 1 if failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .migration import STANDARD_NAMESPACES, MigrationError, read_records, write_json_store
    from .storage import BlockingRedisKVStorage

    namespaces = dict.fromkeys(args.namespaces or STANDARD_NAMESPACES)  # in order, without repeats
    stores = [BlockingRedisKVStorage(ns, **_settings(args)) for ns in namespaces]
    # Every namespace's ids first: an export with no record at all is refused before any
    # file is written (a wrong prefix, URL or database would otherwise "succeed").
    ids = {store.namespace: sorted(store.all_keys()) for store in stores}
    if not any(ids.values()) and not args.allow_empty:
        prefix = stores[0].settings()["key_prefix"]
        raise MigrationError(
            f"nothing to export: no records under key prefix {prefix!r} in {', '.join(ids)} "
            "(check --redis-url, --key-prefix and the database; --allow-empty writes the empty files anyway)"
        )
    for store in stores:
        path = args.working_dir / f"kv_store_{store.namespace}.json"
        data = read_records(store, ids[store.namespace], args.batch_size)
        write_json_store(path, data)
        print(f"{store.namespace}: {len(data)} records -> {path}")
    return 0


class _UsageError(Exception):
    """Arguments argparse cannot check (they depend on each other): exit 2."""


def _cmd_cache(args: argparse.Namespace) -> int:
    from . import hygiene
    from .migration import STANDARD_NAMESPACES
    from .storage import BlockingRedisKVStorage

    action, values = args.action, args.values
    defaults = {"stats": list(STANDARD_NAMESPACES), "delete-model": ["llm_response_cache"]}
    namespaces = args.namespaces or defaults.get(action)
    if not namespaces:
        raise _UsageError(f"cache {action} needs --namespace")
    if action == "delete-model" and len(values) != 1:
        raise _UsageError("cache delete-model takes one MODEL (a name or a glob)")
    if action == "delete-ids" and not values:
        raise _UsageError("cache delete-ids takes the ids to remove")
    if action in ("stats", "purge") and values:
        raise _UsageError(f"cache {action} takes no arguments besides options")
    would = "would remove" if args.dry_run else "removed"
    for namespace in namespaces:
        store = BlockingRedisKVStorage(namespace, **_settings(args))
        if action == "stats":
            with _progress(0, namespace, args.quiet) as bar:
                used = hygiene.usage(store, bar.update)
            print(f"{namespace}: {used.records} records, {used.bytes} bytes of JSON")
        elif action == "purge":
            print(f"{namespace}: {would} {hygiene.purge(store, args.dry_run)} records")
        elif action == "delete-model":
            with _progress(0, namespace, args.quiet) as bar:
                ids = hygiene.delete_model(store, values[0], args.dry_run, bar.update)
            print(f"{namespace}: {would} {len(ids)} entries of model {values[0]!r}")
        else:
            print(f"{namespace}: {would} {hygiene.delete_ids(store, values, args.dry_run)} of {len(values)} records")
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _cmd_ping(args: argparse.Namespace) -> int:
    from ._core import redact_url
    from .health import server_reports
    from .storage import BlockingRedisKVStorage

    store = BlockingRedisKVStorage("ping", **_settings(args))
    described = store.settings()
    reports = server_reports(store, pings=args.count)
    if args.json:
        print(json.dumps({"url": described["url"], "mode": described["mode"], "servers": reports}, indent=2))
        return 0
    print(f"{redact_url(described['url'])} ({described['mode']}): {len(reports)} server(s) answer")
    for r in reports:
        rtt = r["rtt_ms"]
        print(
            f"{r['server']}: Redis {r['version']} ({r['mode']}, {r['role']}), round trip {rtt['p50']:.2f} ms "
            f"(median of {args.count}; min {rtt['min']:.2f}, max {rtt['max']:.2f})"
        )
        memory = r["memory"]
        limit = f"maxmemory {_size(memory['maxmemory_bytes'])}" if memory["maxmemory_bytes"] else "no maxmemory"
        print(f"  memory: {_size(memory['used_bytes'])} used, {limit}, policy {memory['policy']}")
        p = r["persistence"]
        rdb = (
            "RDB unknown (CONFIG not allowed)"
            if p["rdb_save"] is None
            else (f"RDB save {p['rdb_save']!r}" if p["rdb_save"] else "RDB off")
        )
        if p["rdb_save"] and p["seconds_since_save"] is not None:
            state = "ok" if p["rdb_last_save_ok"] else "FAILED"
            rdb += f", last save {state} {p['seconds_since_save']} s ago"
        aof = f"AOF on (appendfsync {p['appendfsync'] or '?'})" if p["aof_enabled"] else "AOF off"
        print(f"  persistence: {rdb}; {aof}")
        for warning in r["warnings"]:
            print(f"  warning: {warning}")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from .health import server_reports
    from .metrics import stats as client_stats
    from .migration import STANDARD_NAMESPACES
    from .storage import BlockingRedisKVStorage

    if args.sample < 0:
        raise _UsageError("--sample must be >= 0 (0: measure every record)")
    if args.namespace_names and not args.namespaces:
        raise _UsageError("--namespace needs --namespaces")
    probe = BlockingRedisKVStorage("stats", **_settings(args))
    servers = [{"server": r["server"], "memory": r["memory"], **r["load"]} for r in server_reports(probe, pings=1)]
    namespaces = []
    if args.namespaces:
        for namespace in dict.fromkeys(args.namespace_names or STANDARD_NAMESPACES):
            store = BlockingRedisKVStorage(namespace, **_settings(args))
            with _progress(0, namespace, args.quiet or args.json) as bar:

                def progress(stage: str, count: int, bar: Any = bar) -> None:
                    bar.set_postfix_str(stage, refresh=False)
                    bar.n = count
                    bar.refresh()

                namespaces.append(store.namespace_stats(sample=args.sample or None, progress=progress))
    client = client_stats()
    if args.json:
        print(json.dumps({"servers": servers, "namespaces": namespaces, "client": client}, indent=2))
        return 0
    for s in servers:
        print(
            f"{s['server']}: {_size(s['memory']['used_bytes'])} used, {s['keys']} keys, "
            f"{s['connected_clients']} clients, {s['ops_per_sec']} ops/s, "
            f"keyspace hits {s['keyspace_hits']} / misses {s['keyspace_misses']}"
        )
    for n in namespaces:
        how = "exact" if n["exact"] else f"estimated from {n['sampled']} records"
        print(
            f"{n['namespace']}: {n['records']} records, {_size(n['value_bytes'])} of JSON, "
            f"{_size(n['memory_bytes'])} of server memory ({how})"
        )
    print("client metrics of this process:")
    for op in client["operations"]:
        latency = op["latency"]
        errors = sum(op["errors"].values())
        p50, p99 = latency["p50_seconds"] or 0.0, latency["p99_seconds"] or 0.0
        print(
            f"  {op['namespace']} {op['operation']}: {op['calls']} calls, {errors} errors, "
            f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"
        )
    for server in client["servers"]:
        print(
            f"  {server['server']}: {server['connections']} connection(s), breaker {server['breaker']}, "
            f"{server['reconnects']} reconnects"
        )
    return 0


COMMANDS = {
    "demo": _cmd_demo,
    "migrate": _cmd_migrate,
    "export": _cmd_export,
    "cache": _cmd_cache,
    "ping": _cmd_ping,
    "stats": _cmd_stats,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    # force: importing nano-graphrag (nano-vectordb) already called basicConfig(INFO).
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    try:
        return COMMANDS[args.command](args)
    except _UsageError as e:
        print(f"nano-graphrag-redis: usage error: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        if args.debug:
            traceback.print_exc()
        print(f"nano-graphrag-redis: configuration error: {e}", file=sys.stderr)
        return 2
    except (RedisKVError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"nano-graphrag-redis: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nano-graphrag-redis: interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # e.g. the LLM provider failing inside the demo
        if args.debug:
            traceback.print_exc()
        print(f"nano-graphrag-redis: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
