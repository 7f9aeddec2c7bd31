"""Validate raw tables against the input contract: clean rows go on, bad rows are quarantined.

The run, table by table:

1. **Read** ``raw_dir/<table>.parquet`` (or ``.csv``). A missing or mistyped column is schema
   drift: the run stops with :class:`SchemaDriftError` naming the table and the column, before
   anything is written. Parquet columns of a compatible type are cast (any integer width, integers
   to floats, any datetime unit; naive timestamps are taken as UTC). CSV cells are parsed; a cell
   that cannot be read as its column's type quarantines its row (``bad_value_<column>``).
2. **Consent.** Entities that have not authorised data use are dropped with every row that
   belongs to them (their transactions, their loans, those loans' repayments and outcomes), and
   references to them in other entities' rows (``buyer_id``, ``counterparty_id``) are blanked.
   Nothing downstream, quarantine included, sees them; the summary counts them.
3. **Single-table rules** (``features.contract.schemas``, dataframely): nulls, types, positive
   amounts, allowed values, duplicate keys (every copy of a duplicated key is quarantined), in-row
   consistency.
4. **Cross-table and clock rules**: transactions and loans of unknown entities (or of entities
   whose own row was quarantined), events in the future or before the entity existed,
   repayments of unknown (or quarantined) loans, payments before issue.

Clean rows are written to ``validated_dir/<table>.parquet``; bad rows, as they were read, to
``quarantine_dir/<table>.parquet`` with ``source_row`` (0-based row in the input file) and
``rules`` (every rule the row broke at the stage it was stopped). ``summary.json`` counts rows
per table and rule. Output is written to temporary folders and renamed into place, so a failed
run leaves the previous output untouched.
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dataframely as dy
import polars as pl

from features.contract import tables as contract
from features.contract.schemas import SCHEMAS, rule_name

__all__ = ["SchemaDriftError", "validate"]

ROW = "source_row"
RULES = "rules"
ENTITY_TABLES = ("merchants", "consumers")
LOAN_CHILDREN = ("repayments", "outcomes")
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


class SchemaDriftError(ValueError):
    """A table lacks a contract column or holds it with an incompatible type."""


@dataclass
class _Table:
    """One table on its way through validation."""

    name: str
    fmt: str  # "parquet" or "csv"
    source: pl.DataFrame  # rows as read (typed for parquet, text for csv), with ROW
    data: pl.DataFrame  # contract-typed rows still in play, with ROW
    rows_in: int
    bad: list[pl.DataFrame] = field(default_factory=list)  # frames of (ROW, RULES)
    parse_flags: list[str] = field(default_factory=list)  # CSV cells that could not be read
    consent_dropped: int = 0


# ----------------------------------------------------------------------------------------------
# Reading and schema drift
# ----------------------------------------------------------------------------------------------


def _find(raw_dir: Path, table: str) -> tuple[Path, str] | None:
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


def _check_drift(table: str, columns: pl.Schema, fmt: str) -> None:
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


def _columns(path: Path, fmt: str) -> pl.Schema:
    if fmt == "parquet":
        return pl.read_parquet_schema(path)
    return pl.read_csv(path, n_rows=0, infer_schema=False).schema


def _read(raw_dir: Path, table: str) -> _Table | None:
    """Read one table, check it for drift and bring it to the contract's types."""
    found = _find(raw_dir, table)
    if found is None:
        if contract.TABLES[table].optional:
            return None
        raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
    path, fmt = found
    spec = contract.TABLES[table]
    _check_drift(table, _columns(path, fmt), fmt)
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
        return _Table(table, fmt, source=typed, data=typed, rows_in=typed.height)
    raw = pl.read_csv(path, infer_schema=False).select(list(spec.columns)).with_row_index(ROW)
    raw = raw.with_columns(pl.col(ROW).cast(pl.Int64))
    typed = raw.select(ROW, *(_parse_text(c, t).alias(c) for c, t in spec.columns.items()))
    text = {c: pl.col(c).str.strip_chars() for c in spec.columns}
    flags = raw.select(
        ((text[c].is_not_null() & (text[c] != "")).alias(f"bad_value_{c}")) for c in spec.columns
    ).with_columns(pl.col(f"bad_value_{c}") & typed[c].is_null() for c in spec.columns)
    return _Table(
        table,
        fmt,
        source=raw,
        data=pl.concat([typed, flags], how="horizontal"),
        rows_in=raw.height,
        parse_flags=flags.columns,
    )


# ----------------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------------


