"""End-to-end batch scoring of 1M entities against LightGBM's bare predict, in the same run.

What is timed (each a median of ``--repeats`` runs, same model, same rows, same process):

- ``bare_predict``: ``booster.predict(x, raw_score=True)`` on the ready feature matrix: the
  baseline every ratio is against.
- ``bare_compiled``: the lleaves-compiled booster's predict on the same matrix (for reference).
- ``decision`` (native / compiled): read the features Parquet, ``Scorer.score(reasons=False)``
  (matrix, predict, calibrate, score, band, limit with its binding constraint, price), write the
  scores Parquet; ``compiled`` predicts through the compiled booster.
- ``with_reasons`` (native / compiled): the same plus reason codes and per-dimension sub-scores
  for every entity (over ``--reasons-rows`` rows; entities per second are reported); native
  attributes through ``pred_leaf`` and a gather, compiled through one compiled forest per
  feature.
- agreement of the Scorer's (fast, path) attributions with exact TreeSHAP (``pred_contrib``)
  on ``--agreement-rows`` rows: the share of entities whose top reason is the same, the mean
  overlap of the four reasons, and the mean per-entity Spearman rank correlation of the
  feature contributions.

The compiled binaries are built once into ``--work``/compiled before timing (the build time is
reported, and a rerun loads them). The model is trained here on synthetic features with the
merchant catalog's names and monotone directions (``--trees`` rounds, params.yaml's leaves),
unless ``--model-dir`` points at a saved Scorer (e.g. data/models/merchant after ``make demo``).
Data lives under ``--work`` (default /tmp/longtail-bench), never in the repository.

    uv run python benchmarks/scoring.py --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from features.catalog import Catalog
from features.definitions import POLICY_INPUTS, definitions
from models.calibrate import fit_calibrator
from models.reasons import N_REASONS
from models.scorer import Scorer
from models.train import lgb_params
from pipeline.config import load_settings
from pipeline.inputs import definition_params

REPO = Path(__file__).resolve().parent.parent
REASONS = [f"reason_{i + 1}" for i in range(N_REASONS)]


def _catalog(segment: str) -> Catalog:
    settings = load_settings(REPO / "params.yaml")
    params = definition_params(settings.features, settings.label, settings.limits)
    return definitions(segment, params).catalog


def synthetic_features(segment: str, rows: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Features with the catalog's names, a label that respects each monotone direction."""
    rng = np.random.default_rng(seed)
    specs = _catalog(segment).specs
    x = rng.normal(size=(rows, len(specs)))
    x[rng.random(x.shape) < 0.03] = np.nan  # some missing values, as in real logs
    weights = rng.uniform(0.1, 0.6, len(specs)) * np.array(
        [s.pd_monotone or rng.choice([-1, 1]) for s in specs]
    )
    logit = -3.0 + np.nan_to_num(x) @ weights + rng.normal(0, 0.5, rows)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(float)
    inflow = np.round(rng.lognormal(10, 1, rows), 2)
    frame = pl.DataFrame({s.name: x[:, j] for j, s in enumerate(specs)}).with_columns(
        pl.format("E{}", pl.int_range(rows)).alias("entity_id"),
        pl.Series("monthly_inflow", inflow),
        pl.Series("monthly_free_cash_flow", np.round(inflow * rng.uniform(-0.1, 0.4, rows), 2)),
        pl.Series("current_dpd", np.where(rng.random(rows) < 0.02, 45.0, 0.0)),
    )
    return frame.select("entity_id", *[s.name for s in specs], *POLICY_INPUTS), y


def train_scorer(segment: str, trees: int, seed: int) -> Scorer:
    """A Scorer of realistic size trained on 100k synthetic rows (fixed rounds, no stopping)."""
    settings = load_settings(REPO / "params.yaml")
    specs = tuple(_catalog(segment).specs)
    frame, y = synthetic_features(segment, 100_000, seed + 1)
    x = frame.select(pl.col([s.name for s in specs]).cast(pl.Float64)).to_numpy()
    params = lgb_params(settings.model.train, [s.pd_monotone for s in specs])
    booster = lgb.train(
        params,
        lgb.Dataset(x, y, feature_name=[s.name for s in specs]),
        num_boost_round=trees,
    )
    calibrator = fit_calibrator(booster.predict(x, raw_score=True), y, "isotonic")
    return Scorer(
        segment=segment,
        specs=specs,
        booster=booster,
        calibrator=calibrator,
        scaling=settings.scaling,
        policy=settings.limits[segment],
    )


