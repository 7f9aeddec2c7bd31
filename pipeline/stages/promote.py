"""Stage ``promote``: the gate that moves ``champion`` to the challenger only if it earns it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from models import evaluate as ev
from models import fairness as fair
from models import stability
from models.scaling import pd_to_score
from models.scorer import Scorer
from models.split import TEST, TRAIN
from models.train import monotonicity_violations
from pipeline import fairness, inputs, registry
from pipeline.artifacts import read_out_of_fold, read_reference_scores
from pipeline.config import Sections, uses
from pipeline.storage import Layout

log = logging.getLogger(__name__)
PARAMS = ("split", "registry", "fairness", "drift", "mlflow")


@uses(*PARAMS)
def run(settings: Sections, segment: str, *, force: bool = False) -> dict:
    """The promotion gate: move ``champion`` to the challenger only if it earns it.

    Both models rescore the same out-of-time test rows (the test slice of the current training
    features). The challenger must not lose more than ``registry.auc_tolerance`` of AUC to the
    champion, must keep its monotone constraints on those rows, and its score PSI between its
    training rows and those rows must not reach the ``drift`` alert level. With no champion
    yet, the challenger's own checks decide.

    With ``split.mode: cv`` there is no held-out slice: the rows are every labelled loan of the
    book, the challenger's AUC is its out-of-fold AUC (mean over repeats, from the
    ``cv_oof.parquet`` it was registered with), the champion's is its AUC on the same loans
    (in-sample if it was trained on them, so the comparison leans to the incumbent), and the
    score PSI is not measured. Every decision (promoted, refused, forced) is
    recorded as tags on the challenger version and on the registered model; a replaced
    champion keeps the alias ``previous-champion`` for a one-command rollback.

    Fairness (params.yaml ``fairness``): both models' approvals at their own cut-off on the
    same rows are split by the protected and proxy attributes of the validated entity table
    (:mod:`pipeline.fairness`); the challenger is refused when an adverse impact ratio is under
    ``fairness.adverse_impact_min`` or more than ``fairness.tolerance`` below the champion's
    (:func:`models.fairness.gate_refusals`), and the reasons say which attribute and groups.
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
    cv = settings.split.mode == "cv"
    layout = Layout(settings.data_dir)
    test = inputs.sliced(layout, segment, settings.split).filter(
        pl.col("slice") == (TRAIN if cv else TEST)
    )
    y = test["bad"].to_numpy()
    checks: dict = {"oot_rows": test.height, "champion_auc": None, "champion_error": None}
    with tempfile.TemporaryDirectory(prefix="longtail-promote-") as tmp:
        chall_dir = registry.download_scorer(
            registry.version_uri(name, challenger.version), Path(tmp) / "challenger"
        )
        chall = Scorer.load(chall_dir)
        chall.check_columns(test)
        chall_fair = fairness.measure_scorer(layout, segment, chall, test, settings.fairness)
        champ_fair = None
        checks["monotone_violations"] = monotonicity_violations(
            chall.booster, chall.matrix(test), [s.pd_monotone for s in chall.specs]
        )
        if cv:
            checks["challenger_auc"] = _out_of_fold_auc(chall_dir, test)
            checks["challenger_score_psi"] = None
        else:
            chall_pd = chall.predict_pd(test)
            checks["challenger_auc"] = ev.auc(y, chall_pd)
            # like with like: training loans' scores vs out-of-time test loans'
            checks["challenger_score_psi"] = stability.psi(
                read_reference_scores(chall_dir),
                pd_to_score(chall_pd, chall.scaling),
                bins=settings.drift.bins,
            )
        if champion is not None:
            champ = registry.load_scorer(
                registry.version_uri(name, champion.version), Path(tmp) / "champion"
            )
            try:
                checks["champion_auc"] = ev.auc(y, champ.predict_pd(test))
                champ_fair = fairness.measure_scorer(
                    layout, segment, champ, test, settings.fairness
                )
            except ValueError as exc:
                checks["champion_error"] = (
                    f"the champion v{champion.version} cannot score the same out-of-time rows "
                    f"({exc}), so the two cannot be compared like for like"
                )
    refusals = registry.promotion_gate(checks, settings.registry, settings.drift.score_levels)
    refusals += fair.gate_refusals(chall_fair, champ_fair, settings.fairness)
    checks["fairness"] = {
        "challenger": _ratios(chall_fair),
        "champion": None if champ_fair is None else _ratios(champ_fair),
    }
    promote = force or not refusals
    if not refusals:
        decision = "promoted"
        reasons = (
            [f"no {registry.CHAMPION} yet: first promotion, on the challenger's own checks"]
            if champion is None
            else [
                f"challenger AUC {checks['challenger_auc']:.4f} vs champion "
                f"{checks['champion_auc']:.4f} on {test.height} "
                f"{'labelled (cross-validated)' if cv else 'out-of-time'} rows; monotone; "
                f"score PSI {_psi_text(checks['challenger_score_psi'])}"
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
        "challenger_score_psi": _psi_text(checks["challenger_score_psi"]),
        "challenger_adverse_impact": json.dumps(checks["fairness"]["challenger"]),
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


def _ratios(record: dict) -> dict[str, float | None]:
    """Each attribute's adverse impact ratio (None: absent or not judged), for tags and result."""
    return {a: r.get("adverse_impact_ratio") for a, r in record["attributes"].items()}


def _psi_text(psi: float | None) -> str:
    return "not measured (cross-validated)" if psi is None else f"{psi:.6f}"


def _out_of_fold_auc(model_dir: Path, rows: pl.DataFrame) -> float:
    """The model's cross-validated AUC on ``rows``: its out-of-fold PDs, mean over repeats."""
    oof = read_out_of_fold(model_dir).join(rows.select("loan_id", "bad"), on="loan_id")
    per_repeat = [
        ev.auc(part["bad"].to_numpy(), part["pd"].to_numpy())
        for part in oof.partition_by("repeat", maintain_order=True)
    ]
    return float(np.mean(per_repeat)) if per_repeat else float("nan")
