"""The HTML report: self-contained, every plot and section present, extra sections appended."""

from __future__ import annotations

import base64
import re

import numpy as np
import polars as pl
import pytest

from models import evaluate as ev
from pipeline.report import ReportInputs, write_report

BANDS = [
    ("poor", "较差", 350, 549),
    ("fair", "中等", 550, 599),
    ("good", "良好", 600, 649),
    ("very_good", "优秀", 650, 699),
    ("excellent", "极好", 700, 950),
]


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    rng = np.random.default_rng(0)
    n = 3000
    true_pd = 1 / (1 + np.exp(-rng.normal(-3.3, 1.0, n)))
    bad = (rng.random(n) < true_pd).astype(float)
    pd_ = np.clip(true_pd * rng.lognormal(0, 0.3, n), 1e-4, 0.99)
    base = np.clip(true_pd * rng.lognormal(0, 0.8, n), 1e-4, 0.99)
    score = np.clip(
        np.round(600 + 40 / np.log(2) * (np.log((1 - pd_) / pd_) - np.log(50))), 350, 950
    ).astype(int)
    band = np.select([score < b[2] + 0 for b in BANDS[1:]], [b[0] for b in BANDS[:-1]], "excellent")
    months = np.array([f"2024-{m:02d}" for m in range(1, 13)])[rng.integers(0, 12, n)]
    frame = pl.DataFrame(
        {
            "bad": bad,
            "pd": pd_,
            "baseline_pd": base,
            "true_pd": true_pd,
            "score": score,
            "band": band,
            "issue_month": months,
        }
    ).with_columns(
        pl.when(pl.col("issue_month") >= "2024-10")
        .then(pl.lit("test"))
        .when(pl.col("issue_month") >= "2024-07")
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
        .alias("slice")
    )
    test = frame.filter(pl.col("slice") == "test")
    y = test["bad"].to_numpy()
    metrics = {
        "segment": "merchant",
        "test": ev.summary(y, test["pd"].to_numpy()),
        "baseline": ev.summary(y, test["baseline_pd"].to_numpy()),
        "ceiling": ev.summary(y, test["true_pd"].to_numpy()),
        "stability": {"score_psi_train_test": 0.03, "score_psi_train_valid": 0.02},
        "checks": {
            "ece": {"value": 0.004, "limit": 0.01, "rule": "<", "passed": True},
            "auc_lift_over_baseline": {"value": 0.01, "limit": 0.02, "rule": ">=", "passed": False},
        },
        "monotone_violations": [],
        "training": {"seconds": 1.0, "trees": 80, "features": 3},
        "slices": {
            s: {"loans": 10, "bads": 1, "first_month": "2024-01", "last_month": "2024-03"}
            for s in ("train", "valid", "test")
        },
    }
    importance = pl.DataFrame(
        {
            "feature": ["refund_rate_90d", "dpd_max_365d", "tenure_days"],
            "dimension": ["ability_to_pay", "credit_history", "identity"],
            "gain_share": [0.5, 0.3, 0.2],
        }
    )
    card = {
        "purpose": "Probability of 90+ DPD within 12 months.",
        "data": {"slices": metrics["slices"], "catalog_hash": "abcdef0123456789"},
        "label": {"definition": "bad when 90+ DPD within 12 months"},
        "features": {"count": 3, "monotone_constrained": 2, "by_dimension": {"identity": 1}},
        "model": {
            "algorithm": "LightGBM",
            "calibration": "isotonic",
            "trees": 80,
            "baseline": "WoE scorecard",
        },
        "performance": {"model": {"auc": 0.7, "ece": 0.004}},
        "limitations": ["No reject inference <yet>."],
        "monitoring": {"score_psi": "watch at 0.1"},
    }
    return ReportInputs(
        segment="merchant",
        metrics=metrics,
        card=card,
        test=test.select("bad", "pd", "baseline_pd", "score", "band", "true_pd"),
        tables={
            "gains": ev.gains_table(y, test["pd"].to_numpy()),
            "by_band": ev.by_band(test, [b[0] for b in BANDS]),
            "by_month": ev.by_group(
                frame,
                "issue_month",
                {"model": "pd", "baseline": "baseline_pd", "true_pd": "true_pd"},
            ).join(frame.group_by("issue_month").agg(pl.col("slice").first()), on="issue_month"),
            "calibration": ev.calibration_bins(y, test["pd"].to_numpy()),
            "csi": pl.DataFrame({"feature": ["a"], "csi": [0.02], "status": ["stable"]}),
            "importance": importance,
        },
        bands=BANDS,
    )


def test_report_is_self_contained_with_every_plot(tmp_path, inputs: ReportInputs) -> None:
    path = write_report(tmp_path, inputs, extra_sections=[("Cut-off strategy", "<p>CUTOFFS</p>")])
    page = path.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    names = {p.stem for p in (tmp_path / "plots").glob("*.png")}
    assert names == {"roc", "ks", "calibration", "score_distribution", "importance", "by_month"}
    assert 'src="http' not in page  # nothing fetched from outside
    assert "<script" not in page
    for heading in (
        "Headline metrics",
        "Acceptance checks",
        "Model card",
        "Gains by decile",
        "Metrics by issue month",
        "Monitoring thresholds",
        "Limitations",
    ):
        assert heading in page
    # The failing check is shown as failing, and the verdict names it.
    assert 'class="fail">fail' in page
    assert "Checks not met: auc_lift_over_baseline" in page
    # Extra sections go at the end, after the tables.
    assert page.index("Cut-off strategy") > page.index("Metrics by issue month")
    assert "<p>CUTOFFS</p>" in page
    # Text from the card is escaped.
    assert "&lt;yet&gt;" in page
    assert not list(tmp_path.glob(".*.tmp"))
