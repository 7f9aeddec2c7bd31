"""Helpers the score stage owns: the feature-list check, manifest parts, the drift verdict."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

from features.contract.segments import segment as segment_named
from pipeline.storage import Layout

SCORES_FILE = "scores.parquet"
MANIFEST_FILE = "manifest.json"
DRIFT_EXIT_CODE = 3
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class FeatureMismatch(ValueError):
    """The model's feature list is not the one this code builds: scoring is refused."""


def check_feature_list(model_features: list[str], built_features: list[str], segment: str) -> None:
    """Refuse a model whose ordered feature list is not the one the catalog builds."""
    if list(model_features) == list(built_features):
        return
    missing = [f for f in model_features if f not in built_features]
    extra = [f for f in built_features if f not in model_features]
    detail = (
        f"the model needs {missing[:10]} which this code does not build; "
        if missing
        else "the order differs; "
    )
    if extra:
        detail += f"this code builds {extra[:10]} which the model never saw; "
    raise FeatureMismatch(
        f"expected the model's {len(model_features)} features to match the {segment} catalog's "
        f"{len(built_features)}; {detail}refusing to score (register and promote a model "
        "trained on this catalog, or pass --model-uri)"
    )


def check_catalog_hash(trained: str | None, built: str, segment: str) -> None:
    """Refuse a model trained on features built under other definitions than today's.

    The catalog hash covers the features' metadata and their definition basis (repayment
    rules, money levels), which change what a feature computes without changing its name. A
    model saved without a hash (before it was recorded) is checked by its feature list only.
    """
    if trained is None or trained == built:
        return
    raise FeatureMismatch(
        f"expected the model's {segment} catalog hash {trained}; got {built} from this code and "
        "params (same feature names, other definitions: repayment rules, windows or money "
        "levels changed since training); refusing to score (retrain, register and promote, or "
        "restore the params the model was trained with)"
    )


def write_scores(scores: pl.DataFrame, folder: Path) -> None:
    """Write the scores file (a seam for crash-injection tests)."""
    scores.write_parquet(folder / SCORES_FILE)


def write_manifest(manifest: dict, folder: Path) -> None:
    """Write the manifest, last, so a folder with a manifest is a finished one."""
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))


def excluded_counts(layout: Layout, segment: str, as_of: dt.date) -> dict[str, int]:
    """Entities not scored and why: no consent (from validation), not yet onboarded at as_of."""
    seg = segment_named(segment)
    counts: dict[str, int] = {}
    summary_path = layout.quarantine / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        counts["no_consent"] = int(summary.get("consent_excluded", {}).get(seg.entity_table, 0))
    counts["not_yet_onboarded"] = int(
        pl.scan_parquet(layout.validated / f"{seg.entity_table}.parquet")
        .filter(pl.col(seg.since) >= as_of)
        .select(pl.len())
        .collect()
        .item()
    )
    return counts


def score_distribution(scores: pl.DataFrame) -> dict:
    """Band counts, mean and quantiles of the score, and the approval count (limit > 0)."""
    if scores.height == 0:
        return {"bands": {}, "mean": None, "quantiles": {}, "approved": 0}
    values = scores["score"].to_numpy()
    return {
        "bands": dict(scores["band"].value_counts().sort("band").iter_rows()),
        "mean": round(float(values.mean()), 3),
        "quantiles": {
            f"p{round(q * 100)}": float(np.quantile(values, q, method="lower")) for q in QUANTILES
        },
        "approved": int((scores["limit"] > 0).sum()),
    }


def drift_failed(manifest: dict, fail_on: str) -> bool:
    """Whether a manifest's drift should fail the run (exit code 3) under ``drift.fail_on``."""
    report = manifest.get("drift", {})
    if fail_on == "score":
        return report.get("score_status") == "alert"
    if fail_on == "any":
        return report.get("status") == "alert"
    return False
