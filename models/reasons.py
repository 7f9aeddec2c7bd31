"""Reason codes and per-dimension sub-scores from per-feature contributions.

Contributions are in the model's raw log-odds of default, one column per catalog feature (a
trailing bias column, as ``pred_contrib`` gives it, is ignored): a positive contribution pushed
the PD up and the score down (adverse). The reasons are the most adverse features, named by
their catalog code and text; a dimension's sub-score is the points its features added to or
took from the score, against the average applicant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from features.catalog import DIMENSIONS, FeatureSpec

N_REASONS = 4


def _feature_columns(contributions: np.ndarray, specs: Sequence[FeatureSpec]) -> np.ndarray:
    contrib = np.asarray(contributions, dtype=float)
    if contrib.ndim != 2 or contrib.shape[1] not in (len(specs), len(specs) + 1):
        raise ValueError(
            f"expected contributions of shape (rows, {len(specs)}) or (rows, {len(specs) + 1}); "
            f"got {contrib.shape}"
        )
    return contrib[:, : len(specs)]


def reason_text(spec: FeatureSpec) -> str:
    """The stable, printed form of a reason: ``CODE: plain text``."""
    return f"{spec.code}: {spec.reason}"


def top_reasons(
    contributions: np.ndarray,
    specs: Sequence[FeatureSpec],
    n: int = N_REASONS,
    *,
    min_contribution: float = 0.0,
) -> np.ndarray:
    """``(rows, n)`` array of "CODE: text" for the n most adverse features (None if fewer).

    A feature is a reason only when its contribution exceeds ``min_contribution`` (log-odds,
    >= 0), so a favourable or negligible feature is never named. Ties keep catalog order.
    """
    if n < 1:
        raise ValueError(f"expected at least one reason; got n={n}")
    if min_contribution < 0:
        raise ValueError(f"expected min_contribution >= 0; got {min_contribution}")
    contrib = _feature_columns(contributions, specs)
    labels = np.array([reason_text(s) for s in specs] + [None], dtype=object)
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :n]
    adverse = np.take_along_axis(contrib, order, axis=1) > min_contribution
    codes = labels[np.where(adverse, order, len(specs))]
    if codes.shape[1] < n:  # fewer features than reasons
        codes = np.hstack([codes, np.full((codes.shape[0], n - codes.shape[1]), None)])
    return codes


def dimension_points(
    contributions: np.ndarray, specs: Sequence[FeatureSpec], factor: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Score points each dimension contributed, against the average applicant.

    ``factor`` is points per unit of log-odds: the scaling's ``factor`` for the model's own
    scale, or a per-row array (see :func:`points_per_log_odds`) so that the sub-scores add up
    to the reported score minus the average applicant's. A dimension without features gets 0.
    """
    contrib = _feature_columns(contributions, specs)
    scale = np.broadcast_to(np.asarray(factor, dtype=float), (contrib.shape[0],))
    dims = np.array([s.dimension for s in specs])
    return {d: -scale * contrib[:, dims == d].sum(axis=1) for d in DIMENSIONS}


def points_per_log_odds(
    score: np.ndarray,
    baseline_score: float,
    raw: np.ndarray,
    expected_raw: float,
    factor: float,
) -> np.ndarray:
    """Per-row points per unit of log-odds that make sub-scores sum to the reported score.

    The reported score passes the raw log-odds through calibration, scaling, rounding and
    clipping; the ratio ``-(score - baseline) / (raw - expected_raw)`` carries each row's whole
    move from the average applicant back to its features. It is never negative because the
    score never rises with the raw PD. Where the row sits (almost) at the average, the
    scaling's own ``factor`` is used.
    """
    delta = np.asarray(raw, dtype=float) - expected_raw
    moved = np.asarray(score, dtype=float) - baseline_score
    near = np.abs(delta) < 1e-9
    ratio = -moved / np.where(near, 1.0, delta)
    return np.where(near, factor, np.maximum(ratio, 0.0))
