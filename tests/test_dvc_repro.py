"""`dvc repro` rebuilds every stage in a git clone of the project (real DVC, real MLflow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_WORLD = {"merchants": 400, "consumers": 1600, "months": 30, "seed": 11}


@pytest.mark.slow
def test_dvc_repro_builds_every_stage(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    work = tmp_path / "repo"
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["world"].update(TINY_WORLD)
    # As in conftest: a tiny world's out-of-time slice is a few hundred loans, so its score PSI
    # measures sampling noise; this test checks the DVC wiring, test_promote.py the gate.
    params["drift"]["score_psi_alert"] = 10.0
    (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    env.pop("MLFLOW_TRACKING_URI", None)

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, check=False, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        return done.stdout

    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "snapshot")
    run("dvc", "repro")
    for segment in ("merchant", "consumer"):
        scores = list((work / "data" / "scores" / segment).glob("as_of=*/scores.parquet"))
        assert len(scores) == 1
        assert pl.read_parquet(scores[0]).height > 0
        assert (work / "data" / "reports" / segment / "metrics.json").exists()
    assert (work / "mlflow.db").exists()
    assert "up to date" in run("dvc", "status")
    # the report folder is one out; its metrics.json is still what `dvc metrics show` reads
    shown = run("dvc", "metrics", "show")
    assert all(f"data/reports/{s}/metrics.json" in shown for s in ("merchant", "consumer"))
