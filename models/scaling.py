"""Score scaling and bands: PD to a 350-950 integer score and a named band.

``score = offset + factor * ln((1 - pd) / pd)`` with ``factor = pdo / ln 2`` and the offset set
so that odds of ``base_odds`` (good:bad) score ``base_score``; clipped and rounded into the range.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Band(BaseModel):
    """One named band of the score range, inclusive at both ends."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    label: str
    min: int
    max: int


class ScalingParams(BaseModel):
    """Score scaling, the band table, and the smallest cost that makes a reason.

    ``base_odds`` (good:bad) score ``base_score`` and every ``pdo`` points double the odds;
    together they fix the offset. ``reason_min_points`` keeps a feature that cost the applicant
    less than that many points (on the model's own scale) out of the reasons, so a feature the
    model barely used is never named.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    base_score: float = 600.0
    base_odds: float = Field(50.0, gt=0)
    pdo: float = Field(40.0, gt=0)
    min_score: int = 350
    max_score: int = 950
    bands: tuple[Band, ...] = (
        Band(name="poor", label="较差", min=350, max=549),
        Band(name="fair", label="中等", min=550, max=599),
        Band(name="good", label="良好", min=600, max=649),
        Band(name="very_good", label="优秀", min=650, max=699),
        Band(name="excellent", label="极好", min=700, max=950),
    )
    reason_min_points: float = Field(0.5, ge=0)

    @model_validator(mode="after")
    def _bands_tile_the_range(self) -> ScalingParams:
        if self.min_score >= self.max_score:
            raise ValueError(
                f"expected min_score < max_score; got {self.min_score} and {self.max_score}"
            )
        if not self.bands:
            raise ValueError("expected at least one band; got none")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"expected unique band names; got {names}")
        for band in self.bands:
            if band.min > band.max:
                raise ValueError(
                    f"expected band {band.name} to have min <= max; got {band.min}-{band.max}"
                )
        bands = sorted(self.bands, key=lambda b: b.min)
        if bands[0].min != self.min_score or bands[-1].max != self.max_score:
            raise ValueError(
                f"expected bands to cover {self.min_score}-{self.max_score}; "
                f"got {bands[0].min}-{bands[-1].max}"
            )
        for lower, upper in itertools.pairwise(bands):
            if upper.min != lower.max + 1:
                raise ValueError(
                    f"expected band {upper.name} to start at {lower.max + 1}; got {upper.min}"
                )
        return self

    @property
    def band_order(self) -> tuple[str, ...]:
        """Band names from the lowest scores to the highest."""
        return tuple(b.name for b in sorted(self.bands, key=lambda b: b.min))

    @property
    def factor(self) -> float:
        """Points per unit of log-odds."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """The score at even odds (1:1)."""
        return self.base_score - self.factor * math.log(self.base_odds)


def pd_to_score(pd_: np.ndarray, params: ScalingParams) -> np.ndarray:
    """Integer scores in [min_score, max_score], never increasing as PD increases.

    A PD of exactly 0 or 1 maps to the top or bottom of the range; a PD outside [0, 1] or
    missing is refused, because a score must never be invented for it.
    """
    pd_ = np.asarray(pd_, dtype=float)
    bad = ~((pd_ >= 0) & (pd_ <= 1))  # also catches NaN
    if bad.any():
        raise ValueError(f"expected PDs in [0, 1]; got {pd_[bad][:5].tolist()}")
    pd_ = np.clip(pd_, 1e-300, 1.0)
    with np.errstate(divide="ignore"):
        log_odds = np.log1p(-pd_) - np.log(pd_)  # -inf at pd = 1
    raw = params.offset + params.factor * log_odds
    return np.clip(np.floor(raw + 0.5), params.min_score, params.max_score).astype(np.int32)


def score_to_band(score: np.ndarray, params: ScalingParams) -> np.ndarray:
    """The band name of each score, from the band table (the bands tile the score range)."""
    score = np.asarray(score)
    outside = (score < params.min_score) | (score > params.max_score)
    if outside.any():
        raise ValueError(
            f"expected scores in [{params.min_score}, {params.max_score}]; "
            f"got {score[outside][:5].tolist()}"
        )
    bands = sorted(params.bands, key=lambda b: b.min)
    starts = np.array([b.min for b in bands[1:]])
    names = np.array([b.name for b in bands], dtype=object)
    return names[np.searchsorted(starts, score, side="right")].astype(str)
