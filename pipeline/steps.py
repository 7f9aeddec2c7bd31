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
from pipeline import drift, registry
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
    drift.write_reference(tmp, x_train, names, train_scores, bins=settings.drift.bins)
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
        if "score_psi_train_test" in metrics:
            tags["score_psi_train_test"] = round(metrics["score_psi_train_test"], 6)
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
    training rows and those rows must stay under ``registry.max_score_psi``. With no champion
    yet, the challenger's own checks decide. Every decision (promoted, refused, forced) is
    recorded as tags on the challenger version and on the registered model; a replaced
    champion keeps the alias ``previous-champion`` for a one-command rollback.
    """
    from pipeline import drift as drift_

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
        reference = drift_.read_reference(chall_dir) or drift_.reference_from_scores(
            registry.reference_scores(chall_dir), settings.drift.bins
        )
        chall.check_columns(test)
        chall_pd = chall.predict_pd(test)
        checks["challenger_auc"] = ev.auc(y, chall_pd)
        checks["monotone_violations"] = monotonicity_violations(
            chall.booster, chall.matrix(test), [s.pd_monotone for s in chall.specs]
        )
        test_scores = pd_to_score(chall_pd, chall.scaling)
        checks["challenger_score_psi"] = drift_.stability_index(
            reference["score"]["shares"],
            drift_.bin_shares(test_scores, reference["score"]["edges"]),
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
    refusals = registry.promotion_gate(checks, settings.registry)
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
