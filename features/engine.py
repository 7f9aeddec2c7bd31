"""The point-in-time feature engine.

Given a spine of ``(entity_id, as_of)`` rows (possibly many snapshots per entity), every feature
uses only events strictly before ``as_of``. The engine never joins events to snapshots:

1. The spine's entities get dense integer codes (sorted ids, so the codes are deterministic).
   Each segment reads its log once into a narrow frame (categoricals, numbers and 64-bit hashes
   of partner ids, no strings), keeps only the spine's entities and sorts it stably by entity
   and time. Every event carries one integer *key* ``code << DAY_BITS | day`` (days since
   1900-01-01), so the sorted log is ordered by (entity, day).
2. A :class:`Timeline` holds integer *measures* of the sorted events (counts, money in fen,
   fixed-point logs). A snapshot reads a measure's running sum at a boundary ``as_of - offset``
   found by an as-of join of the sorted boundaries against the sorted keys, and one gather; a
   window sum is a difference of two reads. Measures are evaluated by polars a few at a time
   and summed by numpy into one reused running-sum buffer, so at most one running sum is held
   at once.
3. Only the (measure, window) pairs that the catalog's expressions use are read.

Measures are integers, so running sums are exact: a window sum does not depend on the events
of other entities or on later events (no floating-point drift), which is what the point-in-time
property test checks bit for bit. The cost is one pass and one sort of the log, plus one
merge of the sorted boundaries per offset: many snapshots do not cost many times one.

Distinct counts over windows (distinct buyers in the last 90 days) stay linear too: see
:func:`partner_measures`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from features import catalog

ENTITY = "entity_id"
AS_OF = "as_of"
CODE = "__code"  # the entity's dense integer code within one build
KEY = "__key"  # code << DAY_BITS | days since ANCHOR_DAY: sorts by entity, then day
SECOND = "__second"  # an event's seconds since midnight (UTC)
# Columns the decision (limit) needs that are not model features.
POLICY_INPUTS: tuple[str, ...] = ("monthly_inflow", "monthly_free_cash_flow", "current_dpd")
# Money measures are integers in fen (1/100 yuan); names ending in ``_amt`` are fen.
FEN = 100
# Fixed-point scale of non-integer measures such as log amounts; names ending in ``_fx``.
FIXED = 10_000
ANCHOR_DAY = dt.date(1900, 1, 1)
DAY_BITS = 20  # 2**20 days (2,870 years) after 1900 fit below an entity's code
_SHIFT = 1 << DAY_BITS
_EPOCH = (dt.date(1970, 1, 1) - ANCHOR_DAY).days  # polars dates count days from 1970
_SECOND_BITS = 37  # 2**37 seconds (4,355 years) after 1900 fit below an entity's code
_SENTINEL_KEY = 1 << 62  # after every real key
_HASH_SEED = 20_240_611
# Month-like blocks of 30 days before as_of, for volatility, trend and active months.
BLOCK_DAYS = 30
BLOCKS = 12
EVER = -1  # the offset that reads the running sums before an entity's first day
_MEASURE_BATCH = 6  # measures evaluated per polars select when reading prefix sums


@dataclass(frozen=True)
class Inputs:
    """The validated tables one segment's features are computed from (all lazy).

    ``events`` are the segment's transactions renamed to ``entity_id``; ``entities`` the
    segment's entity table renamed likewise; ``loans`` and ``repayments`` the whole contract
    tables (both segments: connection features need the delinquency of counterparties).
    ``partners`` optionally maps counterparty ids to a category (``partner_id``, ``category``),
    e.g. merchants to their industry for a consumer's spending concentration.
    """

    events: pl.LazyFrame
    entities: pl.LazyFrame
    loans: pl.LazyFrame
    repayments: pl.LazyFrame
    partners: pl.LazyFrame | None = None


def fen(amount: pl.Expr) -> pl.Expr:
    """A yuan amount as integer fen (money has two decimals in the contract)."""
    return (amount * FEN).round(0).cast(pl.Int64)


def fixed(value: pl.Expr) -> pl.Expr:
    """A real value in fixed point (``FIXED`` units), so its running sums are exact."""
    return (value * FIXED).round(0).cast(pl.Int64)


def id_hash(column: str | pl.Expr) -> pl.Expr:
    """A 64-bit hash of an id column (null stays null), the same in every build and process.

    Partner ids are carried as hashes: integers group, sort and join several times faster
    than strings. A collision (odds ~1e-6 among 10M distinct ids) would merge two ids.
    """
    expr = pl.col(column) if isinstance(column, str) else column
    return pl.when(expr.is_not_null()).then(expr.hash(seed=_HASH_SEED))


def day_number(date: pl.Expr) -> pl.Expr:
    """Days from 1900-01-01 to a date, as Int64 (every real date is positive)."""
    return date.cast(pl.Date).to_physical().cast(pl.Int64) + _EPOCH


def key_of(code: pl.Expr, day: pl.Expr) -> pl.Expr:
    """The integer key of (entity code, day number)."""
    return code.cast(pl.Int64) * _SHIFT + day


def code_of(key: pl.Expr) -> pl.Expr:
    """The entity code of a key."""
    return key // _SHIFT


def day_of(key: pl.Expr) -> pl.Expr:
    """The day number of a key."""
    return key & (_SHIFT - 1)  # keys are never negative: the low bits, as ``key % _SHIFT``


def weekday_of(key: pl.Expr) -> pl.Expr:
    """The ISO weekday (Monday 1 ... Sunday 7) of a key's day (1900-01-01 was a Monday)."""
    return _mod(day_of(key), 7) + 1


