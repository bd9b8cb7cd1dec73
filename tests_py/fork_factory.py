"""A stand-in for the storage factory of factory-style nano-graphrag forks
(remcohendriks/nano-graphrag ``nano_graphrag/_storage/factory.py``), reduced to the
behaviour that matters for registration:

- ``StorageFactory.register_kv(name, loader)`` accepts only names in ``ALLOWED_KV``;
- the built-in backends are registered lazily by the MODULE-level function
  ``_register_backends()``, and only while the KV table is empty; the built-ins
  include the fork's own "redis" backend;
- ``create_kv_storage`` calls ``_register_backends()`` when the backend is unknown,
  then builds ``loader()(namespace=..., global_config=..., **kwargs)``.

Each call of :func:`fresh_factory_module` gives a new module with empty tables.
"""

from __future__ import annotations

import types
import uuid
from typing import Any

_SOURCE = '''
from nano_graphrag._storage import JsonKVStorage


class ForkOwnRedisKVStorage:
    """The fork's built-in Redis backend (the one the seed review found wanting)."""

    def __init__(self, namespace, global_config, **kwargs):
        self.namespace = namespace
        self.global_config = global_config


class StorageFactory:
    _kv_backends = {}
    ALLOWED_KV = {"json", "redis"}

    @classmethod
    def register_kv(cls, name, backend_loader):
        if name not in cls.ALLOWED_KV:
            raise ValueError(f"Backend {name} not in allowed KV backends: {cls.ALLOWED_KV}")
        cls._kv_backends[name] = backend_loader

    @classmethod
    def create_kv_storage(cls, backend, namespace, global_config, **kwargs):
        if backend not in cls._kv_backends:
            _register_backends()
            if backend not in cls._kv_backends:
                raise ValueError(f"Unknown KV backend: {backend}")
        return cls._kv_backends[backend]()(namespace=namespace, global_config=global_config, **kwargs)


def _register_backends():
    if not StorageFactory._kv_backends:
        StorageFactory.register_kv("json", lambda: JsonKVStorage)
        StorageFactory.register_kv("redis", lambda: ForkOwnRedisKVStorage)
'''


def fresh_factory_module() -> types.ModuleType:
    module = types.ModuleType(f"fork_factory_{uuid.uuid4().hex}")
    exec(compile(_SOURCE, module.__name__, "exec"), module.__dict__)
    return module


def factory_of(module: types.ModuleType) -> Any:
    return module.StorageFactory
