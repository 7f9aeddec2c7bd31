"""The report's fairness section, from the ``fairness`` record of metrics.json.

The record is :func:`models.fairness.assess`'s (the evaluate stage measures it through
:mod:`pipeline.fairness`); this only words it and lays out its table.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models import fairness
from pipeline.reporting.report import Section


def fairness_section(record: dict) -> Section:
    """The report's fairness section: what was measured, what was flagged, every group."""
    parts = []
    for name, rec in record["attributes"].items():
        if rec["status"] == "absent":
            parts.append(f"{name}: absent ({rec['note']})")
        elif rec["adverse_impact_ratio"] is None:
            parts.append(f"{name}: {rec.get('note', 'not judged')}")
        else:
            parts.append(
                f"{name}: adverse impact ratio {rec['adverse_impact_ratio']:.3f} "
                f"({rec['lowest_group']} lowest, {rec['highest_group']} highest; upper "
                f"confidence bound {_num(rec.get('adverse_impact_upper'))}), TPR gap "
                f"{_num(rec['true_positive_rate_gap'])}, FPR gap "
                f"{_num(rec['false_positive_rate_gap'])}, largest group calibration gap "
                f"{_num(rec['calibration_gap'])}" + (" — FLAGGED" if rec["flagged"] else "")
            )
    flagged = record["flagged"]
    text = (
        f"Approval at score {record['cutoff']:g} (the model's approval cut-off) on "
        f"{record['rows']:,} evaluation loans, by group. The adverse impact ratio is the lowest "
        "judged group's approval rate over the highest's; when even its upper confidence bound "
        f"is under {record['adverse_impact_min']} (four-fifths rule) it is flagged and the "
        "promotion gate refuses the model. The true positive rate is the share of good loans "
        "approved, the false positive rate the share of bad loans approved; groups under "
        f"{record['min_group_size']} loans are shown but not judged. "
        + "; ".join(parts)
        + ". "
        + (f"Flagged: {', '.join(flagged)}." if flagged else "No attribute is flagged.")
    )
    table = fairness.table(record)
    if table.height:
        table = table.with_columns(pl.col(pl.Float64).round(4))
    return Section(title="Fairness by group", text=text, table=table if table.height else None)


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"
