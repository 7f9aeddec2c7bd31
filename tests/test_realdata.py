"""The worked examples on real public data: convert, validate, build features, train, evaluate.

The data sets live outside the repo (``../shared/realdata``, see its README) and are never
copied in; every test here is skipped when they are absent. Taiwan is sampled (3,000 holders)
to keep the run short; superlender is used whole.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from models.split import SplitParams
from pipeline.cli import app

REPO = Path(__file__).resolve().parent.parent
REALDATA = (REPO / ".." / "shared" / "realdata").resolve()
EXAMPLES = REPO / "examples"
SETS = {"taiwan": "taiwan-credit-card", "superlender": "superlender"}
TAIWAN_SAMPLE = 3000

runner = CliRunner()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (REALDATA / "taiwan-credit-card").is_dir() or not (REALDATA / "superlender").is_dir(),
        reason=f"the real data sets are not at {REALDATA}",
    ),
]
HAS_CV = "mode" in SplitParams.model_fields
needs_cv = pytest.mark.skipif(
    not HAS_CV, reason="split.mode: cv has not landed (models.split.SplitParams has no mode)"
)


def _module(name: str, script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"{name}_{script}", EXAMPLES / SETS[name] / f"{script}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params(name: str, folder: Path, tracking_uri: str | None = None, **sections: object) -> Path:
    """A params file extending the example's, with ``sections`` on it and MLflow in a tmp store."""
    raw: dict[str, object] = {"extends": str(EXAMPLES / SETS[name] / "params.yaml"), **sections}
    if tracking_uri is not None:
        raw["mlflow"] = {"tracking_uri": tracking_uri}
    path = folder / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def _cli(*args: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each data set converted into ``<dir>/raw``, validated and its features built (CLI)."""
    folders = {}
    for name in SETS:
        data = tmp_path_factory.mktemp(name)
        convert = _module(name, "convert")
        source = (
            convert.read_source(sample=TAIWAN_SAMPLE) if name == "taiwan" else convert.read_source()
        )
        convert.write(convert.convert(source), data / "raw")
        params = _params(name, data)
        _cli("validate", "--data", str(data), "--params", str(params))
        _cli("features", "--data", str(data), "--params", str(params))
        folders[name] = data
    return folders


def _summary(data: Path) -> dict:
    return json.loads((data / "quarantine" / "summary.json").read_text())["tables"]


def _auc_of_few(frame: pl.DataFrame, columns: list[str]) -> float:
    """Test AUC of a logistic regression on a few features, stratified 70/30 split."""
    x = frame.select(pl.col(columns).cast(pl.Float64).fill_null(0.0)).to_numpy()
    x = np.sign(x) * np.log1p(np.abs(x))
    y = frame["bad"].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, stratify=y, random_state=42
    )
    scale = StandardScaler().fit(x_train)
    model = LogisticRegression(max_iter=1000).fit(scale.transform(x_train), y_train)
    return float(roc_auc_score(y_test, model.predict_proba(scale.transform(x_test))[:, 1]))


def test_taiwan_validates_whole_and_its_payments_carry_signal(prepared) -> None:
    data = prepared["taiwan"]
    summary = _summary(data)
    assert set(summary) == {"consumers", "consumer_transactions", "loans", "outcomes"}
    assert {t: s["quarantined"] for t, s in summary.items()} == dict.fromkeys(summary, 0)
    assert summary["consumers"]["rows_out"] == TAIWAN_SAMPLE
    frame = pl.read_parquet(data / "features" / "consumer.parquet")
    assert frame.height == TAIWAN_SAMPLE
    assert frame["bad"].null_count() == 0  # every target labelled by its outcome
    few = ["repayment_count_365d", "net_flow_90d", "active_months_12m", "txn_count_90d"]
    assert _auc_of_few(frame, few) > 0.6


def test_superlender_validates_whole_with_unknown_ages(prepared) -> None:
    data = prepared["superlender"]
    summary = _summary(data)
    # a quarter of the borrowers have no demographics: their birth year is null, not a reason
    # to drop them with their loans
    assert {t: s["quarantined"] for t, s in summary.items()} == dict.fromkeys(summary, 0)
    consumers = pl.read_parquet(data / "validated" / "consumers.parquet")
    assert 0 < consumers["birth_year"].null_count() < consumers.height
    targets = pl.read_parquet(data / "validated" / "outcomes.parquet").select("loan_id")
    frame = pl.read_parquet(data / "features" / "consumer.parquet").join(targets, on="loan_id")
    assert frame.height == targets.height == summary["outcomes"]["rows_out"]
    few = ["prior_late_share", "prior_mean_dpd", "prior_max_dpd", "prior_loans"]
    assert _auc_of_few(frame, few) > 0.6


def test_superlender_outcome_is_nowhere_before_the_target_loan(prepared) -> None:
    """Point in time: the target loan's only event is its disbursement; nothing is dated later."""
    validated = prepared["superlender"] / "validated"
    loans = pl.read_parquet(validated / "loans.parquet")
    targets = (
        pl.read_parquet(validated / "outcomes.parquet")
        .join(loans, on="loan_id")
        .select("loan_id", "entity_id", pl.col("issued_on").alias("target_on"))
    )
    events = pl.read_parquet(validated / "consumer_transactions.parquet").join(
        targets, left_on="consumer_id", right_on="entity_id"
    )
    assert events.filter(pl.col("ts").dt.date() > pl.col("target_on")).height == 0
    own = events.filter(pl.col("txn_id").str.starts_with(pl.col("loan_id")))
    assert own["kind"].unique().to_list() == ["loan_disbursement"]
    assert own.height == targets.height
    paid = (
        pl.read_parquet(validated / "repayments.parquet")
        .join(loans, on="loan_id")
        .join(targets.drop("loan_id"), on="entity_id")
    )
    assert paid.filter(pl.col("paid_on") > pl.col("target_on")).height == 0
    assert paid.join(targets, on="loan_id").height == 0  # the target has no schedule


SPLITS = [
    pytest.param("superlender", "oot", id="superlender-oot"),
    pytest.param("taiwan", "oot", id="taiwan-oot"),
    pytest.param("superlender", "cv", id="superlender-cv", marks=needs_cv),
    pytest.param("taiwan", "cv", id="taiwan-cv", marks=needs_cv),
]


@pytest.mark.parametrize(("name", "mode"), SPLITS)
def test_train_and_evaluate_through_the_cli(prepared, tmp_path, tracking_uri, name, mode) -> None:
    data = prepared[name]
    sections = {"split": {"mode": mode}} if mode == "cv" else {}
    params = str(_params(name, tmp_path, tracking_uri, **sections))
    result = runner.invoke(app, ["train", "--data", str(data), "--params", params])
    if name == "taiwan" and mode == "oot":
        # A single-cohort book (every loan issued 2005-10-01) has no out-of-time split.
        assert result.exit_code == 1
        assert "expected at least 7 labelled issue months for the out-of-time split; got 1" in (
            " ".join(result.output.split())
        )
        return
    assert result.exit_code == 0, result.output
    _cli("evaluate", "--data", str(data), "--params", params)
    metrics = json.loads((data / "reports" / "consumer" / "metrics.json").read_text())
    assert metrics["test"]["auc"] > 0.6
