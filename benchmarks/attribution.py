"""Fast path attribution vs exact TreeSHAP vs bare predict: speed, and agreement of the reasons.

Two models:

- a realistically sized synthetic one (default 300 trees x 63 leaves on 80 features, monotone
  constraints as in training), trained once and cached as LightGBM's text file;
- optionally a pipeline model (``--scorer data/models/merchant --features-file
  data/features/merchant.parquet``), e.g. the demo's.

Speed is rows per second, the median of ``--repeats`` runs on the same rows in the same
process, with ratios against bare ``predict``; the fast attribution is timed native
(``pred_leaf`` and a gather) and compiled (one lleaves forest per feature, built once into
``--cache``/compiled). Agreement is measured on ``--exact-rows`` rows:
top-1 reason the same, top-4 reason set the same, mean overlap of the top-4 sets, and the mean
absolute gap of the sub-scores (points), using the Scorer's own reason threshold.

    uv run python benchmarks/attribution.py
    uv run python benchmarks/attribution.py --scorer /tmp/demo/models/merchant \
        --features-file /tmp/demo/features/merchant.parquet
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np

from features.catalog import DIMENSIONS, FeatureSpec
from models.attribution import CompiledPaths, PathAttribution, exact_contributions
from models.reasons import dimension_points, top_reasons
from models.scaling import ScalingParams


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: the first call pays one-off costs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Credit-like data: a sparse linear signal, a few interactions, missing values, ~5% bad."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    x[rng.random(x.shape) < 0.05] = np.nan
    weights = rng.normal(size=features) * (rng.random(features) < 0.5)
    filled = np.nan_to_num(x)
    logit = (
        0.3 * filled @ weights - 3.2 + 0.5 * filled[:, 0] * filled[:, 1] - 0.3 * filled[:, 2] ** 2
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    monotone = [int(np.sign(w)) for w in weights]
    monotone[:3] = [0, 0, 0]  # the interacting features stay free
    return x, y, monotone


def synthetic_model(args: argparse.Namespace) -> tuple[lgb.Booster, np.ndarray, list[str]]:
    x, y, monotone = synthetic(args.train_rows + args.score_rows, args.features, args.seed)
    cache = args.cache / (
        f"synthetic-{args.train_rows}x{args.features}-{args.trees}t{args.leaves}l-{args.seed}.txt"
    )
    if cache.exists():
        booster = lgb.Booster(model_file=str(cache))
    else:
        params = {
            "objective": "binary",
            "num_leaves": args.leaves,
            "learning_rate": 0.05,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "monotone_constraints": monotone,
            "monotone_constraints_method": "advanced",
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 2,
            "seed": args.seed,
            "verbosity": -1,
        }
        start = time.perf_counter()
        train = lgb.Dataset(x[: args.train_rows], y[: args.train_rows])
        booster = lgb.train(params, train, num_boost_round=args.trees)
        print(f"trained the synthetic model in {time.perf_counter() - start:.0f} s -> {cache}")
        cache.parent.mkdir(parents=True, exist_ok=True)
        booster.save_model(str(cache))
    return booster, x[args.train_rows :], [f"f{i}" for i in range(args.features)]


def pipeline_model(args: argparse.Namespace) -> tuple[lgb.Booster, np.ndarray, list[str]]:
    import polars as pl

    from models.scorer import Scorer

    scorer = Scorer.load(args.scorer)
    frame = pl.read_parquet(args.features_file)
    x = scorer.matrix(frame)
    rows = np.random.default_rng(args.seed).permutation(x.shape[0])[: args.score_rows]
    return scorer.booster, x[rows], scorer.feature_names


def specs_for(names: list[str]) -> tuple[FeatureSpec, ...]:
    return tuple(
        FeatureSpec(
            name=n,
            segment="merchant",
            dimension=DIMENSIONS[i % len(DIMENSIONS)],
            window_days=None,
            monotone=0,
            description=n,
            reason=n,
        )
        for i, n in enumerate(names)
    )


def agreement(fast: np.ndarray, exact: np.ndarray, names: list[str]) -> dict[str, float]:
    scaling = ScalingParams()
    specs = specs_for(names)
    floor = scaling.reason_min_points / scaling.factor
    rf = top_reasons(fast, specs, min_contribution=floor)
    re = top_reasons(exact, specs, min_contribution=floor)
    top1 = np.mean(rf[:, 0] == re[:, 0])
    sets_f = [set(r) - {None} for r in rf.tolist()]
    sets_e = [set(r) - {None} for r in re.tolist()]
    same_set = np.mean([a == b for a, b in zip(sets_f, sets_e, strict=True)])
    overlap = np.mean(
        [
            len(a & b) / max(len(a), len(b)) if a or b else 1.0
            for a, b in zip(sets_f, sets_e, strict=True)
        ]
    )
    pf = dimension_points(fast, specs, scaling.factor)
    pe = dimension_points(exact, specs, scaling.factor)
    sub_gap = np.mean([np.abs(pf[d] - pe[d]).mean() for d in DIMENSIONS])
    return {
        "top1_reason_agree": float(top1),
        "top4_set_equal": float(same_set),
        "top4_overlap": float(overlap),
        "subscore_mean_abs_gap_points": float(sub_gap),
        "rows_with_a_reason": float(np.mean(re[:, 0] != None)),  # noqa: E711
    }


def run(label: str, booster: lgb.Booster, x: np.ndarray, names: list[str], args) -> None:
    exact_x = x[: args.exact_rows]
    start = time.perf_counter()
    paths = PathAttribution.from_booster(booster)
    build = time.perf_counter() - start
    predict = median_seconds(lambda: booster.predict(x, raw_score=True), args.repeats)
    leaf = median_seconds(lambda: booster.predict(x, pred_leaf=True), args.repeats)
    fast = median_seconds(lambda: paths.contributions(booster, x), args.repeats)
    start = time.perf_counter()
    compiled = CompiledPaths.build(booster, paths, args.cache / "compiled")
    compile_s = time.perf_counter() - start
    fast_compiled = median_seconds(lambda: compiled.contributions(x), args.repeats)
    exact = median_seconds(
        lambda: exact_contributions(booster, exact_x[: args.exact_rows // 2]), args.exact_repeats
    )
    rps = {
        "predict (raw score)": x.shape[0] / predict,
        "pred_leaf only": x.shape[0] / leaf,
        "fast attribution": x.shape[0] / fast,
        "fast, compiled": x.shape[0] / fast_compiled,
        "exact TreeSHAP": exact_x[: args.exact_rows // 2].shape[0] / exact,
    }
    print(
        f"\n== {label}: {booster.num_trees()} trees, up to "
        f"{max(t['num_leaves'] for t in booster.dump_model()['tree_info'])} leaves, "
        f"{len(names)} features; table {paths.table.shape} nnz {paths.table.nnz}, "
        f"built in {build:.2f} s; {len(compiled.forests)} compiled feature forests ready in "
        f"{compile_s:.1f} s (cached in {args.cache / 'compiled'})"
    )
    print(f"{'method':<22}{'rows/s':>12}{'x slower than predict':>24}")
    for name, value in rps.items():
        print(f"{name:<22}{value:>12,.0f}{rps['predict (raw score)'] / value:>24.1f}")
    print(f"fast is {rps['fast attribution'] / rps['exact TreeSHAP']:.0f}x exact TreeSHAP")
    f = paths.contributions(booster, exact_x)
    e = exact_contributions(booster, exact_x)
    gap = np.abs(f.sum(axis=1) - booster.predict(exact_x, raw_score=True)).max()
    print(f"additivity: max |sum(fast) - raw| = {gap:.1e}")
    same = np.abs(compiled.contributions(exact_x) - f).max()
    print(f"compiled vs fast: max |difference| = {same:.1e}")
    for key, value in agreement(f, e, names).items():
        print(f"{key:<32}{value:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-rows", type=int, default=30_000)
    parser.add_argument("--features", type=int, default=80)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--leaves", type=int, default=63)
    parser.add_argument("--score-rows", type=int, default=5_000)
    parser.add_argument("--exact-rows", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exact-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "longtail-bench"
    )
    parser.add_argument("--scorer", type=Path, help="a saved Scorer folder (data/models/...)")
    parser.add_argument("--features-file", type=Path, help="that segment's features parquet")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if not args.skip_synthetic:
        run("synthetic", *synthetic_model(args), args)
    if args.scorer is not None:
        if args.features_file is None:
            parser.error("--scorer needs --features-file (a features parquet of that segment)")
        run(f"pipeline model {args.scorer}", *pipeline_model(args), args)


if __name__ == "__main__":
    main()
