"""Fairness of a model on evaluation rows: the attributes from the validated entity table.

:mod:`models.fairness` measures; this module brings each row's protected and proxy attributes
(gender where the lender holds it, age band at the loan's issue from ``birth_year``, region)
from ``data/validated``, so the evaluate stage and the promotion gate judge the same groups.
None of these columns is a feature (the catalog never reads gender; tests/test_fairness.py).
"""

from __future__ import annotations

import polars as pl

from features.contract.segments import segment
from models import fairness
from models.fairness import FairnessParams
from models.scaling import pd_to_score
from models.scorer import Scorer
from pipeline.storage import Layout, require

# Entity table column -> attribute; age comes from birth_year and the row's as_of.
_COLUMNS = {"gender": "gender", "region": "region", "birth_year": "age"}


def attributes(
    layout: Layout, name: str, rows: pl.DataFrame, params: FairnessParams
) -> dict[str, pl.Series | None]:
    """Each attribute of ``params`` per row of ``rows`` (``entity_id``, ``as_of``); None: absent.

    An attribute is absent when the segment's entity table has no such column (merchants
    have no birth year) or holds no value of it (a lender that does not record gender).
    """
    missing = [c for c in ("entity_id", "as_of") if c not in rows.columns]
    if missing:
        raise ValueError(f"expected columns {missing} in the evaluation rows; got {rows.columns}")
    seg = segment(name)
    path = require(layout.validated, "validate") / f"{seg.entity_table}.parquet"
    held = [c for c in _COLUMNS if c in pl.read_parquet_schema(path)]
    entities = pl.read_parquet(path, columns=[seg.entity_id, *held]).rename(
        {seg.entity_id: "entity_id"}
    )
    joined = rows.select("entity_id", "as_of").join(
        entities, on="entity_id", how="left", maintain_order="left"
    )
    out: dict[str, pl.Series | None] = dict.fromkeys(params.attributes)
    for column, attribute in _COLUMNS.items():
        if attribute not in out or column not in joined.columns:
            continue
        if attribute == "age":
            age = pl.col("as_of").dt.year() - pl.col("birth_year")
            out[attribute] = joined.select(
                fairness.age_band(age, params.age_bands).alias("age")
            ).to_series()
        else:
            out[attribute] = joined[column].cast(pl.String).alias(attribute)
    return out


def measure(
    layout: Layout,
    name: str,
    rows: pl.DataFrame,
    cutoff: float,
    params: FairnessParams,
    *,
    pd_column: str = "pd",
) -> dict:
    """The fairness record (:func:`models.fairness.assess`) of ``rows`` at ``cutoff``.

    ``rows`` hold ``entity_id``, ``as_of``, ``bad``, ``score`` and ``pd_column``.
    """
    return fairness.assess(
        attributes(layout, name, rows, params),
        rows["bad"].cast(pl.Float64).to_numpy(),
        rows[pd_column].cast(pl.Float64).to_numpy(),
        rows["score"].cast(pl.Float64).to_numpy(),
        cutoff,
        params,
    )


def measure_scorer(
    layout: Layout, name: str, scorer: Scorer, rows: pl.DataFrame, params: FairnessParams
) -> dict:
    """A registered model's fairness on ``rows`` at its own approval cut-off (promotion gate)."""
    pd_ = scorer.predict_pd(rows)
    scored = rows.select("entity_id", "as_of", "bad").with_columns(
        pl.Series("pd", pd_), pl.Series("score", pd_to_score(pd_, scorer.scaling))
    )
    return measure(layout, name, scored, scorer.policy.approval_cutoff, params)


def check(record: dict) -> dict | None:
    """The evaluation's acceptance check: the lowest judged adverse impact ratio (None: none).

    It fails when any attribute is flagged (:func:`models.fairness.assess_attribute`: its upper
    confidence bound is under the limit), not on a point estimate that sampling noise moved.
    """
    ratios = {
        a: r["adverse_impact_ratio"]
        for a, r in record["attributes"].items()
        if r.get("adverse_impact_ratio") is not None
    }
    if not ratios:
        return None
    worst = min(ratios, key=lambda a: ratios[a])
    flagged = [a for a in ratios if record["attributes"][a]["flagged"]]
    return {
        "value": ratios[worst],
        "limit": record["adverse_impact_min"],
        "rule": ">=",
        "attribute": worst,
        "upper_bound": record["attributes"][worst]["adverse_impact_upper"],
        # judged beyond sampling noise: fails when an attribute's upper bound is under the limit
        "passed": not flagged,
    }
