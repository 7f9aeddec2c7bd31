"""Discrimination, calibration and stability metrics for a PD model."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score


def auc(y: np.ndarray, pd_: np.ndarray) -> float:
    """Area under the ROC curve (nan when only one class is present)."""
    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, pd_))


def ks(y: np.ndarray, pd_: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the bads' and goods' cumulative PD curves."""
    y = np.asarray(y).astype(bool)
    pd_ = np.asarray(pd_, dtype=float)
    if y.all() or not y.any():
        return float("nan")
    grid = np.unique(pd_)
    bad_cdf = np.searchsorted(np.sort(pd_[y]), grid, side="right") / y.sum()
    good_cdf = np.searchsorted(np.sort(pd_[~y]), grid, side="right") / (~y).sum()
    return float(np.max(np.abs(good_cdf - bad_cdf)))


def brier(y: np.ndarray, pd_: np.ndarray) -> float:
    """Mean squared error of the PD against the 0/1 outcome."""
    return float(np.mean((np.asarray(pd_, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def expected_calibration_error(y: np.ndarray, pd_: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |predicted - observed| default rate over equal-count PD bins."""
    pd_ = np.asarray(pd_, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.argsort(pd_, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            total += chunk.size * abs(pd_[chunk].mean() - y[chunk].mean())
    return float(total / len(pd_))


def gains_table(y: np.ndarray, pd_: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Deciles from riskiest to safest: counts, bad rate, cumulative share of bads captured."""
    frame = pl.DataFrame({"pd": np.asarray(pd_, dtype=float), "bad": np.asarray(y, dtype=float)})
    frame = frame.sort("pd", descending=True, maintain_order=True).with_columns(
        (pl.int_range(pl.len()) * bins // pl.len() + 1).alias("decile")
    )
    total_bad = max(frame["bad"].sum(), 1.0)
    return (
        frame.group_by("decile")
        .agg(
            pl.len().alias("count"),
            pl.col("bad").sum().alias("bads"),
            pl.col("pd").mean().alias("mean_pd"),
            pl.col("bad").mean().alias("bad_rate"),
        )
        .sort("decile")
        .with_columns((pl.col("bads").cum_sum() / total_bad).alias("cum_bad_share"))
    )


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` on expected's quantile bins.

    By convention under 0.10 is stable, 0.10-0.25 a shift worth watching, over 0.25 a shift.
    """
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    expected = expected[~np.isnan(expected)]
    actual = actual[~np.isnan(actual)]
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1))[1:-1])
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=edges.size + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=edges.size + 1)
    e_share = np.clip(e / e.sum(), 1e-6, None)
    a_share = np.clip(a / a.sum(), 1e-6, None)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def summary(y: np.ndarray, pd_: np.ndarray) -> dict[str, float]:
    """The headline metrics of one PD vector against outcomes."""
    a = auc(y, pd_)
    return {
        "auc": a,
        "gini": 2 * a - 1,
        "ks": ks(y, pd_),
        "brier": brier(y, pd_),
        "ece": expected_calibration_error(y, pd_),
        "mean_pd": float(np.mean(pd_)),
        "bad_rate": float(np.mean(y)),
        "count": len(y),
    }
