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

from features.definitions import POLICY_INPUTS
from models import stability
from models.scorer import Scorer
from models.stability import Levels
from pipeline.config import RegistryParams

# MLflow reads these when it is first imported: keep its own logging and progress bars quiet.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

# The user's override, read once at import: mlflow.set_tracking_uri() itself exports
# MLFLOW_TRACKING_URI, so reading the variable later would mistake the last URI this process
# set for a user's choice (and send a run's registrations to another store).
USER_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")
MODEL_FILE = Path(__file__).with_name("mlflow_model.py")
REPO_ROOT = Path(__file__).resolve().parent.parent
CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous-champion"


def model_name(segment: str) -> str:
    """The registered model name of a segment."""
    return f"longtail-{segment}"


def configure(tracking_uri: str, experiment: str) -> None:
    """Point MLflow's tracking and registry at the store; select the experiment.

    MLFLOW_TRACKING_URI, as set when the process started, wins over ``tracking_uri``. The
    registry URI is set to the same store so aliases never land anywhere else.
    """
    import mlflow

    uri = USER_TRACKING_URI or tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_location(uri))
    mlflow.set_experiment(experiment)


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside a sqlite store.

    MLflow's default is ``./mlruns`` under the current directory, which would scatter
    artifacts wherever a command happens to run (and put a test's models in the repo). Other
    stores keep their server's default (None).
    """
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    database = Path(tracking_uri.removeprefix(prefix)).resolve()
    return (database.parent / "mlartifacts").as_uri()


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
        "scipy",
    ]
    return [f"{n}=={version(n)}" for n in names]


def git_commit(repo: Path = REPO_ROOT) -> str:
    """The commit the code was at (``-dirty`` when the tree had changes), or ``unknown``."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def synthetic_example(scorer: Scorer, reference: dict | None, rows: int = 5) -> pl.DataFrame:
    """A made-up input example: no real entity's data ever travels with the model.

    Row ``i`` takes each feature at the ``i / (rows - 1)`` position of its training bin edges
    (so the values are plausible), and policy inputs from a small fixed ladder; the last row is
    30+ days past due, to show a knock-out.
    """
    bins = (reference or {}).get("feature_bins", {})
    columns: dict[str, list] = {"entity_id": [f"example-{i}" for i in range(rows)]}
    for name in scorer.feature_names:
        edges = bins.get(name, {}).get("edges") or [0.0]
        columns[name] = [
            float(edges[round(i * (len(edges) - 1) / max(rows - 1, 1))]) for i in range(rows)
        ]
    columns["monthly_inflow"] = [float(20_000 * (i + 1)) for i in range(rows)]
    columns["monthly_free_cash_flow"] = [float(4_000 * (i + 1)) for i in range(rows)]
    columns["current_dpd"] = [0.0] * (rows - 1) + [45.0]
    return pl.DataFrame(columns).select(
        "entity_id", *[pl.col(c).cast(pl.Float64) for c in [*scorer.feature_names, *POLICY_INPUTS]]
    )


def log_scorer(
    scorer: Scorer, scorer_dir: Path, run_id: str, tags: dict[str, str] | None = None
) -> tuple[str, int]:
    """Log the Scorer as a models-from-code pyfunc into ``run_id`` and register a new version.

    The Scorer's folder (booster text file, plain-data JSON, drift reference) is the
    artifact ``scorer``; ``features`` and ``models`` travel as code. The signature and input
    example are built from a synthetic frame. ``tags`` go on the new model version.
    Returns the model URI and the registered version number.
    """
    import mlflow
    from mlflow.models import infer_signature

    from pipeline.drift import read_reference

    example_in = synthetic_example(scorer, read_reference(scorer_dir))
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
            signature=infer_signature(
                example_in.to_pandas(), example_out.to_pandas(), params={"reasons": True}
            ),
            input_example=example_in.to_pandas(),
            registered_model_name=model_name(scorer.segment),
        )
    version = int(info.registered_model_version)
    if tags:
        tag_version(scorer.segment, version, tags)
    return info.model_uri, version


def tag_version(segment: str, version: int | str, tags: dict[str, object]) -> None:
    """Set tags (stringified) on one version of the segment's registered model."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name(segment), str(version), key, str(value))


def tag_model(segment: str, tags: dict[str, object]) -> None:
    """Set tags (stringified) on the segment's registered model itself."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in tags.items():
        client.set_registered_model_tag(model_name(segment), key, str(value))


def version_by_alias(segment: str, alias: str):
    """The model version an alias points at, or None when the alias (or model) does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(model_name(segment), alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


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
    """Download a registered model's Scorer files into ``dest`` and load them."""
    return Scorer.load(download_scorer(model_uri, dest))


def download_scorer(model_uri: str, dest: Path) -> Path:
    """Download a registered model into ``dest``; return the Scorer's folder inside it."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest))
    return scorer_folder(Path(local))


def version_uri(name: str, version: str | int) -> str:
    """The immutable URI of one version (aliases move; a run must not follow them mid-way)."""
    return f"models:/{name}/{version}"


def scorer_folder(model_dir: Path) -> Path:
    """The Scorer's files inside a downloaded pyfunc model folder."""
    found = sorted((model_dir / "artifacts").glob("*/scorer.json"))
    if not found:
        raise FileNotFoundError(f"expected a Scorer under {model_dir / 'artifacts'}; found none")
    return found[0].parent


def promotion_gate(checks: dict, params: RegistryParams, score_levels: Levels) -> list[str]:
    """Why a challenger may not become champion (empty: it may), from its measured checks.

    With no champion, AUC is not compared (an undefined AUC from one-class rows is then no
    reason to refuse); the monotone and stability checks still apply.
    ``checks`` holds ``challenger_auc``, ``champion_auc`` (None when there is no champion),
    ``champion_error`` (why the champion could not be scored on the same rows, if so),
    ``monotone_violations`` and ``challenger_score_psi``; the thresholds come from params.yaml
    ``registry``, and the score PSI is judged by :func:`models.stability.status` at
    ``score_levels`` (params.yaml ``drift``): an ``alert`` is refused.
    """
    refusals: list[str] = []
    chall, champ = checks["challenger_auc"], checks.get("champion_auc")
    if checks.get("champion_error"):
        refusals.append(checks["champion_error"])
    elif champ is not None and not (np.isfinite(chall) and np.isfinite(champ)):
        # With a champion to beat, "not worse" must be shown; one class in the rows can't.
        refusals.append(
            "the out-of-time AUC is undefined (one class in the test rows), so the challenger "
            "cannot be shown not to be worse than the champion"
        )
    elif champ is not None and chall < champ - params.auc_tolerance:
        refusals.append(
            f"challenger AUC {chall:.4f} is worse than champion AUC {champ:.4f} on the same "
            f"{checks.get('oot_rows', '?')} out-of-time rows by more than the tolerance "
            f"{params.auc_tolerance}"
        )
    if params.require_monotone and checks["monotone_violations"]:
        refusals.append(
            f"the challenger breaks monotone constraints on {checks['monotone_violations']}"
        )
    psi = checks["challenger_score_psi"]
    # None: not measured (a cross-validated book has no held-out slice to drift from)
    if psi is not None and stability.status(psi, score_levels) == "alert":
        refusals.append(
            f"the challenger's score PSI between its training rows and the out-of-time rows is "
            f"{psi:.3f}, at or above the alert level {score_levels.alert}"
        )
    return refusals
