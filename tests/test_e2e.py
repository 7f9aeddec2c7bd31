"""The whole pipeline on a small world in tmp paths: every stage, real files, real MLflow."""

from __future__ import annotations

import json

import polars as pl
import pytest
from registry_world import scoring_date

from pipeline.stages import score
from pipeline.storage import Layout

SEGMENTS = ("merchant", "consumer")
SCORE_COLUMNS = {
    "entity_id": pl.String,
    "segment": pl.String,
    "as_of": pl.Date,
    "pd": pl.Float64,
    "score": pl.Int32,
    "band": pl.String,
    "limit": pl.Float64,
    "binding_constraint": pl.String,
    "apr": pl.Float64,
    "priced_out": pl.Boolean,
    "decided_by": pl.String,
    "reason_1": pl.String,
    "reason_2": pl.String,
    "reason_3": pl.String,
    "reason_4": pl.String,
    "model_version": pl.Int32,
    **{
        f"sub_{d}": pl.Float64
        for d in ("credit_history", "behaviour", "ability_to_pay", "identity", "connections")
    },
}
CAPS = {"merchant": 5_000_000, "consumer": 200_000}


@pytest.mark.parametrize("segment", SEGMENTS)
def test_pipeline_end_to_end(trained_world, segment: str) -> None:
    settings = trained_world
    layout = Layout(settings.data_dir)
    metrics = json.loads((layout.report(segment) / "metrics.json").read_text())
    assert 0.5 <= metrics["test"]["auc"] < 0.99, metrics["test"]  # below 0.99: no leak
    # On a synthetic world the truth bounds the model: the true PD, and below it what the log
    # could reveal (the true PD without its hidden part), both on the same test loans.
    ceiling = metrics["ceiling"]
    assert 0.5 < ceiling["auc_knowable"] <= ceiling["auc"] + 0.02, ceiling
    assert (
        "AUC of what the log could reveal" in (layout.report(segment) / "report.html").read_text()
    )
    assert (layout.report(segment) / "report.html").stat().st_size > 1000
    # The lift over the scorecard splits exactly into shapes (additive LightGBM, one feature per
    # tree, minus the scorecard) and interactions (the model minus the additive LightGBM).
    sources = metrics["lift_sources"]
    lift = metrics["test"]["auc"] - metrics["baseline"]["auc"]
    assert sources["shapes"] + sources["interactions"] == pytest.approx(lift, abs=1e-12)
    assert 0.5 < metrics["additive"]["auc"] < 0.99, metrics["additive"]
    assert "from interactions" in (layout.report(segment) / "report.html").read_text()
    # The scorecard keeps a screened subset of the features, and the saved card scores on
    # exactly those (the model card says how many).
    kept = metrics["scorecard"]["characteristics"]
    features = json.loads((layout.report(segment) / "model_card.json").read_text())
    assert 0 < len(kept) < features["features"]["count"], kept
    assert f"{len(kept)} characteristics" in features["model"]["baseline"]
    assert all(metrics["scorecard"]["information_value"][f] >= 0.02 for f in kept)
    resolution = metrics["score_resolution"]
    assert resolution["distinct_scores"] > 20, resolution
    assert abs(resolution["auc_of_score"] - resolution["auc_of_pd"]) < 0.01, resolution
    points = pl.read_csv(layout.report(segment) / "scorecard_points.csv")
    assert points["characteristic"].unique(maintain_order=True).to_list() == kept
    page = (layout.report(segment) / "report.html").read_text()
    assert "Scorecard baseline: points per bin" in page
    registered = json.loads(layout.registered(segment).read_text())
    assert registered["alias"] == "challenger"  # the gate (run_promote) made it champion

    manifest = score.run(settings, segment)
    as_of = scoring_date(settings)
    folder = layout.scores(segment, as_of)
    scores = pl.read_parquet(folder / "scores.parquet")
    for column, dtype in SCORE_COLUMNS.items():
        assert scores.schema[column] == dtype, column
    assert scores.height == manifest["rows_out"] == manifest["rows_in"] > 0
    assert scores["entity_id"].is_unique().all()
    assert scores["score"].min() >= 350
    assert scores["score"].max() <= 950
    assert (scores["limit"] >= 0).all()
    assert scores["limit"].max() <= CAPS[segment]
    assert (scores["model_version"] == registered["version"]).all()
    assert set(scores["band"].unique()) <= {"poor", "fair", "good", "very_good", "excellent"}
    # A higher PD never gets a higher score.
    ordered = scores.sort("pd")
    assert (ordered["score"].diff().drop_nulls() <= 0).all()

    # Idempotent: a rerun for the same date is a no-op unless forced.
    before = (folder / "scores.parquet").stat().st_mtime_ns
    again = score.run(settings, segment)
    assert again["skipped"] is True
    assert (folder / "scores.parquet").stat().st_mtime_ns == before
    forced = score.run(settings, segment, force=True)
    assert "skipped" not in forced
    assert pl.read_parquet(folder / "scores.parquet").equals(scores)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_consent_is_respected(trained_world) -> None:
    settings = trained_world
    layout = Layout(settings.data_dir)
    raw = pl.read_parquet(layout.raw / "merchants.parquet")
    refused = set(raw.filter(~pl.col("consent"))["merchant_id"])
    assert refused, "the world should hold some entities without consent"
    feats = pl.read_parquet(layout.features("merchant"))
    assert refused.isdisjoint(feats["entity_id"])
    score.run(settings, "merchant")
    scores = pl.read_parquet(layout.scores("merchant", scoring_date(settings)) / "scores.parquet")
    assert refused.isdisjoint(scores["entity_id"])
