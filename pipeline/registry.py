"""MLflow tracking and registry: runs, registered model versions and aliases.

Aliases (``champion``, ``challenger``), never stages. The tracking URI is sqlite by default;
MLFLOW_TRACKING_URI overrides it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from features.engine import POLICY_INPUTS
from models.scorer import Scorer

# MLflow reads these when it is first imported: keep its own logging and progress bars quiet.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

MODEL_FILE = Path(__file__).with_name("mlflow_model.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
CHAMPION = "champion"
CHALLENGER = "challenger"


def model_name(segment: str) -> str:
    """The registered model name of a segment."""
    return f"longtail-{segment}"


def configure(tracking_uri: str, experiment: str) -> None:
    """Point MLflow at the tracking store (env var wins) and select the experiment."""
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri)
    mlflow.set_experiment(experiment)


def pip_requirements() -> list[str]:
    """Explicit, pinned requirements of the registered model (no slow inference)."""
    from importlib.metadata import version

    names = [
        "mlflow",
        "polars",
        "numpy",
        "pandas",
        "pyarrow",
        "lightgbm",
        "scikit-learn",
        "pydantic",
    ]
    return [f"{n}=={version(n)}" for n in names]


def log_scorer(
    scorer: Scorer, scorer_dir: Path, example: pl.DataFrame, run_id: str
) -> tuple[str, int]:
    """Log the Scorer as a pyfunc into ``run_id`` and register a new version.

    Returns the model URI and the registered version number.
    """
    import mlflow
    from mlflow.models import infer_signature

    columns = [*scorer.feature_names, *POLICY_INPUTS]
    example_in = example.select("entity_id", *[pl.col(c).cast(pl.Float64) for c in columns]).head(5)
    example_out = scorer.score(example_in)
    with warnings.catch_warnings(), mlflow.start_run(run_id=run_id):
        # MLflow warns that integer output columns cannot hold missing values; ours never do.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_FILE),
            artifacts={"scorer": str(scorer_dir)},
            code_paths=[str(REPO_ROOT / "features"), str(REPO_ROOT / "models")],
            pip_requirements=pip_requirements(),
            signature=infer_signature(example_in.to_pandas(), example_out.to_pandas()),
            input_example=example_in.to_pandas(),
            registered_model_name=model_name(scorer.segment),
        )
    return info.model_uri, int(info.registered_model_version)


def set_alias(segment: str, alias: str, version: int) -> None:
    """Point an alias of the segment's registered model at a version."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name(segment), alias, str(version))


def resolve(model_uri: str) -> tuple[str, str, str]:
    """Resolve ``models:/name@alias`` or ``models:/name/version`` to (name, version, run_id)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if not model_uri.startswith("models:/"):
        raise ValueError(
            f"expected a model URI like models:/longtail-merchant@champion; got {model_uri!r}"
        )
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
    else:
        name, _, version = ref.partition("/")
        mv = client.get_model_version(name, version)
    return mv.name, str(mv.version), mv.run_id


def load_scorer(model_uri: str, dest: Path) -> Scorer:
    """Download a registered model's Scorer files and load them."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(artifact_uri=f"{model_uri}", dst_path=str(dest))
    return Scorer.load(scorer_folder(Path(local)))


def scorer_folder(model_dir: Path) -> Path:
    """The Scorer's files inside a downloaded pyfunc model folder."""
    found = sorted((model_dir / "artifacts").glob("*/scorer.json"))
    if not found:
        raise FileNotFoundError(f"expected a Scorer under {model_dir / 'artifacts'}; found none")
    return found[0].parent


def reference_scores(scorer_dir: Path) -> np.ndarray:
    """The training score distribution saved beside a Scorer (for PSI)."""
    return pl.read_parquet(scorer_dir / "reference_scores.parquet")["score"].to_numpy()
