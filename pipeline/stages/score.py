"""Stage ``score``: batch-score every consented entity of a segment at a date.

The champion (or a given model URI) scores the whole book at ``as_of`` and one folder
``data/scores/<segment>/as_of=<date>`` is published, holding ``scores.parquet`` and
``manifest.json``. What makes it safe to run from cron, systemd or by hand:

- **One run at a time**: an exclusive, non-blocking ``flock`` per segment
  (:func:`pipeline.storage.exclusive_lock`); a second run fails at once instead of
  double-scoring (the deploy files also wrap the command in ``flock -n``).
- **The right model**: the alias is resolved once to a version, and that immutable version is
  downloaded and named in the manifest, so a promotion mid-run cannot mix models. A model whose
  feature list differs from the features this code builds is refused before anything is
  scored.
- **Idempotent**: a date whose folder holds a manifest is a no-op unless ``force``.
- **Nothing partial**: the folder is published through :func:`pipeline.storage.publishing`
  (filled aside, renamed into place, temporaries always removed; a killed run's are swept).
- **Drift**: the manifest records score PSI and feature CSI against the reference saved with
  the model (:mod:`pipeline.drift`), with status ok / warning / alert; :func:`fails_run` says
  whether ``drift.fail_on`` makes that an exit code 3.
- **Champion/challenger**: when the ``challenger`` alias points at another version than the
  champion, that version scores the same features too; the manifest's ``challenger`` section
  and ``challenger.html`` compare the two (:mod:`pipeline.challenger`), and the entities of the
  test cell (``scoring.challenger_cell``) get the challenger's decision. A challenger whose
  features are not this code's is not compared (the section says why); the champion's run
  goes on. With ``--model-uri`` there is no champion to compare: ``challenger`` is null.
- **Performance before labels**: the manifest's ``expected`` holds the bad rate and AUC the
  applied PDs promise (:func:`models.monitoring.expected`), for ``longtail monitor``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
from pathlib import Path

import polars as pl

from features.catalog import Catalog
from models import monitoring
from models.recourse import recourse
from models.scorer import Scorer
from pipeline import batch, challenger, drift, inputs, registry
from pipeline.artifacts import TRAINING_FILE, read_reference_scores, read_training
from pipeline.compute.engine import session
from pipeline.compute.features import segment_features
from pipeline.compute.scoring import score_book
from pipeline.config import Sections, uses
from pipeline.storage import Layout, exclusive_lock, publishing, require, sweep

log = logging.getLogger(__name__)
PARAMS = ("scoring", "features", "compute", "label", "limits", "application", "drift", "mlflow")


@uses(*PARAMS)
def segments(settings: Sections) -> tuple[str, ...]:
    """The segments ``longtail score --segment all`` (and so the scheduled job) scores."""
    return tuple(settings.scoring.segments)


@uses(*PARAMS)
def fails_run(settings: Sections, manifest: dict, fail_on: str | None = None) -> bool:
    """Whether the manifest's drift fails the run: ``fail_on``, else params.yaml drift.fail_on."""
    return batch.drift_failed(manifest, fail_on or settings.drift.fail_on)


