"""The evaluation's acceptance checks and the pieces both evaluation modes share.

The evaluate stage (:mod:`pipeline.stages.evaluate`) measures out-of-time, and
:mod:`pipeline.evaluation_cv` cross-validated; both build their metrics with the helpers here
(the month table, the scorecard record, the importance table, the calibration null) and judge
them with :func:`checks`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models import evaluate as ev
from models.baseline import BaselineParams, Scorecard
from models.scorer import Scorer
from models.stability import Levels
from pipeline.config import MonitoringParams

# The seed of the calibration null's Bernoulli draws: fixed, so the same PDs give the same limit.
ECE_NULL_SEED = 20240601


def checks(metrics: dict, monitoring: MonitoringParams, levels: Levels) -> dict[str, dict]:
    """The acceptance limits of ``monitoring`` applied to the test metrics.

    The score's train-to-test PSI passes unless :func:`models.stability.status` calls it an
    ``alert`` at ``levels`` (params.yaml ``drift``), the same rule the promotion gate refuses by;
    without one (cross-validation: one cohort, ``None``) there is no PSI check. In
    cross-validation the metrics are means over folds, and each check also carries the
    standard error of its value (``se``) from ``metrics["se"]``, so a reader sees whether a
    pass or a fail is larger than the folds' noise. The ECE check is size-aware
    (:func:`ece_check`).
    """
    checks: dict[str, dict] = {"ece": ece_check(metrics, monitoring)}
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


def ece_check(metrics: dict, monitoring: MonitoringParams) -> dict:
    """The calibration check, aware of the book's size.

    ``monitoring.max_ece`` is a fixed limit, but on a small book even the true PD's ECE exceeds
    it by sampling noise alone (0.013 on a 2,000-loan world). So the ECE fails only when it
    exceeds both the fixed limit and the upper ``ece_null_quantile`` of the ECE a perfectly
    calibrated model would show on these loans (``metrics["calibration_null"]``, from
    :func:`models.evaluate.ece_null`): the limit is the larger of the two, and ``limit_from``
    says which one it was. On a large book the null quantile is far under the fixed limit and
    the check is the fixed one, as before.
    """
    null = metrics.get("calibration_null")
    check: dict = {
        "value": metrics["test"]["ece"],
        "limit": monitoring.max_ece,
        "rule": "<",
        "fixed_limit": monitoring.max_ece,
        "limit_from": "max_ece",
    }
    if null is not None and np.isfinite(null["ece_quantile"]):
        check["null_quantile"] = null["ece_quantile"]
        if null["ece_quantile"] > monitoring.max_ece:
            check["limit"] = null["ece_quantile"]
            check["limit_from"] = (
                f"the null's q{round(100 * null['quantile'])}: the ECE a calibrated model "
                f"shows on {null['loans']:,} loans"
            )
    return check


def calibration_null(pd_: np.ndarray, monitoring: MonitoringParams) -> dict[str, float]:
    """The ECE a calibrated model shows on these loans (:func:`models.evaluate.ece_null`)."""
    return ev.ece_null(
        pd_,
        quantile=monitoring.ece_null_quantile,
        draws=monitoring.ece_null_draws,
        seed=ECE_NULL_SEED,
    )


def by_month(
    frame: pl.DataFrame, pd_columns: dict[str, str], test_auc: float, monitoring: MonitoringParams
) -> pl.DataFrame:
    """Metrics per issue month, with ``auc_alert`` on the months a review would be called for.

    A month's model AUC more than ``monitoring.auc_drop_alert`` below the test slice's is the
    monitoring plan's review trigger (the model card states it); on the evaluated months it
    shows whether the test AUC hides a weak month.
    """
    months = (
        ev.by_group(frame, "issue_month", pd_columns)
        .join(frame.group_by("issue_month").agg(pl.col("slice").first()), on="issue_month")
        .sort("issue_month")
    )
    return months.with_columns(
        (pl.col("model_auc") < test_auc - monitoring.auc_drop_alert).alias("auc_alert")
    )


def scorecard_record(card: Scorecard, screens: BaselineParams, slices: str) -> dict:
    """The scorecard baseline as the metrics describe it."""
    return {
        "description": (
            f"WoE logistic scorecard on the same candidate features and {slices}: "
            f"{len(card.characteristics)} characteristics with IV >= {screens.min_iv}, "
            f"WoE correlation <= {screens.max_corr}, bins merged until the WoE is monotone in "
            "the catalog's direction, every coefficient agreeing in sign with its WoE"
        ),
        "characteristics": list(card.characteristics),
        "information_value": dict(zip(card.features, card.iv, strict=True)) if card.iv else {},
    }


def importance(scorer: Scorer, info: dict) -> pl.DataFrame:
    """Each feature's dimension and share of the split gain, largest first."""
    names = scorer.feature_names
    return pl.DataFrame(
        {
            "feature": names,
            "dimension": [s.dimension for s in scorer.specs],
            "gain_share": [info["importance"].get(n, 0.0) for n in names],
        }
    ).sort("gain_share", descending=True, maintain_order=True)


def report_rows(test: pl.DataFrame, has_truth: bool) -> pl.DataFrame:
    """The evaluated rows the report plots: who, when, the label and each model's PD and score."""
    return test.select(
        "entity_id",
        "as_of",
        "bad",
        "pd",
        "baseline_pd",
        "score",
        "band",
        *(["true_pd"] if has_truth else []),
    )
