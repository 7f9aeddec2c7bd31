"""What the feature job reads: spines (who, at which date) and the validated tables.

The features stage builds the training spine (one row per loan, at its issue date) and the
whole book at the end of the observed log; the score stage builds the book at a scoring date.
All of them read the validated tables through :class:`~features.contract.segments.Segment`, so
no code here compares segment names. Every spine carries the loan asked for
(:data:`features.application.SPINE_COLUMNS`): the loan's own in training, the segment's
reference loan (params ``application.reference_loan``) in a book.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from features.application import PRINCIPAL, TERM_MONTHS, annuity
from features.build import DefinitionParams, Definitions, Inputs
from features.build import build as build_features
from features.contract.repayments import RepaymentRules
from features.contract.segments import SEGMENTS, Segment, segment
from features.contract.tables import TABLES
from features.contract.truth import KNOWABLE_PARTS
from features.definitions import definitions
from models.labels import LabelParams, label_loans
from models.limits import LimitPolicy
from models.split import SplitParams, assign_slices, complete_months
from pipeline.config import ApplicationParams, FeatureParams, ReferenceLoan, ScoringParams
from pipeline.storage import Layout, require


def _present(validated: Path) -> list[Segment]:
    """The segments whose entity table is in ``validated``.

    Their transaction log may be absent: a digital lender may bring its borrowers and loans only.
    """
    return [
        seg for seg in SEGMENTS.values() if (validated / f"{seg.entity_table}.parquet").exists()
    ]


def present_segments(layout: Layout) -> tuple[str, ...]:
    """The segments the validated data holds: what ``--segment all`` means.

    A lender brings the segments it has; validation writes the tables of those only.
    """
    return tuple(seg.name for seg in _present(require(layout.validated, "validate")))


def require_segment(layout: Layout, name: str) -> str:
    """``name`` if the validated data holds that segment; otherwise say which segments it holds."""
    segment(name)
    present = present_segments(layout)
    if name not in present:
        raise ValueError(
            f"expected a segment present in {layout.validated} ({', '.join(present)}); got "
            f"{name!r}, whose tables were not in the raw data (see `longtail validate`)"
        )
    return name


def _optional(validated: Path, table: str) -> pl.LazyFrame:
    """A table the lender may leave out (``contract.OPTIONAL``): empty when it was not brought."""
    path = validated / f"{table}.parquet"
    if path.exists():
        return pl.scan_parquet(path)
    return pl.LazyFrame(schema=TABLES[table].schema)


def observed_until(validated: Path) -> dt.date:
    """The first day after the observed data: the day after its last dated event.

    Events are what happened: transactions of every segment (their UTC day), loan issues and
    payments made (``paid_on``). Due dates are not events (a schedule runs into the future),
    nor are entities' registration days. A book without transaction logs (loans only) is thus
    observed up to its last loan issue or payment.
    """
    days = [
        pl.scan_parquet(validated / f"{s.txn_table}.parquet").select(
            pl.col("ts").max().dt.date().alias("day")
        )
        for s in _present(validated)
        if (validated / f"{s.txn_table}.parquet").exists()
    ]
    if (validated / "loans.parquet").exists():
        days.append(
            pl.scan_parquet(validated / "loans.parquet").select(day=pl.col("issued_on").max())
        )
    days.append(_optional(validated, "repayments").select(day=pl.col("paid_on").max()))
    last = pl.concat(days).select(pl.col("day").max()).collect().item()
    if last is None:
        raise ValueError(f"expected dated events (transactions, loans) in {validated}; found none")
    return last + dt.timedelta(days=1)


def default_as_of(layout: Layout, scoring: ScoringParams) -> dt.date:
    """The scoring date: params.yaml scoring.as_of, else the first day after the observed log."""
    return scoring.as_of or observed_until(require(layout.validated, "validate"))


def feature_inputs(validated: Path, seg: Segment) -> Inputs:
    """The feature job's inputs for a segment: its log, entities, loans and partners."""

    def entity_table(name: str) -> pl.LazyFrame:
        return pl.scan_parquet(validated / f"{name}.parquet")

    partners = seg.partners
    if partners is not None and not (validated / f"{partners.table}.parquet").exists():
        partners = None  # the partners' segment was not brought: no categories
    return Inputs(
        events=_events(validated, seg),
        has_log=(validated / f"{seg.txn_table}.parquet").exists(),
        entities=entity_table(seg.entity_table).rename({seg.entity_id: "entity_id"}),
        loans=entity_table("loans"),
        repayments=_optional(validated, "repayments"),
        partners=(
            None
            if partners is None
            else entity_table(partners.table).select(
                pl.col(partners.id_column).alias("partner_id"),
                pl.col(partners.category_column).alias("category"),
            )
        ),
    )


