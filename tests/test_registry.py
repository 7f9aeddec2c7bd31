"""The registered model: alias resolution, what travels with it, and a fresh process agrees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from polars.testing import assert_frame_equal
from registry_world import private_world, scoring_date

from features.definitions import POLICY_INPUTS, definitions
from pipeline import registry
from pipeline.stages import features, register
from pipeline.storage import Layout
from tests.features_helpers import PARAMS

SEGMENT = "merchant"
NAME = registry.model_name(SEGMENT)


@pytest.fixture
def world(trained_world, tmp_path: Path):
    settings = private_world(trained_world, tmp_path)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    return settings


def test_alias_resolution(world) -> None:
    info = json.loads((Layout(world.data_dir).model(SEGMENT) / "training.json").read_text())
    assert registry.resolve(f"models:/{NAME}@champion") == (NAME, "1", info["run_id"])
    assert registry.resolve(f"models:/{NAME}@challenger") == (NAME, "1", info["run_id"])
    assert registry.resolve(f"models:/{NAME}/1") == (NAME, "1", info["run_id"])
    assert registry.version_by_alias(SEGMENT, "no-such-alias") is None
    with pytest.raises(MlflowException):
        registry.resolve(f"models:/{NAME}@no-such-alias")
    with pytest.raises(ValueError, match="expected a model URI"):
        registry.resolve("runs:/abc/model")

    # A new registration is a challenger; champion stays until the gate moves it.
    record = register.run(world, SEGMENT)
    assert registry.resolve(f"models:/{NAME}@challenger")[1] == str(record["version"]) == "2"
    assert registry.resolve(f"models:/{NAME}@champion")[1] == "1"


def test_registered_version_is_tagged(world) -> None:
    record = register.run(world, SEGMENT)
    tags = MlflowClient().get_model_version(NAME, str(record["version"])).tags
    assert tags["catalog_hash"] == definitions(SEGMENT, PARAMS).catalog.hash
    assert tags["segment"] == SEGMENT
    assert ".." in tags["data_window_train"]
    assert ".." in tags["data_window_test"]
    assert len(tags["git_commit"].removesuffix("-dirty")) == 40 or tags["git_commit"] == "unknown"
    assert 0.0 <= float(tags["test_auc"]) <= 1.0
    assert int(tags["n_features"]) > 0


def test_model_travels_as_plain_files(world, tmp_path: Path) -> None:
    import mlflow

    local = Path(
        mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path))
    )
    files = {p.name for p in local.rglob("*") if p.is_file()}
    assert {"booster.txt", "scorer.json", "reference.json", "training.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".skops", ".joblib"))]
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["loader_module"].startswith("mlflow.pyfunc")
    inputs = [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]
    scorer = registry.load_scorer(f"models:/{NAME}@champion", tmp_path / "again")
    assert inputs == ["entity_id", *scorer.feature_names, *POLICY_INPUTS]  # the ordered list
    assert "reasons" in mlmodel["signature"]["params"]
    example = json.loads((local / "input_example.json").read_text())
    assert example["data"][0][0] == "example-0"  # synthetic, not a real entity
    requirements = (local / "requirements.txt").read_text().split()
    assert any(r.startswith("lightgbm==") for r in requirements)
    assert all("==" in r for r in requirements if not r.startswith("-"))


def test_pyfunc_in_fresh_process_matches_in_process_scorer(world, tmp_path: Path) -> None:
    as_of = scoring_date(world)
    path, _ = features.run(world, SEGMENT, as_of)
    scorer = registry.load_scorer(f"models:/{NAME}@champion", tmp_path / "model")
    frame = pl.read_parquet(path).select(
        "entity_id", *[pl.col(c).cast(pl.Float64) for c in [*scorer.feature_names, *POLICY_INPUTS]]
    )
    frame.write_parquet(tmp_path / "in.parquet")
    expected = scorer.score(frame)

    code = (
        "import sys, mlflow, pandas as pd, polars as pl\n"
        "mlflow.set_tracking_uri(sys.argv[1]); mlflow.set_registry_uri(sys.argv[1])\n"
        "model = mlflow.pyfunc.load_model(sys.argv[2])\n"
        "out = model.predict(pd.read_parquet(sys.argv[3]))\n"
        "pl.from_pandas(out).write_parquet(sys.argv[4])\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            world.mlflow.tracking_uri,
            f"models:/{NAME}@champion",
            str(tmp_path / "in.parquet"),
            str(tmp_path / "out.parquet"),
        ],
        check=True,
        timeout=180,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "HOME": str(tmp_path),
        },
    )
    served = pl.read_parquet(tmp_path / "out.parquet")
    assert_frame_equal(served, expected, check_dtypes=False)
    assert served["score"].to_list() == expected["score"].to_list()
