"""Key-count rows: ``all_keys`` of a 10k-key and a 100k-key namespace, and ``drop`` of a
100k-key namespace, by every client (this package; the peers with SCAN COUNT 10000, and
SCAN + UNLINK page by page for ``drop``).

Each namespace sits alone in a database of its own (1, 2, 3 of the single server), so a
SCAN walks only its keys, not the rest of the benchmark's. The keys are written with a
plain MSET of small records (~150 B; SCAN and UNLINK never look at values), the drop's
afresh before each timed drop.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from competitors import HOST, PREFIX
from dataset import key_ids, key_values
from harness import Rounds, rotate

NAMESPACE = "bench_keys"
CASES = {"all_keys_small": 1, "all_keys_large": 2, "drop_large": 3}  # case -> database
# all_keys of a small namespace takes milliseconds: repeat it for about this many keys.
MIN_KEYS_PER_RUN = 100_000


class KeyClient:
    """One client's storages on the three databases; ``call`` runs an operation to
    completion on its loop (if async)."""

    def __init__(self, label: str, make: Callable[[int], Any], loop: Any = None) -> None:
        self.label = label
        self.loop = loop
        self.kv = {case: self.call(make, db) for case, db in CASES.items()}

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        out = fn(*args)
        if self.loop is not None and inspect.isawaitable(out):
            return self.loop.run_until_complete(out)
        return out

    def close(self) -> None:
        for kv in self.kv.values():
            self.call(kv.close)


class KeySpace:
    """The keys of one database, written by a plain client."""

    def __init__(self, port: int, db: int, n: int) -> None:
        self.raw = redis.Redis(host=HOST, port=port, db=db)
        self.ids = key_ids(n, f"db{db}")
        self._pairs = dict(zip((f"{PREFIX}:{NAMESPACE}:{i}" for i in self.ids), key_values(self.ids), strict=True))

    def load(self) -> None:
        items = list(self._pairs.items())
        for start in range(0, len(items), 10_000):
            self.raw.mset(dict(items[start : start + 10_000]))
        assert self.raw.dbsize() == len(self.ids)


def measure_keys(clients: list[KeyClient], port: int, n_small: int, n_large: int, rounds: int) -> Rounds:
    """case -> label -> per round ``{"keys": keys/s, "s": seconds per call, "n": keys}``;
    every client checked first (``all_keys`` returns exactly the stored ids)."""
    spaces = {case: KeySpace(port, db, n_small if case == "all_keys_small" else n_large) for case, db in CASES.items()}
    for case in ("all_keys_small", "all_keys_large"):
        spaces[case].load()
    drop_space = spaces["drop_large"]
    for c in clients:  # verification, and each client's warm-up
        for case in ("all_keys_small", "all_keys_large"):
            got = c.call(c.kv[case].all_keys)
            assert sorted(got) == sorted(spaces[case].ids), f"{c.label}: all_keys of {case}"
        drop_space.load()
        c.call(c.kv["drop_large"].drop)
        assert drop_space.raw.dbsize() == 0, f"{c.label}: drop left keys"

    res: Rounds = {case: {} for case in CASES}
    for r in range(rounds):
        print(f"keys round {r + 1}/{rounds} ...", file=sys.stderr)
        for case in CASES:
            space = spaces[case]
            n = len(space.ids)
            for c in rotate(clients, r):
                kv = c.kv[case]
                if case == "drop_large":
                    space.load()
                    t0 = time.perf_counter()
                    c.call(kv.drop)
                    el, reps = time.perf_counter() - t0, 1
                    assert space.raw.dbsize() == 0, f"{c.label}: drop left keys"
                else:
                    reps = max(1, MIN_KEYS_PER_RUN // n)
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        got = c.call(kv.all_keys)
                    el = time.perf_counter() - t0
                    assert len(got) == n, c.label
                res[case].setdefault(c.label, []).append({"keys": n * reps / el, "s": el / reps, "n": n})
    for space in spaces.values():
        space.raw.flushdb()
        space.raw.close()
    return res
