"""Expression helpers of the catalogs: safe ratios, days since, and statistics over 30-day blocks.

Block ``k`` of a measure ``c`` is the column ``{c}_b{k}``: its sum over the k-th 30-day block
before as_of (block 0 is ``[as_of - 30, as_of)``), read by :func:`features.timeline.read_sums`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from features.keys import AS_OF
from features.timeline import BLOCKS


def safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator``, null where the denominator is zero or null."""
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def days_since(day_column: str) -> pl.Expr:
    """Days from a date column to as_of (null when the date is null)."""
    return (pl.col(AS_OF) - pl.col(day_column)).dt.total_days()


def _blocks(column: str, n: int) -> list[pl.Expr]:
    return [pl.col(f"{column}_b{k}") for k in range(n)]


def block_mean(column: str, n: int = BLOCKS) -> pl.Expr:
    """Mean of the last ``n`` 30-day block sums."""
    return pl.mean_horizontal(_blocks(column, n))


def block_std(column: str, n: int = BLOCKS) -> pl.Expr:
    """Sample standard deviation of the last ``n`` 30-day block sums."""
    values = _blocks(column, n)
    mean = pl.mean_horizontal(values)
    return (pl.sum_horizontal([(v - mean) ** 2 for v in values]) / (n - 1)).sqrt()


def block_cv(column: str, n: int = BLOCKS) -> pl.Expr:
    """Coefficient of variation of the last ``n`` block sums (null on no activity)."""
    return safe_ratio(block_std(column, n), block_mean(column, n))


def active_blocks(column: str, n: int = BLOCKS) -> pl.Expr:
    """How many of the last ``n`` 30-day blocks had any of the column."""
    return pl.sum_horizontal([(v > 0).cast(pl.Int32) for v in _blocks(column, n)])


def block_slope(column: str, n: int = BLOCKS) -> pl.Expr:
    """Least-squares slope of the last ``n`` block sums per block, over their mean.

    Time runs forward (the oldest block is t = 0), so a positive value is growth; dividing by
    the mean makes it a relative monthly growth rate comparable across sizes.
    """
    ts = [n - 1 - k for k in range(n)]  # block k is k blocks before as_of
    t_mean = sum(ts) / n
    denom = sum((t - t_mean) ** 2 for t in ts)
    values = _blocks(column, n)
    slope = pl.sum_horizontal([(t - t_mean) * v for t, v in zip(ts, values, strict=True)]) / denom
    return safe_ratio(slope, pl.mean_horizontal(values))


def last_minus_mean(column: str, n: int = BLOCKS) -> pl.Expr:
    """The latest block minus the mean of the last ``n`` blocks, over that mean."""
    mean = block_mean(column, n)
    return safe_ratio(pl.col(f"{column}_b0") - mean, mean)


def block_max(column: str, n: int = BLOCKS) -> pl.Expr:
    """The largest of the last ``n`` block sums."""
    return pl.max_horizontal(_blocks(column, n))


def block_min(column: str, n: int = BLOCKS) -> pl.Expr:
    """The smallest of the last ``n`` block sums."""
    return pl.min_horizontal(_blocks(column, n))


def _active_flags(active: str, n: int) -> list[pl.Expr]:
    """Per block, whether ``active`` was positive in it (the entity was there that month)."""
    return [pl.col(f"{active}_b{k}") > 0 for k in range(n)]


def _when_active(flags: list[pl.Expr], values: list[pl.Expr]) -> pl.Expr:
    """The sum over the active blocks of ``values`` (one expression per block)."""
    return pl.sum_horizontal(
        [pl.when(f).then(v).otherwise(0) for f, v in zip(flags, values, strict=True)]
    )


def active_block_mean(column: str, active: str, n: int = BLOCKS) -> pl.Expr:
    """Mean of ``column`` over the last ``n`` blocks in which ``active`` was positive.

    An entity's usual month, measured only over the months it was there: a young entity's
    blocks before its first event do not drag the mean down (null when no block was active).
    """
    flags = _active_flags(active, n)
    return safe_ratio(_when_active(flags, _blocks(column, n)), _when_active(flags, [1] * n))


def last_over_usual(column: str, active: str, n: int = BLOCKS) -> pl.Expr:
    """The latest 30-day block over the usual active block (1 = an ordinary month, 0 = none)."""
    return safe_ratio(pl.col(f"{column}_b0"), active_block_mean(column, active, n))


def block_shortfall(column: str, active: str, n: int = BLOCKS) -> pl.Expr:
    """Share of the usual count missing, over the last ``n`` blocks in which ``active`` was seen.

    The usual count is the mean over the active blocks, rounded: a monthly event that falls
    twice into one 30-day block leaves the next one short, which moves the mean but not the
    rounded count (a maximum would be inflated by it). Each active block short of the usual count
    adds its shortfall; 0 means no block fell short, 0.25 that a quarter of the expected events
    did not happen (null when nothing was expected).
    """
    flags = _active_flags(active, n)
    typical = active_block_mean(column, active, n).round(0)
    short = _when_active(flags, [(typical - v).clip(lower_bound=0) for v in _blocks(column, n)])
    return safe_ratio(short, typical * _when_active(flags, [1] * n))


def hhi(counts: Sequence[pl.Expr]) -> pl.Expr:
    """Herfindahl index of a few counts (1 = all in one; null when all are zero)."""
    total = pl.sum_horizontal(counts)
    return safe_ratio(pl.sum_horizontal([c * c for c in counts]), total * total)
