"""Smoke test of an installed nano-graphrag-redis wheel, for the platforms of
release.yml where the full test suite does not run (see the comments there).

It needs nothing but the wheel (installed with ``--no-deps``) and the standard library:
the package's ``__init__`` imports nano-graphrag, whose own requirements do not install
everywhere (hnswlib has no wheels), so this loads the compiled core and the
dependency-free modules (``errors``, ``local_server``) without running ``__init__``.
The pure-Python part is the same on every platform and is tested on Linux x86_64.

What it checks, for real:

- the compiled extension loads, and ``__version__`` is Cargo.toml's ``version``;
- settings are validated (a bad URL is a ``ConfigError``, a ``ValueError``);
- a closed port is a ``StorageUnavailableError`` (a ``ConnectionError``), through the
  tokio runtime, blocking and from asyncio;
- with a ``redis-server`` on PATH (or given as argument): a write/read round trip,
  blocking and from asyncio (eventfd on Linux, ``call_soon_threadsafe`` elsewhere).

Usage: python smoke_wheel.py [REDIS_SERVER_BINARY]
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import re
import shutil
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def load_package() -> types.ModuleType:
    spec = importlib.util.find_spec("nano_graphrag_redis")  # finds, does not import
    assert spec is not None and spec.submodule_search_locations, "nano_graphrag_redis is not installed"
    location = Path(next(iter(spec.submodule_search_locations))).resolve()
    site = Path(sysconfig.get_paths()["platlib"]).resolve()
    assert location.is_relative_to(site), f"{location} is not the installed wheel (expected under {site})"
    package = types.ModuleType("nano_graphrag_redis")
    package.__path__ = [str(location)]
    sys.modules["nano_graphrag_redis"] = package
    return package


def expect(error: type[BaseException], call: Any) -> BaseException:
    try:
        call()
    except error as exc:
        return exc
    raise AssertionError(f"expected {error.__name__}")


async def async_round_trip(store: Any) -> Any:
    await store.put({"async": {"ok": [1, 2.5, "ü"]}})
    return await store.get("async")


async def async_unavailable(store: Any) -> BaseException:
    try:
        await store.ping()
    except Exception as exc:
        return exc
    raise AssertionError("expected an error")


def main() -> None:
    load_package()
    core = importlib.import_module("nano_graphrag_redis._core")
    errors = importlib.import_module("nano_graphrag_redis.errors")
    local_server = importlib.import_module("nano_graphrag_redis.local_server")

    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"', cargo, re.M)
    assert match, "no version in Cargo.toml"
    assert core.__version__ == match.group(1), (core.__version__, match.group(1))
    print(f"nano-graphrag-redis {core.__version__}: core loaded from {core.__file__}")

    bad = expect(errors.ConfigError, lambda: core.Store("ns", None, {"redis_url": "http://nowhere"}, True))
    assert isinstance(bad, ValueError) and "redis_url" in str(bad), bad

    closed = {
        "redis_url": f"redis://127.0.0.1:{local_server.free_port()}",
        "redis_retry_attempts": 0,
        "redis_connection_timeout": 2,
    }
    down = expect(errors.StorageUnavailableError, lambda: core.Store("ns", None, closed, True).ping())
    assert isinstance(down, ConnectionError), down
    down = asyncio.run(async_unavailable(core.Store("ns", None, closed, False)))
    assert isinstance(down, errors.StorageUnavailableError), repr(down)
    print("settings validated; a closed port is StorageUnavailableError (blocking and asyncio)")

    binary = sys.argv[1] if len(sys.argv) > 1 else shutil.which("redis-server")
    if binary is None:
        print("no redis-server on this platform: round trip skipped")
        return
    with local_server.RedisServer(binary=binary) as server:
        settings = {"redis_url": server.url, "redis_key_prefix": "smoke"}
        store = core.Store("text_chunks", None, settings, True)
        store.put({"a": {"content": "Alice met Bob.", "n": 2**70}, "b": [None, True]})
        assert store.get("a") == {"content": "Alice met Bob.", "n": 2**70}
        assert store.get_many(["a", "zz", "b"], ["content"]) == [{"content": "Alice met Bob."}, None, [None, True]]
        assert store.missing(["a", "zz"]) == {"zz"}
        assert asyncio.run(async_round_trip(core.Store("text_chunks", None, settings, False))) == {"ok": [1, 2.5, "ü"]}
        assert sorted(store.ids()) == ["a", "async", "b"]
        assert store.clear() == 3
        store.close()
    print(f"round trip against {binary}: blocking and asyncio")


if __name__ == "__main__":
    main()