def _mod(value: pl.Expr, divisor: int) -> pl.Expr:
    """``value % divisor`` for values that are never negative.

    polars' integer remainder by a scalar is several times slower than its floor division
    (about 30 ms against 6 ms per 10M rows), and the engine takes a few per event.
    """
    return value - value // divisor * divisor


@dataclass(frozen=True)
class Snapshots:
    """The unique ``(entity_id, as_of)`` rows of one build, with their entity codes."""

    frame: pl.DataFrame  # ENTITY, AS_OF, CODE

    @classmethod
    def of(cls, keys: pl.DataFrame, codes: pl.DataFrame) -> Snapshots:
        """Attach the entity codes to unique ``(entity_id, as_of)`` rows.

        Sorted by code and date, so the boundary keys are sorted: binary searches of sorted
        keys run several times faster.
        """
        return cls(keys.join(codes.select(ENTITY, CODE), on=ENTITY, how="left").sort(CODE, AS_OF))

    @property
    def height(self) -> int:
        """Number of snapshots."""
        return self.frame.height

    def boundary(self, offset: int) -> pl.Series:
        """Query keys: a read at key ``q`` sums every row with a key below ``q``.

        ``offset`` days before as_of (0: all days strictly before as_of), or ``EVER``: before
        the entity's first day.
        """
        if offset == EVER:
            expr = pl.col(CODE).cast(pl.Int64) * _SHIFT
        else:
            expr = key_of(pl.col(CODE), day_number(pl.col(AS_OF)) - offset)
        return self.frame.select(expr.alias(KEY)).to_series()

    def ids(self) -> pl.DataFrame:
        """``entity_id`` and ``as_of`` of every snapshot, in order."""
        return self.frame.select(ENTITY, AS_OF)


def entity_codes(entities: pl.Series) -> pl.DataFrame:
    """Dense codes ``0..n-1`` for the distinct entity ids, in sorted id order (deterministic).

    Also the 64-bit hash each id is matched by in the log; two spine ids with the same hash
    (odds ~1e-9 for a million ids) stop the build rather than merge two entities.
    """
    codes = (
        pl.DataFrame({ENTITY: entities})
        .unique()
        .sort(ENTITY)
        .with_row_index(CODE)
        .select(ENTITY, pl.col(CODE).cast(pl.Int64), id_hash(ENTITY).alias("__hash"))
    )
    if codes["__hash"].n_unique() != codes.height:
        raise ValueError("two entity ids share a 64-bit hash; rename one of them")
    return codes


