"""Windowed order statistics of daily series: min, max, quantiles and days below a level.

Prefix sums (:mod:`features.timeline`) give windowed sums; a bank statement's best predictors
of default are order statistics instead: the lowest closing balance over the last 90 days,
the days spent below zero. This module reads them for every snapshot and window, exactly and
without a loop over snapshots or rows.

A :class:`DailySeries` is a set of points ``(key, value)`` sorted by key, at most one per
entity-day (``key = code << DAY_BITS | day``, :mod:`features.keys`), in integer units (fen):

- a *step* series holds each value from its day until the entity's next point: the closing
  balance, carried forward over days without events, as a statement shows it each day;
- a *point* series holds each value on its own day only (the day's largest outflow).

A window of ``w`` days before as_of covers days ``[as_of - w, as_of)``
(as_of is exclusive). Its points are a contiguous range of the sorted points, found by the same
as-of join :meth:`features.timeline.Timeline.positions` does; a step series adds the point
*carried in*: the entity's last point before the window, in force on the window's first day
unless a point falls on that day. Days before the entity's first point are not in the series,
so a window without any point in force reads null.

- min and max: a sparse table (range-min/max in O(1) per query). Only the levels the longest
  range needs are built, one level at a time, each answering the queries of its length class:
  O(n log L) time for ranges of at most L points and two arrays of n values of memory.
- the minimum of a point series whose days without a point read 0 (the daily net flow): the
  window's minimum, capped at 0 when the window covers more days than it holds points.
- days below a level: a prefix sum of the days each point is in force, with the two points at
  the window's edges clipped: O(1) per query.
- weighted quantiles: each point weighs the days it is in force inside the window. The series
  is sorted once by (entity, value); a snapshot gathers its entity's points in that order,
  keeps those inside its widest window and reads every window's quantiles at the running
  weight: exact, no sort per snapshot, time linear in the entity points gathered (the
  entity's whole history per snapshot) and memory bounded by gathering a chunk of snapshots
  at a time (:data:`QUANTILE_CHUNK`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

import numpy as np
import polars as pl

from features.keys import AS_OF, CODE, DAY_BITS, EVER, KEY, SHIFT, Snapshots, day_number
from features.timeline import Timeline


@dataclass(frozen=True)
class DailySeries:
    """Points sorted by key (distinct keys), their integer values, and whether values carry."""

    key: np.ndarray  # int64, strictly increasing
    value: np.ndarray  # int64
    step: bool  # True: a value holds until the entity's next point

    def __post_init__(self) -> None:
        """Reject keys that are not strictly increasing (one point per entity-day)."""
        if self.key.shape != self.value.shape:
            raise ValueError(f"expected one value per key; got {self.key.size} keys")
        if self.key.size > 1 and not (np.diff(self.key) > 0).all():
            raise ValueError("expected strictly increasing keys (one point per entity-day)")

    @property
    def size(self) -> int:
        """Number of points."""
        return int(self.key.size)


def day_groups(key: np.ndarray) -> np.ndarray:
    """The first row of each run of equal keys in a sorted key array (one run per entity-day)."""
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1))


def daily(
    key: np.ndarray, values: np.ndarray, reduce: np.ufunc, starts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per entity-day, ``reduce`` (``np.add``, ``np.maximum``) of ``values``: ``(day keys, x)``.

    Rows are sorted by key; ``starts``: :func:`day_groups` of ``key`` when the caller already
    has them.
    """
    starts = day_groups(key) if starts is None else starts
    if starts.size == 0:
        return key[:0], values[:0]
    return key[starts], reduce.reduceat(values, starts)


@dataclass(frozen=True)
class Ranges:
    """For every snapshot, the points in force in one window: ``[start, end)`` of the series.

    ``first`` is the window's first day and ``stop`` its as_of (day numbers, exclusive end).
    """

    start: np.ndarray
    end: np.ndarray
    first: np.ndarray
    stop: np.ndarray

    @property
    def empty(self) -> np.ndarray:
        """Windows without any point in force (their statistics are null)."""
        return self.start >= self.end


