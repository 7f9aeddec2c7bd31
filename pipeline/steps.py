"""One function per stage. The CLI, dvc.yaml and the scheduled job all call these.

Only this package touches files, MLflow and the clock; ``features`` and ``models`` stay pure.
Every writer goes through a temporary path renamed into place, so a failed run never leaves a
half-written output.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from features import catalog
from features.engine import Inputs
from features.engine import build as build_features
from models import evaluate as ev
from models.calibrate import fit_calibrator
from models.labels import label_loans
from models.scaling import pd_to_score, score_to_band
from models.scorer import Scorer
from models.split import TEST, TRAIN, VALID, assign_slices
from models.train import fit_booster, monotonicity_violations
from pipeline import registry
from pipeline.config import Settings
from pipeline.contract import ENTITY_ID, ENTITY_TABLE, TXN_TABLE

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
    from pipeline.synth import WorldSpec, generate

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
        spine = spine.join(
            pl.read_parquet(truth).select("loan_id", "true_pd"), on="loan_id", how="left"
        )
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


def run_features(
    settings: Settings, segment: str, as_of: dt.date | None = None
) -> tuple[Path, int]:
    """Write features for the training spine (loan issue dates) or for every entity at as_of."""
    layout = Layout(settings.data_dir)
    validated = _require(layout.validated, "validate")
    spine = (
        training_spine(settings, segment)
        if as_of is None
        else scoring_spine(settings, segment, as_of)
    )
    frame = build_features(
        segment, spine, _inputs(validated, segment), windows=settings.features.windows
    )
    path = layout.features(segment, as_of)
    _write_parquet(frame, path)
    log.info(
        "features %s: %d rows x %d features -> %s",
        segment,
        frame.height,
        len(catalog.names(segment)),
        path,
    )
    return path, frame.height


# --- train / evaluate ----------------------------------------------------------------------


def _sliced(settings: Settings, segment: str) -> pl.DataFrame:
    path = _require(Layout(settings.data_dir).features(segment), "features")
    frame = pl.read_parquet(path).filter(pl.col("bad").is_not_null())
    months = frame["issue_month"].unique().to_list()
    return frame.with_columns(assign_slices(pl.col("as_of"), months, settings.split).alias("slice"))


def run_train(settings: Settings, segment: str) -> dict:
    """Train, calibrate and save the segment's Scorer; log the run to MLflow."""
    import mlflow

    layout = Layout(settings.data_dir)
    frame = _sliced(settings, segment)
    specs = tuple(catalog.specs(segment))
    names = [s.name for s in specs]
    pd_monotone = [s.pd_monotone for s in specs]

    def xy(slice_: str) -> tuple[np.ndarray, np.ndarray]:
        part = frame.filter(pl.col("slice") == slice_)
        return part.select(pl.col(names).cast(pl.Float64)).to_numpy(), part["bad"].to_numpy()

    x_train, y_train = xy(TRAIN)
    x_valid, y_valid = xy(VALID)
    params = settings.model.train
    booster = fit_booster(
        x_train,
        y_train,
        x_valid,
        y_valid,
        feature_names=names,
        pd_monotone=pd_monotone,
        params=params,
    )
    broken = monotonicity_violations(booster, x_train, pd_monotone)
    if broken:
        raise RuntimeError(
            f"the fitted {segment} model breaks its monotone constraints on {broken}"
        )
    calibrator = fit_calibrator(
        booster.predict(x_valid, raw_score=True), y_valid, settings.model.calibration
    )
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

    folder = layout.model(segment)
    tmp = Path(
        tempfile.mkdtemp(
            prefix=f".{segment}-", dir=folder.parent if folder.parent.exists() else None
        )
    )
    scorer.save(tmp)
    pl.DataFrame({"score": train_scores}).write_parquet(tmp / "reference_scores.parquet")
    slices = frame.group_by("slice").agg(
        pl.len().alias("loans"),
        pl.col("bad").sum().alias("bads"),
        pl.col("issue_month").min().alias("first_month"),
        pl.col("issue_month").max().alias("last_month"),
    )
    info = {
        "segment": segment,
        "features": names,
        "catalog_hash": catalog.catalog_hash(segment),
        "best_iteration": booster.current_iteration(),
        "slices": {r["slice"]: r for r in slices.to_dicts()},
    }
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_name=f"train-{segment}") as run:
        mlflow.set_tags({"segment": segment, "catalog_hash": info["catalog_hash"]})
        mlflow.log_params({f"train.{k}": v for k, v in params.model_dump().items()})
        mlflow.log_params({"calibration": settings.model.calibration, "n_features": len(names)})
        mlflow.log_dict({"features": names}, "features.json")
        info["run_id"] = run.info.run_id
    _write_json(info, tmp / "training.json")
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log.info("trained %s: %s", segment, info)
    return info


