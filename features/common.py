"""What both segments share: credit history, identity, block statistics and family helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import polars as pl

from features.catalog import declare
from features.engine import (
    AS_OF,
    BLOCKS,
    ENTITY,
    FEN,
    Inputs,
    Snapshots,
    assemble,
    fen,
    read_concurrently,
)

# The windows the catalog's windowed features are defined on (params may add more).
WINDOWS: tuple[int, ...] = (7, 30, 90, 180, 365)
DPD_BAD = 30


# --- helpers -------------------------------------------------------------------------------


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


def per_window(
    segment: str,
    windows: Sequence[int],
    name: str,
    expression: Callable[[int], pl.Expr],
    *,
    dimension: str,
    monotone: int,
    description: str,
    reason: str,
    family: str,
) -> None:
    """Declare one feature per window; ``name``, ``description``, ``reason`` hold ``{w}``."""
    for w in windows:
        declare(
            name.format(w=w),
            expression(w),
            segment=segment,
            dimension=dimension,
            monotone=monotone,
            description=description.format(w=w),
            reason=reason.format(w=w),
            window_days=w,
            family=family,
        )


# --- credit history ------------------------------------------------------------------------


def _yuan_sum(amount: pl.Expr) -> pl.Expr:
    """A sum of money, exact: added in integer fen.

    The order of the rows (which parallel group-bys do not fix) then cannot change the last bit
    of the result, so the same data always give the same features.
    """
    return fen(amount).sum() / FEN


def credit_history(
    keys: pl.LazyFrame, loans: pl.LazyFrame, repayments: pl.LazyFrame, segment: str
) -> pl.LazyFrame:
    """Earlier loans and their repayment as observable strictly before as_of.

    A loan counts once issued before as_of; an instalment once it fell due before as_of. Days
    past due are measured at ``min(paid_on, as_of)``, and a payment counts as made only if
    ``paid_on < as_of``: a repayment made on or after as_of is not yet known. Snapshot x loan
    rows are few (a handful of loans per entity), so joining them is cheap.
    """
    seg_loans = loans.filter(pl.col("segment") == segment).select(
        "loan_id", pl.col("entity_id").alias(ENTITY), "issued_on", "principal"
    )
    last_due = repayments.group_by("loan_id").agg(pl.col("due_on").max().alias("last_due"))
    prior = (
        keys.join(seg_loans, on=ENTITY)
        .filter(pl.col("issued_on") < pl.col(AS_OF))
        .join(last_due, on="loan_id", how="left")
        .group_by(ENTITY, AS_OF)
        .agg(
            pl.len().cast(pl.Int32).alias("prior_loans"),
            _yuan_sum(pl.col("principal")).alias("prior_principal"),
            pl.col("issued_on").max().alias("last_loan_day"),
            pl.col("issued_on").min().alias("first_loan_day"),
            (pl.col("last_due") >= pl.col(AS_OF)).sum().cast(pl.Int32).alias("open_loans"),
        )
    )
    known_paid = pl.col("paid_on").is_not_null() & (pl.col("paid_on") < pl.col(AS_OF))
    observed_at = pl.when(known_paid).then(pl.col("paid_on")).otherwise(pl.col(AS_OF))
    dpd = (observed_at - pl.col("due_on")).dt.total_days().clip(lower_bound=0)
    installments = repayments.select("loan_id", "due_on", "paid_on", "amount_due", "amount_paid")
    joined = (
        keys.join(seg_loans.select("loan_id", ENTITY, "issued_on"), on=ENTITY)
        .filter(pl.col("issued_on") < pl.col(AS_OF))
        .join(installments, on="loan_id")
    )
    recent = pl.col("due_on") >= pl.col(AS_OF) - pl.duration(days=365)
    history = (
        joined.filter(pl.col("due_on") < pl.col(AS_OF))
        .with_columns(dpd.alias("dpd"), known_paid.alias("known_paid"))
        .group_by(ENTITY, AS_OF)
        .agg(
            pl.col("dpd").max().alias("prior_max_dpd"),
            pl.col("dpd").mean().alias("prior_mean_dpd"),
            (pl.col("dpd") > 0).mean().alias("prior_late_share"),
            (pl.col("dpd") >= DPD_BAD).sum().cast(pl.Int32).alias("prior_dpd30_count"),
            (pl.col("dpd") >= 90).any().cast(pl.Int32).alias("prior_dpd90_ever"),
            pl.len().cast(pl.Int32).alias("prior_installments_due"),
            pl.col("dpd").filter(recent).max().alias("max_dpd_365d"),
            (pl.col("dpd") > 0).filter(recent).sum().cast(pl.Int32).alias("late_365d"),
            pl.col("due_on").filter(pl.col("dpd") > 0).max().alias("last_late_day"),
            _yuan_sum(pl.col("amount_paid").filter(pl.col("known_paid"))).alias("paid_amt"),
            _yuan_sum(pl.col("amount_due")).alias("due_amt"),
            pl.col("dpd").filter(~pl.col("known_paid")).max().alias("current_dpd"),
        )
    )
    outstanding = (
        joined.filter(~(pl.col("paid_on") < pl.col(AS_OF)).fill_null(False))
        .group_by(ENTITY, AS_OF)
        .agg(_yuan_sum(pl.col("amount_due")).alias("outstanding_due"))
    )
    zeros = [
        "prior_loans",
        "prior_principal",
        "open_loans",
        "prior_max_dpd",
        "prior_late_share",
        "prior_dpd30_count",
        "prior_dpd90_ever",
        "prior_installments_due",
        "late_365d",
        "current_dpd",
        "outstanding_due",
    ]
    return (
        keys.join(prior, on=[ENTITY, AS_OF], how="left")
        .join(history, on=[ENTITY, AS_OF], how="left")
        .join(outstanding, on=[ENTITY, AS_OF], how="left")
        .with_columns(pl.col(zeros).fill_null(0))
    )


def declare_credit_history(segment: str) -> None:
    """Declare the credit-history features (same definitions for both segments)."""
    s, d = segment, "credit_history"
    items: list[tuple[str, pl.Expr, int, str, str, int | None]] = [
        (
            "prior_loans",
            pl.col("prior_loans"),
            0,
            "Loans issued before as_of.",
            "number of earlier loans",
            None,
        ),
        (
            "prior_principal_total",
            pl.col("prior_principal"),
            0,
            "Total principal (yuan) of loans issued before as_of.",
            "amount borrowed before",
            None,
        ),
        (
            "open_loans",
            pl.col("open_loans"),
            -1,
            "Earlier loans with instalments still to fall due at as_of.",
            "several loans still open",
            None,
        ),
        (
            "outstanding_due",
            pl.col("outstanding_due"),
            -1,
            "Instalment amounts (yuan) of earlier loans not known to be paid at as_of.",
            "high outstanding debt",
            None,
        ),
        (
            "days_since_last_loan",
            days_since("last_loan_day"),
            0,
            "Days since the last loan was issued (null if none).",
            "time since the last loan",
            None,
        ),
        (
            "days_since_first_loan",
            days_since("first_loan_day"),
            0,
            "Days since the first loan was issued (null if none): length of credit history.",
            "short credit history",
            None,
        ),
        (
            "prior_installments_due",
            pl.col("prior_installments_due"),
            0,
            "Instalments of earlier loans that fell due before as_of.",
            "few instalments repaid so far",
            None,
        ),
        (
            "prior_max_dpd",
            pl.col("prior_max_dpd"),
            -1,
            "Worst days past due on earlier instalments, observed at as_of.",
            "late repayments on earlier loans",
            None,
        ),
        (
            "prior_mean_dpd",
            pl.col("prior_mean_dpd"),
            -1,
            "Mean days past due over earlier instalments (null if none fell due).",
            "repayments were late on average",
            None,
        ),
        (
            "prior_late_share",
            pl.col("prior_late_share"),
            -1,
            "Share of earlier instalments paid (or still open) after their due date.",
            "a high share of late instalments",
            None,
        ),
        (
            "prior_dpd30_count",
            pl.col("prior_dpd30_count"),
            -1,
            "Earlier instalments that reached 30 or more days past due.",
            "instalments 30+ days late",
            None,
        ),
        (
            "prior_dpd90_ever",
            pl.col("prior_dpd90_ever"),
            -1,
            "1 if any earlier instalment reached 90 or more days past due.",
            "an earlier default (90+ days late)",
            None,
        ),
        (
            "max_dpd_365d",
            pl.col("max_dpd_365d"),
            -1,
            "Worst days past due on instalments due in the 365 days before as_of.",
            "late repayments in the last year",
            365,
        ),
        (
            "late_installments_365d",
            pl.col("late_365d"),
            -1,
            "Late instalments among those due in the 365 days before as_of.",
            "several late instalments in the last year",
            365,
        ),
        (
            "days_since_last_late",
            days_since("last_late_day"),
            1,
            "Days since the due date of the last late instalment (null if never late).",
            "a recent late repayment",
            None,
        ),
        (
            "repaid_share",
            pl.when(pl.col("due_amt") > 0).then(pl.col("paid_amt") / pl.col("due_amt")),
            1,
            "Amount paid before as_of over the amount that fell due.",
            "instalments not fully repaid",
            None,
        ),
        (
            "days_past_due_now",
            pl.col("current_dpd"),
            -1,
            "Days past due of the worst instalment still unpaid at as_of.",
            "currently past due",
            None,
        ),
    ]
    for name, expr, monotone, description, reason, window in items:
        declare(
            name,
            expr,
            segment=s,
            dimension=d,
            monotone=monotone,
            description=description,
            reason=reason,
            window_days=window,
            family="repayment history",
        )


# --- identity ------------------------------------------------------------------------------


def identity(keys: pl.LazyFrame, entities: pl.LazyFrame, since_column: str) -> pl.LazyFrame:
    """Tenure in days at as_of, plus the entity's static attributes."""
    return (
        keys.join(entities, on=ENTITY, how="left")
        .with_columns((pl.col(AS_OF) - pl.col(since_column)).dt.total_days().alias("tenure_days"))
        .rename({since_column: "since_day"})
    )


