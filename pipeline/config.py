"""Typed, frozen settings loaded once from params.yaml.

Each stage receives only its own slice (``settings.train``, ``settings.limits["merchant"]``...),
never the whole object as a global.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.labels import LabelParams
from models.limits import LimitPolicy
from models.scaling import ScalingParams
from models.split import SplitParams
from models.train import TrainParams

Segment = Literal["merchant", "consumer"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorldParams(_Frozen):
    """Size and seed of the synthetic world the demo generates."""

    merchants: int = Field(gt=0)
    consumers: int = Field(gt=0)
    months: int = Field(gt=0)
    seed: int = 42
    start: dt.date = dt.date(2023, 1, 1)


class ValidationParams(_Frozen):
    """Validation settings; reference_time is 'now' for the future-timestamp rule."""

    reference_time: dt.datetime | None = None


class FeatureParams(_Frozen):
    """Window lengths (days) of the windowed aggregates."""

    windows: tuple[int, ...] = (7, 30, 90, 180, 365)


class ModelParams(_Frozen):
    """Training and calibration."""

    calibration: Literal["isotonic", "platt"] = "isotonic"
    train: TrainParams = TrainParams()


class ScoringParams(_Frozen):
    """Batch scoring: the date (null: the end of the observed log) and segments."""

    as_of: dt.date | None = None
    segments: tuple[Segment, ...] = ("merchant", "consumer")


class MlflowParams(_Frozen):
    """Tracking store and experiment; MLFLOW_TRACKING_URI overrides the URI."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "longtail"


class Settings(_Frozen):
    """Everything tunable, as read from params.yaml."""

    data_dir: Path = Path("data")
    world: WorldParams
    validation: ValidationParams = ValidationParams()
    features: FeatureParams = FeatureParams()
    label: LabelParams = LabelParams()
    split: SplitParams = SplitParams()
    model: ModelParams = ModelParams()
    scaling: ScalingParams = ScalingParams()
    limits: dict[Segment, LimitPolicy]
    scoring: ScoringParams = ScoringParams()
    mlflow: MlflowParams = MlflowParams()


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or does not match the settings schema."""


def load_settings(path: Path = Path("params.yaml"), **overrides: object) -> Settings:
    """Read and validate params.yaml; top-level ``overrides`` replace whole sections."""
    if not path.exists():
        raise ConfigError(f"expected a params file at {path}; it does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"expected valid YAML in {path}; got {exc}") from exc
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
