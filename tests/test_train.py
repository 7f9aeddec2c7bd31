"""LightGBM training: monotone constraints hold on the fitted model, early stopping, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from models.train import (
    TrainParams,
    cross_fit_booster,
    effective_min_data_in_leaf,
    fit_booster,
    fit_rounds,
    gain_importance,
    lgb_params,
    monotonicity_violations,
)

NAMES = ["debt", "income", "noise", "u_shaped"]
PD_MONOTONE = [1, -1, 0, 1]
FAST = TrainParams(
    num_leaves=7, learning_rate=0.1, max_rounds=150, early_stopping_rounds=20, min_data_in_leaf=20
)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PD rises with debt, falls with income, and is U-shaped in the last feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[rng.random(n) < 0.05, 1] = np.nan  # some missing income
    logit = -2.5 + 1.0 * x[:, 0] - 0.8 * np.nan_to_num(x[:, 1]) + 1.2 * x[:, 3] ** 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    x_train, y_train = _data(4000, 1)
    x_valid, y_valid = _data(1500, 2)
    return x_train, y_train, x_valid, y_valid


@pytest.fixture(scope="module")
def booster(data):
    x_train, y_train, x_valid, y_valid = data
    return fit_booster(
        x_train,
        y_train,
        x_valid,
        y_valid,
        feature_names=NAMES,
        pd_monotone=PD_MONOTONE,
        params=FAST,
    )


def test_fitted_model_moves_only_in_the_constrained_direction(booster, data) -> None:
    x = data[0][:100].copy()
    for j, direction in enumerate(PD_MONOTONE):
        if direction == 0:
            continue
        grid = np.linspace(np.nanmin(data[0][:, j]), np.nanmax(data[0][:, j]), 25)
        preds = []
        for value in grid:
            probe = x.copy()
            probe[:, j] = value
            preds.append(booster.predict(probe, raw_score=True))
        steps = np.diff(np.vstack(preds), axis=0) * direction
        assert (steps >= -1e-12).all(), NAMES[j]
        assert (steps > 1e-9).any(), f"{NAMES[j]} should matter"
    assert monotonicity_violations(booster, data[0], PD_MONOTONE) == []


def test_checker_catches_an_unconstrained_model(data) -> None:
    x_train, y_train, x_valid, y_valid = data
    free = fit_booster(
        x_train,
        y_train,
        x_valid,
        y_valid,
        feature_names=NAMES,
        pd_monotone=[0, 0, 0, 0],
        params=FAST,
    )
    # The U-shaped feature, left free, rises and falls: the +1 constraint is broken.
    assert "u_shaped" in monotonicity_violations(free, x_train, PD_MONOTONE)


def test_early_stopping_keeps_the_best_iteration_only(booster) -> None:
    assert 1 <= booster.current_iteration() < FAST.max_rounds


def test_training_is_deterministic(booster, data) -> None:
    x_train, y_train, x_valid, y_valid = data
    again = fit_booster(
        x_train,
        y_train,
        x_valid,
        y_valid,
        feature_names=NAMES,
        pd_monotone=PD_MONOTONE,
        params=FAST,
    )
    assert again.model_to_string() == booster.model_to_string()


def test_gain_importance_is_a_share(booster) -> None:
    shares = gain_importance(booster)
    assert set(shares) == set(NAMES)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["debt"] > shares["noise"]


def test_mismatched_names_are_refused(data) -> None:
    x_train, y_train, x_valid, y_valid = data
    with pytest.raises(ValueError, match="expected 4 feature names"):
        fit_booster(
            x_train,
            y_train,
            x_valid,
            y_valid,
            feature_names=NAMES[:3],
            pd_monotone=PD_MONOTONE,
            params=FAST,
        )


def test_additive_booster_splits_on_one_feature_per_tree(data) -> None:
    """additive=True gives a sum of one-feature shapes: no tree mixes features."""
    x_train, y_train, x_valid, y_valid = data
    # debt x income interaction in the truth, so a free booster would mix them in one tree
    y_train = (y_train + (x_train[:, 0] * np.nan_to_num(x_train[:, 1]) > 1)).clip(0, 1)
    common = {"feature_names": NAMES, "pd_monotone": PD_MONOTONE, "params": FAST}
    additive = fit_booster(x_train, y_train, x_valid, y_valid, additive=True, **common)
    free = fit_booster(x_train, y_train, x_valid, y_valid, **common)

    def features_per_tree(booster) -> list[int]:
        trees = booster.trees_to_dataframe()
        splits = trees[trees["split_feature"].notna()]
        return splits.groupby("tree_index")["split_feature"].nunique().tolist()

    assert max(features_per_tree(additive)) == 1
    assert max(features_per_tree(free)) > 1
    assert monotonicity_violations(additive, x_train, PD_MONOTONE) == []


def test_leaf_minimum_scales_with_the_training_rows() -> None:
    params = FAST.model_copy(update={"min_data_in_leaf": 100, "min_data_in_leaf_share": 0.05})
    assert effective_min_data_in_leaf(params, 320) == 16  # a 400-loan book's fold
    assert effective_min_data_in_leaf(params, 10) == 1
    assert effective_min_data_in_leaf(params, 50_000) == 100  # large books: the count caps it
    assert effective_min_data_in_leaf(params, None) == 100
    no_share = params.model_copy(update={"min_data_in_leaf_share": None})
    assert effective_min_data_in_leaf(no_share, 320) == 100
    assert lgb_params(params, [1], rows=320)["min_data_in_leaf"] == 16
    assert lgb_params(params, [1])["min_data_in_leaf"] == 100


def test_a_small_fit_gets_leaves_smaller_than_the_count() -> None:
    x, y = _data(300, 4)
    x_valid, y_valid = _data(300, 5)
    params = FAST.model_copy(update={"min_data_in_leaf": 100, "min_data_in_leaf_share": 0.05})
    kw = {"feature_names": NAMES, "pd_monotone": PD_MONOTONE}
    counted = fit_booster(
        x, y, x_valid, y_valid, params=FAST.model_copy(update={"min_data_in_leaf": 100}), **kw
    )
    scaled = fit_booster(x, y, x_valid, y_valid, params=params, **kw)
    leaves = [t["num_leaves"] for t in scaled.dump_model()["tree_info"]]
    # 300 rows with leaves of 100 allow at most 3 leaves; 5% of 300 = 15 allows the full 7.
    assert max(t["num_leaves"] for t in counted.dump_model()["tree_info"]) <= 3
    assert max(leaves) > 3


def test_cross_fit_scores_every_row_out_of_fold_and_refits_on_all(data) -> None:
    x, y = data[0][:1200], data[1][:1200]
    folds = np.stack([np.arange(1200) % 4, (np.arange(1200) * 7 // 3) % 4])
    kw = {"feature_names": NAMES, "pd_monotone": PD_MONOTONE, "params": FAST}
    fit = cross_fit_booster(x, y, folds, **kw)
    assert fit.raw.shape == (2, 1200)
    assert np.isfinite(fit.raw).all()
    assert len(fit.best_iterations) == 8
    assert fit.rounds == int(np.floor(np.median(fit.best_iterations) + 0.5))
    assert fit.booster.current_iteration() == fit.rounds
    # Fold 0 of repeat 0: rounds chosen on fold 1, the model refitted on folds 1-3.
    held, inner = folds[0] == 0, folds[0] == 1
    stopped = fit_booster(x[~held & ~inner], y[~held & ~inner], x[inner], y[inner], **kw)
    refit = fit_rounds(x[~held], y[~held], stopped.current_iteration(), **kw)
    np.testing.assert_allclose(fit.raw[0, held], refit.predict(x[held], raw_score=True))
    assert not monotonicity_violations(fit.booster, x, PD_MONOTONE)
    again = cross_fit_booster(x, y, folds, **kw)
    np.testing.assert_array_equal(again.raw, fit.raw)
    assert again.booster.model_to_string() == fit.booster.model_to_string()
