"""Cross-validation mode on a small book, through the CLI: folds, means with SEs, a usable model.

A consumer world of about 400 labelled loans (the size of a rural bank's book or a new product)
is validated, featured, trained and evaluated with ``split.mode: cv``; the registered model then
scores the book. The out-of-time default is held by the rest of the suite.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import polars.testing
import pytest
import yaml
from typer.testing import CliRunner

from models.calibrate import cross_fitted_pd, fit_calibrator, fit_out_of_fold
from pipeline.artifacts import OUT_OF_FOLD
from pipeline.cli import app
from pipeline.storage import Layout

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
FOLDS, REPEATS = 5, 2


def _params(root: Path, tracking_uri: str) -> Path:
    """The repo's params in cv mode (two repeats, to keep the test short), tmp MLflow store."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["split"] |= {"mode": "cv", "folds": FOLDS, "repeats": REPEATS, "seed": 11}
    params["mlflow"]["tracking_uri"] = tracking_uri
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True))
    return path


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args[0]}: {result.output}"
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def cv_world(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> list[str]:
    """A ~400-loan consumer world carried through validate, features, train and evaluate."""
    root = tmp_path_factory.mktemp("cv-world")
    db = root / "mlflow.db"
    shutil.copy(mlflow_template, db)
    base = ["--params", str(_params(root, f"sqlite:///{db}")), "--data", str(root / "data")]
    _invoke("generate", *base, "--merchants", "20", "--consumers", "450", "--months", "24")
    _invoke("validate", *base)
    for command in ("features", "train", "evaluate"):
        _invoke(command, *base, "--segment", "consumer")
    return base


def _layout(base: list[str]) -> Layout:
    return Layout(Path(base[3]))


def test_folds_are_disjoint_by_entity_and_cover_every_labelled_loan(cv_world) -> None:
    layout = _layout(cv_world)
    oof = pl.read_parquet(layout.model("consumer") / OUT_OF_FOLD)
    loans = pl.read_parquet(layout.features("consumer")).filter(pl.col("bad").is_not_null())
    assert 300 <= loans.height <= 600  # a small book
    assert oof.height == REPEATS * oof["loan_id"].n_unique()
    assert oof.filter(pl.col("repeat") == 0)["loan_id"].is_unique().all()
    joined = oof.join(loans.select("loan_id", "entity_id", "bad"), on="loan_id")
    assert joined.height == oof.height
    per_entity = joined.group_by("repeat", "entity_id").agg(pl.col("fold").n_unique())
    assert per_entity["fold"].max() == 1
    bads = joined.group_by("repeat", "fold").agg(pl.col("bad").sum())["bad"].to_numpy()
    assert bads.min() >= 1
    assert bads.max() - bads.min() <= 0.5 * bads.mean() + 2  # stratified, not by chance
    for column in ("pd", "baseline_pd", "additive_pd"):
        assert oof[column].is_between(0, 1).all()


def test_metrics_are_means_with_standard_errors(cv_world) -> None:
    layout = _layout(cv_world)
    metrics = json.loads(layout.metrics("consumer").read_text())
    assert metrics["cv"]["folds"] == FOLDS
    assert metrics["cv"]["repeats"] == REPEATS
    assert len(metrics["cv"]["best_iterations"]) == FOLDS * REPEATS
    for who in ("test", "baseline", "additive", "ceiling"):
        for measure in ("auc", "gini", "ks", "brier", "ece"):
            assert np.isfinite(metrics[who][measure]), (who, measure)
            if (who, measure) == ("ceiling", "ece"):
                # pooled over each repeat's loans: the true PD does not change between repeats
                assert metrics["se"][who][measure] == 0
                continue
            assert 0 < metrics["se"][who][measure] < 0.5, (who, measure)
    assert 0.55 < metrics["test"]["auc"] < 0.99
    checks = metrics["checks"]
    assert "score_psi_train_test" not in checks
    for name in ("ece", "auc_lift_over_baseline", "auc_gap_to_ceiling"):
        assert checks[name]["se"] > 0
    assert checks["auc_lift_over_baseline"]["value"] == pytest.approx(
        metrics["test"]["auc"] - metrics["baseline"]["auc"]
    )
    assert metrics["stability"]["score_psi_train_test"] is None
    assert "not measured" in metrics["stability"]["note"]
    per_fold = pl.read_csv(layout.report("consumer") / "cv_folds.csv")
    assert per_fold.filter(pl.col("who") == "test").height == FOLDS * REPEATS
    assert per_fold.filter(pl.col("who") == "test")["auc"].mean() == pytest.approx(
        metrics["test"]["auc"]
    )
    html = (layout.report("consumer") / "report.html").read_text()
    assert "Cross-validated" in html
    assert " ± " in html
    assert "not measured" in html
    card = json.loads((layout.report("consumer") / "model_card.json").read_text())
    assert "cross-validation" in card["data"]["validation"]
    assert card["performance_se"]["model"]["auc"] == metrics["se"]["test"]["auc"]


def test_same_seed_gives_the_same_model_and_metrics(cv_world, tmp_path: Path) -> None:
    layout = _layout(cv_world)
    model = layout.model("consumer")
    first_model = (model / "booster.txt").read_text()
    first = json.loads(layout.metrics("consumer").read_text())
    first_oof = pl.read_parquet(model / OUT_OF_FOLD)
    for command in ("train", "evaluate"):
        _invoke(command, *cv_world, "--segment", "consumer")
    again = json.loads(layout.metrics("consumer").read_text())
    assert (model / "booster.txt").read_text() == first_model
    pl.testing.assert_frame_equal(pl.read_parquet(model / OUT_OF_FOLD), first_oof)
    for key in ("test", "baseline", "additive", "ceiling", "se", "checks", "lift_sources"):
        assert again[key] == first[key], key


def test_the_registered_model_is_promoted_and_scores_the_book(cv_world) -> None:
    layout = _layout(cv_world)
    _invoke("register", *cv_world, "--segment", "consumer")
    # The gate judges a cross-validated model by its out-of-fold AUC; no PSI to refuse it on.
    promoted = _invoke("promote", *cv_world, "--segment", "consumer")
    assert "promoted" in promoted, promoted
    out = _invoke("score", *cv_world, "--segment", "consumer", "--drift-fail-on", "never")
    assert "consumer as of" in out
    scored = list((layout.root / "scores" / "consumer").glob("as_of=*/scores.parquet"))
    assert len(scored) == 1
    scores = pl.read_parquet(scored[0])
    assert scores.height > 0
    assert scores["score"].is_between(350, 950).all()


def test_out_of_fold_calibration_never_sees_the_fold() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(2, 600))
    y = (rng.random(600) < 1 / (1 + np.exp(-(raw[0] - 2)))).astype(float)
    folds = np.stack([np.arange(600) % 3, (np.arange(600) // 2) % 3])
    out = cross_fitted_pd(raw, y, folds, "platt")
    held = folds[1] == 2
    alone = fit_calibrator(raw[1, ~held], y[~held], "platt")
    np.testing.assert_allclose(out[1, held], alone.predict(raw[1, held]))
    pooled = fit_out_of_fold(raw, y, "platt")
    assert pooled == fit_calibrator(raw.ravel(), np.tile(y, 2), "platt")
