"""Redis key-value storage for nano-graphrag, with a Rust core.

``GraphRAG(key_string_value_json_storage_cls=RedisKVStorage)`` and nothing else
changes; settings go in ``addon_params`` (``redis_url``, ...) or the environment.
"""

from __future__ import annotations

from ._core import __version__, redact_url
from .errors import (
    ConfigError,
    RedisKVError,
    SerializationError,
    StorageOperationError,
    StorageUnavailableError,
)
from .metrics import stats
from .registry import register
from .storage import BlockingRedisKVStorage, RedisKVStorage

__all__ = [
    "RedisKVStorage",
    "BlockingRedisKVStorage",
    "register",
    "stats",
    "redact_url",
    "RedisKVError",
    "ConfigError",
    "SerializationError",
    "StorageUnavailableError",
    "StorageOperationError",
    "__version__",
]
