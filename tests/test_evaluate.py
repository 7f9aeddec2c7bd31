"""Metrics against values computed by hand on tiny examples."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from models import evaluate as ev

Y = np.array([0.0, 0.0, 1.0, 1.0])
PD = np.array([0.1, 0.4, 0.35, 0.8])


def test_headline_metrics_by_hand() -> None:
    # Bad/good pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: (0.35<0.4) -> 3/4.
    s = ev.summary(Y, PD)
    assert s["auc"] == pytest.approx(0.75)
    assert s["gini"] == pytest.approx(0.5)
    # CDFs at 0.1, 0.35, 0.4, 0.8: bads 0, .5, .5, 1; goods .5, .5, 1, 1 -> KS 0.5.
    assert s["ks"] == pytest.approx(0.5)
    assert s["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert s["mean_pd"] == pytest.approx(0.4125)
    assert s["bad_rate"] == 0.5
    assert s["count"] == 4


def test_ece_by_hand() -> None:
    # Two equal-count bins: {0.1, 0.35} mean .225 vs observed .5; {0.4, 0.8} mean .6 vs .5.
    assert ev.expected_calibration_error(Y, PD, bins=2) == pytest.approx((2 * 0.275 + 2 * 0.1) / 4)


def test_ece_is_zero_when_every_bin_matches() -> None:
    # Bins of 4: PDs 0.25 with 1 bad in 4, then 0.75 with 3 bads in 4.
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1], dtype=float)
    pd_ = np.array([0.25] * 4 + [0.75] * 4)
    assert ev.expected_calibration_error(y, pd_, bins=2) == pytest.approx(0.0)


def test_degenerate_outcomes_give_nan_not_errors() -> None:
    assert math.isnan(ev.auc(np.zeros(3), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(ev.ks(np.ones(3), np.array([0.1, 0.2, 0.3])))
    with pytest.raises(ValueError, match="expected outcomes and PDs as 1-d arrays"):
        ev.auc(np.zeros(3), np.zeros(4))


def test_gains_table_by_hand() -> None:
    gains = ev.gains_table(Y, PD, bins=2)
    expected = pl.DataFrame(
        {
            "decile": [1, 2],
            "count": [2, 2],
            "bads": [1, 1],
            "min_pd": [0.4, 0.1],
            "mean_pd": [0.6, 0.225],
            "bad_rate": [0.5, 0.5],
            "cum_bad_share": [0.5, 1.0],
            "cum_good_share": [0.5, 1.0],
            "lift": [1.0, 1.0],
            "ks": [0.0, 0.0],
        }
    )
    assert_frame_equal(gains, expected, check_dtypes=False)


def test_calibration_bins_wilson_interval() -> None:
    y = np.repeat([1.0, 0.0], [10, 90])
    table = ev.calibration_bins(y, np.full(100, 0.1), bins=1)
    row = table.row(0, named=True)
    assert row["observed"] == pytest.approx(0.1)
    # Wilson 95% interval for 10/100: 0.0552 to 0.1744.
    assert row["observed_low"] == pytest.approx(0.0552, abs=1e-4)
    assert row["observed_high"] == pytest.approx(0.1744, abs=1e-4)


def test_by_band_keeps_every_band_in_order() -> None:
    frame = pl.DataFrame(
        {
            "band": ["good", "poor", "good"],
            "pd": [0.02, 0.2, 0.04],
            "score": [620, 500, 610],
            "bad": [0, 1, 1],
        }
    )
    table = ev.by_band(frame, ["poor", "fair", "good"])
    assert table["band"].to_list() == ["poor", "fair", "good"]
    assert table["loans"].to_list() == [1, 0, 2]
    assert table["observed"].to_list() == [1.0, None, 0.5]
    assert table["predicted"][2] == pytest.approx(0.03)


def test_by_group_auc_per_month() -> None:
    frame = pl.DataFrame(
        {
            "issue_month": ["2024-02", "2024-01", "2024-01", "2024-02", "2024-01", "2024-02"],
            "bad": [1, 0, 1, 0, 0, 1],
            "pd": [0.9, 0.1, 0.8, 0.2, 0.9, 0.1],
        }
    )
    table = ev.by_group(frame, "issue_month", {"model": "pd"})
    assert table["issue_month"].to_list() == ["2024-01", "2024-02"]
    assert table["loans"].to_list() == [3, 3]
    assert table["model_auc"].to_list() == pytest.approx([0.5, 0.5])
    assert table["model_mean_pd"].to_list() == pytest.approx([0.6, 0.4])


def test_months_more_than_the_drop_below_the_test_auc_are_flagged() -> None:
    from pipeline.config import MonitoringParams
    from pipeline.evaluation import by_month as _by_month

    # 2024-01 ranks perfectly (AUC 1.0); 2024-02 ranks backwards (AUC 0.0)
    frame = pl.DataFrame(
        {
            "issue_month": ["2024-01"] * 4 + ["2024-02"] * 4,
            "slice": ["test"] * 8,
            "bad": [0, 0, 1, 1, 0, 0, 1, 1],
            "pd": [0.1, 0.2, 0.8, 0.9, 0.9, 0.8, 0.2, 0.1],
        }
    )
    months = _by_month(frame, {"model": "pd"}, 0.5, MonitoringParams(auc_drop_alert=0.03))
    assert months["issue_month"].to_list() == ["2024-01", "2024-02"]
    assert months["model_auc"].to_list() == [1.0, 0.0]
    assert months["auc_alert"].to_list() == [False, True]


def test_resampled_se_by_hand() -> None:
    # sd (ddof 1) of [0.7, 0.8, 0.9, 0.8] is sqrt(0.02 / 3); 4 folds of k=4: 1/4 + 1/3.
    values = np.array([0.7, 0.8, 0.9, 0.8])
    expected = math.sqrt(0.02 / 3) * math.sqrt(1 / 4 + 1 / 3)
    assert ev.resampled_se(values, folds=4) == pytest.approx(expected)
    # A fold without an AUC is left out; fewer than two values have no SE.
    assert ev.resampled_se(np.append(values, np.nan), folds=4) == pytest.approx(expected)
    assert math.isnan(ev.resampled_se(np.array([0.8]), folds=4))


def test_fold_metrics_average_with_their_se() -> None:
    frame = pl.DataFrame(
        {
            "repeat": [0] * 8,
            "fold": [0] * 4 + [1] * 4,
            "bad": [0, 0, 1, 1, 0, 0, 1, 1],
            # Fold 0 ranks perfectly (AUC 1); fold 1 ranks one pair of four wrong (AUC 0.75).
            "pd": [0.1, 0.2, 0.8, 0.9, 0.1, 0.6, 0.5, 0.9],
            "other": [0.5] * 8,
        }
    )
    per_fold = ev.fold_summaries(frame, {"test": "pd", "baseline": "other"})
    assert per_fold.height == 4
    means, ses = ev.cv_means(per_fold, folds=2)
    assert means["test"]["auc"] == pytest.approx(0.875)
    assert ses["test"]["auc"] == pytest.approx(ev.resampled_se(np.array([1.0, 0.75]), 2))
    assert means["baseline"]["auc"] == pytest.approx(0.5)
    assert ses["baseline"]["auc"] == 0.0
    assert means["test"]["count"] == 4


def test_checks_without_a_psi_judge_the_means_and_carry_the_se() -> None:
    from models.stability import Levels
    from pipeline.config import MonitoringParams
    from pipeline.evaluation import checks

    metrics = {
        "test": {"auc": 0.80, "ece": 0.005},
        "baseline": {"auc": 0.75},
        "ceiling": {"auc": 0.82},
        "stability": {"score_psi_train_test": None, "score_psi_status": "not applicable"},
        "monotone_violations": [],
        "se": {
            "test": {"ece": 0.002},
            "auc_lift_over_baseline": 0.03,
            "auc_gap_to_ceiling": 0.01,
        },
    }
    out = checks(metrics, MonitoringParams(), Levels(warn=0.1, alert=0.25))
    assert "score_psi_train_test" not in out
    assert out["auc_lift_over_baseline"]["value"] == pytest.approx(0.05)
    assert out["auc_lift_over_baseline"]["se"] == 0.03
    assert out["ece"]["se"] == 0.002
    assert all(c["passed"] for c in out.values())


def test_the_calibration_null_uses_the_same_bins_as_the_ece() -> None:
    # One draw's ECE is the ECE of the PDs against that draw's outcomes: same bins, same rule.
    rng = np.random.default_rng(3)
    pd_ = rng.uniform(0.01, 0.3, 500)
    null = ev.ece_null(pd_, quantile=0.5, draws=1, seed=11)
    order = np.argsort(pd_, kind="stable")
    y = np.empty(500)
    y[order] = np.random.default_rng(11).random((1, 500))[0] < pd_[order]
    assert null["ece_median"] == pytest.approx(ev.expected_calibration_error(y, pd_))
    again = ev.ece_null(pd_, quantile=0.95, draws=50, seed=11)
    assert again == ev.ece_null(pd_, quantile=0.95, draws=50, seed=11)  # seeded
    assert again["loans"] == 500
    with pytest.raises(ValueError, match="expected a quantile"):
        ev.ece_null(pd_, quantile=1.0, draws=10, seed=0)


def _ece_check(n: int, scale: float, seed: int = 5) -> dict:
    """The ECE check of PDs ``scale`` x the true PDs of an ``n``-loan book."""
    from pipeline.config import MonitoringParams
    from pipeline.evaluation import calibration_null, ece_check

    rng = np.random.default_rng(seed)
    true_pd = np.clip(np.exp(rng.normal(np.log(0.05), 0.8, n)), 0.001, 0.9)
    y = (rng.random(n) < true_pd).astype(float)
    pd_ = np.clip(true_pd * scale, 0.0, 1.0)
    monitoring = MonitoringParams()
    metrics = {
        "test": {"ece": ev.expected_calibration_error(y, pd_), "count": n},
        "calibration_null": calibration_null(pd_, monitoring),
    }
    check = ece_check(metrics, monitoring)
    check["passed"] = check["value"] < check["limit"]
    return check


def test_a_calibrated_model_on_a_small_book_passes_the_size_aware_ece_check() -> None:
    small = _ece_check(2000, 1.0)
    # the true PD's own ECE is over the fixed 0.01 on 2,000 loans (sampling alone) ...
    assert small["value"] > small["fixed_limit"] == 0.01
    # ... but within what a calibrated model shows at this size: judged by the null
    assert small["null_quantile"] > small["value"]
    assert small["limit"] == small["null_quantile"]
    assert "null's q95" in small["limit_from"]
    assert small["passed"]


def test_a_miscalibrated_model_fails_the_ece_check_at_any_size() -> None:
    for n in (2000, 50_000):
        doubled = _ece_check(n, 2.0)
        assert not doubled["passed"], (n, doubled)
        assert doubled["value"] > max(doubled["fixed_limit"], doubled["null_quantile"])


def test_on_a_large_book_the_ece_check_is_the_fixed_limit_as_before() -> None:
    large = _ece_check(50_000, 1.0)
    assert large["null_quantile"] < large["fixed_limit"]
    assert large["limit"] == large["fixed_limit"]
    assert large["limit_from"] == "max_ece"
    assert large["passed"] == (large["value"] < 0.01)
    slightly_off = _ece_check(50_000, 1.3)
    assert slightly_off["limit"] == 0.01
    assert slightly_off["passed"] == (slightly_off["value"] < 0.01)
