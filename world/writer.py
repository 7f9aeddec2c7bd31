"""Writing the world in the contract's tables: chunked transaction files, entities, loans, truth.

Each month's transactions go to their file as one Parquet row group, written on a background
thread while the next month is generated. The truth (``truth/loans.parquet``) holds each loan's
true PD, its default draw, the parts of its log-odds and the borrower's latent traits.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from features.contract import tables as contract
from features.contract.truth import LOGIT_PARTS
from world.population import Consumers, Merchants

PARQUET_COMPRESSION = "zstd"


class ChunkWriter:
    """Appends polars frames as Parquet row groups to one file in the contract's schema.

    Writes happen on a background thread (Parquet encoding releases the GIL) so the next month is
    generated while this one is written; at most one chunk waits, which keeps memory bounded and
    the row-group order (hence the bytes) fixed.
    """

    def __init__(self, path: Path, table: str, pool: ThreadPoolExecutor) -> None:
        self.path = path
        self.schema = contract.TABLES[table].schema
        self.writer: pq.ParquetWriter | None = None
        self.pool = pool
        self.pending: Future[None] | None = None
        self.rows = 0

    def _write(self, arrow: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, arrow.schema, compression=PARQUET_COMPRESSION)
        self.writer.write_table(arrow)

    def write(self, df: pl.DataFrame) -> None:
        """Queue ``df`` (cast to the table's schema) as the next row group."""
        arrow = df.select(pl.col(c).cast(t) for c, t in self.schema.items()).to_arrow()
        self.wait()
        self.pending = self.pool.submit(self._write, arrow)
        self.rows += df.height

    def wait(self) -> None:
        """Block until the queued row group is written."""
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def close(self) -> None:
        """Finish the file (an empty table in the schema when nothing was written)."""
        self.wait()
        if self.writer is None:
            self._write(pl.DataFrame(schema=self.schema).to_arrow())
        if self.writer is not None:
            self.writer.close()


def sequential_ids(prefix: str, start: int, n: int, width: int) -> pl.Expr:
    """Ids ``<prefix><number>``, numbered ``start + 1`` to ``start + n``, zero-padded."""
    return pl.lit(prefix) + (pl.int_range(start, start + n, dtype=pl.Int64) + 1).cast(
        pl.String
    ).str.zfill(width)


def _lookup(values: pl.Series, idx: np.ndarray) -> pl.Series:
    """``values[idx]`` with null where ``idx`` is negative."""
    s = pl.Series(idx.astype(np.int64))
    missing = np.flatnonzero(idx < 0)
    if len(missing):
        s = s.scatter(missing, None)
    return values.gather(s)


def consumer_rows(cons: pl.DataFrame, mer: Merchants, con: Consumers, first: int) -> pl.DataFrame:
    """A month of consumer events (by entity index and code) as ``consumer_transactions`` rows.

    ``first`` is the number of transactions already written: ids go on from it.
    """
    c_idx = cons["c"].to_numpy()
    return pl.DataFrame(
        {
            "txn_id": pl.select(sequential_ids("CT", first, cons.height, 10)).to_series(),
            "consumer_id": con.ids.gather(c_idx),
            "ts": cons["ts"].cast(contract.TS),
            "kind": pl.Series(contract.CONSUMER_TXN_KINDS).gather(cons["kind"]),
            "direction": pl.Series(
                [contract.CONSUMER_KIND_DIRECTION[k] for k in contract.CONSUMER_TXN_KINDS]
            ).gather(cons["kind"]),
            "amount": cons["amount"],
            "counterparty_id": _lookup(mer.ids, cons["cp_m"].to_numpy()).zip_with(
                cons["cp_m"] >= 0, _lookup(con.ids, cons["cp_c"].to_numpy())
            ),
            "channel": pl.Series(contract.CHANNELS).gather(cons["chan"]),
            "balance_after": pl.Series(np.round(cons["bal"].to_numpy(), 2)).scatter(
                np.flatnonzero(~con.reports_balance[c_idx]), None
            ),
        }
    )


def _yuan(fen: pl.Series) -> np.ndarray:
    """Integer fen as yuan with two decimals.

    Divided by numpy: polars may multiply by 0.01 instead, one ulp off the two-decimal float.
    """
    return np.round(fen.to_numpy() / 100.0, 2)


def statement_rows(
    ev: pl.DataFrame, con: Consumers, parties: pl.Series, first: int
) -> pl.DataFrame:
    """A month of bank-statement events as ``consumer_transactions`` rows.

    ``ev`` holds consumer index ``c``, ``ts``, ``kind`` code, ``amount`` and ``bal`` (the
    balance after the event) in integer fen, counterparty ``cp`` (an index into ``parties``, -1
    none) and ``chan`` (-1: not reported). ``first`` is the number of rows already written.
    """
    kind = ev["kind"]
    return pl.DataFrame(
        {
            "txn_id": pl.select(sequential_ids("CT", first, ev.height, 10)).to_series(),
            "consumer_id": con.ids.gather(ev["c"]),
            "ts": ev["ts"].cast(contract.TS),
            "kind": pl.Series(contract.CONSUMER_TXN_KINDS).gather(kind),
            "direction": pl.Series(
                [contract.CONSUMER_KIND_DIRECTION[k] for k in contract.CONSUMER_TXN_KINDS]
            ).gather(kind),
            "amount": _yuan(ev["amount"]),
            "counterparty_id": _lookup(parties, ev["cp"].to_numpy()),
            "channel": _lookup(pl.Series(contract.CHANNELS), ev["chan"].to_numpy()),
            "balance_after": _yuan(ev["bal"]),
        }
    )


def merchant_rows(mt: pl.DataFrame, mer: Merchants, con: Consumers, first: int) -> pl.DataFrame:
    """A month of merchant events (by entity index and code) as ``merchant_transactions`` rows.

    ``first`` is the number of transactions already written: ids go on from it.
    """
    return pl.DataFrame(
        {
            "txn_id": pl.select(sequential_ids("MT", first, mt.height, 10)).to_series(),
            "merchant_id": mer.ids.gather(mt["mi"]),
            "ts": mt["ts"].cast(contract.TS),
            "kind": pl.Series(contract.MERCHANT_TXN_KINDS).gather(mt["kind"]),
            "amount": mt["amount"],
            "buyer_id": _lookup(con.ids, mt["buyer"].to_numpy()),
            "channel": pl.Series(contract.CHANNELS).gather(mt["chan"]),
        }
    )


def write_entities(out: Path, mer: Merchants, con: Consumers) -> None:
    """Write ``merchants.parquet`` and ``consumers.parquet`` into ``out``."""
    pl.DataFrame(
        {
            "merchant_id": mer.ids,
            "onboarded_on": mer.onboarded.astype("datetime64[D]"),
            "industry": mer.industry,
            "region": mer.region,
            "consent": mer.consent,
            "gender": pl.Series(mer.gender.tolist(), dtype=pl.String),
        },
        schema=contract.TABLES["merchants"].schema,
    ).write_parquet(out / "merchants.parquet", compression=PARQUET_COMPRESSION)
    write_consumers(out, con)


def write_consumers(out: Path, con: Consumers) -> None:
    """Write ``consumers.parquet`` into ``out``."""
    pl.DataFrame(
        {
            "consumer_id": con.ids,
            "registered_on": con.registered.astype("datetime64[D]"),
            "region": con.region,
            "birth_year": con.birth_year,
            "consent": con.consent,
            "gender": pl.Series(con.gender.tolist(), dtype=pl.String),
        },
        schema=contract.TABLES["consumers"].schema,
    ).write_parquet(out / "consumers.parquet", compression=PARQUET_COMPRESSION)


def write_loans(
    out: Path,
    loans: pl.DataFrame | None,
    schedules: list[pl.DataFrame],
    mer: Merchants,
    con: Consumers,
) -> int:
    """Write ``loans``, ``repayments`` and ``truth_loans`` into ``out``; return the repayments."""
    rep_schema = contract.TABLES["repayments"].schema
    if loans is None or loans.height == 0:
        _write_no_loans(out)
        pl.DataFrame(schema=rep_schema).write_parquet(out / "repayments.parquet")
        return 0
    _write_loan_table(out, loans)
    reps = pl.concat(schedules).select(rep_schema.names()).cast(dict(rep_schema))
    reps.write_parquet(out / "repayments.parquet", compression=PARQUET_COMPRESSION)
    _write_truth(out, loans, mer, con)
    return reps.height


def write_outcomes(
    out: Path, loans: pl.DataFrame | None, con: Consumers, *, known_before: pl.Expr
) -> int:
    """Write ``loans``, ``outcomes`` and ``truth_loans`` into ``out``; return the outcomes.

    For a lender that keeps each loan's outcome instead of its instalment log: a loan where
    ``known_before`` (an expression on ``issued_on``) holds gets an outcome row with its default
    draw; the others (their window still open) get none. No repayments file is written.
    """
    out_schema = contract.TABLES["outcomes"].schema
    if loans is None or loans.height == 0:
        _write_no_loans(out)
        pl.DataFrame(schema=out_schema).write_parquet(out / "outcomes.parquet")
        return 0
    _write_loan_table(out, loans)
    outcomes = (
        loans.select("loan_id", _issued_on(), "defaulted")
        .filter(known_before)
        .select(out_schema.names())
        .cast(dict(out_schema))
    )
    outcomes.write_parquet(out / "outcomes.parquet", compression=PARQUET_COMPRESSION)
    _write_truth(out, loans, None, con)
    return outcomes.height


def _issued_on() -> pl.Expr:
    return pl.col("issued").cast(pl.Int32).cast(pl.Date).alias("issued_on")


def _write_no_loans(out: Path) -> None:
    """An empty ``loans`` table and an empty truth."""
    pl.DataFrame(schema=contract.TABLES["loans"].schema).write_parquet(out / "loans.parquet")
    pl.DataFrame(
        schema={"loan_id": pl.String, "segment": pl.String, "true_pd": pl.Float64}
    ).write_parquet(out / "truth_loans.parquet")


def _write_loan_table(out: Path, loans: pl.DataFrame) -> None:
    loan_schema = contract.TABLES["loans"].schema
    loans.select(
        "loan_id",
        "segment",
        "entity_id",
        _issued_on(),
        "principal",
        pl.col("term").alias("term_months"),
    ).cast(dict(loan_schema)).write_parquet(out / "loans.parquet", compression=PARQUET_COMPRESSION)


def _write_truth(out: Path, loans: pl.DataFrame, mer: Merchants | None, con: Consumers) -> None:
    """The truth of every loan: true PD, default draw, log-odds parts, the borrower's traits.

    ``mer`` is None in a world without merchants (then every loan is a consumer's).
    """
    is_m = (loans["segment"] == "merchant").to_numpy()
    ent = loans["entity"].to_numpy()
    em, ec = np.where(is_m, ent, 0), np.where(is_m, 0, ent)

    def trait(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
        return b[ec] if a is None else np.where(is_m, a[em], b[ec])

    def of(name: str) -> np.ndarray | None:
        return None if mer is None else getattr(mer, name)

    loans.select(
        "loan_id",
        "segment",
        "entity_id",
        _issued_on(),
        "true_pd",
        "defaulted",
        *LOGIT_PARTS,
    ).with_columns(
        pl.Series("risk_index", trait(of("risk"), con.risk)),
        pl.Series("health_or_stability", trait(of("health"), con.stability)),
        pl.Series("discipline", trait(of("discipline"), con.discipline)),
        pl.Series("volatility", trait(of("volatility"), con.volatility)),
        pl.Series("growth", trait(of("growth"), con.growth)),
        pl.Series("hidden", trait(of("hidden"), con.hidden)),
    ).write_parquet(out / "truth_loans.parquet", compression=PARQUET_COMPRESSION)
