"""Validate raw tables against the input contract: clean rows go on, bad rows are quarantined.

The run, table by table:

1. **Read** ``raw_dir/<table>.parquet`` (or ``.csv``), or the lender's own file in its own
   words through a source mapping (``contract.yaml``, :mod:`pipeline.sources`). A missing or
   mistyped column is schema drift (:class:`SchemaDriftError`): the run stops before anything
   is written. Compatible Parquet types are cast; CSV cells are parsed, and a cell that cannot
   be read quarantines its row (``bad_value_<column>``).
2. **Consent.** Entities that have not authorised data use are dropped with every row that
   belongs to them (their transactions, their loans, those loans' repayments and outcomes), and
   references to them in other entities' rows (``buyer_id``, ``counterparty_id``) are blanked.
   Nothing downstream, quarantine included, sees them; the summary counts them.
3. **Single-table rules** (``features.contract.schemas``, dataframely): nulls, types, positive
   amounts, allowed values, duplicate keys (every copy of a duplicated key is quarantined), in-row
   consistency.
4. **Cross-table and clock rules**: transactions and loans of unknown entities (or of entities
   whose own row was quarantined), loans of a segment whose tables were not brought
   (``segment_not_provided``: a lender brings the segments it has), events in the future or
   before the entity existed, repayments of unknown (or quarantined) loans, payments before
   issue.

Clean rows are written to ``validated_dir/<table>.parquet``; bad rows, as they were read, to
``quarantine_dir/<table>.parquet`` with ``source_row`` (0-based row in the input file) and
``rules`` (every rule the row broke at the stage it was stopped). ``summary.json`` counts rows
per table and rule. Reading and the drift check are in :mod:`pipeline.raw_tables`. Output is
published through :func:`pipeline.storage.publishing`, so a failed run leaves the previous
output untouched.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from pathlib import Path
from typing import Any

import dataframely as dy
import polars as pl

from features.contract import tables as contract
from features.contract.schemas import SCHEMAS, rule_name
from features.contract.segments import SEGMENTS, Segment
from pipeline import sources
from pipeline.raw_tables import (
    ROW,
    RULES,
    RawTableError,
    SchemaDriftError,
    Table,
    check_drift,
    columns_of,
    find,
    read,
)
from pipeline.storage import publishing

__all__ = ["RawTableError", "SchemaDriftError", "validate"]

# A log's column naming entities of other segments (by entity table): blanked where such an
# entity has not consented.
REFERENCES = {
    seg.txn_table: (seg.references.column, seg.references.entity_tables)
    for seg in SEGMENTS.values()
    if seg.references is not None
}
LOAN_CHILDREN = ("repayments", "outcomes")
NO_LOG = "no transaction log, so only credit-history and identity features will be built"


# ----------------------------------------------------------------------------------------------
# Rules
# ----------------------------------------------------------------------------------------------


def _quarantine(t: Table, flag_columns: list[str]) -> None:
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


def _schema_rules(t: Table) -> None:
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


def _cross_rules(t: Table, rules: dict[str, pl.Expr]) -> None:
    """Apply rules that are true when broken (null counts as not broken)."""
    t.data = t.data.with_columns(**rules)
    _quarantine(t, list(rules))


def _since(entities: Table, id_col: str, since_col: str) -> pl.DataFrame:
    return entities.data.select(pl.col(id_col).alias("_ref"), pl.col(since_col).alias("_since"))


def _entity_rules(
    t: Table, entities: Table, *, raw_ids: pl.Series, since: str, what: str, now: pl.Expr
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
    mapping: Path | None = None,
) -> dict[str, Any]:
    """Validate every contract table in ``raw_dir``; write clean rows, quarantine and a summary.

    Returns the summary also saved as ``quarantine_dir/summary.json``::

        {"segments": [present segment], "skipped_segments": {segment: why},
         "tables": {table: {"rows_in", "rows_out", "quarantined", "rules": {rule: count}}},
         "consent_excluded": {"merchants": rows, "consumers": rows, <table>: rows dropped,
                              "references_blanked": cells},
         "reference_time": iso timestamp, "inputs": {table: "parquet" | "csv"},
         "no_transaction_log": {segment: why}, "mapping": null | {"file", "currency",
         "timezone", "unmapped", "tables": {table: source_transform.Mapped.report}}}

    ``mapping``: the source mapping file (default ``raw_dir/contract.yaml`` if it exists).
    ``reference_time`` is "now" for the future-timestamp rule (naive means UTC). Raises
    :class:`SchemaDriftError` on a missing or mistyped column and
    :class:`~pipeline.raw_tables.RawTableError` on a file that is not a readable table (empty,
    truncated, not Parquet, a malformed or non-UTF-8 CSV line, no rows, a required column with
    no value); the previous validated and quarantine folders are left as they were.

    A segment is optional: one whose entity table and transactions are both absent is skipped
    (``skipped_segments`` says why; nothing of it is written) and its loans are quarantined as
    ``segment_not_provided``. Its log is optional (a digital lender's borrowers and loans): the
    segment is present without one (``no_transaction_log``); transactions without their
    entities, or no segment at all, is an error.

    Tables are processed small ones first (entities, loans, repayments, outcomes), then the
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

    source_map, map_file = sources.load(raw_dir, mapping)
    present, skipped, no_log = _present_segments(raw_dir, source_map)
    absent_tables = {
        t for s in SEGMENTS.values() if s.name in skipped for t in (s.entity_table, s.txn_table)
    }
    absent_tables |= {SEGMENTS[name].txn_table for name in no_log}

    # A file that cannot be read as a table (RawTableError) or drift anywhere stops the run
    # before any table is read in full or anything written.
    for table in contract.TABLES:
        found = find(raw_dir, table, source_map)
        if found is None and not contract.TABLES[table].optional and table not in absent_tables:
            raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
        if found is not None and table not in absent_tables:
            separator = source_map.table(table).csv.separator
            check_drift(table, columns_of(*found, separator), found[1], source_map)

    with _Staging(validated_dir, quarantine_dir) as out:
        # Keyed by entity table; only the segments whose tables were brought.
        entities = {
            seg.entity_table: _require(raw_dir, seg.entity_table, source_map) for seg in present
        }
        excluded = {
            name: _not_consented(t, contract.TABLES[name].key[0]) for name, t in entities.items()
        }
        for seg in present:
            t = entities[seg.entity_table]
            _drop(t, pl.col(seg.entity_id).is_in(excluded[seg.entity_table].implode()))
            _single_table_rules(t)
            _cross_rules(t, {"future_date": pl.col(seg.since) > now_day})
        raw_ids = {seg.name: _raw_ids(entities[seg.entity_table], seg.entity_id) for seg in present}

        loans = _require(raw_dir, "loans", source_map)
        owned_by_excluded = pl.any_horizontal(
            (pl.col("segment") == seg.name)
            & pl.col("entity_id").is_in(excluded[seg.entity_table].implode())
            for seg in present
        )
        dropped_loans = loans.data.filter(owned_by_excluded.fill_null(False))["loan_id"]
        _drop(loans, owned_by_excluded)
        _single_table_rules(loans)
        _loan_rules(loans, present=present, entities=entities, raw_ids=raw_ids, now_day=now_day)
        raw_loans = _raw_ids(loans, "loan_id")
        issued = loans.data.select(pl.col("loan_id").alias("_loan"), "issued_on")

        for name in LOAN_CHILDREN:
            t = read(raw_dir, name, inspected=True, mapping=source_map)
            if t is None:
                continue
            _drop(t, pl.col("loan_id").is_in(dropped_loans.drop_nulls().unique().implode()))
            _single_table_rules(t)
            _child_rules(t, issued, raw_loans, now_day)
            out.finish(t)

        out.finish(loans)

        blanked = 0
        for seg in present:
            if seg.name in no_log:
                continue
            entity = entities[seg.entity_table]
            ref_col, ref_tables = REFERENCES[seg.txn_table]
            ref_ids = pl.concat(
                [pl.Series(ref_col, [], dtype=pl.String)]
                + [excluded[name] for name in ref_tables if name in excluded]
            )
            t = _require(raw_dir, seg.txn_table, source_map)
            _drop(t, pl.col(seg.entity_id).is_in(excluded[seg.entity_table].implode()))
            blanked += _blank(t, ref_col, ref_ids)
            _single_table_rules(t)
            _entity_rules(
                t,
                entity,
                raw_ids=raw_ids[seg.name],
                since=seg.since,
                what=seg.name,
                now=now_ts,
            )
            out.finish(t)
            del t

        for seg in present:
            out.finish(entities[seg.entity_table])
        mapped = {n: out.mapping[n] for n in contract.TABLES if out.mapping.get(n)}
        described = map_file and {**source_map.describe(map_file), "tables": mapped}
        summary = out.summary(
            blanked, reference_time, skipped, no_transaction_log=no_log, mapping=described
        )
    return summary


def _present_segments(raw_dir: Path, mapping: sources.SourceMapping) -> tuple[Any, ...]:
    """The segments present in ``raw_dir``, {skipped segment: why}, {segment without a log: why}.

    See :func:`validate`: a segment needs its entity table; its transactions are optional.
    """
    present: list[Segment] = []
    skipped: dict[str, str] = {}
    no_log: dict[str, str] = {}
    for seg in SEGMENTS.values():
        has_entities = find(raw_dir, seg.entity_table, mapping) is not None
        has_log = find(raw_dir, seg.txn_table, mapping) is not None
        if has_entities:
            present.append(seg)
            if not has_log:
                no_log[seg.name] = f"no {seg.txn_table} in {raw_dir}: {NO_LOG}"
        elif not has_log:
            skipped[seg.name] = (
                f"neither {seg.entity_table} nor {seg.txn_table} is in {raw_dir}; its loans are "
                "quarantined as segment_not_provided"
            )
        else:
            raise ValueError(
                f"expected {raw_dir / seg.entity_table}.parquet or .csv beside "
                f"{seg.txn_table} (a segment's transactions need its entities); got neither"
            )
    if not present:
        tables = " or ".join(seg.entity_table for seg in SEGMENTS.values())
        raise ValueError(f"expected the tables of a segment ({tables}) in {raw_dir}; got none")
    return present, skipped, no_log


def _require(raw_dir: Path, table: str, mapping: sources.SourceMapping) -> Table:
    t = read(raw_dir, table, inspected=True, mapping=mapping)
    if t is None:
        raise ValueError(f"expected {raw_dir / table}.parquet or .csv; got neither")
    return t


def _not_consented(t: Table, key: str) -> pl.Series:
    """Ids with consent false in any of their rows (the cautious reading when rows disagree)."""
    return t.data.filter(pl.col("consent").eq(False))[key].drop_nulls().unique()


def _drop(t: Table, gone: pl.Expr) -> None:
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


def _blank(t: Table, column: str, ids: pl.Series) -> int:
    """Blank references to non-consented entities in other entities' rows; return how many."""
    hit = t.data.select(pl.col(column).is_in(ids.implode()).fill_null(False)).to_series()
    n = int(hit.sum())
    if n:
        same = t.source is t.data
        blank = pl.when(hit).then(None).otherwise(pl.col(column)).alias(column)
        t.data = t.data.with_columns(blank)
        t.source = t.data if same else t.source.with_columns(blank)
    return n


def _single_table_rules(t: Table) -> None:
    _quarantine(t, t.parse_flags)
    _schema_rules(t)


def _child_rules(t: Table, issued: pl.DataFrame, raw_loans: pl.Series, now_day: pl.Expr) -> None:
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


def _raw_ids(t: Table, column: str) -> pl.Series:
    """Ids present in the table as read (after consent), whether or not their rows passed."""
    return t.source[column].drop_nulls().unique()


def _loan_rules(
    t: Table,
    *,
    present: list[Segment],
    entities: dict[str, Table],
    raw_ids: dict[str, pl.Series],
    now_day: pl.Expr,
) -> None:
    """The borrower must exist in its segment's table (and have passed) and predate the loan.

    A loan of a segment whose tables were not brought is ``segment_not_provided``: nothing can
    be said about its borrower, so it does not train or score.
    """
    since = pl.concat(
        [
            _since(entities[seg.entity_table], seg.entity_id, seg.since).with_columns(
                _seg=pl.lit(seg.name)
            )
            for seg in present
        ]
    )
    t.data = t.data.join(
        since,
        left_on=["segment", "entity_id"],
        right_on=["_seg", "_ref"],
        how="left",
        maintain_order="left",
    )
    provided = pl.col("segment").is_in([seg.name for seg in present])
    known = pl.any_horizontal(
        (pl.col("segment") == seg.name) & pl.col("entity_id").is_in(raw_ids[seg.name].implode())
        for seg in present
    )
    _cross_rules(
        t,
        {
            "segment_not_provided": ~provided,
            "unknown_entity": provided & ~known,
            "entity_quarantined": known & pl.col("_since").is_null(),
            "future_date": pl.col("issued_on") > now_day,
            "before_onboarding": pl.col("issued_on") < pl.col("_since"),
        },
    )
    t.data = t.data.drop("_since")


class _Staging:
    """Temporary output folders, filled table by table and published on a clean exit.

    Both folders go through :func:`pipeline.storage.publishing`: an exception anywhere leaves
    the previous outputs as they were and no temporary behind.
    """

    def __init__(self, validated_dir: Path, quarantine_dir: Path) -> None:
        self.targets = (validated_dir, quarantine_dir)
        self.stats: dict[str, dict[str, Any]] = {}
        self.consent: dict[str, int] = {}
        self.inputs: dict[str, str] = {}
        self.mapping: dict[str, dict[str, Any]] = {}
        self.tmp: list[Path] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Staging:
        with contextlib.ExitStack() as stack:
            self.tmp = [stack.enter_context(publishing(target)) for target in self.targets]
            self._stack = stack.pop_all()
        return self

    def finish(self, t: Table) -> None:
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
        self.mapping[t.name] = t.mapping
        t.data = t.source = pl.DataFrame()
        t.bad = []

    def summary(
        self, blanked: int, reference_time: datetime.datetime, skipped: dict[str, str], **more: Any
    ) -> dict[str, Any]:
        """Write summary.json (the folders are published when the block ends); return it."""
        order = [name for name in contract.TABLES if name in self.stats]
        summary = {
            "segments": [name for name in SEGMENTS if name not in skipped],
            "skipped_segments": skipped,
            "tables": {name: self.stats[name] for name in order},
            "consent_excluded": {
                **{name: self.consent[name] for name in order},
                "references_blanked": blanked,
            },
            "reference_time": reference_time.isoformat(),
            "inputs": {name: self.inputs[name] for name in order},
            **more,
        }
        (self.tmp[1] / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)
