"""Every benchmark script still runs to the end, on a tiny size, as `make bench` runs it.

`make bench` runs each script as ``python benchmarks/<name>.py``, which puts benchmarks/ first
on ``sys.path``: a script named like a package (``features.py``, ``world.py``) would shadow it
and break the others, which is how two benchmarks once broke unnoticed. This test runs every
script the same way, so neither a shadowing name nor an API change can break one silently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
PACKAGES = {"features", "models", "pipeline", "world", "tests"}


def _scripts() -> list[str]:
    return sorted(
        p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_") and p.stem != "run_all"
    )


# A tiny size for each script: seconds, not minutes. A new script must be added here.
TINY: dict[str, list[str]] = {
    "attribution": [
        "--train-rows", "2000", "--features", "10", "--trees", "20", "--leaves", "7",
        "--score-rows", "500", "--exact-rows", "100", "--repeats", "1", "--exact-repeats", "1",
    ],
    "feature_job": [
        "--transactions", "20000", "--entities", "500", "--runs", "1", "--snapshots", "2",
        "--data", "{tmp}/feature_job",
    ],
    "generate": ["--merchants", "200", "--consumers", "500", "--months", "6", "--runs", "1"],
    "online": [
        "--merchants", "300", "--consumers", "1200", "--months", "24", "--requests", "40",
        "--sequential", "10", "--concurrency", "4", "--runs", "1", "--work", "{tmp}/online",
    ],
    "recourse": ["--rows", "2000", "--repeats", "1", "--trees", "20"],
    "scale": [
        "--transactions", "20000", "--entities", "500", "--runs", "1", "--data", "{tmp}/scale",
    ],
    "stages": [
        "--transactions", "20000", "--entities", "500", "--chunk-rows", "4000",
        "--stages", "validate,as-of,train", "--work", "{tmp}/stages",
    ],
    "scoring": [
        "--rows", "2000", "--agreement-rows", "200", "--repeats", "1", "--trees", "20",
        "--work", "{tmp}/scoring",
    ],
    "train": ["--rows", "3000", "--features", "20"],
}  # fmt: skip


def test_no_script_shadows_a_package() -> None:
    names = {p.stem for p in BENCH.glob("*.py")}
    assert names & PACKAGES == set()


def test_every_script_has_a_tiny_size() -> None:
    assert set(_scripts()) == set(TINY)


@pytest.mark.parametrize("name", _scripts())
def test_benchmark_runs_to_the_end(name: str, tmp_path: Path) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in TINY[name]]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # the online load test builds and trains a small world first
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "a benchmark that prints nothing measured nothing"
