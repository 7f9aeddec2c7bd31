"""LightGBM per segment with the catalog's monotone constraints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import lightgbm as lgb
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class TrainParams(BaseModel):
    """LightGBM hyper-parameters and the early-stopping rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    num_leaves: int = Field(15, ge=2)
    learning_rate: float = Field(0.1, gt=0)
    max_rounds: int = Field(600, gt=0)
    early_stopping_rounds: int = Field(50, gt=0)
    min_data_in_leaf: int = Field(100, ge=1)
    feature_fraction: float = Field(0.7, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l1: float = Field(0.0, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    min_gain_to_split: float = Field(0.0, ge=0)
    max_bin: int = Field(255, ge=2)
    # "basic" is the only method whose constraints held on fitted models here: "intermediate"
    # and "advanced" produced models that break them (LightGBM issues #5358 and #6155), which
    # monotonicity_violations catches, so they are allowed but not the default.
    monotone_method: Literal["basic", "intermediate", "advanced"] = "basic"
    seed: int = 42
    num_threads: int = Field(2, ge=1)


def lgb_params(params: TrainParams, pd_monotone: Sequence[int], *, additive: bool = False) -> dict:
    """The LightGBM parameter dict: deterministic, binary, monotone-constrained.

    ``additive`` lets every tree split on one feature only (``interaction_constraints``): the
    booster is then a sum of one-feature shape functions, a generalised additive model with the
    same features, constraints and budget, whose AUC tells how much the full model owes to
    interactions rather than to better shapes than a scorecard's bins.
    """
    out = {
        "objective": "binary",
        "metric": "auc",
        "num_leaves": params.num_leaves,
        "learning_rate": params.learning_rate,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l1": params.lambda_l1,
        "lambda_l2": params.lambda_l2,
        "min_gain_to_split": params.min_gain_to_split,
        "max_bin": params.max_bin,
        "monotone_constraints": list(pd_monotone),
        "monotone_constraints_method": params.monotone_method,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": params.num_threads,
        "verbosity": -1,
    }
    if additive:
        out["interaction_constraints"] = [[j] for j in range(len(pd_monotone))]
    return out


def fit_booster(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    *,
    feature_names: Sequence[str],
    pd_monotone: Sequence[int],
    params: TrainParams,
    additive: bool = False,
) -> lgb.Booster:
    """Train with early stopping on the out-of-time validation slice.

    ``pd_monotone`` gives, per feature, the constraint on the predicted PD (+1 increasing,
    -1 decreasing, 0 free); ``additive`` fits one feature per tree (see :func:`lgb_params`).
    The returned booster keeps only the best iteration.
    """
    if len(feature_names) != x_train.shape[1] or len(pd_monotone) != x_train.shape[1]:
        raise ValueError(
            f"expected {x_train.shape[1]} feature names and constraints; "
            f"got {len(feature_names)} and {len(pd_monotone)}"
        )
    if y_train.sum() == 0 or y_valid.sum() == 0:
        raise ValueError("expected at least one bad loan in the train and validation slices; got 0")
    train = lgb.Dataset(
        x_train,
        y_train,
        feature_name=list(feature_names),
        free_raw_data=False,
        params={"max_bin": params.max_bin, "verbosity": -1},
    )
    valid = lgb.Dataset(x_valid, y_valid, reference=train)
    booster = lgb.train(
        lgb_params(params, pd_monotone, additive=additive),
        train,
        num_boost_round=params.max_rounds,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def monotonicity_violations(
    booster: lgb.Booster,
    x: np.ndarray,
    pd_monotone: Sequence[int],
    *,
    rows: int = 200,
    seed: int = 0,
) -> list[str]:
    """Features whose constraint the fitted model breaks, found by perturbing each one.

    For a sample of rows, each constrained feature is swept across its observed quantiles with
    the others held fixed; the raw prediction must move only in the constrained direction.
    """
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(rows, len(x)), replace=False)]
    names = booster.feature_name()
    broken = []
    for j, direction in enumerate(pd_monotone):
        if direction == 0:
            continue
        if np.isnan(x[:, j]).all():
            continue  # a feature the book never has (no transaction log, say): nothing to sweep
        grid = np.unique(np.nanquantile(x[:, j], np.linspace(0, 1, 11)))
        if grid.size < 2:
            continue
        preds = []
        for value in grid:
            probe = sample.copy()
            probe[:, j] = value
            preds.append(booster.predict(probe, raw_score=True))
        steps = np.diff(np.vstack(preds), axis=0) * direction
        if (steps < -1e-9).any():
            broken.append(names[j])
    return broken


def gain_importance(booster: lgb.Booster) -> dict[str, float]:
    """Each feature's share of the total split gain (sums to 1; all zero for a stump)."""
    gain = booster.feature_importance(importance_type="gain").astype(float)
    total = gain.sum()
    shares = gain / total if total > 0 else gain
    return {name: float(v) for name, v in zip(booster.feature_name(), shares, strict=True)}
