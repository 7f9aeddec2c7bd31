"""One function per stage. The CLI, dvc.yaml and the scheduled job all call these.

Only this package touches files, MLflow and the clock; ``features`` and ``models`` stay pure.
Every writer goes through a temporary path renamed into place, so a failed run never leaves a
half-written output.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from features.build import DefinitionParams, Definitions, Inputs
from features.build import build as build_features
from features.contract.repayments import RepaymentRules
from features.contract.tables import ENTITY_ID, ENTITY_TABLE, TXN_TABLE
from features.contract.truth import KNOWABLE_PARTS
from features.definitions import definitions
from models import evaluate as ev
from models import stability
from models.baseline import BASELINE_FILE, BaselineParams, Scorecard, fit_scorecard
from models.calibrate import Calibrator, fit_calibrator
from models.labels import label_loans
from models.scaling import pd_to_score, score_to_band
from models.scorer import Scorer
from models.split import TEST, TRAIN, VALID, assign_slices, complete_months
from models.stability import Levels
from models.train import fit_booster, gain_importance, monotonicity_violations
from pipeline import drift, registry
from pipeline.config import MonitoringParams, Settings

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Layout:
    """Where every stage reads and writes, under one data folder."""

    root: Path

    @property
    def raw(self) -> Path:
        """Raw contract tables (generated or the user's)."""
        return self.root / "raw"

    @property
    def truth(self) -> Path:
        """The synthetic world's true PDs (never features)."""
        return self.root / "truth"

    @property
    def validated(self) -> Path:
        """Clean, consented rows."""
        return self.root / "validated"

    @property
    def quarantine(self) -> Path:
        """Rows that broke a rule, with the rule, and summary.json."""
        return self.root / "quarantine"

    def features(self, segment: str, as_of: dt.date | None = None) -> Path:
        """Training features (loan spine) or scoring features at a date."""
        if as_of is None:
            return self.root / "features" / f"{segment}.parquet"
        return self.root / "features" / f"{segment}_as_of={as_of.isoformat()}.parquet"

    def model(self, segment: str) -> Path:
        """The trained Scorer's folder."""
        return self.root / "models" / segment

    def report(self, segment: str) -> Path:
        """Evaluation outputs: metrics.json and report.html."""
        return self.root / "reports" / segment

    def registered(self, segment: str) -> Path:
        """What the register stage registered (a small JSON record)."""
        return self.root / "registry" / f"{segment}.json"

    def scores(self, segment: str, as_of: dt.date) -> Path:
        """One batch-scoring output folder."""
        return self.root / "scores" / segment / f"as_of={as_of.isoformat()}"


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp)
    tmp.replace(path)


def _write_json(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"expected {path} (run `longtail {stage}` first); it does not exist"
        )
    return path


# --- generate / validate -------------------------------------------------------------------


def run_generate(settings: Settings, progress: Progress | None = None) -> dict[str, int]:
    """Generate the synthetic world into data/raw (and its true PDs into data/truth)."""
    from world.synth import WorldSpec, generate

    layout = Layout(settings.data_dir)
    spec = WorldSpec(**settings.world.model_dump())
    counts = generate(spec, layout.raw, layout.truth, progress=progress)
    log.info("generated world %s: %s", spec, counts)
    return counts


def run_validate(settings: Settings) -> dict:
    """Validate data/raw into data/validated, quarantining bad rows and non-consented entities."""
    from pipeline.validate import validate

    layout = Layout(settings.data_dir)
    _require(layout.raw, "generate")
    reference = settings.validation.reference_time or dt.datetime.now(dt.UTC)
    summary = validate(layout.raw, layout.validated, layout.quarantine, reference_time=reference)
    log.info("validated: %s", summary)
    return summary


# --- features ------------------------------------------------------------------------------


def observed_until(validated: Path) -> dt.date:
    """The first day after the observed log: the day after the last transaction."""
    last = (
        pl.concat(
            [
                pl.scan_parquet(validated / f"{t}.parquet").select(pl.col("ts").max())
                for t in TXN_TABLE.values()
            ]
        )
        .select(pl.col("ts").max())
        .collect()
        .item()
    )
    if last is None:
        raise ValueError(f"expected transactions in {validated}; found none")
    return last.date() + dt.timedelta(days=1)