def run_evaluate(settings: Settings, segment: str) -> dict:
    """Evaluate the saved Scorer out-of-time; write metrics.json and report.html; log them."""
    import mlflow

    from pipeline.report import write_report

    layout = Layout(settings.data_dir)
    scorer = Scorer.load(_require(layout.model(segment), "train"))
    info = json.loads((layout.model(segment) / "training.json").read_text())
    frame = _sliced(settings, segment)
    pd_all = scorer.predict_pd(frame)
    scores = pd_to_score(pd_all, scorer.scaling)
    frame = frame.with_columns(
        pl.Series("pd", pd_all),
        pl.Series("score", scores),
        pl.Series("band", score_to_band(scores, scorer.scaling)),
    )
    test = frame.filter(pl.col("slice") == TEST)
    y = test["bad"].to_numpy()
    metrics: dict = {"segment": segment, "test": ev.summary(y, test["pd"].to_numpy())}
    if "true_pd" in test.columns and test["true_pd"].null_count() == 0:
        metrics["ceiling"] = ev.summary(y, test["true_pd"].to_numpy())
    train_scores = frame.filter(pl.col("slice") == TRAIN)["score"].to_numpy()
    metrics["score_psi_train_test"] = ev.psi(train_scores, test["score"].to_numpy())
    metrics["slices"] = info["slices"]
    gains = ev.gains_table(y, test["pd"].to_numpy())
    out = layout.report(segment)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(metrics, out / "metrics.json")
    write_report(out / "report.html", segment=segment, metrics=metrics, gains=gains, test=test)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    with mlflow.start_run(run_id=info["run_id"]):
        flat = {f"test_{k}": v for k, v in metrics["test"].items() if isinstance(v, float)}
        flat["score_psi_train_test"] = metrics["score_psi_train_test"]
        if "ceiling" in metrics:
            flat["ceiling_auc"] = metrics["ceiling"]["auc"]
        mlflow.log_metrics({k: v for k, v in flat.items() if np.isfinite(v)})
        mlflow.log_artifacts(str(out), artifact_path="report")
    log.info("evaluated %s: %s", segment, metrics["test"])
    return metrics


# --- register / score ----------------------------------------------------------------------


def run_register(settings: Settings, segment: str, alias: str = registry.CHAMPION) -> dict:
    """Log the saved Scorer as a pyfunc to its training run, register it, set the alias."""
    layout = Layout(settings.data_dir)
    folder = _require(layout.model(segment), "train")
    scorer = Scorer.load(folder)
    info = json.loads((folder / "training.json").read_text())
    example = pl.read_parquet(_require(layout.features(segment), "features")).head(5)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    uri, version = registry.log_scorer(scorer, folder, example, info["run_id"])
    registry.set_alias(segment, alias, version)
    record = {
        "model_name": registry.model_name(segment),
        "version": version,
        "alias": alias,
        "run_id": info["run_id"],
        "model_uri": uri,
    }
    _write_json(record, layout.registered(segment))
    log.info("registered %s", record)
    return record


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
    """Batch-score every consented entity of a segment at as_of with the registered model.

    Idempotent per (segment, as_of): a finished folder is left alone unless ``force``. Output
    is written to a temporary folder and renamed into place with its manifest, so a crash
    leaves nothing partial.
    """
    layout = Layout(settings.data_dir)
    as_of = as_of or default_as_of(settings)
    target = layout.scores(segment, as_of)
    if (target / "manifest.json").exists() and not force:
        manifest = json.loads((target / "manifest.json").read_text())
        log.info("scores for %s at %s already exist; nothing to do", segment, as_of)
        return {**manifest, "skipped": True}
    model_uri = model_uri or f"models:/{registry.model_name(segment)}@{registry.CHAMPION}"
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    name, version, run_id = registry.resolve(model_uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as download:
        scorer = registry.load_scorer(model_uri, Path(download))
        reference = registry.reference_scores(registry.scorer_folder(Path(download)))
    validated = _require(layout.validated, "validate")
    spine = scoring_spine(settings, segment, as_of)
    features = build_features(
        segment, spine, _inputs(validated, segment), windows=settings.features.windows
    )
    scores = scorer.score(features).with_columns(pl.lit(int(version)).alias("model_version"))
    manifest = {
        "segment": segment,
        "as_of": as_of.isoformat(),
        "model_name": name,
        "model_version": int(version),
        "model_uri": model_uri,
        "run_id": run_id,
        "rows_in": spine.height,
        "rows_out": scores.height,
        "score_distribution": scores["band"].value_counts().sort("band").to_dicts(),
        "score_mean": float(scores["score"].mean()) if scores.height else None,
        "score_psi_vs_training": ev.psi(reference, scores["score"].to_numpy()),
        "written_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        scores.write_parquet(tmp / "scores.parquet")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("scored %s at %s: %s", segment, as_of, manifest)
    return manifest
