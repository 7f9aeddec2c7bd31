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

import datetime
from dataclasses import dataclass
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
    ContentCheck,
    RawTableError,
    SchemaDriftError,
    Table,
    check_drift,
    columns_of,
    count_rows,
    find,
    present_segments,
    read,
)
from pipeline.validate_chunks import (
    Staging,
    duplicated_keys,
    key_hashes,
    with_phantoms,
    without_phantoms,
)

__all__ = ["RawTableError", "SchemaDriftError", "validate"]

# A log's column naming entities of other segments (by entity table): blanked where such an
# entity has not consented.
REFERENCES = {
    seg.txn_table: (seg.references.column, seg.references.entity_tables)
    for seg in SEGMENTS.values()
    if seg.references is not None
}
LOAN_CHILDREN = ("repayments", "outcomes")


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
    chunk_rows: int | None = None,
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
    transaction tables one at a time, each written out and released before the next is read.
    A log of more than ``chunk_rows`` rows (None: no limit) is validated ``chunk_rows`` rows
    at a time with the same result (:mod:`pipeline.validate_chunks`), so peak memory is about
    one chunk, not one log.
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
    present, skipped, no_log = present_segments(raw_dir, source_map)
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

    with Staging(validated_dir, quarantine_dir) as out:
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
            log = _Log(
                seg,
                gone=pl.col(seg.entity_id).is_in(excluded[seg.entity_table].implode()),
                references=(ref_col, ref_ids),
                entity=entity,
                raw_ids=raw_ids[seg.name],
                now=now_ts,
            )
            blanked += log.validate(raw_dir, source_map, out, chunk_rows)

        for seg in present:
            out.finish(entities[seg.entity_table])
        mapped = {n: out.mapping[n] for n in contract.TABLES if out.mapping.get(n)}
        described = map_file and {**source_map.describe(map_file), "tables": mapped}
        summary = out.summary(
            blanked, reference_time, skipped, no_transaction_log=no_log, mapping=described
        )
    return summary


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


@dataclass
class _Log:
    """One segment's transaction log and what its rules need from the tables validated before."""

    seg: Segment
    gone: pl.Expr  # rows of entities without consent
    references: tuple[str, pl.Series]  # the column naming other entities, ids to blank
    entity: Table
    raw_ids: pl.Series
    now: pl.Expr

    def validate(
        self, raw_dir: Path, mapping: sources.SourceMapping, out: Staging, chunk_rows: int | None
    ) -> int:
        """Validate and write the log, whole or ``chunk_rows`` at a time; references blanked."""
        name = self.seg.txn_table
        total = count_rows(raw_dir, name, mapping) if chunk_rows else 0
        if not chunk_rows or total <= chunk_rows:
            t = _require(raw_dir, name, mapping)
            blanked = self.rules(t)
            out.finish(t)
            return blanked
        chunks = [(first, min(chunk_rows, total - first)) for first in range(0, total, chunk_rows)]
        path, fmt = find(raw_dir, name, mapping) or (raw_dir, "")
        duplicated = duplicated_keys(self.key_hashes(raw_dir, mapping, chunks))
        content = ContentCheck(path, name, text=fmt == "csv")
        blanked = 0
        for rows in chunks:
            t = read(raw_dir, name, inspected=True, mapping=mapping, rows=rows, content=content)
            blanked += self.rules(t, duplicated)
            out.add(t)
        content.check()  # raised inside the staging block: nothing is published
        out.close(name)
        return blanked

    def key_hashes(
        self, raw_dir: Path, mapping: sources.SourceMapping, chunks: list[tuple[int, int]]
    ) -> list[pl.DataFrame]:
        """First pass: the hashed keys of rows still in play when the key rule runs."""
        name = self.seg.txn_table
        key, (path, fmt) = contract.TABLES[name].key[0], find(raw_dir, name, mapping) or ("", "")
        if fmt == "parquet" and mapping is sources.IDENTITY:  # no cell to parse: two columns
            scan = pl.scan_parquet(path).filter(~self.gone.fill_null(False))
            return [scan.select(key_hashes(key)).collect(engine="streaming")]
        hashes = []
        for rows in chunks:
            t = read(raw_dir, name, inspected=True, mapping=mapping, rows=rows)
            _drop(t, self.gone)  # consent first, then unreadable cells: as in rules()
            flags = pl.any_horizontal(pl.col(t.parse_flags).fill_null(False))
            kept = t.data.filter(~flags) if t.parse_flags else t.data
            hashes.append(kept.select(key_hashes(key)))
        return hashes

    def rules(self, t: Table, duplicated: pl.DataFrame | None = None) -> int:
        """Every rule on the log or a chunk; ``duplicated``: keys duplicated across chunks."""
        _drop(t, self.gone)
        blanked = _blank(t, *self.references)
        _quarantine(t, t.parse_flags)
        if duplicated is not None:
            with_phantoms(t, contract.TABLES[t.name].key[0], duplicated)
        _schema_rules(t)
        without_phantoms(t)
        _entity_rules(
            t,
            self.entity,
            raw_ids=self.raw_ids,
            since=self.seg.since,
            what=self.seg.name,
            now=self.now,
        )
        return blanked
