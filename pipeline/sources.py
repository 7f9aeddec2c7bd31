"""The source mapping: a lender's own logs, in their own words, read as the contract's tables.

A lender's files rarely use the contract's column names, codes, date formats or currency. A
``contract.yaml`` beside the raw files (``<raw_dir>/contract.yaml``, or the file named by
``longtail validate --mapping FILE``) says how to read them. Without one, every table is read
exactly as the contract names it (``<table>.parquet`` or ``.csv`` with the contract's columns
and values), as before.

The file
--------

.. code-block:: yaml

    currency: {code: CZK, scale: 1.0}  # optional
    timezone: Europe/Prague            # optional, default UTC
    unmapped: quarantine               # or: other (default quarantine)
    tables:                            # only the tables that need it; others are read as is
      consumer_transactions:
        file: statement.csv            # default <table>.parquet, else <table>.csv
        columns:                       # contract column: source column
          consumer_id: account_no
          ts: booking_date
          amount: value
          balance_after: balance
          kind: [transaction_type, symbol]   # coded columns may join several source columns
        constants:                     # contract columns the source lacks
          channel: null                # null channel = unknown
          counterparty_id: null
        formats: {ts: "%d.%m.%Y"}      # strptime formats of dates and timestamps, per column
        signed_amount: true            # negative amounts are money out
        values:                        # per coded column: source value -> canonical value
          kind:
            "Salary*": income          # `*` matches any run of characters
            "Card payment*": purchase
            "Cash withdrawal*": cash_withdrawal

Keys:

- ``currency.code`` (text) names the log's currency; it is recorded in ``summary.json`` under
  ``mapping.currency`` for reports. ``currency.scale`` (> 0, default 1) is the factor that turns
  the file's amounts into whole units of the currency: 0.01 for a log kept in cents. It applies
  to every money column of every table (:data:`features.contract.vocabulary.MONEY`).
- ``timezone`` (an IANA name such as ``Europe/Prague``): timestamps written without an offset
  are local time there and are converted to UTC; timestamps with an offset keep their instant.
  A local time that does not exist (the hour skipped when clocks go forward) cannot be read
  (``bad_value_ts``); an ambiguous one (the hour repeated) is taken as its first occurrence.
  Dates (``registered_on``, ``issued_on``, ...) are calendar days and are not converted.
- ``unmapped`` says what happens to a coded value that no entry of its column's ``values`` map
  covers: ``quarantine`` (the default: the safe choice, nothing is guessed) quarantines the row
  as ``unmapped_<column>``; ``other`` lets a consumer transaction ``kind`` become ``other_in``
  or ``other_out`` by its direction (``unmapped_kind`` when the direction is unknown too) and an
  unmapped ``channel`` become null (unknown). Merchant kinds have no "other", so an unmapped
  merchant kind is always quarantined, as is an unmapped ``direction``, ``segment``,
  ``consent`` or ``defaulted``.
- ``tables.<table>`` (a contract table):

  - ``file``: the source file in the raw folder, ``.parquet`` or ``.csv`` (default
    ``<table>.parquet``, else ``<table>.csv``). A named file that is missing is an error; an
    optional table (repayments, outcomes) is simply absent when neither default file exists.
  - ``columns``: contract column -> source column. A contract column not named here and not a
    constant is read from the source column of the same name. Coded columns (see
    :data:`CODED`) may name a list of source columns; their value is the cells joined with
    ``|`` (a bank's kind is often type + operation + symbol: ``"Card payment|POS"``), blank
    cells as empty text.
  - ``constants``: contract column -> one value for every row, for a column the source lacks
    (``channel: null``, ``counterparty_id: null``). ``consent: true`` asserts that every
    entity of the file has authorised data use: write it only when that is so.
  - ``formats``: date or timestamp column -> strptime format (``"%d.%m.%Y"``,
    ``"%Y-%m-%d %H:%M"``). A date-only format read into a timestamp means local midnight.
    Without a format, ISO 8601 is read (as without a mapping).
  - ``values``: coded column -> {source value: canonical value}. Keys are matched against the
    cell as written (surrounding spaces removed), exactly, or as globs where ``*`` matches any
    run of characters; the first match in file order wins, so put specific keys before
    general ones. Canonical values are the contract's (``kind``, ``direction``, ``channel``
    -- which may map to ``null``, unknown --, ``segment``, and ``true``/``false`` for
    ``consent`` and ``defaulted``). A column with a ``values`` map takes only the map's
    values: a source value equal to a canonical one but not in the map is unmapped. A coded
    column without a map is read as written, and a value outside the contract's vocabulary is
    quarantined as ``unknown_<column>``, as without a mapping. A blank cell is null.
  - ``signed_amount: true`` (transaction tables): amounts are signed, negative meaning money
    out. The direction comes from the sign (unless ``direction`` is mapped or a constant) and
    the amount becomes its absolute value; a zero amount has no direction.

Errors: a file that is not valid YAML, names an unknown table or column, maps a value to a
non-canonical one, gives a ``values`` map, a list of columns or ``signed_amount`` where they do
not apply, or a timezone that does not exist raises :class:`SourceMappingError` with one line
``<file>: <key path>: <problem>``. A source column the mapping names but the file lacks is
schema drift (:class:`pipeline.raw_tables.SchemaDriftError`, naming the source column and the
contract column it feeds).

Quarantined rows keep the user's words: the quarantine file holds the contract's column names
with the cells as the source wrote them (a joined coded value as joined), so the user sees
which of their values fell through. :meth:`Mapped.report` counts, per coded column with a
map, which source values were mapped to what and which fell through; validation writes it to
``summary.json`` under ``mapping``.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.contract import tables as contract
from features.contract.vocabulary import MONEY

FILE_NAME = "contract.yaml"
JOIN = "|"
FORMATS = ("parquet", "csv")

# The coded columns of each table and their canonical values: what a ``values`` map may
# produce. ``None`` (null) is allowed where the column is nullable (an unknown channel).
CODED: dict[str, dict[str, tuple[Any, ...]]] = {
    "merchants": {"consent": (True, False)},
    "consumers": {"consent": (True, False)},
    "merchant_transactions": {
        "kind": contract.MERCHANT_TXN_KINDS,
        "channel": (*contract.CHANNELS, None),
    },
    "consumer_transactions": {
        "kind": contract.CONSUMER_TXN_KINDS,
        "direction": contract.DIRECTIONS,
        "channel": (*contract.CHANNELS, None),
    },
    "loans": {"segment": contract.SEGMENTS},
    "outcomes": {"defaulted": (True, False)},
}
# Where ``unmapped: other`` has somewhere to put a value: a consumer kind by its direction.
OTHER_KIND = {"in": "other_in", "out": "other_out"}
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


class SourceMappingError(ValueError):
    """A source mapping file that cannot be used; the message is one line naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Currency(_Strict):
    """The log's currency and the factor that turns its amounts into whole units."""

    code: str | None = None
    scale: float = Field(default=1.0, gt=0)