@uses(*PARAMS)
def run(
    settings: Sections,
    segment: str,
    as_of: dt.date | None = None,
    model_uri: str | None = None,
    *,
    force: bool = False,
) -> dict:
    """Score every consented entity of ``segment`` at ``as_of``; publish scores and manifest.

    Returns the manifest (with ``skipped: True`` when the date was already done). Raises
    :class:`pipeline.storage.Locked` when another run holds the lock and
    :class:`pipeline.batch.FeatureMismatch` when the model's features are not the catalog's.
    The drift status is in ``manifest["drift"]``; :func:`fails_run` judges it.
    """
    started = time.perf_counter()
    cell_share, cell_seed = settings.scoring.challenger_cell, settings.scoring.challenger_seed
    layout = Layout(settings.data_dir)
    as_of = as_of or inputs.default_as_of(layout, settings.scoring)
    # Scoring past the end of the log would treat missing data as inactivity: refuse it.
    log_end = inputs.observed_until(require(layout.validated, "validate"))
    latest = log_end + dt.timedelta(days=settings.scoring.max_days_after_log)
    if as_of > latest:
        raise ValueError(
            f"expected --as-of on or before {latest.isoformat()} (the log ends "
            f"{(log_end - dt.timedelta(days=1)).isoformat()}, scoring.max_days_after_log = "
            f"{settings.scoring.max_days_after_log}); got {as_of.isoformat()}"
        )
    target = layout.scores(segment, as_of)
    with exclusive_lock(layout.scores_lock(segment)):
        sweep(target, siblings=True)  # any date's leftovers: the lock makes this run the only one
        if (target / batch.MANIFEST_FILE).exists() and not force:
            manifest = json.loads((target / batch.MANIFEST_FILE).read_text())
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
        target.parent.mkdir(parents=True, exist_ok=True)
        # named like the target's temporaries, so a killed run's download is swept too
        with tempfile.TemporaryDirectory(
            prefix=f".{target.name}-download-", dir=target.parent
        ) as download:
            folder = registry.download_scorer(pinned, Path(download))
            scorer = Scorer.load(folder)
            trained_hash = (
                read_training(folder).get("catalog_hash")
                if (folder / TRAINING_FILE).exists()
                else None
            )
            reference = drift.read_reference(folder) or drift.reference_from_scores(
                read_reference_scores(folder), settings.drift.bins
            )
        defined = inputs.feature_definitions(
            segment, settings.features, settings.label, settings.limits
        )
        batch.check_feature_list(scorer.feature_names, defined.catalog.names, segment)
        batch.check_catalog_hash(trained_hash, defined.catalog.hash, segment)

        spine = inputs.scoring_spine(layout, segment, as_of, settings.application)
        with session(settings.compute) as engine:
            features = segment_features(
                engine, layout, defined, spine, chunks=settings.features.chunks, work=target.parent
            )
            scores = score_book(
                engine,
                scorer,
                features,
                reasons=settings.scoring.reasons,
                compiled=layout.compiled if settings.scoring.compiled else None,
            ).with_columns(pl.lit(int(version), dtype=pl.Int32).alias("model_version"))
        against = (
            _challenger(settings, segment, name, version, target.parent, defined.catalog)
            if model_uri is None
            else None
        )
        champion_scores = scores
        section = None
        if against is not None and isinstance(against[1], str):
            section = {"model_version": against[0], "skipped": against[1]}
            scores = challenger.champion_only(scores)
        elif against is not None:
            section, scores = _compare(
                settings, scorer, against, features, scores, int(version), (cell_share, cell_seed)
            )
            section = {"segment": segment, "as_of": as_of.isoformat(), **section}
        else:
            scores = challenger.champion_only(scores)
        found = None
        if settings.scoring.recourse:  # under the champion: one row per entity
            found = recourse(scorer, features, scorer.policy.approval_cutoff)
            keyed = found.drop("as_of", strict=False)
            scores = scores.join(keyed, on="entity_id", how="left", maintain_order="left")
        drift_report = drift.assess(
            reference,
            champion_scores["score"].to_numpy(),
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
            "excluded": batch.excluded_counts(layout, segment, as_of),
            "reasons": settings.scoring.reasons,
            "compiled": settings.scoring.compiled,
            "recourse": None
            if found is None
            else dict(sorted(found["recourse_status"].value_counts().iter_rows())),
            "reference_loan": inputs.reference_loan_stated(
                settings.application, settings.limits, segment
            ),
            "score_distribution": batch.score_distribution(scores),
            "score_psi_vs_training": drift_report["score_psi"],
            "drift": drift_report,
            "challenger": section,
            "expected": monitoring.expected(scores["pd"].to_numpy()),
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3),
        }
        if scores.height != spine.height:
            raise RuntimeError(
                f"expected one score per entity ({spine.height}); got {scores.height}"
            )

        with publishing(target) as tmp:
            batch.write_scores(scores, tmp)
            if section is not None and "comparison" in section:
                (tmp / challenger.REPORT_FILE).write_text(challenger.render(section))
            batch.write_manifest(manifest, tmp)
    _log_drift(segment, as_of, drift_report)
    log.info("scored %s at %s: %s", segment, as_of, manifest)
    return manifest


def _challenger(
    settings: Sections, segment: str, name: str, champion: str, folder: Path, catalog: Catalog
) -> tuple[int, Scorer | str] | None:
    """The challenger version and its Scorer (or why it cannot score); None when there is none.

    There is none when the alias is missing or points at the champion's version.
    """
    found = registry.version_by_alias(segment, registry.CHALLENGER)
    if found is None or str(found.version) == str(champion):
        return None
    version = int(found.version)
    with tempfile.TemporaryDirectory(prefix=f".challenger-{segment}-", dir=folder) as download:
        local = registry.download_scorer(registry.version_uri(name, version), Path(download))
        model = Scorer.load(local)
        trained = (
            read_training(local).get("catalog_hash") if (local / TRAINING_FILE).exists() else None
        )
    try:
        batch.check_feature_list(model.feature_names, catalog.names, segment)
        batch.check_catalog_hash(trained, catalog.hash, segment)
    except batch.FeatureMismatch as exc:
        log.warning("challenger v%d of %s not compared: %s", version, segment, exc)
        return version, str(exc)
    return version, model


def _compare(
    settings: Sections,
    champion: Scorer,
    against: tuple[int, Scorer],
    features: pl.DataFrame,
    scores: pl.DataFrame,
    champion_version: int,
    cell: tuple[float, int],
) -> tuple[dict, pl.DataFrame]:
    """Score the book with the challenger, compare, and apply its decision to the test cell."""
    version, model = against
    share, seed = cell
    theirs = model.score(features, reasons=settings.scoring.reasons and share > 0)
    comparison = challenger.compare(
        scores,
        theirs,
        champion_cutoff=champion.policy.approval_cutoff,
        challenger_cutoff=model.policy.approval_cutoff,
        band_order=champion.scaling.band_order,
        levels=settings.drift.score_levels,
        bins=settings.drift.bins,
    )
    flags = challenger.in_cell(scores["entity_id"], share, seed)
    applied = challenger.decide(
        scores, theirs, flags, champion_version=champion_version, challenger_version=version
    )
    section = {
        "model_version": version,
        "model_uri": registry.version_uri(registry.model_name(champion.segment), version),
        "champion_version": champion_version,
        "cell_share": share,
        "cell_seed": seed,
        "decided_by_challenger": int(flags.sum()),
        "report": challenger.REPORT_FILE,
        "comparison": comparison,
    }
    return section, applied


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
