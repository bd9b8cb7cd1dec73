"""Values are UTF-8 JSON, byte for byte what ``json.dumps(value, ensure_ascii=False,
separators=(",", ":"))`` writes; what JSON cannot hold is refused before anything is sent;
data written by redis-py with ``json.dumps`` reads back, and the other way round."""

from __future__ import annotations

import enum
import json
import math
import random
from collections import OrderedDict
from typing import Any

import pytest
import redis

from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage, SerializationError


def canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randint(-(2**80), 2**80)
    if kind == 1:
        return rng.choice([rng.random() * 10 ** rng.randint(-30, 30), 0.1, 1e16, 1e-5, -2.5])
    if kind == 2:
        alphabet = 'abc"\\\n\t\x01\x1f é中😀\u2028/'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.randint(-1000, 1000)
    if kind == 5:
        return ""
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{rng.randrange(50)}": random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


@pytest.fixture
def kv(settings: dict[str, Any]) -> BlockingRedisKVStorage:
    return BlockingRedisKVStorage("text_chunks", **settings)


def test_bytes_match_json_dumps(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    rng = random.Random(1234)
    records = {f"r{i}": random_value(rng) for i in range(300)}
    kv.upsert(records)
    for rid, value in records.items():
        assert raw.get(kv.redis_key(rid)) == canonical(value), rid
        assert kv.get_by_id(rid) == json.loads(canonical(value))


def test_python_types_encode_as_json_dumps_does(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    class Color(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    class MyFloat(float):
        pass

    value = {
        "tuple": (1, (2, 3)),
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "enum_str": Color.RED,
        "enum_int": Level.HIGH,
        "float_sub": MyFloat(2.5),
        1: "int key",
        2.5: "float key",
        False: "bool key",
        None: "none key",
    }
    kv.upsert({"v": value})
    assert raw.get(kv.redis_key("v")) == canonical(value)
    assert kv.get_by_id("v") == json.loads(json.dumps(value))


def test_nan_and_infinity_behave_like_python_json(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    kv.upsert({"v": {"nan": math.nan, "inf": math.inf, "ninf": -math.inf}})
    assert raw.get(kv.redis_key("v")) == b'{"nan":NaN,"inf":Infinity,"ninf":-Infinity}'
    got = kv.get_by_id("v")
    assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf


def test_reads_what_redis_py_json_dumps_wrote(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    values = [
        {"content": "héllo 😀 wörld", "n": 10**40, "f": 1.5e300, "l": [1, {"a": None}]},
        {"lone": "\ud800 surrogate"},  # legal for Python's json: ensure_ascii writes \ud800
        ["top", "level", "list"],
        "a string",
        12345678901234567890123,
    ]
    for i, value in enumerate(values):
        raw.set(kv.redis_key(f"p{i}"), json.dumps(value))  # redis-py default: ensure_ascii=True
        raw.set(kv.redis_key(f"q{i}"), json.dumps(value, indent=2, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    for i, value in enumerate(values):
        assert kv.get_by_id(f"p{i}") == value
        if i == 1:  # a lone surrogate written raw (surrogatepass) is not UTF-8
            with pytest.raises(SerializationError, match='"q1"'):
                kv.get_by_id("q1")
        else:
            assert kv.get_by_id(f"q{i}") == value
    assert kv.get_by_ids([f"p{i}" for i in range(len(values))]) == values
    assert kv.get_by_ids(["p0", "p1"], fields={"content", "lone"}) == [
        {"content": values[0]["content"]},
        {"lone": values[1]["lone"]},
    ]


@pytest.mark.parametrize(
    "stored",
    [
        b'{"content":"ok \xff there"}',  # a value
        b'{"c\xc3":"a key cut mid-character"}',  # a key
        b'{"content":"fine","skipped":"\xed\xa0\x80 raw surrogate"}',  # dropped by fields=
        b'{"content":"escaped \\n then \xe2\x82"}',  # a string with escapes
        b'["\\ud800 then raw \xed\xb0\x80"]',  # surrogatepass would take it; UTF-8 does not
    ],
)
def test_invalid_utf8_anywhere_is_a_serialization_error(
    kv: BlockingRedisKVStorage, raw: redis.Redis, stored: bytes
) -> None:
    # Each string is checked once, by whoever reads it; json.loads(stored.decode()) refuses all.
    with pytest.raises(UnicodeDecodeError):
        stored.decode("utf-8")
    raw.set(kv.redis_key("bad"), stored)
    with pytest.raises(SerializationError, match=r'"bad" is not valid JSON: not UTF-8'):
        kv.get_by_id("bad")
    with pytest.raises(SerializationError, match="not UTF-8"):
        kv.get_by_ids(["bad"], fields={"content"})


def test_redis_py_reads_what_we_wrote(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    value = {"content": "Grüße 😀", "tokens": 2**65, "nested": {"x": [0.1, None, True]}}
    kv.upsert({"mine": value})
    assert json.loads(raw.get(kv.redis_key("mine"))) == value


@pytest.mark.parametrize(
    "bad",
    [
        {1, 2},
        b"bytes",
        object(),
        {"nested": {"deeper": [1, {2, 3}]}},
        {(1, 2): "tuple key"},
        complex(1, 2),
    ],
    ids=["set", "bytes", "object", "nested_set", "tuple_key", "complex"],
)
def test_unencodable_value_fails_the_whole_batch(kv: BlockingRedisKVStorage, raw: redis.Redis, bad: Any) -> None:
    batch = {f"good{i}": {"v": i} for i in range(50)}
    batch["bad"] = bad
    with pytest.raises(SerializationError) as info:
        kv.upsert(batch)
    assert isinstance(info.value, TypeError)
    assert '"bad"' in str(info.value)
    assert kv.all_keys() == []
    assert raw.keys(kv.redis_key("*")) == []


def test_circular_reference_is_refused(kv: BlockingRedisKVStorage) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(SerializationError, match="circular|deeper"):
        kv.upsert({"x": loop})
    assert kv.all_keys() == []


def test_deep_but_finite_nesting_round_trips(kv: BlockingRedisKVStorage) -> None:
    value: Any = "leaf"
    for _ in range(500):
        value = [value]
    kv.upsert({"deep": value})
    assert kv.get_by_id("deep") == value


def test_lone_surrogates_round_trip(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    # Python strs may hold lone surrogates (e.g. from surrogateescape decoding); they are
    # written as the \udXXX escapes json.dumps(ensure_ascii=True) uses, the rest as UTF-8.
    value = {"s": "\udc80 é", "\ud800": ["\udfff"]}
    kv.upsert({"x": value, "y": {"plain": 1}})
    assert raw.get(kv.redis_key("x")) == '{"s":"\\udc80 é","\\ud800":["\\udfff"]}'.encode()
    assert kv.get_by_id("x") == value
    assert kv.get_by_ids(["y", "x"], fields={"s"}) == [{}, {"s": "\udc80 é"}]


def test_non_str_ids_are_refused(kv: BlockingRedisKVStorage) -> None:
    with pytest.raises(SerializationError, match="ids must be str"):
        kv.upsert({1: {"v": 1}})  # type: ignore[dict-item]
    with pytest.raises(SerializationError, match="item 1"):
        kv.get_by_ids(["a", 2])  # type: ignore[list-item]
    with pytest.raises(SerializationError, match="not a str"):
        kv.filter_keys("abc")  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="dict"):
        kv.upsert([("a", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize("stored", [b"{not json", b"\xff\xfe", b'{"a":1} trailing', b"", b'"\x01"'])
def test_corrupt_stored_value_names_the_record(kv: BlockingRedisKVStorage, raw: redis.Redis, stored: bytes) -> None:
    raw.set(kv.redis_key("broken"), stored)
    with pytest.raises(SerializationError, match='"broken"'):
        kv.get_by_id("broken")
    with pytest.raises(SerializationError, match='"broken"'):
        kv.get_by_ids(["broken"], fields={"a"})


def test_non_object_records_and_fields(kv: BlockingRedisKVStorage) -> None:
    # The one place we differ from JsonKVStorage (which raises AttributeError on
    # `.items()`): a truthy record that is not an object cannot be projected and is
    # returned whole; falsy ones read as None, as there.
    kv.upsert({"list": [1, 2], "str": "s", "zero": 0, "empty_list": [], "false": False})
    got = kv.get_by_ids(["list", "str", "zero", "empty_list", "false"], fields={"a"})
    assert got == [[1, 2], "s", None, None, None]


async def test_async_api_raises_serialization_error_at_await(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("text_chunks", **settings)
    with pytest.raises(SerializationError):
        await kv.upsert({"x": {"bad": {1}}})
    assert await kv.all_keys() == []
