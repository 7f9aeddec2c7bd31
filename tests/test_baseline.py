"""The WoE logistic scorecard baseline: binning, WoE signs, plain-data round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import evaluate as ev
from models.baseline import BaselineParams, Scorecard, fit_scorecard


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[rng.random(n) < 0.1, 2] = np.nan
    logit = -3 + 1.2 * x[:, 0] - 0.6 * x[:, 1] + np.where(np.isnan(x[:, 2]), 1.5, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def test_scorecard_learns_signal_out_of_sample() -> None:
    x, y = _data(6000, 0)
    card = fit_scorecard(x, y, ["a", "b", "c"], BaselineParams())
    x_new, y_new = _data(3000, 1)
    assert ev.auc(y_new, card.predict_pd(x_new)) > 0.75
    # Riskier bins of a (high values) carry negative WoE (WoE = ln goods/bads share).
    assert card.woe[0][0] > 0 > card.woe[0][len(card.edges[0])]
    # Missing values of c are risky, so their bin has the lowest WoE.
    assert card.woe[2][-1] == min(card.woe[2])


def test_small_bins_are_merged() -> None:
    x = np.concatenate([np.zeros(990), np.arange(10.0)]).reshape(-1, 1)
    y = np.tile([0.0, 1.0], 500)
    card = fit_scorecard(x, y, ["a"], BaselineParams(bins=10, min_bin_share=0.05))
    idx = np.searchsorted(np.asarray(card.edges[0]), x[:, 0], side="right")
    assert np.bincount(idx).min() >= 50


def test_unseen_missing_bin_is_neutral_and_round_trip_is_exact() -> None:
    x, y = _data(2000, 2)
    x[:, 2] = np.nan_to_num(x[:, 2])
    card = fit_scorecard(x, y, ["a", "b", "c"], BaselineParams())
    assert card.woe[2][-1] == 0.0
    again = Scorecard.from_dict(json.loads(json.dumps(card.to_dict())))
    np.testing.assert_array_equal(again.predict_pd(x), card.predict_pd(x))


def test_bad_inputs_are_refused() -> None:
    x, y = _data(100, 3)
    with pytest.raises(ValueError, match="expected a matrix of 100 rows x 2 features"):
        fit_scorecard(x, y, ["a", "b"], BaselineParams())
    with pytest.raises(ValueError, match="expected both goods and bads"):
        fit_scorecard(x, np.zeros(100), ["a", "b", "c"], BaselineParams())
