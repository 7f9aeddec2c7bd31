"""Build a segment's features: the spine, the encoded log, the aggregates, the catalog's values.

:func:`build` is told its segment's :class:`Definitions` (made by
:func:`features.definitions.definitions`); it knows no segment itself. How the values are
computed point in time is explained in :mod:`features.timeline`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from features.catalog import Catalog
from features.contract.repayments import RepaymentRules
from features.contract.segments import Segment
from features.keys import AS_OF, ENTITY, Snapshots, encode_events, entity_codes


@dataclass(frozen=True)
class Inputs:
    """The validated tables one segment's features are computed from (all lazy).

    ``events`` are the segment's transactions renamed to ``entity_id``; ``entities`` the
    segment's entity table renamed likewise; ``loans`` and ``repayments`` the whole contract
    tables (both segments: connection features need the delinquency of counterparties).
    ``partners`` optionally maps counterparty ids to a category (``partner_id``, ``category``),
    e.g. merchants to their industry for a consumer's spending concentration. ``has_log`` is
    false when the lender brought no transaction log for the segment (``events`` is then empty
    with the contract's schema): see :data:`WITHOUT_LOG`.
    """

    events: pl.LazyFrame
    entities: pl.LazyFrame
    loans: pl.LazyFrame
    repayments: pl.LazyFrame
    partners: pl.LazyFrame | None = None
    has_log: bool = True


# The dimensions a segment without a transaction log can still be scored on (a digital lender's
# borrowers and loans): its credit history and identity. The catalog's other features are null
# then (unknown, not zero: no log is not an inactive account), so the model learns nothing
# from them and reasons never cite them.
WITHOUT_LOG: tuple[str, ...] = ("credit_history", "identity")


@dataclass(frozen=True)
class DefinitionParams:
    """The configuration of the features (params ``features`` and ``label``).

    - ``windows``: the windows (days) of the catalog's windowed families (``features.windows``);
    - ``rules``: what paid, late and delinquent mean (:class:`RepaymentRules`);
    - ``merchant_net_margin``: share of a merchant's net sales assumed free to service debt,
      the limit's free cash flow (``features.merchant_net_margin``; no cost data in the log);
    - ``consumer_low_balance_share``: a consumer's day closing below this share of its own
      average monthly outflow is a low-balance day (``features.consumer_low_balance_share``):
      relative, so it holds in any currency;
    - ``annual_interest_rates``: each segment's product rate (``limits.<segment>.
      annual_interest_rate``, the one definition of it), the rate of the application family's
      instalment (:mod:`features.application`).
    """

    windows: tuple[int, ...]
    rules: RepaymentRules
    merchant_net_margin: float
    consumer_low_balance_share: float
    annual_interest_rates: Mapping[str, float]

    def __post_init__(self) -> None:
        """Reject windows and margins that mean nothing."""
        if not self.windows or min(self.windows) < 1 or len(set(self.windows)) < len(self.windows):
            raise ValueError(f"expected distinct positive windows; got {self.windows}")
        if not 0 < self.merchant_net_margin <= 1:
            raise ValueError(f"expected a net margin in (0, 1]; got {self.merchant_net_margin}")
        wrong = {k: v for k, v in self.annual_interest_rates.items() if not 0 <= v < 1}
        if wrong:
            raise ValueError(f"expected annual interest rates in [0, 1); got {wrong}")

    def annual_rate(self, segment: str) -> float:
        """The product rate of ``segment``; a clear error when params hold none."""
        if segment not in self.annual_interest_rates:
            raise ValueError(
                f"expected limits.{segment}.annual_interest_rate in params (the product rate of "
                f"the application features); got rates for {sorted(self.annual_interest_rates)}"
            )
        return self.annual_interest_rates[segment]


# (snapshots, encoded log, inputs, the columns wanted) -> one row of aggregates per snapshot
Aggregates = Callable[[Snapshots, pl.DataFrame, Inputs, set[str]], pl.LazyFrame]


@dataclass(frozen=True)
class Definitions:
    """Everything :func:`build` needs to know about one segment's features.

    ``narrow`` projects the segment's log to compact columns and ``derived`` adds per-event
    columns after the sort (see :func:`features.keys.encode_events`); ``aggregates`` reads the
    per-snapshot columns the expressions need; ``catalog`` holds the model features and
    ``policy_inputs`` the columns the limit needs that are not model features.
    ``spine_columns`` are the columns the expressions read from the spine itself (the loan
    asked for, :data:`features.application.SPINE_COLUMNS`) and ``check_spine`` refuses a spine
    without valid ones, before any work is done.
    """

    segment: Segment
    catalog: Catalog
    policy_inputs: tuple[pl.Expr, ...]
    narrow: Callable[[pl.LazyFrame], pl.LazyFrame]
    derived: Mapping[str, pl.Expr]
    aggregates: Aggregates
    spine_columns: tuple[str, ...] = ()
    check_spine: Callable[[pl.DataFrame], None] | None = None

    @property
    def outputs(self) -> list[str]:
        """The output columns: the catalog's features, then the policy inputs."""
        return [*self.catalog.names, *(e.meta.output_name() for e in self.policy_inputs)]


