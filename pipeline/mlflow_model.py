"""The registered model, as MLflow models-from-code: a pyfunc wrapping the Scorer.

MLflow loads this file (not a pickle) and calls ``set_model``. The Scorer's files (the booster's
own text file and a JSON of plain data) travel as the artifact ``scorer``; the ``features`` and
``models`` packages travel as code paths.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import polars as pl
from mlflow.pyfunc import PythonModel


class LongtailModel(PythonModel):
    """Raw features in (one row per entity), decisions out.

    pd, score, band, limit and binding constraint, the risk-based price (``apr``, null when
    ``priced_out``), reason codes and sub-scores: the Scorer's columns, whatever they are.
    """

    def load_context(self, context) -> None:
        """Load the Scorer from the logged artifact folder."""
        from models.scorer import Scorer

        self.scorer = Scorer.load(Path(context.artifacts["scorer"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Score a pandas frame of features and policy inputs.

        ``params={"reasons": False}`` leaves out reason codes and sub-scores (faster).
        """
        reasons = bool((params or {}).get("reasons", True))
        return self.scorer.score(pl.from_pandas(model_input), reasons=reasons).to_pandas()


mlflow.models.set_model(LongtailModel())
