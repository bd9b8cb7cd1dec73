"""ACL users: a username + password login, and a user whose permissions do not cover
the storage's keys gets a clear StorageOperationError, never a retry storm."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nano_graphrag_redis import BlockingRedisKVStorage, StorageOperationError
from nano_graphrag_redis.local_server import RedisServer


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    with RedisServer(
        "--user", "default", "on", "nopass", "~*", "+@all",
        "--user", "app", "on", ">app-Secret-1", "~nano_graphrag:*", "+@all",
        "--user", "reader", "on", ">reader-Secret-2", "~*", "+@read", "+ping", "+config|get",
    ) as server:  # fmt: skip
        yield server


def test_username_and_password(acl_server: RedisServer) -> None:
    kv = BlockingRedisKVStorage(
        "full_docs", redis_url=acl_server.url, redis_username="app", redis_password="app-Secret-1"
    )
    kv.upsert({"d": {"ok": True}})
    assert kv.get_by_id("d") == {"ok": True}
    kv.drop()


def test_username_and_password_in_the_url(acl_server: RedisServer) -> None:
    host = acl_server.url.removeprefix("redis://")
    kv = BlockingRedisKVStorage("full_docs", redis_url=f"redis://app:app-Secret-1@{host}")
    kv.upsert({"d": {"ok": True}})
    assert kv.get_by_id("d") == {"ok": True}
    assert "app-Secret-1" not in repr(kv)


def test_keys_outside_the_user_pattern_are_refused(acl_server: RedisServer) -> None:
    kv = BlockingRedisKVStorage(
        "full_docs",
        redis_url=acl_server.url,
        redis_username="app",
        redis_password="app-Secret-1",
        redis_key_prefix="other_project",
    )
    with pytest.raises(StorageOperationError, match="(?i)noperm") as info:
        kv.upsert({"d": {}})
    assert "app-Secret-1" not in str(info.value)


def test_read_only_user_reads_but_cannot_write(acl_server: RedisServer) -> None:
    writer = BlockingRedisKVStorage("text_chunks", redis_url=acl_server.url, redis_key_prefix="ro")
    writer.upsert({"c": {"content": "x"}})
    reader = BlockingRedisKVStorage(
        "text_chunks",
        redis_url=acl_server.url,
        redis_username="reader",
        redis_password="reader-Secret-2",
        redis_key_prefix="ro",
    )
    assert reader.get_by_id("c") == {"content": "x"}
    assert reader.filter_keys(["c", "d"]) == {"d"}
    with pytest.raises(StorageOperationError, match="(?i)noperm"):
        reader.upsert({"d": {}})
    with pytest.raises(StorageOperationError, match="(?i)noperm"):
        reader.drop()
    assert writer.get_by_id("c") == {"content": "x"}
