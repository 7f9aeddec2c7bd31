"""Cross-validated evaluation (``split.mode: cv``): every metric as a mean over folds with its SE.

Split from the evaluate stage (:mod:`pipeline.stages.evaluate`), which calls
:func:`measure_cv` instead of its out-of-time measure when the book is cross-validated.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models import evaluate as ev
from models.baseline import BaselineParams, Scorecard
from models.scaling import pd_to_score, score_to_band
from models.scorer import Scorer
from models.train import monotonicity_violations
from pipeline import evaluation
from pipeline.config import Sections

# Why cross-validation reports no population stability index.
CV_STABILITY_NOTE = (
    "not measured: cross-validation draws its held-out folds from the same loans as the training "
    "folds (one cohort), so a train-to-test PSI or CSI would measure sampling noise, not drift; "
    "production drift is still checked at scoring time against the book when the model was built"
)


def measure_cv(
    settings: Sections,
    scorer: Scorer,
    info: dict,
    frame: pl.DataFrame,
    out_of_fold: pl.DataFrame,
    card: Scorecard,
    screens: BaselineParams,
) -> tuple[dict, dict[str, pl.DataFrame], pl.DataFrame]:
    """Cross-validated metrics (mean and SE over folds), the report's tables, the scored loans.

    Every metric of every model is measured on each (repeat, fold) of the out-of-fold PDs and
    averaged; its SE is :func:`models.evaluate.resampled_se`. Differences (lift over the
    scorecard, gap to the ceiling, lift sources) are taken per fold, so their SE is that of
    the paired difference. The report's tables and plots show the first repeat's out-of-fold
    PDs: every labelled loan once, scored by a model that never saw it.
    """
    from models.strategy import cutoff_table

    monitoring = settings.monitoring
    folds = settings.split.folds
    missing = frame.join(out_of_fold, on="loan_id", how="anti").height
    if missing:
        raise ValueError(
            f"expected out-of-fold predictions for every labelled loan; {missing} of "
            f"{frame.height} have none (the features changed since training: run `longtail "
            "train` again)"
        )
    has_truth = "true_pd" in frame.columns and frame["true_pd"].null_count() == 0
    knowable = has_truth and "knowable_log_odds" in frame.columns
    outcome = ["loan_id", "bad", *(["true_pd"] if has_truth else [])]
    outcome += ["knowable_log_odds"] if knowable else []
    long = out_of_fold.join(frame.select(outcome), on="loan_id", how="inner")
    pd_columns = {"test": "pd", "baseline": "baseline_pd", "additive": "additive_pd"}
    if has_truth:
        pd_columns["ceiling"] = "true_pd"
    if knowable:
        pd_columns["knowable"] = "knowable_log_odds"
    per_fold = ev.fold_summaries(long, pd_columns)
    means, ses = ev.cv_means(per_fold, folds)
    # A fold's ECE bins a few dozen loans of a small book: noise even for the true PD. Each
    # repeat's out-of-fold PDs hold every loan once, each calibrated without its own fold, so
    # the ECE is measured on them pooled, averaged over repeats (its se: their spread).
    for label, column in pd_columns.items():
        if label == "knowable":
            continue
        pooled = [
            ev.expected_calibration_error(part["bad"].to_numpy(), part[column].to_numpy())
            for part in long.partition_by("repeat", maintain_order=True)
        ]
        means[label]["ece"] = float(np.mean(pooled))
        ses[label]["ece"] = float(np.std(pooled, ddof=1)) if len(pooled) > 1 else float("nan")
    auc = per_fold.pivot("who", index=["repeat", "fold"], values="auc")

    def paired(a: str, b: str) -> tuple[float, float]:
        diff = (auc[a] - auc[b]).to_numpy()
        return float(np.nanmean(diff)), ev.resampled_se(diff, folds)

    if knowable:
        # The knowable log-odds rank, but are no PD: only their AUC means anything.
        means["ceiling"]["auc_knowable"] = means.pop("knowable")["auc"]
        ses["ceiling"]["auc_knowable"] = ses.pop("knowable")["auc"]
    lift, lift_se = paired("test", "baseline")
    shapes, shapes_se = paired("additive", "baseline")
    interactions, interactions_se = paired("test", "additive")
    se: dict = {
        **ses,
        "auc_lift_over_baseline": lift_se,
        "lift_sources": {"shapes": shapes_se, "interactions": interactions_se},
    }
    if has_truth:
        se["auc_gap_to_ceiling"] = paired("ceiling", "test")[1]

    # Every labelled loan once, with the first repeat's out-of-fold PDs.
    first = out_of_fold.filter(pl.col("repeat") == 0).select(
        "loan_id", "pd", "baseline_pd", "additive_pd"
    )
    test = frame.join(first, on="loan_id", how="left", maintain_order="left")
    scores = pd_to_score(test["pd"].to_numpy(), scorer.scaling)
    test = test.with_columns(
        pl.Series("score", scores), pl.Series("band", score_to_band(scores, scorer.scaling))
    )
    y = test["bad"].to_numpy()
    x = scorer.matrix(frame)
    names = scorer.feature_names
    importance = evaluation.importance(scorer, info)
    metrics: dict = {
        **{k: v for k, v in means.items()},
        "se": se,
        "cv": {
            **info.get("cv", {}),
            "se_rule": (
                "Nadeau-Bengio corrected resampled SE over repeats x folds: "
                "sd x sqrt(1/(repeats x folds) + 1/(folds - 1)); ECE is measured on each "
                "repeat's pooled out-of-fold PDs and its se is the spread over repeats"
            ),
            "calibration": (
                "each fold's PDs calibrated on the other folds' out-of-fold scores; the "
                "registered model's calibrator on every out-of-fold score"
            ),
            "auc_lift_over_baseline": lift,
        },
        "stability": {
            "score_psi_train_test": None,
            "score_psi_status": "not applicable",
            "score_psi_train_valid": None,
            "max_csi_top_features": None,
            "note": CV_STABILITY_NOTE,
        },
        "monotone_violations": monotonicity_violations(
            scorer.booster, x, [s.pd_monotone for s in scorer.specs]
        ),
        "score_resolution": {
            "distinct_scores": int(test["score"].n_unique()),
            "auc_of_score": ev.auc(y, -test["score"].to_numpy().astype(np.float64)),
            "auc_of_pd": ev.auc(y, test["pd"].to_numpy()),
        },
        "scorecard": evaluation.scorecard_record(card, screens, "folds"),
        "lift_sources": {"shapes": shapes, "interactions": interactions},
        "training": {
            "seconds": info.get("train_seconds"),
            "trees": info["best_iteration"],
            "features": len(names),
        },
        "slices": info["slices"],
    }
    # What a calibrated model's ECE would be on the book: each loan once, first repeat's PDs.
    metrics["calibration_null"] = evaluation.calibration_null(test["pd"].to_numpy(), monitoring)
    metrics["checks"] = evaluation.checks(metrics, monitoring, settings.drift.score_levels)
    # Kept for readers of the spine's metrics.json layout: no PSI within one cohort (nan).
    metrics["score_psi_train_test"] = float("nan")

    band_order = [b.name for b in sorted(scorer.scaling.bands, key=lambda b: b.min)]
    report_columns = {"model": "pd", "baseline": "baseline_pd", "additive": "additive_pd"}
    if has_truth:
        report_columns["true_pd"] = "true_pd"
    # Limits as the registered model would grant them; approval by the out-of-fold score.
    limits = scorer.score(test, reasons=False, apply_cutoff=False)["limit"].to_numpy()
    tables = {
        "gains": ev.gains_table(y, test["pd"].to_numpy()),
        "by_band": ev.by_band(test, band_order),
        "by_month": evaluation.by_month(test, report_columns, metrics["test"]["auc"], monitoring),
        "calibration": ev.calibration_bins(y, test["pd"].to_numpy()),
        "csi": pl.DataFrame(schema={"feature": pl.String, "csi": pl.Float64, "status": pl.String}),
        "importance": importance,
        "cutoffs": cutoff_table(scores, y, limits),
        "scorecard_points": card.points_table(scorer.scaling.factor, scorer.scaling.offset),
        "cv_folds": per_fold,
    }
    metrics["auc_drop"] = {
        "limit": monitoring.auc_drop_alert,
        "test_months_below": tables["by_month"]
        .filter(pl.col("auc_alert"))["issue_month"]
        .to_list(),
    }
    return metrics, tables, evaluation.report_rows(test, has_truth)
