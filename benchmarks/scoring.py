"""End-to-end batch scoring of 1M entities against LightGBM's bare predict, in the same run.

What is timed (each a median of ``--repeats`` runs, same model, same rows):

- ``bare_predict``: ``booster.predict(x)`` on the ready feature matrix: the floor.
- ``decision``: read the features Parquet, ``Scorer.score(reasons=False)`` (matrix, predict,
  calibrate, score, band, limit with its binding constraint), write the scores Parquet.
- ``with_reasons``: the same plus reason codes and per-dimension sub-scores for every entity
  (over ``--reasons-rows`` rows; entities per second are reported).
- top-reason agreement of the Scorer's reasons against exact TreeSHAP (``pred_contrib``) on a
  sample of ``--agreement-rows``.

The model is trained here on synthetic features with the merchant catalog's names and
monotone directions (``--trees`` rounds, params.yaml's leaves), unless ``--model-dir`` points
at a saved Scorer (e.g. data/models/merchant after ``make demo``). Data lives under ``--work``
(default /tmp/longtail-bench), never in the repository.

    uv run python benchmarks/scoring.py --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import inspect
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
from models.reasons import N_REASONS, top_reasons
from models.scorer import Scorer
from models.train import lgb_params
from pipeline.config import load_settings
from pipeline.inputs import definition_params

REPO = Path(__file__).resolve().parent.parent


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


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeats`` calls, and every run's time."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


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
    frame = pl.read_parquet(source)
    x = scorer.matrix(frame)
    out = args.work / "scores.parquet"

    bare, bare_runs = timed(lambda: scorer.booster.predict(x, raw_score=True), args.repeats)

    def decision() -> None:
        scorer.score(pl.read_parquet(source), reasons=False).write_parquet(out)

    decide, decide_runs = timed(decision, args.repeats)

    reasons_rows = min(args.reasons_rows or args.rows, args.rows)
    subset = args.work / f"features_{args.segment}_{args.rows}_head{reasons_rows}.parquet"
    if not subset.exists():
        frame.head(reasons_rows).write_parquet(subset)

    def with_reasons() -> None:
        scorer.score(pl.read_parquet(subset), reasons=True).write_parquet(out)

    reasons_s, reasons_runs = timed(with_reasons, args.repeats)

    sample = frame.head(args.agreement_rows)
    fast = scorer.score(sample, reasons=True)
    if "attribution" in inspect.signature(scorer.score).parameters:
        # The Scorer offers exact TreeSHAP itself (same reason rules, exact contributions).
        exact = scorer.score(sample, reasons=True, attribution="exact")["reason_1"].to_numpy()
    else:
        contrib = scorer.booster.predict(scorer.matrix(sample), pred_contrib=True)
        exact = top_reasons(contrib, scorer.specs, N_REASONS)[:, 0]
    agree = float(np.mean(np.asarray(fast["reason_1"].to_list(), dtype=object) == exact))

    result = {
        "rows": args.rows,
        "trees": scorer.booster.num_trees(),
        "features": len(scorer.feature_names),
        "cpus": os.cpu_count(),
        "bare_predict_s": round(bare, 3),
        "decision_s": round(decide, 3),
        "decision_vs_bare": round(decide / bare, 2),
        "reasons_rows": reasons_rows,
        "with_reasons_s": round(reasons_s, 3),
        "with_reasons_entities_per_s": round(reasons_rows / reasons_s),
        "top_reason_agreement_vs_treeshap": round(agree, 4),
        "agreement_rows": args.agreement_rows,
        "runs": {"bare": bare_runs, "decision": decide_runs, "with_reasons": reasons_runs},
    }
    print(
        f"{args.rows:,} entities, {result['trees']} trees, {result['features']} features, "
        f"{result['cpus']} CPUs (median of {args.repeats})\n"
        f"  bare LightGBM predict        {bare:8.2f} s\n"
        f"  decision, no reasons (e2e)   {decide:8.2f} s   {decide / bare:5.2f}x bare  "
        "(target <= 2x)\n"
        f"  with reasons + sub-scores    {reasons_s:8.2f} s   "
        f"{reasons_rows / reasons_s:10,.0f} entities/s on {reasons_rows:,} rows  "
        "(target >= 20,000/s)\n"
        f"  top reason = exact TreeSHAP top reason on {agree:.1%} of {args.agreement_rows:,} rows"
    )
    (args.work / "scoring_results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
