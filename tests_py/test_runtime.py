"""The runtime model: one storage works from any event loop, from threads, across
fork(), with thousands of calls in flight, and cancellation never mixes up replies."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from nano_graphrag_redis import BlockingRedisKVStorage, RedisKVStorage, StorageUnavailableError
from nano_graphrag_redis.local_server import RedisServer


def test_two_successive_asyncio_runs_on_one_instance(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("full_docs", **settings)
    asyncio.run(kv.upsert({"a": {"run": 1}}))
    assert asyncio.run(kv.get_by_id("a")) == {"run": 1}
    asyncio.run(kv.upsert({"b": {"run": 3}}))
    assert sorted(asyncio.run(kv.all_keys())) == ["a", "b"]


def test_graphrag_style_run_until_complete_on_changing_loops(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("full_docs", **settings)
    for i in range(5):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(kv.upsert({str(i): {"i": i}}))
        assert loop.run_until_complete(kv.get_by_ids([str(j) for j in range(i + 1)])) == [
            {"i": j} for j in range(i + 1)
        ]
        loop.close()


async def test_ten_thousand_concurrent_awaits(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("text_chunks", redis_max_inflight=256, **settings)
    await kv.upsert({str(i): {"i": i} for i in range(100)})
    results = await asyncio.gather(*(kv.get_by_id(str(i % 120)) for i in range(10_000)))
    for i, got in enumerate(results):
        assert got == ({"i": i % 120} if i % 120 < 100 else None)


async def test_backpressure_with_tiny_inflight_bound(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("text_chunks", redis_max_inflight=2, **settings)
    await asyncio.gather(*(kv.upsert({str(i): {"i": i}}) for i in range(500)))
    assert len(await kv.all_keys()) == 500


async def test_cancellation_never_mixes_up_replies(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("text_chunks", **settings)
    await kv.upsert({str(i): {"i": i} for i in range(200)})
    for _ in range(5):
        tasks = [asyncio.ensure_future(kv.get_by_id(str(i))) for i in range(200)]
        await asyncio.sleep(0)
        for t in tasks[::2]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for i, got in enumerate(done):
            if i % 2:
                assert got == {"i": i}
            else:
                assert isinstance(got, asyncio.CancelledError) or got == {"i": i}
    # The connection is still in order afterwards.
    assert await kv.get_by_ids(["5", "7"]) == [{"i": 5}, {"i": 7}]


async def test_timeout_cancellation_then_reuse(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("text_chunks", **settings)
    await kv.upsert({"big": {"x": "y" * 2_000_000}})
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(kv.get_by_id("big") for _ in range(50))), 0.001)
    assert (await kv.get_by_id("big"))["x"][:3] == "yyy"


def test_threads_each_with_their_own_loop(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("text_chunks", **settings)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:

            async def work() -> None:
                await kv.upsert({f"t{n}-{i}": {"n": n, "i": i} for i in range(50)})
                got = await asyncio.gather(*(kv.get_by_id(f"t{n}-{i}") for i in range(50)))
                assert got == [{"n": n, "i": i} for i in range(50)]

            for _ in range(3):
                asyncio.run(work())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(asyncio.run(kv.all_keys())) == 300


def test_blocking_api_from_many_threads(settings: dict[str, Any]) -> None:
    kv = BlockingRedisKVStorage("text_chunks", **settings)
    kv.upsert({str(i): {"i": i} for i in range(100)})
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(200):
                assert kv.get_by_id(str(i % 100)) == {"i": i % 100}
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_blocking_threads_and_a_loop_share_one_connection(settings: dict[str, Any]) -> None:
    """A blocking caller reads replies off the shared socket itself (the replies of
    others too), the reader task reads the rest. With threads and an event loop on one
    connection and replies big enough to span many reads, every caller still gets
    exactly its own records."""
    kv = RedisKVStorage("text_chunks", **settings)
    blocking = kv.blocking()
    records = {str(i): {"i": i, "pad": "x" * (i * 7919 % 300_000)} for i in range(60)}
    blocking.upsert(records)
    errors: list[BaseException] = []

    def caller(seed: int) -> None:
        try:
            for n in range(120):
                i = str((seed * 17 + n) % 60)
                assert blocking.get_by_id(i) == records[i]
                if n % 8 == 0:
                    assert blocking.get_by_ids([i, "missing", i]) == [records[i], None, records[i]]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    async def gets() -> None:
        for n in range(120):
            ids = [str((n * 5 + k) % 60) for k in range(6)]
            assert await asyncio.gather(*(kv.get_by_id(i) for i in ids)) == [records[i] for i in ids]

    def loop() -> None:
        try:
            asyncio.run(gets())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(seed,)) for seed in range(4)]
    threads.append(threading.Thread(target=loop))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_blocking_call_releases_the_gil() -> None:
    """While a blocking call waits on a frozen server, other Python threads run."""
    with RedisServer() as server:
        kv = BlockingRedisKVStorage("x", redis_url=server.url, redis_socket_timeout=1.5, redis_retry_attempts=0)
        kv.ping()
        os.kill(server.pid, signal.SIGSTOP)
        try:
            counter = 0
            stop = threading.Event()

            def count() -> None:
                nonlocal counter
                while not stop.is_set():
                    counter += 1

            outcome: list[BaseException] = []

            def call() -> None:
                try:
                    kv.get_by_id("a")
                except BaseException as e:  # noqa: BLE001
                    outcome.append(e)

            caller = threading.Thread(target=call)
            caller.start()
            time.sleep(0.1)  # the caller is now waiting inside Rust
            counter_thread = threading.Thread(target=count)
            counter_thread.start()
            time.sleep(0.3)
            progress = counter
            stop.set()
            counter_thread.join()
            caller.join(10)
            assert progress > 1000, "the waiting call held the GIL"
            assert len(outcome) == 1 and isinstance(outcome[0], StorageUnavailableError)
        finally:
            os.kill(server.pid, signal.SIGCONT)


def _child(url: str, prefix: str, queue: Any) -> None:
    async def work() -> Any:
        kv = RedisKVStorage("full_docs", redis_url=url, redis_key_prefix=prefix)
        await kv.upsert({"child": {"pid": os.getpid()}})
        return await kv.get_by_id("parent")

    queue.put(asyncio.run(work()))


def test_fork_child_rebuilds_runtime_and_connections(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("full_docs", **settings)
    asyncio.run(kv.upsert({"parent": {"pid": os.getpid()}}))  # runtime + connection live now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(settings["redis_url"], settings["redis_key_prefix"], queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == {"pid": os.getpid()}
    assert asyncio.run(kv.get_by_id("child")) is not None
    assert asyncio.run(kv.get_by_id("parent")) == {"pid": os.getpid()}


@pytest.mark.parametrize("wake", ["threadsafe", "eventfd"])
def test_both_wake_paths(wake: str, settings: dict[str, Any]) -> None:
    """The call_soon_threadsafe fallback (loops without add_reader) gives the same results."""
    code = f"""
