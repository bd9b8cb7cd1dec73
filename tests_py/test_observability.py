"""Observability: stats(), the Prometheus collector, namespace_stats(), logging,
the ping/stats commands and OpenTelemetry spans, on real servers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import nano_graphrag_redis
from nano_graphrag_redis import (
    BlockingRedisKVStorage,
    RedisKVStorage,
    SerializationError,
    StorageUnavailableError,
    metrics,
)
from nano_graphrag_redis.local_server import RedisServer, free_port

SECRET = "obs-s3cret-Pa55"


def _namespace() -> str:
    """A namespace no other test uses: metrics are per namespace and per process."""
    return f"obs_{uuid.uuid4().hex[:8]}"


def _op(storage: Any, operation: str) -> dict[str, Any]:
    return storage.stats()[operation]


def _server(address: str) -> dict[str, Any]:
    return next(s for s in nano_graphrag_redis.stats()["servers"] if s["server"] == address)


async def test_stats_count_calls_hits_records_bytes_and_latency(settings: dict[str, Any]) -> None:
    storage = RedisKVStorage(_namespace(), {}, **settings)
    assert storage.stats() == {}, "nothing called yet"
    records = {"a": {"return": "x" * 100}, "b": {"return": "y"}}
    await storage.upsert(records)
    assert await storage.get_by_id("a") is not None
    assert await storage.get_by_id("missing") is None
    await storage.get_by_ids(["a", "b", "nope"])

    upsert = _op(storage, "upsert")
    assert upsert["calls"] == 1 and upsert["records_written"] == 2
    assert upsert["bytes_written"] == sum(len(json.dumps(r, separators=(",", ":"))) for r in records.values())
    get = _op(storage, "get_by_id")
    assert (get["calls"], get["hits"], get["misses"], get["records_read"]) == (2, 1, 1, 1)
    assert get["bytes_read"] == len(json.dumps(records["a"], separators=(",", ":")))
    assert get["latency"]["count"] == 2 and get["latency"]["sum_seconds"] > 0
    assert 0 < get["latency"]["p50_seconds"] <= get["latency"]["p99_seconds"] < 1
    assert get["in_flight"] == 0 and sum(get["errors"].values()) == 0
    many = _op(storage, "get_by_ids")
    assert (many["hits"], many["misses"], many["records_read"]) == (2, 1, 2)
    buckets = get["latency"]["buckets"]
    assert buckets[-1] == (float("inf"), 2) and all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))

    # The blocking view shares the namespace's counters.
    storage.blocking().get_by_id("a")
    assert _op(storage, "get_by_id")["calls"] == 3


async def test_errors_are_counted_by_kind(settings: dict[str, Any]) -> None:
    storage = RedisKVStorage(_namespace(), {}, **settings)
    with pytest.raises(SerializationError):
        await storage.upsert({"bad": {"v": object()}})
    with pytest.raises(SerializationError):
        await storage.get_by_ids([1, 2])  # type: ignore[list-item]
    assert _op(storage, "upsert")["errors"]["serialization"] == 1
    assert _op(storage, "get_by_ids")["errors"]["serialization"] == 1
    assert _op(storage, "upsert")["in_flight"] == 0

    nowhere = RedisKVStorage(
        _namespace(), {}, redis_url=f"redis://127.0.0.1:{free_port()}", redis_retry_attempts=1, redis_retry_deadline=2
    )
    with pytest.raises(StorageUnavailableError):
        await nowhere.get_by_id("x")
    get = _op(nowhere, "get_by_id")
    assert get["errors"]["unavailable"] == 1 and get["retries"] == 1 and get["in_flight"] == 0


def test_metrics_off_counts_nothing(settings: dict[str, Any]) -> None:
    storage = BlockingRedisKVStorage(_namespace(), {}, redis_metrics=False, **settings)
    storage.upsert({"a": {"v": 1}})
    storage.get_by_id("a")
    assert storage.stats() == {}
    assert storage.settings()["metrics"] is False
    assert all(row["namespace"] != storage.namespace for row in nano_graphrag_redis.stats()["operations"])


def test_reconnects_lost_connections_and_retries_are_counted() -> None:
    with RedisServer() as server:
        storage = BlockingRedisKVStorage(_namespace(), {}, redis_url=server.url, redis_health_check_interval=0)
        storage.upsert({"a": {"v": 1}})
        address = f"127.0.0.1:{server.port}"
        before = _server(address)
        assert before["connections"] == 1 and before["breaker"] == "closed"
        with redis.Redis(host="127.0.0.1", port=server.port) as admin:
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert storage.get_by_id("a") == {"v": 1}
        after = _server(address)
        assert after["connections_lost"] == before["connections_lost"] + 1
        assert after["reconnects"] == before["reconnects"] + 1
        assert after["connections"] == 1
        assert _op(storage, "get_by_id")["retries"] == 1


def test_the_breaker_state_and_openings_show_per_server() -> None:
    server = RedisServer().start()
    address = f"127.0.0.1:{server.port}"
    storage = BlockingRedisKVStorage(
        _namespace(),
        {},
        redis_url=server.url,
        redis_breaker_threshold=1,
        redis_breaker_cooldown=30,
        redis_retry_attempts=0,
        redis_health_check_interval=0,
    )
    try:
        storage.ping()
    finally:
        server.stop()
    with pytest.raises(StorageUnavailableError):
        storage.ping()
    with pytest.raises(StorageUnavailableError, match="circuit breaker open"):
        storage.ping()
    row = _server(address)
    assert row["breaker"] == "open" and row["breaker_state"] == 2
    assert row["breaker_opens"] == 1 and row["connections"] == 0


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_prometheus_numbers_move_with_real_operations(
    settings: dict[str, Any], registry: CollectorRegistry
) -> None:
    collector = metrics.register(registry)
    assert metrics.register(registry) is collector, "idempotent: the same collector, no duplicate error"
    storage = RedisKVStorage(_namespace(), {}, **settings)
    labels = {"namespace": storage.namespace, "workspace": "", "operation": "get_by_id"}

    def value(name: str, **extra: str) -> float:
        return _samples(registry).get((name, frozenset({**labels, **extra}.items())), 0.0)

    await storage.upsert({"hit": {"v": 1}})
    assert value("nano_graphrag_redis_operations_total") == 0
    for _ in range(5):
        await storage.get_by_id("hit")
    await storage.get_by_id("miss")
    assert value("nano_graphrag_redis_operations_total") == 6
    assert value("nano_graphrag_redis_lookups_total", result="hit") == 5
    assert value("nano_graphrag_redis_lookups_total", result="miss") == 1
    assert value("nano_graphrag_redis_operation_duration_seconds_count") == 6
    assert value("nano_graphrag_redis_operation_duration_seconds_bucket", le="+Inf") == 6
    assert value("nano_graphrag_redis_operation_duration_seconds_sum") > 0
    assert value("nano_graphrag_redis_operation_errors_total", kind="unavailable") == 0
    upsert = {**labels, "operation": "upsert"}
    assert _samples(registry)[("nano_graphrag_redis_records_written_total", frozenset(upsert.items()))] == 1
    server = settings["redis_url"].removeprefix("redis://")
    assert _samples(registry)[("nano_graphrag_redis_connections", frozenset({("server", server)}))] >= 1
    assert _samples(registry)[("nano_graphrag_redis_breaker_state", frozenset({("server", server)}))] == 0


def test_register_defaults_to_the_global_registry() -> None:
    from prometheus_client import REGISTRY

    collector = metrics.register()
    try:
        assert metrics.register(None) is collector
        assert "nano_graphrag_redis_connections" in generate_latest(REGISTRY).decode()
    finally:
        REGISTRY.unregister(collector)


def _run_without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter where importing `module` fails, as if it were
    not installed (a meta path finder in that process only)."""
    blocker = textwrap.dedent(
        f"""
        import sys
        class _Missing:
            def find_spec(self, name, path=None, target=None):
                if name == {module!r} or name.startswith({module!r} + "."):
                    raise ImportError(f"No module named {{name!r}}")
        sys.meta_path.insert(0, _Missing())
        """
    )
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True, text=True)