class TableSource(_Strict):
    """How one contract table is read from the lender's file (see the module docstring)."""

    file: str | None = None
    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    formats: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    signed_amount: bool = False

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        """Source values are matched as text: ``101:`` (an int in YAML) means the cell "101"."""
        if not isinstance(value, dict):
            return value
        return {
            column: (
                {str(k).lower() if isinstance(k, bool) else str(k): v for k, v in rules.items()}
                if isinstance(rules, dict)
                else rules
            )
            for column, rules in value.items()
        }


class SourceMapping(_Strict):
    """A ``contract.yaml``: the currency, the timezone, the unmapped policy, the tables."""

    currency: Currency = Field(default_factory=Currency)
    timezone: str = "UTC"
    unmapped: Literal["other", "quarantine"] = "quarantine"
    tables: dict[str, TableSource] = Field(default_factory=dict)

    def table(self, name: str) -> TableSource:
        """How ``name`` is read: its entry, or the identity (read as the contract names it)."""
        return self.tables.get(name, TableSource())

    def describe(self, path: Path | None) -> dict[str, Any]:
        """The mapping's global part for ``summary.json`` (the per-table part is reported)."""
        return {
            "file": None if path is None else str(path),
            "currency": self.currency.model_dump(),
            "timezone": self.timezone,
            "unmapped": self.unmapped,
        }


IDENTITY = SourceMapping()


# ----------------------------------------------------------------------------------------------
# Loading and checking the file
# ----------------------------------------------------------------------------------------------