def encode_events(
    narrow: pl.LazyFrame,
    codes: pl.DataFrame,
    *,
    derive: Mapping[str, pl.Expr] | None = None,
    engine: str = "auto",
) -> pl.DataFrame:
    """The log of the spine's entities, with keys, sorted by entity and time.

    ``narrow`` is the segment's projection of its log: ``entity_id``, ``ts`` and the columns
    its measures need, as compact numbers (categoricals, hashes, fen). Events of other entities
    are dropped. The stable sort by (entity, time) moves as few columns as possible; the result
    holds ``KEY``, ``SECOND`` (seconds since midnight UTC) and the narrow columns, plus the
    ``derive`` expressions evaluated after the sort (over those columns). Events with the same
    timestamp keep the log's order, so the result is deterministic.
    """
    seconds = pl.col("ts").dt.epoch("s") + _EPOCH * 86_400
    code = id_hash(ENTITY).replace_strict(codes["__hash"], codes[CODE], default=None)
    order = pl.col("__order")
    at = order & ((1 << _SECOND_BITS) - 1)  # ``order % 2**37``: order is never negative
    return (
        narrow.with_columns(code.alias(CODE))
        .filter(pl.col(CODE).is_not_null())
        .with_columns((pl.col(CODE) * (1 << _SECOND_BITS) + seconds).alias("__order"))
        .drop(ENTITY, "ts", CODE)
        .sort("__order", maintain_order=True)
        .with_columns(
            key_of(order // (1 << _SECOND_BITS), at // 86_400).alias(KEY),
            _mod(at, 86_400).cast(pl.Int32).alias(SECOND),
        )
        .drop("__order")
        .with_columns(**(derive or {}))
        .collect(engine=engine)
        # one contiguous chunk per column: measures then reach numpy without a copy
        .rechunk()
    )


# A measure that counts rows: its running sum is the row position itself, read without a pass.
ROWS: pl.Expr = pl.lit(1, pl.Int64).alias("__rows")


class Timeline:
    """Integer measures of rows sorted by key, read at any snapshot's boundaries.

    ``frame`` must be sorted by ``KEY`` (several rows may share a key); ``measures`` maps each
    measure name to an integer expression over the frame's columns. Nothing is precomputed:
    each read evaluates the measures it needs and sums them up to the boundaries it needs.
    """

    def __init__(self, frame: pl.DataFrame, measures: Mapping[str, pl.Expr]) -> None:
        self.frame = frame
        self.measures = dict(measures)
        self._positions: dict[tuple[int, int], pl.Series] = {}
        self._numbered: pl.DataFrame | None = None

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.frame.height

    def positions(self, snaps: Snapshots, offset: int) -> pl.Series:
        """For each snapshot, how many rows have a key below its boundary at ``offset``.

        The boundaries of one offset are ascending (snapshots are sorted by entity and date)
        like the keys, so one as-of join (a merge of two sorted columns) finds them all: the
        row number of the first key at or after each boundary. It is several times faster
        than a binary search per snapshot once there are many snapshots.
        """
        cache_key = (id(snaps), offset)
        if cache_key not in self._positions:
            if self._numbered is None:
                self._numbered = self.frame.select(KEY).with_row_index("__position")
            found = (
                snaps.boundary(offset)
                .to_frame(KEY)
                .join_asof(self._numbered, on=KEY, strategy="forward")
                .select(pl.col("__position").fill_null(self.height).cast(pl.Int64))
                .to_series()
            )
            self._positions[cache_key] = found
        return self._positions[cache_key]

    def read(
        self,
        snaps: Snapshots,
        *,
        prefixes: Mapping[str, Sequence[int]] | None = None,
        last_days: Mapping[str, pl.Expr] | None = None,
        levels: Mapping[str, pl.Expr] | None = None,
        first_day: bool = False,
    ) -> dict[str | tuple[str, int], pl.Series]:
        """Read the timeline at every snapshot's boundaries.

        - ``prefixes`` (measure -> offsets): ``(measure, offset)`` is the measure's sum over
          the rows below the boundary (see :meth:`Snapshots.boundary`), including every
          earlier entity's rows: differences of two reads of one entity cancel those.
        - ``last_days`` (name -> condition): the last day strictly before as_of with a row
          where the condition held (a date, null if none).
        - ``levels`` (name -> expression): the latest non-null value strictly before as_of.
        - ``first_day``: the day of the entity's first row, if it is before as_of.
        """
        prefixes, last_days, levels = prefixes or {}, last_days or {}, levels or {}
        out: dict[str | tuple[str, int], pl.Series] = {}
        out.update(self._prefixes(snaps, prefixes))
        exprs: list[pl.Expr] = []
        at0 = pl.lit(self.positions(snaps, 0)) if (last_days or levels) else None
        for name, condition in last_days.items():
            last = pl.when(condition).then(pl.col(KEY)).forward_fill()
            exprs.append(_before(last).gather(at0).implode().alias(f"__last:{name}"))
        for name, value in levels.items():
            known = pl.when(value.is_not_null()).then(pl.col(KEY)).forward_fill()
            exprs.append(_before(known).gather(at0).implode().alias(f"__level_key:{name}"))
            exprs.append(_before(value.forward_fill()).gather(at0).implode().alias(name))
        if first_day:
            first = pl.col(KEY).append(pl.lit(_SENTINEL_KEY, pl.Int64))
            exprs.append(
                first.gather(pl.lit(self.positions(snaps, EVER))).implode().alias("__first")
            )
        row = self.frame.lazy().select(exprs).collect() if exprs else pl.DataFrame()
        codes = snaps.frame[CODE]
        for name in last_days:
            key = row[f"__last:{name}"].explode()
            out[name] = _where(_owned(key, codes), _date_of(key))
        for name in levels:
            key = row[f"__level_key:{name}"].explode()
            out[name] = _where(_owned(key, codes), row[name].explode())
        if first_day:
            key = row["__first"].explode()
            has = self.positions(snaps, 0) > self.positions(snaps, EVER)
            out["first_day"] = _where(has, _date_of(key))
        return out

    def _prefixes(
        self, snaps: Snapshots, prefixes: Mapping[str, Sequence[int]]
    ) -> dict[tuple[str, int], pl.Series]:
        """Each measure's sum over the rows before each snapshot's boundary at each offset.

        See :meth:`prefix_reads`, which yields the same reads one measure at a time.
        """
        out: dict[tuple[str, int], pl.Series] = {}
        for m, reads in self.prefix_reads(snaps, prefixes):
            out.update(((m, o), read) for o, read in reads.items())
        return out

    def prefix_reads(
        self, snaps: Snapshots, prefixes: Mapping[str, Sequence[int]]
    ) -> Iterator[tuple[str, dict[int, pl.Series]]]:
        """Yield ``(measure, {offset: sum before each snapshot's boundary})``, measure by measure.

        One running sum over the rows per measure (``np.cumsum``, a sequential pass), read at
        the boundary positions of the offsets that measure needs: per snapshot and offset one
        read, and the positions of one offset are ascending (snapshots are sorted by entity and
        date), so the reads walk the running sum forward. Measures are evaluated by polars a
        few at a time, so at most a few are held at once; boolean measures (counts) stay one
        byte per row until they are summed. A caller that turns each measure's reads into its
        window sums before taking the next holds one measure's reads at a time (with many
        snapshots, all reads at once would be most of the job's memory).
        """
        offsets = sorted({o for name in prefixes for o in prefixes[name]})
        if not offsets:
            return
        positions = {o: self.positions(snaps, o).cast(pl.Int64).to_numpy() for o in offsets}
        names = [m for m in prefixes if self.measures[m] is not ROWS]
        for m in prefixes:
            if self.measures[m] is ROWS:
                yield m, {o: pl.Series(m, positions[o]) for o in prefixes[m]}
        if not names:
            return
        schema = self.frame.lazy().select(self.measures[m].alias(m) for m in names)
        flags = {m for m, dtype in schema.collect_schema().items() if dtype == pl.Boolean}
        summable = {
            m: self.measures[m].fill_null(False)
            if m in flags
            else self.measures[m].cast(pl.Int64).fill_null(0)
            for m in names
        }
        running = np.zeros(self.height + 1, dtype=np.int64)
        for batch in range(0, len(names), _MEASURE_BATCH):
            chosen = names[batch : batch + _MEASURE_BATCH]
            values = self.frame.select(summable[m].alias(m) for m in chosen)
            for m in chosen:
                np.cumsum(values[m].rechunk().to_numpy(), dtype=np.int64, out=running[1:])
                yield m, {o: pl.Series(m, running[positions[o]]) for o in prefixes[m]}
            del values


def _before(expr: pl.Expr) -> pl.Expr:
    """A per-row expression shifted one row down with a leading null: the value "before"."""
    return pl.lit(None, pl.Int64).append(expr.cast(pl.Int64))


def _owned(key: pl.Series, codes: pl.Series) -> pl.Series:
    """Whether each key read for a snapshot belongs to the snapshot's own entity."""
    return (key // _SHIFT == codes).fill_null(False)


def _where(mask: pl.Series, values: pl.Series) -> pl.Series:
    """``values`` where ``mask`` holds, null elsewhere."""
    frame = pl.DataFrame({"m": mask, "v": values})
    return frame.select(pl.when(pl.col("m")).then(pl.col("v"))).to_series()


def _date_of(key: pl.Series) -> pl.Series:
    days = (key % _SHIFT) - _EPOCH
    return days.cast(pl.Int32).cast(pl.Date)


def _scaled(column: str, values: pl.Series) -> pl.Series:
    if column.endswith("_amt"):
        return values / FEN
    if column.endswith("_fx"):
        return values / FIXED
    return values


def read_sums(
    timeline: Timeline,
    snaps: Snapshots,
    wanted: Iterable[str],
    *,
    windows: Sequence[int],
    blocks: int = BLOCKS,
    block_days: int = BLOCK_DAYS,
    spells: Mapping[str, tuple[str, str, int]] | None = None,
) -> dict[str, pl.Series]:
    """The timeline's window sums that ``wanted`` names (yuan for money, reals for ``_fx``).

    For each measure ``c``: ``{c}_{w}d`` is the sum over the ``w`` days before as_of,
    ``{c}_ever`` over all days before it, and ``{c}_b{k}`` over the k-th 30-day block before
    it (block 0 is ``[as_of - 30, as_of)``). Names the timeline does not hold are ignored, so
    the caller can pass every column the catalog's expressions read. ``spells`` (name ->
    (starts, ends, w)) adds spell counts: starts before as_of minus ends before ``as_of - w``
    (see :func:`partner_measures`). Everything is read in one pass over the timeline.
    """
    wanted = set(wanted)
    spells = dict(spells or {})
    spans: dict[str, tuple[str, int, int]] = {}  # output -> (measure, near, far)
    for c in timeline.measures:
        for w in windows:
            spans[f"{c}_{w}d"] = (c, 0, w)
        spans[f"{c}_ever"] = (c, 0, EVER)
        for k in range(blocks):
            spans[f"{c}_b{k}"] = (c, k * block_days, (k + 1) * block_days)
    spans = {name: span for name, span in spans.items() if name in wanted}
    offsets: dict[str, set[int]] = {}
    for c, near, far in spans.values():
        offsets.setdefault(c, set()).update((near, far))
    for starts, ends, w in spells.values():
        offsets.setdefault(starts, set()).add(0)
        offsets.setdefault(ends, set()).add(w)
    by_measure: dict[str, list[str]] = {}
    for name, (c, _, _) in spans.items():
        by_measure.setdefault(c, []).append(name)
    kept = {(starts, 0) for starts, _, _ in spells.values()}
    kept.update((ends, w) for _, ends, w in spells.values())
    out: dict[str, pl.Series] = {}
    spell_reads: dict[tuple[str, int], pl.Series] = {}
    # each measure's reads become its window sums before the next measure is read
    for c, reads in timeline.prefix_reads(snaps, {c: sorted(o) for c, o in offsets.items()}):
        for name in by_measure.get(c, ()):
            _, near, far = spans[name]
            out[name] = _scaled(c, reads[near] - reads[far])
        spell_reads.update(((c, o), read) for o, read in reads.items() if (c, o) in kept)
        del reads
    for name, (starts, ends, w) in spells.items():
        out[name] = spell_reads[(starts, 0)] - spell_reads[(ends, w)]
    return {name: out[name] for name in [*spans, *spells]}


def read_concurrently(*tasks: Callable[[], Mapping[str, pl.Series]]) -> dict[str, pl.Series]:
    """Run independent reading tasks at once and merge their columns in task order.

    A running sum, a sort or a segment sum uses one core; polars and numpy release the GIL in
    such kernels, so independent tasks (the main timeline, the partner timeline, ...) on a few
    threads keep every core busy. The merge order is fixed, so the result does not depend on
    which task finishes first.
    """
    workers = max(1, min(len(tasks), pl.thread_pool_size()))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(task) for task in tasks]
        columns: dict[str, pl.Series] = {}
        for future in futures:
            columns.update(future.result())
    return columns


def assemble(snaps: Snapshots, columns: Mapping[str, pl.Series]) -> pl.DataFrame:
    """One row per snapshot: ``entity_id``, ``as_of`` and the named columns."""
    return snaps.ids().with_columns(s.alias(n) for n, s in columns.items())


def partner_measures(
    events: pl.LazyFrame,
    partner: str,
    *,
    windows: Sequence[int],
    onset: pl.DataFrame | None = None,
    prefix: str = "partner",
) -> tuple[Timeline, Timeline | None]:
    """Measures about partners (a merchant's buyers, a consumer's counterparties), exact.

    ``events`` are in key order (see :func:`encode_events`; filter them lazily, only ``KEY``
    and ``partner`` are read) and ``partner`` is a column of partner id hashes (null: no
    identified partner). Each event with a partner carries:

    - ``{prefix}_new``: 1 on the pair's first event (running sum: distinct partners ever);
    - ``{prefix}_n``: 1 (events with an identified partner);
    - ``{prefix}_repeat``: 1 if the pair traded on an earlier day;
    - ``{prefix}_sq``: ``2k + 1`` with ``k`` the pair's earlier events: the increase of
      ``sum over partners of count^2`` (for the HHI);
    - ``{prefix}_s{w}`` / ``{prefix}_e{w}``: 1 on the first / last event of a *spell* of the
      pair: a run of trading days with gaps of at most ``w`` days. A partner traded with in
      ``[as_of - w, as_of)`` iff one of its spells started before as_of and ended no more than
      ``w`` days before it, so the distinct count is ``starts before as_of - ends before
      as_of - w``; both read only days before as_of, and every earlier entity's spells are
      closed, so they cancel.
    - with ``onset`` (``__hash``: partner hash, ``__onset``: the day number the partner was
      first seen 30+ days past due), ``{prefix}_risky``: 1 if the partner was already bad.

    The second timeline (with ``onset``) holds ``{prefix}_bad_new``: 1 for each pair whose
    partner turned bad, on ``max(first day, onset)``, the first day both were known.

    A stable sort of the key-ordered events by partner hash makes each (entity, partner) pair
    one contiguous run in time order; the per-event facts found there are scattered back to key
    order, where the measures are summed.
    """
    rows = events.select(KEY, partner).filter(pl.col(partner).is_not_null()).collect()
    order, tag = _pair_order(rows[partner])
    key = pl.col(KEY)
    day = day_of(key)
    tags = pl.col("__tag")
    same = (tags == tags.shift(1)) & (code_of(key) == code_of(key).shift(1))
    first = ~same.fill_null(False)
    run = pl.int_range(pl.len(), dtype=pl.Int64)
    # numpy gathers and scatters contiguous arrays several times faster than Series.gather
    keys = rows[KEY].rechunk().to_numpy()
    if onset is None:
        onset_day = np.full(len(order), _NEVER, dtype=np.int64)
    else:
        # Each partner's rows are one run in pair order: its onset is looked up once, by the
        # partner hash of the run's first row, and spread over the run.
        opens = np.empty(len(tag), dtype=bool)  # a run opens where the tag changes
        opens[:1] = True
        np.not_equal(tag[1:], tag[:-1], out=opens[1:])
        starts = np.flatnonzero(opens)
        hashes = rows[partner].rechunk().to_numpy()[order[starts]]
        onset_of_run = pl.Series(hashes).replace_strict(
            onset["__hash"], onset["__onset"], default=_NEVER, return_dtype=pl.Int64
        )
        counts = np.diff(starts, append=len(tag))
        onset_day = np.repeat(onset_of_run.fill_null(_NEVER).to_numpy(), counts)
    by_pair = pl.DataFrame({KEY: keys[order], "__tag": tag, "__onset": onset_day})
    by_pair = (
        by_pair.lazy()
        .with_columns(first.alias("__first"))
        .with_columns(pl.col("__first").shift(-1, fill_value=True).alias("__last"))
    )
    # The facts found in pair order travel back to key order packed in one integer (one
    # scatter instead of seven): the pair's earlier events k, the gaps in days to the pair's
    # previous and next trading day (capped: only comparisons with windows < _GAP_CAP matter),
    # and flags: first event of the pair, last event, traded on an earlier day, partner bad.
    gap_before = (day - day.shift(1)).clip(0, _GAP_CAP).fill_null(_GAP_CAP)
    gap_after = (day.shift(-1) - day).clip(0, _GAP_CAP).fill_null(_GAP_CAP)
    repeat = day > pl.when("__first").then(day).forward_fill()
    risky = pl.col("__onset") <= day
    k = (run - pl.when("__first").then(run).forward_fill()).clip(0, _K_CAP)
    packed = (
        k * (1 << 34)
        + gap_before * (1 << 19)
        + gap_after * (1 << 4)
        + pl.col("__first").cast(pl.Int64) * 8
        + pl.col("__last").cast(pl.Int64) * 4
        + repeat.cast(pl.Int64) * 2
        + risky.cast(pl.Int64)
    )
    by_pair = by_pair.with_columns(packed.alias("__packed")).collect()
    back_packed = np.empty(rows.height, dtype=np.int64)
    back_packed[order] = by_pair["__packed"].rechunk().to_numpy()
    back = pl.DataFrame({KEY: keys, "__packed": back_packed})
    bits = pl.col("__packed")
    facts = {
        "first": (bits & 8) != 0,
        "last": (bits & 4) != 0,
        "repeat": (bits & 2) != 0,
        "risky": (bits & 1) != 0,
        "gap_before": (bits // (1 << 19)) & ((1 << 15) - 1),
        "gap_after": (bits // (1 << 4)) & ((1 << 15) - 1),
        "k": bits // (1 << 34),
    }
    measures: dict[str, pl.Expr] = {
        f"{prefix}_new": facts["first"],
        f"{prefix}_n": ROWS,
        f"{prefix}_repeat": facts["repeat"],
        f"{prefix}_sq": 2 * facts["k"] + 1,
    }
    for w in windows:
        if not 0 < w < _GAP_CAP:
            raise ValueError(f"expected partner windows between 1 and {_GAP_CAP - 1}; got {w}")
        measures[f"{prefix}_s{w}"] = facts["first"] | (facts["gap_before"] > w)
        measures[f"{prefix}_e{w}"] = facts["last"] | (facts["gap_after"] > w)
    if onset is not None:
        measures[f"{prefix}_risky"] = facts["risky"]
    main = Timeline(back, measures)
    if onset is None:
        return main, None
    # Each measure value is 1, so the timeline is just its sorted keys and the measure ROWS.
    turned = (
        by_pair.filter(pl.col("__first") & (pl.col("__onset") < _NEVER))
        .select(key_of(code_of(key), pl.max_horizontal(day, pl.col("__onset"))).alias(KEY))
        .to_series()
        .sort()
    )
    return main, Timeline(turned.to_frame(), {f"{prefix}_bad_new": ROWS})


_GAP_CAP = (1 << 15) - 1
_K_CAP = (1 << 29) - 1
_NEVER = 1 << 40  # the onset day of a partner never seen past due: after every real day
_TAG_TRIES = 4  # hashes tried for a collision-free partner tag before the general sort


def _pair_order(partners: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The stable sort of rows by partner hash, as ``(order, tag)`` numpy arrays.

    ``order`` lists the rows partner by partner, each partner's rows in their original (key)
    order; ``tag`` is, in that order, a number that is equal for two rows iff they have the
    same partner. Which partner comes first does not matter to any measure, only that each
    partner's rows are contiguous and in key order.

    A stable arg sort of 64-bit hashes is several times slower than sorting plain integers, so
    each row gets one unique integer ``tag << b | row`` (``b`` bits for the row number) and the
    integers are sorted: the sort is then stable by construction and the row numbers read off
    the low bits are ``order``. The tag is the partner hash cut to its top ``64 - b`` bits,
    which must not merge two of the partners present: that is checked on the distinct
    partners, and on a clash a few re-hashes are tried before falling back to the stable arg
    sort of the full hashes (same result, slower).
    """
    n = partners.len()
    bits = max(1, (n - 1).bit_length())
    frame = partners.cast(pl.UInt64).rechunk().to_frame("p")
    distinct = frame.select(pl.col("p").unique())
    low = pl.lit(1 << bits, pl.UInt64)
    for attempt in range(_TAG_TRIES if bits < 48 else 0):
        hashed = pl.col("p") if attempt == 0 else pl.col("p").hash(seed=_HASH_SEED + attempt)
        tag = hashed // low
        if distinct.select(tag.n_unique()).item() == distinct.height:
            values = frame.select(tag * low + pl.int_range(pl.len(), dtype=pl.UInt64))
            values = values.to_series().sort().to_numpy()
            # row numbers are below 2**63: the masked values read as int64 without a copy
            order = (values & np.uint64((1 << bits) - 1)).view(np.int64)
            return order, values >> np.uint64(bits)
    order = frame.select(pl.arg_sort_by("p", maintain_order=True)).to_series().to_numpy()
    order = order.astype(np.int64)
    return order, frame["p"].to_numpy()[order]


def read_partners(
    main: Timeline,
    bad: Timeline | None,
    snaps: Snapshots,
    wanted: Iterable[str],
    *,
    prefix: str,
    windows: Sequence[int],
    partner_windows: Sequence[int],
) -> dict[str, pl.Series]:
    """Window sums of a partner timeline, and the distinct partners in each window.

    ``{prefix}_d{w}_ever`` is the number of distinct partners in the ``w`` days before as_of
    (named like a sum for the catalog's expressions).
    """
    wanted = set(wanted)
    spells = {
        f"{prefix}_d{w}_ever": (f"{prefix}_s{w}", f"{prefix}_e{w}", w)
        for w in partner_windows
        if f"{prefix}_d{w}_ever" in wanted
    }
    out = read_sums(main, snaps, wanted, windows=windows, blocks=0, spells=spells)
    if bad is not None:
        out.update(read_sums(bad, snaps, wanted, windows=windows, blocks=0))
    return out


_FEW_VALUES = 64  # up to this many distinct values, read_mix counts each value on its own


def read_mix(
    events: pl.LazyFrame,
    column: str,
    snaps: Snapshots,
    wanted: Iterable[str],
    *,
    prefix: str,
    windows: Sequence[int],
) -> dict[str, pl.Series]:
    """How the events before as_of spread over the values of ``column`` (e.g. categories).

    ``{prefix}_new_ever``: distinct values; ``{prefix}_n_ever``: events with a value;
    ``{prefix}_sq_ever``: the sum over values of their event count squared (for the HHI), the
    same numbers as :func:`partner_measures` gives for ``column`` as the partner. ``events``
    are in key order with ``KEY`` and ``column`` (null: no value).

    A column with few distinct values (at most ``_FEW_VALUES``, like industries) needs no
    sort: each value's count before as_of is the running sum of one 0/1 measure, and the
    three numbers follow from the counts. Otherwise the partner measures are read.
    """
    names = [f"{prefix}_{m}_ever" for m in ("new", "n", "sq")]
    rows = events.select(KEY, column).filter(pl.col(column).is_not_null()).collect()
    values = rows[column].unique().sort()
    if values.len() > _FEW_VALUES:
        main, _ = partner_measures(rows.lazy(), column, windows=(), prefix=prefix)
        return read_partners(
            main, None, snaps, wanted, prefix=prefix, windows=windows, partner_windows=()
        )
    measures = {f"__v{i}": pl.col(column) == v for i, v in enumerate(values)}
    timeline = Timeline(rows.rechunk(), measures)
    reads = timeline.read(snaps, prefixes={m: (0, EVER) for m in measures})
    counts = [(reads[(m, 0)] - reads[(m, EVER)]).to_numpy() for m in measures]
    zero = np.zeros(snaps.height, dtype=np.int64)
    mix = {
        names[0]: sum(((c > 0).astype(np.int64) for c in counts), zero),
        names[1]: sum(counts, zero),
        names[2]: sum((c * c for c in counts), zero),
    }
    wanted = set(wanted)
    return {name: pl.Series(name, mix[name]) for name in names if name in wanted}


def delinquency_onset(loans: pl.LazyFrame, repayments: pl.LazyFrame, dpd: int = 30) -> pl.DataFrame:
    """The first day each borrower (any segment) was ``dpd``+ days past due.

    Returns ``__hash`` (the borrower id's :func:`id_hash`) and ``__onset`` (a day number).

    An instalment reaches ``dpd`` days past due on ``due_on + dpd`` unless it was paid before;
    whether that happened before a given as_of is known at that as_of, so reading
    ``onset < as_of`` is point-in-time correct.
    """
    late = pl.col("paid_on").is_null() | (
        (pl.col("paid_on") - pl.col("due_on")).dt.total_days() >= dpd
    )
    return (
        repayments.filter(late)
        .join(loans.select("loan_id", "entity_id"), on="loan_id")
        .group_by("entity_id")
        .agg((day_number(pl.col("due_on").min()) + dpd).alias("__onset"))
        .select(id_hash("entity_id").alias("__hash"), "__onset")
        .collect()
    )


def needed_columns(segment: str, extra: Sequence[pl.Expr] = ()) -> set[str]:
    """Every input column the segment's catalog expressions (and ``extra``) read."""
    names: set[str] = set()
    for expr in [*catalog.expressions(segment), *extra]:
        names.update(expr.meta.root_names())
    return names


def build(
    segment: str,
    spine: pl.DataFrame,
    inputs: Inputs,
    *,
    windows: Sequence[int],
    chunks: int = 1,
    streaming: bool = False,
) -> pl.DataFrame:
    """Compute the segment's catalog features and policy inputs for every spine row.

    ``spine`` must hold ``entity_id`` (str) and ``as_of`` (date); other columns are carried
    through unchanged and the row order is kept. Only events strictly before each row's
    ``as_of`` are used. ``chunks > 1`` computes entities in that many hash buckets, one after
    the other (each bucket keeps only its own entities' events), to bound memory on logs
    larger than RAM; the result is identical. ``streaming`` reads the log with polars'
    streaming engine.
    """
    missing = {ENTITY, AS_OF} - set(spine.columns)
    if missing:
        raise ValueError(f"expected spine columns entity_id and as_of; missing {sorted(missing)}")
    if segment == "merchant":
        from features import merchant as definitions
    elif segment == "consumer":
        from features import consumer as definitions
    else:
        raise ValueError(f"expected segment 'merchant' or 'consumer'; got {segment!r}")
    if chunks < 1:
        raise ValueError(f"expected chunks >= 1; got {chunks}")

    row = "__row"
    numbered = spine.with_row_index(row)
    engine = "streaming" if streaming else "auto"
    parts = []
    for chunk in range(chunks):
        part = (
            numbered
            if chunks == 1
            else numbered.filter(pl.col(ENTITY).hash(seed=0) % chunks == chunk)
        )
        codes = entity_codes(part[ENTITY])
        keys = part.select(ENTITY, AS_OF).unique(maintain_order=True)
        snaps = Snapshots.of(keys, codes)
        events = encode_events(
            definitions.narrow(inputs.events), codes, derive=definitions.DERIVED, engine=engine
        )
        aggregates = definitions.aggregates(snaps, events, inputs, windows=windows)
        del events
        expressions = [*catalog.expressions(segment), *definitions.policy_inputs()]
        outputs = [*catalog.names(segment), *POLICY_INPUTS]
        columns = set(aggregates.collect_schema().names())
        roots = {r for expr in expressions for r in expr.meta.root_names()}
        if roots <= columns and not (set(spine.columns) - {ENTITY, AS_OF}) & columns:
            # The expressions read only the per-snapshot aggregates: evaluate them once per
            # snapshot and join just the outputs to the spine (the aggregates hold several
            # times more columns, which the join would otherwise copy for every spine row).
            values = aggregates.with_columns(*expressions).select(ENTITY, AS_OF, *outputs)
            frame = part.lazy().join(values, on=[ENTITY, AS_OF], how="left", maintain_order="left")
        else:
            frame = (
                part.lazy()
                .join(aggregates, on=[ENTITY, AS_OF], how="left")
                .with_columns(*expressions)
            )
        parts.append(frame.select(row, *spine.columns, *outputs).collect())
    if chunks == 1 and parts[0][row].is_sorted():  # the spine's order already
        return parts[0].drop(row)
    return pl.concat(parts).sort(row).drop(row)
