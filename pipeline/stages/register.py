"""Stage ``register``: the trained Scorer as a new MLflow model version, alias ``challenger``."""

from __future__ import annotations

import json
import logging

import numpy as np

from models.scorer import Scorer
from models.split import TEST, TRAIN, VALID
from pipeline import registry
from pipeline.artifacts import read_training
from pipeline.config import Sections, uses
from pipeline.storage import Layout, require, write_json

log = logging.getLogger(__name__)
PARAMS = ("mlflow",)


def registration_tags(layout: Layout, segment: str, info: dict) -> dict[str, object]:
    """Model-version tags: data windows, catalog hash, git commit, feature count, metrics."""
    slices = info.get("slices", {})

    def window(name: str) -> str:
        part = slices.get(name)
        return f"{part['first_month']}..{part['last_month']}" if part else "unknown"

    tags: dict[str, object] = {
        "segment": segment,
        "data_window_train": window(TRAIN),
        "data_window_valid": window(VALID),
        "data_window_test": window(TEST),
        "catalog_hash": info.get("catalog_hash", "unknown"),
        "git_commit": registry.git_commit(),
        "n_features": len(info.get("features", [])),
        "train_run_id": info["run_id"],
    }
    metrics_path = layout.metrics(segment)
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        for key in ("auc", "gini", "ks", "brier", "ece"):
            value = metrics.get("test", {}).get(key)
            if isinstance(value, float) and np.isfinite(value):
                tags[f"test_{key}"] = round(value, 6)
        psi = metrics.get("stability", {}).get(
            "score_psi_train_test", metrics.get("score_psi_train_test")
        )
        if isinstance(psi, float) and np.isfinite(psi):
            tags["score_psi_train_test"] = round(psi, 6)
    return tags


@uses(*PARAMS)
def run(settings: Sections, segment: str, alias: str = registry.CHALLENGER) -> dict:
    """Log the saved Scorer as a pyfunc to its training run, register a version, set the alias.

    A new version is only ever a ``challenger``: it becomes ``champion`` through
    :func:`pipeline.stages.promote.run`, the gate. Tags record the data windows, catalog
    hash, git commit and
    the evaluation metrics.
    """
    layout = Layout(settings.data_dir)
    folder = require(layout.model(segment), "train")
    scorer = Scorer.load(folder)
    info = read_training(folder)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    tags = registration_tags(layout, segment, info)
    uri, version = registry.log_scorer(scorer, folder, info["run_id"], tags)
    registry.set_alias(segment, alias, version)
    record = {
        "model_name": registry.model_name(segment),
        "version": version,
        "alias": alias,
        "run_id": info["run_id"],
        "model_uri": uri,
        "tags": {k: str(v) for k, v in tags.items()},
    }
    write_json(record, layout.registered(segment))
    log.info("registered %s", record)
    return record
