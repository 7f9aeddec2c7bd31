"""The source mapping's transform: a lender's file read into the contract's columns (vectorised).

:mod:`pipeline.sources` defines and checks the mapping (``contract.yaml``); this module applies
it to the rows :mod:`pipeline.raw_tables` read: renames and joined coded columns, constants,
value maps (exact keys and ``*`` globs, first match wins), the unmapped policy, signed amounts,
the currency scale, formats and the timezone. It keeps the user's words for quarantine and
counts what was mapped and what fell through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from features.contract import tables as contract
from features.contract.schemas import OPTIONAL_COLUMNS
from features.contract.vocabulary import MONEY
from pipeline import sources
from pipeline.sources import JOIN, SourceMapping

# Where ``unmapped: other`` has somewhere to put a value: a consumer kind by its direction.
OTHER_KIND = {"in": "other_in", "out": "other_out"}
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


@dataclass
class Mapped:
    """One table read through its mapping.

    ``source`` holds the contract's columns with the cells as the user wrote them (for
    quarantine); ``typed`` the contract-typed columns plus one boolean column per flag (a
    cell that could not be read, a value no mapping covers); ``report`` counts the mapping.
    """

    source: pl.DataFrame
    typed: pl.DataFrame
    flags: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def _glob(key: str) -> str:
    return "^" + re.escape(key).replace(r"\*", ".*") + "$"


def _lookup(text: pl.Expr, rules: dict[str, Any], dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """The canonical value of each cell and whether any key matched (first match wins)."""
    conditions = [text.str.contains(_glob(key)) if "*" in key else text == key for key in rules]
    if not conditions:
        return pl.lit(None, dtype=dtype), pl.lit(False)
    chain: Any = pl
    for cond, value in zip(conditions, rules.values(), strict=True):
        chain = chain.when(cond).then(pl.lit(value, dtype=dtype))
    hit = pl.any_horizontal(conditions).fill_null(False)
    return chain.otherwise(pl.lit(None, dtype=dtype)), hit


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _local_to_utc(col: pl.Expr, tz: str) -> pl.Expr:
    return col.dt.replace_time_zone(
        tz, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")


def _to_utc(col: pl.Expr, got: pl.DataType, tz: str) -> pl.Expr:
    """A typed timestamp column in UTC: naive values are local time in ``tz``."""
    if isinstance(got, pl.Datetime) and got.time_zone is None:
        col = _local_to_utc(col, tz)
    elif isinstance(got, pl.Datetime):
        col = col.dt.convert_time_zone("UTC")
    return col.cast(contract.TS)


def parse_text(
    col: str,
    dtype: pl.DataType,
    *,
    nullable: bool = False,
    fmt: str | None = None,
    tz: str = "UTC",
    decimal: str = ".",
) -> pl.Expr:
    """Parse a text column into the contract type; unreadable cells become null.

    A blank cell of a nullable text column is null (an unknown channel, say); in a required
    text column it stays as read, for the schema to report. Timestamps without an offset are
    local time in ``tz``; ``fmt`` is the column's strptime format (ISO 8601 without one).
    """
    text = _blank_to_null(pl.col(col))
    if isinstance(dtype, pl.Datetime):
        if fmt is not None:
            if "%z" in fmt or "%#z" in fmt:
                return text.str.to_datetime(
                    fmt, time_zone="UTC", time_unit="us", strict=False
                ).cast(dtype)
            naive = text.str.to_datetime(fmt, time_unit="us", strict=False)
            return _local_to_utc(naive, tz).cast(dtype)
        iso = text.str.replace(" ", "T", literal=True)
        aware = iso.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC", time_unit="us", strict=False
        )
        naive = pl.coalesce(
            iso.str.to_datetime(f, time_unit="us", strict=False)
            for f in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M")
        )
        # Date-only values are not timestamps (unless a format says so).
        return pl.coalesce(aware, _local_to_utc(naive, tz)).cast(dtype)
    if dtype == pl.Date():
        return text.str.to_date(fmt or "%Y-%m-%d", strict=False)
    if dtype == pl.Boolean():
        low = text.str.to_lowercase()
        return pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
    if dtype == pl.String():
        return text if nullable else pl.col(col)
    if decimal == "," and dtype.is_float():
        # 1 234,50 / 1.234,50 -> 1234.50: thousands separators out, the decimal comma a point
        text = text.str.replace_all(r"[\s\u00a0\u202f.]", "").str.replace(",", ".", literal=True)
    return text.cast(dtype, strict=False)


def _scaled(expr: pl.Expr, scale: float) -> pl.Expr:
    """Amounts in whole currency units: cents (scale 0.01) are divided by 100, exactly."""
    if scale == 1.0:
        return expr
    inverse = 1 / scale
    if abs(inverse - round(inverse)) < 1e-9:
        return expr.cast(pl.Float64) / round(inverse)
    return expr.cast(pl.Float64) * scale


def apply(raw: pl.DataFrame, table: str, mapping: SourceMapping, *, text: bool, row: str) -> Mapped:
    """Turn a source file's rows into the contract's columns (vectorised).

    ``raw`` holds the file's columns as read (``text`` says a CSV: every column is text) plus
    the row index ``row``. Without a mapping (:data:`IDENTITY`) this reads the contract's own
    columns: Parquet types are kept (timestamps brought to UTC, other casts left to the
    schema), CSV cells are parsed, a cell that cannot be read flags its row
    (``bad_value_<column>``).
    """
    spec = contract.TABLES[table]
    source = mapping.table(table)
    mapped = table in mapping.tables
    fed = sources.feeds(table, mapping)

    # 1. The user's words under the contract's names.
    def cell(column: str) -> pl.Expr:
        if column in source.constants:
            value = source.constants[column]
            if text:
                shown = (
                    None
                    if value is None
                    else str(value).lower()
                    if isinstance(value, bool)
                    else str(value)
                )
                return pl.lit(shown, dtype=pl.String)
            return pl.lit(value).cast(spec.columns[column], strict=False)
        parts = fed.get(column)
        if parts is None:  # direction from signs: filled in below
            return pl.lit(None, dtype=pl.String)
        if column in OPTIONAL_COLUMNS.get(table, ()) and not set(parts) <= set(raw.columns):
            return pl.lit(None, dtype=pl.String)  # an optional column the lender does not hold
        if len(parts) > 1 or isinstance(source.columns.get(column), list):
            return pl.concat_str(
                [pl.col(p).cast(pl.String).str.strip_chars().fill_null("") for p in parts],
                separator=JOIN,
            )
        expr = pl.col(parts[0])
        if not text and mapped and sources.matched_as_text(table, column, mapping):
            expr = expr.cast(pl.String)
        return expr

    words = raw.select(row, *(cell(c).alias(c) for c in spec.columns))

    # 2. Contract types.
    money = MONEY.get(table, ())
    tz = mapping.timezone
    flags: dict[str, pl.Expr] = {}
    typed_cols: dict[str, pl.Expr] = {}
    lookups: dict[str, tuple[pl.Expr, pl.Expr]] = {}
    for column, dtype in spec.columns.items():
        if column in source.values:
            value, hit = _lookup(_blank_to_null(pl.col(column)), source.values[column], dtype)
            lookups[column] = (value, hit)
            typed_cols[column] = value
            continue
        is_text = words.schema[column] == pl.String() and dtype != pl.String()
        if text or (is_text and column in source.formats):
            expr = parse_text(
                column,
                dtype,
                nullable=column in spec.nullable,
                fmt=source.formats.get(column),
                tz=tz,
                decimal=source.csv.decimal,
            )
            written = _blank_to_null(pl.col(column)).is_not_null()
            flags[f"bad_value_{column}"] = written & expr.is_null()
        elif isinstance(dtype, pl.Datetime):
            expr = _to_utc(pl.col(column), words.schema[column], tz)
        else:
            expr = pl.col(column)
        typed_cols[column] = expr
    for column in money:
        typed_cols[column] = _scaled(typed_cols[column], mapping.currency.scale)
    if source.signed_amount:
        amount = typed_cols["amount"]
        if "direction" in spec.columns and sources.direction_from_sign(table, source, "direction"):
            typed_cols["direction"] = (
                pl.when(amount < 0).then(pl.lit("out")).when(amount > 0).then(pl.lit("in"))
            )
        typed_cols["amount"] = amount.abs()

    stage = words.with_columns(
        **{c: e for c, e in typed_cols.items() if c != "kind" or "kind" not in lookups},
        **{f"_hit_{c}": hit for c, (_, hit) in lookups.items()},
        **{f"_written_{c}": _blank_to_null(pl.col(c)).is_not_null() for c in lookups},
        **flags,
    )
    if sources.direction_from_sign(table, source, "direction"):
        # The user wrote no direction: their words are the sign of their amount.
        words = words.with_columns(stage["direction"])

    # 3. Coded values no mapping covers.
    unmapped: dict[str, str] = {}
    extra: dict[str, pl.Expr] = {}
    for column in lookups:
        written = pl.col(f"_written_{column}") & ~pl.col(f"_hit_{column}")
        if column == "kind":
            value = lookups["kind"][0]
            if table == "consumer_transactions" and mapping.unmapped == "other":
                fallback = pl.col("direction").replace_strict(
                    OTHER_KIND, default=None, return_dtype=pl.String
                )
                extra["kind"] = pl.when(pl.col("_hit_kind")).then(value).otherwise(fallback)
                extra["unmapped_kind"] = written & fallback.is_null()
                unmapped[column] = "other_in / other_out by direction"
            else:
                extra["kind"] = value
                extra["unmapped_kind"] = written
                unmapped[column] = "quarantined: unmapped_kind"
        elif column == "channel" and mapping.unmapped == "other":
            unmapped[column] = "null (unknown)"
        else:
            extra[f"unmapped_{column}"] = written
            unmapped[column] = f"quarantined: unmapped_{column}"
    stage = stage.with_columns(**extra)
    flag_cols = [*flags, *(c for c in extra if c.startswith("unmapped_"))]
    typed = stage.select(row, *spec.columns, *flag_cols)
    report = (
        _report(words, stage, table, mapping, unmapped) if mapping is not sources.IDENTITY else {}
    )
    return Mapped(source=words, typed=typed, flags=flag_cols, report=report)


def _report(
    words: pl.DataFrame,
    stage: pl.DataFrame,
    table: str,
    mapping: SourceMapping,
    actions: dict[str, str],
) -> dict[str, Any]:
    """What was mapped and what fell through, per coded column with a ``values`` map."""
    source = mapping.table(table)
    coded: dict[str, Any] = {}
    for column, action in actions.items():
        counts = (
            pl.DataFrame(
                {
                    "value": words.select(_blank_to_null(pl.col(column))).to_series(),
                    "hit": stage[f"_hit_{column}"],
                    "canonical": stage[column].cast(pl.String)
                    if stage.schema[column] != pl.Boolean()
                    else stage[column],
                }
            )
            .filter(pl.col("value").is_not_null())
            .group_by("value", "hit", "canonical")
            .len()
            .sort("len", "value", descending=[True, False])
        )
        hits = counts.filter(pl.col("hit"))
        misses = counts.filter(~pl.col("hit")).group_by("value").agg(pl.col("len").sum())
        coded[column] = {
            "applied": {
                v: [c, n] for v, c, n in hits.select("value", "canonical", "len").iter_rows()
            },
            "unmapped": dict(misses.sort("len", "value", descending=[True, False]).iter_rows()),
            "action": action,
        }
    return {
        "file": source.file,
        "columns": {c: src for c, src in source.columns.items()},
        "constants": dict(source.constants),
        "formats": dict(source.formats),
        "signed_amount": source.signed_amount,
        "values": coded,
    }


def merge_reports(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One table's mapping report from the reports of two slices of its rows.

    Validation reads a big log in row chunks; the counts of each coded value add up, and are
    ordered as :func:`apply` orders them (most rows first, then by value).
    """
    if not first or not second:
        return first or second
    values: dict[str, Any] = {}
    for column, one in first["values"].items():
        two = second["values"][column]
        applied: dict[str, list[Any]] = {v: list(cn) for v, cn in one["applied"].items()}
        for v, (canonical, n) in two["applied"].items():
            applied[v] = [canonical, applied.get(v, [canonical, 0])[1] + n]
        unmapped = dict(one["unmapped"])
        for v, n in two["unmapped"].items():
            unmapped[v] = unmapped.get(v, 0) + n
        values[column] = {
            "applied": dict(sorted(applied.items(), key=lambda kv: (-kv[1][1], kv[0]))),
            "unmapped": dict(sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0]))),
            "action": one["action"],
        }
    return {**first, "values": values}
