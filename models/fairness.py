"""Does the model treat groups alike? Approval, error rates and calibration by group.

For each protected or proxy attribute (gender where the lender holds it, age band, region) the
evaluation rows are split by group and, at the approval cut-off on the score:

* the **approval rate** (fairlearn's selection rate of "approved") and the **adverse impact
  ratio**: the lowest judged group's approval rate over the highest's (the US "four-fifths"
  rule flags a ratio under 0.8), flagged when even its upper confidence bound is under the
  limit, so that groups parting by sampling noise alone are not;
* the **true and false positive rate gaps**, with approval as the favourable outcome: the
  true positive rate is the share of *good* loans approved (equal opportunity: creditworthy
  applicants approved alike), the false positive rate the share of *bad* loans approved; a gap
  is the largest minus the smallest over the judged groups;
* **calibration by group**: mean PD against the observed bad rate, with counts, so an
  under-predicted group shows.

Groups with fewer than ``min_group_size`` loans are reported but not judged (their rates are
noise); rows whose attribute is unknown are counted, not grouped. An attribute the lender does
not hold is reported as absent, never an error. Pure functions over polars frames and numpy
arrays; the pipeline attaches the attributes (:mod:`pipeline.fairness`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from fairlearn.metrics import MetricFrame

#: The attributes the report knows how to group by, and where each comes from.
ATTRIBUTES: dict[str, str] = {
    "gender": "the entity table's gender column (a merchant's: its principal owner's)",
    "age": "age band at the loan's issue, from the entity table's birth_year",
    "region": "the entity table's region (a proxy attribute: it can stand in for ethnicity)",
}
UNKNOWN = "unknown"
FAVOURABLE = "approval: score at or above the approval cut-off"


class FairnessParams(BaseModel):
    """Which attributes are assessed and the limits the promotion gate holds a model to.

    ``age_bands`` are the lower edges of the age bands after the first (``[25, 35]`` gives
    ``<25``, ``25-34``, ``35+``). ``adverse_impact_min`` is the lowest adverse impact ratio a
    model may show on any attribute (0.8: the four-fifths rule); ``tolerance`` how far a
    challenger's ratio may fall below the champion's on the same rows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attributes: tuple[str, ...] = ("gender", "age", "region")
    age_bands: tuple[int, ...] = (25, 35, 50, 65)
    min_group_size: int = Field(default=100, ge=1)
    adverse_impact_min: float = Field(default=0.8, ge=0, le=1)
    tolerance: float = Field(default=0.05, ge=0)

    @field_validator("attributes")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in value if a not in ATTRIBUTES]
        if unknown:
            raise ValueError(f"expected attributes among {list(ATTRIBUTES)}; got {unknown}")
        return value

    @field_validator("age_bands")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if list(value) != sorted(set(value)) or (value and value[0] <= 0):
            raise ValueError(f"expected increasing positive age band edges; got {list(value)}")
        return value


def age_band(age: pl.Expr, edges: Sequence[int]) -> pl.Expr:
    """The age band of ``age`` (whole years): ``<25``, ``25-34``, ..., ``65+``; null stays null."""
    if not edges:
        return pl.when(age.is_not_null()).then(pl.lit("all ages"))
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    band = pl.lit(labels[-1])
    for edge, label in reversed(list(zip(edges, labels[:-1], strict=True))):
        band = pl.when(age < edge).then(pl.lit(label)).otherwise(band)
    return pl.when(age.is_not_null()).then(band)


def _approval_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_pred)) if len(y_pred) else math.nan


