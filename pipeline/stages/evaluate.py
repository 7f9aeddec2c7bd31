"""Stage ``evaluate``: the saved models out-of-time, the report folder, the MLflow run's metrics.

It only reads what the train stage saved (the Scorer, the scorecard baseline, the additive
reference; in ``split.mode: cv`` the out-of-fold PDs) and the features stage's training
features: nothing is trained here. Out-of-time, the metrics are those of the test slice; in
cross-validation every metric is the mean over the repeats' folds with its standard error
(``se`` in metrics.json), and the acceptance checks judge the means. The whole
report folder (``metrics.json``, ``model_card.json``, CSV tables, ``plots/``, ``report.html``)
is published in one rename.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from models import evaluate as ev
from models import stability
from models.baseline import BASELINE_FILE, BaselineParams, Scorecard
from models.calibrate import Calibrator
from models.fairness import table as fairness_table
from models.scaling import pd_to_score, score_to_band
from models.scorer import Scorer
from models.split import TEST, TRAIN, VALID
from models.train import monotonicity_violations
from pipeline import evaluation, fairness, inputs, registry, reporting
from pipeline.artifacts import AdditiveReference, read_out_of_fold, read_training
from pipeline.config import Sections, uses
from pipeline.evaluation_cv import measure_cv
from pipeline.reporting import Section
from pipeline.storage import Layout, publishing, require, write_csv, write_json

log = logging.getLogger(__name__)
PARAMS = ("split", "model", "monitoring", "fairness", "drift", "label", "mlflow")


@uses(*PARAMS)
def run(
    settings: Sections,
    segment: str,
    extra_sections: Sequence[Section] = (),
) -> dict:
    """Evaluate the saved Scorer, the baseline and the additive reference out-of-time.

    Publishes data/reports/<segment>/ (``metrics.json``: headline figures and checks, for DVC;
    ``model_card.json``; CSV tables: gains, by month, by band, calibration, CSI, importance,
    cut-offs, scorecard points; ``plots/*.png`` and the self-contained ``report.html``) and logs
    it to the training run in MLflow. ``extra_sections`` are report sections (plain text and a
    table, escaped by the template) appended after the stage's own.

    ``metrics.json`` also holds ``fairness`` (:func:`pipeline.fairness.measure`: approval,
    adverse impact ratio, TPR/FPR gaps and calibration by group, at the model's approval
    cut-off, on the test loans; out-of-fold in cross-validation) and ``calibration_null`` (the
    ECE a calibrated model shows on as many loans, which the ECE check is judged beside).
    """
    layout = Layout(settings.data_dir)
    folder = require(layout.model(segment), "train")
    scorer = Scorer.load(folder)
    info = read_training(folder)
    additive = AdditiveReference.load(folder)
    baseline = json.loads((folder / BASELINE_FILE).read_text())
    card = Scorecard.from_dict(baseline["scorecard"])
    card_calibrator = Calibrator.from_dict(baseline["calibrator"])
    # The screens the card was built with (cards saved before they were kept: today's params).
    screens = BaselineParams.model_validate(
        baseline.get("params", settings.model.baseline.model_dump())
    )
    frame = inputs.sliced(layout, segment, settings.split)
    if settings.split.mode == "cv":
        metrics, tables, test = measure_cv(
            settings, scorer, info, frame, read_out_of_fold(folder), card, screens
        )
    else:
        metrics, tables, test = _measure(
            settings, scorer, info, frame, additive, card, card_calibrator, screens
        )
    metrics = {"segment": segment, **metrics}
    metrics["fairness"] = fairness.measure(
        layout, segment, test, scorer.policy.approval_cutoff, settings.fairness
    )
    fair_check = fairness.check(metrics["fairness"])
    if fair_check is not None:
        metrics["checks"]["adverse_impact_ratio"] = fair_check
    tables["fairness"] = fairness_table(metrics["fairness"])
    model_card = reporting.model_card(
        segment,
        scorer.specs,
        info,
        metrics,
        label=settings.label,
        monitoring=settings.monitoring,
        drift=settings.drift,
        calibration=settings.model.calibration,
        scaling=scorer.scaling,
    )
    out = layout.report(segment)
    with publishing(out) as tmp:
        write_json(metrics, tmp / "metrics.json")
        write_json(model_card, tmp / "model_card.json")
        for name, table in tables.items():
            write_csv(table, tmp / f"{name}.csv")
        sections = [reporting.fairness_section(metrics["fairness"]), *extra_sections]
        _write_report(tmp, segment, metrics, model_card, test, tables, scorer, sections)
    _log_to_run(settings, info["run_id"], metrics, out)
    log.info("evaluated %s: %s", segment, metrics["test"])
    return metrics


def _measure(
    settings: Sections,
    scorer: Scorer,
    info: dict,
    frame: pl.DataFrame,
    additive: AdditiveReference,
    card: Scorecard,
    card_calibrator: Calibrator,
    screens: BaselineParams,
) -> tuple[dict, dict[str, pl.DataFrame], pl.DataFrame]:
    """The metrics, the report's tables and the scored test slice."""
    from models.strategy import scorer_cutoff_table

    monitoring = settings.monitoring
    x = scorer.matrix(frame)
    pd_all = scorer.calibrator.predict(scorer.booster.predict(x, raw_score=True))
    scores = pd_to_score(pd_all, scorer.scaling)
    frame = frame.with_columns(
        pl.Series("pd", pd_all),
        pl.Series("baseline_pd", card_calibrator.predict(card.log_odds(x))),
        pl.Series("additive_pd", additive.predict_pd(x)),
        pl.Series("score", scores),
        pl.Series("band", score_to_band(scores, scorer.scaling)),
    )
    has_truth = "true_pd" in frame.columns and frame["true_pd"].null_count() == 0
    is_test = (frame["slice"] == TEST).to_numpy()
    is_train = (frame["slice"] == TRAIN).to_numpy()
    test = frame.filter(pl.col("slice") == TEST)
    y = test["bad"].to_numpy()
    pd_columns = {"model": "pd", "baseline": "baseline_pd", "additive": "additive_pd"}
    if has_truth:
        pd_columns["true_pd"] = "true_pd"
    # "test" is the model on the test slice; "baseline" and "ceiling" (the true PD, synthetic
    # worlds only) are measured on the same loans.
    test_metrics = {
        {"model": "test", "true_pd": "ceiling"}.get(label, label): ev.summary(
            y, test[col].to_numpy()
        )
        for label, col in pd_columns.items()
    }
    if has_truth and test.get_column("knowable_log_odds", default=None) is not None:
        # The AUC of what the log could reveal (no hidden part, no macro after issue): the part
        # of the gap to the ceiling that better features or more data could still close.
        test_metrics["ceiling"]["auc_knowable"] = ev.auc(y, test["knowable_log_odds"].to_numpy())
    valid = frame.filter(pl.col("slice") == VALID)
    names = scorer.feature_names
    importance = evaluation.importance(scorer, info)
    top = importance.head(monitoring.top_features)["feature"].to_list()
    top_idx = [names.index(f) for f in top]
    csi = stability.csi(
        x[is_train][:, top_idx],
        x[is_test][:, top_idx],
        top,
        settings.drift.feature_levels,
        bins=settings.drift.bins,
    )
    violations = monotonicity_violations(
        scorer.booster, x[is_test], [s.pd_monotone for s in scorer.specs]
    )
    train_scores = scores[is_train]
    score_psi = stability.psi(train_scores, test["score"].to_numpy(), bins=settings.drift.bins)
    metrics: dict = {
        **test_metrics,
        "valid": ev.summary(valid["bad"].to_numpy(), valid["pd"].to_numpy()),
        "stability": {
            "score_psi_train_test": score_psi,
            "score_psi_status": stability.status(score_psi, settings.drift.score_levels),
            "score_psi_train_valid": stability.psi(
                train_scores, valid["score"].to_numpy(), bins=settings.drift.bins
            ),
            "max_csi_top_features": float(csi["csi"].max()) if csi.height else 0.0,
        },
        "monotone_violations": violations,
        # The integer score is what lenders cut on: how many distinct scores the test loans get
        # and how much ranking survives the rounding (a calibration with plateaus loses some).
        "score_resolution": {
            "distinct_scores": int(test["score"].n_unique()),
            "auc_of_score": ev.auc(y, -test["score"].to_numpy().astype(np.float64)),
            "auc_of_pd": test_metrics["test"]["auc"],
        },
        "scorecard": evaluation.scorecard_record(card, screens, "slices"),
        # Where the lift over the scorecard comes from: an additive model on every feature
        # (finer shapes than binned WoE, and the characteristics the card leaves out: additive
        # LightGBM minus scorecard) and interactions (model minus additive).
        "lift_sources": {
            "shapes": test_metrics["additive"]["auc"] - test_metrics["baseline"]["auc"],
            "interactions": test_metrics["test"]["auc"] - test_metrics["additive"]["auc"],
        },
        "training": {
            "seconds": info.get("train_seconds"),
            "trees": info["best_iteration"],
            "features": len(names),
        },
        "slices": info["slices"],
    }
    metrics["calibration_null"] = evaluation.calibration_null(test["pd"].to_numpy(), monitoring)
    metrics["checks"] = evaluation.checks(metrics, monitoring, settings.drift.score_levels)
    # Kept for readers of the spine's metrics.json layout.
    metrics["score_psi_train_test"] = metrics["stability"]["score_psi_train_test"]

    band_order = [b.name for b in sorted(scorer.scaling.bands, key=lambda b: b.min)]
    tables = {
        "gains": ev.gains_table(y, test["pd"].to_numpy()),
        "by_band": ev.by_band(test, band_order),
        "by_month": evaluation.by_month(frame, pd_columns, metrics["test"]["auc"], monitoring),
        "calibration": ev.calibration_bins(y, test["pd"].to_numpy()),
        "csi": csi,
        "importance": importance,
        # What each approval cut-off would mean on the test slice: approvals, bad rate, limits.
        "cutoffs": scorer_cutoff_table(scorer, test, y),
        # The baseline as a signable scorecard: points per bin on the model's score scale.
        "scorecard_points": card.points_table(scorer.scaling.factor, scorer.scaling.offset),
    }
    # The monitoring plan's review trigger, applied to the evaluated months (model card).
    metrics["auc_drop"] = {
        "limit": monitoring.auc_drop_alert,
        "test_months_below": tables["by_month"]
        .filter(pl.col("auc_alert") & (pl.col("slice") == TEST))["issue_month"]
        .to_list(),
    }
    return metrics, tables, evaluation.report_rows(test, has_truth)


def _write_report(
    folder: Path,
    segment: str,
    metrics: dict,
    model_card: dict,
    test: pl.DataFrame,
    tables: dict[str, pl.DataFrame],
    scorer: Scorer,
    extra_sections: Sequence[Section],
) -> None:
    """The plots and report.html, with the cut-off and scorecard sections this stage owns."""
    reporting.write_report(
        folder,
        reporting.ReportInputs(
            segment=segment,
            metrics=metrics,
            card=model_card,
            test=test,
            tables=tables,
            bands=[(b.name, b.label, b.min, b.max) for b in scorer.scaling.bands],
        ),
        [*reporting.standard_sections(tables, metrics), *extra_sections],
    )


def _log_to_run(settings: Sections, run_id: str, metrics: dict, out: Path) -> None:
    """Log the headline metrics, the checks (as tags) and the report folder to the run."""
    import mlflow

    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_id=run_id):
        test_metrics = {
            k: metrics[k] for k in ("test", "baseline", "additive", "ceiling") if k in metrics
        }
        flat = {
            f"{who}_{k}": v
            for who, values in test_metrics.items()
            for k, v in values.items()
            if isinstance(v, float)
        }
        flat |= {k: v for k, v in metrics["stability"].items() if isinstance(v, float)}
        mlflow.log_metrics({k: float(v) for k, v in flat.items() if np.isfinite(v)})
        mlflow.set_tags(
            {f"check.{k}": "pass" if c["passed"] else "fail" for k, c in metrics["checks"].items()}
        )
        mlflow.log_artifacts(str(out), artifact_path="report")