import asyncio
from nano_graphrag_redis import RedisKVStorage
kv = RedisKVStorage("x", redis_url={settings["redis_url"]!r}, redis_key_prefix={settings["redis_key_prefix"]!r})
async def main():
    await kv.upsert({{str(i): {{"i": i}} for i in range(100)}})
    got = await asyncio.gather(*(kv.get_by_id(str(i)) for i in range(2000)))
    assert got == [({{"i": i}} if i < 100 else None) for i in range(2000)], got[:3]
    print("ok")
asyncio.run(main())
asyncio.run(main())
"""
    env = dict(os.environ)
    if wake == "threadsafe":
        env["NANO_GRAPHRAG_REDIS_WAKE"] = "threadsafe"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "ok"]


def _abandon_gets(kv: RedisKVStorage, calls: int) -> None:
    """Starts `calls` get_by_id on a new loop, cancels them in flight, closes the loop."""
    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(kv.get_by_id("a")) for _ in range(calls)]
    loop.run_until_complete(asyncio.sleep(0))  # started, not finished
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


async def test_loop_closed_with_calls_in_flight_does_not_break_the_next_loop(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("x", **settings)
    await kv.upsert({"a": {"v": 1}})
    for _ in range(20):
        await asyncio.to_thread(_abandon_gets, kv, 100)
    assert await kv.get_by_id("a") == {"v": 1}


def test_calls_of_a_closed_loop_still_finish(settings: dict[str, Any]) -> None:
    """Loops closed with calls in flight, one after another on one thread: the next
    loop watches the same socket and reads replies meant for the closed one's calls.
    Those calls must finish elsewhere (on tokio), or their in-flight permits would
    never come back and the tiny bound here would block every later call."""
    kv = RedisKVStorage("x", redis_max_inflight=4, **settings)
    kv.blocking().upsert({"a": {"v": 1}})
    for _ in range(30):
        _abandon_gets(kv, 20)
    assert asyncio.run(asyncio.wait_for(kv.get_by_id("a"), 10)) == {"v": 1}
    assert kv.blocking().get_by_ids(["a"] * 50) == [{"v": 1}] * 50


_RECONNECTING_WITH_DEBUG_LOGS = """
import asyncio, logging, sys
import redis
from nano_graphrag_redis import RedisKVStorage

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
url, prefix, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = redis.Redis(port=port)

