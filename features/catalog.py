"""The feature catalog as a value: each segment's features with their metadata and expressions.

A feature is a polars expression over the per-snapshot aggregate frame of its segment, named
for its output column, with its metadata (segment, dimension, window, monotone direction,
reason text) beside it. A segment's definitions build their :class:`Catalog` with a
:class:`CatalogBuilder` (its ``declare`` / ``per_window`` return what they add); the catalog drives
LightGBM's monotone constraints, the reason codes, the per-dimension sub-scores and the
generated catalog page. Nothing here knows any segment's definitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import polars as pl

from features.contract.segments import NAMES as SEGMENTS

DIMENSIONS: tuple[str, ...] = (
    "credit_history",
    "behaviour",
    "ability_to_pay",
    "identity",
    "connections",
)


@dataclass(frozen=True)
class FeatureSpec:
    """Metadata of one feature.

    ``monotone`` is the direction of the feature's effect on the *score* expected by the risk
    policy: +1 means a higher value may never lower the score (never raises the PD), -1 means a
    higher value may never raise the score, 0 leaves the model free.
    """

    name: str
    segment: str
    dimension: str
    window_days: int | None
    monotone: int
    description: str
    reason: str
    family: str = ""

    @property
    def code(self) -> str:
        """The stable reason code of the feature (its name in upper case)."""
        return self.name.upper()

    @property
    def pd_monotone(self) -> int:
        """The direction of the constraint on the PD (LightGBM predicts the PD)."""
        return -self.monotone


@dataclass(frozen=True)
class Feature:
    """One feature: its metadata and its expression (not yet aliased to its name)."""

    spec: FeatureSpec
    expression: pl.Expr


def _check(segment: str, dimension: str, monotone: int) -> None:
    if segment not in SEGMENTS:
        raise ValueError(f"expected segment in {SEGMENTS}; got {segment!r}")
    if dimension not in DIMENSIONS:
        raise ValueError(f"expected dimension in {DIMENSIONS}; got {dimension!r}")
    if monotone not in (-1, 0, 1):
        raise ValueError(f"expected monotone in (-1, 0, 1); got {monotone!r}")


@dataclass(frozen=True)
class Catalog:
    """The features of one segment, in definition order (names are unique)."""

    segment: str
    features: tuple[Feature, ...]
    # Definition parameters that change what features compute without changing their metadata
    # (the repayment rules, money thresholds): part of the hash, so a model's catalog hash
    # tells features built under other rules apart.
    basis: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        """Reject a feature of another segment and a name defined twice."""
        seen: set[str] = set()
        for f in self.features:
            if f.spec.segment != self.segment:
                raise ValueError(
                    f"expected {self.segment} features only; got {f.spec.name!r} of segment "
                    f"{f.spec.segment!r}"
                )
            if f.spec.name in seen:
                raise ValueError(
                    f"expected unique feature names in the {self.segment} catalog; got "
                    f"{f.spec.name!r} twice"
                )
            seen.add(f.spec.name)

    @property
    def specs(self) -> list[FeatureSpec]:
        """The features' metadata, in definition order."""
        return [f.spec for f in self.features]

    @property
    def names(self) -> list[str]:
        """The ordered feature names."""
        return [f.spec.name for f in self.features]

    def expressions(self) -> list[pl.Expr]:
        """The features' expressions, each aliased to its name."""
        return [f.expression.alias(f.spec.name) for f in self.features]

    @property
    def hash(self) -> str:
        """A short hash of the catalog metadata and basis: tags a model with its catalog."""
        specs = [asdict(s) for s in self.specs]
        payload = json.dumps([specs, dict(self.basis)] if self.basis else specs, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass
class CatalogBuilder:
    """Collects one segment's features in definition order; :meth:`build` gives the catalog."""

    segment: str
    basis: tuple[tuple[str, object], ...] = ()
    features: list[Feature] = field(default_factory=list)

    def declare(
        self,
        name: str,
        expression: pl.Expr,
        *,
        dimension: str,
        monotone: int,
        description: str,
        reason: str,
        window_days: int | None = None,
        family: str = "",
    ) -> Feature:
        """Add one feature given as an expression; return it.

        A family (the same measure over several windows, the same ratio, ...) is one loop of
        ``declare`` calls with names, descriptions and reasons formatted per member.
        """
        _check(self.segment, dimension, monotone)
        if not description.strip():
            raise ValueError(f"expected a description of feature {name!r}; got an empty one")
        spec = FeatureSpec(
            name=name,
            segment=self.segment,
            dimension=dimension,
            window_days=window_days,
            monotone=monotone,
            description=" ".join(description.split()),
            reason=reason,
            family=family,
        )
        feature = Feature(spec, expression)
        self.features.append(feature)
        return feature

    def per_window(
        self,
        windows: Sequence[int],
        name: str,
        expression: Callable[[int], pl.Expr],
        *,
        dimension: str,
        monotone: int,
        description: str,
        reason: str,
        family: str,
    ) -> list[Feature]:
        """Add one feature per window; ``name``, ``description``, ``reason`` hold ``{w}``."""
        return [
            self.declare(
                name.format(w=w),
                expression(w),
                dimension=dimension,
                monotone=monotone,
                description=description.format(w=w),
                reason=reason.format(w=w),
                window_days=w,
                family=family,
            )
            for w in windows
        ]

    def build(self) -> Catalog:
        """The catalog of the features added so far."""
        return Catalog(self.segment, tuple(self.features), self.basis)


def markdown(catalogs: Iterable[Catalog]) -> str:
    """The catalog page (docs/features.md): one table per segment, grouped by dimension."""
    lines = [
        "# Feature catalog",
        "",
        "Generated by `longtail features --catalog` from the catalog in `features/`; do not edit.",
        "Every feature uses only events strictly before the snapshot's `as_of`. *Direction* is",
        "the monotone constraint on the score: `+` a higher value never lowers the score, `-` it",
        "never raises it, `0` unconstrained. Money is in the log's currency; windows are in days.",
        "",
    ]
    for catalog in catalogs:
        segment, segment_specs = catalog.segment, catalog.specs
        lines += [f"## {segment.capitalize()} ({len(segment_specs)} features)", ""]
        for dimension in DIMENSIONS:
            chosen = [s for s in segment_specs if s.dimension == dimension]
            if not chosen:
                continue
            lines += [
                f"### {dimension.replace('_', ' ')} ({len(chosen)})",
                "",
                "| feature | family | window | direction | description | reason text |",
                "|---|---|---|---|---|---|",
            ]
            for s in chosen:
                direction = {1: "+", -1: "-", 0: "0"}[s.monotone]
                window = "" if s.window_days is None else str(s.window_days)
                lines.append(
                    f"| `{s.name}` | {s.family} | {window} | {direction} | {s.description} "
                    f"| {s.reason} |"
                )
            lines.append("")
    return "\n".join(lines)
