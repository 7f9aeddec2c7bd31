"""The feature catalog as a value: each segment's features with their metadata and expressions.

A feature is a polars expression over the per-snapshot aggregate frame of its segment, named
for its output column, with its metadata (segment, dimension, window, monotone direction,
reason text) beside it. A segment's definitions build their :class:`Catalog` with a
:class:`CatalogBuilder` (its ``declare`` / ``per_window`` return what they add); the catalog drives
LightGBM's monotone constraints, the reason codes, the per-dimension sub-scores, recourse (which
features an entity controls: :class:`Actionability`) and the generated catalog page. Nothing
here knows any segment's definitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
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
# Who an entity is and whom it deals with are never its to change: recourse may not ask it to
# (a catalog declaring a feature of these dimensions actionable is refused).
NEVER_ACTIONABLE: tuple[str, ...] = ("identity", "connections")
# The usual rule: an entity controls how it trades and how money comes, stays and goes, not who
# it is, whom it deals with or the repayment record already made (a catalog's exceptions follow).
TRADING_AND_MONEY: dict[str, bool] = {
    "credit_history": False,
    "behaviour": True,
    "ability_to_pay": True,
    "identity": False,
    "connections": False,
}


@dataclass(frozen=True)
class FeatureSpec:
    """Metadata of one feature.

    ``monotone`` is the direction of the feature's effect on the *score* expected by the risk
    policy: +1 means a higher value may never lower the score (never raises the PD), -1 means a
    higher value may never raise the score, 0 leaves the model free. ``actionable`` says whether
    the entity controls the feature (its refund rate, its balance, the loan it asks for) rather
    than it being a fact about it (age, tenure, region, its counterparties, defaults already on
    record): recourse only ever suggests changing actionable features. It defaults to False so a
    spec saved before the flag existed suggests nothing.
    """

    name: str
    segment: str
    dimension: str
    window_days: int | None
    monotone: int
    description: str
    reason: str
    family: str = ""
    actionable: bool = False

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
class Actionability:
    """Which features an entity controls, declared once per catalog: a rule and its exceptions.

    Every dimension gets an explicit default (all five must be named, so nothing is guessed);
    a family's entry overrides its dimension's default, a feature's entry (by name) overrides
    both. Identity and connections may never be actionable, whatever the entries say. A
    declaration may also pass ``actionable=`` itself, which wins over all of these.
    """

    dimensions: Mapping[str, bool]
    families: Mapping[str, bool] = field(default_factory=dict)
    features: Mapping[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse a policy that leaves a dimension out or makes an identity fact actionable."""
        if set(self.dimensions) != set(DIMENSIONS):
            raise ValueError(
                f"expected an actionable default for each of {DIMENSIONS}; got "
                f"{sorted(self.dimensions)}"
            )
        wrong = [d for d in NEVER_ACTIONABLE if self.dimensions[d]]
        if wrong:
            raise ValueError(f"expected {NEVER_ACTIONABLE} never actionable; got {wrong} True")

    def of(self, name: str, dimension: str, family: str) -> bool:
        """Whether the feature ``name`` of ``dimension`` and ``family`` is actionable."""
        if name in self.features:
            return self.features[name]
        if family in self.families:
            return self.families[family]
        return self.dimensions[dimension]


def _actionable(
    name: str, dimension: str, family: str, given: bool | None, policy: Actionability | None
) -> bool:
    if given is not None:
        flag = given
    elif policy is not None:
        flag = policy.of(name, dimension, family)
    else:
        raise ValueError(
            f"expected feature {name!r} to say whether it is actionable (actionable= or the "
            "builder's Actionability); got neither"
        )
    if flag and dimension in NEVER_ACTIONABLE:
        raise ValueError(
            f"expected {dimension} features never actionable; got {name!r} declared actionable"
        )
    return flag


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
    actionable: Actionability | None = None
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
        actionable: bool | None = None,
    ) -> Feature:
        """Add one feature given as an expression; return it.

        A family (the same measure over several windows, the same ratio, ...) is one loop of
        ``declare`` calls with names, descriptions and reasons formatted per member.
        ``actionable`` (None: the builder's :class:`Actionability` decides) says whether the
        entity controls the feature; with neither, the declaration is refused.
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
            actionable=_actionable(name, dimension, family, actionable, self.actionable),
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
        actionable: bool | None = None,
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
                actionable=actionable,
            )
            for w in windows
        ]

    def build(self) -> Catalog:
        """The catalog of the features added so far.

        Refuses an :class:`Actionability` entry naming no feature or family of the catalog (a
        typo or a stale exception would otherwise be silently ignored).
        """
        if self.actionable is not None:
            names = {f.spec.name for f in self.features}
            families = {f.spec.family for f in self.features}
            stale = sorted(set(self.actionable.features) - names) + sorted(
                set(self.actionable.families) - families
            )
            if stale:
                raise ValueError(
                    f"expected the {self.segment} actionable exceptions to name its features or "
                    f"families; got unknown {stale}"
                )
        return Catalog(self.segment, tuple(self.features), self.basis)


def markdown(catalogs: Iterable[Catalog]) -> str:
    """The catalog page (docs/features.md): one table per segment, grouped by dimension."""
    lines = [
        "# Feature catalog",
        "",
        "Generated by `longtail features --catalog` from the catalog in `features/`; do not edit.",
        "Every feature uses only events strictly before the snapshot's `as_of`. *Direction* is",
        "the monotone constraint on the score: `+` a higher value never lowers the score, `-` it",
        "never raises it, `0` unconstrained. *Actionable*: the entity controls the feature, so",
        "recourse may suggest changing it (identity and connections never are). Money is in the",
        "log's currency; windows are in days.",
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
                "| feature | family | window | direction | actionable | description "
                "| reason text |",
                "|---|---|---|---|---|---|---|",
            ]
            for s in chosen:
                direction = {1: "+", -1: "-", 0: "0"}[s.monotone]
                window = "" if s.window_days is None else str(s.window_days)
                actionable = "yes" if s.actionable else "no"
                lines.append(
                    f"| `{s.name}` | {s.family} | {window} | {direction} | {actionable} "
                    f"| {s.description} | {s.reason} |"
                )
            lines.append("")
    return "\n".join(lines)