def _quarantine(t: _Table, flag_columns: list[str]) -> None:
    """Move rows of ``t.data`` with any flag column true to ``t.bad``; drop the flag columns."""
    if not flag_columns:
        return
    data = t.data.with_columns(pl.col(flag_columns).fill_null(False))
    broken = pl.any_horizontal(flag_columns)
    bad = data.filter(broken).select(
        ROW,
        pl.concat_list(pl.when(pl.col(f)).then(pl.lit(f)) for f in flag_columns)
        .list.drop_nulls()
        .alias(RULES),
    )
    if bad.height:
        t.bad.append(bad)
    t.data = data.filter(~broken).drop(flag_columns)


def _schema_rules(t: _Table) -> None:
    """Apply the table's dataframely schema: failing rows go to quarantine with their rules."""
    tracked = type(f"_Tracked{SCHEMAS[t.name].__name__}", (SCHEMAS[t.name],), {ROW: dy.Int64()})
    good, failure = tracked.filter(t.data, cast=True)
    if len(failure):
        details = failure.details()
        rule_cols = [c for c in details.columns if c not in tracked.column_names()]
        bad = details.select(
            ROW,
            pl.concat_list(
                pl.when(pl.col(c) == "invalid").then(pl.lit(rule_name(c))) for c in rule_cols
            )
            .list.drop_nulls()
            .list.unique(maintain_order=True)
            .alias(RULES),
        )
        t.bad.append(bad)
    t.data = good.select(ROW, *contract.TABLES[t.name].columns)


def _cross_rules(t: _Table, rules: dict[str, pl.Expr]) -> None:
    """Apply rules that are true when broken (null counts as not broken)."""
    t.data = t.data.with_columns(**rules)
    _quarantine(t, list(rules))


def _since(entities: _Table, id_col: str, since_col: str) -> pl.DataFrame:
    return entities.data.select(pl.col(id_col).alias("_ref"), pl.col(since_col).alias("_since"))


def _entity_rules(
    t: _Table, entities: _Table, *, raw_ids: pl.Series, since: str, what: str, now: pl.Expr
) -> None:
    """Unknown or quarantined owner, event before the owner existed, event in the future."""
    key = contract.TABLES[entities.name].key[0]
    ts = pl.col("ts")
    valid = _since(entities, key, since)
    t.data = t.data.join(valid, left_on=key, right_on="_ref", how="left", maintain_order="left")
    _cross_rules(
        t,
        {
            f"unknown_{what}": ~pl.col(key).is_in(raw_ids.implode()),
            f"{what}_quarantined": pl.col(key).is_in(raw_ids.implode())
            & pl.col("_since").is_null(),
            "future_timestamp": ts > now,
            "before_onboarding": ts.cast(pl.Date) < pl.col("_since"),
        },
    )
    t.data = t.data.drop("_since")


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