def declare_identity(segment: str, who: str) -> None:
    """Declare the identity features both segments share."""
    items = [
        (
            "tenure_days",
            pl.col("tenure_days"),
            1,
            f"Days since the {who} registered on the platform.",
            "short time on the platform",
        ),
        (
            "days_since_first_txn",
            days_since("first_day"),
            1,
            "Days since the first transaction before as_of (null if none): history length.",
            "short transaction history",
        ),
        (
            "days_to_first_txn",
            (pl.col("first_day") - pl.col("since_day")).dt.total_days(),
            0,
            "Days from registration to the first transaction (null if none yet).",
            "slow start after registering",
        ),
    ]
    for name, expr, monotone, description, reason in items:
        declare(
            name,
            expr,
            segment=segment,
            dimension="identity",
            monotone=monotone,
            description=description,
            reason=reason,
            family="tenure",
        )


# --- the per-snapshot frame ----------------------------------------------------------------


def per_snapshot(
    snaps: Snapshots,
    tasks: Sequence[Callable[[], Mapping[str, pl.Series]]],
    inputs: Inputs,
    segment: str,
    since_column: str,
) -> pl.LazyFrame:
    """One row per snapshot: the columns of the log's reading tasks, credit history, identity.

    Credit history and identity do not read the log, so they are one more task run beside
    the log's reading tasks (:func:`features.engine.read_concurrently`), joined to the
    snapshots in their order, rather than a join after every read has finished.
    """

    def context() -> dict[str, pl.Series]:
        keys = snaps.ids().lazy()
        frame = (
            keys.join(
                credit_history(keys, inputs.loans, inputs.repayments, segment),
                on=[ENTITY, AS_OF],
                how="left",
                maintain_order="left",
            )
            .join(
                identity(keys, inputs.entities, since_column),
                on=[ENTITY, AS_OF],
                how="left",
                maintain_order="left",
            )
            .collect()
        )
        return {c: frame[c] for c in frame.columns if c not in (ENTITY, AS_OF)}

    columns = read_concurrently(*tasks, context)
    return assemble(snaps, columns).lazy()