def locate(raw_dir: Path, path: Path | None = None) -> Path | None:
    """The mapping file in force, or None (identity).

    ``path`` if given (it must exist), else ``raw_dir/contract.yaml`` when it exists.
    """
    if path is not None:
        if not Path(path).is_file():
            raise SourceMappingError(f"{path}: no such mapping file; expected a contract.yaml")
        return Path(path)
    default = Path(raw_dir) / FILE_NAME
    return default if default.is_file() else None


def load(raw_dir: Path, path: Path | None = None) -> tuple[SourceMapping, Path | None]:
    """The mapping in force for ``raw_dir`` and its file (identity and None without one)."""
    found = locate(raw_dir, path)
    if found is None:
        return IDENTITY, None
    try:
        data = yaml.safe_load(found.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        said = " ".join(str(exc).split())
        raise SourceMappingError(f"{found}: not valid YAML ({said})") from None
    return parse(data if data is not None else {}, where=str(found)), found


def parse(data: Any, *, where: str = FILE_NAME) -> SourceMapping:
    """Check a mapping's content; any problem is one :class:`SourceMappingError` line."""
    if not isinstance(data, dict):
        raise SourceMappingError(
            f"{where}: expected a mapping of keys (currency, timezone, unmapped, tables); "
            f"got {type(data).__name__}"
        )
    try:
        mapping = SourceMapping.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top)"
        got = first.get("input")
        hint = "" if isinstance(got, dict | list) else f"; got {got!r}"
        msg = first["msg"].replace("Extra inputs are not permitted", "unknown key")
        raise SourceMappingError(f"{where}: {loc}: {msg}{hint}") from None
    _check(mapping, where)
    return mapping


def _fail(where: str, key: str, problem: str) -> SourceMappingError:
    return SourceMappingError(f"{where}: {key}: {problem}")


