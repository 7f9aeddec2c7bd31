"""Reading raw contract tables: find a table's file, stop on schema drift, parse to the contract.

A table is ``<table>.parquet`` or ``<table>.csv``. A missing or mistyped column is schema drift
(:class:`SchemaDriftError`, before anything is written); compatible Parquet types are cast,
timestamps brought to UTC, CSV cells parsed (a cell that cannot be read flags its row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from features.contract import tables as contract

ROW = "source_row"
RULES = "rules"
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


class SchemaDriftError(ValueError):
    """A table lacks a contract column or holds it with an incompatible type."""


@dataclass
class Table:
    """One table on its way through validation."""

    name: str
    fmt: str  # "parquet" or "csv"
    source: pl.DataFrame  # rows as read (typed for parquet, text for csv), with ROW
    data: pl.DataFrame  # contract-typed rows still in play, with ROW
    rows_in: int
    bad: list[pl.DataFrame] = field(default_factory=list)  # frames of (ROW, RULES)
    parse_flags: list[str] = field(default_factory=list)  # CSV cells that could not be read
    consent_dropped: int = 0


def find(raw_dir: Path, table: str) -> tuple[Path, str] | None:
    """The table's file and format (Parquet first), or None when there is neither."""
    for fmt in ("parquet", "csv"):
        path = raw_dir / f"{table}.{fmt}"
        if path.exists():
            return path, fmt
    return None


def _compatible(got: pl.DataType, want: pl.DataType) -> bool:
    """Whether a Parquet column of type ``got`` may be cast to the contract type ``want``."""
    if got == pl.Null():
        return True
    if isinstance(want, pl.Datetime):
        return isinstance(got, pl.Datetime)
    if want.is_float():
        return got.is_numeric()
    if want.is_integer():
        return got.is_integer()
    if want == pl.String():
        return got == pl.String() or isinstance(got, pl.Categorical | pl.Enum)
    return got == want


def check_drift(table: str, columns: pl.Schema, fmt: str) -> None:
    """Raise :class:`SchemaDriftError` on a missing contract column or an incompatible type."""
    spec = contract.TABLES[table]
    for column, dtype in spec.columns.items():
        if column not in columns:
            raise SchemaDriftError(
                f"table {table!r}: missing column {column!r}; expected a column of type {dtype}"
                f" (found columns: {', '.join(columns.names())})"
            )
        if fmt == "parquet" and not _compatible(columns[column], dtype):
            raise SchemaDriftError(
                f"table {table!r}: column {column!r} has type {columns[column]}; expected {dtype}"
            )


def _to_utc(col: pl.Expr, got: pl.DataType) -> pl.Expr:
    if isinstance(got, pl.Datetime) and got.time_zone is None:
        col = col.dt.replace_time_zone("UTC")
    elif isinstance(got, pl.Datetime):
        col = col.dt.convert_time_zone("UTC")
    return col.cast(contract.TS)


def _parse_text(col: str, dtype: pl.DataType) -> pl.Expr:
    """Parse a CSV text column into the contract type; unreadable cells become null."""
    text = pl.col(col).str.strip_chars()
    text = pl.when(text == "").then(None).otherwise(text)
    if isinstance(dtype, pl.Datetime):
        iso = text.str.replace(" ", "T", literal=True)
        aware = iso.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", time_unit="us", strict=False
        )
        naive = pl.coalesce(
            iso.str.to_datetime(fmt, time_unit="us", strict=False)
            for fmt in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")
        ).dt.replace_time_zone("UTC")
        # Date-only values are not timestamps.
        return pl.coalesce(aware, naive).cast(dtype)
    if dtype == pl.Date():
        return text.str.to_date("%Y-%m-%d", strict=False)
    if dtype == pl.Boolean():
        low = text.str.to_lowercase()
        return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
    if dtype == pl.String():
        return pl.col(col)
    return text.cast(dtype, strict=False)


def columns_of(path: Path, fmt: str) -> pl.Schema:
    """The file's columns and types, without reading its rows."""
    if fmt == "parquet":
        return pl.read_parquet_schema(path)
    return pl.read_csv(path, n_rows=0, infer_schema=False).schema


def read(raw_dir: Path, table: str) -> Table | None:
    """Read one table, check it for drift and bring it to the contract's types."""
    found = find(raw_dir, table)
    if found is None:
        if contract.TABLES[table].optional:
            return None
        raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
    path, fmt = found
    spec = contract.TABLES[table]
    check_drift(table, columns_of(path, fmt), fmt)
    if fmt == "parquet":
        raw = pl.read_parquet(path, columns=list(spec.columns))
        # Timestamps are brought to UTC here; other casts are left to the schema, which reports
        # a value that does not fit (say, an Int64 too large for Int32) as bad_value_<column>.
        typed = raw.with_columns(
            _to_utc(pl.col(c), raw.schema[c]).alias(c)
            for c, t in spec.columns.items()
            if isinstance(t, pl.Datetime)
        ).with_row_index(ROW)
        typed = typed.with_columns(pl.col(ROW).cast(pl.Int64))
        return Table(table, fmt, source=typed, data=typed, rows_in=typed.height)
    raw = pl.read_csv(path, infer_schema=False).select(list(spec.columns)).with_row_index(ROW)
    raw = raw.with_columns(pl.col(ROW).cast(pl.Int64))
    typed = raw.select(ROW, *(_parse_text(c, t).alias(c) for c, t in spec.columns.items()))
    text = {c: pl.col(c).str.strip_chars() for c in spec.columns}
    flags = raw.select(
        ((text[c].is_not_null() & (text[c] != "")).alias(f"bad_value_{c}")) for c in spec.columns
    ).with_columns(pl.col(f"bad_value_{c}") & typed[c].is_null() for c in spec.columns)
    return Table(
        table,
        fmt,
        source=raw,
        data=pl.concat([typed, flags], how="horizontal"),
        rows_in=raw.height,
        parse_flags=flags.columns,
    )
