"""The scorecard baseline: binning, WoE signs, characteristic screens, sign agreement, JSON."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from models import evaluate as ev
from models.baseline import (
    BaselineParams,
    Scorecard,
    cross_fit_scorecard,
    fit_scorecard,
    information_value,
)


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


def test_information_value_matches_hand_computation() -> None:
    # Two bins: goods 30/10 and bads 5/15 -> shares (0.75, 0.25) and (0.25, 0.75).
    woe = np.log(np.array([0.75 / 0.25, 0.25 / 0.75]))
    col = np.repeat(woe, [35, 25])
    y = np.concatenate([np.zeros(30), np.ones(5), np.zeros(10), np.ones(15)])
    expected = (0.75 - 0.25) * np.log(3.0) + (0.25 - 0.75) * np.log(1 / 3)
    assert information_value(col, y) == pytest.approx(expected, rel=1e-12)


def test_weak_and_duplicate_characteristics_are_screened_out() -> None:
    rng = np.random.default_rng(4)
    x, y = _data(40000, 4)
    noise = rng.normal(size=(40000, 1))
    wide = np.hstack([x, x[:, :1] * 2.0 + 1.0, noise])  # a rescaled copy of "a", and noise
    card = fit_scorecard(wide, y, ["a", "b", "c", "a2", "noise"], BaselineParams())
    assert card.characteristics == ("a", "b", "c")
    assert card.iv[4] < 0.02 < card.iv[1]
    assert card.iv[0] == pytest.approx(card.iv[3])
    capped = fit_scorecard(wide, y, ["a", "b", "c", "a2", "noise"], BaselineParams(max_corr=1.0))
    assert "noise" not in capped.characteristics
    one = fit_scorecard(x, y, ["a", "b", "c"], BaselineParams(max_characteristics=1))
    assert one.characteristics == ("a",)


def test_every_coefficient_keeps_the_sign_of_its_woe() -> None:
    # b tracks a closely but, given a, lowers risk: on its own it looks risky (positive WoE
    # slope), in the regression it takes the opposite sign. A plain fit keeps the reversed
    # sign; the scorecard drops b.
    rng = np.random.default_rng(5)
    n = 20000
    a = rng.normal(size=n)
    b = a + 0.6 * rng.normal(size=n)
    logit = -3 + 2.0 * a - 0.8 * b
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    x = np.column_stack([a, b])
    params = BaselineParams(max_corr=0.99)
    card = fit_scorecard(x, y, ["a", "b"], params)
    woe = card.transform(x)
    plain = LogisticRegression(C=params.c, max_iter=2000).fit(woe, y).coef_[0]
    assert plain[1] > 0, plain  # the reversed sign a plain regression gives
    assert card.characteristics == ("a",)
    assert all(c <= 0 for c in card.coef)


def test_a_card_without_characteristics_scores_the_bad_rate() -> None:
    x, y = _data(2000, 6)
    card = fit_scorecard(x, y, ["a", "b", "c"], BaselineParams(min_iv=100.0))
    assert card.characteristics == ()
    np.testing.assert_allclose(card.predict_pd(x), y.mean(), rtol=1e-12)


def test_points_add_up_to_the_cards_score_and_follow_the_woe() -> None:
    x, y = _data(6000, 7)
    card = fit_scorecard(x, y, ["a", "b", "c"], BaselineParams())
    factor, offset = 40 / np.log(2), 375.0
    table = card.points_table(factor, offset)
    assert table["characteristic"].unique(maintain_order=True).to_list() == list(
        card.characteristics
    )
    # Every row's points: look up each characteristic's bin and add them up.
    total = np.zeros(len(x))
    for j, name in enumerate(card.features):
        if name not in card.characteristics:
            continue
        rows = table.filter(pl.col("characteristic") == name)["points"].to_numpy()
        idx = np.searchsorted(np.asarray(card.edges[j]), x[:, j], side="right")
        idx[np.isnan(x[:, j])] = len(card.woe[j]) - 1
        total += rows[idx]
    np.testing.assert_allclose(total, offset - factor * card.log_odds(x), rtol=1e-12)
    # Better odds (higher WoE) never earn fewer points within a characteristic.
    for _, group in table.group_by("characteristic"):
        ordered = group.sort("woe")
        assert (ordered["points"].diff().drop_nulls() >= -1e-9).all()


def test_bins_are_merged_until_the_woe_follows_the_catalog_direction() -> None:
    """A planted dip: the bad rate rises with the value except in one middle bin."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 10, size=(8000, 1))
    rate = np.select(
        [x[:, 0] < 2, x[:, 0] < 4, x[:, 0] < 6, x[:, 0] < 8], [0.05, 0.10, 0.02, 0.20], 0.30
    )
    y = (rng.random(8000) < rate).astype(float)
    params = BaselineParams(bins=5, min_iv=0.0)
    free = fit_scorecard(x, y, ["debt"], params)
    # Without a direction the quantile bins keep the dip: WoE goes up at the third bin.
    assert (np.diff(free.woe[0][:-1]) > 0).any()
    card = fit_scorecard(x, y, ["debt"], params, pd_monotone=[1])
    woe = np.asarray(card.woe[0][:-1])  # the last entry is the missing-value bin
    assert len(woe) < len(free.woe[0][:-1])
    assert (np.diff(woe) < 0).all()  # PD rises with debt: WoE strictly falls
    # The opposite direction merges the other way; no direction leaves the bins alone.
    falling = fit_scorecard(x, y, ["debt"], params, pd_monotone=[-1])
    assert (np.diff(np.asarray(falling.woe[0][:-1])) > 0).all()
    assert fit_scorecard(x, y, ["debt"], params, pd_monotone=[0]).edges == free.edges


def test_monotone_directions_must_match_the_features() -> None:
    x, y = _data(200, 4)
    with pytest.raises(ValueError, match="expected one monotone direction per feature"):
        fit_scorecard(x, y, ["a", "b", "c"], BaselineParams(), pd_monotone=[1, -1])


def test_cross_fitted_card_scores_each_loan_without_it() -> None:
    x, y = _data(1500, 6)
    folds = np.stack([np.arange(1500) % 3, (np.arange(1500) // 3) % 3])
    out = cross_fit_scorecard(x, y, folds, ["a", "b", "c"], BaselineParams())
    assert out.shape == (2, 1500)
    assert np.isfinite(out).all()
    held = folds[0] == 0
    alone = fit_scorecard(x[~held], y[~held], ["a", "b", "c"], BaselineParams())
    np.testing.assert_allclose(out[0, held], alone.log_odds(x[held]))
