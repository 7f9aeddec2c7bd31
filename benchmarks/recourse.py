"""Recourse on a 100k book against batch scoring of the same book, in the same run.

What is timed (each a median of ``--repeats`` runs, same model, same rows):

- ``decision``: ``Scorer.score(reasons=False)``: the floor a batch score pays anyway.
- ``with_reasons``: ``Scorer.score(reasons=True)``: what batch scoring runs by default.
- ``recourse``: :func:`models.recourse.recourse` at the policy's approval cut-off (one and two
  feature search, verification by re-scoring, text), reported as book rows per second and as
  declined entities per second, with its ratio to ``with_reasons``.

Also reported: the share of the book declined, how many got a change (one feature, two) or
"no change within reach", and the process's peak memory (after recourse, which runs first, and
in all).

The model is :mod:`benchmarks.scoring`'s: trained here on synthetic features with the catalog's
names, monotone directions and actionable flags (``--trees`` rounds), unless ``--model-dir``
points at a saved Scorer and ``--features-file`` at its features (e.g. a demo's
data/models/merchant and data/features/merchant_book.parquet). A model saved before the
catalog had the actionable flag gets today's catalog flags by feature name (said in the output).
The book is ``--rows`` rows drawn from the features (with replacement when fewer), seeded.

    uv run python benchmarks/recourse.py
    uv run python benchmarks/recourse.py --model-dir data/models/consumer
        --features-file data/features/consumer_book.parquet   (one line)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
from scoring import synthetic_features, train_scorer  # the sibling benchmark's model and data

from features.definitions import definitions
from models.recourse import movable, recourse
from models.scorer import Scorer
from pipeline.config import load_settings
from pipeline.inputs import definition_params

REPO = Path(__file__).resolve().parent.parent


def actionable_today(segment: str) -> dict[str, bool]:
    """Today's catalog flags by feature name (for a model saved before the flag existed)."""
    settings = load_settings(REPO / "params.yaml")
    catalog = definitions(
        segment, definition_params(settings.features, settings.label, settings.limits)
    ).catalog
    return {s.name: s.actionable for s in catalog.specs}


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Median wall seconds of ``repeats`` calls, every run's time, and the last result."""
    runs, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        runs.append(round(time.perf_counter() - start, 3))
    return statistics.median(runs), runs, out


def load(args: argparse.Namespace) -> tuple[Scorer, pl.DataFrame, str]:
    """The scorer, the book of ``--rows`` rows, and where the actionable flags came from."""
    if args.model_dir is None:
        scorer = train_scorer(args.segment, args.trees, args.seed)
        return scorer, synthetic_features(scorer.segment, args.rows, args.seed)[0], "catalog"
    scorer = Scorer.load(args.model_dir)
    flags = "saved with the model"
    if not any(s.actionable for s in scorer.specs):
        today = actionable_today(scorer.segment)
        scorer = replace(
            scorer,
            specs=tuple(replace(s, actionable=today.get(s.name, False)) for s in scorer.specs),
        )
        flags = "today's catalog (the model predates the flag)"
    features = pl.read_parquet(args.features_file)
    book = features.sample(args.rows, with_replacement=args.rows > features.height, seed=args.seed)
    book = book.with_columns(pl.format("B{}", pl.int_range(pl.len())).alias("entity_id"))
    return scorer, book, flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--segment", default="merchant")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--features-file", type=Path, default=None)
    parser.add_argument("--cutoff", type=int, default=None, help="default: the model's policy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if (args.model_dir is None) != (args.features_file is None):
        parser.error("expected --model-dir and --features-file together")

    scorer, book, flags = load(args)
    cutoff = args.cutoff or scorer.policy.approval_cutoff
    # recourse first, so the peak memory read after it is its own (scoring with reasons needs more)
    found_s, found_runs, found = timed(lambda: recourse(scorer, book, cutoff), args.repeats)
    recourse_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    decide, decide_runs, scores = timed(lambda: scorer.score(book, reasons=False), args.repeats)
    reasons, reasons_runs, _ = timed(lambda: scorer.score(book, reasons=True), args.repeats)

    declined = int((scores["score"] < cutoff).sum())
    status = dict(found["recourse_status"].value_counts().iter_rows())
    widths = (
        found.explode("recourse_changes")
        .drop_nulls("recourse_changes")
        .unnest("recourse_changes")
        .group_by("entity_id", "option")
        .len()
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{book.height:,} entities ({scorer.segment}), {scorer.booster.num_trees()} trees, "
        f"{len(scorer.feature_names)} features, {len(movable(scorer))} movable (actionable, "
        f"monotone, used; flags from {flags}), {os.cpu_count()} CPUs, cut-off {cutoff}, "
        f"median of {args.repeats}\n"
        f"  decision, no reasons   {decide:8.2f} s  {book.height / decide:10,.0f} rows/s  "
        f"runs {decide_runs}\n"
        f"  with reasons           {reasons:8.2f} s  {book.height / reasons:10,.0f} rows/s  "
        f"runs {reasons_runs}\n"
        f"  recourse               {found_s:8.2f} s  {book.height / found_s:10,.0f} book rows/s"
        f"  {declined / found_s:8,.0f} declined entities/s  {found_s / reasons:5.1f}x with "
        f"reasons  runs {found_runs}\n"
        f"  declined {declined:,} ({declined / book.height:.1%}): {status}; options of one "
        f"feature {int((widths['len'] == 1).sum()):,}, of two {int((widths['len'] == 2).sum()):,}"
        f"\n  peak memory {recourse_mb:,.0f} MB after recourse, {peak_mb:,.0f} MB in all"
    )


if __name__ == "__main__":
    main()
