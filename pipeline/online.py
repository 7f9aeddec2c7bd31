"""The online state: every entity's validated rows in memory, sliced per request in O(1).

The service computes an applicant's features with the batch code itself
(:func:`features.build.build` on the segment's definitions), so online and batch cannot
disagree by construction; what differs is only which rows the build is given. At startup
:class:`OnlineState` reads the validated tables once and keeps them sorted by owner (a stable
sort: rows of one entity keep the log's order, which breaks ties between events at the same
second exactly as in batch), with a dictionary from entity id to its row range. A request then
hands the build just what one entity's features read:

- its own events (a zero-copy slice) plus the events sent with the request, validated first;
- its entity row (tenure, static attributes);
- its own loans and instalments (credit history) and those of its partners (its buyers or
  counterparties): whether a partner was already delinquent is read from the partner's loans
  (:func:`features.history.delinquency_onset`), and nothing else of any other entity is;
- for a consumer, the categories (industries) of the merchants it paid.

A feature of one entity reads nothing beyond these rows, so the online value equals the batch
value at the same ``as_of`` (tests/test_serve.py compares every feature of many entities).
Consent is checked before any of this is read: the validated tables hold consented entities
only, and the ids that withheld consent are read from the raw entity tables (ids only).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from features.build import Inputs
from features.contract.schemas import SCHEMAS, rule_name
from features.contract.segments import SEGMENTS, Segment
from features.contract.tables import TABLES
from pipeline import raw_tables, sources
from pipeline.inputs import feature_inputs

log = logging.getLogger(__name__)
OWNER = "__owner"  # the entity that owns a loan (and so its instalments)


class Refused(ValueError):
    """A request the service turns down: ``status`` is the HTTP code, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Grouped:
    """A frame stably sorted by one id column, with each id's row range."""

    frame: pl.DataFrame
    index: pl.DataFrame  # id column, __start, __len (sorted by id)
    ranges: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, frame: pl.DataFrame, by: str) -> Grouped:
        """Sort ``frame`` by ``by`` (stable) and index the row range of every id."""
        ordered = frame.sort(by, maintain_order=True).rechunk()
        index = (
            ordered.group_by(by, maintain_order=True)
            .len("__len")
            .with_columns((pl.col("__len").cum_sum() - pl.col("__len")).alias("__start"))
            .select(by, pl.col("__start").cast(pl.Int64), pl.col("__len").cast(pl.Int64))
        )
        ranges = dict(
            zip(
                index[by].to_list(),
                zip(index["__start"].to_list(), index["__len"].to_list(), strict=True),
                strict=True,
            )
        )
        return cls(ordered, index, ranges)

    def rows(self, ids: pl.Series) -> np.ndarray:
        """Row numbers of every row owned by any of ``ids`` (unknown ids own none), in order."""
        by = self.index.columns[0]
        hit = self.index.join(
            pl.DataFrame({by: ids.unique()}), on=by, how="semi", maintain_order="left"
        )
        starts, lens = hit["__start"].to_numpy(), hit["__len"].to_numpy()
        total = int(lens.sum())
        if total == 0:
            return np.empty(0, dtype=np.int64)
        # concatenated aranges: start of each range repeated, plus the position inside it
        offsets = np.repeat(starts - (np.cumsum(lens) - lens), lens)
        return offsets + np.arange(total, dtype=np.int64)

    def slice(self, key: str) -> pl.DataFrame:
        """The rows of one id (zero-copy); empty when the id owns none."""
        start, length = self.ranges.get(key, (0, 0))
        return self.frame.slice(start, length)


@dataclass(frozen=True)
class SegmentState:
    """One segment's rows in memory: its log and entity table, grouped by entity."""

    segment: Segment
    events: Grouped
    entities: Grouped
    has_log: bool
    partners: pl.DataFrame | None  # partner_id, category (e.g. merchants' industries)


@dataclass(frozen=True)
class Request:
    """What one decision's features are built from: who, when, and the events sent along."""

    entity_id: str
    as_of: dt.date
    events: pl.DataFrame  # validated, in the contract's columns with ``entity_id``


