"""Stage ``train``: the segment's Scorer, its scorecard baseline and its additive reference.

``split.mode: oot``: the booster is early-stopped and calibrated on the validation slice; the
scorecard baseline and the additive reference (one feature per tree) are fitted on the same
slices and calibrated the same way, so the evaluation compares them fairly without training
anything itself.

``split.mode: cv``: all three are cross-fitted over repeated grouped k-fold (see
:func:`models.train.cross_fit_booster`): every labelled loan gets an out-of-fold PD from each
model in every repeat (saved for the evaluation, ``cv_oof.parquet``), the calibrators are Platt
(or isotonic) fits on the out-of-fold raw scores, and the saved models are fitted on every
labelled loan, so register and score read the same artifacts in both modes.

The folder (see :mod:`pipeline.artifacts`) is published in one rename: a failed run leaves the
previous model as it was.

On ``compute.engine: dask`` the out-of-time booster and the additive reference are trained with
``lightgbm.dask`` (:mod:`pipeline.compute.training`: rounds from a local early-stopped fit, the
same parameters, an ordinary booster back); ``training.json`` records the engine. Cross-fitting
(``cv``, for small books) always runs here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from models import evaluate as ev
from models.baseline import BASELINE_FILE, Scorecard, cross_fit_scorecard, fit_scorecard
from models.calibrate import Calibrator, cross_fitted_pd, fit_calibrator, fit_out_of_fold
from models.scaling import pd_to_score
from models.scorer import Scorer
from models.split import TRAIN, VALID, cv_folds
from models.train import (
    cross_fit_booster,
    effective_min_data_in_leaf,
    gain_importance,
    monotonicity_violations,
)
from pipeline import drift, inputs, registry
from pipeline.artifacts import (
    TRAINING_FILE,
    AdditiveReference,
    write_out_of_fold,
    write_reference_scores,
)
from pipeline.compute.engine import Engine, session
from pipeline.compute.training import fit_booster
from pipeline.config import Sections, uses
from pipeline.storage import Layout, publishing, require, write_json

log = logging.getLogger(__name__)
PARAMS = (
    "features",
    "compute",
    "split",
    "model",
    "scaling",
    "limits",
    "label",
    "drift",
    "mlflow",
)


def slice_summary(frame: pl.DataFrame) -> dict[str, dict]:
    """Loans, bads and first/last issue month per slice."""
    slices = frame.group_by("slice").agg(
        pl.len().alias("loans"),
        pl.col("bad").sum().alias("bads"),
        pl.col("issue_month").min().alias("first_month"),
        pl.col("issue_month").max().alias("last_month"),
    )
    return {r["slice"]: r for r in slices.to_dicts()}


@dataclass(frozen=True)
class _Fitted:
    """What either design fits: the models, their calibrators and the design's own record."""

    booster: object
    calibrator: Calibrator
    card: Scorecard
    card_calibrator: Calibrator
    additive: AdditiveReference
    x_train: np.ndarray  # the loans the saved booster trained on (the gate's PSI reference)
    valid_auc: float
    record: dict = field(default_factory=dict)
    out_of_fold: pl.DataFrame | None = None


@uses(*PARAMS)
def run(settings: Sections, segment: str) -> dict:
    """Train, calibrate and save the segment's models; log the run to MLflow.

    Besides the Scorer the folder holds ``baseline.json``, ``additive/``, the training slice's
    scores (the promotion gate's PSI reference), ``reference.json`` (the whole book's feature
    and score distribution at the end of the log, from the features stage's book snapshot: the
    production drift reference), ``training.json`` with the MLflow run id and, in ``cv`` mode,
    ``cv_oof.parquet`` (the out-of-fold PDs the evaluation measures).
    """
    layout = Layout(settings.data_dir)
    frame = inputs.sliced(layout, segment, settings.split)
    catalog = inputs.feature_definitions(
        segment, settings.features, settings.label, settings.limits
    ).catalog
    specs = tuple(catalog.specs)
    names = [s.name for s in specs]
    pd_monotone = [s.pd_monotone for s in specs]

    started = time.perf_counter()
    if settings.split.mode == "cv":
        if settings.compute.engine != "local":
            log.info("split.mode cv cross-fits on one machine (small books), not on Dask")
        fitted = _fit_cv(settings, frame, names, pd_monotone)
        engine_used = "local"
    else:
        with session(settings.compute) as engine:
            engine_used = engine.describe()
            fitted = _fit_oot(settings, engine, frame, names, pd_monotone)
    train_seconds = time.perf_counter() - started
    booster, calibrator = fitted.booster, fitted.calibrator
    broken = monotonicity_violations(booster, fitted.x_train, pd_monotone)
    if broken:
        raise RuntimeError(
            f"expected the fitted {segment} model to keep its monotone constraints; it breaks "
            f"them on {broken}"
        )
    card = fitted.card
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
        "valid_auc": fitted.valid_auc,
        "monotone_constrained": sum(1 for d in pd_monotone if d != 0),
        "importance": gain_importance(booster),
        "slices": slice_summary(frame),
        "drift_reference": {"as_of": book["as_of"][0].isoformat(), "rows": book.height},
        "min_data_in_leaf": effective_min_data_in_leaf(settings.model.train, len(fitted.x_train)),
        "split_mode": settings.split.mode,
        "compute": engine_used,
        **fitted.record,
    }
    with publishing(layout.model(segment)) as tmp:
        scorer.save(tmp)
        write_reference_scores(tmp, scores(fitted.x_train))
        drift.write_reference(tmp, x_book, names, scores(x_book), bins=settings.drift.bins)
        write_json(
            {
                "scorecard": card.to_dict(),
                "calibrator": fitted.card_calibrator.to_dict(),
                "params": settings.model.baseline.model_dump(),
            },
            tmp / BASELINE_FILE,
        )
        fitted.additive.save(tmp)
        if fitted.out_of_fold is not None:
            write_out_of_fold(tmp, fitted.out_of_fold)
        info["run_id"] = _log_run(settings, segment, info, len(card.characteristics), pd_monotone)
        write_json(info, tmp / TRAINING_FILE)
    log.info("trained %s in %.1fs: %d trees", segment, train_seconds, info["best_iteration"])
    return info


