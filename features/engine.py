"""The point-in-time feature engine.

Given a spine of ``(entity_id, as_of)`` rows (possibly many snapshots per entity), every feature
uses only events strictly before ``as_of``. Transactions are aggregated once to entity-day
buckets; running (cumulative) sums per entity are then read at the window boundaries
``as_of - offset`` with as-of joins, so a window sum is a difference of two running sums. The
cost is linear in days plus snapshots: many snapshots do not cost many times one snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from features import catalog

ENTITY = "entity_id"
AS_OF = "as_of"
DAY = "day"
# Columns the decision (limit) needs that are not model features.
POLICY_INPUTS: tuple[str, ...] = ("monthly_inflow", "monthly_free_cash_flow", "current_dpd")


@dataclass(frozen=True)
class Inputs:
    """The validated tables one segment's features are computed from (all lazy).

    ``events`` are the segment's transactions renamed to ``entity_id``; ``entities`` the
    segment's entity table renamed likewise; ``loans`` and ``repayments`` the whole contract
    tables (only the segment's rows are used).
    """

    events: pl.LazyFrame
    entities: pl.LazyFrame
    loans: pl.LazyFrame
    repayments: pl.LazyFrame


def daily_buckets(events: pl.LazyFrame, measures: Mapping[str, pl.Expr]) -> pl.LazyFrame:
    """Aggregate events to one row per (entity, day) with one column per measure."""
    return (
        events.with_columns(pl.col("ts").dt.date().alias(DAY))
        .group_by(ENTITY, DAY)
        .agg(*[expr.alias(name) for name, expr in measures.items()])
    )


def read_at_boundaries(
    daily: pl.LazyFrame,
    keys: pl.LazyFrame,
    *,
    sums: Sequence[str],
    offsets: Sequence[int],
    levels: Sequence[str] = (),
) -> pl.LazyFrame:
    """Read running sums and latest levels of daily columns at the window boundaries.

    For each offset ``o`` the result holds ``{column}__c{o}``: the sum of the column over all
    days strictly before ``as_of - o``. Each ``levels`` column is read once, as its latest
    non-null value strictly before ``as_of``. Entities with no event before a boundary read 0
    for sums and null for levels. ``keys`` holds unique ``(entity_id, as_of)`` rows.
    """
    running = (
        daily.sort(ENTITY, DAY)
        .with_columns(
            *[pl.col(c).cum_sum().over(ENTITY) for c in sums],
            *[pl.col(c).forward_fill().over(ENTITY) for c in levels],
        )
        .select(ENTITY, DAY, *sums, *levels)
        .sort(DAY)
    )
    out = keys
    for offset in sorted(set(offsets) | {0}):
        boundary = f"__boundary_{offset}"
        wanted = [*sums, *levels] if offset == 0 else list(sums)
        read = (
            keys.with_columns((pl.col(AS_OF) - pl.duration(days=offset + 1)).alias(boundary))
            .sort(boundary)
            .join_asof(
                running.select(ENTITY, DAY, *wanted),
                left_on=boundary,
                right_on=DAY,
                by=ENTITY,
                strategy="backward",
                check_sortedness=False,
            )
            .select(
                ENTITY,
                AS_OF,
                *[pl.col(c).fill_null(0).alias(f"{c}__c{offset}") for c in sums],
                *([pl.col(c) for c in levels] if offset == 0 else []),
            )
        )
        out = out.join(read, on=[ENTITY, AS_OF], how="left")
    return out


def window_sums(columns: Sequence[str], windows: Sequence[int]) -> list[pl.Expr]:
    """Expressions ``{column}_{w}d``: the sum over the ``w`` days before as_of."""
    return [
        (pl.col(f"{c}__c0") - pl.col(f"{c}__c{w}")).alias(f"{c}_{w}d")
        for c in columns
        for w in windows
    ]


def block_sums(columns: Sequence[str], block_days: int, blocks: int) -> list[pl.Expr]:
    """Expressions ``{column}_b{k}``: the sum over the k-th block of days before as_of.

    Block 0 is ``[as_of - block_days, as_of)``, block 1 the one before it, and so on; they give
    month-like series for volatility and trend without calendar alignment.
    """
    return [
        (pl.col(f"{c}__c{k * block_days}") - pl.col(f"{c}__c{(k + 1) * block_days}")).alias(
            f"{c}_b{k}"
        )
        for c in columns
        for k in range(blocks)
    ]


def build(
    segment: str,
    spine: pl.DataFrame,
    inputs: Inputs,
    *,
    windows: Sequence[int],
) -> pl.DataFrame:
    """Compute the segment's catalog features and policy inputs for every spine row.

    ``spine`` must hold ``entity_id`` (str) and ``as_of`` (date); other columns are carried
    through unchanged and the row order is kept.
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

    row = "__row"
    base = spine.with_row_index(row).lazy()
    keys = base.select(ENTITY, AS_OF).unique()
    aggregates = definitions.aggregates(keys, inputs, windows=windows)
    frame = (
        base.join(aggregates, on=[ENTITY, AS_OF], how="left")
        .with_columns(*catalog.expressions(segment), *definitions.policy_inputs())
        .sort(row)
        .select(*spine.columns, *catalog.names(segment), *POLICY_INPUTS)
    )
    return frame.collect()
