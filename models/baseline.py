"""The scorecard baseline: quantile bins, weight of evidence, characteristic selection, logistic.

This is the model a risk committee already trusts, so the gradient-boosted model has to beat it
on the same candidate features and the same out-of-time slices to earn its complexity. It is
built the way scorecards are built in practice, so that it could itself be signed:

* each feature is cut into training-quantile bins (missing values get a bin of their own) and
  each bin is replaced by its weight of evidence ``ln(share of goods / share of bads)``;
* where the catalog gives the feature a monotone direction, adjacent bins are merged until the
  WoE moves strictly in that direction (a riskier value never earns better WoE), the way a
  signed card is binned and the way LightGBM is constrained: the lift over the card then
  compares like with like, not a constrained model with an unconstrained card;
* characteristics are chosen by information value: those under ``min_iv`` (0.02, the usual
  "not predictive" line) are dropped, then, strongest first, any whose WoE correlates above
  ``max_corr`` with one already chosen (0.7 by default, the usual screening level);
* an L2 logistic regression is fitted on the chosen WoE columns, and a characteristic whose
  coefficient comes out with the wrong sign (a riskier bin earning more points, which happens
  to collinear characteristics) is dropped, weakest first, until every sign agrees with its
  WoE. A 100-column regression with a third of its signs reversed predicts a little better but
  is not a scorecard anyone would sign; the additive LightGBM of ``longtail evaluate`` is the
  upper bound for additive models on all the features.

Everything learned is plain numbers, saved as JSON (no pickles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

BASELINE_FILE = "baseline.json"


class BaselineParams(BaseModel):
    """Binning and regularisation of the scorecard baseline."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bins: int = Field(10, ge=2)
    min_bin_share: float = Field(0.02, ge=0, lt=0.5)
    smoothing: float = Field(0.5, ge=0)
    c: float = Field(1.0, gt=0)
    min_iv: float = Field(0.02, ge=0)
    max_corr: float = Field(0.7, gt=0, le=1)
    max_characteristics: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Scorecard:
    """A fitted WoE logistic scorecard as plain data.

    ``edges[j]`` are feature j's inner cut points (a value v falls in bin
    ``searchsorted(edges, v, 'right')``); ``woe[j]`` has one entry per bin plus a last entry for
    missing values. ``coef`` multiplies the WoE columns in the log-odds of bad; it is zero for a
    feature the card does not use. ``iv`` is each feature's information value on the training
    slice (empty in cards saved before it was kept).
    """

    features: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    woe: tuple[tuple[float, ...], ...]
    coef: tuple[float, ...]
    intercept: float
    iv: tuple[float, ...] = ()

    @property
    def characteristics(self) -> tuple[str, ...]:
        """The features the card scores on (non-zero coefficient), in input order."""
        return tuple(f for f, c in zip(self.features, self.coef, strict=True) if c != 0.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Replace each value by the WoE of its bin."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(
                f"expected a matrix with {len(self.features)} columns; got shape {x.shape}"
            )
        out = np.empty_like(x)
        for j, (edges, woe) in enumerate(zip(self.edges, self.woe, strict=True)):
            col = x[:, j]
            idx = np.searchsorted(np.asarray(edges), col, side="right")
            idx[np.isnan(col)] = len(woe) - 1
            out[:, j] = np.asarray(woe)[idx]
        return out

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        """The log-odds of bad."""
        return self.transform(x) @ np.asarray(self.coef) + self.intercept

    def predict_pd(self, x: np.ndarray) -> np.ndarray:
        """The (uncalibrated) probability of bad."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.log_odds(x), -50.0, 50.0)))

    def points_table(self, factor: float, offset: float) -> pl.DataFrame:
        """The card as a points table: one row per bin of every characteristic.

        With the score scaled as ``offset + factor * ln(good:bad odds)``, a bin is worth
        ``-factor * coef * woe`` plus an equal share of ``offset - factor * intercept``, so an
        applicant's points add up to the card's own score (before calibration). Because every
        coefficient agrees in sign with its WoE, a bin with better odds never earns fewer points.
        """
        used = [j for j, c in enumerate(self.coef) if c != 0.0]
        share = (offset - factor * self.intercept) / max(len(used), 1)
        rows: dict[str, list] = {k: [] for k in ("characteristic", "bin", "woe", "points", "iv")}
        for j in used:
            edges = [f"{e:.6g}" for e in self.edges[j]]
            if edges:
                bins = [f"< {edges[0]}", *(f"[{a}, {b})" for a, b in pairwise(edges))]
                bins.append(f">= {edges[-1]}")
            else:
                bins = ["any value"]
            for label, woe in zip([*bins, "missing"], self.woe[j], strict=True):
                rows["characteristic"].append(self.features[j])
                rows["bin"].append(label)
                rows["woe"].append(woe)
                rows["points"].append(-factor * self.coef[j] * woe + share)
                rows["iv"].append(self.iv[j] if self.iv else None)
        return pl.DataFrame(
            rows,
            schema={
                "characteristic": pl.String,
                "bin": pl.String,
                "woe": pl.Float64,
                "points": pl.Float64,
                "iv": pl.Float64,
            },
        )

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Scorecard:
        """Inverse of :meth:`to_dict`."""
        return cls(
            features=tuple(data["features"]),
            edges=tuple(tuple(float(v) for v in e) for e in data["edges"]),
            woe=tuple(tuple(float(v) for v in w) for w in data["woe"]),
            coef=tuple(float(v) for v in data["coef"]),
            intercept=float(data["intercept"]),
            iv=tuple(float(v) for v in data.get("iv", ())),
        )


def _cut_points(col: np.ndarray, bins: int, min_count: int) -> np.ndarray:
    """Inner quantile cut points, merged until every bin holds at least ``min_count`` rows."""
    known = col[~np.isnan(col)]
    if known.size == 0:
        return np.array([])
    edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1))[1:-1])
    while edges.size:
        counts = np.bincount(np.searchsorted(edges, known, side="right"), minlength=edges.size + 1)
        small = int(np.argmin(counts))
        if counts[small] >= min_count:
            break
        # Drop the edge that joins the smallest bin to its smaller neighbour.
        if small == 0:
            drop = 0
        elif small == edges.size:
            drop = edges.size - 1
        else:
            drop = small - 1 if counts[small - 1] <= counts[small + 1] else small
        edges = np.delete(edges, drop)
    return edges


def _monotone_cut_points(
    col: np.ndarray, y: np.ndarray, edges: np.ndarray, pd_direction: int, smoothing: float
) -> np.ndarray:
    """``edges`` with bins merged until the WoE is strictly monotone in ``pd_direction``.

    ``pd_direction`` +1: the PD rises with the value, so the WoE ``ln(goods / bads)`` must fall
    from bin to bin; -1 the reverse; 0 leaves the edges as they are. The first adjacent pair
    out of order (or tied) is merged, and the bins are counted again, until none is: at most
    one pass per edge (the missing-value bin has no neighbours and is left alone).
    """
    if pd_direction == 0:
        return edges
    known = ~np.isnan(col)
    values, outcome = col[known], y[known]
    while edges.size:
        idx = np.searchsorted(edges, values, side="right")
        bad_n = np.bincount(idx, weights=outcome, minlength=edges.size + 1)
        good_n = np.bincount(idx, weights=1.0 - outcome, minlength=edges.size + 1)
        # Within one feature the WoE differs from ln((goods + s) / (bads + s)) by a constant.
        woe = np.log((good_n + smoothing + 1e-12) / (bad_n + smoothing + 1e-12))
        wrong = np.flatnonzero(np.diff(woe) * pd_direction >= 0)
        if wrong.size == 0:
            break
        edges = np.delete(edges, wrong[0])
    return edges


def information_value(woe: np.ndarray, y: np.ndarray) -> float:
    """Information value of a WoE-encoded column: sum over bins of (goods% - bads%) x WoE."""
    values, idx = np.unique(woe, return_inverse=True)
    bads = np.bincount(idx, weights=y, minlength=values.size)
    goods = np.bincount(idx, weights=1.0 - y, minlength=values.size)
    share = goods / max(goods.sum(), 1.0) - bads / max(bads.sum(), 1.0)
    return float((share * values).sum())


def _screen(w: np.ndarray, iv: np.ndarray, params: BaselineParams) -> list[int]:
    """Columns by information value, strongest first, skipping weak and collinear ones."""
    sd = w.std(axis=0)
    z = np.divide(w - w.mean(axis=0), sd, out=np.zeros_like(w), where=sd > 0)
    chosen: list[int] = []
    for j in np.argsort(-iv, kind="stable"):
        if iv[j] < params.min_iv:
            break  # sorted: every later column is weaker still
        if sd[j] == 0:
            continue
        if chosen and np.abs(z[:, chosen].T @ z[:, j]).max() / len(z) > params.max_corr:
            continue
        chosen.append(int(j))
        if params.max_characteristics is not None and len(chosen) == params.max_characteristics:
            break
    return chosen


def fit_scorecard(
    x: np.ndarray,
    y: np.ndarray,
    feature_names: list[str],
    params: BaselineParams,
    pd_monotone: Sequence[int] | None = None,
) -> Scorecard:
    """Bin, WoE-encode, choose characteristics and fit the logistic scorecard on training data.

    ``pd_monotone`` gives each feature's direction on the PD (the catalog's, as LightGBM is
    constrained): its bins are merged until the WoE is monotone that way (None: no merging).
    Without any characteristic that passes the screens the card is intercept-only (the
    training bad rate for everyone), which scores every loan alike rather than failing.
    The linear algebra runs on one BLAS thread: the matrices are small, and threads spinning
    on them made a 200-loan card take 5 s instead of 0.2 s on a busy 2-core machine.
    """
    with threadpool_limits(limits=1):
        return _fit_scorecard(x, y, feature_names, params, pd_monotone)


def _fit_scorecard(
    x: np.ndarray,
    y: np.ndarray,
    feature_names: list[str],
    params: BaselineParams,
    pd_monotone: Sequence[int] | None,
) -> Scorecard:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(feature_names) or x.shape[0] != y.size:
        raise ValueError(
            f"expected a matrix of {y.size} rows x {len(feature_names)} features; got {x.shape}"
        )
    directions = [0] * len(feature_names) if pd_monotone is None else list(pd_monotone)
    if len(directions) != len(feature_names):
        raise ValueError(
            f"expected one monotone direction per feature ({len(feature_names)}); "
            f"got {len(directions)}"
        )
    bads = y.sum()
    goods = y.size - bads
    if bads == 0 or goods == 0:
        raise ValueError(f"expected both goods and bads to fit a scorecard; got {int(bads)} bads")
    min_count = max(1, int(params.min_bin_share * y.size))
    all_edges, all_woe = [], []
    for j in range(x.shape[1]):
        col = x[:, j]
        edges = _monotone_cut_points(
            col, y, _cut_points(col, params.bins, min_count), directions[j], params.smoothing
        )
        idx = np.searchsorted(edges, col, side="right")
        idx[np.isnan(col)] = edges.size + 1
        n_bins = edges.size + 2
        bad_n = np.bincount(idx, weights=y, minlength=n_bins)
        good_n = np.bincount(idx, weights=1 - y, minlength=n_bins)
        s = params.smoothing
        woe = np.log(((good_n + s) / (goods + s * n_bins)) / ((bad_n + s) / (bads + s * n_bins)))
        woe[(bad_n + good_n) == 0] = 0.0  # an unseen bin (e.g. no missing values) is neutral
        all_edges.append(tuple(float(e) for e in edges))
        all_woe.append(tuple(float(w) for w in woe))
    card = Scorecard(tuple(feature_names), tuple(all_edges), tuple(all_woe), (), 0.0)
    w = card.transform(x)
    iv = np.array([information_value(w[:, j], y) for j in range(w.shape[1])])
    chosen = _screen(w, iv, params)
    coef = np.zeros(w.shape[1])
    intercept = float(np.log(bads / goods))
    while chosen:
        model = LogisticRegression(C=params.c, max_iter=2000).fit(w[:, chosen], y)
        # WoE is high on good bins, so its coefficient in the log-odds of bad must be <= 0.
        wrong = [j for j, c in zip(chosen, model.coef_[0], strict=True) if c > 0]
        if not wrong:
            coef[chosen] = model.coef_[0]
            intercept = float(model.intercept_[0])
            break
        chosen.remove(min(wrong, key=lambda j: iv[j]))
    return Scorecard(
        features=card.features,
        edges=card.edges,
        woe=card.woe,
        coef=tuple(float(c) for c in coef),
        intercept=intercept,
        iv=tuple(float(v) for v in iv),
    )


def cross_fit_scorecard(
    x: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    feature_names: list[str],
    params: BaselineParams,
    pd_monotone: Sequence[int] | None = None,
) -> np.ndarray:
    """Out-of-fold log-odds of the scorecard: shape (repeats, rows), like the booster's.

    For each held-out fold of each repeat a card is binned, screened and fitted on the other
    folds (:func:`fit_scorecard`, monotone bins included) and scores the held-out loans.
    """
    if folds.ndim != 2 or folds.shape[1] != len(y):
        raise ValueError(f"expected folds of shape (repeats, {len(y)}); got {folds.shape}")
    out = np.full(folds.shape, np.nan)
    for r, assignment in enumerate(folds):
        for fold in np.unique(assignment):
            held = assignment == fold
            card = fit_scorecard(x[~held], y[~held], feature_names, params, pd_monotone)
            out[r, held] = card.log_odds(x[held])
    return out
