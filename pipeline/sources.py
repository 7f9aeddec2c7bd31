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
  - ``csv: {separator: ";", decimal: ","}`` (CSV files): the field separator (one character,
    default ``,``) and the decimal mark. With ``decimal: ","`` a number is written the European
    way: ``1 234,50`` or ``1.234,50`` reads 1234.5 (spaces, no-break spaces and dots are
    thousands separators). Line checks (field counts, quotes) use the same separator.
  - ``signed_amount: true`` (transaction tables): amounts are signed, negative meaning money
    out. The direction comes from the sign (unless ``direction`` is mapped or a constant) and
    the amount becomes its absolute value; a zero amount has no direction.

Errors: a file that is not valid YAML, names an unknown table or column, maps a value to a
non-canonical one, gives a ``values`` map, a list of columns or ``signed_amount`` where they do
not apply, or a timezone that does not exist raises :class:`SourceMappingError` with one line
``<file>: <key path>: <problem>``. A source column the mapping names but the file lacks is
schema drift (:class:`pipeline.raw_tables.SchemaDriftError`, naming the source column and the
contract column it feeds).

The transform itself (vectorised polars) is :mod:`pipeline.source_transform`.

Quarantined rows keep the user's words: the quarantine file holds the contract's column names
with the cells as the source wrote them (a joined coded value as joined), so the user sees
which of their values fell through. :class:`pipeline.source_transform.Mapped` counts, per
coded column with a map, which source values were mapped to what and which fell through;
validation writes it to ``summary.json`` under ``mapping``.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.contract import tables as contract

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


class SourceMappingError(ValueError):
    """A source mapping file that cannot be used; the message is one line naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Currency(_Strict):
    """The log's currency and the factor that turns its amounts into whole units."""

    code: str | None = None
    scale: float = Field(default=1.0, gt=0)


class CsvDialect(_Strict):
    """How a CSV file writes its fields and numbers (many bank exports: ``;`` and ``1 234,50``)."""

    separator: str = Field(default=",", min_length=1, max_length=1)
    decimal: Literal[".", ","] = "."


class TableSource(_Strict):
    """How one contract table is read from the lender's file (see the module docstring)."""

    file: str | None = None
    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    formats: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    signed_amount: bool = False
    csv: CsvDialect = Field(default_factory=CsvDialect)

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
        if column in source.constants or direction_from_sign(table, source, column):
            continue
        src = source.columns.get(column, column)
        out[column] = list(src) if isinstance(src, list) else [src]
    return out


def direction_from_sign(table: str, source: TableSource, column: str) -> bool:
    """Whether ``column`` is the direction, taken from the sign of signed amounts."""
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