def timed(
    fn: Callable[[], object], repeats: int, cpu: dict[str, float] | None = None, label: str = ""
) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeats`` calls, and every run's time.

    With ``cpu``, also stores under ``label`` the median CPU seconds of the process (every
    thread): a measure of work that a machine shared with other jobs distorts far less.
    """
    runs, cpu_runs = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append(time.perf_counter() - start)
        cpu_runs.append(time.process_time() - start_cpu)
    if cpu is not None:
        cpu[label] = round(statistics.median(cpu_runs), 3)
    return statistics.median(runs), runs


def bare_predicts(
    scorer: Scorer, source: Path, cache: Path, repeats: int, cpu: dict[str, float]
) -> tuple[float, list[float], float, list[float]]:
    """LightGBM's and the compiled predict on the ready matrix (freed before what follows)."""
    x = scorer.matrix(pl.read_parquet(source))
    predict = scorer.booster.predict
    bare, bare_runs = timed(lambda: predict(x, raw_score=True), repeats, cpu, "bare")
    compiled, compiled_runs = timed(
        lambda: scorer.raw_scores(x, compiled=cache), repeats, cpu, "bare_compiled"
    )
    return bare, bare_runs, compiled, compiled_runs


def rank_agreement(fast: np.ndarray, exact: np.ndarray) -> float:
    """Mean over entities of the Spearman correlation of their feature contributions."""

    def ranks(a: np.ndarray) -> np.ndarray:
        r = np.argsort(np.argsort(a, axis=1, kind="stable"), axis=1).astype(float)
        return r - r.mean(axis=1, keepdims=True)

    rf, re = ranks(fast), ranks(exact)
    denominator = np.sqrt((rf**2).sum(axis=1) * (re**2).sum(axis=1))
    return float(np.mean((rf * re).sum(axis=1) / np.where(denominator > 0, denominator, 1.0)))