def _inputs(validated: Path, segment: str) -> Inputs:
    entity_id = ENTITY_ID[segment]
    return Inputs(
        events=pl.scan_parquet(validated / f"{TXN_TABLE[segment]}.parquet").rename(
            {entity_id: "entity_id"}
        ),
        entities=pl.scan_parquet(validated / f"{ENTITY_TABLE[segment]}.parquet").rename(
            {entity_id: "entity_id"}
        ),
        loans=pl.scan_parquet(validated / "loans.parquet"),
        repayments=pl.scan_parquet(validated / "repayments.parquet"),
        # A consumer's purchases are categorised by the merchant's industry.
        partners=(
            pl.scan_parquet(validated / f"{ENTITY_TABLE['merchant']}.parquet").select(
                pl.col(ENTITY_ID["merchant"]).alias("partner_id"),
                pl.col("industry").alias("category"),
            )
            if segment == "consumer"
            else None
        ),
    )


def training_spine(settings: Settings, segment: str) -> pl.DataFrame:
    """One row per loan of the segment: (loan, entity, as_of = issue date) with its label."""
    layout = Layout(settings.data_dir)
    validated = _require(layout.validated, "validate")
    loans = pl.read_parquet(validated / "loans.parquet").filter(pl.col("segment") == segment)
    repayments = pl.read_parquet(validated / "repayments.parquet")
    outcomes_path = validated / "outcomes.parquet"
    outcomes = pl.read_parquet(outcomes_path) if outcomes_path.exists() else None
    labelled = label_loans(
        loans,
        repayments,
        observed_until=observed_until(validated),
        params=settings.label,
        outcomes=outcomes,
    )
    spine = labelled.select(
        "loan_id",
        "entity_id",
        pl.col("issued_on").alias("as_of"),
        pl.col("issued_on").dt.strftime("%Y-%m").alias("issue_month"),
        "status",
        "bad",
    )
    truth = layout.truth / "loans.parquet"
    if truth.exists():
        known = pl.read_parquet(truth)
        columns = [pl.col("loan_id"), pl.col("true_pd")]
        if set(KNOWABLE_PARTS) <= set(known.columns):
            # What the log could reveal at issue: the true log-odds without the hidden part and
            # the macro path after issue (synthetic worlds only; see features/contract/truth.py).
            columns.append(pl.sum_horizontal(KNOWABLE_PARTS).alias("knowable_log_odds"))
        spine = spine.join(known.select(columns), on="loan_id", how="left")
    return spine.sort("as_of", "loan_id")


def scoring_spine(settings: Settings, segment: str, as_of: dt.date) -> pl.DataFrame:
    """Every consented entity of the segment that existed before ``as_of``."""
    validated = _require(Layout(settings.data_dir).validated, "validate")
    entity_id = ENTITY_ID[segment]
    since = "onboarded_on" if segment == "merchant" else "registered_on"
    return (
        pl.scan_parquet(validated / f"{ENTITY_TABLE[segment]}.parquet")
        .filter(pl.col("consent") & (pl.col(since) < as_of))
        .select(pl.col(entity_id).alias("entity_id"), pl.lit(as_of).alias("as_of"))
        .sort("entity_id")
        .collect()
    )


def feature_params(settings: Settings) -> DefinitionParams:
    """The parameters of the feature definitions: params ``features`` and the label's rules."""
    return DefinitionParams(
        windows=settings.features.windows,
        rules=RepaymentRules(
            default_dpd=settings.label.dpd_threshold,
            delinquent_dpd=settings.features.delinquent_dpd,
            tolerance=settings.label.partial_payment_tolerance,
        ),
        merchant_net_margin=settings.features.merchant_net_margin,
        consumer_low_balance=settings.features.consumer_low_balance,
    )


def feature_definitions(settings: Settings, segment: str) -> Definitions:
    """The segment's feature definitions (catalog, aggregates, policy inputs) under params."""
    return definitions(segment, feature_params(settings))


def segment_features(settings: Settings, segment: str, spine: pl.DataFrame) -> pl.DataFrame:
    """The segment's features for a spine, from the validated tables.

    One place applies params' windows and entity chunks: training spines, the drift reference
    and batch scoring all build their features here.
    """
    validated = _require(Layout(settings.data_dir).validated, "validate")
    return build_features(
        feature_definitions(settings, segment),
        spine,
        _inputs(validated, segment),
        chunks=settings.features.chunks,
    )


