"""The Rust core (built by maturin). Private: use RedisKVStorage / BlockingRedisKVStorage."""

from collections.abc import Callable, Iterable
from typing import Any, Literal, final

__all__ = ["Store", "redact_url", "metrics_snapshot", "__version__"]
__version__: str

def metrics_snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every metric of this process: ``{"operations": [...], "servers": [...]}`` (see
    ``nano_graphrag_redis.metrics.stats``). O(namespaces + servers); no I/O."""

def redact_url(url: str) -> str:
    """``url`` with every credential replaced by ``***`` (userinfo password, ``pass=`` /
    ``password=`` query values); works on any text, even a URL that does not parse."""

@final
class Store:
    """One namespace of JSON records in Redis.

    With ``blocking=False`` every operation returns an asyncio future of the running
    loop; with ``blocking=True`` it returns the result, waiting with the GIL released.
    The constructor resolves and validates settings (raising ``ConfigError``) and does
    no I/O.
    """

    def __new__(
        cls,
        namespace: str,
        global_config: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        blocking: bool = False,
    ) -> Store: ...
    @property
    def blocking(self) -> bool: ...
    @property
    def staging(self) -> bool:
        """Whether an atomic rebuild is staged (after ``clear()``, until ``commit()``)."""
    def commit(self) -> Any:
        """Makes a staged atomic rebuild live; nothing when none is staged."""
    def get(self, id: str) -> Any:
        """The record ``id`` or None."""
    def get_many(self, ids: Iterable[str], fields: Iterable[str] | None = None) -> Any:
        """Records aligned with ``ids``; with ``fields``, projected (falsy -> None)."""
    def missing(self, ids: Iterable[str]) -> Any:
        """The set of ``ids`` that are not stored."""
    def put(self, data: dict[str, Any]) -> Any:
        """Writes every record whole, all or nothing; encodes all before sending."""
    def measure(self, ids: Iterable[str], what: Literal["length", "memory"] = "length") -> Any:
        """Each record's stored JSON (``"length"``) or server memory (``"memory"``) in
        bytes, 0 where missing, aligned with ``ids``."""
    def namespace_stats(self, sample: int | None = None, progress: Callable[[str, int], object] | None = None) -> Any:
        """``{"records", "sampled", "value_bytes", "memory_bytes"}`` (sizes summed over a
        random sample; all records with None). Scans the namespace: heavy."""
    def on_each_server(self, args: list[str]) -> Any:
        """``[(server, reply, seconds)]``: the command on every server that serves keys."""
    def stats(self) -> dict[str, dict[str, Any]]:
        """This namespace's metrics per operation; no I/O."""
    def delete_many(self, ids: Iterable[str]) -> Any:
        """Removes the records of ``ids``; how many existed."""
    def delete(self, id: str) -> Any:
        """Removes ``id``; True if it existed."""
    def ids(self) -> Any:
        """Every id of the namespace."""
    def clear(self) -> Any:
        """Removes every record of the namespace; the count removed."""
    def ping(self) -> Any:
        """One round trip to the server."""
    def close(self) -> None:
        """Lets go of the shared connection."""
    def key(self, id: str) -> bytes:
        """The Redis key of record ``id``."""
    def as_blocking(self) -> Store:
        """The same store, with blocking calls."""
    def describe(self) -> dict[str, Any]:
        """The resolved settings without secrets."""
