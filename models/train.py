"""LightGBM per segment with the catalog's monotone constraints.

Out-of-time mode fits once, early-stopped on the validation slice (:func:`fit_booster`).
Cross-validation mode (:func:`cross_fit_booster`) fits per fold and gives every labelled loan an
out-of-fold raw score in every repeat, then fits the registered booster on every loan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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
    # A leaf's minimum as a share of the rows a fit trains on: the effective minimum is the
    # smaller of the two (see effective_min_data_in_leaf), so a 400-loan book is not asked for
    # leaves of 100 loans while a large book keeps min_data_in_leaf. null: the count alone.
    min_data_in_leaf_share: float | None = Field(None, gt=0, lt=0.5)
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


# Cross-fitting runs R x K x 2 small fits: below this many rows one thread is faster than two
# (OpenMP synchronisation outweighs the work: one repeat on 266 loans took 22 s on two threads
# and 1.2 s on one, on this 2-core machine under load). Out-of-time fits keep num_threads.
SINGLE_THREAD_ROWS = 20_000

# LightGBM's own default min_data_in_leaf, which its Dataset uses to pre-filter features that
# no split could use; a fit whose effective minimum is below it passes its own to the Dataset.
_LGB_DEFAULT_MIN_DATA_IN_LEAF = 20


def effective_min_data_in_leaf(params: TrainParams, rows: int | None) -> int:
    """The leaf minimum a fit on ``rows`` training rows uses.

    ``min(min_data_in_leaf, max(1, floor(min_data_in_leaf_share x rows)))``: the share scales
    the leaf with the book (0.05 of a 320-row fold is 16 loans), the count caps it, so a book
    with more than ``min_data_in_leaf / share`` training rows is fitted exactly as before.
    Without a share or a row count, ``min_data_in_leaf``.
    """
    if params.min_data_in_leaf_share is None or rows is None:
        return params.min_data_in_leaf
    return min(params.min_data_in_leaf, max(1, math.floor(params.min_data_in_leaf_share * rows)))


def lgb_params(
    params: TrainParams,
    pd_monotone: Sequence[int],
    *,
    additive: bool = False,
    rows: int | None = None,
) -> dict:
    """The LightGBM parameter dict: deterministic, binary, monotone-constrained.

    ``rows`` is the number of training rows, from which the leaf minimum scales
    (:func:`effective_min_data_in_leaf`). ``additive`` lets every tree split on one feature
    only (``interaction_constraints``): the booster is then a sum of one-feature shape
    functions, a generalised additive model with the same features, constraints and budget,
    whose AUC tells how much the full model owes to interactions rather than to better shapes
    than a scorecard's bins.
    """
    out = {
        "objective": "binary",
        "metric": "auc",
        "num_leaves": params.num_leaves,
        "learning_rate": params.learning_rate,
        "min_data_in_leaf": effective_min_data_in_leaf(params, rows),
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


def _dataset(
    x: np.ndarray, y: np.ndarray, feature_names: Sequence[str], params: TrainParams
) -> lgb.Dataset:
    """The training Dataset; its feature pre-filter uses the fit's leaf minimum when lower.

    LightGBM drops, when it builds a Dataset, the features no split could use at its default
    leaf minimum (20); a small book's fit with a smaller minimum must keep them. A fit at or
    above the default builds the Dataset exactly as before.
    """
    dataset_params: dict = {"max_bin": params.max_bin, "verbosity": -1}
    leaf = effective_min_data_in_leaf(params, len(y))
    if leaf < _LGB_DEFAULT_MIN_DATA_IN_LEAF:
        dataset_params["min_data_in_leaf"] = leaf
    return lgb.Dataset(
        x, y, feature_name=list(feature_names), free_raw_data=False, params=dataset_params
    )


def _check_shapes(x: np.ndarray, feature_names: Sequence[str], pd_monotone: Sequence[int]) -> None:
    if len(feature_names) != x.shape[1] or len(pd_monotone) != x.shape[1]:
        raise ValueError(
            f"expected {x.shape[1]} feature names and constraints; "
            f"got {len(feature_names)} and {len(pd_monotone)}"
        )


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
    _check_shapes(x_train, feature_names, pd_monotone)
    if y_train.sum() == 0 or y_valid.sum() == 0:
        raise ValueError("expected at least one bad loan in the train and validation slices; got 0")
    train = _dataset(x_train, y_train, feature_names, params)
    valid = lgb.Dataset(x_valid, y_valid, reference=train)
    booster = lgb.train(
        lgb_params(params, pd_monotone, additive=additive, rows=len(y_train)),
        train,
        num_boost_round=params.max_rounds,
        valid_sets=[valid],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def fit_rounds(
    x: np.ndarray,
    y: np.ndarray,
    rounds: int,
    *,
    feature_names: Sequence[str],
    pd_monotone: Sequence[int],
    params: TrainParams,
    additive: bool = False,
) -> lgb.Booster:
    """Train a fixed number of rounds, without a validation set (the rounds were chosen before)."""
    _check_shapes(x, feature_names, pd_monotone)
    if y.sum() == 0:
        raise ValueError("expected at least one bad loan to train on; got 0")
    if rounds < 1:
        raise ValueError(f"expected at least one boosting round; got {rounds}")
    return lgb.train(
        lgb_params(params, pd_monotone, additive=additive, rows=len(y)),
        _dataset(x, y, feature_names, params),
        num_boost_round=rounds,
    )


@dataclass(frozen=True)
class CrossFit:
    """A cross-fitted booster: out-of-fold raw scores and the booster fitted on every row.

    ``raw[r, i]`` is row i's raw score (log-odds) from the fold model of repeat r that did not
    train on it; ``best_iterations`` the early-stopped rounds of each fold (repeat-major);
    ``rounds`` the final booster's rounds, their median.
    """

    raw: np.ndarray
    best_iterations: tuple[int, ...]
    rounds: int
    booster: lgb.Booster


def cross_fit_booster(
    x: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    *,
    feature_names: Sequence[str],
    pd_monotone: Sequence[int],
    params: TrainParams,
    additive: bool = False,
) -> CrossFit:
    """Out-of-fold raw scores for every row in every repeat, and the final booster.

    ``folds`` is :func:`models.split.cv_folds`' (repeats, rows) fold array. For held-out fold k
    of a repeat the rounds are chosen by early stopping on an inner split of the training
    folds (fold k+1 mod K, so it is grouped and stratified like the outer folds; the model
    for it trains on the other K-2 folds), then a booster with those rounds is fitted on all
    K-1 training folds and scores fold k: the held-out fold never chooses anything. The final
    booster is fitted on every row with the median of the folds' best iterations (rounded
    half up): one number chosen by R x K early stoppings is steadier than one split's. Books
    under :data:`SINGLE_THREAD_ROWS` rows are fitted on one thread.
    """
    _check_shapes(x, feature_names, pd_monotone)
    if len(y) < SINGLE_THREAD_ROWS:
        params = params.model_copy(update={"num_threads": 1})
    if folds.ndim != 2 or folds.shape[1] != len(y):
        raise ValueError(f"expected folds of shape (repeats, {len(y)}); got {folds.shape}")
    k = int(folds.max()) + 1
    if k < 3:
        raise ValueError(f"expected at least 3 folds (one held out, one inner); got {k}")
    kw = {
        "feature_names": feature_names,
        "pd_monotone": pd_monotone,
        "params": params,
        "additive": additive,
    }
    raw = np.full(folds.shape, np.nan)
    best: list[int] = []
    for r, assignment in enumerate(folds):
        for fold in range(k):
            held = assignment == fold
            inner = assignment == (fold + 1) % k
            fit_on = ~held & ~inner
            stopped = fit_booster(x[fit_on], y[fit_on], x[inner], y[inner], **kw)
            best.append(stopped.current_iteration())
            model = fit_rounds(x[~held], y[~held], best[-1], **kw)
            raw[r, held] = model.predict(x[held], raw_score=True)
    rounds = max(1, math.floor(float(np.median(best)) + 0.5))
    return CrossFit(
        raw=raw,
        best_iterations=tuple(best),
        rounds=rounds,
        booster=fit_rounds(x, y, rounds, **kw),
    )


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
