"""Performance before labels: what a cohort's calibrated PDs promise, and what it delivered.

A calibrated PD is a default rate, so the PDs of a scored cohort say, before any label exists,
what its bad rate and its AUC should come out as once the loans mature (confidence-based
performance estimation):

- **expected bad rate**: the mean PD; its standard error under labels drawn ``Bernoulli(pd)``
  is ``sqrt(sum pd (1 - pd)) / n``;
- **expected AUC**: the AUC the PDs would score if the labels were ``Bernoulli(pd)``. The point
  estimate is exact (the ratio of the expected concordant pair count to the expected pair
  count, ties counted half), its standard error comes from :data:`SIMULATIONS` seeded label
  draws (the ranks are fixed, so each draw costs one dot product).

When the labels mature, :func:`realised` measures the same two figures and :func:`judge` says
whether the two part by more than the tolerances in params (``monitor``). :func:`vintage_curves`
(share of loans ever ``d``+ days past due by month on book, per issue month) and
:func:`roll_rates` (moves between days-past-due buckets from one month on book to the next)
read the repayment log through :mod:`features.contract.repayments`, the one definition of paid
and days past due. Pure: arrays and frames in, numbers and frames out.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence

import numpy as np
import polars as pl

from features.contract.repayments import onset_day, settled_before

SIMULATIONS = 200  # label draws behind the expected AUC's standard error
SEED = 20240601  # fixed, so the same PDs always give the same figures
_CHUNK = 25  # label draws per matrix product (bounds memory at ~25 x n floats)


def _clean(pd_: np.ndarray) -> np.ndarray:
    values = np.asarray(pd_, dtype=float)
    if values.ndim != 1 or (values.size and not np.all((values >= 0) & (values <= 1))):
        raise ValueError(
            f"expected a 1-d array of probabilities in [0, 1]; got shape {values.shape}"
        )
    return values


def midranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1 with ties given their average rank (what the AUC's rank formula needs)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    average = (first + last) / 2.0 + 1.0
    ranks = np.empty(values.size)
    ranks[order] = average[group]
    return ranks


def auc(pd_: np.ndarray, bad: np.ndarray) -> float:
    """AUC of ``pd_`` ranking ``bad`` (1) above good (0), ties half; NaN with one class."""
    pd_ = _clean(pd_)
    bad = np.asarray(bad).astype(bool)
    if bad.shape != pd_.shape:
        raise ValueError(f"expected one label per PD ({pd_.size}); got {bad.size}")
    n1 = int(bad.sum())
    n0 = bad.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = midranks(pd_)
    return float((ranks[bad].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _expected_auc(pd_: np.ndarray) -> float:
    """E[concordant pairs] / E[pairs] when labels are Bernoulli(pd), ties counted half."""
    values, group = np.unique(pd_, return_inverse=True)
    bad_mass = np.bincount(group, weights=pd_, minlength=values.size)
    good_mass = np.bincount(group, weights=1 - pd_, minlength=values.size)
    below = np.cumsum(good_mass) - good_mass  # good mass strictly below each PD value
    self_pairs = float(np.sum(pd_ * (1 - pd_)))  # an entity cannot pair with itself
    concordant = float(np.sum(bad_mass * (below + 0.5 * good_mass))) - 0.5 * self_pairs
    pairs = float(pd_.sum() * (1 - pd_).sum()) - self_pairs
    return concordant / pairs if pairs > 0 else float("nan")


def _simulated_aucs(pd_: np.ndarray, simulations: int, seed: int) -> np.ndarray:
    ranks = midranks(pd_)
    rng = np.random.default_rng(seed)
    found = []
    for start in range(0, simulations, _CHUNK):
        draws = rng.random((min(_CHUNK, simulations - start), pd_.size)) < pd_
        n1 = draws.sum(axis=1).astype(float)
        n0 = pd_.size - n1
        with np.errstate(divide="ignore", invalid="ignore"):
            found.append((draws.astype(float) @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0))
    values = np.concatenate(found) if found else np.array([])
    return values[np.isfinite(values)]


def expected(pd_: np.ndarray, *, simulations: int = SIMULATIONS, seed: int = SEED) -> dict:
    """What a cohort's calibrated PDs promise: bad rate and AUC, each with its standard error."""
    pd_ = _clean(pd_)
    n = int(pd_.size)
    if n == 0:
        return {"n": 0, "bad_rate": None, "bad_rate_se": None, "auc": None, "auc_se": None}
    aucs = _simulated_aucs(pd_, simulations, seed)
    point = _expected_auc(pd_)
    return {
        "n": n,
        "bad_rate": float(pd_.mean()),
        "bad_rate_se": float(np.sqrt(np.sum(pd_ * (1 - pd_))) / n),
        "auc": point if np.isfinite(point) else None,
        "auc_se": float(aucs.std(ddof=1)) if aucs.size > 1 else None,
        "simulations": simulations,
        "seed": seed,
    }


