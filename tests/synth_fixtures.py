"""Helpers for the synthetic-world tests: small worlds, labels and a few obvious features."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.synth import WorldSpec, generate, world_end

WINDOW_DAYS = 365


def make_world(root: Path, spec: WorldSpec) -> dict[str, int]:
    """Generate ``spec`` under ``root/raw`` and ``root/truth``."""
    return generate(spec, root / "raw", root / "truth")


def labels(raw: Path, end: datetime.date) -> pl.DataFrame:
    """90+ DPD within 12 months of issue, for loans whose window closed before ``end``."""
    loans = pl.read_parquet(raw / "loans.parquet")
    reps = pl.read_parquet(raw / "repayments.parquet")
    horizon = pl.col("issued_on") + pl.duration(days=WINDOW_DAYS)
    full = (pl.col("amount_paid") >= pl.col("amount_due")) & pl.col("paid_on").is_not_null()
    cleared = pl.when(full).then(pl.col("paid_on")).otherwise(pl.lit(end))
    bad = (
        reps.join(loans.select("loan_id", "issued_on"), on="loan_id")
        .with_columns(
            reached=(pl.col("due_on") + pl.duration(days=90) <= horizon)
            & ((cleared - pl.col("due_on")).dt.total_days() >= 90)
        )
        .group_by("loan_id")
        .agg(pl.col("reached").any().alias("bad"))
    )
    return (
        loans.join(bad, on="loan_id", how="left")
        .with_columns(pl.col("bad").fill_null(False))
        .filter(pl.col("issued_on") + pl.duration(days=WINDOW_DAYS) <= pl.lit(end))
    )


def merchant_features(raw: Path, loans: pl.DataFrame) -> pl.DataFrame:
    """A few obvious merchant features at each loan's issue date (events strictly before it)."""
    txns = pl.scan_parquet(raw / "merchant_transactions.parquet").select(
        pl.col("merchant_id").alias("entity_id"),
        pl.col("ts").dt.date().alias("day"),
        "kind",
        "amount",
    )
    keys = loans.filter(pl.col("segment") == "merchant").select("loan_id", "entity_id", "issued_on")
    joined = (
        keys.lazy()
        .join(txns, on="entity_id")
        .filter(
            (pl.col("day") < pl.col("issued_on"))
            & (pl.col("day") >= pl.col("issued_on") - pl.duration(days=180))
        )
    )
    recent = pl.col("day") >= pl.col("issued_on") - pl.duration(days=90)
    sale = pl.col("kind") == "sale"
    feats = joined.group_by("loan_id").agg(
        sales_90=pl.col("amount").filter(sale & recent).sum(),
        sales_180=pl.col("amount").filter(sale).sum(),
        refunds_90=pl.col("amount").filter((pl.col("kind") == "refund") & recent).sum(),
        chargebacks_90=((pl.col("kind") == "chargeback") & recent).sum(),
        sale_days_90=pl.col("day").filter(sale & recent).n_unique(),
    )
    return (
        keys.join(feats.collect(), on="loan_id", how="left")
        .fill_null(0)
        .with_columns(
            trend=(pl.col("sales_90") + 1) / (pl.col("sales_180") - pl.col("sales_90") + 1),
            refund_rate=pl.col("refunds_90") / (pl.col("sales_90") + 1),
            log_sales=(pl.col("sales_90") + 1).log(),
        )
    )


def consumer_features(raw: Path, loans: pl.DataFrame) -> pl.DataFrame:
    """A few obvious consumer features at each loan's issue date (events strictly before it)."""
    txns = pl.scan_parquet(raw / "consumer_transactions.parquet").select(
        pl.col("consumer_id").alias("entity_id"),
        "ts",
        pl.col("ts").dt.date().alias("day"),
        "kind",
        "direction",
        "amount",
        "balance_after",
    )
    keys = loans.filter(pl.col("segment") == "consumer").select("loan_id", "entity_id", "issued_on")
    joined = (
        keys.lazy()
        .join(txns, on="entity_id")
        .filter(
            (pl.col("day") < pl.col("issued_on"))
            & (pl.col("day") >= pl.col("issued_on") - pl.duration(days=90))
        )
    )
    feats = joined.group_by("loan_id").agg(
        income_90=pl.col("amount").filter(pl.col("kind") == "income").sum(),
        income_n=(pl.col("kind") == "income").sum(),
        in_90=pl.col("amount").filter(pl.col("direction") == "in").sum(),
        out_90=pl.col("amount").filter(pl.col("direction") == "out").sum(),
        bills_90=(pl.col("kind") == "bill_payment").sum(),
        balance=pl.col("balance_after").sort_by("ts").drop_nulls().last(),
    )
    return keys.join(feats.collect(), on="loan_id", how="left").with_columns(
        pl.col("income_90", "in_90", "out_90", "bills_90", "income_n").fill_null(0),
        out_in=(pl.col("out_90") + 1) / (pl.col("in_90") + 1),
        log_income=(pl.col("income_90") + 1).log(),
        log_balance=(pl.col("balance").fill_null(-1) + 2).log(),
        has_balance=pl.col("balance").is_not_null(),
    )


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (rank formulation, ties averaged)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    pos = y.astype(bool)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


__all__ = ["auc", "consumer_features", "labels", "make_world", "merchant_features", "world_end"]
