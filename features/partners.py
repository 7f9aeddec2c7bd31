"""Partner measures: distinct partners over windows, repeat partners, concentration, risky partners.

A merchant's partners are its buyers, a consumer's its counterparties; a partner's category
(e.g. a merchant's industry) spreads a consumer's spending over few values. Everything is read
off :class:`~features.timeline.Timeline` running sums, so it stays exact and linear.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import polars as pl

from features.keys import EVER, HASH_SEED, KEY, Snapshots, code_of, day_of, key_of
from features.timeline import ROWS, Timeline, read_sums


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
        hashed = pl.col("p") if attempt == 0 else pl.col("p").hash(seed=HASH_SEED + attempt)
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