def run_features(
    settings: Settings, segment: str, as_of: dt.date | None = None
) -> tuple[Path, int]:
    """Write features for the training spine (loan issue dates) or for every entity at as_of."""
    layout = Layout(settings.data_dir)
    _require(layout.validated, "validate")
    spine = (
        training_spine(settings, segment)
        if as_of is None
        else scoring_spine(settings, segment, as_of)
    )
    frame = segment_features(settings, segment, spine)
    path = layout.features(segment, as_of)
    _write_parquet(frame, path)
    log.info(
        "features %s: %d rows x %d features -> %s",
        segment,
        frame.height,
        len(feature_definitions(settings, segment).catalog.names),
        path,
    )
    return path, frame.height


# --- train / evaluate ----------------------------------------------------------------------


def _sliced(settings: Settings, segment: str) -> pl.DataFrame:
    """The labelled training spine with features and its out-of-time ``slice``.

    Only issue months whose every loan is labelled take part (the latest month with labels is
    usually a stub of loans issued on its first days); indeterminate loans are dropped, and so
    are months outside every slice (older than ``split.train_months`` allows).
    """
    path = _require(Layout(settings.data_dir).features(segment), "features")
    frame = pl.read_parquet(path)
    months = complete_months(frame["issue_month"], frame["bad"].is_not_null())
    frame = frame.filter(pl.col("bad").is_not_null() & pl.col("issue_month").is_in(months))
    return frame.with_columns(
        assign_slices(pl.col("as_of"), months, settings.split).alias("slice")
    ).filter(pl.col("slice").is_not_null())


def _slice_summary(frame: pl.DataFrame) -> dict[str, dict]:
    """Loans, bads and first/last issue month per slice."""
    slices = frame.group_by("slice").agg(
        pl.len().alias("loans"),
        pl.col("bad").sum().alias("bads"),
        pl.col("issue_month").min().alias("first_month"),
        pl.col("issue_month").max().alias("last_month"),
    )
    return {r["slice"]: r for r in slices.to_dicts()}


def _book_snapshot(settings: Settings, segment: str) -> tuple[dt.date, np.ndarray]:
    """Features of the whole book (every consented entity) at the end of the observed log.

    Production drift compares the population being scored, the whole book, with this
    snapshot: the book as it stood when the model was built, the first day after the log it
    was built from. Drift then means "the scored population moved since the model was
    built". Comparing with the loan applicants the model was trained on instead would flag
    every feature in which applicants differ from the book, and a snapshot from the training
    months would flag every feature that grows with time (tenure, history length) by the
    year or more the labels need. Training-to-out-of-time drift is in the evaluation report.
    """
    as_of = observed_until(_require(Layout(settings.data_dir).validated, "validate"))
    book = segment_features(settings, segment, scoring_spine(settings, segment, as_of))
    names = feature_definitions(settings, segment).catalog.names
    return as_of, book.select(pl.col(names).cast(pl.Float64)).to_numpy()


