"""Turn the UCI Taiwan credit-card data set into longtail's contract tables.

Usage: ``python examples/taiwan-credit-card/convert.py OUT_DIR [--source CSV] [--sample N]``
writes ``consumers``, ``consumer_transactions``, ``loans`` and ``outcomes`` as Parquet into
``OUT_DIR`` (e.g. ``data-taiwan/raw``). The source is read by path and never copied.

Every modelling choice, column by column (README.md beside this file says why):

- one card holder (``ID``) is one consumer ``TW<ID>``; ``X5`` age becomes ``birth_year`` =
  2005 - age; the data name no region, so ``region`` is ``taiwan``; every holder consents;
  the account's opening date is not recorded, so ``registered_on`` is the first day of the data
  (2005-04-01). ``X2``-``X4`` (sex, education, marriage) have no place in the contract.
- the six monthly amounts paid (``X18`` Sep ... ``X23`` Apr 2005) are real events: each
  positive one is a ``repayment`` (out) of the holder's card, dated the 15th of its month
  (the day is not recorded), channel unknown (null). A month with nothing paid has no event.
- nothing else becomes an event: the bill amounts (``X12``-``X17``) are statement balances, not
  money moving, and the repayment status (``X6``-``X11``, months late) is an observation of
  the account, not a dated instalment with an amount; the contract has no column for either,
  nor for the credit limit. Inventing purchases from bill differences, or instalments from the
  status, would be fabricating events the data do not record.
- the target is next month's payment: one consumer loan per holder issued 2005-10-01 (after
  every event, so nothing dated at or after issue exists), principal = the credit limit ``X1``
  (the exposure), term 1 month; ``outcomes.defaulted`` = ``Y`` (default payment next month).
  That is the data's own default definition, not the contract's 90 days past due in 12 months.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import polars as pl

SOURCE = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "taiwan-credit-card"
).resolve() / "UCI_Credit_Card.csv"
DATA_START = dt.date(2005, 4, 1)
ISSUED_ON = dt.date(2005, 10, 1)
PAYMENT_DAY = 15
# X18 is the amount paid in September 2005, X19 in August, ... X23 in April.
PAID_COLUMNS: dict[str, int] = {f"X{18 + i}": 9 - i for i in range(6)}


def read_source(path: Path = SOURCE, sample: int | None = None, seed: int = 42) -> pl.DataFrame:
    """The source CSV; ``sample`` holders drawn at random (seeded) when given."""
    if not path.exists():
        raise FileNotFoundError(f"expected the UCI credit-card CSV at {path}; it does not exist")
    # Amounts are written as integers mostly and sometimes as "1.00E+05": read them as floats.
    frame = pl.read_csv(path, infer_schema=False).with_columns(
        pl.col("ID").cast(pl.Int64), pl.exclude("ID").cast(pl.Float64)
    )
    if sample is not None and sample < frame.height:
        frame = frame.sample(n=sample, seed=seed).sort("ID")
    return frame


def convert(source: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The contract tables of the card holders in ``source`` (see the module docstring)."""
    holder = pl.lit("TW") + pl.col("ID").cast(pl.String)
    consumers = source.select(
        holder.alias("consumer_id"),
        pl.lit(DATA_START).alias("registered_on"),
        pl.lit("taiwan").alias("region"),
        (2005 - pl.col("X5")).cast(pl.Int32).alias("birth_year"),
        pl.lit(True).alias("consent"),
    )
    payments = (
        source.select(holder.alias("consumer_id"), *PAID_COLUMNS)
        .unpivot(index="consumer_id", variable_name="column", value_name="amount")
        .with_columns(pl.col("column").replace_strict(PAID_COLUMNS).alias("month"))
        .filter(pl.col("amount") > 0)
        .sort("consumer_id", "month")
    )
    transactions = payments.select(
        (pl.col("consumer_id") + "-P" + pl.col("month").cast(pl.String)).alias("txn_id"),
        "consumer_id",
        pl.datetime(2005, pl.col("month"), PAYMENT_DAY, time_zone="UTC").alias("ts"),
        pl.lit("repayment").alias("kind"),
        pl.lit("out").alias("direction"),
        pl.col("amount").cast(pl.Float64),
        pl.lit(None, dtype=pl.String).alias("counterparty_id"),
        pl.lit(None, dtype=pl.String).alias("channel"),
        pl.lit(None, dtype=pl.Float64).alias("balance_after"),
    )
    loans = source.select(
        (holder + "-2005-10").alias("loan_id"),
        pl.lit("consumer").alias("segment"),
        holder.alias("entity_id"),
        pl.lit(ISSUED_ON).alias("issued_on"),
        pl.col("X1").cast(pl.Float64).alias("principal"),
        pl.lit(1, dtype=pl.Int32).alias("term_months"),
    )
    outcomes = source.select(
        (holder + "-2005-10").alias("loan_id"), (pl.col("Y") == 1).alias("defaulted")
    )
    return {
        "consumers": consumers,
        "consumer_transactions": transactions,
        "loans": loans,
        "outcomes": outcomes,
    }


def write(tables: dict[str, pl.DataFrame], raw: Path) -> None:
    """Write each table as ``raw/<table>.parquet``."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(raw / f"{name}.parquet")


def main() -> None:
    """Command line: convert the source into OUT_DIR and say how many rows each table got."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the data/raw folder to write")
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--sample", type=int, default=None, help="holders drawn at random")
    args = parser.parse_args()
    tables = convert(read_source(args.source, args.sample))
    write(tables, args.out)
    for name, frame in tables.items():
        print(f"{name:<24} {frame.height:>8,} rows -> {args.out / name}.parquet")


if __name__ == "__main__":
    main()
