"""The evaluation's acceptance checks, from the metrics the evaluate stage measured."""

from __future__ import annotations

import numpy as np

from models.stability import Levels
from pipeline.config import MonitoringParams


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
        if "status" in check:  # a stability index: the one status rule decides
            check["passed"] = check["status"] != "alert"
            continue
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
