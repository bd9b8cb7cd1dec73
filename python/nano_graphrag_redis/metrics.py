"""What this process's storages did: :func:`stats` and a Prometheus collector.

The Rust core counts every operation with relaxed atomics (no lock on the hot path):
per namespace and operation, calls, errors by kind, retries, records and bytes read and
written, lookups that hit or missed (``get_by_id`` on ``llm_response_cache`` is the LLM
cache), calls in flight and a latency histogram; per server, open connections, commands
in flight, dials, reconnects, lost connections and the circuit breaker. Reading them
never asks Redis anything. ``redis_metrics=False`` turns a storage's counting off.

Prometheus (``pip install 'nano-graphrag-redis[prometheus]'``)::

    from nano_graphrag_redis import metrics
    metrics.register()  # once; prometheus_client's default REGISTRY

The metric names and a Grafana example are in the README (Observability).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from ._core import metrics_snapshot

__all__ = ["stats", "register", "Collector", "PREFIX", "EXTRA"]

#: Every metric's name starts with this.
PREFIX = "nano_graphrag_redis"
#: What to install for :func:`register`.
EXTRA = "nano-graphrag-redis[prometheus]"

_OPERATION_LABELS = ["namespace", "workspace", "operation"]


def stats() -> dict[str, list[dict[str, Any]]]:
    """Every metric of this process, O(namespaces + servers), no I/O::

        {"operations": [{"namespace", "workspace", "operation", "calls", "in_flight",
                         "errors": {kind: n}, "retries", "records_read", "bytes_read",
                         "records_written", "bytes_written", "hits", "misses",
                         "latency": {"count", "sum_seconds", "p50_seconds",
                                     "p99_seconds", "buckets": [(le, cumulative)]}}],
         "servers": [{"server", "connections", "in_flight", "breaker",
                      "breaker_state", "connects", "reconnects", "dial_failures",
                      "connections_lost", "breaker_opens"}]}

    Operations appear once called; error kinds are ``config``, ``serialization``,
    ``unavailable``, ``operation``, ``cancelled`` and ``other``. ``breaker`` is
    ``closed``, ``half_open`` or ``open`` (``breaker_state`` 0, 1, 2: the worst of the
    server's links). Percentiles are estimated from the histogram's buckets.
    """
    return metrics_snapshot()


_registered: weakref.WeakKeyDictionary[Any, Collector] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def register(registry: Any = None) -> Collector:
    """Exposes the metrics to Prometheus through ``registry`` (None: prometheus_client's
    default ``REGISTRY``). Idempotent: a second call with the same registry returns the
    collector already registered.

    Raises ``ImportError`` naming the extra to install when prometheus_client is not
    installed (:func:`stats` works without it).
    """
    try:
        import prometheus_client
    except ImportError as e:
        raise ImportError(
            f"nano_graphrag_redis.metrics.register() needs prometheus_client: pip install '{EXTRA}'",
            name="prometheus_client",
        ) from e
    target = prometheus_client.REGISTRY if registry is None else registry
    with _lock:
        collector = _registered.get(target)
        if collector is None:
            collector = Collector()
            target.register(collector)
            _registered[target] = collector
    return collector


class Collector:
    """A prometheus_client collector reading :func:`stats` at each scrape."""

    def collect(self) -> Iterator[Any]:
        return iter(_families(metrics_snapshot()))

    def describe(self) -> Iterator[Any]:
        # The families without samples: registering never reads the metrics.
        return iter(_families({"operations": [], "servers": []}))


def _families(snapshot: dict[str, list[dict[str, Any]]]) -> list[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    def counter(name: str, doc: str, labels: Iterable[str]) -> Any:
        return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

    def gauge(name: str, doc: str, labels: Iterable[str]) -> Any:
        return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))

    op = _OPERATION_LABELS
    calls = counter("operations", "Storage operations called.", op)
    errors = counter("operation_errors", "Storage operations that failed, by kind.", [*op, "kind"])
    retries = counter("operation_retries", "Requests sent again after a connection failure.", op)
    in_flight = gauge("operations_in_flight", "Storage operations started and not finished.", op)
    records_read = counter("records_read", "Records read.", op)
    bytes_read = counter("read_bytes", "Bytes of JSON read.", op)
    records_written = counter("records_written", "Records written.", op)
    bytes_written = counter("written_bytes", "Bytes of JSON written.", op)
    lookups = counter("lookups", "Records looked up, by result (hit: found).", [*op, "result"])
    latency = HistogramMetricFamily(
        f"{PREFIX}_operation_duration_seconds",
        "Time from the call to its result (retries and decoding included).",
        labels=op,
    )
    for row in snapshot["operations"]:
        labels = [row["namespace"], row["workspace"] or "", row["operation"]]
        calls.add_metric(labels, row["calls"])
        for kind, n in row["errors"].items():
            errors.add_metric([*labels, kind], n)
        retries.add_metric(labels, row["retries"])
        in_flight.add_metric(labels, row["in_flight"])
        records_read.add_metric(labels, row["records_read"])
        bytes_read.add_metric(labels, row["bytes_read"])
        records_written.add_metric(labels, row["records_written"])
        bytes_written.add_metric(labels, row["bytes_written"])
        lookups.add_metric([*labels, "hit"], row["hits"])
        lookups.add_metric([*labels, "miss"], row["misses"])
        histogram = row["latency"]
        latency.add_metric(
            labels,
            buckets=[("+Inf" if math.isinf(le) else repr(le), n) for le, n in histogram["buckets"]],
            sum_value=histogram["sum_seconds"],
        )

    server = ["server"]
    connections = gauge("connections", "Open connections to the server.", server)
    server_in_flight = gauge("server_in_flight", "Commands sent to the server and not answered.", server)
    breaker = gauge("breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", server)
    connects = counter("connects", "Connections made (reconnects included).", server)
    reconnects = counter("reconnects", "Connections made after an earlier one was lost.", server)
    dial_failures = counter("dial_failures", "Connection attempts that failed.", server)
    lost = counter("connections_lost", "Connections that broke (reset, stalled, timed out).", server)
    opens = counter("breaker_opens", "Times the circuit breaker opened.", server)
    for row in snapshot["servers"]:
        labels = [row["server"]]
        connections.add_metric(labels, row["connections"])
        server_in_flight.add_metric(labels, row["in_flight"])
        breaker.add_metric(labels, row["breaker_state"])
        connects.add_metric(labels, row["connects"])
        reconnects.add_metric(labels, row["reconnects"])
        dial_failures.add_metric(labels, row["dial_failures"])
        lost.add_metric(labels, row["connections_lost"])
        opens.add_metric(labels, row["breaker_opens"])

    return [
        calls,
        errors,
        retries,
        in_flight,
        records_read,
        bytes_read,
        records_written,
        bytes_written,
        lookups,
        latency,
        connections,
        server_in_flight,
        breaker,
        connects,
        reconnects,
        dial_failures,
        lost,
        opens,
    ]
