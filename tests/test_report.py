"""The HTML report and the model card.

The report is self-contained, every plot, table and section is present, extra sections are
appended, text is escaped by the templates; the model card is the one the evaluate step built.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from models import evaluate as ev
from pipeline.reporting import (
    ReportInputs,
    Section,
    model_card,
    standard_sections,
    write_report,
)
from pipeline.reporting.report import PLOTS, environment, render_html

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
    cutoffs = pl.DataFrame({"cutoff": [600, 650], "approved": [0.8, 0.5]})
    path = write_report(tmp_path, inputs, [Section("Cut-off strategy", "CUTOFFS", cutoffs)])
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
        "Monitoring plan",
        "Limitations",
    ):
        assert heading in page
    # The failing check is shown as failing, and the verdict names it.
    assert 'class="fail">fail' in page
    assert "Checks not met: auc_lift_over_baseline" in page
    # Extra sections go at the end, after the tables.
    assert page.index("Cut-off strategy") > page.index("Metrics by issue month")
    assert "<p>CUTOFFS</p>" in page
    assert page.index("<th>cutoff</th>") > page.index("Cut-off strategy")
    # Text from the card is escaped.
    assert "&lt;yet&gt;" in page
    assert not list(tmp_path.glob(".*.tmp"))


HOSTILE = "<script>alert('x')</script>"


def test_text_is_escaped_everywhere(inputs: ReportInputs) -> None:
    """A hostile feature name, description, check name or section comes out escaped."""
    metrics = dict(inputs.metrics)
    metrics["checks"] = {**metrics["checks"], HOSTILE: dict(metrics["checks"]["ece"])}
    card = {
        **inputs.card,
        "limitations": [*inputs.card["limitations"], HOSTILE],
        "monitoring": {HOSTILE: HOSTILE},
        "features": {**inputs.card["features"], "by_dimension": {HOSTILE: 1}},
        "model": {**inputs.card["model"], "baseline": HOSTILE},
    }
    tables = {
        **inputs.tables,
        "csi": pl.DataFrame({"feature": [HOSTILE], "csi": [0.02], "status": ["stable"]}),
    }
    hostile = dataclasses.replace(
        inputs, segment=HOSTILE, metrics=metrics, card=card, tables=tables
    )
    section = Section(HOSTILE, HOSTILE, pl.DataFrame({HOSTILE: [HOSTILE]}), collapsed=True)
    page = render_html(hostile, dict.fromkeys(PLOTS, b"png"), [section])
    assert "<script" not in page
    # Title, h1, check, CSI row, card (dimension, baseline, limitation, monitoring key and
    # rule), section (title, text, header, cell).
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 13


def _visible(page: str) -> str:
    text = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_every_table_and_section_renders(inputs: ReportInputs) -> None:
    pngs = dict.fromkeys(PLOTS, b"\x89PNG")
    table = pl.DataFrame({"cutoff": [600], "bad rate": [0.0123456], "limit": [None]})
    sections = [
        Section("Open", "plain text", table),
        Section("Closed", "folded", table, collapsed=True),
        Section("Text only", "no table"),
    ]
    page = render_html(inputs, pngs, sections)
    text = _visible(page)
    for name in ("gains", "by_band", "by_month", "csi"):
        frame = inputs.tables[name]
        assert " ".join(frame.columns) in text, name
    assert "measure LightGBM WoE scorecard true PD (ceiling)" in text
    assert "check value limit" in text
    assert "slice issue months loans bads bad rate" in text
    assert "train 2024-01 – 2024-03 10 1 0.1000" in text
    assert text.count("cutoff bad rate limit 600 0.0123 –") == 2
    assert page.count("<details>") == 1
    assert "<details><summary>Show the table</summary><table>" in page
    assert "<h2>Text only</h2>\n<p>no table</p>" in page
    assert page.index("<h2>Open</h2>") < page.index("<h2>Closed</h2>") < page.index("Text only")
    assert "All acceptance checks pass" not in text
    passing = {k: {**c, "passed": True} for k, c in inputs.metrics["checks"].items()}
    page = render_html(
        dataclasses.replace(inputs, metrics={**inputs.metrics, "checks": passing}), pngs
    )
    assert "All acceptance checks pass." in _visible(page)
    assert "<h2>Open</h2>" not in page
    lift = {"shapes": 0.01, "interactions": -0.002}
    page = render_html(
        dataclasses.replace(inputs, metrics={**inputs.metrics, "lift_sources": lift}), pngs
    )
    assert "Lift over the scorecard: +0.0100 AUC from an additive model" in page
    assert "and -0.0020 from interactions (LightGBM minus the additive LightGBM)." in page


def test_standard_sections_from_data() -> None:
    tables = {
        "cutoffs": pl.DataFrame({"cutoff": [600], "approval_rate": [0.5]}),
        "scorecard_points": pl.DataFrame(
            {"characteristic": ["a"], "bin": ["[0, 1)"], "woe": [0.123], "points": [12.346]}
        ).with_columns(iv=pl.lit(0.0456)),
    }
    cutoffs, points = standard_sections(tables, {"scorecard": {"description": "A card <x>"}})
    assert cutoffs.title == "Cut-off strategy (out-of-time test slice)"
    assert cutoffs.text.startswith("For each score cut-off: the share approved")
    assert cutoffs.table is tables["cutoffs"]
    assert not cutoffs.collapsed
    assert points.title == "Scorecard baseline: points per bin"
    assert points.text.startswith("A card <x>. An applicant's points add up")
    assert points.collapsed
    assert points.summary == "Show the points table"
    assert points.table is not None
    assert points.table.row(0) == ("a", "[0, 1)", 0.12, 12.35, 0.05)


def test_templates_ship_with_the_package() -> None:
    """The templates are package data: found through importlib.resources, not the repo."""
    folder = resources.files("pipeline.reporting").joinpath("templates")
    names = {p.name for p in folder.iterdir()}
    assert {"report.html.j2", "_macros.html.j2", "_card.html.j2", "report.css"} <= names
    assert set(environment().list_templates()) >= names
    assert environment().autoescape is True


# --- the model card ------------------------------------------------------------------------


def _card_inputs(with_ceiling: bool, knowable: bool, failing: bool) -> tuple:
    from features.definitions import definitions
    from tests.features_helpers import PARAMS

    summary = {"auc": 0.71, "gini": 0.42, "ks": 0.3, "brier": 0.05, "ece": 0.004}
    metrics: dict = {
        "test": {**summary, "count": 1000},
        "baseline": {**summary, "auc": 0.69},
        "additive": {**summary, "auc": 0.7},
        "checks": {
            "ece": {"value": 0.004, "limit": 0.01, "rule": "<", "passed": True},
            "lift": {"value": 0.01, "limit": 0.02, "rule": ">=", "passed": not failing},
        },
        "scorecard": {"description": "WoE logistic scorecard: 5 characteristics"},
        "score_resolution": {"distinct_scores": 300, "auc_of_score": 0.71, "auc_of_pd": 0.71},
    }
    if with_ceiling:
        metrics["ceiling"] = {**summary, "auc": 0.8}
        if knowable:
            metrics["ceiling"]["auc_knowable"] = 0.77
    info = {
        "slices": {"train": {"loans": 10, "bads": 1, "first_month": "2024-01"}},
        "catalog_hash": "abc",
        "best_iteration": 123,
        "monotone_constrained": 7,
    }
    specs = tuple(definitions("merchant", PARAMS).catalog.specs)
    return SimpleNamespace(specs=specs), info, metrics


@pytest.mark.parametrize(
    ("with_ceiling", "knowable", "failing"),
    [(True, True, False), (True, False, True), (False, False, False)],
)
def test_model_card_says_what_the_evaluation_found(
    with_ceiling: bool, knowable: bool, failing: bool
) -> None:
    from pipeline.config import load_settings

    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    scorer, info, metrics = _card_inputs(with_ceiling, knowable, failing)
    card = model_card(
        "merchant",
        scorer.specs,
        info,
        metrics,
        label=settings.label,
        monitoring=settings.monitoring,
        drift=settings.drift,
        calibration=settings.model.calibration,
        scaling=settings.scaling,
    )
    assert list(card) == [
        "segment", "purpose", "intended_use", "data", "label", "features", "model",
        "performance", "score_resolution", "limitations", "monitoring", "human_review",
    ]  # fmt: skip
    assert f"{settings.label.dpd_threshold}+ days past due" in card["purpose"]
    assert f"{settings.scaling.min_score}-{settings.scaling.max_score} score" in card["purpose"]
    assert card["features"]["count"] == len(scorer.specs)
    assert sum(card["features"]["by_dimension"].values()) == len(scorer.specs)
    assert card["model"]["trees"] == 123
    assert card["model"]["calibration"] == settings.model.calibration
    assert card["model"]["baseline"] == metrics["scorecard"]["description"]
    assert card["performance"]["model"]["auc"] == 0.71
    assert ("ceiling" in card["performance"]) is with_ceiling
    limitations = " ".join(card["limitations"])
    assert ("Acceptance checks not met on this data: lift." in limitations) is failing
    assert ("No true PD available" in limitations) is (not with_ceiling)
    assert ("0.770" in limitations) is knowable
    assert str(settings.drift.score_psi_alert) in card["monitoring"]["score_psi"]


def _fairness_record() -> dict:
    from models import fairness
    from models.fairness import FairnessParams

    groups = pl.Series((["<b>f</b>"] * 6 + ["m"] * 6) * 50)
    bad = np.tile(np.array([0, 0, 0, 0, 0, 1] * 2, dtype=float), 50)
    score = np.tile(np.array([500, 500, 500, 600, 600, 500, 600, 600, 600, 600, 600, 500]), 50)
    pd_ = np.full(600, 0.1)
    return fairness.assess(
        {"gender": groups}, bad, pd_, score, 550, FairnessParams(min_group_size=3)
    )


def test_the_card_tells_intended_use_groups_tested_monitoring_plan_and_human_review() -> None:
    from pipeline.config import load_settings

    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    scorer, info, metrics = _card_inputs(True, True, False)
    metrics["fairness"] = _fairness_record()
    card = model_card(
        "merchant",
        scorer.specs,
        info,
        metrics,
        label=settings.label,
        monitoring=settings.monitoring,
        drift=settings.drift,
        calibration=settings.model.calibration,
        scaling=settings.scaling,
    )
    assert "decision support" in card["intended_use"]["use"].lower()
    assert card["fairness"]["groups_tested"] == ["gender", "age", "region"]
    assert card["fairness"]["flagged"] == ["gender"]
    assert "adverse impact ratio 0.400" in card["fairness"]["results"]["gender"]
    assert card["fairness"]["results"]["age"].startswith("absent")
    assert "longtail monitor" in card["monitoring"]["performance_before_labels"]
    assert "POST /decisions/{id}/review" in card["human_review"]["route"]
    assert "longtail review" in card["human_review"]["route"]
    assert "PIPL art. 24" in card["human_review"]["right"]


def test_the_fairness_section_renders_escaped(inputs: ReportInputs) -> None:
    from pipeline.reporting import fairness_section

    section = fairness_section(_fairness_record())
    assert "adverse impact ratio 0.400" in section.text
    assert "FLAGGED" in section.text
    assert section.table is not None
    assert set(section.table["attribute"]) == {"gender"}
    page = render_html(inputs, dict.fromkeys(PLOTS, b"png"), [section])
    assert "Fairness by group" in page
    assert "<b>f</b>" not in page
    assert "&lt;b&gt;f&lt;/b&gt;" in page
