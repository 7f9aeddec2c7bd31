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
    """Score scaling and the band table."""

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

    @model_validator(mode="after")
    def _bands_tile_the_range(self) -> ScalingParams:
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
    def factor(self) -> float:
        """Points per unit of log-odds."""
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        """The score at even odds (1:1)."""
        return self.base_score - self.factor * math.log(self.base_odds)


def pd_to_score(pd_: np.ndarray, params: ScalingParams) -> np.ndarray:
    """Integer scores in [min_score, max_score], never increasing as PD increases."""
    pd_ = np.clip(np.asarray(pd_, dtype=float), 1e-12, 1 - 1e-12)
    raw = params.offset + params.factor * np.log((1 - pd_) / pd_)
    return np.clip(np.floor(raw + 0.5), params.min_score, params.max_score).astype(np.int32)


def score_to_band(score: np.ndarray, params: ScalingParams) -> np.ndarray:
    """The band name of each score (scores are assumed inside the range)."""
    bands = sorted(params.bands, key=lambda b: b.min)
    starts = np.array([b.min for b in bands[1:]])
    names = np.array([b.name for b in bands])
    return names[np.searchsorted(starts, np.asarray(score), side="right")]