def validate(
    raw_dir: Path,
    validated_dir: Path,
    quarantine_dir: Path,
    *,
    reference_time: datetime.datetime,
) -> dict[str, Any]:
    """Validate every contract table in ``raw_dir``; write clean rows, quarantine and a summary.

    Returns the summary also saved as ``quarantine_dir/summary.json``::

        {"tables": {table: {"rows_in", "rows_out", "quarantined", "rules": {rule: count}}},
         "consent_excluded": {"merchants": rows, "consumers": rows, <table>: rows dropped,
                              "references_blanked": cells},
         "reference_time": iso timestamp, "inputs": {table: "parquet" | "csv"}}

    ``reference_time`` is "now" for the future-timestamp rule (naive means UTC). Raises
    :class:`SchemaDriftError` on a missing or mistyped column, before writing anything.

    Tables are processed small ones first (entities, loans, repayments, outcomes), then the two
    transaction tables one at a time, each written out and released before the next is read,
    so peak memory is about one transaction table, not all of them.
    """
    raw_dir, validated_dir, quarantine_dir = (
        Path(raw_dir),
        Path(validated_dir),
        Path(quarantine_dir),
    )
    if reference_time.tzinfo is None:
        reference_time = reference_time.replace(tzinfo=datetime.UTC)
    now_ts = pl.lit(reference_time).cast(contract.TS)
    now_day = pl.lit(reference_time.astimezone(datetime.UTC).date())

    # Drift anywhere stops the run before any table is read or anything written.
    for table in contract.TABLES:
        found = _find(raw_dir, table)
        if found is None and not contract.TABLES[table].optional:
            raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
        if found is not None:
            _check_drift(table, _columns(*found), found[1])

    with _Staging(validated_dir, quarantine_dir) as out:
        entities = {name: _require(raw_dir, name) for name in ENTITY_TABLES}
        excluded = {
            name: _not_consented(t, contract.TABLES[name].key[0]) for name, t in entities.items()
        }
        for name, since in (("merchants", "onboarded_on"), ("consumers", "registered_on")):
            t = entities[name]
            key = contract.TABLES[name].key[0]
            _drop(t, pl.col(key).is_in(excluded[name].implode()))
            _single_table_rules(t)
            _cross_rules(t, {"future_date": pl.col(since) > now_day})
        merchants, consumers = entities["merchants"], entities["consumers"]
        raw_m = _raw_ids(merchants, "merchant_id")
        raw_c = _raw_ids(consumers, "consumer_id")

        loans = _require(raw_dir, "loans")
        owned_by_excluded = (
            pl.when(pl.col("segment") == "merchant")
            .then(pl.col("entity_id").is_in(excluded["merchants"].implode()))
            .when(pl.col("segment") == "consumer")
            .then(pl.col("entity_id").is_in(excluded["consumers"].implode()))
            .otherwise(False)
        )
        dropped_loans = loans.data.filter(owned_by_excluded.fill_null(False))["loan_id"]
        _drop(loans, owned_by_excluded)
        _single_table_rules(loans)
        _loan_rules(
            loans,
            raw_m=raw_m,
            raw_c=raw_c,
            merchants=merchants,
            consumers=consumers,
            now_day=now_day,
        )
        raw_loans = _raw_ids(loans, "loan_id")
        issued = loans.data.select(pl.col("loan_id").alias("_loan"), "issued_on")

        for name in LOAN_CHILDREN:
            t = _read(raw_dir, name)
            if t is None:
                continue
            _drop(t, pl.col("loan_id").is_in(dropped_loans.drop_nulls().unique().implode()))
            _single_table_rules(t)
            _child_rules(t, issued, raw_loans, now_day)
            out.finish(t)

        out.finish(loans)

        blanked = 0
        for name, entity, ref_col, ref_ids in (
            ("merchant_transactions", merchants, "buyer_id", excluded["consumers"]),
            (
                "consumer_transactions",
                consumers,
                "counterparty_id",
                pl.concat([excluded["consumers"], excluded["merchants"]]),
            ),
        ):
            t = _require(raw_dir, name)
            owner = contract.TABLES[entity.name].key[0]
            excluded_owner = excluded[entity.name]
            _drop(t, pl.col(owner).is_in(excluded_owner.implode()))
            blanked += _blank(t, ref_col, ref_ids)
            _single_table_rules(t)
            _entity_rules(
                t,
                entity,
                raw_ids=raw_m if entity.name == "merchants" else raw_c,
                since="onboarded_on" if entity.name == "merchants" else "registered_on",
                what=entity.name.removesuffix("s"),
                now=now_ts,
            )
            out.finish(t)
            del t

        out.finish(merchants)
        out.finish(consumers)
        summary = out.summary(blanked, reference_time)
    return summary


def _require(raw_dir: Path, table: str) -> _Table:
    t = _read(raw_dir, table)
    if t is None:
        raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
    return t


def _not_consented(t: _Table, key: str) -> pl.Series:
    """Ids with consent false in any of their rows (the cautious reading when rows disagree)."""
    return t.data.filter(pl.col("consent").eq(False))[key].drop_nulls().unique()


def _drop(t: _Table, gone: pl.Expr) -> None:
    """Drop rows of non-consented entities before any rule runs, so not even quarantine has them.

    Quarantine has not started, so data and source hold the same rows in the same order and one
    mask filters both.
    """
    mask = t.data.select(gone.fill_null(False)).to_series()
    t.consent_dropped = int(mask.sum())
    if t.consent_dropped:
        same = t.source is t.data
        t.data = t.data.filter(~mask)
        t.source = t.data if same else t.source.filter(~mask)


def _blank(t: _Table, column: str, ids: pl.Series) -> int:
    """Blank references to non-consented entities in other entities' rows; return how many."""
    hit = t.data.select(pl.col(column).is_in(ids.implode()).fill_null(False)).to_series()
    n = int(hit.sum())
    if n:
        same = t.source is t.data
        blank = pl.when(hit).then(None).otherwise(pl.col(column)).alias(column)
        t.data = t.data.with_columns(blank)
        t.source = t.data if same else t.source.with_columns(blank)
    return n


def _single_table_rules(t: _Table) -> None:
    _quarantine(t, t.parse_flags)
    _schema_rules(t)


