"""OpenTelemetry spans for storage operations, when ``opentelemetry-api`` is installed.

Each traced operation becomes a ``CLIENT`` span named ``"{operation} {namespace}"``
with the attributes ``db.system.name`` (``redis``), ``db.operation.name``,
``nano_graphrag.namespace``, ``nano_graphrag.workspace`` (when set) and
``nano_graphrag.records`` (ids asked for, records written, or ids listed). A failed
call's span records the exception and an error status.

Without ``opentelemetry-api`` there is no cost at all: a blocking method is left as it
is, an async one is the single coroutine awaiting the core. With it but no tracer
provider configured (the API alone, as many libraries pull it in), a call costs one
check of the global provider and no span.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

try:
    from opentelemetry import trace as _trace
except ImportError:  # the optional dependency is missing: tracing is off
    _trace = None  # type: ignore[assignment]

from ._core import __version__

__all__ = ["ENABLED", "traced", "traced_async"]

#: Whether spans can be made (``opentelemetry-api`` is importable).
ENABLED = _trace is not None
# A provider named by the environment is loaded on the API's first lookup.
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_UNKNOWN = object()
# Made once: a tracer got before a provider is set follows the provider set later.
_TRACER = _trace.get_tracer("nano_graphrag_redis", __version__) if _trace is not None else None

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
#: How many records a call concerns, from its arguments (or None: from its result).
Count = Callable[..., int]


def traced(operation: str, records: Count | None = None) -> Callable[[F], F]:
    """Wraps a blocking storage method in a span when a tracer provider is configured.
    ``records(*args)`` gives the record count from the call's arguments; without it,
    the length of the result (``all_keys``)."""

    def decorate(method: F) -> F:
        if _trace is None:
            return method

        @functools.wraps(method)
        def run(storage: Any, *args: Any, **kwargs: Any) -> Any:
            if not _active():
                return method(storage, *args, **kwargs)
            with _span(operation, records, storage, args, kwargs) as s:
                result = method(storage, *args, **kwargs)
                _count_result(records, s, result)
                return result

        return run  # type: ignore[return-value]

    return decorate


def traced_async(
    operation: str, records: Count | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Makes a storage method that returns the core's awaitable into a coroutine
    function (``async def``, as nano-graphrag's ``BaseKVStorage`` declares it), traced
    like :func:`traced`. One coroutine per call, whether tracing is on or not: the hot
    path pays no second frame for the check."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        if _trace is None:

            @functools.wraps(method)
            async def run(*args: P.args, **kwargs: P.kwargs) -> R:
                return await method(*args, **kwargs)

            return run

        @functools.wraps(method)
        async def run_traced(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _active():
                return await method(*args, **kwargs)
            storage, *rest = args
            with _span(operation, records, storage, tuple(rest), kwargs) as s:
                result = await method(*args, **kwargs)
                _count_result(records, s, result)
                return result

        return run_traced

    return decorate


def _span(operation: str, records: Count | None, storage: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    assert _trace is not None
    attributes: dict[str, Any] = {
        "db.system.name": "redis",
        "db.operation.name": operation,
        "nano_graphrag.namespace": storage.namespace,
    }
    workspace = storage.settings()["workspace"]
    if workspace:
        attributes["nano_graphrag.workspace"] = workspace
    if records is not None:
        attributes["nano_graphrag.records"] = records(*args, *kwargs.values())
    assert _TRACER is not None
    return _TRACER.start_as_current_span(
        f"{operation} {storage.namespace}", kind=_trace.SpanKind.CLIENT, attributes=attributes
    )


def _count_result(records: Count | None, span: Any, result: Any) -> None:
    if records is None and isinstance(result, list | set):
        span.set_attribute("nano_graphrag.records", len(result))


def _active() -> bool:
    """Whether a real tracer provider is set (not the API's proxy or no-op).

    Read where the API keeps it: until a provider is set, ``get_tracer_provider()``
    looks the environment up on every call, a few microseconds per operation."""
    assert _trace is not None
    provider = getattr(_trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _PROVIDER_FROM_ENV:
        return False
    if provider is None or provider is _UNKNOWN:
        provider = _trace.get_tracer_provider()
    return not isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider)


def one(*_: Any) -> int:
    """The record count of a call on one id."""
    return 1


def sized(first: Any, *_: Any) -> int:
    """The record count of a call on a collection of ids or records."""
    try:
        return len(first)
    except TypeError:  # an iterator: its length is unknown before it is consumed
        return -1
