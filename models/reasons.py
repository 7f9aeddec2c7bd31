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


def top_reason_indices(
    contributions: np.ndarray,
    n_features: int,
    n: int = N_REASONS,
    *,
    min_contribution: float = 0.0,
) -> np.ndarray:
    """``(rows, n)`` catalog indices of the n most adverse features, ``-1`` where none.

    The vectorised core of :func:`top_reasons`: ``n`` passes of a row-wise ``argmax`` that
    knocks out each winner, rather than sorting every row. ``argmax`` returns the first of
    equal values, so ties keep catalog order exactly as a stable sort would; a feature is named
    only when its contribution exceeds ``min_contribution``, and once one is not, neither is
    anything after it.
    """
    if n < 1:
        raise ValueError(f"expected at least one reason; got n={n}")
    if min_contribution < 0:
        raise ValueError(f"expected min_contribution >= 0; got {min_contribution}")
    contrib = np.asarray(contributions, dtype=float)
    if contrib.ndim != 2 or contrib.shape[1] not in (n_features, n_features + 1):
        raise ValueError(
            f"expected contributions of shape (rows, {n_features}) or (rows, {n_features + 1}); "
            f"got {contrib.shape}"
        )
    work = np.array(contrib[:, :n_features], dtype=float, order="C")
    rows = np.arange(work.shape[0])
    out = np.full((work.shape[0], n), -1, dtype=np.int32)
    named = np.ones(work.shape[0], dtype=bool)
    for i in range(min(n, n_features)):
        best = work.argmax(axis=1)
        named &= work[rows, best] > min_contribution
        out[:, i] = np.where(named, best, -1)
        work[rows, best] = -np.inf
    return out


def reason_labels(specs: Sequence[FeatureSpec]) -> list[str | None]:
    """Each feature's "CODE: text" by catalog index, then ``None`` (what index -1 picks)."""
    return [*(reason_text(s) for s in specs), None]


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
    _feature_columns(contributions, specs)
    codes = top_reason_indices(contributions, len(specs), n, min_contribution=min_contribution)
    return np.array(reason_labels(specs), dtype=object)[codes]


def dimension_matrix(specs: Sequence[FeatureSpec]) -> np.ndarray:
    """``(features, dimensions)`` 0/1 matrix: which dimension (in DIMENSIONS order) owns each."""
    return np.array([[s.dimension == d for d in DIMENSIONS] for s in specs], dtype=float)


def dimension_points(
    contributions: np.ndarray, specs: Sequence[FeatureSpec], factor: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Score points each dimension contributed, against the average applicant.

    ``factor`` is points per unit of raw log-odds: the scaling's ``factor`` for the model's
    own scale, or :func:`calibrated_factor` so that the sub-scores add up to about the reported
    score minus the average applicant's. A dimension without features gets 0.
    """
    contrib = _feature_columns(contributions, specs)
    scale = np.broadcast_to(np.asarray(factor, dtype=float), (contrib.shape[0],))
    sums = contrib @ dimension_matrix(specs)  # one product instead of a mask per dimension
    return {d: -scale * sums[:, j] for j, d in enumerate(DIMENSIONS)}


def calibrated_factor(factor: float, raw_knots: np.ndarray, pd_knots: np.ndarray) -> float:
    """Points per unit of raw log-odds once calibration is applied: one number per model.

    The score is ``offset + factor x calibrated log-odds``; calibration maps the model's raw
    log-odds through a monotone curve (Platt: a line; isotonic: steps). The least-squares slope
    of calibrated on raw log-odds over the curve's knots turns a raw contribution into points
    of the reported score, so the sub-scores add up to about the score's distance from the
    average applicant. One slope per model (not per row) keeps a sub-score stable and bounded:
    a per-row ratio would blow up a small raw move across a calibration step into hundreds of
    points. Falls back to ``factor`` when the curve gives no usable slope.
    """
    x = np.asarray(raw_knots, dtype=float)
    p = np.clip(np.asarray(pd_knots, dtype=float), 1e-6, 1 - 1e-6)
    if x.size < 2 or x.shape != p.shape or np.ptp(x) == 0:
        return factor
    slope = np.polyfit(x, np.log(p / (1 - p)), 1)[0]
    return factor * float(slope) if np.isfinite(slope) and slope > 1e-6 else factor
