"""The Scorer: raw features in, one decision per entity out.

pd, score, band, limit, binding constraint, four reason codes and a sub-score per dimension.
Batch scoring and the registered MLflow model both use this one class. It is saved as the
booster's own text file plus a JSON of plain data (features, catalog metadata, calibrator,
scaling, the product policy: limits and price) so every score can be reproduced without
unpickling anything.

Each decision carries its risk-based price (``apr``, ``priced_out``; :mod:`models.pricing`), from
the segment's one product policy (limits and price) saved in ``scorer.json``.

Reasons and sub-scores come from per-feature attributions: ``fast`` (path attributions gathered
through ``pred_leaf``, the default, as fast as ``predict``) or ``exact`` (LightGBM's TreeSHAP,
the reference, hundreds of times slower); see :mod:`models.attribution`. They are computed in
chunks of ``EXPLAIN_CHUNK`` rows, so a million entities never hold a million-row attribution
matrix, and picked by integer catalog index (strings only when the columns are built).

Compiled inference: ``compiled=<cache folder>`` predicts through the booster compiled by lleaves
(LLVM) instead of LightGBM's own ``predict``, and attributes (``fast``) through one compiled
forest per feature (:class:`models.attribution.CompiledPaths`) instead of ``pred_leaf`` and a
gather. The binaries are cached in that folder under a hash of the booster's text, the host CPU
and the lleaves and llvmlite versions, so each model version is compiled once (seconds for a
small model, minutes for a large one) and a changed model is never served by a stale binary.
The caller chooses the folder; nothing is cached anywhere else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from features.catalog import DIMENSIONS, FeatureSpec
from features.definitions import POLICY_INPUTS
from models.attribution import (
    ATTRIBUTIONS,
    Attribution,
    CompiledPaths,
    PathAttribution,
    compiled_forest,
    exact_contributions,
    forest_folder,
)
from models.calibrate import Calibrator
from models.limits import LimitPolicy, loan_limits
from models.pricing import risk_based_price
from models.reasons import (
    N_REASONS,
    calibrated_factor,
    dimension_points,
    reason_labels,
    top_reason_indices,
)
from models.scaling import ScalingParams, pd_to_score, score_to_band

BOOSTER_FILE = "booster.txt"
SCORER_FILE = "scorer.json"
EXPLAIN_CHUNK = 131_072  # rows attributed at a time: bounds memory (rows x trees leaf indices)
PRICE_COLUMNS = (
    "apr",
    "priced_out",
)  # what score() adds for the price (the service passes them on)


@dataclass(frozen=True)
class Scorer:
    """A trained segment model with everything needed to turn features into decisions."""

    segment: str
    specs: tuple[FeatureSpec, ...]
    booster: lgb.Booster
    calibrator: Calibrator
    scaling: ScalingParams
    policy: LimitPolicy
    _compiled: dict[tuple[str, Path], Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        """Refuse a scorer whose parts disagree (booster vs catalog, policy vs band table)."""
        booster_names = self.booster.feature_name()
        if booster_names != self.feature_names:
            raise ValueError(
                f"expected the booster's features to be the catalog's {len(self.specs)} "
                f"features in order; got {len(booster_names)} ({booster_names[:5]}...)"
            )
        self.policy.check_bands(
            self.scaling.band_order, self.scaling.min_score, self.scaling.max_score
        )

    @cached_property
    def paths(self) -> PathAttribution:
        """The fast attribution's per-leaf table, built once per loaded model."""
        return PathAttribution.from_booster(self.booster)

    @cached_property
    def expected_raw(self) -> float:
        """The model's expected raw log-odds over its training data (the attribution bias)."""
        return self.paths.expected_value

    @cached_property
    def baseline_score(self) -> int:
        """The score of the average applicant; the sub-scores are points against it."""
        pd_ = self.calibrator.predict(np.array([self.expected_raw]))
        return int(pd_to_score(pd_, self.scaling)[0])

    @cached_property
    def points_per_log_odds(self) -> float:
        """Score points per unit of raw log-odds, calibration included (see calibrated_factor)."""
        if self.calibrator.method == "platt":
            return self.scaling.factor * self.calibrator.a if self.calibrator.a > 0 else 0.0
        return calibrated_factor(
            self.scaling.factor, np.asarray(self.calibrator.x), np.asarray(self.calibrator.y)
        )

    @property
    def feature_names(self) -> list[str]:
        """The model's features, in the order the booster expects them."""
        return [s.name for s in self.specs]

    def check_columns(self, frame: pl.DataFrame) -> None:
        """Refuse a frame that lacks a model feature or policy input, before any scoring."""
        missing = [c for c in (*self.feature_names, *POLICY_INPUTS) if c not in frame.columns]
        if missing:
            raise ValueError(
                f"expected the {self.segment} model's columns; missing {missing[:10]}"
                + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            )

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """The feature matrix in model order (nulls as NaN)."""
        return frame.select(pl.col(self.feature_names).cast(pl.Float64)).to_numpy()

    def contributions(
        self,
        frame: pl.DataFrame,
        *,
        attribution: Attribution = "fast",
        compiled: Path | None = None,
    ) -> np.ndarray:
        """Per-feature contributions (log-odds of default), ``(rows, features + 1)``, bias last.

        ``compiled`` (a cache folder) computes the fast attribution with compiled forests.
        """
        self.check_columns(frame)
        return self._contributions(self.matrix(frame), attribution, compiled)

    def _contributions(
        self, x: np.ndarray, attribution: Attribution, compiled: Path | None = None
    ) -> np.ndarray:
        if attribution == "fast" and compiled is not None:
            return self._compiled_part("attribution", Path(compiled)).contributions(x)
        if attribution == "fast":
            return self.paths.contributions(self.booster, x)
        if attribution == "exact":
            return exact_contributions(self.booster, x)
        raise ValueError(f"expected attribution in {ATTRIBUTIONS}; got {attribution!r}")

    def raw_scores(self, x: np.ndarray, *, compiled: Path | None = None) -> np.ndarray:
        """The booster's raw log-odds of ``x``: LightGBM's predict, or the compiled model's.

        ``compiled`` is the cache folder (see the module docstring); the loaded binary is kept
        on this Scorer, so only the first call per folder pays for loading (or compiling).
        """
        if compiled is None:
            return self.booster.predict(x, raw_score=True)
        forest = self._compiled_part("predict", Path(compiled))
        return forest.predict(np.ascontiguousarray(x, dtype=np.float64))

    def _compiled_part(self, part: str, cache: Path) -> Any:
        if (part, cache) not in self._compiled:
            if part == "predict":
                folder = forest_folder(self.booster, cache)
                made = compiled_forest(self.booster.model_to_string(), folder, "predict")
            else:
                made = CompiledPaths.build(self.booster, self.paths, cache)
            self._compiled[(part, cache)] = made
        return self._compiled[(part, cache)]

    def predict_pd(self, frame: pl.DataFrame, *, compiled: Path | None = None) -> np.ndarray:
        """Calibrated PDs (``compiled``: see :meth:`raw_scores`)."""
        self.check_columns(frame)
        return self.calibrator.predict(self.raw_scores(self.matrix(frame), compiled=compiled))

    def score(
        self,
        frame: pl.DataFrame,
        *,
        reasons: bool = True,
        attribution: Attribution = "fast",
        apply_cutoff: bool = True,
        compiled: Path | None = None,
    ) -> pl.DataFrame:
        """Decisions for every row of ``frame`` (which must hold the features and policy inputs).

        Keeps ``entity_id`` and ``as_of`` when present; an optional boolean ``consent`` column
        knocks out rows without consent (missing consent counts as none). With ``reasons=False``
        the reason and sub-score columns are left out (they cost a per-feature attribution);
        ``attribution`` picks the fast path attribution or exact TreeSHAP. ``apply_cutoff=False``
        gives the limit each row would get if approved (for a cut-off strategy table).
        ``compiled`` (a cache folder) predicts and attributes through lleaves-compiled forests:
        the same PDs and contributions (to the last few ulps of a sum), several times faster.

        The price columns: ``apr`` (the risk-based annual rate, null when priced out) and
        ``priced_out`` (no rate under the policy's ``max_apr`` covers the expected loss; such a
        row's limit is 0 with binding constraint ``priced_out`` unless an earlier knock-out
        applies).
        """
        if attribution not in ATTRIBUTIONS:
            raise ValueError(f"expected attribution in {ATTRIBUTIONS}; got {attribution!r}")
        self.check_columns(frame)
        x = self.matrix(frame)
        raw = self.raw_scores(x, compiled=compiled)
        pd_ = self.calibrator.predict(raw)
        score = pd_to_score(pd_, self.scaling)
        band = score_to_band(score, self.scaling)
        consent = (
            frame["consent"].fill_null(False).to_numpy()
            if "consent" in frame.columns
            else np.ones(frame.height, dtype=bool)
        )
        limit, binding = loan_limits(
            pd_=pd_,
            score=score,
            band=band,
            monthly_inflow=frame["monthly_inflow"].cast(pl.Float64).to_numpy(),
            monthly_free_cash_flow=frame["monthly_free_cash_flow"].cast(pl.Float64).to_numpy(),
            current_dpd=frame["current_dpd"].cast(pl.Float64).to_numpy(),
            consent=consent,
            policy=self.policy,
            apply_cutoff=apply_cutoff,
        )
        apr, priced_out = risk_based_price(
            pd_,
            lgd=self.policy.lgd,
            term_months=self.policy.term_months,
            policy=self.policy.pricing,
        )
        keys = [c for c in ("entity_id", "as_of") if c in frame.columns]
        out = frame.select(keys).with_columns(
            pl.lit(self.segment).alias("segment"),
            pl.Series("pd", pd_),
            pl.Series("score", score, dtype=pl.Int32),
            pl.Series("band", band, dtype=pl.String),
            pl.Series("limit", limit, dtype=pl.Float64),
            pl.Series("binding_constraint", binding, dtype=pl.String),
            pl.Series("apr", apr, dtype=pl.Float64, nan_to_null=True),
            pl.Series("priced_out", priced_out, dtype=pl.Boolean),
        )
        if not reasons:
            return out
        codes, points = self.explain(x, attribution, compiled=compiled)
        labels = pl.Series(reason_labels(self.specs), dtype=pl.String)
        return out.with_columns(
            *[labels.gather(codes[:, i]).alias(f"reason_{i + 1}") for i in range(N_REASONS)],
            *[
                pl.Series(f"sub_{d}", np.round(points[:, j], 1) + 0.0)
                for j, d in enumerate(DIMENSIONS)
            ],
        )

    def explain(
        self, x: np.ndarray, attribution: Attribution = "fast", *, compiled: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reason indices and sub-score points of the feature matrix ``x``, chunk by chunk.

        Indices ``(rows, N_REASONS)`` point into :func:`models.reasons.reason_labels` (its last
        entry, None, where fewer features are adverse); points ``(rows, dimensions)`` follow
        DIMENSIONS order.
        """
        n_rows, n_features = x.shape[0], len(self.specs)
        codes = np.empty((n_rows, N_REASONS), dtype=np.int64)
        points = np.empty((n_rows, len(DIMENSIONS)))
        floor = self.scaling.reason_min_points / self.scaling.factor
        for start in range(0, n_rows, EXPLAIN_CHUNK):
            part = slice(start, min(start + EXPLAIN_CHUNK, n_rows))
            contrib = self._contributions(x[part], attribution, compiled)
            found = top_reason_indices(contrib, n_features, N_REASONS, min_contribution=floor)
            codes[part] = np.where(found < 0, n_features, found)
            dims = dimension_points(contrib, self.specs, self.points_per_log_odds)
            points[part] = np.column_stack([dims[d] for d in DIMENSIONS])
        return codes, points

    def save(self, folder: Path) -> None:
        """Write the booster text file and the plain-data JSON into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))
        payload = {
            "segment": self.segment,
            "specs": [asdict(s) for s in self.specs],
            "calibrator": self.calibrator.to_dict(),
            "scaling": self.scaling.model_dump(mode="json"),
            "policy": self.policy.model_dump(mode="json"),
        }
        (folder / SCORER_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path) -> Scorer:
        """Read a scorer written by :meth:`save`."""
        payload = json.loads((folder / SCORER_FILE).read_text())
        return cls(
            segment=payload["segment"],
            specs=tuple(FeatureSpec(**s) for s in payload["specs"]),
            booster=lgb.Booster(model_file=str(folder / BOOSTER_FILE)),
            calibrator=Calibrator.from_dict(payload["calibrator"]),
            scaling=ScalingParams.model_validate(payload["scaling"]),
            policy=LimitPolicy.model_validate(payload["policy"]),
        )
