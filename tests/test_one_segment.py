"""A lender with one segment: validate, features, train, evaluate, register, score on the CLI.

The session's small world loses one segment's tables and its loans (with their repayments),
as a consumer-only bank or a merchant-only platform would bring them; ``--segment all`` then
means the segment present, and naming the other one is a one-line error.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from features.contract.segments import SEGMENTS
from pipeline.cli import app
from pipeline.storage import Layout

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


def _one_segment_world(source: Layout, root: Path, keep: str) -> Path:
    """The source world's raw tables and truth under ``root/data``, ``keep``'s segment only."""
    data = root / "data"
    raw = data / "raw"
    raw.mkdir(parents=True)
    gone = next(seg for name, seg in SEGMENTS.items() if name != keep)
    for path in source.raw.glob("*.parquet"):
        if path.stem not in (gone.entity_table, gone.txn_table):
            shutil.copy(path, raw / path.name)
    loans = pl.read_parquet(raw / "loans.parquet").filter(pl.col("segment") == keep)
    loans.write_parquet(raw / "loans.parquet")
    repayments = pl.read_parquet(raw / "repayments.parquet")
    repayments.filter(pl.col("loan_id").is_in(loans["loan_id"].implode())).write_parquet(
        raw / "repayments.parquet"
    )
    shutil.copytree(source.truth, data / "truth")
    return data


def _params(root: Path, tracking_uri: str) -> Path:
    """The repo's params with the tmp MLflow store."""
    text = (REPO / "params.yaml").read_text()
    path = root / "params.yaml"
    path.write_text(text.replace("sqlite:///mlflow.db", tracking_uri, 1))
    return path


@pytest.mark.parametrize("keep", ["consumer", "merchant"])
def test_one_segment_runs_end_to_end_through_the_cli(
    validated_world, tracking_uri: str, tmp_path: Path, keep: str
) -> None:
    data = _one_segment_world(Layout(validated_world.data_dir), tmp_path, keep)
    params = _params(tmp_path, tracking_uri)
    absent = next(name for name in SEGMENTS if name != keep)
    base = ["--params", str(params), "--data", str(data)]

    result = runner.invoke(app, ["validate", *base])
    assert result.exit_code == 0, result.output
    assert f"skipped segment {absent}: neither {SEGMENTS[absent].entity_table}" in " ".join(
        result.output.split()
    )
    layout = Layout(data)
    summary = json.loads((layout.quarantine / "summary.json").read_text())
    assert summary["segments"] == [keep]
    assert not (layout.validated / f"{SEGMENTS[absent].txn_table}.parquet").exists()

    for command in ("features", "train", "evaluate"):
        result = runner.invoke(app, [command, *base])
        assert result.exit_code == 0, f"{command}: {result.output}"
        assert f"  {keep}:" in result.output
        assert f"  {absent}:" not in result.output  # no result line for the absent segment...
        assert f"skipped segment {absent}: its tables were not in" in " ".join(  # ...one line
            result.output.split()
        )
    metrics = json.loads(layout.metrics(keep).read_text())
    assert 0.5 < metrics["test"]["auc"] < 0.99
    assert not layout.model(absent).exists()

    # Register (with the gate) and score: `all` is the segment present.
    for command in (["register", "--promote"], ["score", "--drift-fail-on", "never"]):
        result = runner.invoke(app, [*command, *base])
        assert result.exit_code == 0, f"{command}: {result.output}"
        assert absent not in result.output.replace(f"skipped segment {absent}", "")
    scored = [p.name for p in (data / "scores").iterdir() if not p.name.startswith(".")]
    assert scored == [keep]
    assert list((data / "scores" / keep).glob("as_of=*/scores.parquet"))

    result = runner.invoke(app, ["train", *base, "--segment", absent])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert f"expected a segment present in {layout.validated} ({keep}); got '{absent}'" in text


def _loans_only_world(source: Layout, root: Path) -> Path:
    """A digital lender's book: consumers and their loans, each labelled by its outcome.

    No transaction log, no merchants and no repayment schedule: the outcomes are the labels the
    schedule gives (loans whose window has not closed have no outcome yet).
    """
    from models.labels import LabelParams, label_loans
    from pipeline.config import load_settings
    from pipeline.inputs import observed_until

    data = root / "data"
    raw = data / "raw"
    raw.mkdir(parents=True)
    shutil.copy(source.raw / "consumers.parquet", raw / "consumers.parquet")
    loans = pl.read_parquet(source.raw / "loans.parquet").filter(pl.col("segment") == "consumer")
    loans.write_parquet(raw / "loans.parquet")
    label: LabelParams = load_settings(REPO / "params.yaml").label
    labelled = label_loans(
        loans,
        pl.read_parquet(source.raw / "repayments.parquet"),
        observed_until=observed_until(source.validated),
        params=label,
    )
    labelled.filter(pl.col("bad").is_not_null()).select(
        "loan_id", pl.col("bad").cast(pl.Boolean).alias("defaulted")
    ).write_parquet(raw / "outcomes.parquet")
    return data


def test_a_loans_only_book_runs_end_to_end_through_the_cli(
    validated_world, tracking_uri: str, tmp_path: Path
) -> None:
    from features.contract.tables import TABLES
    from features.definitions import definitions
    from pipeline.config import load_settings
    from pipeline.inputs import definition_params, observed_until

    source = Layout(validated_world.data_dir)
    data = _loans_only_world(source, tmp_path)
    params = _params(tmp_path, tracking_uri)
    base = ["--params", str(params), "--data", str(data)]

    result = runner.invoke(app, ["validate", *base])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "segment consumer: no consumer_transactions in" in text
    assert "only credit-history and identity features will be built" in text
    layout = Layout(data)
    summary = json.loads((layout.quarantine / "summary.json").read_text())
    assert summary["segments"] == ["consumer"]
    assert list(summary["no_transaction_log"]) == ["consumer"]
    assert "consumer_transactions" not in summary["tables"]
    # Observed up to the last dated event: here the last loan issue (no log, no payments).
    last_issue = pl.read_parquet(layout.validated / "loans.parquet")["issued_on"].max()
    assert observed_until(layout.validated) == last_issue + dt.timedelta(days=1)

    for command in ("features", "train", "evaluate"):
        result = runner.invoke(app, [command, *base])
        assert result.exit_code == 0, f"{command}: {result.output}"
        assert "consumer:" in result.output
    # The full catalog, transaction features null, credit history, identity and the loan asked
    # for (read from the spine, no log needed) computed.
    settings = load_settings(params)
    defined = definitions(
        SEGMENTS["consumer"],
        definition_params(settings.features, settings.label, settings.limits),
    )
    frame = pl.read_parquet(layout.features("consumer"))
    assert set(defined.catalog.names) <= set(frame.columns)
    by_dimension = {spec.name: spec.dimension for spec in defined.catalog.specs}
    computed = [n for n in defined.catalog.names if frame[n].null_count() < frame.height]
    assert computed, "no feature was computed"
    loan = {"loan_principal", "loan_term_months", "loan_instalment"}
    assert loan <= set(computed)
    assert {by_dimension[n] for n in set(computed) - loan} <= {"credit_history", "identity"}
    assert TABLES["consumer_transactions"].name not in {p.stem for p in layout.validated.iterdir()}
    metrics = json.loads(layout.metrics("consumer").read_text())
    assert 0.5 < metrics["test"]["auc"] <= 1.0