def needed_columns(expressions: Sequence[pl.Expr]) -> set[str]:
    """Every input column the expressions read."""
    names: set[str] = set()
    for expr in expressions:
        names.update(expr.meta.root_names())
    return names


def build(
    definitions: Definitions,
    spine: pl.DataFrame,
    inputs: Inputs,
    *,
    chunks: int = 1,
    streaming: bool = False,
) -> pl.DataFrame:
    """Compute the segment's catalog features and policy inputs for every spine row.

    ``spine`` must hold ``entity_id`` (str), ``as_of`` (date) and the definitions'
    ``spine_columns`` (the loan asked for: ``principal``, ``term_months``); other columns are
    carried through unchanged and the row order is kept. Only events strictly before each row's
    ``as_of`` are used. ``chunks > 1`` computes entities in that many hash buckets, one after
    the other (each bucket keeps only its own entities' events), to bound memory on logs
    larger than RAM; the result is identical. ``streaming`` reads the log with polars'
    streaming engine. Without a log (``inputs.has_log`` false) only the :data:`WITHOUT_LOG`
    dimensions and the features read from the spine alone (the loan asked for) are computed;
    the other features are null.
    """
    missing = {ENTITY, AS_OF} - set(spine.columns)
    if missing:
        raise ValueError(f"expected spine columns entity_id and as_of; missing {sorted(missing)}")
    if definitions.check_spine is not None:
        definitions.check_spine(spine)
    missing = set(definitions.spine_columns) - set(spine.columns)
    if missing:
        raise ValueError(
            f"expected spine columns {list(definitions.spine_columns)} for the "
            f"{definitions.segment.name} features; missing {sorted(missing)}"
        )
    if chunks < 1:
        raise ValueError(f"expected chunks >= 1; got {chunks}")

    expressions = [*definitions.catalog.expressions(), *definitions.policy_inputs]
    outputs = definitions.outputs
    wanted = needed_columns(expressions)
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
            definitions.narrow(inputs.events), codes, derive=definitions.derived, engine=engine
        )
        aggregates = definitions.aggregates(snaps, events, inputs, wanted)
        del events
        columns = set(aggregates.collect_schema().names())
        carried_in = set(spine.columns) - {ENTITY, AS_OF}  # the loan asked for, ids, labels
        per_row = [e for e in expressions if needed_columns([e]) & carried_in]
        per_snapshot = [e for e in expressions if not needed_columns([e]) & carried_in]
        snapshot_outputs = [e.meta.output_name() for e in per_snapshot]
        carried = sorted(needed_columns(per_row) - carried_in - {ENTITY, AS_OF})
        if (
            wanted - carried_in <= columns
            and not carried_in & columns
            and not set(carried) & set(snapshot_outputs)
        ):
            # The expressions read the per-snapshot aggregates, and a few also the spine's own
            # columns (the loan asked for): evaluate the others once per snapshot and join
            # just their outputs, plus the few aggregates the spine-reading ones need, to the
            # spine (the aggregates hold several times more columns, which the join would
            # otherwise copy for every spine row); then evaluate the spine-reading ones.
            values = aggregates.with_columns(*per_snapshot).select(
                ENTITY, AS_OF, *snapshot_outputs, *carried
            )
            frame = (
                part.lazy()
                .join(values, on=[ENTITY, AS_OF], how="left", maintain_order="left")
                .with_columns(*per_row)
            )
        else:
            frame = (
                part.lazy()
                .join(aggregates, on=[ENTITY, AS_OF], how="left")
                .with_columns(*expressions)
            )
        parts.append(frame.select(row, *spine.columns, *outputs).collect())
    if chunks == 1 and parts[0][row].is_sorted():  # the spine's order already
        frame = parts[0].drop(row)
    else:
        frame = pl.concat(parts).sort(row).drop(row)
    if not inputs.has_log:
        from_spine = set(definitions.spine_columns)
        unknown = [
            f.spec.name
            for f in definitions.catalog.features
            if f.spec.dimension not in WITHOUT_LOG
            and not needed_columns([f.expression]) <= from_spine
        ]
        frame = frame.with_columns(pl.lit(None, dtype=frame.schema[c]).alias(c) for c in unknown)
    return frame
