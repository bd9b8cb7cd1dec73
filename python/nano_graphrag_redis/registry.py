"""Registration with factory-style nano-graphrag forks.

Forks such as remcohendriks/nano-graphrag pick storages by name through a
``StorageFactory`` with ``register_kv(name, loader)``. Their built-in backends are
registered lazily, and only while the KV table is still EMPTY: register "redis" first
and the built-in "json" is never registered ("Unknown KV backend: json"). So
:func:`register` makes the built-ins register first, then puts this backend under
"redis" (replacing the fork's own Redis backend, if it has one).

Hosts can also discover the backend without importing it by name, through the entry
point group ``nano_graphrag.kv_storage``::

    for ep in importlib.metadata.entry_points(group="nano_graphrag.kv_storage"):
        factory.register_kv(ep.name, ep.load)   # ep.load() returns the class
"""

from __future__ import annotations

import sys
from typing import Any

from .storage import RedisKVStorage

__all__ = ["register", "kv_storage_class", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "nano_graphrag.kv_storage"


def kv_storage_class() -> type[RedisKVStorage]:
    """The loader a factory calls: returns the storage class."""
    return RedisKVStorage


def register(factory: Any, name: str = "redis") -> None:
    """Registers :class:`RedisKVStorage` with ``factory`` under ``name``, after making
    sure the factory's built-in backends are registered (so "json" keeps working)."""
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    register_builtins = getattr(module, "_register_backends", None) or getattr(factory, "_register_backends", None)
    if callable(register_builtins):
        register_builtins()
    factory.register_kv(name, kv_storage_class)
