"""The bank flavour of the world: current-account statements, outcomes, no merchants, real risk."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from features.contract import tables as contract
from features.contract.truth import LOGIT_PARTS
from pipeline.cli import app
from pipeline.storage import Layout
from pipeline.validate import validate
from world.synth import WorldSpec, generate, world_end

REPO = Path(__file__).resolve().parent.parent
# Big enough for stable per-consumer rates, small enough to build in about two seconds.
BANK = WorldSpec(merchants=0, consumers=2500, months=24, seed=13, flavour="bank")
SMALL = WorldSpec(0, 300, 6, seed=3, start=datetime.date(2023, 9, 1), flavour="bank")
BANK_TABLES = ("consumers", "consumer_transactions", "loans", "outcomes")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bank")
    generate(BANK, root / "raw", root / "truth")
    return root


@pytest.fixture(scope="module")
def txns(world: Path) -> pl.DataFrame:
    return pl.read_parquet(world / "raw" / "consumer_transactions.parquet")


@pytest.fixture(scope="module")
def truth(world: Path) -> pl.DataFrame:
    return pl.read_parquet(world / "truth" / "loans.parquet")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_only_a_consumer_lenders_tables_are_written(world: Path) -> None:
    assert sorted(p.stem for p in (world / "raw").iterdir()) == sorted(BANK_TABLES)
    for name in BANK_TABLES:
        df = pl.read_parquet(world / "raw" / f"{name}.parquet")
        assert df.schema == contract.TABLES[name].schema, name
        assert df.height > 0, name
    assert [p.name for p in (world / "truth").iterdir()] == ["loans.parquet"]


def test_the_bank_world_validates_without_quarantine(world: Path, tmp_path: Path) -> None:
    summary = validate(
        world / "raw",
        tmp_path / "validated",
        tmp_path / "quarantine",
        reference_time=datetime.datetime.combine(world_end(BANK), datetime.time(), datetime.UTC),
    )
    assert summary["segments"] == ["consumer"]
    assert list(summary["skipped_segments"]) == ["merchant"]
    assert {t: s["quarantined"] for t, s in summary["tables"].items()} == dict.fromkeys(
        BANK_TABLES, 0
    )
    assert 0.01 < summary["consent_excluded"]["consumers"] / BANK.consumers < 0.07
    assert not (tmp_path / "validated" / "repayments.parquet").exists()


def test_every_kind_appears_and_the_statement_looks_like_a_bank_s(txns: pl.DataFrame) -> None:
    assert set(txns["kind"]) == set(contract.CONSUMER_TXN_KINDS)
    assert (txns["amount"] == txns["amount"].round(2)).all()
    assert txns["amount"].min() > 0
    assert txns["ts"].min().date() >= BANK.start
    assert txns["ts"].max().date() < world_end(BANK)
    # A branch bank reports no channel: almost every row is unknown, a few card rows are set.
    known = txns.filter(pl.col("channel").is_not_null())
    assert 0 < known.height < 0.05 * txns.height
    assert set(known["kind"]) <= {"purchase", "refund"}
    assert txns["balance_after"].null_count() == 0
    # Cash moves in whole notes; the account fee is the tariff's.
    cash = txns.filter(pl.col("kind").is_in(["cash_withdrawal", "cash_deposit"]))
    assert (cash["amount"] % 50 == 0).all()
    assert set(txns.filter(pl.col("kind") == "fee")["amount"]) == {10.0}


def test_balances_are_the_running_sum_of_the_signed_amounts(txns: pl.DataFrame) -> None:
    signed = (
        pl.when(pl.col("direction") == "in").then(pl.col("amount")).otherwise(-pl.col("amount"))
    )
    steps = (
        txns.sort("consumer_id", "txn_id")
        .with_columns(
            step=pl.col("balance_after").diff().over("consumer_id"),
            signed=signed,
            later=pl.col("ts").diff().over("consumer_id"),
        )
        .filter(pl.col("step").is_not_null())
    )
    assert steps.height > 0.99 * txns.height - BANK.consumers
    assert (steps["later"] >= datetime.timedelta(0)).all()  # ids run in time order
    assert (steps["step"] - steps["signed"]).abs().max() < 1e-6
    # Overdrafts happen: the balance goes below zero, and penalty interest follows.
    assert (txns["balance_after"] < 0).mean() > 0.01


def test_salaries_come_from_one_employer_on_a_regular_day(txns: pl.DataFrame) -> None:
    salaries = txns.filter(
        (pl.col("kind") == "income") & pl.col("counterparty_id").str.starts_with("EMP")
    )
    per = salaries.group_by("consumer_id").agg(
        pl.col("counterparty_id").n_unique().alias("employers"),
        pl.col("ts").dt.day().n_unique().alias("days"),
        pl.len().alias("n"),
    )
    assert (per["employers"] == 1).all()
    steady = per.filter(pl.col("n") >= 12)
    assert steady.height > 500
    # A fixed payday (moved only in a month shorter than it).
    assert (steady["days"] <= 4).mean() > 0.95
    gig = txns.filter(
        (pl.col("kind") == "income") & pl.col("counterparty_id").str.starts_with("PAY")
    )
    assert gig.height > 0
    assert (
        gig.group_by("consumer_id")
        .agg(pl.col("counterparty_id").n_unique())["counterparty_id"]
        .max()
        > 1
    )


def test_loans_have_outcomes_once_their_window_closed_and_no_schedule(
    world: Path, txns: pl.DataFrame, truth: pl.DataFrame
) -> None:
    loans = pl.read_parquet(world / "raw" / "loans.parquet")
    outcomes = pl.read_parquet(world / "raw" / "outcomes.parquet")
    end = world_end(BANK)
    closed = loans.filter(pl.col("issued_on").dt.offset_by("12mo") <= end)
    assert 0 < closed.height < loans.height  # recent loans have no outcome yet
    assert sorted(outcomes["loan_id"]) == sorted(closed["loan_id"])
    joined = outcomes.join(truth.select("loan_id", "defaulted"), on="loan_id", suffix="_true")
    assert (joined["defaulted"] == joined["defaulted_true"]).all()
    assert 0.01 < outcomes["defaulted"].mean() < 0.10
    assert set(loans["segment"]) == {"consumer"}
    # Truth as in the platform flavour: the parts add up to the true PD.
    assert truth["loan_id"].to_list() == loans["loan_id"].to_list()
    total = truth.select(pl.sum_horizontal(LOGIT_PARTS)).to_series().to_numpy()
    pd_ = truth["true_pd"].to_numpy()
    np.testing.assert_allclose(total, np.log(pd_ / (1.0 - pd_)), rtol=0, atol=1e-9)
    # Each loan is paid into the account on its issue day, and its instalments leave it.
    paid_in = txns.filter(pl.col("kind") == "loan_disbursement").select(
        "consumer_id", pl.col("ts").dt.date().alias("issued_on"), pl.col("amount")
    )
    expected = loans.select(
        pl.col("entity_id").alias("consumer_id"), "issued_on", pl.col("principal").alias("amount")
    )
    assert paid_in.sort(pl.all()).equals(expected.sort(pl.all()))
    assert txns.filter(pl.col("kind") == "repayment").height > loans.height


def test_overdrafts_and_penalties_are_more_frequent_for_riskier_borrowers(
    txns: pl.DataFrame, truth: pl.DataFrame
) -> None:
    """The statement's new kinds carry the risk: they rise with the borrower's true PD."""
    per = (
        txns.group_by("consumer_id")
        .agg(
            (pl.col("balance_after") < 0).mean().alias("overdrawn"),
            ((pl.col("kind") == "penalty").sum() / pl.col("ts").dt.month_start().n_unique()).alias(
                "penalties"
            ),
            (pl.col("kind") == "cash_withdrawal").mean().alias("cash"),
        )
        .join(
            truth.group_by(pl.col("entity_id").alias("consumer_id")).agg(pl.col("true_pd").mean()),
            on="consumer_id",
        )
        .with_columns(quartile=(pl.col("true_pd").rank() * 4 / pl.len()).ceil().cast(pl.Int8))
    )
    assert per.height > 1000
    for column in ("overdrawn", "penalties", "cash"):
        rho = per.select(pl.corr(column, "true_pd", method="spearman")).item()
        assert rho > 0.25, (column, rho)
    means = per.group_by("quartile").agg(pl.col("overdrawn", "penalties").mean()).sort("quartile")
    low, high = means.row(0, named=True), means.row(-1, named=True)
    assert high["overdrawn"] > 3 * low["overdrawn"], means
    assert high["penalties"] > 3 * low["penalties"], means


def test_same_seed_gives_byte_identical_bank_tables(tmp_path: Path) -> None:
    first = generate(SMALL, tmp_path / "a" / "raw", tmp_path / "a" / "truth")
    second = generate(SMALL, tmp_path / "b" / "raw", tmp_path / "b" / "truth")
    assert first == second
    assert first["consumer_transactions"] > 0
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    other = WorldSpec(0, SMALL.consumers, SMALL.months, 4, start=SMALL.start, flavour="bank")
    generate(other, tmp_path / "c" / "raw", tmp_path / "c" / "truth")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")


def test_world_spec_flavours() -> None:
    with pytest.raises(ValueError, match="expected a flavour in"):
        WorldSpec(1, 1, 1, 0, flavour="wallet")
    with pytest.raises(ValueError, match="at least one merchant"):
        WorldSpec(0, 1, 1, 0)
    assert WorldSpec(0, 1, 1, 0, flavour="bank").merchants == 0  # not used by a bank
    with pytest.raises(ValueError, match="at least one merchant and one consumer"):
        WorldSpec(1, 0, 1, 0, flavour="bank")


def test_generate_rejects_an_unknown_flavour(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path), "--flavour", "wallet"])
    assert result.exit_code == 2
    assert "expected one of platform, bank; got 'wallet'" in " ".join(result.output.split())
    assert not (tmp_path / "raw").exists()


@pytest.mark.slow
def test_a_small_bank_world_runs_through_the_cli(tmp_path: Path, tracking_uri: str) -> None:
    """generate --flavour bank, then validate, features, train and evaluate on the CLI."""
    runner = CliRunner()
    params = tmp_path / "params.yaml"
    params.write_text(
        (REPO / "params.yaml").read_text().replace("sqlite:///mlflow.db", tracking_uri, 1)
    )
    data = tmp_path / "data"
    base = ["--params", str(params), "--data", str(data)]
    size = ["--consumers", "3000", "--months", "24", "--seed", "5", "--flavour", "bank"]
    result = runner.invoke(app, ["generate", *base, *size])
    assert result.exit_code == 0, result.output
    assert "outcomes" in result.output
    assert "merchant_transactions" not in result.output

    result = runner.invoke(app, ["validate", *base])
    assert result.exit_code == 0, result.output
    assert "skipped segment merchant" in result.output
    for command in ("features", "train", "evaluate"):
        result = runner.invoke(app, [command, *base])
        assert result.exit_code == 0, f"{command}: {result.output}"
        assert "consumer:" in result.output
        assert "  merchant:" not in result.output  # no result line; one "skipped" line
    metrics = json.loads(Layout(data).metrics("consumer").read_text())
    test, ceiling = metrics["test"], metrics["ceiling"]
    # Labels come from the outcomes alone; the statement carries real, not perfect, signal.
    assert test["count"] > 300
    assert 0.65 < test["auc"] < 0.99, test
    assert test["auc"] < ceiling["auc"] + 0.02, (test, ceiling)
    assert 0.5 < metrics["baseline"]["auc"] < 0.99, metrics["baseline"]
