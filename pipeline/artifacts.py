"""What the train stage saves in a model folder besides the Scorer, and how later stages read it.

- ``training.json``: features, slices, importance, the MLflow run id.
- ``baseline.json`` (:data:`models.baseline.BASELINE_FILE`): the WoE scorecard, its calibrator
  and the screens it was built with.
- ``additive/``: the additive reference (LightGBM with one feature per tree), its booster as
  LightGBM's text file and its calibrator as JSON. The evaluation compares the model with it
  (what interactions add); it is never registered for scoring.
- ``reference_scores.parquet`` and ``reference.json``: the promotion gate's and production
  drift's references (:mod:`pipeline.drift`).
- ``cv_oof.parquet`` (``split.mode: cv`` only): every labelled loan's out-of-fold PDs in every
  repeat (model, scorecard, additive reference) with its fold: what the evaluation measures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from models.calibrate import Calibrator
from pipeline.storage import write_json

TRAINING_FILE = "training.json"
REFERENCE_SCORES = "reference_scores.parquet"
ADDITIVE_DIR = "additive"
ADDITIVE_BOOSTER = "booster.txt"
ADDITIVE_CALIBRATOR = "calibrator.json"
OUT_OF_FOLD = "cv_oof.parquet"


def write_reference_scores(folder: Path, scores: np.ndarray) -> None:
    """Save the training loans' scores: the promotion gate's PSI reference."""
    pl.DataFrame({"score": scores}).write_parquet(folder / REFERENCE_SCORES)


def read_reference_scores(folder: Path) -> np.ndarray:
    """The training loans' scores saved by :func:`write_reference_scores`."""
    return pl.read_parquet(folder / REFERENCE_SCORES)["score"].to_numpy()


def write_out_of_fold(folder: Path, out_of_fold: pl.DataFrame) -> None:
    """Save the cross-validation's out-of-fold PDs (one row per loan and repeat)."""
    out_of_fold.write_parquet(folder / OUT_OF_FOLD)


def read_out_of_fold(folder: Path) -> pl.DataFrame:
    """The out-of-fold PDs of a model trained with ``split.mode: cv``; a clear error otherwise."""
    path = folder / OUT_OF_FOLD
    if not path.exists():
        raise FileNotFoundError(
            f"expected the out-of-fold predictions {path} of a cross-validated model (split.mode "
            "is cv but the model was trained out-of-time: run `longtail train` again)"
        )
    return pl.read_parquet(path)


def read_training(folder: Path) -> dict:
    """The train stage's record of a model folder."""
    return json.loads((folder / TRAINING_FILE).read_text())


@dataclass(frozen=True)
class AdditiveReference:
    """A calibrated additive booster: a diagnostic of the evaluation, never registered."""

    booster: lgb.Booster
    calibrator: Calibrator

    def predict_pd(self, x: np.ndarray) -> np.ndarray:
        """Calibrated PDs for a feature matrix in the model's feature order."""
        return self.calibrator.predict(self.booster.predict(x, raw_score=True))

    def save(self, model_folder: Path) -> None:
        """Write the booster text file and the calibrator JSON under ``additive/``."""
        folder = model_folder / ADDITIVE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / ADDITIVE_BOOSTER))
        write_json(self.calibrator.to_dict(), folder / ADDITIVE_CALIBRATOR)

    @classmethod
    def load(cls, model_folder: Path) -> AdditiveReference:
        """Read what :meth:`save` wrote; a clear error for a folder saved without it."""
        folder = model_folder / ADDITIVE_DIR
        if not (folder / ADDITIVE_BOOSTER).exists():
            raise FileNotFoundError(
                f"expected the additive reference in {folder} (run `longtail train` again: "
                "models trained before it was saved lack it); it does not exist"
            )
        return cls(
            booster=lgb.Booster(model_file=str(folder / ADDITIVE_BOOSTER)),
            calibrator=Calibrator.from_dict(json.loads((folder / ADDITIVE_CALIBRATOR).read_text())),
        )
