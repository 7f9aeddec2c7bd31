"""Calibration of raw model scores into PDs that mean default rates.

Fitted on the out-of-time validation slice, or in cross-validation on the out-of-fold raw scores
(:func:`fit_out_of_fold`, :func:`cross_fitted_pd`); stored as plain numbers (no pickles) so
the scorer can be saved as JSON and reproduced exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

PD_FLOOR = 1e-4
PD_CEIL = 1 - 1e-4


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw log-odds to PD: Platt (a, b) or isotonic knots (x, y)."""

    method: Literal["platt", "isotonic"]
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """PDs for raw log-odds scores, clipped away from 0 and 1."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "platt":
            pd_ = 1.0 / (1.0 + np.exp(-np.clip(self.a * raw + self.b, -50.0, 50.0)))
        else:
            pd_ = np.interp(raw, self.x, self.y)
        return np.clip(pd_, PD_FLOOR, PD_CEIL)

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "method": self.method,
            "a": self.a,
            "b": self.b,
            "x": list(self.x),
            "y": list(self.y),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(
            method=data["method"],
            a=float(data["a"]),
            b=float(data["b"]),
            x=tuple(data["x"]),
            y=tuple(data["y"]),
        )


def fit_calibrator(
    raw: np.ndarray, y: np.ndarray, method: Literal["platt", "isotonic"]
) -> Calibrator:
    """Fit a calibrator on held-out raw scores and outcomes.

    Isotonic knots are made strictly increasing in PD by a tiny ramp so the score never ties
    across distinct raw values, which keeps the score strictly monotone in the raw model.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    if method == "platt":
        model = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), y)
        return Calibrator("platt", a=float(model.coef_[0, 0]), b=float(model.intercept_[0]))
    if method == "isotonic":
        iso = IsotonicRegression(y_min=PD_FLOOR, y_max=PD_CEIL, out_of_bounds="clip").fit(raw, y)
        knots_x = np.asarray(iso.X_thresholds_, dtype=float)
        knots_y = np.asarray(iso.y_thresholds_, dtype=float)
        ramp = np.linspace(0.0, 1e-6, knots_y.size)
        return Calibrator(
            "isotonic", x=tuple(knots_x), y=tuple(np.maximum.accumulate(knots_y + ramp))
        )
    raise ValueError(f"expected calibration method 'platt' or 'isotonic'; got {method!r}")


def fit_out_of_fold(
    raw: np.ndarray, y: np.ndarray, method: Literal["platt", "isotonic"]
) -> Calibrator:
    """The registered model's calibrator in cross-validation: fitted on out-of-fold raw scores.

    ``raw`` has shape (repeats, rows): every repeat's out-of-fold scores are pooled (the
    outcomes repeated alongside), so no raw score the calibrator sees came from a model that
    trained on its loan.
    """
    raw = np.asarray(raw, dtype=float)
    if raw.ndim != 2 or raw.shape[1] != len(y):
        raise ValueError(f"expected raw scores of shape (repeats, {len(y)}); got {raw.shape}")
    return fit_calibrator(raw.ravel(), np.tile(np.asarray(y, dtype=float), raw.shape[0]), method)


def cross_fitted_pd(
    raw: np.ndarray, y: np.ndarray, folds: np.ndarray, method: Literal["platt", "isotonic"]
) -> np.ndarray:
    """Out-of-fold PDs whose calibration never saw the loan either: shape (repeats, rows).

    Fold k's raw scores are calibrated by a calibrator fitted on the other folds' out-of-fold
    scores of the same repeat, so a fold's Brier and ECE measure calibration out of sample
    (a calibrator fitted on every out-of-fold score would have seen the fold's outcomes).
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    if raw.shape != folds.shape or raw.ndim != 2 or raw.shape[1] != y.size:
        raise ValueError(
            f"expected raw scores and folds of shape (repeats, {y.size}); "
            f"got {raw.shape} and {folds.shape}"
        )
    out = np.full(raw.shape, np.nan)
    for r, assignment in enumerate(folds):
        for fold in np.unique(assignment):
            held = assignment == fold
            out[r, held] = fit_calibrator(raw[r, ~held], y[~held], method).predict(raw[r, held])
    return out
