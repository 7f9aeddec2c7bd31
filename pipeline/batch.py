"""Scheduled batch scoring an operator can trust.

``run_score`` scores every consented entity of a segment at a date with the registered
champion (or a given model URI) and publishes one folder ``data/scores/<segment>/as_of=<date>``
holding ``scores.parquet`` and ``manifest.json``. What makes it safe to run from cron, systemd
or by hand:

- **One run at a time**: an exclusive, non-blocking ``flock`` on
  ``data/scores/.longtail-score-<segment>.lock``; a second run fails at once instead of
  double-scoring (the deploy files also wrap the command in ``flock -n``).
- **The right model**: the alias is resolved once to a version, and that immutable version is
  downloaded and named in the manifest, so a promotion mid-run cannot mix models. A model whose
  feature list differs from the features this code builds is refused before anything is
  scored.
- **Idempotent**: a date whose folder holds a manifest is a no-op unless ``force``.
- **Nothing partial**: output is written into a dotted temporary folder next to the target and
  renamed into place (one ``rename`` on the same file system); the manifest is written last.
  Any exception removes the temporary folder; temporary folders left by a killed process are
  swept by the next run under the lock.
- **Drift**: the manifest records score PSI and feature CSI against the training distribution
  saved with the model (:mod:`pipeline.drift`), with status ok / warning / alert.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from features.contract.tables import ENTITY_TABLE
from pipeline import drift, registry
from pipeline.config import Settings

log = logging.getLogger(__name__)

SCORES_FILE = "scores.parquet"
MANIFEST_FILE = "manifest.json"
DRIFT_EXIT_CODE = 3
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class ScoringLocked(RuntimeError):
    """Another ``longtail score`` for the same segment holds the lock."""


class FeatureMismatch(ValueError):
    """The model's feature list is not the one this code builds: scoring is refused."""


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` for the block, or raise at once.

    The lock is released by the kernel when the process dies, so a crash never leaves it stuck.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScoringLocked(
                f"expected no other scoring run to hold {path}; one is running, so this run "
                "stops without scoring"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_feature_list(model_features: list[str], built_features: list[str], segment: str) -> None:
    """Refuse a model whose ordered feature list is not the one the catalog builds."""
    if list(model_features) == list(built_features):
        return
    missing = [f for f in model_features if f not in built_features]
    extra = [f for f in built_features if f not in model_features]
    detail = (
        f"the model needs {missing[:10]} which this code does not build; "
        if missing
        else "the order differs; "
    )
    if extra:
        detail += f"this code builds {extra[:10]} which the model never saw; "
    raise FeatureMismatch(
        f"expected the model's {len(model_features)} features to match the {segment} catalog's "
        f"{len(built_features)}; {detail}refusing to score (register and promote a model "
        "trained on this catalog, or pass --model-uri)"
    )


def _sweep_stale(folder: Path) -> None:
    """Remove temporary folders a killed run left behind (called under the lock)."""
    if not folder.exists():
        return
    for stale in folder.iterdir():
        if stale.name.startswith(".") and stale.is_dir():
            log.warning("removing %s left by an interrupted run", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_scores(scores: pl.DataFrame, folder: Path) -> None:
    """Write the scores file (a seam for crash-injection tests)."""
    scores.write_parquet(folder / SCORES_FILE)


def write_manifest(manifest: dict, folder: Path) -> None:
    """Write the manifest, last, so a folder with a manifest is a finished one."""
    path = folder / MANIFEST_FILE
    with path.open("w") as handle:
        json.dump(manifest, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())


def publish(target: Path, fill: Callable[[Path], None]) -> None:
    """Create a temporary sibling of ``target``, let ``fill`` write into it, rename it in.

    On any exception the temporary folder is removed and an existing ``target`` is untouched.
    A forced rerun moves the old folder aside first and removes it only after the new one is
    in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    old: Path | None = None
    try:
        fill(tmp)
        _fsync_dir(tmp)
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            target.rename(old)
        tmp.rename(target)
        _fsync_dir(target.parent)
    except BaseException:
        if old is not None and not target.exists():
            old.rename(target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)


def excluded_counts(settings: Settings, segment: str, as_of: dt.date) -> dict[str, int]:
    """Entities not scored and why: no consent (from validation), not yet onboarded at as_of."""
    from pipeline.steps import Layout

    layout = Layout(settings.data_dir)
    counts: dict[str, int] = {}
    summary_path = layout.quarantine / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        counts["no_consent"] = int(
            summary.get("consent_excluded", {}).get(ENTITY_TABLE[segment], 0)
        )
    since = "onboarded_on" if segment == "merchant" else "registered_on"
    counts["not_yet_onboarded"] = int(
        pl.scan_parquet(layout.validated / f"{ENTITY_TABLE[segment]}.parquet")
        .filter(pl.col(since) >= as_of)
        .select(pl.len())
        .collect()
        .item()
    )
    return counts


def score_distribution(scores: pl.DataFrame) -> dict:
    """Band counts, mean and quantiles of the score, and the approval count (limit > 0)."""
    if scores.height == 0:
        return {"bands": {}, "mean": None, "quantiles": {}, "approved": 0}
    values = scores["score"].to_numpy()
    return {
        "bands": dict(scores["band"].value_counts().sort("band").iter_rows()),
        "mean": round(float(values.mean()), 3),
        "quantiles": {
            f"p{round(q * 100)}": float(np.quantile(values, q, method="lower")) for q in QUANTILES
        },
        "approved": int((scores["limit"] > 0).sum()),
    }


def run_score(
    settings: Settings,
    segment: str,
    as_of: dt.date | None = None,
    model_uri: str | None = None,
    *,
    force: bool = False,
) -> dict:
    """Score every consented entity of ``segment`` at ``as_of``; publish scores and manifest.

    Returns the manifest (with ``skipped: True`` when the date was already done). Raises
    :class:`ScoringLocked` when another run holds the lock and :class:`FeatureMismatch` when
    the model's features are not the catalog's. The drift status is in ``manifest["drift"]``;
    the CLI turns an alert into exit code 3.
    """
    from pipeline.steps import (
        Layout,
        _require,
        default_as_of,
        feature_definitions,
        observed_until,
        scoring_spine,
        segment_features,
    )

    started = time.perf_counter()
    layout = Layout(settings.data_dir)
    as_of = as_of or default_as_of(settings)
    # Scoring past the end of the log would treat missing data as inactivity: refuse it.
    log_end = observed_until(_require(layout.validated, "validate"))
    latest = log_end + dt.timedelta(days=settings.scoring.max_days_after_log)
    if as_of > latest:
        raise ValueError(
            f"expected --as-of on or before {latest.isoformat()} (the log ends "
            f"{(log_end - dt.timedelta(days=1)).isoformat()}, scoring.max_days_after_log = "
            f"{settings.scoring.max_days_after_log}); got {as_of.isoformat()}"
        )
    target = layout.scores(segment, as_of)
    lock = target.parent.parent / f".longtail-score-{segment}.lock"
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock):
        _sweep_stale(target.parent)
        if (target / MANIFEST_FILE).exists() and not force:
            manifest = json.loads((target / MANIFEST_FILE).read_text())
            log.info("scores for %s at %s already exist; nothing to do", segment, as_of)
            return {**manifest, "skipped": True}

        requested = model_uri or f"models:/{registry.model_name(segment)}@{registry.CHAMPION}"
        registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
        if model_uri is None and registry.version_by_alias(segment, registry.CHAMPION) is None:
            raise ValueError(
                f"expected a {registry.CHAMPION} of {registry.model_name(segment)}; there is "
                "none (run `longtail register` and `longtail promote`, or pass --model-uri)"
            )
        name, version, run_id = registry.resolve(requested)
        pinned = registry.version_uri(name, version)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as download:
            folder = registry.download_scorer(pinned, Path(download))
            from models.scorer import Scorer

            scorer = Scorer.load(folder)
            reference = drift.read_reference(folder) or drift.reference_from_scores(
                registry.reference_scores(folder), settings.drift.bins
            )
        check_feature_list(
            scorer.feature_names, feature_definitions(settings, segment).catalog.names, segment
        )

        spine = scoring_spine(settings, segment, as_of)
        features = segment_features(settings, segment, spine)
        scorer.check_columns(features)
        scores = scorer.score(features, reasons=settings.scoring.reasons).with_columns(
            pl.lit(int(version), dtype=pl.Int32).alias("model_version")
        )
        drift_report = drift.assess(
            reference,
            scores["score"].to_numpy(),
            scorer.matrix(features) if "feature_bins" in reference else None,
            scorer.feature_names,
            settings.drift,
        )
        manifest = {
            "segment": segment,
            "as_of": as_of.isoformat(),
            "model_name": name,
            "model_version": int(version),
            "model_uri": pinned,
            "requested_model_uri": requested,
            "run_id": run_id,
            "rows_in": spine.height,
            "rows_out": scores.height,
            "excluded": excluded_counts(settings, segment, as_of),
            "reasons": settings.scoring.reasons,
            "score_distribution": score_distribution(scores),
            "score_psi_vs_training": drift_report["score_psi"],
            "drift": drift_report,
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
        }
        if scores.height != spine.height:
            raise RuntimeError(
                f"expected one score per entity ({spine.height}); got {scores.height}"
            )

        def fill(tmp: Path) -> None:
            write_scores(scores, tmp)
            write_manifest(manifest, tmp)

        publish(target, fill)
    _log_drift(segment, as_of, drift_report)
    log.info("scored %s at %s: %s", segment, as_of, manifest)
    return manifest


def _log_drift(segment: str, as_of: dt.date, report: dict) -> None:
    if report["status"] == "ok":
        return
    level = logging.ERROR if report["status"] == "alert" else logging.WARNING
    log.log(
        level,
        "drift %s for %s at %s: score PSI %.3f; %d feature(s) over the CSI warning, %d over "
        "the alert (listed in manifest.json)",
        report["status"],
        segment,
        as_of,
        report["score_psi"],
        len(report["features_warning"]),
        len(report["features_alert"]),
    )


def drift_failed(manifest: dict, fail_on: str) -> bool:
    """Whether a manifest's drift should fail the run (exit code 3) under ``drift.fail_on``."""
    report = manifest.get("drift", {})
    if fail_on == "score":
        return report.get("score_status") == "alert"
    if fail_on == "any":
        return report.get("status") == "alert"
    return False
