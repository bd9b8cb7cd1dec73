"""migrate / export between JsonKVStorage files and Redis, on the output of a real
offline GraphRAG run: JSON -> Redis -> JSON is identical record for record."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import redis
from nano_graphrag import GraphRAG, QueryParam
from nano_graphrag._storage import JsonKVStorage

from nano_graphrag_redis import BlockingRedisKVStorage, migration
from nano_graphrag_redis.cli import main
from nano_graphrag_redis.offline import SAMPLE_TEXT, OfflineModel, offline_graphrag_kwargs, offline_tiktoken

NAMESPACES = ["full_docs", "text_chunks", "llm_response_cache", "community_reports"]


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working dir written by nano-graphrag's own JsonKVStorage."""
    working_dir = tmp_path_factory.mktemp("json_run")
    with offline_tiktoken():
        rag = GraphRAG(**offline_graphrag_kwargs(str(working_dir), OfflineModel()))
        asyncio.run(rag.ainsert(SAMPLE_TEXT))
        asyncio.run(rag.aquery("Who is Marisol Vance?", QueryParam(mode="local")))
    return working_dir


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def cli(settings: dict[str, Any], *args: str) -> int:
    return main([*args, "--redis-url", settings["redis_url"], "--key-prefix", settings["redis_key_prefix"], "--quiet"])


