"""The segments' feature definitions: the one place that maps a segment to its features.

Each segment's module (:mod:`features.merchant`, :mod:`features.consumer`) holds its catalog
(a function of the configured windows), its log projection, its aggregates and its policy
inputs; :func:`definitions` assembles them for :func:`features.build.build`, which is told
its segment's definitions rather than looking them up. A third segment is one more entry in
``_DEFINE``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from features import consumer, merchant
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


def definitions(segment: str | Segment, params: DefinitionParams) -> Definitions:
    """The feature definitions of a segment (a :class:`Segment` or its name) under ``params``."""
    chosen = segment if isinstance(segment, Segment) else segment_named(segment)
    return _DEFINE[chosen.name](chosen, params)


def catalog_page(params: DefinitionParams) -> str:
    """The catalog page (docs/features.md) of every segment under ``params``."""
    return markdown(definitions(name, params).catalog for name in NAMES)
