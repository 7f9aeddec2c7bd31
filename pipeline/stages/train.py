"""Stage ``train``: the segment's Scorer, its scorecard baseline and its additive reference.

The booster is early-stopped and calibrated on the validation slice; the scorecard baseline and
the additive reference (one feature per tree) are fitted on the same slices and calibrated the
same way, so the evaluation compares them fairly without training anything itself. The folder
(see :mod:`pipeline.artifacts`) is published in one rename: a failed run leaves the previous
model as it was.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl

from models import evaluate as ev
from models.baseline import BASELINE_FILE, fit_scorecard
from models.calibrate import fit_calibrator
from models.scaling import pd_to_score
from models.scorer import Scorer
from models.split import TRAIN, VALID
from models.train import fit_booster, gain_importance, monotonicity_violations
from pipeline import drift, inputs, registry
from pipeline.artifacts import TRAINING_FILE, AdditiveReference, write_reference_scores
from pipeline.config import Sections, uses
from pipeline.storage import Layout, publishing, require, write_json

log = logging.getLogger(__name__)
PARAMS = ("features", "split", "model", "scaling", "limits", "label", "drift", "mlflow")


def slice_summary(frame: pl.DataFrame) -> dict[str, dict]:
    """Loans, bads and first/last issue month per slice."""
    slices = frame.group_by("slice").agg(
        pl.len().alias("loans"),
        pl.col("bad").sum().alias("bads"),
        pl.col("issue_month").min().alias("first_month"),
        pl.col("issue_month").max().alias("last_month"),
    )
    return {r["slice"]: r for r in slices.to_dicts()}


@uses(*PARAMS)
def run(settings: Sections, segment: str) -> dict:
    """Train, calibrate and save the segment's models; log the run to MLflow.

    Besides the Scorer the folder holds ``baseline.json``, ``additive/``, the training slice's
    scores (the promotion gate's PSI reference), ``reference.json`` (the whole book's feature
    and score distribution at the end of the log, from the features stage's book snapshot: the
    production drift reference) and ``training.json`` with the MLflow run id.
    """
    layout = Layout(settings.data_dir)
    frame = inputs.sliced(layout, segment, settings.split)
    catalog = inputs.feature_definitions(segment, settings.features, settings.label).catalog
    specs = tuple(catalog.specs)
    names = [s.name for s in specs]
    pd_monotone = [s.pd_monotone for s in specs]

    def xy(slice_: str) -> tuple[np.ndarray, np.ndarray]:
        part = frame.filter(pl.col("slice") == slice_)
        return part.select(pl.col(names).cast(pl.Float64)).to_numpy(), part["bad"].to_numpy()

    x_train, y_train = xy(TRAIN)
    x_valid, y_valid = xy(VALID)
    params = settings.model.train
    calibration = settings.model.calibration

    def fit(*, additive: bool = False):
        booster = fit_booster(
            x_train,
            y_train,
            x_valid,
            y_valid,
            feature_names=names,
            pd_monotone=pd_monotone,
            params=params,
            additive=additive,
        )
        calibrator = fit_calibrator(booster.predict(x_valid, raw_score=True), y_valid, calibration)
        return booster, calibrator

    started = time.perf_counter()
    booster, calibrator = fit()
    train_seconds = time.perf_counter() - started
    broken = monotonicity_violations(booster, x_train, pd_monotone)
    if broken:
        raise RuntimeError(
            f"expected the fitted {segment} model to keep its monotone constraints; it breaks "
            f"them on {broken}"
        )
    card = fit_scorecard(x_train, y_train, names, settings.model.baseline)
    card_calibrator = fit_calibrator(card.log_odds(x_valid), y_valid, calibration)
    additive = AdditiveReference(*fit(additive=True))
    scorer = Scorer(
        segment=segment,
        specs=specs,
        booster=booster,
        calibrator=calibrator,
        scaling=settings.scaling,
        policy=settings.limits[segment],
    )

    def scores(x: np.ndarray) -> np.ndarray:
        return pd_to_score(calibrator.predict(booster.predict(x, raw_score=True)), settings.scaling)

    book = pl.read_parquet(require(layout.book_features(segment), "features"))
    if book.height == 0:
        raise ValueError(f"expected consented {segment}s in the book snapshot; found none")
    x_book = book.select(pl.col(names).cast(pl.Float64)).to_numpy()
    info = {
        "segment": segment,
        "features": names,
        "catalog_hash": catalog.hash,
        "best_iteration": booster.current_iteration(),
        "train_seconds": round(train_seconds, 3),
        "valid_auc": ev.auc(y_valid, calibrator.predict(booster.predict(x_valid, raw_score=True))),
        "monotone_constrained": sum(1 for d in pd_monotone if d != 0),
        "importance": gain_importance(booster),
        "slices": slice_summary(frame),
        "drift_reference": {"as_of": book["as_of"][0].isoformat(), "rows": book.height},
    }
    with publishing(layout.model(segment)) as tmp:
        scorer.save(tmp)
        write_reference_scores(tmp, scores(x_train))
        drift.write_reference(tmp, x_book, names, scores(x_book), bins=settings.drift.bins)
        write_json(
            {
                "scorecard": card.to_dict(),
                "calibrator": card_calibrator.to_dict(),
                "params": settings.model.baseline.model_dump(),
            },
            tmp / BASELINE_FILE,
        )
        additive.save(tmp)
        info["run_id"] = _log_run(settings, segment, info, len(card.characteristics), pd_monotone)
        write_json(info, tmp / TRAINING_FILE)
    log.info("trained %s in %.1fs: %d trees", segment, train_seconds, info["best_iteration"])
    return info


def _log_run(
    settings: Sections, segment: str, info: dict, characteristics: int, pd_monotone: list[int]
) -> str:
    """Log the training run's params, metrics and feature list to MLflow; its run id."""
    import mlflow

    names = info["features"]
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_name=f"train-{segment}") as run:
        mlflow.set_tags({"segment": segment, "catalog_hash": info["catalog_hash"]})
        for prefix, section in (
            ("train", settings.model.train),
            ("baseline", settings.model.baseline),
            ("label", settings.label),
            ("split", settings.split),
        ):
            mlflow.log_params({f"{prefix}.{k}": v for k, v in section.model_dump().items()})
        mlflow.log_params(
            {
                "calibration": settings.model.calibration,
                "n_features": len(names),
                "baseline.characteristics": characteristics,
            }
        )
        mlflow.log_metrics(
            {
                "train_seconds": info["train_seconds"],
                "best_iteration": float(info["best_iteration"]),
                **({"valid_auc": info["valid_auc"]} if np.isfinite(info["valid_auc"]) else {}),
            }
        )
        mlflow.log_dict(
            {
                "features": names,
                "pd_monotone": dict(zip(names, pd_monotone, strict=True)),
                "importance": info["importance"],
            },
            "features.json",
        )
        return run.info.run_id