def _events(validated: Path, seg: Segment) -> pl.LazyFrame:
    """The segment's transactions renamed to ``entity_id``, or none.

    Without a log (a loans-only lender) the frame is empty with the contract's schema: the
    transaction features come out null, credit history and identity still count.
    """
    path = validated / f"{seg.txn_table}.parquet"
    log = (
        pl.scan_parquet(path)
        if path.exists()
        else pl.LazyFrame(schema=TABLES[seg.txn_table].schema)
    )
    return log.rename({seg.entity_id: "entity_id"})


def training_spine(layout: Layout, name: str, label: LabelParams) -> pl.DataFrame:
    """One row per loan of the segment: (loan, entity, as_of = issue date) with its label.

    The loan's principal and term are the loan asked for (the loan issued is the loan applied
    for), read by the application features.
    """
    validated = require(layout.validated, "validate")
    loans = pl.read_parquet(validated / "loans.parquet").filter(pl.col("segment") == name)
    repayments = _optional(validated, "repayments").collect()
    outcomes = _optional(validated, "outcomes").collect()
    labelled = label_loans(
        loans,
        repayments,
        observed_until=observed_until(validated),
        params=label,
        outcomes=outcomes,
    )
    spine = labelled.select(
        "loan_id",
        "entity_id",
        pl.col("issued_on").alias("as_of"),
        pl.col("issued_on").dt.strftime("%Y-%m").alias("issue_month"),
        pl.col("principal").cast(pl.Float64).alias(PRINCIPAL),
        pl.col("term_months").cast(pl.Int32).alias(TERM_MONTHS),
        "status",
        "bad",
    )
    truth = layout.truth / "loans.parquet"
    if truth.exists():
        known = pl.read_parquet(truth)
        columns = [pl.col("loan_id"), pl.col("true_pd")]
        if set(KNOWABLE_PARTS) <= set(known.columns):
            # What the log could reveal at issue: the true log-odds without the hidden part and
            # the macro path after issue (synthetic worlds only; see features/contract/truth.py).
            columns.append(pl.sum_horizontal(KNOWABLE_PARTS).alias("knowable_log_odds"))
        spine = spine.join(known.select(columns), on="loan_id", how="left")
    return spine.sort("as_of", "loan_id")


def reference_loan(application: ApplicationParams, name: str) -> ReferenceLoan:
    """The segment's reference loan (params ``application.reference_loan``), or a clear error."""
    segment(name)
    loan = application.reference_loan.get(name)
    if loan is None:
        raise ValueError(
            f"expected application.reference_loan.{name} (principal, term_months) in params: "
            f"the loan a whole book is scored for; got loans for "
            f"{sorted(application.reference_loan)}"
        )
    return loan


def reference_loan_stated(
    application: ApplicationParams, limits: dict[str, LimitPolicy], name: str
) -> dict[str, float | int]:
    """The reference loan as the score manifest states it: principal, term, rate, instalment.

    The instalment is the application features' own annuity at the product's rate, so the
    manifest shows the figure the features divided by.
    """
    loan = reference_loan(application, name)
    if name not in limits:
        raise ValueError(
            f"expected limits.{name}.annual_interest_rate in params (the product rate); got "
            f"limits for {sorted(limits)}"
        )
    rate = limits[name].annual_interest_rate
    instalment = pl.select(annuity(pl.lit(loan.principal), pl.lit(loan.term_months), rate)).item()
    return {
        PRINCIPAL: loan.principal,
        TERM_MONTHS: loan.term_months,
        "annual_interest_rate": rate,
        "instalment": round(instalment, 2),
    }


