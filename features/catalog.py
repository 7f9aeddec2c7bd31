"""The feature catalog: every feature is one decorated function named for its output column.

A feature function returns a polars expression over the per-snapshot aggregate frame built by
:mod:`features.engine`. Its metadata (segment, dimension, window, monotone direction, reason text)
sits beside it in the decorator, and the catalog drives LightGBM's monotone constraints, the
reason codes, the per-dimension sub-scores and the generated catalog page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import polars as pl

DIMENSIONS: tuple[str, ...] = (
    "credit_history",
    "behaviour",
    "ability_to_pay",
    "identity",
    "connections",
)
SEGMENTS: tuple[str, ...] = ("merchant", "consumer")


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


_REGISTRY: dict[tuple[str, str], tuple[FeatureSpec, Callable[[], pl.Expr]]] = {}


def _check(segment: str, dimension: str, monotone: int) -> None:
    if segment not in SEGMENTS:
        raise ValueError(f"expected segment in {SEGMENTS}; got {segment!r}")
    if dimension not in DIMENSIONS:
        raise ValueError(f"expected dimension in {DIMENSIONS}; got {dimension!r}")
    if monotone not in (-1, 0, 1):
        raise ValueError(f"expected monotone in (-1, 0, 1); got {monotone!r}")


def declare(
    name: str,
    expression: pl.Expr,
    *,
    segment: str,
    dimension: str,
    monotone: int,
    description: str,
    reason: str,
    window_days: int | None = None,
    family: str = "",
) -> None:
    """Register one feature given as an expression: how feature families are declared.

    A family (the same measure over several windows, the same ratio, ...) is one loop of
    ``declare`` calls with names, descriptions and reasons formatted per member.
    """
    _check(segment, dimension, monotone)
    if not description.strip():
        raise ValueError(f"feature {name} needs a description")
    key = (segment, name)
    if key in _REGISTRY:
        raise ValueError(f"feature {name!r} is defined twice for segment {segment!r}")
    spec = FeatureSpec(
        name=name,
        segment=segment,
        dimension=dimension,
        window_days=window_days,
        monotone=monotone,
        description=" ".join(description.split()),
        reason=reason,
        family=family,
    )
    _REGISTRY[key] = (spec, lambda: expression)


def feature(
    *,
    segment: str,
    dimension: str,
    monotone: int,
    reason: str,
    window_days: int | None = None,
    family: str = "",
) -> Callable[[Callable[[], pl.Expr]], Callable[[], pl.Expr]]:
    """Register a feature function in the catalog.

    The function's name is the output column and its docstring the description; ``reason`` is
    the plain-language text shown when the feature pulls a score down.
    """
    _check(segment, dimension, monotone)

    def register(fn: Callable[[], pl.Expr]) -> Callable[[], pl.Expr]:
        doc = (fn.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"feature {fn.__name__} needs a docstring (its description)")
        spec = FeatureSpec(
            name=fn.__name__,
            segment=segment,
            dimension=dimension,
            window_days=window_days,
            monotone=monotone,
            description=" ".join(doc.split()),
            reason=reason,
            family=family,
        )
        key = (segment, spec.name)
        if key in _REGISTRY and _REGISTRY[key][1].__qualname__ != fn.__qualname__:
            raise ValueError(f"feature {spec.name!r} is defined twice for segment {segment!r}")
        _REGISTRY[key] = (spec, fn)
        return fn

    return register


def _load_definitions() -> None:
    # Importing the definition modules fills the registry.
    from features import consumer, merchant  # noqa: F401


def specs(segment: str) -> list[FeatureSpec]:
    """The catalog of a segment, in definition order."""
    if segment not in SEGMENTS:
        raise ValueError(f"expected segment in {SEGMENTS}; got {segment!r}")
    _load_definitions()
    return [spec for (seg, _), (spec, _) in _REGISTRY.items() if seg == segment]


def expressions(segment: str) -> list[pl.Expr]:
    """The expressions of a segment's features, each aliased to its name."""
    _load_definitions()
    return [fn().alias(spec.name) for (seg, _), (spec, fn) in _REGISTRY.items() if seg == segment]


def names(segment: str) -> list[str]:
    """The ordered feature names of a segment."""
    return [s.name for s in specs(segment)]


def catalog_hash(segment: str) -> str:
    """A short hash of a segment's catalog metadata, to tag models with the catalog they used."""
    payload = json.dumps([asdict(s) for s in specs(segment)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def markdown() -> str:
    """The catalog page (docs/features.md): one table per segment, grouped by dimension."""
    lines = [
        "# Feature catalog",
        "",
        "Generated by `longtail features --catalog` from the catalog in `features/`; do not edit.",
        "Every feature uses only events strictly before the snapshot's `as_of`. *Direction* is",
        "the monotone constraint on the score: `+` a higher value never lowers the score, `-` it",
        "never raises it, `0` unconstrained. Money is in yuan; windows are in days.",
        "",
    ]
    for segment in SEGMENTS:
        segment_specs = specs(segment)
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
