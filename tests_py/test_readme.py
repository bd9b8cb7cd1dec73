"""The README's examples run: its Python blocks are executed (pointed at the test
server, the offline model and the sample text), and every command line it shows uses
options the command really has."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
BASH_LINES = [
    line.split("#")[0].strip()
    for block in re.findall(r"```bash\n(.*?)```", README, re.S)
    for line in block.splitlines()
    if line.strip().startswith("nano-graphrag-redis ")
]


def block_with(marker: str) -> str:
    (block,) = [b for b in PYTHON_BLOCKS if marker in b]
    return block


def run_graphrag_block(code: str, namespace: dict[str, Any]) -> None:
    # GraphRAG's sync insert()/query() run on asyncio.get_event_loop(): give them one
    # we close afterwards (an unclosed loop is a ResourceWarning, an error here).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_graphrag_example(tmp_path: Path, redis_url: str, prefix: str) -> None:
    code = block_with('Path("book.txt")')
    book = tmp_path / "book.txt"
    book.write_text(SAMPLE_TEXT, encoding="utf-8")
    code = code.replace('working_dir="./work",', "**offline_graphrag_kwargs(WORK, MODEL),")
    code = code.replace('"redis://localhost:6379"', f'"{redis_url}", "redis_key_prefix": "{prefix}"')
    code = code.replace('Path("book.txt")', f"Path({str(book)!r})")
    assert "offline_graphrag_kwargs" in code and redis_url in code and str(book) in code
    namespace: dict[str, Any] = {
        "offline_graphrag_kwargs": offline_graphrag_kwargs,
        "WORK": str(tmp_path),
        "MODEL": OfflineModel(),
    }
    with offline_tiktoken():
        run_graphrag_block(code, namespace)
    assert namespace["MODEL"].calls > 0


def test_offline_graphrag_example(
    tmp_path: Path, redis_url: str, prefix: str, raw: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """The offline variant runs as written: only the Redis URL (plus a test prefix) and
    the working directory change; no patching around it."""
    code = block_with("with offline_tiktoken():")
    work = tmp_path / "work-offline"
    code = code.replace('"./work-offline"', repr(str(work)))
    code = code.replace('"redis://localhost:6379"', f'"{redis_url}", "redis_key_prefix": "{prefix}"')
    assert str(work) in code and redis_url in code
    run_graphrag_block(code, {})
    answer = capsys.readouterr().out
    assert "Marisol Vance" in answer, answer
    assert work.is_dir()
    stored = {ns: len(list(raw.scan_iter(f"{prefix}:{ns}:*"))) for ns in ("full_docs", "text_chunks")}
    assert stored["full_docs"] == 1 and stored["text_chunks"] > 1, stored
    assert next(raw.scan_iter(f"{prefix}:llm_response_cache:*"), None) is not None
    assert next(raw.scan_iter(f"{prefix}:community_reports:*"), None) is not None


def test_direct_use_example(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = block_with("async with RedisKVStorage").replace("redis://localhost:6379", redis_url)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "[{'content': 'Alice met Bob.'}, None]",
        "{'chunk-2'}",
        "{'content': 'Alice met Bob.', 'tokens': 4}",
    ]


def test_register_example(monkeypatch: pytest.MonkeyPatch) -> None:
    from fork_factory import factory_of, fresh_factory_module

    fork = fresh_factory_module()
    monkeypatch.setitem(sys.modules, fork.__name__, fork)
    code = block_with("register(StorageFactory)").replace(
        "from nano_graphrag._storage.factory import StorageFactory\n", ""
    )
    namespace: dict[str, Any] = {"StorageFactory": factory_of(fork)}
    exec(compile(code, "README.md", "exec"), namespace)
    assert set(factory_of(fork)._kv_backends) == {"json", "redis"}


@pytest.mark.parametrize("line", BASH_LINES)
def test_command_lines_use_real_options(line: str) -> None:
    words = shlex.split(line)
    command = words[1]
    help_text = subprocess.run(
        [sys.executable, "-m", "nano_graphrag_redis", command, "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for option in [w for w in words if w.startswith("--")]:
        assert option in help_text, (line, option)


def test_settings_table_lists_every_setting() -> None:
    import nano_graphrag_redis

    described = nano_graphrag_redis.BlockingRedisKVStorage("x").settings()
    for key in described:
        if key in ("namespace", "password_set", "ttl", "url", "username", "mode"):
            continue
        assert f"`redis_{key}`" in README, key