def _check(mapping: SourceMapping, where: str) -> None:
    """What pydantic's types cannot say: names and values the contract must know."""
    try:
        zoneinfo.ZoneInfo(mapping.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _fail(
            where, "timezone", f"unknown timezone {mapping.timezone!r}; expected an IANA name"
        ) from None
    for name, source in mapping.tables.items():
        if name not in contract.TABLES:
            raise _fail(
                where,
                f"tables.{name}",
                f"unknown contract table; expected one of {', '.join(contract.TABLES)}",
            )
        _check_table(name, source, where)


def _check_table(name: str, source: TableSource, where: str) -> None:
    spec = contract.TABLES[name]
    coded = CODED.get(name, {})
    at = f"tables.{name}"
    known = ", ".join(spec.columns)
    if source.file is not None and Path(source.file).suffix.lstrip(".") not in FORMATS:
        raise _fail(where, f"{at}.file", f"expected a .parquet or .csv file; got {source.file!r}")
    for part in ("columns", "constants", "formats", "values"):
        for column in getattr(source, part):
            if column not in spec.columns:
                raise _fail(
                    where, f"{at}.{part}.{column}", f"unknown contract column; expected {known}"
                )
    for column, src in source.columns.items():
        if isinstance(src, list) and column not in coded:
            raise _fail(
                where,
                f"{at}.columns.{column}",
                "a list of source columns is only for coded columns "
                f"({', '.join(coded) or 'none in this table'})",
            )
        if isinstance(src, list) and not src:
            raise _fail(where, f"{at}.columns.{column}", "expected at least one source column")
        if column in source.constants:
            raise _fail(
                where, f"{at}.constants.{column}", "the column is also mapped under columns"
            )
    for column, value in source.constants.items():
        _check_constant(spec, column, value, where, f"{at}.constants.{column}")
    for column, fmt in source.formats.items():
        dtype = spec.columns[column]
        if not isinstance(dtype, pl.Date | pl.Datetime):
            raise _fail(
                where,
                f"{at}.formats.{column}",
                f"formats are for dates and timestamps; got {dtype}",
            )
        if "%" not in fmt:
            raise _fail(
                where,
                f"{at}.formats.{column}",
                f"expected a strptime format such as %d.%m.%Y; got {fmt!r}",
            )
    for column, rules in source.values.items():
        if column not in coded:
            raise _fail(
                where,
                f"{at}.values.{column}",
                "a value map on a column that is not coded; coded columns of this table: "
                f"{', '.join(coded) or 'none'}",
            )
        allowed = coded[column]
        for key, value in rules.items():
            ok = value in allowed and (
                isinstance(value, bool) == isinstance(allowed[0], bool) or value is None
            )
            if not ok:
                shown = ", ".join(
                    "null" if a is None else str(a).lower() if isinstance(a, bool) else a
                    for a in allowed
                )
                raise _fail(
                    where,
                    f"{at}.values.{column}[{key!r}]",
                    f"unknown canonical value {value!r}; expected one of {shown}",
                )
    if source.signed_amount and "amount" not in spec.columns:
        raise _fail(where, f"{at}.signed_amount", "only tables with an amount column have signs")


def _check_constant(spec: contract.Table, column: str, value: Any, where: str, key: str) -> None:
    dtype = spec.columns[column]
    if value is None:
        if column not in spec.nullable:
            raise _fail(where, key, "null for a column that requires a value")
        return
    allowed = CODED.get(spec.name, {}).get(column)
    if allowed is not None and value not in allowed:
        raise _fail(where, key, f"unknown canonical value {value!r}")
    ok = {
        pl.Boolean(): isinstance(value, bool),
        pl.String(): isinstance(value, str),
    }.get(dtype, not isinstance(value, bool | dict | list))
    if not ok:
        raise _fail(where, key, f"expected a value of type {dtype}; got {value!r}")


# ----------------------------------------------------------------------------------------------
# What a table needs from its file
# ----------------------------------------------------------------------------------------------


def file_of(raw_dir: Path, table: str, mapping: SourceMapping) -> tuple[Path, str] | None:
    """The table's source file and format, or None when the table was not brought.

    A file the mapping names must exist (it is an error otherwise); without one, the contract
    names are tried, Parquet first.
    """
    named = mapping.table(table).file
    if named is not None:
        path = Path(raw_dir) / named
        if not path.exists():
            raise ValueError(
                f"expected {path} (tables.{table}.file in the source mapping); it does not exist"
            )
        return path, path.suffix.lstrip(".")
    for fmt in FORMATS:
        path = Path(raw_dir) / f"{table}.{fmt}"
        if path.exists():
            return path, fmt
    return None


def feeds(table: str, mapping: SourceMapping) -> dict[str, list[str]]:
    """Each contract column read from the file -> the source columns it is made of.

    Constants are not read, nor a direction that comes from signed amounts.
    """
    source = mapping.table(table)
    out: dict[str, list[str]] = {}
    for column in contract.TABLES[table].columns:
        if column in source.constants or _direction_from_sign(table, source, column):
            continue
        src = source.columns.get(column, column)
        out[column] = list(src) if isinstance(src, list) else [src]
    return out


def _direction_from_sign(table: str, source: TableSource, column: str) -> bool:
    return (
        column == "direction"
        and source.signed_amount
        and column not in source.columns
        and column in contract.TABLES[table].columns
    )


def matched_as_text(table: str, column: str, mapping: SourceMapping) -> bool:
    """Whether the column's source cells are read as text whatever their type (any is fine)."""
    source = mapping.table(table)
    dtype = contract.TABLES[table].columns[column]
    mapped = table in mapping.tables
    return column in source.values or (mapped and dtype == pl.String())


def parsed_from_text(table: str, column: str, mapping: SourceMapping) -> bool:
    """Whether a text source column is parsed with a format (a Parquet string of dates)."""
    return column in mapping.table(table).formats


# ----------------------------------------------------------------------------------------------
# The transform
# ----------------------------------------------------------------------------------------------


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
    col: str, dtype: pl.DataType, *, nullable: bool = False, fmt: str | None = None, tz: str = "UTC"
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
    fed = feeds(table, mapping)

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
        if len(parts) > 1 or isinstance(source.columns.get(column), list):
            return pl.concat_str(
                [pl.col(p).cast(pl.String).str.strip_chars().fill_null("") for p in parts],
                separator=JOIN,
            )
        expr = pl.col(parts[0])
        if not text and mapped and matched_as_text(table, column, mapping):
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
        if "direction" in spec.columns and _direction_from_sign(table, source, "direction"):
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
    if _direction_from_sign(table, source, "direction"):
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
    report = _report(words, stage, table, mapping, unmapped) if mapping is not IDENTITY else {}
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