def ranges(series: DailySeries, snaps: Snapshots, window: int, timeline: Timeline) -> Ranges:
    """The range of points in force in the ``window`` days before each snapshot's as_of.

    ``timeline`` is a :class:`Timeline` over the series' keys (its as-of join positions are
    cached per offset, so several statistics of one series share them).
    """
    lo = timeline.positions(snaps, window).to_numpy().astype(np.int64)
    hi = timeline.positions(snaps, 0).to_numpy().astype(np.int64)
    stop = snaps.frame.select(day_number(pl.col(AS_OF))).to_series().to_numpy()
    first = stop - window
    start = lo
    if series.step:
        ever = timeline.positions(snaps, EVER).to_numpy().astype(np.int64)
        # the last point before the window is carried in unless a point opens the window
        opens = np.zeros(lo.size, dtype=bool)
        inside = lo < hi
        opens[inside] = (series.key[lo[inside]] & (SHIFT - 1)) == first[inside]
        start = lo - ((lo > ever) & ~opens)
    return Ranges(start=start, end=hi, first=first, stop=stop)


def _series_timeline(series: DailySeries) -> Timeline:
    return Timeline(pl.DataFrame({KEY: series.key}), {})


def range_min_max(
    values: np.ndarray, r: Ranges, *, low: bool = True, high: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The min and max of ``values[start:end]`` of every non-empty range (0 for empty ones).

    A sparse table built one level at a time: level k holds the min (max) of the 2**k values
    from each position; a range of length n with 2**k <= n < 2**(k+1) is the min of two
    overlapping level-k reads. Only levels up to the longest range are built, and only the
    side asked for (``low``: minima, ``high``: maxima; the other reads 0).
    """
    lengths = r.end - r.start
    lo_out = np.zeros(lengths.size, dtype=np.int64)
    hi_out = np.zeros(lengths.size, dtype=np.int64)
    live = lengths > 0
    if not live.any():
        return lo_out, hi_out
    level = np.zeros(lengths.size, dtype=np.int64)
    level[live] = np.floor(np.log2(lengths[live])).astype(np.int64)
    # guard against floating-point log2 at exact powers of two
    level[live] -= (1 << level[live]) > lengths[live]
    level[live] += (1 << (level[live] + 1)) <= lengths[live]
    least = values.astype(np.int64) if low else None
    most = values.astype(np.int64) if high else None
    # the live ranges grouped by level once (a stable counting order), not a mask per level
    ranked = np.flatnonzero(live)
    ranked = ranked[np.argsort(level[ranked], kind="stable")]
    bounds = np.searchsorted(level[ranked], np.arange(int(level[live].max()) + 2))
    for k in range(bounds.size - 1):
        if k:
            half = 1 << (k - 1)
            if least is not None:
                least = np.minimum(least[:-half], least[half:])
            if most is not None:
                most = np.maximum(most[:-half], most[half:])
        chosen = ranked[bounds[k] : bounds[k + 1]]
        if chosen.size:
            a, b = r.start[chosen], r.end[chosen] - (1 << k)
            if least is not None:
                lo_out[chosen] = np.minimum(least[a], least[b])
            if most is not None:
                hi_out[chosen] = np.maximum(most[a], most[b])
    return lo_out, hi_out


def days_running(series: DailySeries, mask: np.ndarray) -> np.ndarray:
    """Prefix sum of the days each ``mask`` point is in force up to the next point.

    One pass per series and level, shared by every window's :func:`days_where`.
    """
    if not series.step:
        return np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    day = series.key & (SHIFT - 1)
    span = np.zeros(series.size, dtype=np.int64)
    if series.size > 1:
        span[:-1] = day[1:] - day[:-1]  # across entities too: never read for a range's last point
    return np.concatenate(([0], np.cumsum(np.where(mask, span, 0))))


def days_where(
    series: DailySeries, mask: np.ndarray, r: Ranges, running: np.ndarray | None = None
) -> np.ndarray:
    """Days inside each window on which a point with ``mask`` was in force (0 when empty).

    A prefix sum of each point's days in force up to the next point (:func:`days_running`,
    computed here unless given); the first point of a range starts at the window's first day
    at the earliest, and the last runs to as_of.
    """
    if running is None:
        running = days_running(series, mask)
    out = np.zeros(r.start.size, dtype=np.int64)
    live = np.flatnonzero(~r.empty)
    if live.size == 0:
        return out
    s, e = r.start[live], r.end[live]
    inner = running[e - 1] - running[s]  # every point of the range but the last
    if series.step:
        day_s, day_e = series.key[s] & (SHIFT - 1), series.key[e - 1] & (SHIFT - 1)
        # the first point counts only from the window's first day
        inner -= np.where((e - 1 > s) & mask[s], np.maximum(r.first[live] - day_s, 0), 0)
        last_days = r.stop[live] - np.maximum(day_e, r.first[live])
        inner += np.where(mask[e - 1], last_days, 0)
    else:
        inner += mask[e - 1]
    out[live] = inner
    return out


def entity_value_order(series: DailySeries) -> np.ndarray:
    """Positions of the points sorted by (entity, value): one sort per series.

    Entities are contiguous blocks of the series (keys start with the entity's code), so an
    entity's points occupy the same block of positions in this order as in the series, each
    block ordered by value (ties in any order: equal values read the same).
    """
    code = series.key >> DAY_BITS
    if series.size == 0:
        return np.zeros(0, dtype=np.int64)
    spread = int(series.value.max()) - int(series.value.min())
    if spread.bit_length() + int(code[-1]).bit_length() <= 62:
        # one int64 key (entity, value) when both fit: a single-column sort, several times faster
        return np.argsort((code << spread.bit_length()) | (series.value - series.value.min()))
    frame = pl.DataFrame({"c": code, "v": series.value})
    return frame.select(pl.arg_sort_by("c", "v")).to_series().to_numpy().astype(np.int64)


# Points gathered at once by :func:`range_quantiles`: bounds its memory (about 80 bytes a point)
# whatever the number of snapshots.
QUANTILE_CHUNK = 4_000_000


def range_quantiles(
    series: DailySeries,
    spans: Mapping[int, Ranges],
    quantiles: Mapping[int, Sequence[Fraction]],
    order: np.ndarray,
    blocks: tuple[np.ndarray, np.ndarray],
) -> dict[tuple[int, Fraction], np.ndarray]:
    """Lower weighted quantiles of each snapshot's range in each window (0 for empty ranges).

    Each point weighs the days it is in force inside the window; the q-quantile is the
    smallest value whose cumulative weight reaches q of the window's days in the series (a
    balance the statement showed, never an interpolation).

    No sort per snapshot: ``order`` (:func:`entity_value_order`) already lists each entity's
    points by value, so a snapshot gathers its entity's block ``blocks = (first, end)`` in that
    order and keeps the points inside its widest window (the windows of one snapshot are nested
    and end together at as_of). Each window then weighs the kept points (0 outside it) and reads
    its quantiles by a binary search of the running weight: linear in the points gathered.
    Snapshots are taken in chunks of about ``QUANTILE_CHUNK`` gathered points, so memory stays
    bounded however many snapshots there are.
    """
    windows = [w for w in quantiles if quantiles[w]]
    out = {(w, q): np.zeros(blocks[0].size, dtype=np.int64) for w in windows for q in quantiles[w]}
    if not windows:
        return out
    lo = np.minimum.reduce([spans[w].start for w in windows])
    hi = spans[windows[0]].end  # every window ends at as_of
    block_lo, block_hi = blocks
    sizes = np.where(hi > lo, block_hi - block_lo, 0)
    cut = np.concatenate(([0], np.cumsum(sizes)))
    edges = [0]
    while edges[-1] < sizes.size:
        # the next chunk: as many snapshots as fit, at least one
        nxt = int(np.searchsorted(cut, cut[edges[-1]] + QUANTILE_CHUNK, side="right")) - 1
        edges.append(min(max(nxt, edges[-1] + 1), sizes.size))
    for a, b in pairwise(edges):
        if cut[b] == cut[a]:
            continue
        _chunk_quantiles(series, spans, quantiles, order, block_lo, sizes, lo, hi, a, b, out)
    return out


def _chunk_quantiles(
    series: DailySeries,
    spans: Mapping[int, Ranges],
    quantiles: Mapping[int, Sequence[Fraction]],
    order: np.ndarray,
    block_lo: np.ndarray,
    sizes: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    a: int,
    b: int,
    out: dict[tuple[int, Fraction], np.ndarray],
) -> None:
    """:func:`range_quantiles` for the snapshots ``a .. b - 1``, written into ``out``."""
    size = sizes[a:b]
    local = np.repeat(np.arange(b - a, dtype=np.int64), size)
    offsets = np.concatenate(([0], np.cumsum(size)[:-1]))
    at = np.arange(local.size, dtype=np.int64) - offsets[local] + block_lo[a:b][local]
    idx = order[at]
    del at
    keep = (idx >= lo[a:b][local]) & (idx < hi[a:b][local])
    idx, local = idx[keep], local[keep]
    del keep
    counts = np.bincount(local, minlength=b - a)
    ends = np.cumsum(counts)  # one past each snapshot's last kept point
    starts = ends - counts
    values = series.value[idx]
    stop = spans[next(iter(quantiles))].stop[a:b][local]  # every window ends at as_of
    # the day each kept point ends (exclusive): the next point's day, as_of for the range's last
    if series.step:
        until = np.where(
            idx == hi[a:b][local] - 1,
            stop,
            series.key[np.minimum(idx + 1, series.size - 1)] & (SHIFT - 1),
        )
        day = series.key[idx] & (SHIFT - 1)
    for w, qs in quantiles.items():
        if not qs:
            continue
        r = spans[w]
        inside = idx >= r.start[a:b][local]
        if series.step:
            # days in force inside the window: from the window's first day at the earliest
            weight = until - np.maximum(day, r.first[a:b][local])
        else:
            weight = np.ones(idx.size, dtype=np.int64)
        cumulative = np.cumsum(np.where(inside, weight, 0))
        del weight, inside
        live = np.flatnonzero(~r.empty[a:b] & (counts > 0))
        before = np.where(starts[live] > 0, cumulative[np.maximum(starts[live] - 1, 0)], 0)
        window_days = cumulative[ends[live] - 1] - before
        for q in qs:
            num, den = q.numerator, q.denominator
            target = before + np.maximum((num * window_days + den - 1) // den, 1)  # ceil, >= 1
            found = np.searchsorted(cumulative, target, side="left")
            out[(w, q)][a + live] = values[found]


@dataclass(frozen=True)
class Request:
    """What to read of one series: per window, which statistics (and their output names).

    ``stats`` maps an output column to ``(window, statistic)``: ``min``, ``max``, ``min0``
    (of a point series: the minimum where every day without a point reads 0, see
    :func:`floor_with_quiet_days`), a quantile
    as a :class:`Fraction`, or ``("below", level)`` for days in force below ``level``.
    """

    series: DailySeries
    stats: Mapping[str, tuple[int, object]]
    scale: float = 1.0  # divide values by this (fen -> currency)


def read(snaps: Snapshots, request: Request) -> dict[str, pl.Series]:
    """Read a series' windowed statistics for every snapshot, in the request's column order.

    Every statistic of a window without a point in force is null (days below a level too: a
    consumer that never reported a balance has no known days below zero).
    """
    series = request.series
    timeline = _series_timeline(series)
    by_window: dict[int, dict[str, object]] = {}
    for name, (window, stat) in request.stats.items():
        by_window.setdefault(window, {})[name] = stat
    spans = {w: ranges(series, snaps, w, timeline) for w in by_window}
    # min and max of every window in one pass of the sparse table's levels
    kinds = {w: set(map(str, stats.values())) for w, stats in by_window.items()}
    ordered = [w for w, k in kinds.items() if {"min", "max", "min0"} & k]
    minmax: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if ordered:
        both = Ranges(*(np.concatenate([getattr(spans[w], f) for w in ordered]) for f in _FIELDS))
        wanted = set().union(*(kinds[w] for w in ordered))
        low, high = range_min_max(
            series.value, both, low=bool({"min", "min0"} & wanted), high="max" in wanted
        )
        for i, w in enumerate(ordered):
            part = slice(i * snaps.height, (i + 1) * snaps.height)
            minmax[w] = (low[part], high[part])
    wanted_quantiles = {
        w: sorted({s for s in stats.values() if isinstance(s, Fraction)})
        for w, stats in by_window.items()
    }
    quantile: dict[tuple[int, Fraction], np.ndarray] = {}
    if any(wanted_quantiles.values()):
        ever = timeline.positions(snaps, EVER).to_numpy().astype(np.int64)
        codes = snaps.frame[CODE].to_numpy().astype(np.int64)
        block_end = np.searchsorted(series.key, (codes + 1) * SHIFT, side="left")
        quantile = range_quantiles(
            series, spans, wanted_quantiles, entity_value_order(series), (ever, block_end)
        )
    running: dict[int, np.ndarray] = {}  # days below each level, a prefix sum per level
    out: dict[str, pl.Series] = {}
    for window, stats in by_window.items():
        r = spans[window]
        for name, stat in stats.items():
            if isinstance(stat, tuple):
                level = stat[1]
                if level not in running:
                    running[level] = days_running(series, series.value < level)
                values = days_where(series, series.value < level, r, running[level])
                out[name] = _masked(name, values, r.empty, 1.0)
                continue
            if stat == "min0":
                values, known = floor_with_quiet_days(series, snaps, timeline, r, minmax[window][0])
                out[name] = _masked(name, values, ~known, request.scale)
                continue
            if stat == "min":
                values = minmax[window][0]
            elif stat == "max":
                values = minmax[window][1]
            else:
                values = quantile[(window, stat)]
            out[name] = _masked(name, values, r.empty, request.scale)
    return {name: out[name] for name in request.stats}


_FIELDS = ("start", "end", "first", "stop")


def floor_with_quiet_days(
    series: DailySeries, snaps: Snapshots, timeline: Timeline, r: Ranges, low: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The window minimum of a point series whose days without a point read 0.

    The daily net flow is 0 on a day without events: rather than write those days into the
    series (twice the points), a window has such a day when it covers more days since the
    entity's first point than it holds points, and then its minimum is at most 0. ``low`` is
    the minimum of the window's points (:func:`range_min_max`). Returns the minima and whether
    each is known (the entity had a point before as_of; the window reads null otherwise).
    """
    if series.step:
        raise ValueError("expected a point series (one value per day, no carrying)")
    ever = timeline.positions(snaps, EVER).to_numpy().astype(np.int64)
    known = ever < r.end
    if series.size == 0:
        return np.zeros(known.size, dtype=np.int64), known
    first_day = np.where(known, series.key[np.minimum(ever, series.size - 1)] & (SHIFT - 1), 0)
    covered = r.stop - np.maximum(r.first, first_day)
    quiet = known & (covered > r.end - r.start)
    values = np.where(r.empty, 0, low)
    return np.where(quiet, np.minimum(values, 0), values), known


