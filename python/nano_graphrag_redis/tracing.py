"""OpenTelemetry spans for storage operations, when ``opentelemetry-api`` is installed.

Each traced operation becomes a ``CLIENT`` span named ``"{operation} {namespace}"``
with the attributes ``db.system.name`` (``redis``), ``db.operation.name``,
``nano_graphrag.namespace``, ``nano_graphrag.workspace`` (when set) and
``nano_graphrag.records`` (ids asked for, records written, or ids listed). A failed
call's span records the exception and an error status.

Without ``opentelemetry-api`` the decorator returns the method itself: no cost at all.
With it but no tracer provider configured (the API alone, as many libraries pull it
in), a call costs one check of the global provider and no span.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

try:
    from opentelemetry import trace as _trace
except ImportError:  # the optional dependency is missing: tracing is off
    _trace = None  # type: ignore[assignment]

from ._core import __version__

__all__ = ["ENABLED", "traced"]

#: Whether spans can be made (``opentelemetry-api`` is importable).
ENABLED = _trace is not None

F = TypeVar("F", bound=Callable[..., Any])
#: How many records a call concerns, from its arguments (or None: from its result).
Count = Callable[..., int]


def traced(operation: str, records: Count | None = None) -> Callable[[F], F]:
    """Wraps a storage method (async or blocking) in a span when a tracer provider is
    configured. ``records(*args)`` gives the record count from the call's arguments;
    without it, the length of the result (``all_keys``)."""

    def decorate(method: F) -> F:
        if _trace is None:
            return method
        tracer = _trace.get_tracer("nano_graphrag_redis", __version__)

        def span(storage: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
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
            return tracer.start_as_current_span(
                f"{operation} {storage.namespace}", kind=_trace.SpanKind.CLIENT, attributes=attributes
            )

        def count_result(s: Any, result: Any) -> None:
            if records is None and isinstance(result, list | set):
                s.set_attribute("nano_graphrag.records", len(result))

        if inspect.iscoroutinefunction(method):

            async def traced_call(storage: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                with span(storage, args, kwargs) as s:
                    result = await method(storage, *args, **kwargs)
                    count_result(s, result)
                    return result

            if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
                # A plain function returning the coroutine, marked as a coroutine
                # function: untraced calls cost no extra coroutine frame.
                @functools.wraps(method)
                def run_async(storage: Any, *args: Any, **kwargs: Any) -> Any:
                    if not _active():
                        return method(storage, *args, **kwargs)
                    return traced_call(storage, args, kwargs)

                return inspect.markcoroutinefunction(run_async)  # type: ignore[no-any-return]

            @functools.wraps(method)
            async def run_awaiting(storage: Any, *args: Any, **kwargs: Any) -> Any:
                if not _active():
                    return await method(storage, *args, **kwargs)
                return await traced_call(storage, args, kwargs)

            return run_awaiting  # type: ignore[return-value]

        @functools.wraps(method)
        def run(storage: Any, *args: Any, **kwargs: Any) -> Any:
            if not _active():
                return method(storage, *args, **kwargs)
            with span(storage, args, kwargs) as s:
                result = method(storage, *args, **kwargs)
                count_result(s, result)
                return result

        return run  # type: ignore[return-value]

    return decorate


def _active() -> bool:
    """Whether a real tracer provider is set (not the API's proxy or no-op)."""
    assert _trace is not None
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