def scoring_spine(
    layout: Layout, name: str, as_of: dt.date, application: ApplicationParams
) -> pl.DataFrame:
    """Every consented entity of the segment that existed before ``as_of``, with the loan asked for.

    A book has no applications: every entity is scored for the segment's reference loan
    (``application.reference_loan``).
    """
    validated = require(layout.validated, "validate")
    seg = segment(name)
    loan = reference_loan(application, name)
    return (
        pl.scan_parquet(validated / f"{seg.entity_table}.parquet")
        .filter(pl.col("consent") & (pl.col(seg.since) < as_of))
        .select(
            pl.col(seg.entity_id).alias("entity_id"),
            pl.lit(as_of).alias("as_of"),
            pl.lit(loan.principal, dtype=pl.Float64).alias(PRINCIPAL),
            pl.lit(loan.term_months, dtype=pl.Int32).alias(TERM_MONTHS),
        )
        .sort("entity_id")
        .collect()
    )


def definition_rates(limits: dict[str, LimitPolicy]) -> dict[str, float]:
    """Each segment's product rate (``limits.<segment>.annual_interest_rate``)."""
    return {name: policy.annual_interest_rate for name, policy in limits.items()}


def definition_params(
    features: FeatureParams, label: LabelParams, limits: dict[str, LimitPolicy]
) -> DefinitionParams:
    """What the feature definitions take from params: windows, repayment rules, money levels.

    The repayment rules are the label's (what default means, the payment tolerance) plus the
    features' delinquency level, so "paid" and "days past due" mean the same in both. The
    product rates are the limits' (the application family's instalment).
    """
    return DefinitionParams(
        windows=features.windows,
        rules=RepaymentRules(
            default_dpd=label.dpd_threshold,
            delinquent_dpd=features.delinquent_dpd,
            tolerance=label.partial_payment_tolerance,
        ),
        merchant_net_margin=features.merchant_net_margin,
        consumer_low_balance_share=features.consumer_low_balance_share,
        annual_interest_rates=definition_rates(limits),
    )


def feature_definitions(
    name: str, features: FeatureParams, label: LabelParams, limits: dict[str, LimitPolicy]
) -> Definitions:
    """The segment's feature definitions (catalog, aggregates, policy inputs) under params."""
    return definitions(segment(name), definition_params(features, label, limits))


def segment_features(
    layout: Layout, defined: Definitions, spine: pl.DataFrame, *, chunks: int
) -> pl.DataFrame:
    """The features of ``defined``'s segment for a spine, from the validated tables.

    One place reads the validated tables into the feature job: training spines, the book
    snapshot and batch scoring all build their features here, from the definitions the stage
    built once (:func:`feature_definitions`) and params' entity ``chunks``.
    """
    validated = require(layout.validated, "validate")
    return build_features(defined, spine, feature_inputs(validated, defined.segment), chunks=chunks)


def sliced(layout: Layout, name: str, split: SplitParams) -> pl.DataFrame:
    """The labelled training spine with features and its out-of-time ``slice``.

    Only issue months whose every loan is labelled take part (the latest month with labels is
    usually a stub of loans issued on its first days); indeterminate loans are dropped, and so
    are months outside every slice (older than ``split.train_months`` allows).
    """
    frame = pl.read_parquet(require(layout.features(name), "features"))
    months = complete_months(frame["issue_month"], frame["bad"].is_not_null())
    frame = frame.filter(pl.col("bad").is_not_null() & pl.col("issue_month").is_in(months))
    return frame.with_columns(assign_slices(pl.col("as_of"), months, split).alias("slice")).filter(
        pl.col("slice").is_not_null()
    )
