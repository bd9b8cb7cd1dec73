"""The defects found by the adversarial review (hardening issue), each on real servers.

Every test here failed before its fix: the breaker counted one stall N times, a slow
batch was re-sent until its deadline, Ctrl-C was lost in blocking calls, passwords
leaked through unix URLs, settings overflowed, server refusals looked like outages,
client text leaked into errors and bad ids raised three different types.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from nano_graphrag_redis import (
    BlockingRedisKVStorage,
    ConfigError,
    RedisKVStorage,
    SerializationError,
    StorageOperationError,
    StorageUnavailableError,
    redact_url,
)
from nano_graphrag_redis.local_server import RedisServer, free_port
from peers import http_peer

SECRET = "s3cr3t-Pa55"


def _mget_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


# -- 1. the breaker counts connection events, not requests --------------------------------


def test_a_stall_covered_by_retries_fails_none_of_100_calls_in_flight() -> None:
    # DEBUG SLEEP 3 with 100 calls in flight and a 1 s socket timeout: every call times
    # out once, on ONE connection (one breaker event), and then succeeds on the
    # reconnect. Before: the 100 timeouts counted as 100 failures, the breaker opened and
    # every call failed at 1.0 s.
    with RedisServer("--enable-debug-command", "yes") as server:
        kv = RedisKVStorage("x", redis_url=server.url, redis_socket_timeout=1)
        sleeper = redis.Redis(port=server.port)

        async def scenario() -> list[Any]:
            await kv.upsert({"a": {"v": 1}})
            stall = asyncio.get_running_loop().run_in_executor(None, sleeper.execute_command, "DEBUG", "SLEEP", "3")
            await asyncio.sleep(0.2)  # the server is asleep now
            results = await asyncio.gather(*(kv.get_by_id("a") for _ in range(100)), return_exceptions=True)
            await stall
            return results

        results = asyncio.run(scenario())
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], f"{len(failures)} of 100 failed, first: {failures[:1]}"
        assert results == [{"v": 1}] * 100
        sleeper.close()


def test_a_kill_and_immediate_restart_fails_no_writer() -> None:
    # 8 writers across SIGKILL + restart on the same port. Before: 2,869 failed calls
    # over the breaker's cooldown.
    with RedisServer() as server:
        stores = [BlockingRedisKVStorage("x", redis_url=server.url) for _ in range(8)]
        stop = threading.Event()
        failures: list[BaseException] = []
        written = [0] * len(stores)

        def writer(i: int) -> None:
            n = 0
            while not stop.is_set():
                try:
                    stores[i].upsert({f"w{i}-{n}": {"n": n}})
                    written[i] += 1
                except BaseException as e:  # noqa: BLE001 - counted and reported
                    failures.append(e)
                n += 1

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.kill(server.pid, signal.SIGKILL)
        server.stop()  # reaps the killed process
        server.start()  # same port, at once
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        assert failures == [], f"{len(failures)} failed calls, first: {failures[:1]}"
        assert all(n > 0 for n in written)


def test_calls_inside_their_budget_wait_for_the_probe_and_new_calls_fail_fast() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    patient = dict(
        redis_url=url,
        redis_retry_attempts=1000,
        redis_retry_deadline=20,
        redis_breaker_threshold=2,
        redis_breaker_cooldown=1,
    )
    kv = BlockingRedisKVStorage("x", **patient)
    outcome: list[Any] = []

    def patient_call() -> None:
        try:
            outcome.append(kv.get_by_id("a"))
        except BaseException as e:  # noqa: BLE001 - the assertion reports it
            outcome.append(e)

    caller = threading.Thread(target=patient_call)
    caller.start()  # nothing listens: its dials fail, the breaker opens, it waits
    time.sleep(0.6)  # two failed dials (100 ms apart at most) opened the breaker
    # A new call (same settings, so the same breaker) fails fast instead of waiting.
    with pytest.raises(StorageUnavailableError, match="circuit breaker open"):
        BlockingRedisKVStorage("x", **patient).ping()
    server = RedisServer()
    server.port = port
    with server:
        caller.join(timeout=15)
        assert outcome == [None], outcome  # the retrying call rode the probe through
        kv.ping()  # and the breaker is closed again


def test_a_server_down_for_good_makes_new_calls_fail_fast() -> None:
    url = f"redis://127.0.0.1:{free_port()}"
    kv = BlockingRedisKVStorage("x", redis_url=url, redis_breaker_threshold=2, redis_breaker_cooldown=30)
    messages = []
    for _ in range(4):
        with pytest.raises(StorageUnavailableError) as info:
            kv.get_by_id("a")
        messages.append(str(info.value))
    assert "circuit breaker open" in messages[-1], messages


# -- 2. a timeout means "no progress"; retries never pile work on a busy server ------------


def test_a_big_batch_slower_than_the_socket_timeout_is_sent_once() -> None:
    # 200k ids with a 0.2 s socket timeout against a healthy server. Before: the whole
    # 200-MGET pipeline timed out and was re-sent until the deadline (779 MGETs), then
    # the call failed. Now each page is its own request, all in flight at once.
    with RedisServer() as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url, redis_socket_timeout=0.2)
        record = {"content": "x" * 400}
        ids = [f"id-{i}" for i in range(200_000)]
        for start in range(0, len(ids), 20_000):
            kv.upsert({i: record for i in ids[start : start + 20_000]})
        client = redis.Redis(port=server.port)
        before = _mget_calls(client)
        got = kv.get_by_ids(ids)
        assert len(got) == len(ids) and got[0] == record and got[-1] == record
        pages = -(-len(ids) // 128)  # one MGET per page of 128 ids, none re-sent
        assert _mget_calls(client) - before == pages
        client.close()


def test_the_retry_deadline_is_a_hard_bound() -> None:
    # A server that accepts connections and never answers, a 5 s connect timeout and a
    # 1 s deadline. Before: a retry still waited a full connect timeout (3 s deadline
    # ended after 7 s).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}"
        kv = BlockingRedisKVStorage("x", redis_url=url, redis_connection_timeout=5, redis_retry_deadline=1)
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError, match="redis_retry_deadline = 1"):
            kv.get_by_id("a")
        assert time.monotonic() - started < 1.5


# -- 3. Ctrl-C in the blocking API, and the package's own error types ---------------------


def test_ctrl_c_interrupts_a_blocking_call_at_once() -> None:
    with RedisServer() as server:
        child = textwrap.dedent(
            f"""
            import os, signal, sys, threading, time
            from nano_graphrag_redis import BlockingRedisKVStorage
            kv = BlockingRedisKVStorage("x", redis_url="{server.url}", redis_socket_timeout=30)
            kv.ping()
            os.kill({server.pid}, signal.SIGSTOP)  # the server hangs from now on
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            started = time.monotonic()
            try:
                kv.get_by_id("a")
            except KeyboardInterrupt:
                print(f"KeyboardInterrupt after {{time.monotonic() - started:.2f}}s")
                sys.exit(3)
            except BaseException as e:
                print(f"{{type(e).__module__}}.{{type(e).__name__}}: {{e}}")
                sys.exit(4)
            """
        )
        try:
            out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert out.returncode == 3, out.stdout + out.stderr
        seconds = float(out.stdout.split()[-1].rstrip("s"))
        assert seconds < 0.3 + 0.3, out.stdout  # within ~0.2 s of the signal


# -- 4. passwords never leak, whatever the URL form ---------------------------------------


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[RedisServer]:
    sock = tmp_path / "redis.sock"
    with RedisServer("--unixsocket", str(sock), "--unixsocketperm", "700", "--requirepass", SECRET) as server:
        server.unix_socket = str(sock)  # type: ignore[attr-defined]
        yield server


def test_a_unix_url_password_shows_nowhere(unix_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    sock = unix_server.unix_socket  # type: ignore[attr-defined]
    kv = BlockingRedisKVStorage("x", redis_url=f"unix://{sock}?pass={SECRET}")
    kv.upsert({"a": {"v": 1}})  # the password works...
    assert kv.get_by_id("a") == {"v": 1}
    settings = kv.settings()
    assert settings["password_set"] is True  # ...and is known to be set...
    shown = [repr(kv), str(settings)]
    wrong = BlockingRedisKVStorage("x", redis_url=f"unix://{sock}?pass=wrong-{SECRET}")
    with caplog.at_level(logging.DEBUG), pytest.raises(StorageOperationError) as info:
        wrong.get_by_id("a")
    shown += [str(info.value), repr(wrong), caplog.text]
    for text in shown:  # ...but never shown
        assert SECRET not in text, text
    assert "pass=***" in repr(kv)


def test_an_unparseable_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        BlockingRedisKVStorage("x", redis_url=f"redis://user:pa/{SECRET}@host")
    assert SECRET not in str(info.value) and "user:***@host" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}@h:1/0",
        f"redis://:{SECRET}@h",
        f"redis://u:pa/{SECRET}@h",
        f"unix:///tmp/x.sock?db=1&pass={SECRET}",
        f"redis+unix:///tmp/x.sock?password={SECRET}",
        f"redis+sentinel://:{SECRET}@s1:1,s2:2/master",
    ],
)
def test_one_redaction_function_handles_every_form(url: str) -> None:
    assert SECRET not in redact_url(url)
    assert "***" in redact_url(url)


def test_the_cli_never_prints_the_password(unix_server: RedisServer, tmp_path: Path) -> None:
    sock = unix_server.unix_socket  # type: ignore[attr-defined]
    for url in (f"unix://{sock}?pass=wrong{SECRET}", f"redis://user:pa/{SECRET}@host"):
        out = subprocess.run(
            [sys.executable, "-m", "nano_graphrag_redis", "export", "--working-dir", str(tmp_path), "--redis-url", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert SECRET not in out.stdout + out.stderr, out.stdout + out.stderr


# -- 5. every numeric setting is range-checked --------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"redis_max_inflight": 2**62},  # used to panic on first use
        {"redis_retry_attempts": 2**32 + 1},  # used to wrap to 1
        {"redis_breaker_threshold": 2**32},  # used to wrap to 0: breaker off
        {"redis_max_connections": 2**32},
        {"redis_socket_timeout": float("nan")},
        {"redis_connection_timeout": float("inf")},
        {"redis_retry_deadline": 10**12},
        {"redis_ttl": 2**40},
        {"redis_max_inflight": 2**70},
    ],
)
def test_out_of_range_settings_are_config_errors(setting: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(setting))):
        BlockingRedisKVStorage("x", **setting)


# -- 6. a value the server will refuse is a clear final error, nothing written ------------


@pytest.mark.parametrize("ttl", [0, 60])
def test_a_value_over_proto_max_bulk_len_is_refused_before_sending(ttl: int) -> None:
    with RedisServer("--proto-max-bulk-len", "1mb") as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url, redis_ttl=ttl)
        kv.ping()  # connected: the limit is known
        client = redis.Redis(port=server.port)
        client.config_resetstat()
        batch = {"small": {"v": 1}, "big": {"v": "x" * (2 * 1024 * 1024)}}
        with pytest.raises(StorageOperationError, match=r'record "big" is \d+ bytes.*proto-max-bulk-len 1048576'):
            kv.upsert(batch)
        stats = client.info("commandstats")
        assert not any(name in stats for name in ("cmdstat_set", "cmdstat_mset", "cmdstat_multi"))
        assert kv.get_by_ids(["small", "big"]) == [None, None]
        client.close()


# -- 7. every error is one line, in the package's words, with the server's reason ---------


def test_a_missing_password_on_batch_paths_says_noauth_in_one_line() -> None:
    with RedisServer("--requirepass", SECRET) as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url)
        for call in (
            lambda: kv.get_by_ids(["a", "b"]),
            lambda: kv.filter_keys(["a", "b"]),
            lambda: kv.upsert({"a": 1}),
        ):
            with pytest.raises(StorageOperationError) as info:
                call()
            message = str(info.value)
            assert "NOAUTH" in message and "redis_password" in message
            assert "\n" not in message and "Pipeline" not in message and "Index 0" not in message


def test_a_server_that_speaks_http_is_one_clear_line() -> None:
    with http_peer() as url:
        kv = BlockingRedisKVStorage("x", redis_url=url)
        with pytest.raises(StorageUnavailableError) as info:
            kv.get_by_id("a")
    message = str(info.value)
    assert "not in the Redis protocol" in message and "\n" not in message, message
    assert "Incompatible type" not in message


def test_a_server_at_maxclients_keeps_its_reason() -> None:
    with RedisServer("--maxclients", "1") as server:
        holder = redis.Redis(port=server.port)
        holder.ping()  # takes the only client slot
        kv = BlockingRedisKVStorage("x", redis_url=server.url, redis_retry_attempts=1)
        with pytest.raises(StorageUnavailableError, match="max number of clients reached"):
            kv.get_by_id("a")
        holder.close()


# -- 8. one error type for a bad id, everywhere; every str id round-trips -----------------


@pytest.mark.parametrize("bad", [1, None, b"bytes", 1.5])
def test_a_bad_id_is_a_serialization_error_everywhere(settings: dict[str, Any], bad: Any) -> None:
    kv = BlockingRedisKVStorage("x", **settings)
    calls = [
        lambda: kv.get_by_id(bad),
        lambda: kv.delete_by_id(bad),
        lambda: kv.get_by_ids(["ok", bad]),
        lambda: kv.filter_keys(["ok", bad]),
        lambda: kv.upsert({bad: {"v": 1}}),
        lambda: kv.redis_key(bad),
    ]
    for call in calls:
        with pytest.raises(SerializationError, match="ids must be str") as info:
            call()
        assert isinstance(info.value, TypeError)


def test_ids_with_lone_surrogates_round_trip(settings: dict[str, Any]) -> None:
    kv = BlockingRedisKVStorage("x", **settings)
    odd = ["\ud800", "a\udfffb", "\udc80\ud83d", "plain", "😀"]
    kv.upsert({i: {"id": n} for n, i in enumerate(odd)})
    assert [kv.get_by_id(i) for i in odd] == [{"id": n} for n in range(len(odd))]
    assert kv.get_by_ids(odd) == [{"id": n} for n in range(len(odd))]
    assert sorted(kv.all_keys()) == sorted(odd)
    assert kv.filter_keys(odd + ["\udbff"]) == {"\udbff"}
    assert kv.delete_by_id("\ud800") is True


# -- 9. an eviction policy changed at run time is seen at the next connection ------------


def test_an_evicting_policy_set_at_run_time_is_warned_once_at_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url)
        kv.ping()
        admin = redis.Redis(port=server.port)
        admin.config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                admin.client_kill_filter(_type="normal", skipme=True)
                kv.upsert({"a": {"v": 1}})  # reconnects, checks the policy again
        warnings = [r for r in caplog.records if "allkeys-lru" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        admin.close()
