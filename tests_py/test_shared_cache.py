"""Two separate worker processes on one Redis: the second one's identical LLM calls
are served from the shared Redis cache (the fake model is never called)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = Path(__file__).with_name("graphrag_worker.py")


def run_worker(redis_url: str, prefix: str, working_dir: Path, hash_seed: str) -> dict[str, object]:
    # Different hash seeds: the processes share nothing but Redis and the working dir.
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, str(WORKER), redis_url, prefix, str(working_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_second_process_is_served_from_the_redis_cache(redis_url: str, prefix: str, tmp_path: Path) -> None:
    first = run_worker(redis_url, prefix, tmp_path, "1")
    assert isinstance(first["calls"], int) and first["calls"] > 0
    second = run_worker(redis_url, prefix, tmp_path, "2")
    assert second["calls"] == 0
    assert second["answers"] == first["answers"]
    assert not list(tmp_path.glob("kv_store_*.json"))  # nothing came from JSON files
