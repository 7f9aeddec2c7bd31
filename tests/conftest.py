"""Shared fixtures: a small synthetic world, settings pointing at tmp paths, an MLflow store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

# The same examples on every run (a CI run is a verdict, not a lottery); HYPOTHESIS_PROFILE=explore
# searches afresh, as a developer hunting for counter-examples would.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)

REPO = Path(__file__).resolve().parent.parent
SMALL_WORLD = {"merchants": 2000, "consumers": 8000, "months": 30, "seed": 7}


def make_settings(data_dir: Path, tracking_uri: str, **overrides: object):
    """Settings from the repo's params.yaml, pointed at tmp paths and a small world."""
    from pipeline.config import load_settings

    base = load_settings(REPO / "params.yaml")
    world = base.world.model_copy(update=SMALL_WORLD)
    mlflow = base.mlflow.model_copy(update={"tracking_uri": tracking_uri})
    # The small world's out-of-time slice holds a few hundred loans scored by a coarse model:
    # its score PSI measures sampling noise, not instability, so the shared fixture's first
    # promotion does not gate on it (the alert level is out of reach). The gate itself is tested
    # in test_promote.py.
    drift = base.drift.model_copy(update={"score_psi_alert": 10.0})
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "world": world,
            "mlflow": mlflow,
            "drift": drift,
            **overrides,
        }
    )


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite store, built once (migrations take seconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    # A client of its own: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI, which
    # the pipeline treats as the user's choice of store.
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, mlflow_template: Path) -> str:
    """A fresh copy of the migrated store for one test."""
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    return f"sqlite:///{db}"


@pytest.fixture(scope="session")
def stage_trace():
    """What each stage of the session's chain touched (see tests/stage_trace.py)."""
    from stage_trace import Trace

    return Trace()


@pytest.fixture(scope="session")
def validated_world(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path, stage_trace):
    """A small world generated and validated once per session; returns its settings.

    Tests must not write into it: copy ``settings.data_dir`` first when a test changes data.
    """
    from pipeline.stages import generate, validate

    root = tmp_path_factory.mktemp("world")
    db = root / "mlflow.db"
    shutil.copy(mlflow_template, db)
    settings = make_settings(root / "data", f"sqlite:///{db}")
    stage_trace.run("generate", generate.run, settings)
    stage_trace.run("validate", validate.run, settings)
    return settings


@pytest.fixture(scope="session")
def trained_world(validated_world, stage_trace):
    """The small world carried through features, train, evaluate, register, promote (once).

    Each stage runs as its DVC stage does (``register`` with ``--promote``), under the trace.
    """
    from pipeline.stages import evaluate, features, promote, register, train

    for segment in ("merchant", "consumer"):
        for name, run in (
            ("features", features.run),
            ("train", train.run),
            ("evaluate", evaluate.run),
            ("register", register.run),
            ("register", promote.run),
        ):
            stage_trace.run(f"{name}@{segment}", run, validated_world, segment)
    return validated_world