def realised(pd_: np.ndarray, bad: np.ndarray) -> dict:
    """What the matured labels say: count, bads, bad rate and the AUC of the same PDs."""
    pd_ = _clean(pd_)
    bad = np.asarray(bad, dtype=float)
    if bad.shape != pd_.shape or not np.all(np.isin(bad, (0.0, 1.0))):
        raise ValueError(f"expected one 0/1 label per PD ({pd_.size}); got shape {bad.shape}")
    n = int(bad.size)
    value = auc(pd_, bad) if n else float("nan")
    return {
        "n": n,
        "bads": int(bad.sum()),
        "bad_rate": float(bad.mean()) if n else None,
        "auc": value if np.isfinite(value) else None,
    }


def _gap(real: float | None, exp: float | None, se: float | None) -> tuple[float | None, ...]:
    if real is None or exp is None:
        return None, None
    gap = real - exp
    return gap, (gap / se if se else None)


def judge(
    expected_: dict,
    realised_: dict,
    *,
    bad_rate_gap: float,
    auc_gap: float,
    z_alert: float,
    min_loans: int,
) -> dict:
    """Whether realised and expected part: the gaps, their z-scores, and ``status``.

    A figure is out when its gap exceeds its tolerance *and* ``z_alert`` standard errors: the
    tolerance keeps a large book from alerting on a trivial but significant gap, the z-score
    keeps a small cohort from alerting on noise. A cohort with fewer than ``min_loans`` matured
    loans is ``too_few`` (not judged); otherwise ``alert`` when a figure is out, else ``ok``.
    """
    rate_gap, rate_z = _gap(realised_["bad_rate"], expected_["bad_rate"], expected_["bad_rate_se"])
    auc_diff, auc_z = _gap(realised_["auc"], expected_["auc"], expected_.get("auc_se"))
    out = []
    if rate_gap is not None and abs(rate_gap) > bad_rate_gap and abs(rate_z or 0) > z_alert:
        out.append("bad_rate")
    if auc_diff is not None and abs(auc_diff) > auc_gap and abs(auc_z or 0) > z_alert:
        out.append("auc")
    status = "too_few" if realised_["n"] < min_loans else ("alert" if out else "ok")
    return {
        "bad_rate_gap": rate_gap,
        "bad_rate_z": rate_z,
        "auc_gap": auc_diff,
        "auc_z": auc_z,
        "out": out if status != "too_few" else [],
        "status": status,
    }


# --- vintages and roll rates --------------------------------------------------------------


def _schedule(loans: pl.DataFrame, repayments: pl.DataFrame) -> pl.DataFrame:
    """The loans that have instalments (no schedule: no evidence of how a loan went)."""
    scheduled = repayments.select("loan_id").unique()
    return loans.select("loan_id", "issued_on").join(scheduled, on="loan_id", how="semi")


def _month_grid(
    loans: pl.DataFrame, months: Sequence[int], observed_until: dt.date
) -> pl.DataFrame:
    """(loan, month on book, the day that month ends) for every month the log has seen whole."""
    grid = pl.DataFrame({"months_on_book": list(months)}, schema={"months_on_book": pl.Int32})
    return (
        loans.join(grid, how="cross")
        .with_columns(
            pl.col("issued_on")
            .dt.offset_by(pl.format("{}mo", pl.col("months_on_book")))
            .alias("horizon")
        )
        .filter(pl.col("horizon") <= observed_until)
    )