def _child_rules(t: _Table, issued: pl.DataFrame, raw_loans: pl.Series, now_day: pl.Expr) -> None:
    """Repayments and outcomes: the loan must exist (and have passed); payment dates make sense."""
    t.data = t.data.join(
        issued, left_on="loan_id", right_on="_loan", how="left", maintain_order="left"
    )
    known = pl.col("loan_id").is_in(raw_loans.implode())
    rules = {"unknown_loan": ~known, "loan_quarantined": known & pl.col("issued_on").is_null()}
    if t.name == "repayments":
        rules |= {
            "paid_before_issue": pl.col("paid_on") < pl.col("issued_on"),
            "due_before_issue": pl.col("due_on") < pl.col("issued_on"),
            "future_date": pl.col("paid_on") > now_day,
        }
    _cross_rules(t, rules)
    t.data = t.data.drop("issued_on")


def _raw_ids(t: _Table, column: str) -> pl.Series:
    """Ids present in the table as read (after consent), whether or not their rows passed."""
    return t.source[column].drop_nulls().unique()


def _loan_rules(
    t: _Table,
    *,
    raw_m: pl.Series,
    raw_c: pl.Series,
    merchants: _Table,
    consumers: _Table,
    now_day: pl.Expr,
) -> None:
    """The borrower must exist in its segment's table (and have passed) and predate the loan."""
    since = pl.concat(
        [
            _since(merchants, "merchant_id", "onboarded_on").with_columns(_seg=pl.lit("merchant")),
            _since(consumers, "consumer_id", "registered_on").with_columns(_seg=pl.lit("consumer")),
        ]
    )
    t.data = t.data.join(
        since,
        left_on=["segment", "entity_id"],
        right_on=["_seg", "_ref"],
        how="left",
        maintain_order="left",
    )
    merchant = pl.col("segment") == "merchant"
    known = (
        pl.when(merchant)
        .then(pl.col("entity_id").is_in(raw_m.implode()))
        .otherwise(pl.col("entity_id").is_in(raw_c.implode()))
    )
    _cross_rules(
        t,
        {
            "unknown_entity": ~known,
            "entity_quarantined": known & pl.col("_since").is_null(),
            "future_date": pl.col("issued_on") > now_day,
            "before_onboarding": pl.col("issued_on") < pl.col("_since"),
        },
    )
    t.data = t.data.drop("_since")


class _Staging:
    """Temporary output folders, filled table by table and renamed into place on success."""

    def __init__(self, validated_dir: Path, quarantine_dir: Path) -> None:
        self.targets = (validated_dir, quarantine_dir)
        self.stats: dict[str, dict[str, Any]] = {}
        self.consent: dict[str, int] = {}
        self.inputs: dict[str, str] = {}
        self.tmp: list[Path] = []

    def __enter__(self) -> _Staging:
        for target in self.targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.append(Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent)))
        return self

    def finish(self, t: _Table) -> None:
        """Write one table's clean and quarantined rows, record its counts, release it."""
        v_tmp, q_tmp = self.tmp
        t.data.drop(ROW).write_parquet(v_tmp / f"{t.name}.parquet")
        bad = (
            pl.concat(t.bad)
            if t.bad
            else pl.DataFrame(schema={ROW: pl.Int64, RULES: pl.List(pl.String)})
        )
        quarantined = t.source.filter(pl.col(ROW).is_in(bad[ROW].implode()))
        quarantined.join(bad, on=ROW, how="left").sort(ROW).select(
            ROW, *contract.TABLES[t.name].columns, RULES
        ).write_parquet(q_tmp / f"{t.name}.parquet")
        counts = bad.select(pl.col(RULES).explode().drop_nulls()).group_by(RULES).len().sort(RULES)
        self.stats[t.name] = {
            "rows_in": t.rows_in,
            "rows_out": t.data.height,
            "quarantined": bad.height,
            "rules": dict(zip(counts[RULES].to_list(), counts["len"].to_list(), strict=True)),
        }
        self.consent[t.name] = t.consent_dropped
        self.inputs[t.name] = t.fmt
        t.data = t.source = pl.DataFrame()
        t.bad = []

    def summary(self, blanked: int, reference_time: datetime.datetime) -> dict[str, Any]:
        """Write summary.json and swap both folders into place; return the summary."""
        order = [name for name in contract.TABLES if name in self.stats]
        summary = {
            "tables": {name: self.stats[name] for name in order},
            "consent_excluded": {
                **{name: self.consent[name] for name in order},
                "references_blanked": blanked,
            },
            "reference_time": reference_time.isoformat(),
            "inputs": {name: self.inputs[name] for name in order},
        }
        (self.tmp[1] / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        for tmp, target in zip(self.tmp, self.targets, strict=True):
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        return summary

    def __exit__(self, *exc: object) -> None:
        for tmp in self.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
