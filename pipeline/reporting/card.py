"""The model card: from purpose and intended use to fairness, monitoring and human review.

It holds the purpose, intended use, data, label, features, model, performance, fairness,
limitations, the monitoring plan and the human review route. Written as ``model_card.json``
beside the report and shown in it, built from what the evaluate stage already has: the
segment, the scorer's feature specs, ``training.json`` (``info``), the evaluation metrics
(with ``fairness``), the label, monitoring and drift parameter sections and the score scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from features.catalog import FeatureSpec
    from models.labels import LabelParams
    from models.scaling import ScalingParams
    from pipeline.config import DriftParams, MonitoringParams


def _validation_limitation(label: LabelParams, metrics: dict) -> str:
    if "cv" in metrics:
        return (
            "Cross-validated within the labelled loans (no out-of-time test: the book is too "
            "small or a single cohort): the figures say how well the model ranks loans like "
            "these, not how it holds on later vintages; drift is watched at scoring time only, "
            f"and loans issued in the last {label.performance_months} months have no label yet."
        )
    return (
        "Validated out-of-time on the latest labelled issue months only; loans issued in the "
        f"last {label.performance_months} months have no label yet, so the test slice is at "
        f"least {label.performance_months} months old when the model is trained."
    )


def _limitations(label: LabelParams, metrics: dict) -> list[str]:
    failed = [k for k, c in metrics["checks"].items() if not c["passed"]]
    cv = "cv" in metrics
    limitations = [
        _validation_limitation(label, metrics),
        "Trained only on loans that were granted (no reject inference): applicants unlike past "
        "borrowers are scored by extrapolation.",
        f"The PD is a {label.performance_months}-month probability of {label.dpd_threshold}+ "
        "days past due under the lending conditions of the training months; a change of "
        "product, price or macro conditions breaks it.",
        (
            "Calibration is fitted on the out-of-fold scores; the folds' ECE (each calibrated "
            "without its own loans) shows how well it holds."
            if cv
            else "Calibration is fitted on the validation slice; the test ECE shows how well it "
            "held."
        ),
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
    return limitations


def _intended_use(segment: str, label: LabelParams) -> dict:
    return {
        "use": (
            f"Decision support for lending to {segment}s of the lender's own book: a PD, a "
            "score and band, the reasons behind them and a loan limit, at application or in "
            "batch reviews of the book. A credit officer or an approved rule decides; an "
            "applicant may ask for a human review (see human_review)."
        ),
        "population": (
            f"{segment}s whose transaction log the lender holds and who consented to its use "
            "for credit assessment; applicants unlike past borrowers are scored by "
            "extrapolation"
        ),
        "outcome": (
            f"{label.dpd_threshold}+ days past due within {label.performance_months} months, "
            "or the lender's own outcome definition where it brings an outcomes table (say "
            "which here)"
        ),
        "not_for": [
            "decisions made solely by the model without a route to human review",
            "products, terms or populations other than those it was trained on",
            "employment, insurance, housing or any purpose other than this credit decision",
            "ranking by a protected attribute: gender is never a feature",
        ],
    }


def _fairness(metrics: dict, specs: Sequence[FeatureSpec]) -> dict | None:
    record = metrics.get("fairness")
    if record is None:
        return None
    results = {}
    for name, rec in record["attributes"].items():
        if rec["status"] == "absent":
            results[name] = "absent: the lender does not hold it"
        elif rec.get("adverse_impact_ratio") is None:
            results[name] = rec.get("note", "not judged")
        else:
            results[name] = (
                f"adverse impact ratio {rec['adverse_impact_ratio']:.3f} over "
                f"{rec['judged_groups']} judged groups ({rec['lowest_group']} lowest, "
                f"{rec['highest_group']} highest approval); "
                + ("FLAGGED" if rec["flagged"] else "within the limit")
            )
    demographic = [s.name for s in specs if s.family == "demographic"]
    return {
        "groups_tested": list(record["attributes"]),
        "rows": record["rows"],
        "approval_cutoff": record["cutoff"],
        "results": results,
        "flagged": record["flagged"],
        "limit": (
            f"adverse impact ratio (lowest over highest group approval) at least "
            f"{record['adverse_impact_min']}, groups of {record['min_group_size']}+ loans "
            "judged; the promotion gate refuses a challenger below it or worse than the "
            "champion by more than the tolerance"
        ),
        "features_from_protected_attributes": demographic
        or "none (gender and region are never features)",
    }


def _monitoring(metrics: dict, monitoring: MonitoringParams, drift: DriftParams) -> dict:
    return {
        "score_psi": (
            f"warn at {drift.score_psi_warn}, alert at {drift.score_psi_alert} "
            "(every scoring run, against the book when the model was built)"
        ),
        "feature_csi": (
            f"warn at {drift.feature_csi_warn}, alert at {drift.feature_csi_alert} (every feature)"
        ),
        "auc": (
            f"review when a matured month's AUC is more than {monitoring.auc_drop_alert} "
            f"below {metrics['test']['auc']:.3f}"
        ),
        "calibration": f"review when a matured month's ECE exceeds {2 * monitoring.max_ece}",
        "performance_before_labels": (
            "`longtail monitor`: the expected bad rate and expected AUC of each scored cohort "
            "from its calibrated PDs, saved per scoring date; as labels mature, realised "
            "against expected, vintage curves and roll rates, with an alert when they part "
            "by more than its threshold"
        ),
        "fairness": (
            "adverse impact ratio and calibration by group re-measured at every evaluation "
            "and at every promotion (the gate refuses a breach)"
        ),
    }


HUMAN_REVIEW = {
    "right": (
        "PIPL art. 24 (and GDPR art. 22, the EU AI Act for credit scoring): a person may ask "
        "for an explanation of an automated decision and refuse a decision made solely by "
        "automated means"
    ),
    "route": (
        "every online decision is logged with its score, reasons and limit; the applicant's "
        "review request is filed against it (`POST /decisions/{id}/review` on the online "
        "service, or `longtail review`), and a credit officer re-decides with the logged "
        "reasons in front of them; the outcome is recorded beside the decision"
    ),
    "explanation": "the reason codes and sub-scores returned with every decision",
}


def model_card(
    segment: str,
    specs: Sequence[FeatureSpec],
    info: dict,
    metrics: dict,
    *,
    label: LabelParams,
    monitoring: MonitoringParams,
    drift: DriftParams,
    calibration: str,
    scaling: ScalingParams,
) -> dict:
    """The model card as a JSON-ready dict.

    ``specs`` are the scorer's feature specs, ``info`` its ``training.json`` (slices, catalog
    hash, best iteration, monotone count), ``metrics`` the evaluation metrics (with checks,
    scorecard and score resolution); ``calibration`` names the calibration method.
    """
    dims: dict[str, int] = {}
    for spec in specs:
        dims[spec.dimension] = dims.get(spec.dimension, 0) + 1
    cv = metrics.get("cv")
    data: dict = {"slices": info["slices"], "catalog_hash": info["catalog_hash"]}
    model_extra: dict = {}
    if cv is not None:
        data["validation"] = (
            f"{cv['repeats']} x {cv['folds']}-fold cross-validation grouped by entity and "
            "stratified by its bads, on every labelled loan"
        )
        model_extra = {
            "calibrated_on": "on the out-of-fold raw scores",
            "rounds_rule": cv.get("rounds_rule"),
        }
    card = {
        "segment": segment,
        "purpose": (
            f"Probability that a {segment} loan reaches {label.dpd_threshold}+ days past due "
            f"within {label.performance_months} months of issue, turned into a "
            f"{scaling.min_score}-{scaling.max_score} score, "
            "a band and a loan limit for long-tail lending decisions."
        ),
        "intended_use": _intended_use(segment, label),
        "data": data,
        "label": {
            "definition": (
                f"bad when any instalment is {label.dpd_threshold}+ days past due within "
                f"{label.performance_months} months of issue; loans whose window has not closed "
                "are indeterminate and excluded; an instalment paid short by more than "
                f"{label.partial_payment_tolerance} (the log's currency) counts as unpaid; a "
                "lender's outcomes table overrides the repayment log for the loans it names"
            ),
            **label.model_dump(),
        },
        "features": {
            "count": len(specs),
            "monotone_constrained": info.get("monotone_constrained"),
            "by_dimension": dims,
        },
        "model": {
            "algorithm": (
                "LightGBM binary, monotone-constrained, fitted on every labelled loan with the "
                "rounds the folds chose"
                if cv is not None
                else "LightGBM binary, monotone-constrained, early-stopped on validation"
            ),
            "calibration": calibration,
            "trees": info["best_iteration"],
            "baseline": metrics["scorecard"]["description"],
            "additive_reference": (
                "LightGBM with one feature per tree (no interactions), same features, "
                "constraints and slices: a diagnostic, not registered"
            ),
            **model_extra,
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
        "limitations": _limitations(label, metrics),
        "monitoring": _monitoring(metrics, monitoring, drift),
        "human_review": HUMAN_REVIEW,
    }
    fairness = _fairness(metrics, specs)
    if fairness is not None:
        card["fairness"] = fairness
    if cv is not None:
        card["performance_se"] = {
            who: {k: metrics["se"][key][k] for k in ("auc", "gini", "ks", "brier", "ece")}
            for who, key in (("model", "test"), ("baseline", "baseline"), ("additive", "additive"))
            if key in metrics["se"]
        }
    return card