def vintage_curves(
    loans: pl.DataFrame,
    repayments: pl.DataFrame,
    *,
    observed_until: dt.date,
    dpd_levels: Sequence[int],
    max_months: int,
    tolerance: float,
) -> pl.DataFrame:
    """Share of each issue month's loans ever ``d``+ days past due by each month on book.

    A loan counts at month on book ``m`` when the log covers its first ``m`` months (it has
    been ``d``+ days past due by then when an instalment reached ``d`` on a day before issue
    plus ``m`` months: :func:`features.contract.repayments.onset_day`). Columns: ``cohort``
    (YYYY-MM), ``months_on_book``, ``loans`` and ``ever_<d>`` per level.
    """
    if max_months <= 0 or not dpd_levels:
        raise ValueError(f"expected max_months > 0 and dpd levels; got {max_months}, {dpd_levels}")
    onsets = repayments.group_by("loan_id").agg(
        onset_day(d, tolerance).alias(f"_onset_{d}") for d in dpd_levels
    )
    grid = _month_grid(_schedule(loans, repayments), range(1, max_months + 1), observed_until)
    return (
        grid.join(onsets, on="loan_id", how="left")
        .with_columns(pl.col("issued_on").dt.strftime("%Y-%m").alias("cohort"))
        .group_by("cohort", "months_on_book")
        .agg(
            pl.len().cast(pl.Int64).alias("loans"),
            *[
                (pl.col(f"_onset_{d}") < pl.col("horizon"))
                .fill_null(False)
                .mean()
                .alias(f"ever_{d}")
                for d in dpd_levels
            ],
        )
        .sort("cohort", "months_on_book")
    )


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """Names of the days-past-due buckets cut at ``edges``: current, 1-29, ..., 90+."""
    names = ["current" if edges[0] == 1 else f"0-{edges[0] - 1}"]
    names += [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    return [*names, f"{edges[-1]}+"]


def dpd_by_month(
    loans: pl.DataFrame,
    repayments: pl.DataFrame,
    *,
    observed_until: dt.date,
    max_months: int,
    tolerance: float,
) -> pl.DataFrame:
    """Each loan's days past due at the end of each month on book 0..``max_months``.

    The days past due of a loan on a day are those of its oldest instalment due before that day
    and not settled before it (paid short counts as unpaid: the contract's rules), 0 when none.
    """
    grid = _month_grid(_schedule(loans, repayments), range(max_months + 1), observed_until)
    owed = (
        grid.join(repayments, on="loan_id")
        .filter(
            (pl.col("due_on") < pl.col("horizon")) & ~settled_before(pl.col("horizon"), tolerance)
        )
        .group_by("loan_id", "months_on_book")
        .agg((pl.col("horizon") - pl.col("due_on")).dt.total_days().max().alias("dpd"))
    )
    return (
        grid.select("loan_id", "months_on_book")
        .join(owed, on=["loan_id", "months_on_book"], how="left")
        .with_columns(pl.col("dpd").fill_null(0))
        .sort("loan_id", "months_on_book")
    )


def roll_rates(dpd: pl.DataFrame, edges: Sequence[int]) -> pl.DataFrame:
    """Moves between days-past-due buckets from one month on book to the next, all loans pooled.

    ``dpd`` is :func:`dpd_by_month`'s frame. Columns: ``from_bucket``, ``to_bucket``, ``loans``
    (moves counted) and ``rate`` (the share of the from-bucket's moves that went there).
    """
    if list(edges) != sorted(set(edges)) or edges[0] < 1:
        raise ValueError(f"expected increasing bucket edges from 1 up; got {list(edges)}")
    labels = bucket_labels(edges)
    index = pl.sum_horizontal(*[(pl.col("dpd") >= e).cast(pl.Int32) for e in edges])
    bucketed = dpd.with_columns(
        index.replace_strict(list(range(len(labels))), labels).alias("bucket")
    ).with_columns(
        pl.col("bucket").shift(-1).over("loan_id", order_by="months_on_book").alias("to_bucket"),
        pl.col("months_on_book")
        .shift(-1)
        .over("loan_id", order_by="months_on_book")
        .alias("_next_month"),
    )
    moves = bucketed.filter(pl.col("_next_month") == pl.col("months_on_book") + 1)
    order = {name: i for i, name in enumerate(labels)}
    return (
        moves.group_by(pl.col("bucket").alias("from_bucket"), "to_bucket")
        .agg(pl.len().cast(pl.Int64).alias("loans"))
        .with_columns((pl.col("loans") / pl.col("loans").sum().over("from_bucket")).alias("rate"))
        .with_columns(
            pl.col("from_bucket").replace_strict(order, return_dtype=pl.Int32).alias("_f"),
            pl.col("to_bucket").replace_strict(order, return_dtype=pl.Int32).alias("_t"),
        )
        .sort("_f", "_t")
        .drop("_f", "_t")
    )