class OnlineState:
    """The validated tables in memory, grouped by owner, for the segments the service serves."""

    def __init__(
        self,
        segments: dict[str, SegmentState],
        loans: Grouped,
        repayments: Grouped,
        withheld: dict[str, frozenset[str]],
    ) -> None:
        self.segments = segments
        self.loans = loans
        self.repayments = repayments
        self.withheld = withheld  # entity table -> ids that did not consent

    @classmethod
    def load(cls, data_dir: Path, names: Sequence[str]) -> OnlineState:
        """Read the validated tables of ``names`` (and the raw consent column) into memory."""
        validated = data_dir / "validated"
        segments = {}
        for name in names:
            seg = SEGMENTS[name]
            inputs = feature_inputs(validated, seg)
            partners = None if inputs.partners is None else inputs.partners.collect()
            segments[name] = SegmentState(
                segment=seg,
                events=Grouped.of(inputs.events.collect(), "entity_id"),
                entities=Grouped.of(inputs.entities.collect(), "entity_id"),
                has_log=inputs.has_log,
                partners=partners,
            )
            loans = inputs.loans.collect()
            repayments = inputs.repayments.collect()
        if not segments:
            raise ValueError("expected at least one segment to serve; got none")
        owned = repayments.join(
            loans.select("loan_id", pl.col("entity_id").alias(OWNER)), on="loan_id", how="inner"
        )
        withheld = _withheld(data_dir / "raw")
        state = cls(
            segments,
            Grouped.of(loans, "entity_id"),
            Grouped.of(owned, OWNER),
            withheld,
        )
        log.info(
            "online state: %s; %d loans, %d instalments",
            ", ".join(f"{n} {s.events.frame.height} events" for n, s in segments.items()),
            loans.height,
            owned.height,
        )
        return state

    def check(self, name: str, entity_id: str) -> None:
        """Refuse (403) an entity that withheld consent, (404) one the book does not hold.

        Reads nothing but ids: consent comes first.
        """
        seg = self._segment(name).segment
        if entity_id in self.withheld.get(seg.entity_table, frozenset()):
            raise Refused(
                403,
                f"{seg.name} {entity_id} has not authorised the use of its data; nothing was "
                "read and no decision can be made",
            )
        if entity_id not in self.segments[name].entities.ranges:
            raise Refused(404, f"expected a known {seg.name} id; got {entity_id!r}")

    def _segment(self, name: str) -> SegmentState:
        if name not in self.segments:
            raise Refused(
                422,
                f"expected a segment this service serves ({', '.join(self.segments)}); "
                f"got {name!r}",
            )
        return self.segments[name]

    def validate_events(
        self, name: str, entity_id: str, as_of: dt.date, events: list[dict[str, Any]]
    ) -> pl.DataFrame:
        """The request's events as contract rows with ``entity_id``, or a 422 naming the rule.

        The table's dataframely schema (features/contract/schemas.py) is applied as
        ``longtail validate`` applies it, then the rules a request adds: the event belongs to
        the applicant, falls on or after its registration day and before ``as_of`` (a later
        one would be silently ignored by the features), and repeats no transaction id of its
        log. References to entities that withheld consent are blanked, as validation does.
        """
        state = self._segment(name)
        seg = state.segment
        table = TABLES[seg.txn_table]
        empty = pl.DataFrame(schema=table.schema).rename({seg.entity_id: "entity_id"})
        if not events:
            return empty
        columns = set().union(*(e.keys() for e in events))
        unknown = sorted(columns - set(table.columns))
        if unknown:
            raise Refused(
                422,
                f"expected events with the columns of {seg.txn_table} "
                f"({', '.join(table.columns)}); got unknown {unknown}",
            )
        rows = [{**{c: None for c in table.columns}, seg.entity_id: entity_id, **e} for e in events]
        try:
            raw = pl.DataFrame(rows, schema={c: pl.String for c in table.columns}, strict=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            raise Refused(422, f"expected events as flat JSON objects; got {exc}") from None
        parsed = raw.select(
            pl.col("ts").str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
        ).to_series()
        broken = (parsed.is_null() & raw["ts"].is_not_null()).to_numpy()
        raw = raw.with_columns(parsed)
        good, failure = SCHEMAS[seg.txn_table].filter(raw, cast=True)
        problems = [f"bad_value_ts (event {i + 1})" for i in np.flatnonzero(broken)]
        if len(failure):
            problems += [
                f"{rule_name(rule)} ({n} event(s))" for rule, n in failure.counts().items()
            ]
        if problems:
            raise Refused(
                422, f"expected valid {seg.txn_table} events; broken rules: " + "; ".join(problems)
            )
        good = good.select(list(table.columns)).rename({seg.entity_id: "entity_id"})
        owner = state.entities.slice(entity_id)[seg.since].item()
        known = state.events.slice(entity_id)["txn_id"]
        rules = {
            "other_entity": pl.col("entity_id") != entity_id,
            "before_onboarding": pl.col("ts").dt.date() < owner,
            "not_before_as_of": pl.col("ts").dt.date() >= as_of,
            "duplicate_id": pl.col("txn_id").is_in(known.implode()),
        }
        flags = good.select(**rules)
        hit = [f"{rule} ({flags[rule].sum()} event(s))" for rule in rules if flags[rule].any()]
        if hit:
            raise Refused(
                422, f"expected valid {seg.txn_table} events; broken rules: " + "; ".join(hit)
            )
        return self._blank(seg, good)

    def _blank(self, seg: Segment, events: pl.DataFrame) -> pl.DataFrame:
        """Blank references to entities that withheld consent (as ``longtail validate`` does)."""
        if seg.references is None:
            return events
        column = seg.references.column
        gone = set().union(
            *(self.withheld.get(t, frozenset()) for t in seg.references.entity_tables)
        )
        if not gone:
            return events
        return events.with_columns(
            pl.when(pl.col(column).is_in(list(gone)))
            .then(None)
            .otherwise(pl.col(column))
            .alias(column)
        )

    def inputs(self, name: str, requests: Sequence[Request]) -> Inputs:
        """The build's inputs for a batch of requests of one segment (distinct entities).

        Only the rows these entities' features read (see the module docstring); a loan owned
        by two of them or by a partner of both is given once.
        """
        state = self._segment(name)
        seg = state.segment
        own = [state.events.slice(r.entity_id) for r in requests]
        sent = [r.events for r in requests if r.events.height]
        order = own[0].schema
        sent = [e.select(pl.col(c).cast(t) for c, t in order.items()) for e in sent]
        events = pl.concat([*own, *sent]) if len(own) + len(sent) > 1 else own[0]
        ids = pl.Series("entity_id", [r.entity_id for r in requests], dtype=pl.String)
        entities = state.entities.frame[state.entities.rows(ids)]
        owners = ids
        partners = None
        if seg.references is not None and state.has_log:
            referenced = events[seg.references.column].drop_nulls()
            owners = pl.concat([ids, referenced.rename("entity_id")])
            if state.partners is not None:
                partners = state.partners.join(
                    pl.DataFrame({"partner_id": referenced.unique()}), on="partner_id", how="semi"
                )
        elif state.partners is not None:
            partners = state.partners.clear()
        loans = self.loans.frame[self.loans.rows(owners)]
        repayments = self.repayments.frame[self.repayments.rows(owners)].drop(OWNER)
        return Inputs(
            events=events.lazy(),
            entities=entities.lazy(),
            loans=loans.lazy(),
            repayments=repayments.lazy(),
            partners=None if partners is None else partners.lazy(),
            has_log=state.has_log,
        )

    def spine(
        self, requests: Sequence[Request], loans: Sequence[tuple[float, int]]
    ) -> pl.DataFrame:
        """The build's spine: one row per request, with the loan asked for as spine columns."""
        return pl.DataFrame(
            {
                "entity_id": [r.entity_id for r in requests],
                "as_of": [r.as_of for r in requests],
                "principal": [float(p) for p, _ in loans],
                "term_months": [int(t) for _, t in loans],
            },
            schema={
                "entity_id": pl.String,
                "as_of": pl.Date,
                "principal": pl.Float64,
                "term_months": pl.Int32,
            },
        )


def _withheld(raw_dir: Path) -> dict[str, frozenset[str]]:
    """The ids of each entity table that withheld consent (in any of their rows), from raw.

    Validation drops them with all their rows, so only the raw entity tables still say who
    they are; only their id and consent columns are kept.
    """
    if not raw_dir.exists():
        log.warning("no raw folder at %s: consent is taken from the validated tables", raw_dir)
        return {}
    mapping, _ = sources.load(raw_dir)
    withheld = {}
    for seg in SEGMENTS.values():
        if raw_tables.find(raw_dir, seg.entity_table, mapping) is None:
            continue  # a segment the lender did not bring
        table = raw_tables.read(raw_dir, seg.entity_table, mapping=mapping)
        if table is None:
            continue
        ids = table.data.filter(pl.col("consent").eq(False))[seg.entity_id].drop_nulls()
        withheld[seg.entity_table] = frozenset(ids.to_list())
    return withheld
