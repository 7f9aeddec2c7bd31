"""Typed, frozen settings loaded once from params.yaml, and the view each stage gets of them.

A stage module declares the params sections it reads (``PARAMS = ("features", "label")``) and
wraps its function in :func:`uses`: the function body then sees a :class:`Sections` view holding
only those sections (plus ``data_dir``), and touching any other section raises
:class:`UndeclaredSection`. dvc.yaml's ``params:`` of the stage must list the same sections
(tests/test_dvc_truth.py checks both directions on a run of the whole chain).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Concatenate, Literal, ParamSpec, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from features.contract.segments import NAMES
from models.baseline import BaselineParams
from models.fairness import FairnessParams
from models.labels import LabelParams
from models.limits import LimitPolicy
from models.scaling import ScalingParams
from models.split import SplitParams
from models.stability import Levels
from models.train import TrainParams


def _known_segment(name: str) -> str:
    """A segment name of :mod:`features.contract.segments` (the one list of segments)."""
    if name not in NAMES:
        raise ValueError(f"expected a segment in {list(NAMES)}; got {name!r}")
    return name


Segment = Annotated[str, AfterValidator(_known_segment)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorldBias(_Frozen):
    """A group disparity planted in the synthetic world, for the fairness tests.

    Members of ``group`` of ``attribute`` (``gender``: ``female`` or ``male``) get traits that
    raise the additive part of their log-odds of default by ``ln(pd_multiplier)``, in ways the
    log shows (``world.groups.GroupBias``).
    """

    attribute: Literal["gender"] = "gender"
    group: Literal["female", "male"]
    pd_multiplier: float = Field(gt=0)


class WorldParams(_Frozen):
    """Size, seed and flavour of the synthetic world the demo generates.

    ``flavour`` is ``platform`` (a payment platform's merchants and consumers, with instalment
    schedules) or ``bank`` (a retail bank's consumers: current-account statements and loan
    outcomes, no merchant tables; ``merchants`` is then not used). The values are the world's
    ``world.synth.FLAVOURS``, restated here because production never imports the world.
    ``bias`` (null: none) plants a group disparity (:class:`WorldBias`).
    """

    merchants: int = Field(gt=0)
    consumers: int = Field(gt=0)
    months: int = Field(gt=0)
    seed: int = 42
    start: dt.date = dt.date(2023, 1, 1)
    flavour: Literal["platform", "bank"] = "platform"
    bias: WorldBias | None = None


class ValidationParams(_Frozen):
    """Validation settings; reference_time is 'now' for the future-timestamp rule.

    ``chunk_rows``: a transaction log with more rows is validated that many rows at a time
    (same result, memory of one chunk); null reads every log whole.
    """

    reference_time: dt.datetime | None = None
    chunk_rows: int | None = Field(default=5_000_000, gt=0)


class FeatureParams(_Frozen):
    """Window lengths (days) of the windowed aggregates, and entity chunks.

    ``chunks`` entity buckets are built one after the other: more chunks use less memory on
    logs larger than RAM and give the same features.
    """

    windows: tuple[int, ...] = (7, 30, 90, 180, 365)
    chunks: int = Field(default=1, ge=1)
    delinquent_dpd: int = Field(default=30, gt=0)
    merchant_net_margin: float = Field(default=0.2, gt=0, le=1)
    consumer_low_balance_share: float = Field(default=0.25, ge=0)


class ComputeParams(_Frozen):
    """Where the feature, training and scoring work runs (see :mod:`pipeline.compute`).

    ``engine`` is ``local`` (this process, the default) or ``dask``; with ``dask``, ``address``
    is an existing scheduler (``tcp://scheduler:8786``) or null for a LocalCluster of
    ``workers`` processes with ``threads_per_worker`` threads and ``memory_limit`` each.
    ``partitions`` is how many entity-hash partitions the log is cut into (and row blocks for
    training and scoring). LightGBM's distributed training listens on ``listen_port`` plus the
    worker's index on its host (explicit ports: lightgbm.dask's port search can race); its
    number of rounds comes from a local early-stopped fit on at most ``rounds_sample`` training
    rows. ``timeout`` (seconds) bounds connecting to the scheduler and each distributed step.
    """

    engine: Literal["local", "dask"] = "local"
    address: str | None = None
    partitions: int = Field(default=8, ge=1)
    workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "3GB"
    listen_port: int = Field(default=12400, ge=1024, le=65000)
    rounds_sample: int = Field(default=1_000_000, ge=1000)
    timeout: int = Field(default=3600, gt=0)


class ModelParams(_Frozen):
    """Training, calibration and the scorecard baseline."""

    calibration: Literal["isotonic", "platt"] = "platt"
    train: TrainParams = TrainParams()
    baseline: BaselineParams = BaselineParams()


class MonitoringParams(_Frozen):
    """Thresholds the evaluation checks on the out-of-time test.

    ``max_ece`` is an acceptance limit (the score's train-to-test PSI is judged by the one
    stability rule at the ``drift`` levels); ``min_auc_lift`` is
    how far the model must beat the scorecard baseline and ``max_ceiling_gap`` how close it
    must come to the true-PD ceiling (synthetic data only); ``auc_drop_alert`` is the fall in
    AUC from the test figure that should trigger a review in production. The ECE check is
    size-aware: it fails only above both ``max_ece`` and the ``ece_null_quantile`` of the ECE
    a perfectly calibrated model shows on the same loans (``ece_null_draws`` seeded Bernoulli
    draws from the model's own PDs; :func:`models.evaluate.ece_null`).
    """

    max_ece: float = Field(0.01, gt=0)
    min_auc_lift: float = Field(0.02, ge=0)
    max_ceiling_gap: float = Field(0.03, ge=0)
    auc_drop_alert: float = Field(0.03, gt=0)
    top_features: int = Field(10, gt=0)
    ece_null_quantile: float = Field(0.95, gt=0, lt=1)
    ece_null_draws: int = Field(200, ge=10)


class ScoringParams(_Frozen):
    """Batch scoring: the date (null: the end of the observed log), segments, reason codes.

    With a ``challenger`` alias on another version than the champion, the book is scored by
    both (:mod:`pipeline.challenger`); ``challenger_cell`` is the share of entities (drawn by a
    stable hash of the entity id salted with ``challenger_seed``, so an entity stays in or out
    of the cell from run to run) whose decision the challenger makes, 0 for none.

    ``compiled`` predicts through the lleaves-compiled model (cached per model version).

    ``recourse``: for every entity below its segment's approval cut-off, the smallest change
    in the features it controls that would reach it (:func:`models.recourse.recourse`).
    """

    as_of: dt.date | None = None
    segments: tuple[Segment, ...] = NAMES
    reasons: bool = True
    recourse: bool = False
    max_days_after_log: int = Field(3, ge=0)
    challenger_cell: float = Field(0.0, ge=0, le=1)
    challenger_seed: int = Field(0, ge=0)
    compiled: bool = False


class ReferenceLoan(_Frozen):
    """The loan a whole book is scored for: principal (the log's currency) and term (months)."""

    principal: float = Field(gt=0, allow_inf_nan=False)
    term_months: int = Field(gt=0, le=360)


class ApplicationParams(_Frozen):
    """The loan asked for when there is no application (params ``application``).

    ``reference_loan``: per segment, the product's typical loan. Training reads each loan's own
    principal and term and an online decision the applicant's request; batch scoring and the
    book snapshot of the features stage have no application, so every entity is scored for
    this loan (stated in the score manifest). Its principal is in the log's currency after the
    source mapping's ``currency.scale``, like every amount in params.
    """

    reference_loan: dict[Segment, ReferenceLoan] = Field(default_factory=dict)


class RegistryParams(_Frozen):
    """The promotion gate: what a challenger must pass to become champion.

    ``auc_tolerance``: the challenger's out-of-time AUC may be at most this much below the
    champion's on the same rows. The challenger's score PSI between its training rows and the
    out-of-time test rows must not reach the ``drift`` alert level (the one stability rule).
    ``require_monotone``: the challenger must keep every catalog monotone constraint.
    """

    auc_tolerance: float = Field(default=0.005, ge=0)
    require_monotone: bool = True


class DriftParams(_Frozen):
    """The stability levels (PSI of the score, CSI of a feature) every stage judges by.

    From ``warn`` on a population is ``warning``, from ``alert`` on ``alert``
    (:func:`models.stability.status`): in the evaluation report (training vs out-of-time
    rows), in the promotion gate (a challenger at ``alert`` is refused) and at scoring time,
    where a warning is logged and recorded and the manifest records an alert. ``fail_on``
    decides which alerts make ``longtail score`` exit non-zero (exit code 3, after
    publishing), so the scheduler marks the run failed and someone looks: ``score`` (the score
    PSI, the default: features such as tenure drift by construction between loan applicants
    and the whole book), ``any`` (score or any feature) or ``never``.
    """

    bins: int = Field(default=10, ge=2)
    score_psi_warn: float = Field(default=0.10, gt=0)
    score_psi_alert: float = Field(default=0.25, gt=0)
    feature_csi_warn: float = Field(default=0.10, gt=0)
    feature_csi_alert: float = Field(default=0.25, gt=0)
    fail_on: Literal["score", "any", "never"] = "score"

    @model_validator(mode="after")
    def _levels_ordered(self) -> DriftParams:
        """Both level pairs are valid :class:`~models.stability.Levels` (alert at or above warn)."""
        _ = self.score_levels, self.feature_levels
        return self

    @property
    def score_levels(self) -> Levels:
        """The levels for the score's PSI."""
        return Levels(warn=self.score_psi_warn, alert=self.score_psi_alert)

    @property
    def feature_levels(self) -> Levels:
        """The levels for a feature's CSI."""
        return Levels(warn=self.feature_csi_warn, alert=self.feature_csi_alert)


class MonitorParams(_Frozen):
    """Performance before labels and after (``longtail monitor``, :mod:`models.monitoring`).

    A loan issued within ``issue_window_days`` from a scoring date is judged by the PD its
    entity got that day. A cohort with ``min_loans`` matured loans or more is ``alert`` when its
    realised bad rate parts from the expected by more than ``bad_rate_gap`` (or its AUC by more
    than ``auc_gap``) *and* by more than ``z_alert`` standard errors. Vintage curves count loans
    ever ``vintage_dpd`` days past due by month on book, up to ``months_on_book``; roll rates
    move between the days-past-due buckets cut at ``roll_buckets``. ``fail_on_alert`` makes
    ``longtail monitor`` exit 4 on an alert (after publishing).
    """

    issue_window_days: int = Field(30, gt=0)
    min_loans: int = Field(100, gt=0)
    bad_rate_gap: float = Field(0.02, ge=0)
    auc_gap: float = Field(0.05, ge=0)
    z_alert: float = Field(3.0, ge=0)
    vintage_dpd: tuple[int, ...] = (30, 90)
    months_on_book: int = Field(12, gt=0)
    roll_buckets: tuple[int, ...] = (1, 30, 60, 90)
    fail_on_alert: bool = True

    @model_validator(mode="after")
    def _increasing(self) -> MonitorParams:
        """Levels and bucket edges are positive and increasing."""
        for name in ("vintage_dpd", "roll_buckets"):
            values = list(getattr(self, name))
            if not values or values != sorted(set(values)) or values[0] < 1:
                raise ValueError(f"expected {name} increasing from 1 up; got {values}")
        return self


class ServeParams(_Frozen):
    """The online decision service (``longtail serve``; not a DVC stage).

    ``decision_store`` is a SQLAlchemy URL (null: ``sqlite:///<data_dir>/decisions.db``);
    ``alias`` the registry alias served, looked up every ``reload_seconds`` (0: loaded once);
    ``as_of`` freezes the decision date (null: tomorrow, UTC, so every event so far counts);
    ``max_batch`` caps how many queued requests one feature build takes together.
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    decision_store: str | None = None
    alias: str = "champion"
    reload_seconds: float = Field(30.0, ge=0)
    as_of: dt.date | None = None
    segments: tuple[Segment, ...] = NAMES
    max_batch: int = Field(32, ge=1)


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
    compute: ComputeParams = ComputeParams()
    label: LabelParams = LabelParams()
    split: SplitParams = SplitParams()
    model: ModelParams = ModelParams()
    monitoring: MonitoringParams = MonitoringParams()
    fairness: FairnessParams = FairnessParams()
    scaling: ScalingParams = ScalingParams()
    limits: dict[Segment, LimitPolicy]
    scoring: ScoringParams = ScoringParams()
    application: ApplicationParams = ApplicationParams()
    registry: RegistryParams = RegistryParams()
    drift: DriftParams = DriftParams()
    monitor: MonitorParams = MonitorParams()
    mlflow: MlflowParams = MlflowParams()
    serve: ServeParams = ServeParams()


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or does not match the settings schema."""


EXTENDS = "extends"


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on it: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The params file as a mapping, with the file it ``extends`` (if any) underneath it.

    A lender's params file holds only what differs from the project's: ``extends:
    ../../params.yaml`` (relative to the file) reads that file first and merges this one on it,
    so defaults are written once and a lender's copy cannot drift from them.
    """
    if not path.exists():
        raise ConfigError(f"expected a params file at {path}; it does not exist")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: {EXTENDS}: the files extend each other in a circle")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"expected valid YAML in {path}; got {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of params sections in {path}; got {type(raw)}")
    base = raw.pop(EXTENDS, None)
    if base is None:
        return raw
    return _merged(_read(path.parent / str(base), (*seen, path.resolve())), raw)


def load_settings(path: Path = Path("params.yaml"), **overrides: object) -> Settings:
    """Read and validate params.yaml; top-level ``overrides`` replace whole sections.

    A file may start from another with ``extends: <path>`` (see :func:`_read`).
    """
    raw = _read(path)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc


class UndeclaredSection(AttributeError):
    """A stage touched a params section it did not declare in ``PARAMS``."""


class Sections:
    """A read-only view of :class:`Settings` limited to the sections a stage declared."""

    __slots__ = ("_names", "_settings")

    def __init__(self, settings: Settings | Sections, names: tuple[str, ...]) -> None:
        unknown = [n for n in names if n not in Settings.model_fields or n == "data_dir"]
        if unknown:
            raise ValueError(
                f"expected params sections of {list(Settings.model_fields)}; got {unknown}"
            )
        base = settings._settings if isinstance(settings, Sections) else settings
        if isinstance(settings, Sections):
            missing = [n for n in names if n not in settings._names]
            if missing:
                raise UndeclaredSection(
                    f"expected sections {missing} in the view {settings._names}"
                )
        object.__setattr__(self, "_settings", base)
        object.__setattr__(self, "_names", tuple(names))

    @property
    def data_dir(self) -> Path:
        """The data folder every stage works under."""
        return self._settings.data_dir

    def __getattr__(self, name: str) -> Any:
        if name in self._names:
            return getattr(self._settings, name)
        raise UndeclaredSection(
            f"expected this stage to read only {list(self._names)} of params.yaml (its PARAMS); "
            f"it asked for {name!r}: declare it in PARAMS and in dvc.yaml's params"
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("settings are read-only")


P = ParamSpec("P")
R = TypeVar("R")


def uses(
    *names: str,
) -> Callable[
    [Callable[Concatenate[Sections, P], R]], Callable[Concatenate[Settings | Sections, P], R]
]:
    """Give a stage function a :class:`Sections` view of only ``names``; record them on it.

    Callers pass the whole :class:`Settings` (or a wider view); the body sees its sections
    only. The declared names are kept as ``function.params`` (tests/test_dvc_truth.py holds
    them against dvc.yaml).
    """

    def wrap(
        function: Callable[Concatenate[Sections, P], R],
    ) -> Callable[Concatenate[Settings | Sections, P], R]:
        @functools.wraps(function)
        def stage(settings: Settings | Sections, *args: P.args, **kwargs: P.kwargs) -> R:
            return function(Sections(settings, names), *args, **kwargs)

        stage.params = names  # type: ignore[attr-defined]
        return stage

    return wrap
