"""The exceptions of nano-graphrag-redis.

Every error this package raises is a :class:`RedisKVError`; each subclass also
derives from the built-in exception a caller would naturally catch.
"""

from __future__ import annotations

__all__ = [
    "RedisKVError",
    "ConfigError",
    "SerializationError",
    "StorageUnavailableError",
    "StorageOperationError",
]


class RedisKVError(Exception):
    """Base class of every error raised by nano-graphrag-redis."""


class ConfigError(RedisKVError, ValueError):
    """A setting is unknown, malformed or out of range.

    The message names the setting and where it came from (keyword argument,
    ``global_config``, ``addon_params`` or an environment variable). Passwords are
    never included.
    """


class SerializationError(RedisKVError, TypeError):
    """A record or id cannot be stored as JSON (nothing of the batch was sent), or a
    stored value is not valid JSON."""


class StorageUnavailableError(RedisKVError, ConnectionError):
    """Redis cannot be reached: refused, timed out, connection dropped, or the circuit
    breaker is open after repeated failures. Raised after the configured retries."""


class StorageOperationError(RedisKVError):
    """Redis answered with an error: authentication, ACL permission, out of memory,
    wrong key type, or a refused eviction policy."""
