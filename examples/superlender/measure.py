"""How far the pipeline's features get on superlender's target loans.

Usage: ``python examples/superlender/measure.py --data DIR [--params FILE]`` after
``longtail validate`` and ``longtail features`` on ``DIR``. The target loans (those with an
``outcomes`` row that passed validation) are split 70/30, stratified with ``random_state=42``
in ``systemloanid`` order, as for the Taiwan set; a plain LightGBM and a logistic regression
are fitted on the catalog's features (the learners are the Taiwan example's, one definition).
As a reference on the same split, a LightGBM on what a modeller would aggregate by hand from
the source (the target's amount, term and loan number, the earlier loans' count and their days
late at first repayment and at closing), each known before the target's approval.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
from sklearn.model_selection import train_test_split

from pipeline.config import load_settings
from pipeline.inputs import feature_definitions

HERE = Path(__file__).resolve().parent
SEED = 42


def _module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONVERT = _module(HERE / "convert.py", "superlender_convert")
SOURCE = CONVERT.SOURCE


def hand_features(source: Path) -> pl.DataFrame:
    """Per target loan: its application fields and its borrower's earlier loans' lateness."""
    raw = CONVERT.read_source(source)
    ts = lambda c: pl.col(c).str.to_datetime("%Y-%m-%d %H:%M:%S%.f")  # noqa: E731
    history = (
        raw["previous"]
        .select(
            "customerid",
            (ts("firstrepaiddate") - ts("firstduedate")).dt.total_days().alias("first_late"),
            (ts("closeddate") - ts("firstduedate")).dt.total_days().alias("close_late"),
        )
        .group_by("customerid")
        .agg(
            pl.len().alias("prev_loans"),
            pl.col("first_late").mean().alias("first_late_mean"),
            pl.col("first_late").max().alias("first_late_max"),
            pl.col("close_late").mean().alias("close_late_mean"),
            pl.col("close_late").max().alias("close_late_max"),
            (pl.col("close_late") > 0).mean().alias("late_share"),
        )
    )
    return (
        raw["target"]
        .join(history, on="customerid", how="left")
        .select(
            pl.col("systemloanid").alias("loan_id"),
            *(
                pl.col(c).cast(pl.Float64)
                for c in ("loannumber", "loanamount", "totaldue", "termdays")
            ),
            *history.columns[1:],
        )
    )


def measure(data: Path, params: Path, source: Path | None = None) -> dict[str, float]:
    """AUCs on the stratified 70/30 split of the target loans."""
    learners = _module(HERE.parent / "taiwan-credit-card" / "measure.py", "taiwan_measure")
    settings = load_settings(params, data_dir=str(data))
    names = list(
        feature_definitions(
            "consumer", settings.features, settings.label, settings.limits
        ).catalog.names
    )
    targets = pl.read_parquet(data / "validated" / "outcomes.parquet").select("loan_id")
    frame = (
        pl.read_parquet(data / "features" / "consumer.parquet")
        .join(targets, on="loan_id")
        .sort(pl.col("loan_id").cast(pl.Int64))
    )
    x = frame.select(pl.col(names).cast(pl.Float64)).to_numpy()
    y = frame["bad"].to_numpy()
    train, test = train_test_split(
        np.arange(frame.height), test_size=0.3, stratify=y, random_state=SEED
    )
    hand = frame.select("loan_id").join(
        hand_features(source or SOURCE),
        on="loan_id",
        how="left",
        maintain_order="left",
    )
    xh = hand.drop("loan_id").to_numpy()
    return {
        "loans": float(frame.height),
        "bads": float(y.sum()),
        "features_lightgbm": learners.lightgbm_auc(x[train], y[train], x[test], y[test]),
        "features_logistic": learners.logistic_auc(x[train], y[train], x[test], y[test]),
        "hand_lightgbm": learners.lightgbm_auc(xh[train], y[train], xh[test], y[test]),
    }


def main() -> None:
    """Command line: print the AUCs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the data folder (has features/)")
    parser.add_argument("--params", type=Path, default=HERE / "params.yaml")
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.data, args.params, args.source)
    print(f"target loans {int(result['loans']):,}, bads {int(result['bads']):,}")
    print("AUC on the stratified 70/30 split (random_state 42):")
    print(f"  pipeline features, LightGBM            {result['features_lightgbm']:.3f}")
    print(f"  pipeline features, logistic regression {result['features_logistic']:.3f}")
    print(f"  hand-made source aggregates, LightGBM  {result['hand_lightgbm']:.3f}")


if __name__ == "__main__":
    main()
