"""Property-based differential tests of the JSON codec against Python's ``json`` module,
through the real storage on a real redis-server.

The reference for writing is ``json.dumps(v, ensure_ascii=False, separators=(",", ":"),
allow_nan=True)`` encoded as UTF-8, with one extension: a lone surrogate (which has no
UTF-8 form) is written as the ``\\udXXX`` escape ``json.dumps(ensure_ascii=True)`` uses.

The reference for reading is ``json.loads(b.decode("utf-8"))``: stored values are UTF-8
text. ``json.loads(b)`` on *bytes* is laxer (it detects UTF-16/32, skips a UTF-8 BOM and
decodes with ``surrogatepass``, so UTF-8-encoded surrogates pass); no writer of this
package or of ``json.dumps(...).encode()`` produces such bytes, and other readers of the
same keys would choke on them, so the codec refuses them. The one other deliberate
difference is the nesting limit, a fixed number here (see ``test_nesting_*``).

Profiles: ``HYPOTHESIS_PROFILE=ci`` (the default: 150 examples a test, derandomized, so
reproducible) or ``dev`` (2000 examples, random). Neither keeps an example database, and
Hypothesis's caches go to the temporary directory, not ``./.hypothesis``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from nano_graphrag_redis import BlockingRedisKVStorage, SerializationError

# Besides its example database (off: database=None), Hypothesis caches Unicode tables and
# source constants in ./.hypothesis; keep that out of the repository too.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "nano-graphrag-redis-hypothesis")

# The storage fixtures are function-scoped and shared by every example of a test; that is
# intended: each example overwrites the same few keys under the test's own prefix.
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
settings.register_profile("ci", max_examples=150, derandomize=True, **_COMMON)
settings.register_profile("dev", max_examples=2000, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Mirrors MAX_DEPTH in src/codec/mod.rs: the deepest nesting of lists/dicts accepted either way.
MAX_DEPTH = 1024


@pytest.fixture
def kv(settings: dict[str, Any]) -> Iterator[BlockingRedisKVStorage]:
    with BlockingRedisKVStorage("text_chunks", **settings) as store:
        yield store


# --------------------------------------------------------------------------- references


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def expected_bytes(value: Any) -> bytes:
    # json.dumps(ensure_ascii=False) leaves a lone surrogate raw inside its string literal;
    # "backslashreplace" turns exactly those (the only code points UTF-8 refuses) into the
    # lowercase \udXXX escape, and backslashes of the text itself are already escaped.
    return dumps(value).encode("utf-8", "backslashreplace")


class Failed:
    """What ``reference`` returns when json.loads refuses the bytes."""


FAILED = Failed()


def reference(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        return FAILED


def project(value: Any, fields: set[str]) -> Any:
    """nano-graphrag's JsonKVStorage projection: falsy -> None; plus our one deliberate
    difference, a truthy non-dict is returned whole (JsonKVStorage raises there)."""
    if not value:
        return None
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k in fields}
    return value


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, floats bit-exact up to NaN payloads,
    dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)  # tells -0.0 from 0.0, NaN equals NaN
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def check_read(kv: BlockingRedisKVStorage, raw: redis.Redis, data: bytes, fields: set[str]) -> None:
    """Stores ``data`` raw and reads it back every way; the outcome must be the reference's."""
    raw.set(kv.redis_key("r"), data)
    want = reference(data)
    if want is FAILED:
        with pytest.raises(SerializationError, match='"r"'):
            kv.get_by_id("r")
        with pytest.raises(SerializationError, match='"r"'):
            kv.get_by_ids(["nope", "r"])
        with pytest.raises(SerializationError, match='"r"'):
            kv.get_by_ids(["r"], fields=fields)
        return
    got = kv.get_by_id("r")
    assert same(got, want), f"{data!r}: {got!r} != {want!r}"
    many = kv.get_by_ids(["r", "nope", "r"])
    assert same(many, [want, None, want]), f"{data!r}: {many!r}"
    projected = kv.get_by_ids(["r"], fields=fields)[0]
    assert same(projected, project(want, fields)), f"{data!r} {fields}: {projected!r}"


# --------------------------------------------------------------------------- strategies

# Characters the codec must treat specially, or that are easy to get wrong.
SPECIAL = (
    '\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x20\x7f\x80"\\/'
    "\u00e9\u2028\u2029\ufeff\ufffe\uffff\u4e2d\U0001f600\U00010000\U0010ffff"
)
LONE_SURROGATES = "\ud800\udbff\udc00\udfff\ud83d\ude00"

