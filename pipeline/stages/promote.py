"""Stage ``promote``: the gate that moves ``champion`` to the challenger only if it earns it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

import polars as pl

from models import evaluate as ev
from models import stability
from models.scaling import pd_to_score
from models.scorer import Scorer
from models.split import TEST
from models.train import monotonicity_violations
from pipeline import inputs, registry
from pipeline.artifacts import read_reference_scores
from pipeline.config import Sections, uses
from pipeline.storage import Layout

log = logging.getLogger(__name__)
PARAMS = ("split", "registry", "drift", "mlflow")


@uses(*PARAMS)
def run(settings: Sections, segment: str, *, force: bool = False) -> dict:
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
    test = inputs.sliced(Layout(settings.data_dir), segment, settings.split).filter(
        pl.col("slice") == TEST
    )
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
            read_reference_scores(chall_dir), test_scores, bins=settings.drift.bins
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
