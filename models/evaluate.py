"""Discrimination and calibration metrics for a PD model (stability: :mod:`models.stability`).

Pure functions over numpy arrays and polars frames; the report and ``metrics.json`` are built
from them. Conventions: ``y`` is 1 for a bad loan and 0 for a good one, ``pd_`` the predicted
probability of bad; a higher PD means riskier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score, roc_curve


def _arrays(y: np.ndarray, pd_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    pd_ = np.asarray(pd_, dtype=float)
    if y.shape != pd_.shape or y.ndim != 1:
        raise ValueError(
            f"expected outcomes and PDs as 1-d arrays of one length; got {y.shape} and {pd_.shape}"
        )
    return y, pd_


def auc(y: np.ndarray, pd_: np.ndarray) -> float:
    """Area under the ROC curve (nan when only one class is present)."""
    y, pd_ = _arrays(y, pd_)
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, pd_))


def roc(y: np.ndarray, pd_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve (bads are the positives)."""
    y, pd_ = _arrays(y, pd_)
    fpr, tpr, _ = roc_curve(y, pd_)
    return fpr, tpr


def ks_curve(y: np.ndarray, pd_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative shares of bads and goods at or below each distinct PD: (grid, bad, good)."""
    y, pd_ = _arrays(y, pd_)
    bad = y.astype(bool)
    grid = np.unique(pd_)
    bad_cdf = np.searchsorted(np.sort(pd_[bad]), grid, side="right") / max(bad.sum(), 1)
    good_cdf = np.searchsorted(np.sort(pd_[~bad]), grid, side="right") / max((~bad).sum(), 1)
    return grid, bad_cdf, good_cdf


def ks(y: np.ndarray, pd_: np.ndarray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the bads' and goods' cumulative PD curves."""
    y, pd_ = _arrays(y, pd_)
    if y.size == 0 or y.all() or not y.any():
        return float("nan")
    _, bad_cdf, good_cdf = ks_curve(y, pd_)
    return float(np.max(np.abs(good_cdf - bad_cdf)))


def brier(y: np.ndarray, pd_: np.ndarray) -> float:
    """Mean squared error of the PD against the 0/1 outcome."""
    y, pd_ = _arrays(y, pd_)
    return float(np.mean((pd_ - y) ** 2))


def _equal_count_bins(pd_: np.ndarray, bins: int) -> list[np.ndarray]:
    order = np.argsort(pd_, kind="stable")
    return [chunk for chunk in np.array_split(order, bins) if chunk.size]


def expected_calibration_error(y: np.ndarray, pd_: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |predicted - observed| default rate over equal-count PD bins.

    Equal-count bins (not equal-width) because PDs crowd near zero: equal-width bins would put
    nearly every loan into the first bin and hide miscalibration inside it.
    """
    y, pd_ = _arrays(y, pd_)
    if y.size == 0:
        return float("nan")
    total = sum(
        chunk.size * abs(pd_[chunk].mean() - y[chunk].mean())
        for chunk in _equal_count_bins(pd_, bins)
    )
    return float(total / y.size)


def ece_null(
    pd_: np.ndarray, *, quantile: float, draws: int, seed: int, bins: int = 10
) -> dict[str, float]:
    """The ECE a perfectly calibrated model shows on a book of this size: its null distribution.

    Outcomes are drawn ``draws`` times as Bernoulli(``pd_``) from the model's own PDs (seeded,
    so the figure is reproducible) and the ECE of ``pd_`` is measured on each draw, with the
    same equal-count bins as :func:`expected_calibration_error`. On a small book even the true
    PD's ECE is far from zero by sampling alone; an observed ECE under the null's ``quantile``
    is within what chance gives a calibrated model. Returns ``{"quantile", "ece_quantile",
    "ece_median", "draws", "loans"}``.
    """
    pd_ = np.asarray(pd_, dtype=np.float64)
    if pd_.ndim != 1:
        raise ValueError(f"expected PDs as a 1-d array; got shape {pd_.shape}")
    if not 0 < quantile < 1 or draws < 1:
        raise ValueError(
            f"expected a quantile in (0, 1) and at least one draw; got {quantile}, {draws}"
        )
    if pd_.size == 0:
        nan = float("nan")
        return {
            "quantile": quantile,
            "ece_quantile": nan,
            "ece_median": nan,
            "draws": draws,
            "loans": 0,
        }
    order = np.argsort(pd_, kind="stable")
    sorted_pd = pd_[order]
    starts = np.array([c[0] for c in np.array_split(np.arange(pd_.size), bins) if c.size])
    sizes = np.diff(np.append(starts, pd_.size))
    predicted = np.add.reduceat(sorted_pd, starts) / sizes
    rng = np.random.default_rng(seed)
    eces = np.empty(draws)
    # In chunks of draws so memory stays ~ 8 MB per 1M (draw, loan) cells.
    step = max(1, 1_000_000 // pd_.size)
    for lo in range(0, draws, step):
        hi = min(draws, lo + step)
        y = (rng.random((hi - lo, pd_.size)) < sorted_pd).astype(np.float64)
        observed = np.add.reduceat(y, starts, axis=1) / sizes
        eces[lo:hi] = np.abs(predicted - observed) @ sizes / pd_.size
    return {
        "quantile": quantile,
        "ece_quantile": float(np.quantile(eces, quantile)),
        "ece_median": float(np.median(eces)),
        "draws": draws,
        "loans": int(pd_.size),
    }


def calibration_bins(y: np.ndarray, pd_: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Equal-count PD bins with predicted and observed default rates and a 95% interval.

    The interval is the Wilson score interval of the observed rate, so a reader can see whether
    a gap between predicted and observed is larger than chance.
    """
    y, pd_ = _arrays(y, pd_)
    rows = []
    for i, chunk in enumerate(_equal_count_bins(pd_, bins), start=1):
        n = chunk.size
        p = float(y[chunk].mean())
        z = 1.96
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        rows.append(
            {
                "bin": i,
                "count": n,
                "predicted": float(pd_[chunk].mean()),
                "observed": p,
                # Clamped so the interval always contains p despite rounding at p = 0 or 1.
                "observed_low": float(min(max(centre - half, 0.0), p)),
                "observed_high": float(max(min(centre + half, 1.0), p)),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "bin": pl.Int64,
            "count": pl.Int64,
            "predicted": pl.Float64,
            "observed": pl.Float64,
            "observed_low": pl.Float64,
            "observed_high": pl.Float64,
        },
    )


def gains_table(y: np.ndarray, pd_: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Deciles from riskiest to safest with bad rate, cumulative capture, lift and KS.

    ``cum_bad_share`` is the share of all bads found by declining the riskiest deciles up to
    this one; ``lift`` is the decile's bad rate over the overall bad rate.
    """
    y, pd_ = _arrays(y, pd_)
    frame = pl.DataFrame({"pd": pd_, "bad": y})
    frame = frame.sort("pd", descending=True, maintain_order=True).with_columns(
        (pl.int_range(pl.len()) * bins // pl.len() + 1).alias("decile")
    )
    total_bad = max(float(y.sum()), 1.0)
    total_good = max(float(y.size - y.sum()), 1.0)
    overall = max(float(y.mean()) if y.size else 0.0, 1e-12)
    return (
        frame.group_by("decile")
        .agg(
            pl.len().alias("count"),
            pl.col("bad").sum().cast(pl.Int64).alias("bads"),
            pl.col("pd").min().alias("min_pd"),
            pl.col("pd").mean().alias("mean_pd"),
            pl.col("bad").mean().alias("bad_rate"),
        )
        .sort("decile")
        .with_columns(
            (pl.col("bads").cum_sum() / total_bad).alias("cum_bad_share"),
            ((pl.col("count") - pl.col("bads")).cum_sum() / total_good).alias("cum_good_share"),
            (pl.col("bad_rate") / overall).alias("lift"),
        )
        .with_columns((pl.col("cum_bad_share") - pl.col("cum_good_share")).alias("ks"))
    )


def summary(y: np.ndarray, pd_: np.ndarray) -> dict[str, float]:
    """The headline metrics of one PD vector against outcomes."""
    y, pd_ = _arrays(y, pd_)
    a = auc(y, pd_)
    return {
        "auc": a,
        "gini": 2 * a - 1,
        "ks": ks(y, pd_),
        "brier": brier(y, pd_),
        "ece": expected_calibration_error(y, pd_),
        "mean_pd": float(np.mean(pd_)) if pd_.size else float("nan"),
        "bad_rate": float(np.mean(y)) if y.size else float("nan"),
        "count": int(y.size),
    }


def resampled_se(values: np.ndarray, folds: int) -> float:
    """The standard error of a metric's mean over the R x K folds of repeated k-fold CV.

    Fold metrics share training loans, so ``sd / sqrt(R K)`` would claim far too much
    precision. This is Nadeau and Bengio's corrected resampled variance (Machine Learning 52,
    2003): ``sd^2 x (1 / (R K) + n_test / n_train)`` with ``n_test / n_train = 1 / (K - 1)``.
    nan for fewer than two finite values (a fold without both classes has no AUC).
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan")
    sd = float(np.std(values, ddof=1))
    return sd * float(np.sqrt(1.0 / values.size + 1.0 / (folds - 1)))


def fold_summaries(
    frame: pl.DataFrame, pd_columns: Mapping[str, str], *, target: str = "bad"
) -> pl.DataFrame:
    """:func:`summary` of each PD column on each (repeat, fold): one row per fold and column.

    ``frame`` holds one row per loan and repeat with ``repeat``, ``fold``, the target and the
    out-of-fold PD columns; ``pd_columns`` maps a label (``test``, ``baseline``) to a column.
    """
    rows = []
    for (repeat, fold), part in frame.sort("repeat", "fold").group_by(
        "repeat", "fold", maintain_order=True
    ):
        y = part[target].cast(pl.Float64).to_numpy()
        for label, column in pd_columns.items():
            rows.append(
                {"repeat": repeat, "fold": fold, "who": label}
                | summary(y, part[column].cast(pl.Float64).to_numpy())
            )
    return pl.DataFrame(rows)


def cv_means(per_fold: pl.DataFrame, folds: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """Mean and standard error (:func:`resampled_se`) of every metric of every label.

    ``per_fold`` is :func:`fold_summaries`' table; returns ``(means, ses)``, each
    ``{label: {metric: value}}``; a fold without an AUC is left out of that metric's mean.
    """
    metrics = [c for c in per_fold.columns if c not in ("repeat", "fold", "who")]
    means: dict[str, dict] = {}
    ses: dict[str, dict] = {}
    for (label,), part in per_fold.group_by("who", maintain_order=True):
        means[label], ses[label] = {}, {}
        for metric in metrics:
            values = part[metric].cast(pl.Float64).to_numpy()
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else float("nan")
            means[label][metric] = round(mean) if metric == "count" else mean
            ses[label][metric] = resampled_se(values, folds)
    return means, ses


def by_group(
    frame: pl.DataFrame, group: str, pd_columns: Mapping[str, str], *, target: str = "bad"
) -> pl.DataFrame:
    """Loans, bads, bad rate and each PD column's mean and AUC per value of ``group``.

    ``group`` is e.g. the issue month; ``pd_columns`` maps a short label (``model``) to a
    column name.
    """
    missing = [c for c in (group, target, *pd_columns.values()) if c not in frame.columns]
    if missing:
        raise ValueError(f"expected columns {missing} in the frame; got {frame.columns}")
    rows = []
    for key, part in frame.sort(group).group_by(group, maintain_order=True):
        y = part[target].cast(pl.Float64).to_numpy()
        row: dict = {
            group: key[0],
            "loans": part.height,
            "bads": int(y.sum()),
            "bad_rate": float(y.mean()),
        }
        for label, column in pd_columns.items():
            p = part[column].cast(pl.Float64).to_numpy()
            row[f"{label}_mean_pd"] = float(p.mean())
            row[f"{label}_auc"] = auc(y, p)
        rows.append(row)
    return pl.DataFrame(rows)


def by_band(frame: pl.DataFrame, band_order: Sequence[str], *, target: str = "bad") -> pl.DataFrame:
    """Predicted vs observed default rate per score band, in ``band_order`` (riskiest first).

    ``frame`` holds ``band``, ``pd``, ``score`` and the target. Bands with no loans are kept
    with zero counts so the table always shows the whole scale.
    """
    stats = (
        frame.with_columns(pl.col(target).cast(pl.Float64))
        .group_by("band")
        .agg(
            pl.len().alias("loans"),
            pl.col(target).sum().cast(pl.Int64).alias("bads"),
            pl.col("pd").mean().alias("predicted"),
            pl.col(target).mean().alias("observed"),
            pl.col("score").min().alias("min_score"),
            pl.col("score").max().alias("max_score"),
        )
    )
    order = pl.DataFrame({"band": list(band_order), "_rank": list(range(len(band_order)))})
    total = max(frame.height, 1)
    return (
        order.join(stats, on="band", how="left")
        .sort("_rank")
        .drop("_rank")
        .with_columns(
            pl.col("loans").fill_null(0),
            pl.col("bads").fill_null(0),
        )
        .with_columns((pl.col("loans") / total).alias("share"))
    )
