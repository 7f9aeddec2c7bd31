"""Population stability: the one PSI/CSI and the one status rule every stage uses.

The population stability index compares the distribution of a value (the score: PSI; one
feature: CSI, the same formula) in an *actual* population with a *reference* population,
binned on the reference's quantiles: ``sum((a - e) * ln(a / e))`` over the bins' shares, with
missing values in a bin of their own (a feature that goes missing more often has shifted too).

Evaluation (training rows against out-of-time rows), the promotion gate (the same comparison
for a challenger) and production drift monitoring (the book at scoring time against the book
when the model was built) all call :func:`psi` / :func:`profile` / :func:`index` and read the
verdict from :func:`status` with the :class:`Levels` set once in params.yaml (``drift:``), so a
PSI of 0.12 means the same thing, and gets the same word, in the report, the gate and a
scoring manifest. The levels are params; the usual ones (params.yaml's defaults) are 0.10 and
0.25: under the first the population is stable (``ok``), from it worth a look (``warning``),
from the second it has shifted (``alert``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

Status = Literal["ok", "warning", "alert"]
STATUS_ORDER: tuple[Status, ...] = ("ok", "warning", "alert")
FLOOR = 1e-6  # share given to an empty bin, so the log stays finite


class Levels(BaseModel):
    """The two stability levels: ``warning`` from ``warn`` on, ``alert`` from ``alert`` on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warn: float = Field(0.10, gt=0)
    alert: float = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if self.alert < self.warn:
            raise ValueError(f"expected alert >= warn; got warn {self.warn}, alert {self.alert}")
        return self


def status(value: float, levels: Levels) -> Status:
    """``alert`` at or above ``levels.alert``, ``warning`` at or above ``levels.warn``, else ``ok``.

    An undefined index (NaN: no rows to compare) is an ``alert``: stability that cannot be
    shown is not assumed.
    """
    if not np.isfinite(value) or value >= levels.alert:
        return "alert"
    if value >= levels.warn:
        return "warning"
    return "ok"


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe of several statuses (``ok`` for none)."""
    return max(statuses, key=STATUS_ORDER.index, default="ok")


def bin_edges(values: np.ndarray, bins: int) -> list[float]:
    """Interior quantile edges of the non-missing values (fewer when values repeat)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return []
    quantiles = np.quantile(values, np.linspace(0, 1, bins + 1))[1:-1]
    return [float(e) for e in np.unique(quantiles)]


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of values in each bin ``(-inf, e0], (e0, e1], ... (e_last, inf)`` plus missing.

    The last entry is the share of missing (NaN) values.
    """
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    index = np.searchsorted(np.asarray(edges, dtype=float), values[~missing], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, float(missing.sum()))
    total = counts.sum()
    return counts / total if total else counts


def profile(values: np.ndarray, bins: int) -> dict:
    """A reference distribution of one value: its quantile bin edges and the shares in them."""
    edges = bin_edges(values, bins)
    return {"edges": edges, "shares": [float(s) for s in bin_shares(values, edges)]}


def index(expected_shares: Sequence[float], actual_shares: Sequence[float]) -> float:
    """PSI (score) or CSI (feature) from bin shares: ``sum((a - e) * ln(a / e))``.

    Shares are floored at 1e-6 so an empty bin gives a large, finite index.
    """
    e = np.clip(np.asarray(expected_shares, dtype=float), FLOOR, None)
    a = np.clip(np.asarray(actual_shares, dtype=float), FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def against(reference: dict, values: np.ndarray) -> float:
    """The index of ``values`` against a saved :func:`profile`."""
    return index(reference["shares"], bin_shares(values, reference["edges"]))


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Stability index of ``actual`` against ``expected`` on expected's quantile bins.

    NaN when either side is empty.
    """
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    return against(profile(expected, bins), actual)


def csi(
    expected: np.ndarray,
    actual: np.ndarray,
    names: Sequence[str],
    levels: Levels,
    bins: int = 10,
) -> pl.DataFrame:
    """The index of each feature column with its :func:`status`, largest first."""
    expected = np.asarray(expected, dtype=float)
    actual = np.asarray(actual, dtype=float)
    if expected.ndim != 2 or actual.ndim != 2 or expected.shape[1] != len(names):
        raise ValueError(
            f"expected two matrices with {len(names)} columns; got {expected.shape} and "
            f"{actual.shape}"
        )
    values = [psi(expected[:, j], actual[:, j], bins) for j in range(len(names))]
    return pl.DataFrame(
        {
            "feature": list(names),
            "csi": values,
            "status": [status(v, levels) for v in values],
        },
        schema_overrides={"csi": pl.Float64},
    ).sort("csi", descending=True, maintain_order=True)