def run_train(settings: Settings, segment: str) -> dict:
    """Train, calibrate and save the segment's Scorer and its scorecard baseline; log to MLflow.

    The booster is early-stopped and calibrated on the validation slice; the baseline is fitted
    on the same training slice and calibrated the same way, so the two are compared fairly.
    The saved folder holds the Scorer, ``baseline.json``, the training slice's scores (the
    promotion gate's PSI reference), ``reference.json`` (the whole book's feature and score
    distribution at the end of the log: the production drift reference, see
    :func:`_book_snapshot`) and ``training.json`` with the MLflow run id.
    """
    import time

    import mlflow

    layout = Layout(settings.data_dir)
    frame = _sliced(settings, segment)
    specs = tuple(feature_definitions(settings, segment).catalog.specs)
    names = [s.name for s in specs]
    pd_monotone = [s.pd_monotone for s in specs]

    def xy(slice_: str) -> tuple[np.ndarray, np.ndarray]:
        part = frame.filter(pl.col("slice") == slice_)
        return part.select(pl.col(names).cast(pl.Float64)).to_numpy(), part["bad"].to_numpy()

    x_train, y_train = xy(TRAIN)
    x_valid, y_valid = xy(VALID)
    params = settings.model.train
    started = time.perf_counter()
    booster = fit_booster(
        x_train,
        y_train,
        x_valid,
        y_valid,
        feature_names=names,
        pd_monotone=pd_monotone,
        params=params,
    )
    train_seconds = time.perf_counter() - started
    broken = monotonicity_violations(booster, x_train, pd_monotone)
    if broken:
        raise RuntimeError(
            f"the fitted {segment} model breaks its monotone constraints on {broken}"
        )
    calibrator = fit_calibrator(
        booster.predict(x_valid, raw_score=True), y_valid, settings.model.calibration
    )
    card = fit_scorecard(x_train, y_train, names, settings.model.baseline)
    card_calibrator = fit_calibrator(card.log_odds(x_valid), y_valid, settings.model.calibration)
    scorer = Scorer(
        segment=segment,
        specs=specs,
        booster=booster,
        calibrator=calibrator,
        scaling=settings.scaling,
        policy=settings.limits[segment],
    )
    train_scores = pd_to_score(
        scorer.calibrator.predict(booster.predict(x_train, raw_score=True)), settings.scaling
    )
    valid_pd = calibrator.predict(booster.predict(x_valid, raw_score=True))

    folder = layout.model(segment)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{segment}-", dir=folder.parent))
    scorer.save(tmp)
    pl.DataFrame({"score": train_scores}).write_parquet(tmp / "reference_scores.parquet")
    book_as_of, x_book = _book_snapshot(settings, segment)
    book_scores = pd_to_score(
        calibrator.predict(booster.predict(x_book, raw_score=True)), settings.scaling
    )
    drift.write_reference(tmp, x_book, names, book_scores, bins=settings.drift.bins)
    _write_json(
        {
            "scorecard": card.to_dict(),
            "calibrator": card_calibrator.to_dict(),
            "params": settings.model.baseline.model_dump(),
        },
        tmp / BASELINE_FILE,
    )
    info = {
        "segment": segment,
        "features": names,
        "catalog_hash": feature_definitions(settings, segment).catalog.hash,
        "best_iteration": booster.current_iteration(),
        "train_seconds": round(train_seconds, 3),
        "valid_auc": ev.auc(y_valid, valid_pd),
        "monotone_constrained": sum(1 for d in pd_monotone if d != 0),
        "importance": gain_importance(booster),
        "slices": _slice_summary(frame),
        "drift_reference": {"as_of": book_as_of.isoformat(), "rows": int(x_book.shape[0])},
    }
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_name=f"train-{segment}") as run:
        mlflow.set_tags({"segment": segment, "catalog_hash": info["catalog_hash"]})
        mlflow.log_params({f"train.{k}": v for k, v in params.model_dump().items()})
        mlflow.log_params(
            {f"baseline.{k}": v for k, v in settings.model.baseline.model_dump().items()}
        )
        mlflow.log_params({f"label.{k}": v for k, v in settings.label.model_dump().items()})
        mlflow.log_params({f"split.{k}": v for k, v in settings.split.model_dump().items()})
        mlflow.log_params(
            {
                "calibration": settings.model.calibration,
                "n_features": len(names),
                "baseline.characteristics": len(card.characteristics),
            }
        )
        mlflow.log_metrics(
            {
                "train_seconds": train_seconds,
                "best_iteration": float(info["best_iteration"]),
                **({"valid_auc": info["valid_auc"]} if np.isfinite(info["valid_auc"]) else {}),
            }
        )
        mlflow.log_dict(
            {
                "features": names,
                "pd_monotone": dict(zip(names, pd_monotone, strict=True)),
                "importance": info["importance"],
            },
            "features.json",
        )
        info["run_id"] = run.info.run_id
    _write_json(info, tmp / "training.json")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log.info("trained %s in %.1fs: %d trees", segment, train_seconds, info["best_iteration"])
    return info


def _checks(metrics: dict, monitoring: MonitoringParams, levels: Levels) -> dict[str, dict]:
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


