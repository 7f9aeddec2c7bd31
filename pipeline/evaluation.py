"""The evaluation's verdicts and its model card, from the metrics the evaluate stage measured."""

from __future__ import annotations

import numpy as np

from models.labels import LabelParams
from models.scorer import Scorer
from models.stability import Levels
from pipeline.config import DriftParams, MonitoringParams


def checks(metrics: dict, monitoring: MonitoringParams, levels: Levels) -> dict[str, dict]:
    """The acceptance limits of ``monitoring`` applied to the test metrics.

    The score's train-to-test PSI passes unless :func:`models.stability.status` calls it an
    ``alert`` at ``levels`` (params.yaml ``drift``), the same rule the promotion gate refuses by.
    """
    checks = {
        "ece": {"value": metrics["test"]["ece"], "limit": monitoring.max_ece, "rule": "<"},
        "score_psi_train_test": {
            "value": metrics["stability"]["score_psi_train_test"],
            "limit": levels.alert,
            "rule": "<",
            "status": metrics["stability"]["score_psi_status"],
        },
        "auc_lift_over_baseline": {
            "value": metrics["test"]["auc"] - metrics["baseline"]["auc"],
            "limit": monitoring.min_auc_lift,
            "rule": ">=",
        },
        "monotone_violations": {
            "value": float(len(metrics["monotone_violations"])),
            "limit": 0.0,
            "rule": "<=",
        },
    }
    if "ceiling" in metrics:
        checks["auc_gap_to_ceiling"] = {
            "value": metrics["ceiling"]["auc"] - metrics["test"]["auc"],
            "limit": monitoring.max_ceiling_gap,
            "rule": "<=",
        }
    for check in checks.values():
        value, limit = check["value"], check["limit"]
        check["passed"] = bool(
            np.isfinite(value)
            and (
                value < limit
                if check["rule"] == "<"
                else value >= limit
                if check["rule"] == ">="
                else value <= limit
            )
        )
    return checks


def model_card(
    segment: str,
    scorer: Scorer,
    info: dict,
    metrics: dict,
    *,
    label: LabelParams,
    monitoring: MonitoringParams,
    drift: DriftParams,
    calibration: str,
) -> dict:
    """The model card: purpose, data, label, features, performance, limits, monitoring."""
    dims: dict[str, int] = {}
    for spec in scorer.specs:
        dims[spec.dimension] = dims.get(spec.dimension, 0) + 1
    failed = [k for k, c in metrics["checks"].items() if not c["passed"]]
    limitations = [
        "Validated out-of-time on the latest labelled issue months only; loans issued in the "
        f"last {label.performance_months} months have no label yet, so the test slice is at "
        f"least {label.performance_months} months old when the model is trained.",
        "Trained only on loans that were granted (no reject inference): applicants unlike past "
        "borrowers are scored by extrapolation.",
        "The PD is a 12-month probability of 90+ days past due under the lending conditions "
        "of the training months; a change of product, price or macro conditions breaks it.",
        "Calibration is fitted on the validation slice; the test ECE shows how well it held.",
    ]
    if failed:
        limitations.append(f"Acceptance checks not met on this data: {', '.join(failed)}.")
    if "ceiling" not in metrics:
        limitations.append("No true PD available: the gap to the best possible model is unknown.")
    elif "auc_knowable" in metrics["ceiling"]:
        c = metrics["ceiling"]
        limitations.append(
            f"On this synthetic world the true PD reaches AUC {c['auc']:.3f}; what the log "
            f"could reveal at issue reaches {c['auc_knowable']:.3f}, the model "
            f"{metrics['test']['auc']:.3f}."
        )
    m, d = monitoring, drift
    return {
        "segment": segment,
        "purpose": (
            f"Probability that a {segment} loan reaches {label.dpd_threshold}+ days past due "
            f"within {label.performance_months} months of issue, turned into a 350-950 score, "
            "a band and a loan limit for long-tail lending decisions."
        ),
        "data": {"slices": info["slices"], "catalog_hash": info["catalog_hash"]},
        "label": {
            "definition": (
                f"bad when any instalment is {label.dpd_threshold}+ days past due within "
                f"{label.performance_months} months of issue; loans whose window has not closed "
                "are indeterminate and excluded; an instalment paid short by more than "
                f"{label.partial_payment_tolerance} yuan counts as unpaid; a lender's outcomes "
                "table overrides the repayment log for the loans it names"
            ),
            **label.model_dump(),
        },
        "features": {
            "count": len(scorer.specs),
            "monotone_constrained": info.get("monotone_constrained"),
            "by_dimension": dims,
        },
        "model": {
            "algorithm": "LightGBM binary, monotone-constrained, early-stopped on validation",
            "calibration": calibration,
            "trees": info["best_iteration"],
            "baseline": metrics["scorecard"]["description"],
            "additive_reference": (
                "LightGBM with one feature per tree (no interactions), same features, "
                "constraints and slices: a diagnostic, not registered"
            ),
        },
        "performance": {
            who: {k: metrics[key][k] for k in ("auc", "gini", "ks", "brier", "ece")}
            for who, key in (
                ("model", "test"),
                ("baseline", "baseline"),
                ("additive", "additive"),
                ("ceiling", "ceiling"),
            )
            if key in metrics
        },
        "score_resolution": metrics["score_resolution"],
        "limitations": limitations,
        "monitoring": {
            "score_psi": (
                f"warn at {d.score_psi_warn}, alert at {d.score_psi_alert} "
                "(every scoring run, vs training)"
            ),
            "feature_csi": (
                f"warn at {d.feature_csi_warn}, alert at {d.feature_csi_alert} (every feature)"
            ),
            "auc": (
                f"review when a matured month's AUC is more than {m.auc_drop_alert} below "
                f"{metrics['test']['auc']:.3f}"
            ),
            "calibration": f"review when a matured month's ECE exceeds {2 * m.max_ece}",
        },
    }
