"""Turn the superlender data set (a Nigerian digital lender) into longtail's contract tables.

Usage: ``python examples/superlender/convert.py OUT_DIR [--source DIR]`` writes ``consumers``,
``consumer_transactions``, ``loans``, ``repayments`` and ``outcomes`` as Parquet into
``OUT_DIR`` (e.g. ``data-superlender/raw``). The source is read by path and never copied.

Every modelling choice, column by column (README.md beside this file says why):

- a ``customerid`` with a loan is one consumer. ``birth_year`` is the year of ``birthdate``
  (``traindemographics``); a customer without a demographics row has none (null: the age
  features are unknown for them; we do not invent ages). Rows repeated verbatim in the
  demographics are read once; a customer with two different rows stays duplicated
  (``duplicate_id``). The data name no region (GPS only), so
  ``region`` is ``nigeria``; every customer consents (the challenge's data); the sign-up date is
  not recorded, so ``registered_on`` is the day of the customer's first loan approval. Bank,
  account type, employment, education and ``referredby`` have no place in the contract.
- every loan, earlier or target, is a consumer loan: ``loan_id`` = ``systemloanid``,
  ``issued_on`` = the day of ``approveddate``, ``principal`` = ``loanamount`` (naira),
  ``term_months`` = ``termdays`` / 30 rounded up (15-day loans become 1 month: the contract
  counts terms in months).
- each earlier loan's schedule (``repayments``): ``termdays`` / 30 monthly instalments (at least
  one), the first due on ``firstduedate`` and each next one a month later, of equal shares of
  ``totaldue`` (the split is not recorded). The loan is closed, i.e. repaid in full, on
  ``closeddate``: a one-instalment loan is paid then; of a longer loan the first instalment is
  paid on ``firstrepaiddate`` and the others on ``closeddate``, the last day they can have been
  paid (their own dates are not recorded).
- the borrower's log (``consumer_transactions``) holds the money that really moved: each loan's
  ``loan_disbursement`` (in, ``loanamount``) at ``approveddate``, and each earlier loan's
  ``repayment`` (out) at the times above, summed per payment time; channel unknown (null).
- the target loan (``trainperf``) gets only its disbursement and ``outcomes.defaulted`` =
  ``good_bad_flag == "Bad"``: how it was repaid is not in the data, and its outcome appears
  nowhere else. Every earlier loan was approved and closed before the target's approval, so no
  event of theirs is dated at or after the target's issue date.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

SOURCE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata").resolve() / (
    "superlender"
)
TIMESTAMP = "%Y-%m-%d %H:%M:%S%.f"
DAYS_PER_INSTALMENT = 30


def _ts(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime(TIMESTAMP, time_zone="UTC")


def read_source(folder: Path = SOURCE) -> dict[str, pl.DataFrame]:
    """The three source CSVs, every column read as text (timestamps parsed in :func:`convert`)."""
    names = {"previous": "trainprevloans", "target": "trainperf", "people": "traindemographics"}
    missing = [f"{f}.csv" for f in names.values() if not (folder / f"{f}.csv").exists()]
    if missing:
        raise FileNotFoundError(f"expected {', '.join(missing)} in {folder}; not found")
    return {k: pl.read_csv(folder / f"{f}.csv", infer_schema=False) for k, f in names.items()}


def _loans(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        pl.col("systemloanid").alias("loan_id"),
        pl.col("customerid").alias("entity_id"),
        _ts("approveddate").alias("approved"),
        pl.col("loanamount").cast(pl.Float64).alias("principal"),
        pl.col("totaldue").cast(pl.Float64).alias("total_due"),
        pl.col("termdays").cast(pl.Int32).alias("term_days"),
    )


def convert(source: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The contract tables of the superlender source (see the module docstring)."""
    previous = _loans(source["previous"]).join(
        source["previous"].select(
            pl.col("systemloanid").alias("loan_id"),
            _ts("firstduedate").alias("first_due"),
            _ts("firstrepaiddate").alias("first_repaid"),
            _ts("closeddate").alias("closed"),
        ),
        on="loan_id",
    )
    target = _loans(source["target"])
    every = pl.concat([previous.select(target.columns), target]).sort("approved", "loan_id")

    people = source["people"].unique(maintain_order=True)
    first_loan = every.group_by("entity_id").agg(pl.col("approved").min().dt.date())
    consumers = (
        first_loan.join(people, left_on="entity_id", right_on="customerid", how="left")
        .select(
            pl.col("entity_id").alias("consumer_id"),
            pl.col("approved").alias("registered_on"),
            pl.lit("nigeria").alias("region"),
            pl.col("birthdate").str.slice(0, 4).cast(pl.Int32).alias("birth_year"),
            pl.lit(True).alias("consent"),
        )
        .sort("consumer_id")
    )
    loans = every.select(
        "loan_id",
        pl.lit("consumer").alias("segment"),
        "entity_id",
        pl.col("approved").dt.date().alias("issued_on"),
        "principal",
        ((pl.col("term_days") + DAYS_PER_INSTALMENT - 1) // DAYS_PER_INSTALMENT)
        .cast(pl.Int32)
        .alias("term_months"),
    )

    count = (pl.col("term_days") // DAYS_PER_INSTALMENT).clip(lower_bound=1)
    schedule = (
        previous.with_columns(pl.int_ranges(1, count + 1, dtype=pl.Int32).alias("installment"))
        .explode("installment")
        .with_columns(
            paid_at=pl.when((pl.col("installment") == 1) & (count > 1))
            .then(pl.col("first_repaid"))
            .otherwise(pl.col("closed")),
            share=(pl.col("total_due") / count).round(2),
        )
    )
    repayments = schedule.select(
        "loan_id",
        "installment",
        pl.col("first_due")
        .dt.date()
        .dt.offset_by(pl.format("{}mo", pl.col("installment") - 1))
        .alias("due_on"),
        pl.col("share").alias("amount_due"),
        pl.col("paid_at").dt.date().alias("paid_on"),
        pl.col("share").alias("amount_paid"),
    ).sort("loan_id", "installment")

    def event(frame: pl.DataFrame, kind: str, direction: str, tag: str) -> pl.DataFrame:
        return frame.select(
            (pl.col("loan_id") + tag).alias("txn_id"),
            pl.col("entity_id").alias("consumer_id"),
            "ts",
            pl.lit(kind).alias("kind"),
            pl.lit(direction).alias("direction"),
            "amount",
            pl.lit(None, dtype=pl.String).alias("counterparty_id"),
            pl.lit(None, dtype=pl.String).alias("channel"),
            pl.lit(None, dtype=pl.Float64).alias("balance_after"),
        )

    disbursed = every.select(
        "loan_id", "entity_id", pl.col("approved").alias("ts"), pl.col("principal").alias("amount")
    )
    repaid = (
        schedule.group_by("loan_id", "entity_id", pl.col("paid_at").alias("ts"))
        .agg(pl.col("share").sum().round(2).alias("amount"))
        .sort("loan_id", "ts")
        .with_columns(pl.int_range(pl.len()).over("loan_id").cast(pl.String).alias("n"))
    )
    transactions = pl.concat(
        [
            event(disbursed, "loan_disbursement", "in", "-D"),
            event(
                repaid.with_columns(pl.col("loan_id") + "-R" + pl.col("n")), "repayment", "out", ""
            ),
        ]
    ).sort("consumer_id", "ts", "txn_id")
    outcomes = source["target"].select(
        pl.col("systemloanid").alias("loan_id"),
        (pl.col("good_bad_flag") == "Bad").alias("defaulted"),
    )
    return {
        "consumers": consumers,
        "consumer_transactions": transactions,
        "loans": loans,
        "repayments": repayments,
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
    args = parser.parse_args()
    tables = convert(read_source(args.source))
    write(tables, args.out)
    for name, frame in tables.items():
        print(f"{name:<24} {frame.height:>8,} rows -> {args.out / name}.parquet")


if __name__ == "__main__":
    main()
