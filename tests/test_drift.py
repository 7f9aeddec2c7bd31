"""Drift: score PSI and feature CSI against the training reference; alerts fail the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from registry_world import private_world, scoring_date
from typer.testing import CliRunner

from pipeline import batch, drift
from pipeline.cli import app
from pipeline.config import DriftParams
from pipeline.stages import score
from pipeline.storage import Layout

REPO = Path(__file__).resolve().parent.parent
PARAMS = DriftParams()


def _reference(rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray]:
    x = np.column_stack([rng.normal(0, 1, 20_000), rng.exponential(2, 20_000)])
    x[rng.random(20_000) < 0.1, 1] = np.nan
    scores = np.round(rng.normal(620, 40, 20_000))
    return drift.reference_profile(x, ["a", "b"], scores, bins=10), x, scores


def test_same_population_is_stable() -> None:
    rng = np.random.default_rng(0)
    reference, _, _ = _reference(rng)
    _, x, scores = _reference(np.random.default_rng(1))  # a fresh sample, same law
    report = drift.assess(reference, scores, x, ["a", "b"], PARAMS)
    assert report["status"] == "ok"
    assert report["score_psi"] < 0.01
    assert max(report["feature_csi"].values()) < 0.01


def test_shifted_population_alerts() -> None:
    rng = np.random.default_rng(0)
    reference, x, scores = _reference(rng)
    shifted = x.copy()
    shifted[:, 0] += 1.0  # a one-sigma shift of a feature
    shifted[:, 1] = np.nan  # and a feature gone missing
    report = drift.assess(reference, scores - 60, shifted, ["a", "b"], PARAMS)
    assert report["status"] == "alert"
    assert report["score_status"] == "alert"
    assert report["features_alert"] == ["a", "b"]
    assert batch.drift_failed({"drift": report}, "score")
    assert batch.drift_failed({"drift": report}, "any")
    assert not batch.drift_failed({"drift": report}, "never")


def test_a_warning_is_not_an_alert() -> None:
    rng = np.random.default_rng(0)
    reference, x, scores = _reference(rng)
    report = drift.assess(reference, scores - 16, x, ["a", "b"], PARAMS)
    assert report["score_status"] == "warning", report["score_psi"]
    assert not batch.drift_failed({"drift": report}, "score")


@pytest.fixture
def world(trained_world, tmp_path: Path):
    return private_world(trained_world, tmp_path)


def _params(tmp_path: Path, settings, fail_on: str) -> Path:
    path = tmp_path / f"params-{fail_on}.yaml"
    path.write_text(
        (REPO / "params.yaml")
        .read_text()
        .replace("sqlite:///mlflow.db", settings.mlflow.tracking_uri)
        .replace("fail_on: score", f"fail_on: {fail_on}")
    )
    return path


def test_drift_alert_fires_on_a_shifted_population(world, tmp_path: Path) -> None:
    baseline = score.run(world, "merchant")["drift"]

    # The same merchants, but every amount 50 times larger: sales features shift.
    txns = world.data_dir / "validated" / "merchant_transactions.parquet"
    pl.read_parquet(txns).with_columns(pl.col("amount") * 50).write_parquet(txns)
    cli = ["score", "--data", str(world.data_dir), "-s", "merchant", "--force"]

    result = CliRunner().invoke(app, [*cli, "-p", str(_params(tmp_path, world, "any"))])
    assert result.exit_code == batch.DRIFT_EXIT_CODE, result.output
    assert "drift alert" in result.output
    target = Layout(world.data_dir).scores("merchant", scoring_date(world))
    shifted = pl.read_parquet(target / "scores.parquet")  # published, then the alert
    assert shifted.height > 0

    report = json.loads((target / "manifest.json").read_text())["drift"]
    assert report["status"] == "alert"
    new_alerts = set(report["features_alert"]) - set(baseline["features_alert"])
    assert new_alerts, (baseline["features_alert"], report["features_alert"])
    assert all(report["feature_csi"][f] > baseline["feature_csi"][f] for f in new_alerts), (
        new_alerts
    )

    # The rerun is a no-op but still reports the alert; with fail_on never it exits 0.
    again = CliRunner().invoke(app, [*cli[:-1], "-p", str(_params(tmp_path, world, "any"))])
    assert again.exit_code == batch.DRIFT_EXIT_CODE
    assert "skipped" in again.output
    calm = CliRunner().invoke(app, [*cli, "-p", str(_params(tmp_path, world, "never"))])
    assert calm.exit_code == 0, calm.output
    flag = CliRunner().invoke(
        app, [*cli[:-1], "-p", str(_params(tmp_path, world, "any")), "--drift-fail-on", "never"]
    )
    assert flag.exit_code == 0, flag.output
