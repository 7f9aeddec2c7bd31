"""The cut-off strategy table: what each choice of approval cut-off would approve, lose and lend.

For each candidate cut-off (approve when ``score >= cutoff``): how many entities are approved and
at what rate, how many of the approved went bad and at what rate, and the total limit granted.
The limits should be those each entity would get *if approved* (``loan_limits(...,
apply_cutoff=False)``), so a cut-off below the policy's own still shows what it would lend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from models.scorer import Scorer

DEFAULT_CUTOFFS: tuple[int, ...] = tuple(range(500, 751, 10))


def cutoff_table(
    scores: np.ndarray,
    bad: np.ndarray,
    limits: np.ndarray,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
) -> pl.DataFrame:
    """One row per cut-off, ascending: approvals, bad rate among approved, total limit.

    Columns: ``cutoff``, ``approved``, ``approval_rate``, ``bads_approved``,
    ``bad_rate_approved`` (null when nobody is approved), ``total_limit`` (the log's currency).
    ``bad`` is 0/1 per entity (the outcome of the loan scored); ``limits`` are in the log's
    currency, >= 0.
    """
    scores = np.asarray(scores, dtype=float)
    bad = np.asarray(bad, dtype=float)
    limits = np.asarray(limits, dtype=float)
    n = scores.shape[0]
    if scores.ndim != 1 or bad.shape != (n,) or limits.shape != (n,):
        raise ValueError(
            f"expected scores, bad and limits as 1-d arrays of one length; got shapes "
            f"{scores.shape}, {bad.shape}, {limits.shape}"
        )
    if not np.isin(bad, (0.0, 1.0)).all():
        raise ValueError(f"expected bad as 0/1; got {np.unique(bad)[:5].tolist()}")
    if not (np.isfinite(limits) & (limits >= 0)).all() or not np.isfinite(scores).all():
        raise ValueError("expected finite scores and finite limits >= 0; got missing or negative")
    cuts = np.unique(np.asarray(list(cutoffs), dtype=float))
    if cuts.size == 0:
        raise ValueError("expected at least one cut-off; got none")
    # Sort once by score descending; the approved set of a cut-off is a prefix of that order.
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    cum_bad = np.concatenate([[0.0], np.cumsum(bad[order])])
    cum_limit = np.concatenate([[0.0], np.cumsum(limits[order])])
    approved = np.searchsorted(-sorted_scores, -cuts, side="right")
    bads = cum_bad[approved]
    with np.errstate(invalid="ignore", divide="ignore"):
        bad_rate = np.where(approved > 0, bads / np.maximum(approved, 1), np.nan)
    return pl.DataFrame(
        {
            "cutoff": cuts.astype(np.int32),
            "approved": approved.astype(np.int64),
            "approval_rate": approved / n if n else np.full(cuts.size, np.nan),
            "bads_approved": bads.astype(np.int64),
            "bad_rate_approved": bad_rate,
            "total_limit": cum_limit[approved],
        }
    ).with_columns(pl.col("approval_rate", "bad_rate_approved").fill_nan(None))


def scorer_cutoff_table(
    scorer: Scorer,
    frame: pl.DataFrame,
    bad: np.ndarray,
    cutoffs: Sequence[int] = DEFAULT_CUTOFFS,
) -> pl.DataFrame:
    """The cut-off table of a Scorer on labelled rows (e.g. the out-of-time test slice).

    ``frame`` holds the model features and policy inputs; ``bad`` the 0/1 outcome per row.
    Limits are those each row would get if approved, knock-outs still applied.
    """
    decisions = scorer.score(frame, reasons=False, apply_cutoff=False)
    return cutoff_table(decisions["score"].to_numpy(), bad, decisions["limit"].to_numpy(), cutoffs)
