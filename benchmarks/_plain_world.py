"""A fast, vectorised synthetic world in the contract schema, for benchmarks only.

It is not realistic (that is world/synth.py's job); it has the contract's tables, columns
and types, skewed activity per entity, and enough loans and repayments for credit history and
connection features, at any size (20M transactions in about ten seconds). A log of more than
``PIECE`` rows is generated and appended to its Parquet file ``PIECE`` rows at a time, so a
100M-transaction world is written in about the memory of a 20M one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

START = dt.date(2023, 1, 1)
DAYS = 730
END = START + dt.timedelta(days=DAYS)
CHANNELS = ("app", "web", "pos", "mini_program")
MERCHANT_KINDS = ("sale", "refund", "chargeback", "payout", "fee")
CONSUMER_KINDS = ("purchase", "transfer_in", "transfer_out", "income", "bill_payment", "repayment")
CONSUMER_DIRECTION = ("out", "in", "out", "in", "out", "out")
INDUSTRIES = ("apparel", "electronics", "food", "home", "beauty", "services")
TS = pl.Datetime("us", "UTC")
PIECE = 10_000_000  # log rows generated and written at a time


def _pieces(n: int) -> list[tuple[int, int]]:
    """(offset, length) of the pieces of an ``n``-row log: one piece up to ``PIECE`` rows."""
    return [(start, min(PIECE, n - start)) for start in range(0, n, PIECE)]


def _ids(prefix: str, n: int, start: int = 0) -> pl.Series:
    return pl.select(
        pl.format(
            "{}{}", pl.lit(prefix), pl.int_range(start, start + n).cast(pl.String).str.zfill(8)
        )
    ).to_series()


def _weights(rng: np.random.Generator, n_entities: int) -> np.ndarray:
    weights = rng.lognormal(0.0, 1.0, n_entities)
    return weights / weights.sum()


def _timestamps(rng: np.random.Generator, n: int, since_day: np.ndarray) -> np.ndarray:
    day = since_day + (rng.random(n) * (DAYS - since_day)).astype(np.int64)
    seconds = day * 86_400 + rng.integers(0, 86_400, n)
    return (np.datetime64(START, "s") + seconds.astype("timedelta64[s]")).astype("datetime64[us]")


def write_world(out: Path, transactions: int, entities: int, seed: int = 0) -> dict[str, int]:
    """Write the contract tables for about ``transactions`` rows and ``entities`` entities."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    n_m, n_c = entities // 5, entities - entities // 5
    m_ids, c_ids = _ids("M", n_m), _ids("C", n_c)
    m_since = rng.integers(-400, DAYS - 30, n_m).clip(0)
    c_since = rng.integers(-400, DAYS - 30, n_c).clip(0)
    tables: dict[str, pl.DataFrame] = {
        "merchants": pl.DataFrame(
            {
                "merchant_id": m_ids,
                "onboarded_on": pl.Series(np.datetime64(START) + m_since - 30).cast(pl.Date),
                "industry": np.array(INDUSTRIES)[rng.integers(0, 6, n_m)],
                "region": "east",
                "consent": rng.random(n_m) > 0.03,
            }
        ),
        "consumers": pl.DataFrame(
            {
                "consumer_id": c_ids,
                "registered_on": pl.Series(np.datetime64(START) + c_since - 30).cast(pl.Date),
                "region": "south",
                "birth_year": rng.integers(1960, 2005, n_c).astype(np.int32),
                "consent": rng.random(n_c) > 0.03,
            }
        ),
    }
    n = transactions // 2
    counts = {
        "merchant_transactions": _write_log(
            out / "merchant_transactions.parquet",
            n,
            _weights(rng, n_m),
            lambda owner, start, size: _merchant_log(
                rng, owner, start, size, m_ids, c_ids, m_since
            ),
            rng,
        )
    }
    counts["consumer_transactions"] = _write_log(
        out / "consumer_transactions.parquet",
        n,
        _weights(rng, n_c),
        lambda owner, start, size: _consumer_log(rng, owner, start, size, m_ids, c_ids, c_since),
        rng,
    )
    loans = []
    for segment, ids, count in (("merchant", m_ids, n_m), ("consumer", c_ids, n_c)):
        k = int(count * 0.6)
        loans.append(
            pl.DataFrame(
                {
                    "segment": segment,
                    "entity_id": ids.gather(rng.integers(0, count, k)),
                    "issued_on": pl.Series(
                        np.datetime64(START) + rng.integers(60, DAYS - 1, k).astype("m8[D]")
                    ).cast(pl.Date),
                    "principal": np.round(rng.lognormal(9.0, 0.7, k), -2),
                    "term_months": rng.choice([6, 12], k).astype(np.int32),
                }
            )
        )
    loan_frame = pl.concat(loans).with_columns(
        pl.format("L{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(9)).alias("loan_id")
    )
    inst = (
        loan_frame.with_columns(pl.int_ranges(1, pl.col("term_months") + 1).alias("installment"))
        .explode("installment")
        .with_columns(
            pl.col("issued_on").dt.offset_by(pl.format("{}mo", "installment")).alias("due_on"),
            (pl.col("principal") / pl.col("term_months")).round(2).alias("amount_due"),
        )
    )
    m = inst.height
    late = (rng.geometric(0.15, m) - 1) * (rng.random(m) < 0.2)
    paid = inst["due_on"].to_numpy() + late.astype("m8[D]")
    tables["loans"] = loan_frame.select(
        "loan_id", "segment", "entity_id", "issued_on", "principal", "term_months"
    )
    paid_on = pl.when((pl.col("paid_on") < END) & pl.Series(rng.random(m) > 0.03))
    tables["repayments"] = inst.with_columns(pl.Series("paid_on", paid).cast(pl.Date)).select(
        "loan_id",
        pl.col("installment").cast(pl.Int32),
        "due_on",
        "amount_due",
        paid_on.then(pl.col("paid_on")).alias("paid_on"),
        paid_on.then(pl.col("amount_due")).otherwise(0.0).alias("amount_paid"),
    )
    for name in list(tables):
        counts[name] = _write(tables, name, out)
    return counts


def _write(tables: dict[str, pl.DataFrame], name: str, out: Path) -> int:
    """Write one table and drop it from memory (a 100M-row world holds one log at a time)."""
    frame = tables.pop(name)
    frame.write_parquet(out / f"{name}.parquet")
    return frame.height


def _write_log(
    path: Path,
    n: int,
    weights: np.ndarray,
    piece: Callable[[np.ndarray, int, int], pl.DataFrame],
    rng: np.random.Generator,
) -> int:
    """Write an ``n``-row log piece by piece into one Parquet file (row groups appended)."""
    writer = None
    try:
        for start, size in _pieces(n):
            owner = rng.choice(len(weights), size=size, p=weights)
            table = piece(owner, start, size).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=512 * 512)
    finally:
        if writer is not None:
            writer.close()
    return n


