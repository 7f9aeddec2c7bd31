"""What a snapshot knows besides the log: credit history, delinquency onset and identity.

The credit history and identity of each snapshot are read from the loans, repayments and
entity tables (not the transaction log); :func:`per_snapshot` joins them to the columns read
from the log. The catalog's credit-history and identity features are declared here, the same
for every segment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import polars as pl

from features.blocks import days_since
from features.build import Inputs
from features.catalog import CatalogBuilder
from features.contract.repayments import (
    RepaymentRules,
    days_past_due,
    onset_day,
    reached,
    reached_before,
    settled_before,
)
from features.contract.segments import Segment
from features.keys import AS_OF, ENTITY, FEN, Snapshots, day_number, fen, id_hash
from features.timeline import assemble, read_concurrently

# Credit history is the record already made, except the debt still owed: arrears, open loans and
# what is outstanding the entity can still pay down (recourse may suggest these).
DEBT_STILL_OWED: dict[str, bool] = {
    "open_loans": True,
    "outstanding_due": True,
    "days_past_due_now": True,
}


def delinquency_onset(
    loans: pl.LazyFrame, repayments: pl.LazyFrame, rules: RepaymentRules
) -> pl.DataFrame:
    """The first day each borrower (any segment) was ``rules.delinquent_dpd``+ days past due.

    Returns ``__hash`` (the borrower id's :func:`id_hash`) and ``__onset`` (a day number), for
    the borrowers that ever were (see :func:`features.contract.repayments.onset_day`).
    """
    dpd, tolerance = rules.delinquent_dpd, rules.tolerance
    return (
        repayments.filter(reached(dpd, tolerance))
        .join(loans.select("loan_id", "entity_id"), on="loan_id")
        .group_by("entity_id")
        .agg(day_number(onset_day(dpd, tolerance)).alias("__onset"))
        .select(id_hash("entity_id").alias("__hash"), "__onset")
        .collect()
    )


def _money_sum(amount: pl.Expr) -> pl.Expr:
    """A sum of money, exact: added in integer fen.

    The order of the rows (which parallel group-bys do not fix) then cannot change the last bit
    of the result, so the same data always give the same features.
    """
    return fen(amount).sum() / FEN


def credit_history(
    keys: pl.LazyFrame,
    loans: pl.LazyFrame,
    repayments: pl.LazyFrame,
    segment: str,
    rules: RepaymentRules,
) -> pl.LazyFrame:
    """Earlier loans and their repayment as observable strictly before as_of.

    A loan counts once issued before as_of; an instalment once it fell due before as_of. An
    instalment is paid once settled (paid in full within ``rules.tolerance``) before as_of, and
    its days past due are measured then or at as_of
    (:func:`features.contract.repayments.days_past_due`): a repayment made on or after as_of
    is not yet known, a short one never settles. ``repaid_share`` counts the money received
    before as_of (short payments included). Snapshot x loan rows are few (a handful of loans
    per entity), so joining them is cheap.
    """
    late, bad = rules.delinquent_dpd, rules.default_dpd
    seg_loans = loans.filter(pl.col("segment") == segment).select(
        "loan_id", pl.col("entity_id").alias(ENTITY), "issued_on", "principal"
    )
    prior = (
        keys.join(seg_loans, on=ENTITY)
        .filter(pl.col("issued_on") < pl.col(AS_OF))
        .group_by(ENTITY, AS_OF)
        .agg(
            pl.len().cast(pl.Int32).alias("prior_loans"),
            _money_sum(pl.col("principal")).alias("prior_principal"),
            pl.col("issued_on").max().alias("last_loan_day"),
            pl.col("issued_on").min().alias("first_loan_day"),
        )
    )
    known_paid = settled_before(pl.col(AS_OF), rules.tolerance)
    dpd = days_past_due(pl.col(AS_OF), rules.tolerance)
    received = (pl.col("paid_on") < pl.col(AS_OF)).fill_null(False)  # money, settled or not
    # the day an instalment turns late or bad, as the label and counterparty onsets read it
    reached_late = reached_before(late, rules.tolerance, pl.col(AS_OF))
    reached_bad = reached_before(bad, rules.tolerance, pl.col(AS_OF))
    installments = repayments.select("loan_id", "due_on", "paid_on", "amount_due", "amount_paid")
    joined = (
        keys.join(seg_loans.select("loan_id", ENTITY, "issued_on"), on=ENTITY)
        .filter(pl.col("issued_on") < pl.col(AS_OF))
        .join(installments, on="loan_id")
    )
    recent = pl.col("due_on") >= pl.col(AS_OF) - pl.duration(days=365)
    history = (
        joined.filter(pl.col("due_on") < pl.col(AS_OF))
        .with_columns(
            dpd.alias("dpd"),
            known_paid.alias("known_paid"),
            received.alias("received"),
            reached_late.alias("reached_late"),
            reached_bad.alias("reached_bad"),
        )
        .group_by(ENTITY, AS_OF)
        .agg(
            pl.col("dpd").max().alias("prior_max_dpd"),
            pl.col("dpd").mean().alias("prior_mean_dpd"),
            (pl.col("dpd") > 0).mean().alias("prior_late_share"),
            pl.col("reached_late").sum().cast(pl.Int32).alias(f"prior_dpd{late}_count"),
            pl.col("reached_bad").any().cast(pl.Int32).alias(f"prior_dpd{bad}_ever"),
            pl.len().cast(pl.Int32).alias("prior_installments_due"),
            pl.col("dpd").filter(recent).max().alias("max_dpd_365d"),
            (pl.col("dpd") > 0).filter(recent).sum().cast(pl.Int32).alias("late_365d"),
            pl.col("due_on").filter(pl.col("dpd") > 0).max().alias("last_late_day"),
            _money_sum(pl.col("amount_paid").filter(pl.col("received"))).alias("paid_amt"),
            _money_sum(pl.col("amount_due")).alias("due_amt"),
            pl.col("dpd").filter(~pl.col("known_paid")).max().alias("current_dpd"),
        )
    )
    # A loan is open while any of its instalments is not known settled: one repaid early is
    # closed before its last due date, one in arrears stays open after it.
    outstanding = (
        joined.filter(~known_paid)
        .group_by(ENTITY, AS_OF)
        .agg(
            _money_sum(pl.col("amount_due")).alias("outstanding_due"),
            pl.col("loan_id").n_unique().cast(pl.Int32).alias("open_loans"),
        )
    )
    zeros = [
        "prior_loans",
        "prior_principal",
        "open_loans",
        "prior_max_dpd",
        "prior_late_share",
        f"prior_dpd{late}_count",
        f"prior_dpd{bad}_ever",
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


def declare_credit_history(b: CatalogBuilder, rules: RepaymentRules) -> None:
    """Declare the credit-history features (same definitions for every segment)."""
    late, bad = rules.delinquent_dpd, rules.default_dpd
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
            "Total principal of loans issued before as_of.",
            "amount borrowed before",
            None,
        ),
        (
            "open_loans",
            pl.col("open_loans"),
            -1,
            "Earlier loans not fully repaid before as_of (an instalment unsettled, due or not).",
            "several loans still open",
            None,
        ),
        (
            "outstanding_due",
            pl.col("outstanding_due"),
            -1,
            "Instalment amounts of earlier loans not known to be paid at as_of.",
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
            f"prior_dpd{late}_count",
            pl.col(f"prior_dpd{late}_count"),
            -1,
            f"Earlier instalments that reached {late} or more days past due.",
            f"instalments {late}+ days late",
            None,
        ),
        (
            f"prior_dpd{bad}_ever",
            pl.col(f"prior_dpd{bad}_ever"),
            -1,
            f"1 if any earlier instalment reached {bad} or more days past due.",
            f"an earlier default ({bad}+ days late)",
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
        b.declare(
            name,
            expr,
            dimension="credit_history",
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


def declare_identity(b: CatalogBuilder, who: str) -> None:
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
        b.declare(
            name,
            expr,
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
    segment: Segment,
    rules: RepaymentRules,
) -> pl.LazyFrame:
    """One row per snapshot: the columns of the log's reading tasks, credit history, identity.

    Credit history and identity do not read the log, so they are one more task run beside
    the log's reading tasks (:func:`features.timeline.read_concurrently`), joined to the
    snapshots in their order, rather than a join after every read has finished.
    """

    def context() -> dict[str, pl.Series]:
        keys = snaps.ids().lazy()
        frame = (
            keys.join(
                credit_history(keys, inputs.loans, inputs.repayments, segment.name, rules),
                on=[ENTITY, AS_OF],
                how="left",
                maintain_order="left",
            )
            .join(
                identity(keys, inputs.entities, segment.since),
                on=[ENTITY, AS_OF],
                how="left",
                maintain_order="left",
            )
            .collect()
        )
        return {c: frame[c] for c in frame.columns if c not in (ENTITY, AS_OF)}

    columns = read_concurrently(*tasks, context)
    return assemble(snaps, columns).lazy()