def _fit_oot(
    settings: Sections,
    engine: Engine,
    frame: pl.DataFrame,
    names: list[str],
    pd_monotone: list[int],
) -> _Fitted:
    """Fit on the training slice, early-stop and calibrate on the validation slice.

    The boosters are fitted on ``engine`` (see :func:`pipeline.compute.training.fit_booster`).
    """

    def xy(slice_: str) -> tuple[np.ndarray, np.ndarray]:
        part = frame.filter(pl.col("slice") == slice_)
        return part.select(pl.col(names).cast(pl.Float64)).to_numpy(), part["bad"].to_numpy()

    x_train, y_train = xy(TRAIN)
    x_valid, y_valid = xy(VALID)
    params = settings.model.train
    calibration = settings.model.calibration

    def fit(*, additive: bool = False):
        booster = fit_booster(
            engine,
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

    booster, calibrator = fit()
    card = fit_scorecard(x_train, y_train, names, settings.model.baseline, pd_monotone)
    return _Fitted(
        booster=booster,
        calibrator=calibrator,
        card=card,
        card_calibrator=fit_calibrator(card.log_odds(x_valid), y_valid, calibration),
        additive=AdditiveReference(*fit(additive=True)),
        x_train=x_train,
        valid_auc=ev.auc(y_valid, calibrator.predict(booster.predict(x_valid, raw_score=True))),
    )


def _fit_cv(
    settings: Sections, frame: pl.DataFrame, names: list[str], pd_monotone: list[int]
) -> _Fitted:
    """Cross-fit the booster, the additive reference and the card; fit them on every loan.

    The saved calibrators are fitted on the pooled out-of-fold raw scores; the out-of-fold PDs
    kept for the evaluation are cross-fitted (:func:`models.calibrate.cross_fitted_pd`), so a
    fold's calibration metrics are out of sample too.
    """
    split = settings.split
    calibration = settings.model.calibration
    x = frame.select(pl.col(names).cast(pl.Float64)).to_numpy()
    y = frame["bad"].cast(pl.Float64).to_numpy()
    folds = cv_folds(frame["entity_id"], frame["bad"], split)
    kw = {"feature_names": names, "pd_monotone": pd_monotone, "params": settings.model.train}
    model = cross_fit_booster(x, y, folds, **kw)
    additive = cross_fit_booster(x, y, folds, additive=True, **kw)
    card_raw = cross_fit_scorecard(x, y, folds, names, settings.model.baseline, pd_monotone)
    card = fit_scorecard(x, y, names, settings.model.baseline, pd_monotone)
    repeats = folds.shape[0]
    out_of_fold = pl.DataFrame(
        {
            "loan_id": np.tile(frame["loan_id"].to_numpy(), repeats),
            "repeat": np.repeat(np.arange(repeats), len(y)),
            "fold": folds.ravel(),
            "raw": model.raw.ravel(),
            "pd": cross_fitted_pd(model.raw, y, folds, calibration).ravel(),
            "baseline_pd": cross_fitted_pd(card_raw, y, folds, calibration).ravel(),
            "additive_pd": cross_fitted_pd(additive.raw, y, folds, calibration).ravel(),
        }
    )
    rule = "median of the folds' early-stopped rounds (inner split: the next fold of the repeat)"
    return _Fitted(
        booster=model.booster,
        calibrator=fit_out_of_fold(model.raw, y, calibration),
        card=card,
        card_calibrator=fit_out_of_fold(card_raw, y, calibration),
        additive=AdditiveReference(additive.booster, fit_out_of_fold(additive.raw, y, calibration)),
        x_train=x,
        valid_auc=float(np.mean([ev.auc(y, raw) for raw in model.raw])),
        record={
            "cv": {
                "folds": split.folds,
                "repeats": split.repeats,
                "seed": split.seed,
                "loans": len(y),
                "entities": frame["entity_id"].n_unique(),
                "best_iterations": list(model.best_iterations),
                "rounds": model.rounds,
                "rounds_rule": rule,
                "additive_rounds": additive.rounds,
            }
        },
        out_of_fold=out_of_fold,
    )


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
                "compute": info["compute"],
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
