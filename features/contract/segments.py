"""The segments: the one place that knows every segment and what distinguishes them.

A segment is a kind of borrower with its own entity table, transaction log, features and model.
Everything that differs between segments (table names, the id column, the column that says
since when an entity existed, where a segment's counterparties get their category) is a field
of :class:`Segment`; code elsewhere takes a ``Segment`` (or looks one up by name with
:func:`segment`) instead of comparing segment strings, so a third segment is one more entry in
:data:`SEGMENTS` plus its feature definitions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Partners:
    """Where a segment's counterparties get a category (e.g. a merchant's industry)."""

    table: str
    id_column: str
    category_column: str


@dataclass(frozen=True)
class References:
    """A column of a segment's log that names entities of the entity tables listed."""

    column: str
    entity_tables: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """One segment of borrowers and the contract tables that describe it."""

    name: str
    entity_table: str
    entity_id: str
    txn_table: str
    since: str  # the entity table's date column: the entity exists from this day on
    references: References | None = None  # blanked where that entity has not consented
    partners: Partners | None = None


MERCHANT = Segment(
    name="merchant",
    entity_table="merchants",
    entity_id="merchant_id",
    txn_table="merchant_transactions",
    since="onboarded_on",
    references=References(column="buyer_id", entity_tables=("consumers",)),
)
CONSUMER = Segment(
    name="consumer",
    entity_table="consumers",
    entity_id="consumer_id",
    txn_table="consumer_transactions",
    since="registered_on",
    references=References(column="counterparty_id", entity_tables=("consumers", "merchants")),
    # A consumer's purchases are categorised by the merchant's industry.
    partners=Partners(table="merchants", id_column="merchant_id", category_column="industry"),
)
SEGMENTS: dict[str, Segment] = {s.name: s for s in (MERCHANT, CONSUMER)}
NAMES: tuple[str, ...] = tuple(SEGMENTS)


def segment(name: str) -> Segment:
    """The segment called ``name``; a clear error for any other string."""
    try:
        return SEGMENTS[name]
    except KeyError:
        raise ValueError(f"expected a segment in {list(NAMES)}; got {name!r}") from None
