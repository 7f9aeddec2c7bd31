"""Fast path attribution against LightGBM's exact TreeSHAP on small trained models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from models.attribution import (
    CompiledPaths,
    PathAttribution,
    exact_contributions,
    feature_forests,
    forest_folder,
)


def _data(rows: int = 3000, features: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values route by default_left
    filled = np.nan_to_num(x)
    logit = -2 + filled[:, 0] - 0.8 * filled[:, 1] + 0.5 * filled[:, 2] * filled[:, 3]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    x[:, -1] = 0.0  # a constant feature the model can never use
    return x, y


def _train(x: np.ndarray, y: np.ndarray, leaves: int, rounds: int) -> lgb.Booster:
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "monotone_constraints": [1, -1] + [0] * (x.shape[1] - 2),
        "monotone_constraints_method": "advanced",
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": 3,
        "verbosity": -1,
    }
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)


@pytest.fixture(scope="module")
def model() -> tuple[lgb.Booster, np.ndarray]:
    x, y = _data()
    return _train(x, y, leaves=15, rounds=40), x[:400]


def test_fast_attributions_add_up_to_the_raw_score_with_treeshap_bias(model) -> None:
    booster, x = model
    fast = PathAttribution.from_booster(booster).contributions(booster, x)
    exact = exact_contributions(booster, x)
    assert fast.shape == exact.shape == (x.shape[0], x.shape[1] + 1)
    raw = booster.predict(x, raw_score=True)
    np.testing.assert_allclose(fast.sum(axis=1), raw, atol=1e-9)
    np.testing.assert_allclose(fast[:, -1], exact[:, -1], atol=1e-9)
    assert (fast[:, -2] == 0).all()  # an unused feature gets nothing


def test_fast_and_exact_agree_on_the_main_reason(model) -> None:
    booster, x = model
    fast = PathAttribution.from_booster(booster).contributions(booster, x)[:, :-1]
    exact = exact_contributions(booster, x)[:, :-1]
    assert np.mean(fast.argmax(axis=1) == exact.argmax(axis=1)) >= 0.7
    assert np.corrcoef(fast.ravel(), exact.ravel())[0, 1] > 0.9


def test_on_stumps_path_attribution_is_exact_treeshap() -> None:
    x, y = _data(seed=1)
    booster = _train(x, y, leaves=2, rounds=25)  # one split per tree: both methods coincide
    fast = PathAttribution.from_booster(booster).contributions(booster, x[:200])
    np.testing.assert_allclose(fast, exact_contributions(booster, x[:200]), atol=1e-9)


def test_empty_and_misshapen_inputs(model) -> None:
    booster, x = model
    paths = PathAttribution.from_booster(booster)
    assert paths.contributions(booster, x[:0]).shape == (0, x.shape[1] + 1)
    assert exact_contributions(booster, x[:0]).shape == (0, x.shape[1] + 1)
    with pytest.raises(ValueError, match="expected a 2-d matrix"):
        paths.contributions(booster, x[:, :3])
    with pytest.raises(ValueError, match="expected a 2-d matrix"):
        exact_contributions(booster, x[:, :3])
    other = lgb.Booster(model_str=booster.model_to_string(num_iteration=5))
    with pytest.raises(ValueError, match="expected the booster the table was built from"):
        paths.contributions(other, x)


def test_the_table_is_deterministic(model) -> None:
    booster, x = model
    a = PathAttribution.from_booster(booster).contributions(booster, x)
    b = PathAttribution.from_booster(booster).contributions(booster, x)
    assert np.array_equal(a, b)


def test_the_gather_equals_the_sparse_product(model) -> None:
    booster, x = model
    paths = PathAttribution.from_booster(booster)
    assert paths.columns is not None  # the dense per-feature gather is the one used here
    sparse_only = dataclasses.replace(paths, columns=None)
    np.testing.assert_allclose(
        paths.contributions(booster, x), sparse_only.contributions(booster, x), atol=1e-12
    )


def test_each_feature_forest_is_a_lightgbm_model_predicting_its_attribution(model) -> None:
    booster, x = model
    paths = PathAttribution.from_booster(booster)
    fast = paths.contributions(booster, x)
    forests = feature_forests(booster, paths)
    assert set(forests) == {f for f, trees in enumerate(paths.trees_of) if trees.size}
    assert x.shape[1] - 1 not in forests  # the constant feature is never split on
    for feature, text in forests.items():
        alone = lgb.Booster(model_str=text)
        assert alone.num_trees() == paths.trees_of[feature].size
        np.testing.assert_allclose(
            alone.predict(x, raw_score=True), fast[:, feature], rtol=0, atol=1e-12
        )


def test_compiled_attribution_is_the_path_attribution(model, tmp_path: Path) -> None:
    booster, x = model
    paths = PathAttribution.from_booster(booster)
    compiled = CompiledPaths.build(booster, paths, tmp_path)
    # Same leaf values summed over the same trees; only the order of the sum may differ.
    np.testing.assert_allclose(
        compiled.contributions(x), paths.contributions(booster, x), rtol=0, atol=1e-12
    )
    folder = forest_folder(booster, tmp_path)
    made = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert len([p for p in made if p.suffix == ".bin"]) == len(compiled.forests)
    assert not [p for p in made if p.name.startswith(".")]  # no temporaries left
    CompiledPaths.build(booster, paths, tmp_path)
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == made  # loaded, not rebuilt
    assert compiled.contributions(x[:0]).shape == (0, x.shape[1] + 1)
    with pytest.raises(ValueError, match="expected a 2-d matrix"):
        compiled.contributions(x[:, :3])