def test_without_prometheus_client_stats_work_and_register_names_the_extra() -> None:
    done = _run_without(
        "prometheus_client",
        """
        import nano_graphrag_redis
        from nano_graphrag_redis import metrics
        assert set(nano_graphrag_redis.stats()) == {"operations", "servers"}
        try:
            metrics.register()
        except ImportError as e:
            print(e)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'nano-graphrag-redis[prometheus]'" in done.stdout


async def test_namespace_stats_counts_and_estimates_from_a_sample(settings: dict[str, Any]) -> None:
    storage = RedisKVStorage(_namespace(), {}, **settings)
    other = RedisKVStorage(storage.namespace, {}, redis_workspace="elsewhere", **settings)
    await storage.upsert({f"id{i}": {"text": "x" * 200} for i in range(1500)})
    await other.upsert({"foreign": {"text": "not counted"}})
    heard: list[tuple[str, int]] = []
    exact = await storage.namespace_stats(sample=None, progress=lambda stage, n: heard.append((stage, n)))
    assert exact["records"] == 1500 and exact["sampled"] == 1500 and exact["exact"]
    assert exact["value_bytes"] == 1500 * len('{"text":"' + "x" * 200 + '"}')
    assert exact["memory_bytes"] > exact["value_bytes"], "MEMORY USAGE counts the key and overhead too"
    assert ("measured", 1500) in heard and any(stage == "scanned" for stage, _ in heard)
    sampled = await storage.namespace_stats(sample=100)
    assert sampled["records"] == 1500 and sampled["sampled"] == 100 and not sampled["exact"]
    assert sampled["value_bytes"] == exact["value_bytes"], "identical records: the estimate is exact"
    assert _op(storage, "namespace_stats")["calls"] == 2


def test_hot_path_logs_nothing_even_at_debug(settings: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    storage = BlockingRedisKVStorage(_namespace(), {}, **settings)
    storage.upsert({"a": {"v": 1}})
    with caplog.at_level(logging.DEBUG, logger="nano_graphrag_redis"):
        nano_graphrag_redis._core.Store("refresh", None, dict(settings), True)  # re-reads the levels
        for _ in range(300):
            storage.get_by_id("a")
            storage.get_by_ids(["a", "b"])
    ours = [r for r in caplog.records if r.name.startswith("nano_graphrag_redis")]
    assert ours == [], [r.getMessage() for r in ours]


@pytest.fixture
def every_record() -> Iterator[list[logging.LogRecord]]:
    """Every log record at every level, from every logger, formatted."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_no_password_at_any_log_level(every_record: list[logging.LogRecord]) -> None:
    with RedisServer("--requirepass", SECRET) as server:
        url = f"redis://:{SECRET}@127.0.0.1:{server.port}"
        good = BlockingRedisKVStorage(_namespace(), {}, redis_url=url, redis_health_check_interval=0)
        good.upsert({"a": {"v": 1}})
        with redis.Redis(host="127.0.0.1", port=server.port, password=SECRET) as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
        good.get_by_id("a")  # a lost connection, a reconnect: logged
        wrong = BlockingRedisKVStorage(
            _namespace(), {}, redis_url=f"redis://:wrong-{SECRET}@127.0.0.1:{server.port}", redis_retry_attempts=0
        )
        with pytest.raises(nano_graphrag_redis.RedisKVError) as refused:
            wrong.get_by_id("a")
        assert SECRET not in str(refused.value)
    down = BlockingRedisKVStorage(
        _namespace(), {}, redis_url=url, redis_retry_attempts=2, redis_retry_deadline=2, redis_breaker_threshold=1
    )
    with pytest.raises(StorageUnavailableError) as unavailable:
        down.get_by_id("a")
    assert SECRET not in str(unavailable.value)
    texts = [f"{r.name} {r.levelname} {r.getMessage()}" for r in every_record]
    ours = [t for t in texts if t.startswith("nano_graphrag_redis")]
    assert any(" DEBUG " in t for t in ours), "debug records were emitted, so the check means something"
    assert any("lost" in t or "reconnect" in t for t in ours), ours
    assert not [t for t in texts if SECRET in t]
    assert SECRET not in repr(good) and SECRET not in json.dumps(good.settings())
    assert SECRET not in json.dumps(nano_graphrag_redis.stats())


async def test_an_outage_is_logged_once_not_once_per_caller(every_record: list[logging.LogRecord]) -> None:
    server = RedisServer().start()
    storage = RedisKVStorage(
        _namespace(),
        {},
        redis_url=server.url,
        redis_retry_attempts=1,
        redis_retry_deadline=1,
        redis_breaker_threshold=2,
        redis_health_check_interval=0,
    )
    await storage.ping()
    server.stop()
    results = await asyncio.gather(*(storage.get_by_id(f"k{i}") for i in range(50)), return_exceptions=True)
    assert all(isinstance(r, StorageUnavailableError) for r in results)
    messages = [r.getMessage() for r in every_record if r.name.startswith("nano_graphrag_redis")]
    assert sum("lost" in m for m in messages) <= 1
    assert sum("circuit breaker open" in m for m in messages) == 1, messages
    warnings = [r for r in every_record if r.name.startswith("nano_graphrag_redis") and r.levelno >= logging.WARNING]
    assert len(warnings) <= 2, [r.getMessage() for r in warnings]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nano_graphrag_redis", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_ping_reports_version_mode_rtt_and_warnings() -> None:
    with RedisServer("--maxmemory-policy", "allkeys-lru", "--save", "") as server:
        done = _cli("ping", "--redis-url", server.url, "--json", "--count", "3")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["mode"] == "single"
        (node,) = report["servers"]
        assert node["version"].count(".") == 2 and node["mode"] == "standalone" and node["role"] == "master"
        assert 0 < node["rtt_ms"]["min"] <= node["rtt_ms"]["p50"] <= node["rtt_ms"]["max"]
        assert node["memory"]["policy"] == "allkeys-lru"
        assert node["persistence"]["rdb_save"] == "" and node["persistence"]["aof_enabled"] is False
        assert any("allkeys-lru" in w for w in node["warnings"])
        assert any("no persistence" in w for w in node["warnings"])
        text = _cli("ping", "--redis-url", server.url)
        assert text.returncode == 0 and "round trip" in text.stdout and "warning: maxmemory-policy" in text.stdout
    unreachable = _cli("ping", "--redis-url", f"redis://:{SECRET}@127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1 and SECRET not in unreachable.stderr + unreachable.stdout


def test_cli_ping_and_stats_on_every_topology(topology: Any, topo_settings: dict[str, Any]) -> None:
    prefix = topo_settings["redis_key_prefix"]
    storage = BlockingRedisKVStorage("text_chunks", {}, **topo_settings)
    storage.upsert({f"c{i}": {"content": "x" * 50} for i in range(30)})
    ping = json.loads(_cli("ping", "--redis-url", topology.url, "--json").stdout)
    expected = 3 if topology.name == "cluster" else 1
    assert len(ping["servers"]) == expected and ping["mode"] == topology.name
    done = _cli("stats", "--redis-url", topology.url, "--key-prefix", prefix, "--namespaces", "--json", "--sample", "0")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert len(stats["servers"]) == expected
    chunks = next(n for n in stats["namespaces"] if n["namespace"] == "text_chunks")
    assert chunks["records"] == 30 and chunks["exact"]
    # The command's own client metrics: one server row per master, each connected.
    assert len(stats["client"]["servers"]) >= expected
    assert all(s["connections"] >= 1 for s in stats["client"]["servers"])
    assert any(op["operation"] == "namespace_stats" for op in stats["client"]["operations"])


def test_per_node_connection_metrics_on_a_cluster(redis_cluster: Any, prefix: str) -> None:
    storage = BlockingRedisKVStorage(_namespace(), {}, redis_url=redis_cluster.url, redis_key_prefix=prefix)
    storage.upsert({f"k{i}": {"v": i} for i in range(200)})
    masters = {f"127.0.0.1:{node.port}" for node in redis_cluster.masters()}
    rows = {s["server"]: s for s in nano_graphrag_redis.stats()["servers"]}
    assert masters <= set(rows)
    assert all(rows[m]["connections"] >= 1 and rows[m]["connects"] >= 1 for m in masters)


def test_sentinel_master_metrics_keep_one_name(redis_sentinel: Any, prefix: str) -> None:
    storage = BlockingRedisKVStorage(_namespace(), {}, redis_url=redis_sentinel.url, redis_key_prefix=prefix)
    storage.ping()
    row = _server(f"sentinel/{redis_sentinel.master_name}")
    assert row["connections"] >= 1 and row["breaker"] == "closed"


def test_cli_stats_text_shows_server_namespaces_and_client(settings: dict[str, Any]) -> None:
    BlockingRedisKVStorage("full_docs", {}, **settings).upsert({"d": {"content": "hello"}})
    done = _cli(
        "stats", "--redis-url", settings["redis_url"], "--key-prefix", settings["redis_key_prefix"], "--namespaces"
    )
    assert done.returncode == 0, done.stderr
    assert "full_docs: 1 records" in done.stdout and "client metrics of this process" in done.stdout
    usage = _cli("stats", "--namespace", "x")
    assert usage.returncode == 2 and "--namespace needs --namespaces" in usage.stderr


_TRACED = """
import asyncio, json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from nano_graphrag_redis import RedisKVStorage, SerializationError

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
url, prefix = sys.argv[1], sys.argv[2]

async def main():
    storage = RedisKVStorage("text_chunks", {}, redis_url=url, redis_key_prefix=prefix, redis_workspace="w1")
    with trace.get_tracer("app").start_as_current_span("app request"):
        await storage.upsert({"a": {"v": 1}, "b": {"v": 2}, "c": {"v": 3}})
        await storage.get_by_ids(["a", "b", "x"], fields={"v"})
        await storage.get_by_id("a")
        await storage.all_keys()
        try:
            await storage.filter_keys([1])
        except SerializationError:
            pass
    storage.blocking().get_by_id("b")

asyncio.run(main())
print(json.dumps([
    {"name": s.name, "kind": s.kind.name, "attributes": dict(s.attributes), "status": s.status.status_code.name,
     "events": [e.name for e in s.events], "parent": s.parent.span_id if s.parent else None,
     "span_id": s.context.span_id}
    for s in exporter.get_finished_spans()
]))
"""


def test_opentelemetry_spans_per_operation(settings: dict[str, Any]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _TRACED, settings["redis_url"], settings["redis_key_prefix"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    spans = {s["name"]: s for s in json.loads(done.stdout)}
    app = spans.pop("app request")
    assert set(spans) == {
        "upsert text_chunks",
        "get_by_ids text_chunks",
        "get_by_id text_chunks",
        "all_keys text_chunks",
        "filter_keys text_chunks",
    }, "the blocking call's span has the same name: the dict keeps one of the two"
    for operation, records in [("upsert", 3), ("get_by_ids", 3), ("get_by_id", 1), ("all_keys", 3)]:
        span = spans[f"{operation} text_chunks"]
        assert span["kind"] == "CLIENT" and span["status"] == "UNSET"
        assert span["attributes"] == {
            "db.system.name": "redis",
            "db.operation.name": operation,
            "nano_graphrag.namespace": "text_chunks",
            "nano_graphrag.workspace": "w1",
            "nano_graphrag.records": records,
        }
    failed = spans["filter_keys text_chunks"]
    assert failed["status"] == "ERROR" and failed["events"] == ["exception"]
    assert all(s["parent"] == app["span_id"] for s in spans.values() if s["name"] != "get_by_id text_chunks")
    assert len(json.loads(done.stdout)) == 7, "six storage calls (one blocking) and the app's span"


@pytest.mark.parametrize(
    ("environment", "active"), [({}, "False"), ({"OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}, "True")]
)
def test_a_provider_named_by_the_environment_turns_tracing_on(environment: dict[str, str], active: str) -> None:
    """The check reads the set provider directly; one the environment names (loaded by
    the API on first use) still counts."""
    env = {k: v for k, v in os.environ.items() if k != "OTEL_PYTHON_TRACER_PROVIDER"} | environment
    done = subprocess.run(
        [sys.executable, "-c", "from nano_graphrag_redis import tracing; print(tracing._active())"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == active


def test_without_opentelemetry_the_methods_are_not_wrapped() -> None:
    done = _run_without(
        "opentelemetry",
        """
        import inspect
        from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage, tracing
        assert tracing.ENABLED is False
        for name in ("get_by_id", "get_by_ids", "upsert", "all_keys", "filter_keys", "drop"):
            assert not hasattr(getattr(BlockingRedisKVStorage, name), "__wrapped__"), name
            # The async ones are one coroutine awaiting the core, with no tracing check.
            method = getattr(RedisKVStorage, name)
            assert inspect.iscoroutinefunction(method), name
            assert "_active" not in method.__code__.co_names, name
        print("plain")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plain"
