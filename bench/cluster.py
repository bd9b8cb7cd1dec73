"""The Redis Cluster section: this package and redis-py's cluster clients on one Redis
Cluster (3 masters + 3 replicas), and this package on one node, all in the same run,
batches of 500 ~4.8 KB records; and what ONE batch costs each master."""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.cluster
from competitors import HOST, RedisPyAsyncClusterKV, RedisPyClusterKV, conn_name
from dataset import Dataset
from harness import (
    CONCURRENCY,
    NANO_A,
    NANO_B,
    Client,
    Step,
    Workload,
    close_all,
    measure,
    nano,
    nano_blocking,
    verify,
    warm_up,
)
from report import BATCHES, IDS, OPS, RECORDS, STEADY, render_table

from nano_graphrag_redis.local_server import RedisCluster, RedisServer

CLUSTER_BATCH = 500  # the cluster section's batches ...
CLUSTER_TEXT_BYTES = 4690  # ... of ~4.8 KB records

C_NANO_A = NANO_A + " [cluster]"
C_NANO_B = NANO_B + " [cluster]"
C_RPY_A = "redis-py asyncio RedisCluster"
C_RPY_S = "redis-py RedisCluster (sync)"
S_NANO_A = NANO_A + " [single node]"
S_NANO_B = NANO_B + " [single node]"

CLUSTER_PLAN = [
    Step("conc", "c_conc_ops", CONCURRENCY * 4, 2000, "async"),
    Step("get_many", "c_batch_ops", 2, 4, "all"),
    Step("upsert", "c_upsert_ops", 2, 0, "all"),
    Step("filter", "c_filter_ops", 2, 10, "all"),
]


Window = list[tuple[int, int, int]]  # per master: (commands, socket reads, bytes in)


class MasterCounters:
    """What each master of a cluster counted, read over an admin connection of our own:
    commands (``INFO commandstats``), socket reads of client connections
    (``total_reads_processed``) and bytes received (``total_net_input_bytes``), since the
    last ``CONFIG RESETSTAT``."""

    OWN = ("cmdstat_config|resetstat", "cmdstat_info", "cmdstat_replconf")  # ours, and the replicas' acks

    def __init__(self, ports: list[int]) -> None:
        self.admins = [redis.Redis(host=HOST, port=p) for p in ports]
        self.baseline = [(0, 0, 0)] * len(ports)
        self.baseline = self.window(lambda: None)  # what the INFO that reads the counters costs

    def read(self) -> Window:
        out = []
        for admin in self.admins:
            info = admin.info("stats", "commandstats")
            cmds = sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_") and k not in self.OWN)
            out.append((cmds, info["total_reads_processed"], info["total_net_input_bytes"]))
        return out

    def window(self, fn: Callable[[], Any]) -> Window:
        """(commands, socket reads, bytes in) per master caused by ``fn()``."""
        for admin in self.admins:
            admin.config_resetstat()
        fn()
        out = []
        for now, base in zip(self.read(), self.baseline, strict=True):
            cmds, reads, bytes_in = (a - b for a, b in zip(now, base, strict=True))
            out.append((cmds, reads, bytes_in))
        return out

    def last_client_ids(self) -> list[int]:
        return [max(int(c["id"]) for c in admin.client_list()) for admin in self.admins]

    def connections_since(self, last_ids: list[int]) -> dict[str, list[int]]:
        """Client name -> how many of its connections (replicas' left out) are open on each
        master and were opened after ``last_ids``."""
        out: dict[str, list[int]] = {}
        for i, (admin, last) in enumerate(zip(self.admins, last_ids, strict=True)):
            for c in admin.client_list():
                if int(c["id"]) > last and "S" not in c["flags"]:
                    out.setdefault(c["name"], [0] * len(self.admins))[i] += 1
        return out

    def close(self) -> None:
        for admin in self.admins:
            admin.close()