def _masked(name: str, values: np.ndarray, empty: np.ndarray, scale: float) -> pl.Series:
    series = pl.Series(name, values)
    if scale != 1.0:
        series = series / scale
    return pl.select(pl.when(pl.lit(pl.Series(empty)).not_()).then(series)).to_series().alias(name)


def level_at(series: DailySeries, snaps: Snapshots, days: pl.Series) -> pl.Series:
    """The value of a step series in force on each snapshot's ``days`` (a day number each).

    The last point of the snapshot's entity on or before that day; null when there is none.
    ``days`` must be before each snapshot's as_of for the read to be point-in-time.
    """
    if series.size == 0:
        return pl.repeat(None, snaps.height, dtype=pl.Int64, eager=True)
    codes = snaps.frame[CODE].to_numpy().astype(np.int64)
    query = codes * SHIFT + days.to_numpy().astype(np.int64)
    at = np.searchsorted(series.key, query, side="right") - 1
    found = at >= 0
    owned = np.zeros(at.size, dtype=bool)
    owned[found] = (series.key[at[found]] // SHIFT) == codes[found]
    values = np.where(owned, series.value[np.maximum(at, 0)], 0)
    return pl.select(pl.when(pl.lit(pl.Series(owned))).then(pl.lit(pl.Series(values)))).to_series()
