"""The point-in-time feature engine: the timeline of integer measures and its reads.

Given a spine of ``(entity_id, as_of)`` rows (possibly many snapshots per entity), every feature
uses only events strictly before ``as_of``. The engine never joins events to snapshots:

1. The spine's entities get dense integer codes (sorted ids, so the codes are deterministic).
   Each segment reads its log once into a narrow frame (categoricals, numbers and 64-bit hashes
   of partner ids, no strings), keeps only the spine's entities and sorts it stably by entity
   and time. Every event carries one integer *key* ``code << DAY_BITS | day`` (days since
   1900-01-01), so the sorted log is ordered by (entity, day): see :mod:`features.keys`.
2. A :class:`Timeline` holds integer *measures* of the sorted events (counts, money in fen,
   fixed-point logs). A snapshot reads a measure's running sum at a boundary ``as_of - offset``
   found by an as-of join of the sorted boundaries against the sorted keys, and one gather; a
   window sum is a difference of two reads. Measures are evaluated by polars a few at a time
   and summed by numpy into one reused running-sum buffer, so at most one running sum is held
   at once.
3. Only the (measure, window) pairs that the catalog's expressions use are read
   (:func:`features.build.build` is told the catalog by its segment's definitions).

Measures are integers, so running sums are exact: a window sum does not depend on the events
of other entities or on later events (no floating-point drift), which is what the point-in-time
property test checks bit for bit. The cost is one pass and one sort of the log, plus one
merge of the sorted boundaries per offset: many snapshots do not cost many times one.

Distinct counts over windows (distinct buyers in the last 90 days) stay linear too: see
:func:`features.partners.partner_measures`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from features.keys import (
    CODE,
    EPOCH,
    EVER,
    FEN,
    FIXED,
    KEY,
    SENTINEL_KEY,
    SHIFT,
    Snapshots,
)

# Month-like blocks of 30 days before as_of, for volatility, trend and active months.
BLOCK_DAYS = 30
BLOCKS = 12
_MEASURE_BATCH = 6  # measures evaluated per polars select when reading prefix sums


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
            first = pl.col(KEY).append(pl.lit(SENTINEL_KEY, pl.Int64))
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
    return (key // SHIFT == codes).fill_null(False)


def _where(mask: pl.Series, values: pl.Series) -> pl.Series:
    """``values`` where ``mask`` holds, null elsewhere."""
    frame = pl.DataFrame({"m": mask, "v": values})
    return frame.select(pl.when(pl.col("m")).then(pl.col("v"))).to_series()


def _date_of(key: pl.Series) -> pl.Series:
    days = (key % SHIFT) - EPOCH
    return days.cast(pl.Int32).cast(pl.Date)


def _scaled(column: str, values: pl.Series) -> pl.Series:
    if column.endswith("_amt"):
        return values / FEN
    if column.endswith("_fx"):
        return values / FIXED
    return values


def windows_of(names: Iterable[str]) -> list[int]:
    """The windows ``w`` of the window sums ``{c}_{w}d`` among ``names``, ascending.

    A segment reads exactly the windows its catalog's expressions use, whatever the windows
    of its windowed families are.
    """
    found = {_WINDOW_SUM.search(name) for name in names}
    return sorted({int(m.group(1)) for m in found if m is not None})


_WINDOW_SUM = re.compile(r"_(\d+)d$")


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
    """The timeline's window sums that ``wanted`` names (currency units for money, reals for fx).

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