def requests_per_master(
    counters: MasterCounters, clients: list[Client], wl: Workload, reps: int = 3
) -> list[tuple[str, str, Window]]:
    """(client, call, per master (commands, socket reads, bytes in)) of ONE batch of each
    kind; of ``reps`` tries, the one with the fewest reads (a replica's once-a-second ack
    or a health-check PING can land in a window, never fewer)."""
    calls: list[tuple[str, Callable[[Client], Any]]] = [
        ("get_by_ids", lambda c: c.call(c.kv.get_by_ids, wl.id_batches(1, 0)[0])),
        ("filter_keys", lambda c: c.call(c.kv.filter_keys, wl.filter_batches(1, 0)[0])),
        ("upsert", lambda c: c.call(c.up.upsert, wl.upsert_batches[0])),
    ]
    rows = []
    for c in clients:
        for name, call in calls:
            tries = [counters.window(functools.partial(call, c)) for _ in range(reps)]
            rows.append((c.label, name, min(tries, key=lambda w: sum(reads for _, reads, _ in w))))
    return rows


# Which row each cluster row is compared with: the peers with this package on the cluster,
# and this package on the single node with itself on the cluster.
CLUSTER_REFERENCE = {C_RPY_A: C_NANO_A, C_RPY_S: C_NANO_B, S_NANO_A: C_NANO_A, S_NANO_B: C_NANO_B}


def run_cluster(prof: dict, binary: str) -> tuple[list[str], dict]:
    """The cluster section: this package and redis-py's cluster clients on one Redis
    Cluster, and this package on one node, all in the same run: markdown and raw data."""
    t_start = time.perf_counter()
    data = Dataset(prof["c_records"], CLUSTER_BATCH, CLUSTER_TEXT_BYTES)
    loop = asyncio.new_event_loop()
    with RedisCluster(binary=binary) as cluster, RedisServer(binary=binary) as single:
        url, single_url = cluster.url, single.url
        ports = [m.port for m in cluster.masters()]
        peer_url = f"redis://{HOST}:{ports[0]}"  # redis-py finds the other nodes from one
        print(f"Redis Cluster {cluster!r} ({url}); single node on {single_url}", file=sys.stderr)
        counters = MasterCounters(ports)
        before = counters.last_client_ids()

        ours = [Client.of(C_NANO_A, nano(url), data, loop), Client.of(C_NANO_B, nano_blocking(url), data)]
        data.load(ours[1].kv)
        assert sum(admin.dbsize() for admin in counters.admins) == len(data.ids)
        raw = redis.cluster.RedisCluster.from_url(peer_url, client_name=conn_name("reader"))
        verify(ours, data, raw.mget_nonatomic)
        peers = [
            Client.of(C_RPY_A, lambda ns: RedisPyAsyncClusterKV(peer_url, ns, C_RPY_A), data, loop),
            Client.of(C_RPY_S, lambda ns: RedisPyClusterKV(peer_url, ns, C_RPY_S), data),
        ]
        verify(peers, data, raw.mget_nonatomic)
        one_node = [
            Client.of(S_NANO_A, nano(single_url), data, loop),
            Client.of(S_NANO_B, nano_blocking(single_url), data),
        ]
        data.load(one_node[1].kv)
        raw_single = redis.Redis.from_url(single_url)
        verify(one_node, data, raw_single.mget)
        print("verified: all clients return equal records, ids and writes", file=sys.stderr)

        wl = Workload(data, prof["max_seconds"])
        trips = requests_per_master(counters, ours + peers, wl)
        clients = ours + peers + one_node
        warm_up(clients, wl, CLUSTER_PLAN)
        res = measure(clients, wl, CLUSTER_PLAN, prof, "cluster")
        connections = counters.connections_since(before)
        close_all(clients)
        for closable in (raw, raw_single, counters):
            closable.close()

    size = data.batch * data.avg_bytes / 1e6
    md = [
        f"## Redis Cluster ({len(ports)} masters + {len(ports)} replicas) vs one node",
        "",
        f"- rounds: {prof['rounds']} (median reported); per round: {prof['c_conc_ops']} concurrent gets, "
        f"{prof['c_batch_ops']} get_by_ids / {prof['c_upsert_ops']} upsert / {prof['c_filter_ops']} filter_keys "
        f"batches of {data.batch}; each loop capped at {prof['max_seconds']:.0f} s; section runtime "
        f"{time.perf_counter() - t_start:.1f} s (cluster start included)",
        f"- data: {len(data.ids)} text_chunks records, ~{data.avg_bytes:,.0f} B of UTF-8 JSON each "
        f"(~{size:.1f} MB per get_by_ids / upsert batch), loaded on the cluster and on the single node",
        "- peers: redis-py's `redis.asyncio.cluster.RedisCluster` and `redis.cluster.RedisCluster` "
        "(`mget_nonatomic`, a non-transactional pipeline of EXISTS, `mset_nonatomic`; see bench/README.md)",
        "- verified once before timing: every client returned equal decoded records, equal "
        "missing-id sets and wrote records that decode equally",
        "- 'nano-graphrag-redis [cluster] vs this': >1 means nano-graphrag-redis on the cluster is faster "
        "than that row: for the redis-py rows, the ratio against the same API (async / blocking) "
        "on the same cluster; for the [single node] rows, the cluster's throughput over the single "
        f"node's (<1: the cluster is slower than one node, on one machine). {STEADY}",
        "",
        render_requests(trips, connections, data.batch),
    ]
    sections = [
        (f"C1. {CONCURRENCY} concurrent get_by_id (ops/s, higher is better)",
         f"{CONCURRENCY} asyncio tasks each awaiting get_by_id in a loop, run by asyncio.gather.", OPS, "conc"),
        (f"C2. get_by_ids of {data.batch} ids (higher is better)",
         f"One call fetching {data.batch} existing records (~{size:.1f} MB), sequentially.", BATCHES, "get_many"),
        (f"C3. upsert of {data.batch} records (records/s, higher is better)",
         f"One call writing {data.batch} records (~{size:.1f} MB), overwriting existing keys, sequentially.",
         RECORDS, "upsert"),
        (f"C4. filter_keys of {data.batch} ids (higher is better)",
         f"One call checking {data.batch} ids (half stored, half missing), sequentially.", IDS, "filter"),
    ]  # fmt: skip
    order = [c.label for c in clients]
    ref = CLUSTER_REFERENCE.get
    subject = "nano-graphrag-redis [cluster]"
    md += [render_table(t, d, m, res[k], order, ref, subject) for t, d, m, k in sections]
    raw_out = {
        "rounds": res,
        "connections_per_master": connections,
        "requests_per_master": [{"client": c, "call": n, "commands_reads_bytes": w} for c, n, w in trips],
    }
    return md, raw_out