def agreement(scorer: Scorer, sample: pl.DataFrame, compiled: Path) -> dict[str, float]:
    """How the Scorer's reasons and contributions compare with exact TreeSHAP on ``sample``."""
    fast = scorer.score(sample, reasons=True, compiled=compiled).select(REASONS).to_numpy()
    exact = scorer.score(sample, reasons=True, attribution="exact").select(REASONS).to_numpy()
    overlap = [
        len(set(a) & set(b) - {None}) / max(len(set(a) - {None}), len(set(b) - {None}), 1)
        for a, b in zip(fast.tolist(), exact.tolist(), strict=True)
    ]
    contrib_fast = scorer.contributions(sample, compiled=compiled)[:, :-1]
    contrib_exact = scorer.contributions(sample, attribution="exact")[:, :-1]
    return {
        "top_reason_agreement_vs_treeshap": round(float(np.mean(fast[:, 0] == exact[:, 0])), 4),
        "top4_overlap_vs_treeshap": round(float(np.mean(overlap)), 4),
        "spearman_vs_treeshap": round(rank_agreement(contrib_fast, contrib_exact), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reasons-rows", type=int, default=None, help="default: --rows")
    parser.add_argument("--agreement-rows", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--segment", default="merchant")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/longtail-bench"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    scorer = (
        Scorer.load(args.model_dir)
        if args.model_dir
        else train_scorer(args.segment, args.trees, args.seed)
    )
    # Keyed by the catalog hash: a cache from another feature set must not be reused.
    source = args.work / (
        f"features_{args.segment}_{args.rows}_{_catalog(scorer.segment).hash}.parquet"
    )
    if not source.exists():
        synthetic_features(scorer.segment, args.rows, args.seed)[0].write_parquet(source)
    cache = args.work / "compiled"
    start = time.perf_counter()
    scorer.score(pl.read_parquet(source, n_rows=10), compiled=cache)  # compile or load once
    build_s = time.perf_counter() - start
    out = args.work / "scores.parquet"

    cpu: dict[str, float] = {}
    bare, bare_runs, bare_c, bare_c_runs = bare_predicts(scorer, source, cache, args.repeats, cpu)

    def decision(compiled: Path | None) -> None:
        scorer.score(pl.read_parquet(source), reasons=False, compiled=compiled).write_parquet(out)

    decide, decide_runs = timed(lambda: decision(None), args.repeats, cpu, "decision")
    decide_c, decide_c_runs = timed(lambda: decision(cache), args.repeats, cpu, "decision_compiled")

    reasons_rows = min(args.reasons_rows or args.rows, args.rows)
    subset = source
    if reasons_rows < args.rows:
        subset = args.work / f"features_{args.segment}_{args.rows}_head{reasons_rows}.parquet"
        if not subset.exists():
            pl.read_parquet(source, n_rows=reasons_rows).write_parquet(subset)

    def with_reasons(compiled: Path | None) -> None:
        scorer.score(pl.read_parquet(subset), reasons=True, compiled=compiled).write_parquet(out)

    reasons_s, reasons_runs = timed(lambda: with_reasons(None), args.repeats, cpu, "with_reasons")
    reasons_c, reasons_c_runs = timed(
        lambda: with_reasons(cache), args.repeats, cpu, "with_reasons_compiled"
    )

    agree = agreement(scorer, pl.read_parquet(source, n_rows=args.agreement_rows), cache)
    result = {
        "rows": args.rows,
        "trees": scorer.booster.num_trees(),
        "features": len(scorer.feature_names),
        "cpus": os.cpu_count(),
        "compile_or_load_s": round(build_s, 2),
        "bare_predict_s": round(bare, 3),
        "bare_compiled_s": round(bare_c, 3),
        "decision_s": round(decide, 3),
        "decision_vs_bare": round(decide / bare, 2),
        "decision_compiled_s": round(decide_c, 3),
        "decision_compiled_vs_bare": round(decide_c / bare, 2),
        "reasons_rows": reasons_rows,
        "with_reasons_s": round(reasons_s, 3),
        "with_reasons_entities_per_s": round(reasons_rows / reasons_s),
        "with_reasons_compiled_s": round(reasons_c, 3),
        "with_reasons_compiled_entities_per_s": round(reasons_rows / reasons_c),
        **agree,
        "agreement_rows": args.agreement_rows,
        "cpu_seconds": cpu,
        "cpu_vs_bare": {k: round(v / max(cpu["bare"], 1e-3), 2) for k, v in cpu.items()},
        "runs": {
            "bare": bare_runs,
            "bare_compiled": bare_c_runs,
            "decision": decide_runs,
            "decision_compiled": decide_c_runs,
            "with_reasons": reasons_runs,
            "with_reasons_compiled": reasons_c_runs,
        },
    }
    print(
        f"{args.rows:,} entities, {result['trees']} trees, {result['features']} features, "
        f"{result['cpus']} CPUs (median of {args.repeats}); compiled binaries ready in "
        f"{build_s:.1f} s\n"
        f"  bare LightGBM predict              {bare:8.2f} s   (the baseline)\n"
        f"  bare compiled predict              {bare_c:8.2f} s   {bare_c / bare:5.2f}x bare\n"
        f"  decision + price, native (e2e)     {decide:8.2f} s   {decide / bare:5.2f}x bare\n"
        f"  decision + price, compiled (e2e)   {decide_c:8.2f} s   {decide_c / bare:5.2f}x bare  "
        "(target <= 1.2x)\n"
        f"  with reasons + sub-scores, native  {reasons_s:8.2f} s   "
        f"{reasons_rows / reasons_s:10,.0f} entities/s on {reasons_rows:,} rows\n"
        f"  with reasons + sub-scores, compiled{reasons_c:8.2f} s   "
        f"{reasons_rows / reasons_c:10,.0f} entities/s  (target >= 100,000/s)\n"
        "  CPU seconds (all threads) vs bare: "
        + ", ".join(f"{k} {v / max(cpu['bare'], 1e-3):.2f}x" for k, v in cpu.items() if k != "bare")
        + "\n"
        f"  vs exact TreeSHAP on {args.agreement_rows:,} rows: top reason the same for "
        f"{agree['top_reason_agreement_vs_treeshap']:.1%}, top-4 overlap "
        f"{agree['top4_overlap_vs_treeshap']:.1%}, mean Spearman "
        f"{agree['spearman_vs_treeshap']:.3f}"
    )
    (args.work / "scoring_results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
