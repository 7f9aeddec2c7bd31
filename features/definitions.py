"""The segments' feature definitions: the one place that maps a segment to its features.

Each segment's module (:mod:`features.merchant`, :mod:`features.consumer`) holds its catalog
(a function of the configured windows), its log projection, its aggregates and its policy
inputs; :func:`definitions` assembles them for :func:`features.build.build`, which is told
its segment's definitions rather than looking them up, and appends the application family
(:mod:`features.application`: the loan asked for, read from the spine) to every catalog. A
third segment is one more entry in ``_DEFINE``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import polars as pl

from features import application, consumer, merchant
from features.build import DefinitionParams, Definitions
from features.catalog import markdown
from features.contract.segments import CONSUMER, MERCHANT, NAMES, Segment
from features.contract.segments import segment as segment_named

# The columns the decision (limit) needs that are not model features, in every segment.
POLICY_INPUTS: tuple[str, ...] = ("monthly_inflow", "monthly_free_cash_flow", "current_dpd")


def _merchant(segment: Segment, params: DefinitionParams) -> Definitions:
    return Definitions(
        segment=segment,
        catalog=merchant.catalog(params.windows, params.rules),
        policy_inputs=tuple(merchant.policy_inputs(params.merchant_net_margin)),
        narrow=merchant.narrow,
        derived=merchant.DERIVED,
        aggregates=partial(merchant.aggregates, rules=params.rules),
    )


def _consumer(segment: Segment, params: DefinitionParams) -> Definitions:
    return Definitions(
        segment=segment,
        catalog=consumer.catalog(params.windows, params.rules, params.consumer_low_balance_share),
        policy_inputs=tuple(consumer.policy_inputs()),
        narrow=consumer.narrow,
        derived=consumer.DERIVED,
        aggregates=partial(
            consumer.aggregates,
            rules=params.rules,
            low_balance_share=params.consumer_low_balance_share,
        ),
    )


_DEFINE: dict[str, Callable[[Segment, DefinitionParams], Definitions]] = {
    MERCHANT.name: _merchant,
    CONSUMER.name: _consumer,
}
if set(_DEFINE) != set(NAMES):  # a segment added to the contract needs its definitions here
    raise ImportError(f"expected feature definitions for {list(NAMES)}; got {list(_DEFINE)}")


def _policy_input(defined: Definitions, name: str) -> pl.Expr:
    """The segment's policy input ``name`` (its one definition), unaliased."""
    for expr in defined.policy_inputs:
        if expr.meta.output_name() == name:
            return expr.meta.undo_aliases()
    raise ValueError(f"expected a policy input {name!r} of the {defined.segment.name} segment")


def definitions(segment: str | Segment, params: DefinitionParams) -> Definitions:
    """The feature definitions of a segment (a :class:`Segment` or its name) under ``params``.

    The segment's own catalog, then the application family at the segment's product rate,
    whose inflow ratios read the segment's ``monthly_inflow`` (the limit's inflow).
    """
    chosen = segment if isinstance(segment, Segment) else segment_named(segment)
    own = _DEFINE[chosen.name](chosen, params)
    catalog = application.with_application(
        own.catalog, params.annual_rate(chosen.name), _policy_input(own, "monthly_inflow")
    )
    return replace(
        own,
        catalog=catalog,
        spine_columns=application.SPINE_COLUMNS,
        check_spine=application.check_spine,
    )


def catalog_page(params: DefinitionParams) -> str:
    """The catalog page (docs/features.md) of every segment under ``params``."""
    return markdown(definitions(name, params).catalog for name in NAMES)