def render_requests(trips: list[tuple[str, str, Window]], connections: dict[str, list[int]], batch: int) -> str:
    """The per-master counts of one batch and the connections each client holds, as markdown."""

    def per_master(values: Iterable[int]) -> str:
        return " / ".join(str(v) for v in values)

    lines = [
        f"### Requests per master for ONE batch of {batch}",
        "",
        "Counted by each master (CONFIG RESETSTAT, one call, then INFO): commands executed, socket reads "
        "of client connections (`total_reads_processed`; one read takes what the query buffer has room "
        "for, ~16-20 KB) and KB received; the counter-reading INFO is subtracted, replicas' acks are no "
        "commands here. Of 3 tries, the one with the fewest reads (a replica's once-a-second ack can add one).",
        "",
        "| client | call | commands per master | socket reads per master | KB received per master |",
        "|---|---|---|---|---|",
    ]
    for label, call, window in trips:
        cmds = per_master(c for c, _, _ in window)
        reads = per_master(r for _, r, _ in window)
        kbytes = " / ".join(f"{b / 1024:,.0f}" for _, _, b in window)
        lines.append(f"| {label} | {call} | {cmds} | {reads} | {kbytes} |")
    names = {"": "nano-graphrag-redis (all its storages of this section: async, blocking, every namespace)"}
    names.update({conn_name(label): label for label in (C_RPY_A, C_RPY_S)})
    names[conn_name("reader")] = "redis-py RedisCluster that read the writes back for the check"
    lines += ["", "Connections open on each master at the end of the rounds, opened by this section:", ""]
    lines += ["| client | connections per master |", "|---|---|"]
    lines += [f"| {names.get(name, name)} | {per_master(counts)} |" for name, counts in sorted(connections.items())]
    lines.append("")
    return "\n".join(lines)