def _rate_among(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share approved among the rows whose ``y_true`` is 1 (nan when there are none)."""
    chosen = np.asarray(y_true) == 1
    return float(np.mean(np.asarray(y_pred)[chosen])) if chosen.any() else math.nan


def _rate_among_negatives(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    chosen = np.asarray(y_true) == 0
    return float(np.mean(np.asarray(y_pred)[chosen])) if chosen.any() else math.nan


def _metric_frame(good: np.ndarray, approved: np.ndarray, groups: np.ndarray) -> MetricFrame:
    """Fairlearn's MetricFrame of approval, TPR and FPR (goods are the positives) by group."""
    from fairlearn.metrics import MetricFrame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas/fairlearn chatter on small groups
        return MetricFrame(
            metrics={
                "approval_rate": _approval_rate,
                "true_positive_rate": _rate_among,
                "false_positive_rate": _rate_among_negatives,
            },
            y_true=good,
            y_pred=approved,
            sensitive_features=pl.Series("group", groups).to_pandas(),
        )


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def group_table(
    groups: pl.Series, bad: np.ndarray, pd_: np.ndarray, approved: np.ndarray, min_size: int
) -> pl.DataFrame:
    """One row per group (unknown rows left out): loans, bads, rates, calibration, judged.

    ``groups`` is the attribute per row (null: unknown); ``bad`` 1 for a bad loan; ``pd_`` the
    model's PD; ``approved`` whether the score reaches the cut-off.
    """
    frame = pl.DataFrame(
        {
            "group": groups.cast(pl.String),
            "bad": np.asarray(bad, dtype=np.float64),
            "pd": np.asarray(pd_, dtype=np.float64),
            "approved": np.asarray(approved, dtype=bool),
        }
    ).filter(pl.col("group").is_not_null())
    schema = {
        "group": pl.String,
        "loans": pl.Int64,
        "bads": pl.Int64,
        "approval_rate": pl.Float64,
        "true_positive_rate": pl.Float64,
        "false_positive_rate": pl.Float64,
        "mean_pd": pl.Float64,
        "bad_rate": pl.Float64,
        "judged": pl.Boolean,
    }
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    counts = frame.group_by("group").agg(
        pl.len().cast(pl.Int64).alias("loans"),
        pl.col("bad").sum().cast(pl.Int64).alias("bads"),
        pl.col("pd").mean().alias("mean_pd"),
        pl.col("bad").mean().alias("bad_rate"),
    )
    by_group = _metric_frame(
        1 - frame["bad"].to_numpy(), frame["approved"].to_numpy(), frame["group"].to_numpy()
    ).by_group
    rates = pl.DataFrame(
        {
            "group": [str(g) for g in by_group.index],
            **{c: by_group[c].astype(float).to_numpy() for c in by_group.columns},
        }
    )
    return (
        counts.join(rates, on="group")
        .with_columns(
            pl.col(c).fill_nan(None)
            for c in ("approval_rate", "true_positive_rate", "false_positive_rate")
        )
        .with_columns((pl.col("loans") >= min_size).alias("judged"))
        .select(list(schema))
        .sort("group")
    )


def assess_attribute(
    groups: pl.Series | None,
    bad: np.ndarray,
    pd_: np.ndarray,
    approved: np.ndarray,
    params: FairnessParams,
) -> dict:
    """The fairness record of one attribute (``groups`` None or all null: absent).

    ``adverse_impact_ratio`` is None when fewer than two groups are large enough to judge (or
    no judged group is approved at all); ``adverse_impact_upper`` is its upper confidence
    bound (:func:`air_upper_bound`), and ``flagged`` says whether even that bound is under
    ``params.adverse_impact_min``: the disparity is larger than the groups' sampling noise.
    """
    if groups is None or groups.null_count() == groups.len():
        return {"status": "absent", "note": "the lender does not hold this attribute"}
    table = group_table(groups, bad, pd_, approved, params.min_group_size)
    judged = table.filter(pl.col("judged"))
    record: dict = {
        "status": "measured",
        "unknown": int(groups.null_count()),
        "groups": table.to_dicts(),
        "judged_groups": judged.height,
        "adverse_impact_ratio": None,
        "lowest_group": None,
        "highest_group": None,
        "true_positive_rate_gap": None,
        "false_positive_rate_gap": None,
        "calibration_gap": None,
        "adverse_impact_upper": None,
        "flagged": False,
    }
    if judged.height < 2:
        record["note"] = (
            f"fewer than two groups with at least {params.min_group_size} loans: not judged"
        )
        return record
    rows = groups.is_in(judged["group"].implode()).fill_null(False).to_numpy()
    frame = _metric_frame(
        1 - np.asarray(bad, dtype=np.float64)[rows],
        np.asarray(approved, dtype=bool)[rows],
        groups.filter(pl.Series(rows)).to_numpy(),
    )
    ratio = frame.ratio(method="between_groups")
    gaps = frame.difference(method="between_groups")
    ordered = judged.sort("approval_rate", "group")
    record |= {
        "adverse_impact_ratio": _finite(ratio["approval_rate"]),
        "lowest_group": ordered["group"][0],
        "highest_group": ordered["group"][-1],
        "true_positive_rate_gap": _finite(gaps["true_positive_rate"]),
        "false_positive_rate_gap": _finite(gaps["false_positive_rate"]),
        # The largest |mean PD - bad rate| of a judged group: an under- or over-predicted group.
        "calibration_gap": _finite(
            float((judged["mean_pd"] - judged["bad_rate"]).abs().max())  # type: ignore[arg-type]
        ),
    }
    low, high = ordered.row(0, named=True), ordered.row(-1, named=True)
    upper = air_upper_bound(
        low["approval_rate"], low["loans"], high["approval_rate"], high["loans"], judged.height
    )
    record["adverse_impact_upper"] = upper
    # Flagged when even the upper confidence bound is under the limit: a disparity larger than
    # the groups' sampling noise (twelve regions of a hundred loans part by chance alone).
    record["flagged"] = record["adverse_impact_ratio"] is not None and (
        upper < params.adverse_impact_min
    )
    return record


def air_upper_bound(p_low: float, n_low: int, p_high: float, n_high: int, groups: int) -> float:
    """Upper 95% confidence bound of the ratio of two approval rates, over all group pairs.

    Katz's log method for a ratio of proportions, with half a loan added to each count (so a
    group approved never or always still has a bound), at the Bonferroni level for the
    ``groups * (groups - 1) / 2`` pairs the lowest and highest were picked from.
    """
    from scipy.stats import norm

    pairs = max(groups * (groups - 1) // 2, 1)
    z = float(norm.ppf(1 - 0.05 / (2 * pairs)))
    a = (p_low * n_low + 0.5) / (n_low + 1)
    b = (p_high * n_high + 0.5) / (n_high + 1)
    se = math.sqrt((1 - a) / (a * (n_low + 1)) + (1 - b) / (b * (n_high + 1)))
    return float(min(a / b * math.exp(z * se), 1.0))


def assess(
    attributes: dict[str, pl.Series | None],
    bad: np.ndarray,
    pd_: np.ndarray,
    score: np.ndarray,
    cutoff: float,
    params: FairnessParams,
) -> dict:
    """The fairness section of metrics.json: every attribute of ``params`` at ``cutoff``.

    ``attributes`` maps an attribute name to its value per row (None: the lender does not
    hold it). ``flagged`` lists the attributes whose adverse impact ratio is under the limit.
    """
    approved = np.asarray(score) >= cutoff
    by_attribute = {
        name: assess_attribute(attributes.get(name), bad, pd_, approved, params)
        for name in params.attributes
    }
    return {
        "cutoff": cutoff,
        "favourable": FAVOURABLE,
        "rows": len(approved),
        "approval_rate": float(approved.mean()) if len(approved) else math.nan,
        "adverse_impact_min": params.adverse_impact_min,
        "min_group_size": params.min_group_size,
        "attributes": by_attribute,
        "flagged": [name for name, rec in by_attribute.items() if rec.get("flagged")],
    }


def gate_refusals(challenger: dict, champion: dict | None, params: FairnessParams) -> list[str]:
    """Why a challenger's fairness bars it from champion (empty: it may pass).

    ``challenger`` and ``champion`` are :func:`assess` records on the same rows. Refused when
    an attribute's adverse impact ratio is under ``params.adverse_impact_min`` beyond the
    groups' sampling noise (its upper confidence bound is under it), or more than
    ``params.tolerance`` below the champion's (the two are measured on the same rows, so their
    noise is shared).
    """
    refusals = []
    limit, tolerance = params.adverse_impact_min, params.tolerance
    for name, rec in challenger["attributes"].items():
        air = rec.get("adverse_impact_ratio")
        if air is None:
            continue
        upper = rec.get("adverse_impact_upper", air)
        if upper < limit:
            refusals.append(
                f"the challenger's adverse impact ratio on {name} is {air:.3f} "
                f"(approval of {rec['lowest_group']} over {rec['highest_group']} at score "
                f"{challenger['cutoff']:g}; upper confidence bound {upper:.3f}), below the "
                f"limit {limit}"
            )
            continue
        champ = (champion or {}).get("attributes", {}).get(name, {}).get("adverse_impact_ratio")
        if champ is not None and air < champ - tolerance:
            refusals.append(
                f"the challenger's adverse impact ratio on {name} is {air:.3f}, worse than the "
                f"champion's {champ:.3f} on the same rows by more than the tolerance "
                f"{tolerance}"
            )
    return refusals


def table(record: dict) -> pl.DataFrame:
    """Every measured group of every attribute, one row each, for the report and a CSV."""
    frames = [
        group_table_from(name, rec)
        for name, rec in record["attributes"].items()
        if rec["status"] == "measured"
    ]
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame(schema={"attribute": pl.String, "group": pl.String})
    return pl.concat(frames, how="vertical_relaxed")


def group_table_from(name: str, rec: dict) -> pl.DataFrame:
    """One attribute's groups (from its :func:`assess_attribute` record) with its name first."""
    frame = pl.DataFrame(rec["groups"])
    if frame.height == 0:
        return frame
    return frame.select(pl.lit(name).alias("attribute"), pl.all())
