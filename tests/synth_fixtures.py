"""Helpers for the synthetic-world tests: small worlds, labels and a few obvious features."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import polars as pl

from world.synth import WorldSpec, generate, world_end

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
    # Aggregate to merchant-day-kind first so the join with the loans stays small.
    txns = (
        pl.scan_parquet(raw / "merchant_transactions.parquet")
        .filter(pl.col("kind").is_in(["sale", "refund", "chargeback"]))
        .group_by(
            pl.col("merchant_id").alias("entity_id"), pl.col("ts").dt.date().alias("day"), "kind"
        )
        .agg(pl.col("amount").sum(), pl.len().alias("n"))
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
        chargebacks_90=pl.col("n").filter((pl.col("kind") == "chargeback") & recent).sum(),
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


# ----------------------------------------------------------------------------------------------
# A tiny hand-made world for the validation tests
# ----------------------------------------------------------------------------------------------

REFERENCE_TIME = datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC)


def _ts(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)


def _d(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def clean_tables() -> dict[str, pl.DataFrame]:
    """A tiny world that passes every rule; M3 and C3 have not consented.

    Row positions matter: the validation tests break one cell of one row and expect exactly
    that row (its 0-based ``source_row``) to be quarantined.
    """
    from features.contract import tables as contract

    frames = {
        "merchants": {
            "merchant_id": ["M1", "M2", "M3"],
            "onboarded_on": [_d("2023-01-01"), _d("2023-03-01"), _d("2023-01-01")],
            "industry": ["food", "apparel", "food"],
            "region": ["zhejiang", "guangdong", "other"],
            "consent": [True, True, False],
            "gender": ["female", None, "male"],  # the owner's, where the lender holds it
        },
        "consumers": {
            "consumer_id": ["C1", "C2", "C3"],
            "registered_on": [_d("2022-06-01"), _d("2023-02-01"), _d("2022-01-01")],
            "region": ["zhejiang", "sichuan", "other"],
            "birth_year": [1990, 1985, 1970],
            "consent": [True, True, False],
            "gender": ["male", "female", None],
        },
        "merchant_transactions": {
            "txn_id": ["T1", "T2", "T3", "T4", "T5", "T6"],
            "merchant_id": ["M1", "M1", "M2", "M2", "M1", "M3"],
            "ts": [
                _ts("2023-02-01 10:00:00"),
                _ts("2023-02-02 11:00:00"),
                _ts("2023-03-05 12:00:00"),
                _ts("2023-03-06 12:00:00"),
                _ts("2023-04-01 09:00:00"),
                _ts("2023-04-01 09:00:00"),
            ],
            "kind": ["sale", "refund", "sale", "payout", "sale", "sale"],
            "amount": [100.0, 20.0, 50.5, 40.0, 80.0, 10.0],
            "buyer_id": ["C1", "C1", None, None, "C3", "C1"],
            "channel": ["app", "app", "pos", "app", "web", "app"],
        },
        "consumer_transactions": {
            "txn_id": ["U1", "U2", "U3", "U4", "U5", "U6"],
            "consumer_id": ["C1", "C1", "C2", "C2", "C1", "C3"],
            "ts": [
                _ts("2023-02-01 10:00:00"),
                _ts("2023-02-10 08:00:00"),
                _ts("2023-03-01 08:00:00"),
                _ts("2023-03-02 08:00:00"),
                _ts("2023-03-03 08:00:00"),
                _ts("2023-03-03 08:00:00"),
            ],
            "kind": ["purchase", "income", "income", "transfer_out", "transfer_in", "income"],
            "direction": ["out", "in", "in", "out", "in", "in"],
            "amount": [100.0, 5000.0, 4000.0, 200.0, 300.0, 1000.0],
            "counterparty_id": ["M1", None, None, "C1", "C3", None],
            "channel": ["app", "app", "app", "app", "app", "app"],
            "balance_after": [900.0, 5900.0, None, None, 6200.0, 1000.0],
        },
        "loans": {
            "loan_id": ["L1", "L2", "L3"],
            "segment": ["merchant", "consumer", "merchant"],
            "entity_id": ["M1", "C1", "M3"],
            "issued_on": [_d("2023-06-01"), _d("2023-06-15"), _d("2023-06-01")],
            "principal": [3000.0, 1200.0, 500.0],
            "term_months": [3, 3, 3],
        },
        "repayments": {
            "loan_id": ["L1", "L1", "L1", "L2", "L2", "L2", "L3"],
            "installment": [1, 2, 3, 1, 2, 3, 1],
            "due_on": [
                _d("2023-07-01"),
                _d("2023-08-01"),
                _d("2023-09-01"),
                _d("2023-07-15"),
                _d("2023-08-15"),
                _d("2023-09-15"),
                _d("2023-07-01"),
            ],
            "amount_due": [1010.0, 1010.0, 1010.0, 410.0, 410.0, 410.0, 170.0],
            "paid_on": [
                _d("2023-07-01"),
                _d("2023-08-03"),
                None,
                _d("2023-07-14"),
                _d("2023-08-15"),
                _d("2023-09-20"),
                None,
            ],
            "amount_paid": [1010.0, 1010.0, 0.0, 410.0, 200.0, 410.0, 0.0],
        },
    }
    return {
        name: pl.DataFrame(cols, schema=contract.TABLES[name].schema)
        for name, cols in frames.items()
    }


def write_tables(raw: Path, tables: dict[str, pl.DataFrame], fmt: str = "parquet") -> Path:
    """Write the tables to ``raw`` as Parquet or CSV and return ``raw``."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "parquet":
            df.write_parquet(raw / f"{name}.parquet")
        else:
            df.write_csv(raw / f"{name}.csv")
    return raw