async def main():
    kv = RedisKVStorage("x", redis_url=url, redis_key_prefix=prefix)
    await kv.upsert({"a": {"v": 1}})
    for _ in range(30):
        raw.client_kill_filter(_type="normal", skipme=True)
        got = await asyncio.gather(*(kv.get_by_id("a") for _ in range(50)))
        assert got == [{"v": 1}] * 50
    print("done")

asyncio.run(main())
"""


def test_reconnects_with_debug_logging_never_deadlock(settings: dict[str, Any], redis_server: RedisServer) -> None:
    """With records logged, a tokio thread takes the GIL for each record; calls polled on
    the event loop's thread take the links' locks, so they poll without the GIL, and no
    lock is held while logging. A stress of that pairing (connections killed under 50
    calls at a time, 30 times, every record logged): a deadlock would show as a timeout.
    It is a race, so this test can pass by luck; the rule it guards is in
    `bridge/on_loop.rs` and `link.rs`."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _RECONNECTING_WITH_DEBUG_LOGS,
            settings["redis_url"],
            settings["redis_key_prefix"],
            str(redis_server.port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "done"
    assert done.stderr.count("reconnecting") >= 10, done.stderr[-2000:]


def test_many_loops_do_not_leak_file_descriptors(settings: dict[str, Any]) -> None:
    kv = RedisKVStorage("x", **settings)
    asyncio.run(kv.upsert({"a": {"v": 1}}))
    asyncio.run(kv.get_by_id("a"))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(200):
        asyncio.run(kv.get_by_id("a"))
    after = len(os.listdir("/proc/self/fd"))
    assert after - before < 10


def test_uvloop(settings: dict[str, Any]) -> None:
    uvloop = pytest.importorskip("uvloop")
    kv = RedisKVStorage("x", **settings)

    async def main() -> None:
        await kv.upsert({str(i): {"i": i} for i in range(100)})
        got = await asyncio.gather(*(kv.get_by_id(str(i % 100)) for i in range(5000)))
        assert got == [{"i": i % 100} for i in range(5000)]

    for _ in range(2):  # a fresh uvloop loop each time
        uvloop.run(main())


@pytest.mark.parametrize(
    ("env", "workers"),
    [
        ({}, 1),  # Linux: results reach asyncio through an eventfd, one worker is enough
        ({"NANO_GRAPHRAG_REDIS_WAKE": "threadsafe"}, 2),  # a worker takes the GIL to wake the loop
        ({"NANO_GRAPHRAG_REDIS_THREADS": "3"}, 3),
    ],
)
def test_tokio_worker_threads(settings: dict[str, Any], env: dict[str, str], workers: int) -> None:
    # Counted by name after async calls, a large blocking read and a scan: work that
    # could have started more threads of the core's runtime (the URL is an IP: no
    # resolver threads).
    code = f"""
import asyncio, os
from nano_graphrag_redis import RedisKVStorage
kv = RedisKVStorage("x", redis_url={settings["redis_url"]!r}, redis_key_prefix={settings["redis_key_prefix"]!r})
async def main():
    await kv.upsert({{"a": {{"v": 1}}}})
    await asyncio.gather(*(kv.get_by_id("a") for _ in range(100)))
    await kv.all_keys()
asyncio.run(main())
kv.blocking().get_by_ids(["a"] * 500)
names = [open(f"/proc/self/task/{{t}}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sum(n == "nano-graphrag-r" for n in names))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(workers)