utf8_chars = st.characters(exclude_categories=["Cs"]) | st.sampled_from(SPECIAL)
any_chars = utf8_chars | st.sampled_from(LONE_SURROGATES) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)

# Not st.text(any_chars): text() merges the character strategies into one set of code
# points, where the 2048 surrogates (and SPECIAL) almost never come up.
texts = st.lists(any_chars, max_size=12).map("".join)

ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**50, -(10**50)]),
)
floats = st.one_of(
    st.floats(),  # NaN, infinities, subnormals included
    st.floats(min_value=-1e-300, max_value=1e-300),  # subnormal-heavy
    st.sampled_from(
        [
            0.0,
            -0.0,
            math.nan,
            math.inf,
            -math.inf,
            5e-324,
            -5e-324,
            2.225073858507201e-308,  # largest subnormal
            2.2250738585072014e-308,  # smallest normal
            1.7976931348623157e308,
            1e16,
            1e15,
            9999999999999998.0,
            1e-4,
            1e-5,
            0.1,
            1 / 3,
            123456789.0,
        ]
    ),
)


# Subclasses of the JSON types encode as their base type (json.dumps uses the base
# type's methods, never the subclass's) and read back as the base type.
class Str(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("json.dumps never calls a str subclass's encode()")


class Int(int):
    def __repr__(self) -> str:
        return f"Int({int.__repr__(self)})"


class Float(float):
    def __repr__(self) -> str:
        return f"Float({float.__repr__(self)})"


class Dict(dict[Any, Any]):
    pass


class List(list[Any]):
    pass


texts = texts | texts.map(Str)
ints = ints | ints.map(Int)
floats = floats | floats.map(Float)
# Keys json.dumps accepts besides str: int, float, bool, None (rendered "1", "1.5",
# "true", "null", "NaN", "Infinity", ...).
keys = st.one_of(texts, ints, floats, st.booleans(), st.none())


def json_values(key_strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=5).map(tuple),
            st.lists(children, max_size=5).map(List),
            st.dictionaries(key_strategy, children, max_size=5),
            st.dictionaries(key_strategy, children, max_size=5).map(Dict),
        ),
        max_leaves=25,
    )


values = json_values(keys)

# JSON text written by hand: whitespace everywhere it is allowed, number spellings and
# string escapes json.dumps never produces.
ws = st.text(" \t\n\r", max_size=2)
number_texts = st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?\Z") | st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "-0",
        "-0.0",
        "0e0",
        "1E+2",
        "1e400",
        "-1e400",
        "1e-400",
        "0e99999999999999999999",
        "1e99999999999999999999",
        "4.9e-324",
        "2.4703282292062328e-324",  # just above half the smallest subnormal
        "2.4703282292062327e-324",  # just below: rounds to 0.0
        "1.7976931348623158e308",  # rounds down to the largest double
        "1.7976931348623159e308",  # rounds up to infinity
        "9007199254740993",
        "9007199254740993.0",
        "0.30000000000000004",
        "123456789012345678901234567890",
        "-9223372036854775808",
        "-9223372036854775809",
        "9223372036854775808",
    ]
)
escapes = st.one_of(
    st.sampled_from(['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"]),
    st.integers(0, 0xFFFF).map(lambda u: f"\\u{u:04x}"),
    st.integers(0, 0xFFFF).map(lambda u: f"\\u{u:04X}"),
    st.integers(0xD800, 0xDFFF).map(lambda u: f"\\u{u:04x}"),  # lone surrogates
    st.tuples(st.integers(0xD800, 0xDBFF), st.integers(0xDC00, 0xDFFF)).map(lambda p: f"\\u{p[0]:04x}\\u{p[1]:04X}"),
)
plain_chars = st.characters(exclude_categories=["Cs"], exclude_characters='"\\', min_codepoint=0x20) | st.sampled_from(
    "\x7f\u2028\U0001f600é"
)
string_texts = st.lists(escapes | plain_chars, max_size=8).map(lambda parts: '"' + "".join(parts) + '"')
# Keys that often collide with each other and with the projected fields.
key_texts = st.sampled_from(['"a"', '"b"', '"\\u0061"', '""', '"\\ud800"', '"\\u00e9"', '"é"']) | string_texts
FIELD_NAMES = st.sets(st.sampled_from(["a", "b", "", "é", "c"]) | st.text(utf8_chars, max_size=2), max_size=3)


def field_sets(record: Any) -> st.SearchStrategy[set[str]]:
    """Fields to project ``record`` on: some of its keys, or names that may not be there.
    Keys with lone surrogates are left out: the storage refuses such field names (they
    are checked outside the codec, in src/py_store.rs)."""
    names = [k for k in record if _is_utf8(k)] if isinstance(record, dict) else []
    if not names:
        return FIELD_NAMES
    return st.sets(st.sampled_from(names), max_size=4) | FIELD_NAMES


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _array(items: list[tuple[str, str, str]]) -> str:
    return "[" + ",".join(a + v + b for a, v, b in items) + "]"


def _object(members: list[tuple[str, str, str, str, str, str]]) -> str:
    return "{" + ",".join(f"{a}{k}{b}:{c}{v}{d}" for a, k, b, c, v, d in members) + "}"


def _containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.tuples(ws, children, ws), max_size=4).map(_array),
        st.lists(st.tuples(ws, key_texts, ws, ws, children, ws), max_size=4).map(_object),
        ws.map(lambda w: "[" + w + "]"),
        ws.map(lambda w: "{" + w + "}"),
    )


