"""The input contract: the tables, columns and types users shape their logs to.

The synthetic world writes exactly these tables, validation enforces them, and the feature
jobs read nothing else. Money is in the log's currency (the synthetic world's is CNY; a source
mapping names a lender's and scales its amounts to whole units) as float64 rounded to 2
decimals; timestamps are UTC; identifiers are strings. The columns, types, keys and
nullability of every table are defined once, by its dataframely schema
(:mod:`features.contract.schemas`); :data:`TABLES` reads them from there. The
human-readable version of this contract is ``docs/data-contract.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from features.contract.schemas import SCHEMAS
from features.contract.segments import SEGMENTS as _SEGMENTS
from features.contract.vocabulary import (
    CHANNELS,
    CONSUMER_KIND_DIRECTION,
    CONSUMER_TXN_KINDS,
    DIRECTIONS,
    INDUSTRIES,
    MERCHANT_TXN_KINDS,
    REGIONS,
    SEGMENTS,
    TS,
)

__all__ = [
    "CHANNELS",
    "CONSUMER_KIND_DIRECTION",
    "CONSUMER_TXN_KINDS",
    "DIRECTIONS",
    "ENTITY_ID",
    "ENTITY_TABLE",
    "INDUSTRIES",
    "MERCHANT_TXN_KINDS",
    "OPTIONAL",
    "REGIONS",
    "SEGMENTS",
    "TABLES",
    "TS",
    "TXN_TABLE",
    "Table",
]

# Tables a lender may leave out: the repayment schedule (a lender that records only each loan's
# outcome brings ``outcomes`` instead) and the outcomes (labels then come from the schedule).
OPTIONAL: tuple[str, ...] = ("repayments", "outcomes")


@dataclass(frozen=True)
class Table:
    """One table of the contract: its columns, their types and its key."""

    name: str
    columns: dict[str, pl.DataType]
    key: tuple[str, ...]
    nullable: tuple[str, ...] = ()
    optional: bool = False

    @property
    def schema(self) -> pl.Schema:
        """The polars schema of the table, columns in contract order."""
        return pl.Schema(self.columns)


TABLES: dict[str, Table] = {
    name: Table(
        name,
        {column: spec.dtype for column, spec in schema.columns().items()},
        key=tuple(schema.primary_key()),
        nullable=tuple(column for column, spec in schema.columns().items() if spec.nullable),
        optional=name in OPTIONAL,
    )
    for name, schema in SCHEMAS.items()
}

# Per-segment table and column names, derived from features.contract.segments.
ENTITY_TABLE: dict[str, str] = {n: s.entity_table for n, s in _SEGMENTS.items()}
ENTITY_ID: dict[str, str] = {n: s.entity_id for n, s in _SEGMENTS.items()}
TXN_TABLE: dict[str, str] = {n: s.txn_table for n, s in _SEGMENTS.items()}