def run_evaluate(
    settings: Settings,
    segment: str,
    extra_sections: Sequence[tuple[str, str]] = (),
) -> dict:
    """Evaluate the saved Scorer and the baseline out-of-time; write the report; log them.

    Writes into data/reports/<segment>/: ``metrics.json`` (headline figures and checks, for
    DVC), ``model_card.json``, CSV tables (gains, by month, by band, calibration, CSI,
    importance), ``plots/*.png`` and the self-contained ``report.html``; all of it is logged to
    the training run in MLflow. ``extra_sections`` are (title, HTML) pairs appended to the
    report, e.g. a cut-off strategy table.
    """
    import mlflow

    from models.strategy import scorer_cutoff_table
    from pipeline.reporting.legacy import ReportInputs, write_report
    from pipeline.reporting.legacy import table_html as report_table

    layout = Layout(settings.data_dir)
    folder = _require(layout.model(segment), "train")
    scorer = Scorer.load(folder)
    info = json.loads((folder / "training.json").read_text())
    baseline = json.loads((folder / BASELINE_FILE).read_text())
    card = Scorecard.from_dict(baseline["scorecard"])
    card_calibrator = Calibrator.from_dict(baseline["calibrator"])
    # The screens the card was built with (cards saved before they were kept: today's params).
    screens = BaselineParams.model_validate(
        baseline.get("params", settings.model.baseline.model_dump())
    )
    monitoring = settings.monitoring

    frame = _sliced(settings, segment)
    x = scorer.matrix(frame)
    pd_all = scorer.calibrator.predict(scorer.booster.predict(x, raw_score=True))
    scores = pd_to_score(pd_all, scorer.scaling)
    frame = frame.with_columns(
        pl.Series("pd", pd_all),
        pl.Series("baseline_pd", card_calibrator.predict(card.log_odds(x))),
        pl.Series("additive_pd", _additive_reference(settings, scorer, frame, x)),
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
    importance = pl.DataFrame(
        {
            "feature": names,
            "dimension": [s.dimension for s in scorer.specs],
            "gain_share": [info["importance"].get(n, 0.0) for n in names],
        }
    ).sort("gain_share", descending=True, maintain_order=True)
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
    score_psi = stability.psi(
        frame.filter(pl.col("slice") == TRAIN)["score"].to_numpy(),
        test["score"].to_numpy(),
        bins=settings.drift.bins,
    )
    metrics: dict = {
        "segment": segment,
        **test_metrics,
        "valid": ev.summary(valid["bad"].to_numpy(), valid["pd"].to_numpy()),
        "stability": {
            "score_psi_train_test": score_psi,
            "score_psi_status": stability.status(score_psi, settings.drift.score_levels),
            "score_psi_train_valid": stability.psi(
                frame.filter(pl.col("slice") == TRAIN)["score"].to_numpy(),
                valid["score"].to_numpy(),
                bins=settings.drift.bins,
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
        "scorecard": {
            "description": (
                f"WoE logistic scorecard on the same candidate features and slices: "
                f"{len(card.characteristics)} characteristics with IV >= {screens.min_iv}, "
                f"WoE correlation <= {screens.max_corr}, every coefficient agreeing in sign "
                "with its WoE"
            ),
            "characteristics": list(card.characteristics),
            "information_value": dict(zip(card.features, card.iv, strict=True)) if card.iv else {},
        },
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
    metrics["checks"] = _checks(metrics, monitoring, settings.drift.score_levels)
    # Kept for readers of the spine's metrics.json layout.
    metrics["score_psi_train_test"] = metrics["stability"]["score_psi_train_test"]

    band_order = [b.name for b in sorted(scorer.scaling.bands, key=lambda b: b.min)]
    tables = {
        "gains": ev.gains_table(y, test["pd"].to_numpy()),
        "by_band": ev.by_band(test, band_order),
        "by_month": ev.by_group(frame, "issue_month", pd_columns)
        .join(frame.group_by("issue_month").agg(pl.col("slice").first()), on="issue_month")
        .sort("issue_month"),
        "calibration": ev.calibration_bins(y, test["pd"].to_numpy()),
        "csi": csi,
        "importance": importance,
        # What each approval cut-off would mean on the test slice: approvals, bad rate, limits.
        "cutoffs": scorer_cutoff_table(scorer, test, y),
        # The baseline as a signable scorecard: points per bin on the model's score scale.
        "scorecard_points": card.points_table(scorer.scaling.factor, scorer.scaling.offset),
    }
    model_card = _model_card(settings, segment, scorer, info, metrics)
    out = layout.report(segment)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(metrics, out / "metrics.json")
    _write_json(model_card, out / "model_card.json")
    for name, table in tables.items():
        table.write_csv(out / f"{name}.csv")
    write_report(
        out,
        ReportInputs(
            segment=segment,
            metrics=metrics,
            card=model_card,
            test=test.select(
                "bad", "pd", "baseline_pd", "score", "band", *(["true_pd"] if has_truth else [])
            ),
            tables=tables,
            bands=[(b.name, b.label, b.min, b.max) for b in scorer.scaling.bands],
        ),
        extra_sections=[
            (
                "Cut-off strategy (out-of-time test slice)",
                "<p>For each score cut-off: the share approved, the bad rate among the approved "
                "and the total limit granted (limits as if approved, knock-outs applied).</p>"
                + report_table(tables["cutoffs"]),
            ),
            (
                "Scorecard baseline: points per bin",
                f"<p>{html.escape(metrics['scorecard']['description'])}. An applicant's points "
                "add up to the card's score on the model's scale, before calibration; "
                "scorecard_points.csv has the same table.</p>"
                "<details><summary>Show the points table</summary>"
                + report_table(
                    tables["scorecard_points"].with_columns(pl.col("woe", "points", "iv").round(2))
                )
                + "</details>",
            ),
            *extra_sections,
        ],
    )
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_id=info["run_id"]):
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
    log.info("evaluated %s: %s", segment, metrics["test"])
    return metrics


def _additive_reference(
    settings: Settings, scorer: Scorer, frame: pl.DataFrame, x: np.ndarray
) -> np.ndarray:
    """The calibrated PDs of an additive LightGBM (one feature per tree) for every row.

    Same features, constraints, hyper-parameters and slices as the model: trained on the
    training slice, early-stopped and calibrated on the validation slice. It is a diagnostic of
    the evaluation, never registered: the model's AUC above it is what interactions add, its
    AUC above the scorecard what finer shapes than binned WoE add.
    """
    slices = frame["slice"].to_numpy()
    y = frame["bad"].to_numpy()
    train, valid = slices == TRAIN, slices == VALID
    booster = fit_booster(
        x[train],
        y[train],
        x[valid],
        y[valid],
        feature_names=scorer.feature_names,
        pd_monotone=[s.pd_monotone for s in scorer.specs],
        params=settings.model.train,
        additive=True,
    )
    calibrator = fit_calibrator(
        booster.predict(x[valid], raw_score=True), y[valid], settings.model.calibration
    )
    return calibrator.predict(booster.predict(x, raw_score=True))


def _model_card(
    settings: Settings, segment: str, scorer: Scorer, info: dict, metrics: dict
) -> dict:
    """The model card: purpose, data, label, features, performance, limits, monitoring."""
    label = settings.label
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
    m = settings.monitoring
    d = settings.drift
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
            "calibration": settings.model.calibration,
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


# --- register / score ----------------------------------------------------------------------


def _registration_tags(settings: Settings, segment: str, info: dict) -> dict[str, object]:
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
    metrics_path = Layout(settings.data_dir).report(segment) / "metrics.json"
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


def run_register(settings: Settings, segment: str, alias: str = registry.CHALLENGER) -> dict:
    """Log the saved Scorer as a pyfunc to its training run, register a version, set the alias.

    A new version is only ever a ``challenger``: it becomes ``champion`` through
    :func:`run_promote`, the gate. Tags record the data windows, catalog hash, git commit and
    the evaluation metrics.
    """
    layout = Layout(settings.data_dir)
    folder = _require(layout.model(segment), "train")
    scorer = Scorer.load(folder)
    info = json.loads((folder / "training.json").read_text())
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    tags = _registration_tags(settings, segment, info)
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
    _write_json(record, layout.registered(segment))
    log.info("registered %s", record)
    return record


def run_promote(settings: Settings, segment: str, *, force: bool = False) -> dict:
    """The promotion gate: move ``champion`` to the challenger only if it earns it.

    Both models rescore the same out-of-time test rows (the test slice of the current training
    features). The challenger must not lose more than ``registry.auc_tolerance`` of AUC to the
    champion, must keep its monotone constraints on those rows, and its score PSI between its
    training rows and those rows must not reach the ``drift`` alert level. With no champion
    yet, the challenger's own checks decide. Every decision (promoted, refused, forced) is
    recorded as tags on the challenger version and on the registered model; a replaced
    champion keeps the alias ``previous-champion`` for a one-command rollback.
    """
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    name = registry.model_name(segment)
    challenger = registry.version_by_alias(segment, registry.CHALLENGER)
    if challenger is None:
        raise ValueError(
            f"expected a {registry.CHALLENGER} version of {name} (run `longtail register` "
            "first); found none"
        )
    champion = registry.version_by_alias(segment, registry.CHAMPION)
    base = {
        "model_name": name,
        "challenger_version": int(challenger.version),
        "champion_version": int(champion.version) if champion else None,
    }
    if champion is not None and champion.version == challenger.version:
        return {
            **base,
            "decision": "unchanged",
            "reasons": [f"version {challenger.version} is already {registry.CHAMPION}"],
        }
    test = _sliced(settings, segment).filter(pl.col("slice") == TEST)
    y = test["bad"].to_numpy()
    checks: dict = {"oot_rows": test.height, "champion_auc": None, "champion_error": None}
    with tempfile.TemporaryDirectory(prefix="longtail-promote-") as tmp:
        chall_dir = registry.download_scorer(
            registry.version_uri(name, challenger.version), Path(tmp) / "challenger"
        )
        chall = Scorer.load(chall_dir)
        chall.check_columns(test)
        chall_pd = chall.predict_pd(test)
        checks["challenger_auc"] = ev.auc(y, chall_pd)
        checks["monotone_violations"] = monotonicity_violations(
            chall.booster, chall.matrix(test), [s.pd_monotone for s in chall.specs]
        )
        test_scores = pd_to_score(chall_pd, chall.scaling)
        # the gate compares like with like: training loans' scores vs out-of-time test loans'
        checks["challenger_score_psi"] = stability.psi(
            registry.reference_scores(chall_dir), test_scores, bins=settings.drift.bins
        )
        if champion is not None:
            champ = registry.load_scorer(
                registry.version_uri(name, champion.version), Path(tmp) / "champion"
            )
            try:
                checks["champion_auc"] = ev.auc(y, champ.predict_pd(test))
            except ValueError as exc:
                checks["champion_error"] = (
                    f"the champion v{champion.version} cannot score the same out-of-time rows "
                    f"({exc}), so the two cannot be compared like for like"
                )
    refusals = registry.promotion_gate(checks, settings.registry, settings.drift.score_levels)
    promote = force or not refusals
    if not refusals:
        decision = "promoted"
        reasons = (
            [f"no {registry.CHAMPION} yet: first promotion, on the challenger's own checks"]
            if champion is None
            else [
                f"challenger AUC {checks['challenger_auc']:.4f} vs champion "
                f"{checks['champion_auc']:.4f} on {test.height} out-of-time rows; monotone; "
                f"score PSI {checks['challenger_score_psi']:.3f}"
            ]
        )
    else:
        decision = "forced" if force else "refused"
        reasons = refusals
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    summary = {
        "decision": decision,
        "reasons": " | ".join(reasons),
        "at": now,
        "challenger_version": challenger.version,
        "champion_version": champion.version if champion else "none",
        "challenger_oot_auc": round(checks["challenger_auc"], 6),
        "champion_oot_auc": (
            "n/a" if checks["champion_auc"] is None else round(checks["champion_auc"], 6)
        ),
        "oot_rows": test.height,
        "monotone_violations": ",".join(checks["monotone_violations"]) or "none",
        "challenger_score_psi": round(checks["challenger_score_psi"], 6),
    }
    registry.tag_version(
        segment, challenger.version, {f"promotion_{k}": v for k, v in summary.items()}
    )
    registry.tag_model(
        segment,
        {
            "last_promotion": json.dumps(summary, default=str),
            f"promotion_{now}_v{challenger.version}": decision,
        },
    )
    if promote:
        if champion is not None:
            registry.set_alias(segment, registry.PREVIOUS, int(champion.version))
            registry.tag_version(
                segment, champion.version, {"replaced_by": challenger.version, "replaced_at": now}
            )
        registry.set_alias(segment, registry.CHAMPION, int(challenger.version))
    result = {**base, "decision": decision, "reasons": reasons, "checks": checks}
    log.info("promotion %s: %s", segment, result)
    return result


def default_as_of(settings: Settings) -> dt.date:
    """The scoring date: params.yaml scoring.as_of, else the first day after the observed log."""
    return settings.scoring.as_of or observed_until(
        _require(Layout(settings.data_dir).validated, "validate")
    )


def run_score(
    settings: Settings,
    segment: str,
    as_of: dt.date | None = None,
    model_uri: str | None = None,
    *,
    force: bool = False,
) -> dict:
    """Batch-score every consented entity of a segment at as_of (see :mod:`pipeline.batch`)."""
    from pipeline import batch

    return batch.run_score(settings, segment, as_of, model_uri, force=force)