json_texts = st.tuples(
    ws,
    st.recursive(
        st.one_of(number_texts, string_texts, st.sampled_from(["true", "false", "null"])),
        _containers,
        max_leaves=20,
    ),
    ws,
).map("".join)

dump_styles = st.fixed_dictionaries(
    {
        "ensure_ascii": st.booleans(),
        "indent": st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["\t", " \r\n"])),
        "separators": st.one_of(
            st.none(),
            st.tuples(st.sampled_from([",", ", ", " ,\n"]), st.sampled_from([":", ": ", "\t:\r"])),
        ),
    }
)


# --------------------------------------------------------------------------- encoding


@PROFILE
@given(batch=st.lists(values, min_size=1, max_size=4))
def test_stored_bytes_are_json_dumps_and_read_back_as_json_loads(
    kv: BlockingRedisKVStorage, raw: redis.Redis, batch: list[Any]
) -> None:
    # One upsert per batch: a value with lone surrogates must not make the others fail.
    records = {f"v{i}": value for i, value in enumerate(batch)}
    kv.upsert(records)
    wants = []
    for rid, value in records.items():
        stored = raw.get(kv.redis_key(rid))
        assert stored == expected_bytes(value), f"{value!r}: {stored!r}"
        want = json.loads(stored.decode("utf-8"))
        got = kv.get_by_id(rid)
        assert same(got, want), f"{value!r}: {got!r} != {want!r}"
        wants.append(want)
    got_all = kv.get_by_ids(list(records))
    assert same(got_all, wants)


@PROFILE
@given(value=st.dictionaries(keys, values, min_size=0, max_size=6), data=st.data())
def test_projection_of_written_records(
    kv: BlockingRedisKVStorage, raw: redis.Redis, value: dict[Any, Any], data: st.DataObject
) -> None:
    kv.upsert({"v": value})
    stored = raw.get(kv.redis_key("v"))
    want = json.loads(stored.decode("utf-8"))
    fields = data.draw(field_sets(want))
    got = kv.get_by_ids(["v", "nope"], fields=fields)
    assert same(got, [project(want, fields), None]), f"{stored!r} {fields}: {got!r}"


