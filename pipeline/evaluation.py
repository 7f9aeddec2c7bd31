"""The evaluation's acceptance checks, from the metrics the evaluate stage measured."""

from __future__ import annotations

import numpy as np

from models.stability import Levels
from pipeline.config import MonitoringParams


def checks(metrics: dict, monitoring: MonitoringParams, levels: Levels) -> dict[str, dict]:
    """The acceptance limits of ``monitoring`` applied to the test metrics.

    The score's train-to-test PSI passes unless :func:`models.stability.status` calls it an
    ``alert`` at ``levels`` (params.yaml ``drift``), the same rule the promotion gate refuses by;
    without one (cross-validation: one cohort, ``None``) there is no PSI check. In
    cross-validation the metrics are means over folds, and each check also carries the
    standard error of its value (``se``) from ``metrics["se"]``, so a reader sees whether a
    pass or a fail is larger than the folds' noise.
    """
    checks: dict[str, dict] = {
        "ece": {"value": metrics["test"]["ece"], "limit": monitoring.max_ece, "rule": "<"},
    }
    if metrics["stability"]["score_psi_train_test"] is not None:
        checks["score_psi_train_test"] = {
            "value": metrics["stability"]["score_psi_train_test"],
            "limit": levels.alert,
            "rule": "<",
            "status": metrics["stability"]["score_psi_status"],
        }
    checks |= {
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
    se = metrics.get("se")
    if se is not None:
        checks["ece"]["se"] = se["test"]["ece"]
        checks["auc_lift_over_baseline"]["se"] = se["auc_lift_over_baseline"]
        if "auc_gap_to_ceiling" in checks:
            checks["auc_gap_to_ceiling"]["se"] = se["auc_gap_to_ceiling"]
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