def _merchant_log(
    rng: np.random.Generator,
    owner: np.ndarray,
    start: int,
    n: int,
    m_ids: pl.Series,
    c_ids: pl.Series,
    m_since: np.ndarray,
) -> pl.DataFrame:
    kind = rng.choice(5, n, p=[0.8, 0.06, 0.01, 0.08, 0.05])
    buyer = rng.integers(0, len(c_ids), n)
    return pl.DataFrame(
        {
            "txn_id": _ids("MT", n, start),
            "merchant_id": m_ids.gather(owner),
            "ts": pl.Series(_timestamps(rng, n, m_since[owner])).cast(pl.Datetime("us")),
            "kind": np.array(MERCHANT_KINDS)[kind],
            "amount": np.round(rng.lognormal(4.0, 0.9, n), 2),
            "buyer_id": pl.select(
                pl.when(pl.Series(rng.random(n) < 0.1) | pl.Series(kind >= 3))
                .then(None)
                .otherwise(c_ids.gather(buyer))
            ).to_series(),
            "channel": np.array(CHANNELS)[rng.integers(0, 4, n)],
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))


def _consumer_log(
    rng: np.random.Generator,
    owner: np.ndarray,
    start: int,
    n: int,
    m_ids: pl.Series,
    c_ids: pl.Series,
    c_since: np.ndarray,
) -> pl.DataFrame:
    kind = rng.choice(6, n, p=[0.45, 0.1, 0.1, 0.1, 0.15, 0.1])
    cp_merchant = m_ids.gather(rng.integers(0, len(m_ids), n))
    cp_consumer = c_ids.gather(rng.integers(0, len(c_ids), n))
    return pl.DataFrame(
        {
            "txn_id": _ids("CT", n, start),
            "consumer_id": c_ids.gather(owner),
            "ts": pl.Series(_timestamps(rng, n, c_since[owner])).cast(pl.Datetime("us")),
            "kind": np.array(CONSUMER_KINDS)[kind],
            "direction": np.array(CONSUMER_DIRECTION)[kind],
            "amount": np.round(
                np.where(kind == 3, rng.lognormal(8.0, 0.4, n), rng.lognormal(4.5, 0.9, n)), 2
            ),
            "counterparty_id": pl.select(
                pl.when(pl.Series(np.isin(kind, [1, 2])))
                .then(cp_consumer)
                .when(pl.Series(np.isin(kind, [0, 5])))
                .then(cp_merchant)
                .otherwise(None)
            ).to_series(),
            "channel": np.array(CHANNELS)[rng.integers(0, 4, n)],
            "balance_after": np.where(
                rng.random(n) < 0.2, np.nan, np.round(rng.lognormal(7.0, 1.0, n), 2)
            ),
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"), pl.col("balance_after").fill_nan(None))