def test_lone_surrogates_round_trip_as_escapes(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    value = {"a": "\ud800", "b": ["x\udfffy", "\\\udc80"], "\udbff key": "\U0001f600\ud83d"}
    kv.upsert({"v": value, "plain": {"a": 1}})
    assert raw.get(kv.redis_key("v")) == (
        b'{"a":"\\ud800","b":["x\\udfffy","\\\\\\udc80"],"\\udbff key":"\xf0\x9f\x98\x80\\ud83d"}'
    )
    assert kv.get_by_id("v") == value
    assert kv.get_by_id("plain") == {"a": 1}
    assert kv.get_by_ids(["v"], fields={"a", "b"}) == [{"a": "\ud800", "b": ["x\udfffy", "\\\udc80"]}]
    # Regression: a key with a lone surrogate under a projection that drops it made the
    # json.loads fallback raise UnicodeEncodeError.
    assert kv.get_by_ids(["v"], fields={"z"}) == [{}]


def test_adjacent_lone_surrogates_read_back_as_json_loads_does(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    # A Python str can hold a high and a low surrogate side by side as two code points.
    # Each is written as its own escape; any JSON reader (json.loads included) joins the
    # two escapes into one astral character, so the record reads back as json.loads(json.dumps(v))
    # does: the single code point U+1F600. Two code points cannot survive a JSON round trip.
    value = "\ud83d\ude00"
    kv.upsert({"v": value})
    assert raw.get(kv.redis_key("v")) == b'"\\ud83d\\ude00"'
    assert kv.get_by_id("v") == json.loads(json.dumps(value)) == "\U0001f600"
    # Reversed (low then high), they stay two lone surrogates.
    kv.upsert({"w": "\ude00\ud83d"})
    assert raw.get(kv.redis_key("w")) == b'"\\ude00\\ud83d"'
    assert kv.get_by_id("w") == "\ude00\ud83d"


def test_ints_beyond_pythons_digit_limit(kv: BlockingRedisKVStorage, raw: redis.Redis) -> None:
    # Python refuses int <-> str conversion past sys.get_int_max_str_digits() (4300 by
    # default); json.dumps / json.loads raise ValueError there, the storage SerializationError.
    limit = 4300
    at_limit = int("9" * limit)
    kv.upsert({"ok": at_limit})
    assert raw.get(kv.redis_key("ok")) == b"9" * limit
    assert kv.get_by_id("ok") == at_limit
    with pytest.raises(SerializationError, match='"big"'):
        kv.upsert({"big": at_limit * 10 + 9, "ok": 1})
    assert kv.get_by_id("ok") == at_limit  # nothing of the batch was written
    check_read(kv, raw, b"9" * (limit + 1), {"a"})
    check_read(kv, raw, b'{"a": 1, "b": -' + b"9" * (limit + 1) + b"}", {"a"})


# --------------------------------------------------------------------------- decoding


@PROFILE
@given(value=values, style=dump_styles, data=st.data())
def test_reads_what_json_dumps_wrote(
    kv: BlockingRedisKVStorage, raw: redis.Redis, value: Any, style: dict[str, Any], data: st.DataObject
) -> None:
    text = json.dumps(value, **style)
    fields = data.draw(field_sets(json.loads(text)))
    # With ensure_ascii=False a lone surrogate stays raw in the text; written with
    # surrogatepass (as json.loads(bytes) would accept) it is not UTF-8: SerializationError.
    check_read(kv, raw, text.encode("utf-8", "surrogatepass"), fields)


@PROFILE
@given(text=json_texts, fields=FIELD_NAMES)
def test_reads_hand_written_json_like_json_loads(
    kv: BlockingRedisKVStorage, raw: redis.Redis, text: str, fields: set[str]
) -> None:
    assert reference(text.encode("utf-8")) is not FAILED, text  # the generator makes valid JSON
    check_read(kv, raw, text.encode("utf-8"), fields)


# --------------------------------------------------------------------------- malformed bytes


@PROFILE
@given(text=json_texts)
def test_every_prefix_of_a_document(kv: BlockingRedisKVStorage, raw: redis.Redis, text: str) -> None:
    # Most prefixes are truncated JSON (or cut a UTF-8 sequence); some are valid ("12" of
    # "123", "[1]" of "[1] "). Either way the storage must agree with json.loads.
    data = text.encode("utf-8")
    for end in range(len(data)):
        check_read(kv, raw, data[:end], {"a"})


# Bytes that break documents: JSON punctuation, and UTF-8 that is not: continuation bytes
# alone, overlong forms, encoded surrogates, code points past U+10FFFF, cut sequences.
BREAKERS = [
    b"\x00",
    b'"',
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b" ",
    b"\x80",
    b"\xbf",
    b"\xc0",
    b"\xc1\xbf",
    b"\xc2",
    b"\xc0\x80",  # overlong NUL
    b"\xc0\xaf",  # overlong "/"
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xe2\x82",  # cut "€"
    b"\xed\xa0\x80",  # the surrogate U+D800, UTF-8-encoded
    b"\xed\xa0\xbd\xed\xb8\x80",  # a surrogate pair, each half UTF-8-encoded (CESU-8)
    b"\xf4\x90\x80\x80",  # U+110000
    b"\xf5",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xef\xbb\xbf",  # BOM
    b"\\u",
    b"\\ud800",
    b"NaN",
    b"-",
    b"0",
    b".",
    b"e",
]


@PROFILE
@given(
    text=json_texts,
    edits=st.lists(
        st.tuples(st.sampled_from(["insert", "replace", "delete"]), st.floats(0, 1), st.sampled_from(BREAKERS)),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_documents(
    kv: BlockingRedisKVStorage, raw: redis.Redis, text: str, edits: list[tuple[str, float, bytes]]
) -> None:
    data = bytearray(text.encode("utf-8"))
    for op, where, chunk in edits:
        at = int(where * len(data))
        if op == "insert":
            data[at:at] = chunk
        elif op == "replace":
            data[at : at + len(chunk)] = chunk
        else:
            del data[at : at + 1]
    check_read(kv, raw, bytes(data), {"a"})


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b" \n",
        b"\x80",
        b"\xff",
        b"\xc3",
        b'"\xc3"',
        b'"\xc0\xaf"',
        b'"\xe0\x80\xaf"',
        b'"\xf0\x82\x82\xac"',
        b'"\xf4\x90\x80\x80"',
        b'"\xed\xa0\x80"',  # json.loads(bytes) accepts this (surrogatepass)
        b"\xef\xbb\xbf{}",  # json.loads(bytes) accepts this (BOM skipped)
        b"\xff\xfe{\x00}\x00",  # json.loads(bytes) accepts this (UTF-16)
        b"{}\x00",
        b'{"a":1}}',
        b'{"a":1} x',
        b"[1,2",
        b'"\\ud800\\u12"',
        b'"\\x41"',
        b"tru",
        b"-Infinit",
        b"-NaN",
        b"+1",
        b"0x10",
        b"1.",
        b"1e",
        b"\xc2\xa0 1",  # NO-BREAK SPACE is not JSON whitespace
    ],
)
def test_malformed_stored_bytes(kv: BlockingRedisKVStorage, raw: redis.Redis, stored: bytes) -> None:
    assert reference(stored) is FAILED
    check_read(kv, raw, stored, {"a"})


# --------------------------------------------------------------------------- nesting

# json.dumps / json.loads recurse in C and hit Python's recursion limit near depth 1000
# (CPython 3.11, default limit 1000: RecursionError); the codec's limit is a fixed
# MAX_DEPTH instead, the same for every interpreter. So at this depth the expected bytes
# are built by hand, and results are compared level by level (== would recurse too).


def nested(depth: int, wrap: Callable[[Any], Any], leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = wrap(value)
    return value


def unwrap(value: Any, depth: int, kind: type, step: Callable[[Any], Any]) -> Any:
    for level in range(depth):
        assert type(value) is kind, f"level {level}: {type(value)}"
        value = step(value)
    return value


@pytest.mark.parametrize("kind", [list, dict])
def test_nesting_at_the_limit_round_trips(kv: BlockingRedisKVStorage, raw: redis.Redis, kind: type) -> None:
    if kind is list:
        value = nested(MAX_DEPTH, lambda v: [v], "\ud800 leaf")
        text = b"[" * MAX_DEPTH + b'"\\ud800 leaf"' + b"]" * MAX_DEPTH

        def step(v: Any) -> Any:
            assert len(v) == 1
            return v[0]
    else:
        value = nested(MAX_DEPTH, lambda v: {"k": v}, "\ud800 leaf")
        text = b'{"k":' * MAX_DEPTH + b'"\\ud800 leaf"' + b"}" * MAX_DEPTH

        def step(v: Any) -> Any:
            assert list(v) == ["k"]
            return v["k"]

    kv.upsert({"deep": value})
    assert raw.get(kv.redis_key("deep")) == text
    assert unwrap(kv.get_by_id("deep"), MAX_DEPTH, kind, step) == "\ud800 leaf"
    [projected] = kv.get_by_ids(["deep"], fields={"k"})
    assert unwrap(projected, MAX_DEPTH, kind, step) == "\ud800 leaf"


@pytest.mark.parametrize("kind", [list, dict])
def test_nesting_past_the_limit_is_a_serialization_error(
    kv: BlockingRedisKVStorage, raw: redis.Redis, kind: type
) -> None:
    wrap: Callable[[Any], Any] = (lambda v: [v]) if kind is list else (lambda v: {"k": v})
    with pytest.raises(SerializationError, match="deeper than 1024"):
        kv.upsert({"ok": 1, "deep": nested(MAX_DEPTH + 1, wrap, 1)})
    assert kv.all_keys() == []
    # Read side: one level too many, written by someone else; also when the too-deep
    # value sits under a key the projection drops (it is still checked, not built).
    deep = b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    for stored in (b"[" + deep + b"]", b'{"k":' + deep + b"}", b'{"a":1,"k":' + deep + b"}"):
        raw.set(kv.redis_key("deep"), stored)
        for read in (
            lambda: kv.get_by_id("deep"),
            lambda: kv.get_by_ids(["deep"]),
            lambda: kv.get_by_ids(["deep"], fields={"a"}),
        ):
            with pytest.raises(SerializationError, match="too deep"):
                read()
