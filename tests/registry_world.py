"""Helpers for the registry, promotion, batch and serving tests: private copies of the world.

The session's ``trained_world`` (features, models, reports, and an MLflow store where each
segment has v1 as champion and challenger) is shared; these helpers copy its data folder and its
MLflow store into a test's tmp path so a test can register, promote and score freely.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from models.scorer import Scorer
from models.split import TEST
from pipeline import drift, inputs, registry
from pipeline.config import Settings
from pipeline.storage import Layout


def sliced(settings: Settings, segment: str) -> pl.DataFrame:
    """The training features with their out-of-time slice, as the train stage reads them."""
    return inputs.sliced(Layout(settings.data_dir), segment, settings.split)


def scoring_date(settings: Settings) -> dt.date:
    """The date ``longtail score`` scores at by default."""
    return inputs.default_as_of(Layout(settings.data_dir), settings.scoring)


def private_world(settings: Settings, tmp_path: Path, **overrides: object) -> Settings:
    """Copy the world's data (without raw/ and scores/) and MLflow store under ``tmp_path``."""
    data = tmp_path / "data"
    shutil.copytree(
        settings.data_dir, data, ignore=shutil.ignore_patterns("raw", "scores", "registry")
    )
    source_db = Path(settings.mlflow.tracking_uri.removeprefix("sqlite:///"))
    db = tmp_path / "mlflow.db"
    shutil.copy(source_db, db)
    mlflow = settings.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{db}"})
    return settings.model_copy(update={"data_dir": data, "mlflow": mlflow, **overrides})


def worse_scorer(settings: Settings, segment: str, folder: Path) -> Scorer:
    """A deliberately bad challenger: a booster fitted to the *inverted* out-of-time labels.

    Saved with training scores (the gate's reference) and a drift reference into ``folder``;
    same features and policy as the trained model, and a plain logistic calibrator (so the
    backwards ranking survives calibration).
    """
    from models.calibrate import Calibrator

    trained = Scorer.load(Layout(settings.data_dir).model(segment))
    test = sliced(settings, segment).filter(pl.col("slice") == TEST)
    x = trained.matrix(test)
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 15,
            # small leaves, but not empty-hessian ones: min_sum_hessian_in_leaf 0 let LightGBM
            # pick a split with an empty side on some worlds (its "left_count > 0" check fails)
            "min_data_in_leaf": 5,
            "min_sum_hessian_in_leaf": 1e-3,
            "learning_rate": 0.3,
            "verbose": -1,
            "seed": 0,
            "num_threads": 1,
        },
        lgb.Dataset(x, 1 - test["bad"].to_numpy(), feature_name=trained.feature_names),
        num_boost_round=30,
    )
    scorer = Scorer(
        segment=segment,
        specs=trained.specs,
        booster=booster,
        calibrator=Calibrator("platt", a=1.0, b=0.0),
        scaling=trained.scaling,
        policy=trained.policy,
    )
    scorer.save(folder)
    raw = booster.predict(x, raw_score=True)
    scores = np.round(600 + 40 * raw)
    pl.DataFrame({"score": scores}).write_parquet(folder / "reference_scores.parquet")
    drift.write_reference(folder, x, scorer.feature_names, scores)
    return scorer


def register_folder(settings: Settings, scorer: Scorer, folder: Path, alias: str) -> int:
    """Log a Scorer folder as a new version in a fresh run and point ``alias`` at it."""
    import mlflow

    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_name=f"test-{scorer.segment}") as run:
        pass
    _, version = registry.log_scorer(scorer, folder, run.info.run_id, {"origin": "test"})
    registry.set_alias(scorer.segment, alias, version)
    return version


def renamed_scorer(settings: Settings, segment: str, folder: Path) -> Scorer:
    """A model trained on a feature list this code no longer builds (last feature renamed)."""
    from dataclasses import replace

    trained = Scorer.load(Layout(settings.data_dir).model(segment))
    specs = (*trained.specs[:-1], replace(trained.specs[-1], name="legacy_feature"))
    names = [s.name for s in specs]
    frame = sliced(settings, segment)
    x = trained.matrix(frame)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
        lgb.Dataset(x, frame["bad"].to_numpy(), feature_name=names),
        num_boost_round=5,
    )
    scorer = Scorer(
        segment=segment,
        specs=specs,
        booster=booster,
        calibrator=trained.calibrator,
        scaling=trained.scaling,
        policy=trained.policy,
    )
    scorer.save(folder)
    drift.write_reference(folder, x, names, np.full(len(x), 600.0))
    return scorer