def test_round_trip_json_redis_json(
    json_run: Path, tmp_path: Path, topo_settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = topo_settings
    assert cli(settings, "migrate", "--working-dir", str(json_run), "--verify") == 0
    out = capsys.readouterr().out
    for ns in NAMESPACES:
        assert f"{ns}: " in out and "all verified" in out
        records = load(json_run / f"kv_store_{ns}.json")
        assert records, ns
        kv = BlockingRedisKVStorage(ns, **settings)
        assert sorted(kv.all_keys()) == sorted(records)
        assert kv.get_by_ids(list(records)) == list(records.values())

    back = tmp_path / "back"
    assert cli(settings, "export", "--working-dir", str(back)) == 0
    for ns in NAMESPACES:
        original = load(json_run / f"kv_store_{ns}.json")
        exported = load(back / f"kv_store_{ns}.json")
        assert exported == original, ns
        # JsonKVStorage loads the exported file unchanged.
        kv = JsonKVStorage(namespace=ns, global_config={"working_dir": str(back)})
        assert asyncio.run(kv.get_by_ids(list(original))) == list(original.values())
    assert not list(back.glob(".*.tmp"))


def test_migrate_is_idempotent_and_skips_existing(
    json_run: Path, settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(settings, "migrate", "--working-dir", str(json_run)) == 0
    capsys.readouterr()
    chunks = BlockingRedisKVStorage("text_chunks", **settings)
    some_id = chunks.all_keys()[0]
    chunks.upsert({some_id: {"changed": True}})  # a record that differs from the file
    assert cli(settings, "migrate", "--working-dir", str(json_run)) == 0
    out = capsys.readouterr().out
    for ns in NAMESPACES:
        assert f"{ns}: " in out
    assert ", 0 written," in out
    assert chunks.get_by_id(some_id) == {"changed": True}  # skipped, not overwritten
    # --verify reports the difference and fails.
    assert cli(settings, "migrate", "--working-dir", str(json_run), "--namespace", "text_chunks", "--verify") == 1
    assert "1 differ" in capsys.readouterr().out
    # --overwrite puts the file's record back.
    assert cli(settings, "migrate", "--working-dir", str(json_run), "--overwrite", "--namespace", "text_chunks") == 0
    assert chunks.get_by_id(some_id) == load(json_run / "kv_store_text_chunks.json")[some_id]


def test_dry_run_and_namespace_filter(
    json_run: Path, settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(settings, "migrate", "--working-dir", str(json_run), "--dry-run") == 0
    assert "would write" in capsys.readouterr().out
    for ns in NAMESPACES:
        assert BlockingRedisKVStorage(ns, **settings).all_keys() == []
    assert cli(settings, "migrate", "--working-dir", str(json_run), "--namespace", "full_docs") == 0
    out = capsys.readouterr().out
    assert out.startswith("full_docs: ") and "text_chunks" not in out
    assert len(BlockingRedisKVStorage("full_docs", **settings).all_keys()) == 1
    assert BlockingRedisKVStorage("text_chunks", **settings).all_keys() == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # interrupted write: a partial file
        lambda text: text.replace('"', "'", 3),  # not JSON
        lambda text: "[1, 2, 3]",  # JSON, but not an object of records
    ],
    ids=["partial", "corrupt", "not_an_object"],
)
def test_bad_input_file_writes_nothing(
    json_run: Path, tmp_path: Path, settings: dict[str, Any], capsys: pytest.CaptureFixture[str], damage: Any
) -> None:
    work = tmp_path / "work"
    shutil.copytree(json_run, work)
    broken = work / "kv_store_text_chunks.json"
    broken.write_text(damage(broken.read_text(encoding="utf-8")), encoding="utf-8")
    assert cli(settings, "migrate", "--working-dir", str(work)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(broken) in err[0] and "Traceback" not in err[0]
    for ns in NAMESPACES:  # every file is checked before anything is written
        assert BlockingRedisKVStorage(ns, **settings).all_keys() == []


def test_interrupted_export_leaves_the_old_file(
    tmp_path: Path, settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    kv = BlockingRedisKVStorage("full_docs", **settings)
    kv.upsert({"d": {"content": "x" * 10_000}})
    target = tmp_path / "kv_store_full_docs.json"
    target.write_text('{"old": {"content": "kept"}}', encoding="utf-8")

    def dump_then_fail(obj: Any, f: Any, **kwargs: Any) -> None:
        f.write(json.dumps(obj)[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(migration.json, "dump", dump_then_fail)
    with pytest.raises(KeyboardInterrupt):
        migration.export(kv, target)
    assert load(target) == {"old": {"content": "kept"}}
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_migrated_data_is_what_redis_py_sees(json_run: Path, settings: dict[str, Any], raw: redis.Redis) -> None:
    assert cli(settings, "migrate", "--working-dir", str(json_run), "--namespace", "community_reports") == 0
    records = load(json_run / "kv_store_community_reports.json")
    kv = BlockingRedisKVStorage("community_reports", **settings)
    for rid, record in records.items():
        assert json.loads(raw.get(kv.redis_key(rid))) == record


def test_export_with_no_records_fails_and_writes_nothing(
    tmp_path: Path, settings: dict[str, Any], prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "rollback"
    assert cli(settings, "export", "--working-dir", str(target)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nano-graphrag-redis: error: nothing to export:")
    assert f"key prefix {prefix!r}" in err
    for ns in NAMESPACES:
        assert ns in err
    assert not target.exists()

    assert cli(settings, "export", "--working-dir", str(target), "--allow-empty") == 0
    for ns in NAMESPACES:
        assert load(target / f"kv_store_{ns}.json") == {}


def test_export_with_some_empty_namespaces_writes_them(
    tmp_path: Path, settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired cache or reports namespace is a normal state: only an export with no
    record at all is refused."""
    BlockingRedisKVStorage("full_docs", **settings).upsert({"d": {"content": "c"}})
    assert cli(settings, "export", "--working-dir", str(tmp_path)) == 0
    assert "community_reports: 0 records" in capsys.readouterr().out
    assert load(tmp_path / "kv_store_full_docs.json") == {"d": {"content": "c"}}
    assert load(tmp_path / "kv_store_community_reports.json") == {}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_exported_files_follow_the_umask(tmp_path: Path, settings: dict[str, Any], umask: int, mode: int) -> None:
    BlockingRedisKVStorage("full_docs", **settings).upsert({"d": {"content": "c"}})
    previous = os.umask(umask)
    try:
        assert cli(settings, "export", "--working-dir", str(tmp_path), "--namespace", "full_docs") == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "kv_store_full_docs.json").stat().st_mode) == mode


def test_export_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path, settings: dict[str, Any]) -> None:
    BlockingRedisKVStorage("full_docs", **settings).upsert({"d": {"content": "c"}})
    target = tmp_path / "kv_store_full_docs.json"
    target.write_text("{}", encoding="utf-8")
    target.chmod(0o640)
    assert cli(settings, "export", "--working-dir", str(tmp_path), "--namespace", "full_docs") == 0
    assert load(target) == {"d": {"content": "c"}}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_migrate_from_a_missing_directory(
    tmp_path: Path, settings: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nosuch"
    assert cli(settings, "migrate", "--working-dir", str(missing)) == 1
    assert capsys.readouterr().err == f"nano-graphrag-redis: error: working directory {missing} does not exist\n"
    a_file = tmp_path / "file"
    a_file.write_text("", encoding="utf-8")
    assert cli(settings, "migrate", "--working-dir", str(a_file)) == 1
    assert capsys.readouterr().err == f"nano-graphrag-redis: error: working directory {a_file} is not a directory\n"
    assert cli(settings, "migrate", "--working-dir", str(tmp_path)) == 1
    assert "no kv_store_*.json files" in capsys.readouterr().err


@pytest.mark.parametrize("namespaces", [["nosuch"], ["full_docs", "nosuch"]])
def test_migrate_an_unknown_namespace(
    json_run: Path, settings: dict[str, Any], capsys: pytest.CaptureFixture[str], namespaces: list[str]
) -> None:
    args = [arg for ns in namespaces for arg in ("--namespace", ns)]
    assert cli(settings, "migrate", "--working-dir", str(json_run), *args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"no such namespace in {json_run}: 'nosuch' (kv_store_nosuch.json)" in err
    there = err.split("namespaces there: ")[1].strip().split(", ")
    assert set(NAMESPACES) <= set(there)
    for ns in NAMESPACES:  # nothing written, not even the namespace that exists
        assert BlockingRedisKVStorage(ns, **settings).all_keys() == []
