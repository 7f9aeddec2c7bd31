"""Population drift: a reference distribution saved beside a model, and PSI/CSI against it.

At train time :func:`write_reference` saves, beside the Scorer, each feature's quantile bin
edges and the share of reference rows in each bin (plus a bin for missing values), and the same
for the score; the reference rows are the whole book when the model was built. At scoring time
:func:`assess` bins the scored population on those same edges and reports the score PSI and
each feature's CSI (the same formula applied to one feature), with the status of
:func:`models.stability.status` (``ok``, ``warning``, ``alert``) at the levels of params.yaml
``drift:``, the same index and rule as the evaluation report and the promotion gate.

Missing values get their own bin: a feature that suddenly goes missing is drift too.
The reference is plain JSON (no pickles) and travels with the registered model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models import stability
from pipeline.config import DriftParams

REFERENCE_FILE = "reference.json"


def reference_profile(
    x: np.ndarray, feature_names: Sequence[str], scores: np.ndarray, *, bins: int
) -> dict:
    """A reference distribution: per-feature and score bin edges and shares, plus row count."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(feature_names):
        raise ValueError(
            f"expected a matrix with {len(feature_names)} feature columns; got shape {x.shape}"
        )
    return {
        "bins": bins,
        "rows": int(x.shape[0]),
        "features": list(feature_names),
        "score": stability.profile(np.asarray(scores, dtype=float), bins),
        "feature_bins": {
            name: stability.profile(x[:, j], bins) for j, name in enumerate(feature_names)
        },
    }


def write_reference(
    folder: Path,
    x_reference: np.ndarray,
    feature_names: Sequence[str],
    reference_scores: np.ndarray,
    *,
    bins: int = 10,
) -> Path:
    """Save a reference distribution as ``reference.json`` in a model folder.

    The train stage saves the whole book's distribution when the model was built.
    """
    path = folder / REFERENCE_FILE
    payload = reference_profile(x_reference, feature_names, reference_scores, bins=bins)
    path.write_text(json.dumps(payload, indent=1))
    return path


def read_reference(folder: Path) -> dict | None:
    """The reference saved beside a Scorer, or None for a model saved before references."""
    path = folder / REFERENCE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def assess(
    reference: dict,
    scores: np.ndarray,
    x: np.ndarray | None,
    feature_names: Sequence[str],
    params: DriftParams,
) -> dict:
    """Score PSI and feature CSI of a scored population against the model's drift reference.

    The reference is the book when the model was built, saved beside it by the train stage.

    ``x`` is the scored feature matrix in ``feature_names`` order (None: score PSI only).
    Returns the indices, the thresholds, the features above each threshold and the overall
    status (the worst of the score's and the features').
    """
    score_psi = stability.against(reference["score"], scores)
    csi: dict[str, float] = {}
    if x is not None:
        for j, name in enumerate(feature_names):
            ref = reference.get("feature_bins", {}).get(name)
            if ref is not None:
                csi[name] = round(stability.against(ref, x[:, j]), 6)
    score_status = stability.status(score_psi, params.score_levels)
    feature_status = {n: stability.status(v, params.feature_levels) for n, v in csi.items()}
    return {
        "status": stability.worst([score_status, *feature_status.values()]),
        "score_psi": round(score_psi, 6),
        "score_status": score_status,
        "feature_csi": csi,
        "features_warning": sorted(n for n, s in feature_status.items() if s == "warning"),
        "features_alert": sorted(n for n, s in feature_status.items() if s == "alert"),
        "thresholds": {
            "score_psi_warn": params.score_psi_warn,
            "score_psi_alert": params.score_psi_alert,
            "feature_csi_warn": params.feature_csi_warn,
            "feature_csi_alert": params.feature_csi_alert,
        },
    }


def reference_from_scores(scores: np.ndarray, bins: int) -> dict:
    """A score-only reference, for models saved before ``reference.json`` existed."""
    return {"bins": bins, "rows": len(scores), "score": stability.profile(scores, bins)}
