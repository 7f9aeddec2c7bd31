"""Reason codes and per-dimension sub-scores from per-feature contributions.

Contributions are in the model's raw log-odds of default: a positive contribution pushed the PD
up (adverse). The reasons are the most adverse features, named by their catalog code and text;
a dimension's sub-score is the points its features added to or took from the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.catalog import DIMENSIONS, FeatureSpec

N_REASONS = 4


def top_reasons(
    contributions: np.ndarray, specs: Sequence[FeatureSpec], n: int = N_REASONS
) -> np.ndarray:
    """``(rows, n)`` array of "CODE: text" for the n most adverse features (None if fewer)."""
    labels = np.array([f"{s.code}: {s.reason}" for s in specs] + [None], dtype=object)
    contrib = np.asarray(contributions, dtype=float)[:, : len(specs)]
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :n]
    adverse = np.take_along_axis(contrib, order, axis=1) > 0
    return labels[np.where(adverse, order, len(specs))]


def dimension_points(
    contributions: np.ndarray, specs: Sequence[FeatureSpec], factor: float
) -> dict[str, np.ndarray]:
    """Score points each dimension contributed, relative to the average applicant."""
    contrib = np.asarray(contributions, dtype=float)[:, : len(specs)]
    dims = np.array([s.dimension for s in specs])
    return {d: -factor * contrib[:, dims == d].sum(axis=1) for d in DIMENSIONS}
