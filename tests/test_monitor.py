"""Performance before labels: expected vs realised, vintages, roll rates, the monitor stage."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from registry_world import private_world
from typer.testing import CliRunner

from models import monitoring
from pipeline import inputs
from pipeline.cli import app
from pipeline.stages import monitor, score
from pipeline.storage import Layout

JUDGE = {"bad_rate_gap": 0.01, "auc_gap": 0.03, "z_alert": 3.0, "min_loans": 100}


def _pds(n: int = 4000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).beta(1.2, 14, n)


def test_expected_auc_by_hand() -> None:
    # bad 1 / good 0 (weight 0.6 * 0.8 = 0.48) is concordant; bad 0 / good 1 (0.2 * 0.4) is not
    assert monitoring.expected(np.array([0.2, 0.6]))["auc"] == pytest.approx(0.48 / 0.56)
    assert monitoring.expected(np.array([0.3, 0.3]))["auc"] == pytest.approx(0.5)  # a tie: half
    got = monitoring.expected(np.array([0.1, 0.2, 0.6]))
    assert got["bad_rate"] == pytest.approx(0.3)
    assert got["bad_rate_se"] == pytest.approx(np.sqrt(0.09 + 0.16 + 0.24) / 3)
    assert monitoring.auc(np.array([0.1, 0.4, 0.4, 0.9]), np.array([0, 1, 0, 1])) == 0.875


def test_expected_figures_and_their_errors_match_drawn_labels() -> None:
    """Labels drawn Bernoulli(pd): the realised figures centre on the expected, spread by the SE."""
    pd_ = _pds()
    exp = monitoring.expected(pd_)
    rng = np.random.default_rng(11)
    draws = [monitoring.realised(pd_, rng.random(pd_.size) < pd_) for _ in range(300)]
    rates = np.array([d["bad_rate"] for d in draws])
    aucs = np.array([d["auc"] for d in draws])
    assert abs(rates.mean() - exp["bad_rate"]) < 4 * exp["bad_rate_se"] / np.sqrt(len(draws))
    assert abs(aucs.mean() - exp["auc"]) < 4 * exp["auc_se"] / np.sqrt(len(draws))
    assert rates.std() == pytest.approx(exp["bad_rate_se"], rel=0.15)
    assert aucs.std() == pytest.approx(exp["auc_se"], rel=0.15)
    one = draws[0]
    assert monitoring.judge(exp, one, **JUDGE)["status"] == "ok"
    assert monitoring.expected(pd_) == exp  # seeded: the same PDs give the same figures


def test_alert_fires_when_the_pds_are_wrong() -> None:
    pd_ = _pds()
    bad = np.random.default_rng(3).random(pd_.size) < pd_
    # calibration off: the model promised 40% of the true default rate
    low = monitoring.judge(
        monitoring.expected(pd_ * 0.4), monitoring.realised(pd_ * 0.4, bad), **JUDGE
    )
    assert low["status"] == "alert"
    assert low["out"] == ["bad_rate"]
    assert low["bad_rate_z"] > 3
    # ranking off: PDs shuffled across entities promise the old AUC but deliver about 0.5
    shuffled = np.random.default_rng(4).permutation(pd_)
    wrong = monitoring.judge(
        monitoring.expected(shuffled), monitoring.realised(shuffled, bad), **JUDGE
    )
    assert "auc" in wrong["out"]
    assert wrong["status"] == "alert"
    # too few matured loans: not judged, however wrong
    few = monitoring.judge(
        monitoring.expected(pd_[:50] * 0.4), monitoring.realised(pd_[:50] * 0.4, bad[:50]), **JUDGE
    )
    assert few["status"] == "too_few"
    assert few["out"] == []


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        monitoring.expected(np.array([0.2, 1.3]))
    with pytest.raises(ValueError, match="0/1 label"):
        monitoring.realised(np.array([0.2, 0.3]), np.array([1, 2]))


# --- vintages and roll rates on a tiny repayment log, by hand -----------------------------

D = dt.date


@pytest.fixture
def tiny() -> tuple[pl.DataFrame, pl.DataFrame]:
    loans = pl.DataFrame(
        {
            "loan_id": ["a", "b", "c", "d"],
            "issued_on": [D(2024, 1, 15), D(2024, 1, 20), D(2024, 2, 1), D(2024, 2, 1)],
        }
    )
    repayments = pl.DataFrame(
        {
            "loan_id": ["a", "a", "b", "b", "c"],
            "installment": [1, 2, 1, 2, 1],
            "due_on": [
                D(2024, 2, 15),
                D(2024, 3, 15),
                D(2024, 2, 20),
                D(2024, 3, 20),
                D(2024, 3, 1),
            ],
            "amount_due": [10.0, 10.0, 10.0, 10.0, 5.0],
            # a: first paid 5 days late, second never; b: second paid 51 days late; c: on
            # time. d has no schedule: left out.
            "paid_on": [D(2024, 2, 20), None, D(2024, 2, 20), D(2024, 5, 10), D(2024, 3, 1)],
            "amount_paid": [10.0, 0.0, 10.0, 10.0, 5.0],
        }
    )
    return loans, repayments


def test_vintage_curves_by_hand(tiny) -> None:
    loans, repayments = tiny
    got = monitoring.vintage_curves(
        loans,
        repayments,
        observed_until=D(2024, 7, 1),
        dpd_levels=(30, 90),
        max_months=5,
        tolerance=0.01,
    )
    jan = got.filter(pl.col("cohort") == "2024-01").sort("months_on_book")
    # a: 30 dpd on 04-14 (MOB 3 ends 04-15), 90 on 06-13 (MOB 5 ends 06-15)
    # b: second due 03-20, paid 05-10 (51 days late): 30 dpd on 04-19 (MOB 3 ends 04-20)
    # MOB 5 of a ends 06-15 and of b 06-20: both observed before 07-01
    assert jan["loans"].to_list() == [2, 2, 2, 2, 2]
    assert jan["ever_30"].to_list() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert jan["ever_90"].to_list() == [0.0, 0.0, 0.0, 0.0, 0.5]
    feb = got.filter(pl.col("cohort") == "2024-02")
    assert feb["loans"].to_list() == [1, 1, 1, 1, 1]  # c only; MOB 5 ends 07-01: observed
    assert feb["ever_30"].sum() == 0.0
    short = monitoring.vintage_curves(
        loans,
        repayments,
        observed_until=D(2024, 6, 16),
        dpd_levels=(30,),
        max_months=5,
        tolerance=0.01,
    )
    # by 06-16 only a's fifth month has closed (b's ends 06-20, c's 07-01)
    assert short.filter(pl.col("months_on_book") == 5)["loans"].to_list() == [1]


def test_roll_rates_by_hand(tiny) -> None:
    loans, repayments = tiny
    dpd = monitoring.dpd_by_month(
        loans, repayments, observed_until=D(2024, 7, 1), max_months=5, tolerance=0.01
    )
    by_loan = {k: v["dpd"].to_list() for k, v in dpd.partition_by("loan_id", as_dict=True).items()}
    # month ends a: 02-15 03-15 04-15 05-15 06-15 (MOB 0 = 01-15)
    assert by_loan[("a",)] == [0, 0, 0, 31, 61, 92]
    # b: 02-20 (first due that day: not yet late), 03-20, 04-20 (31), 05-20 (settled 05-10)
    assert by_loan[("b",)] == [0, 0, 0, 31, 0, 0]
    assert by_loan[("c",)] == [0, 0, 0, 0, 0, 0]
    rolls = monitoring.roll_rates(dpd, (1, 30, 60, 90))
    table = {(r["from_bucket"], r["to_bucket"]): (r["loans"], r["rate"]) for r in rolls.to_dicts()}
    # 15 moves: current->current 10 (a 2, b 3, c 5), current->30-59 2 (a, b), 30-59->60-89 1
    # (a), 30-59->current 1 (b), 60-89->90+ 1 (a)
    assert table == {
        ("current", "current"): (10, pytest.approx(10 / 12)),
        ("current", "30-59"): (2, pytest.approx(2 / 12)),
        ("30-59", "current"): (1, 0.5),
        ("30-59", "60-89"): (1, 0.5),
        ("60-89", "90+"): (1, 1.0),
    }
    assert monitoring.bucket_labels((1, 30, 60, 90)) == ["current", "1-29", "30-59", "60-89", "90+"]


# --- the monitor stage on a world whose labels are held back at scoring time --------------


def _early(world) -> dt.date:
    """A scoring date whose next months' loans have all matured by the end of the log."""
    until = inputs.observed_until(Layout(world.data_dir).validated)
    return dt.date(until.year - 1, until.month, 1) - dt.timedelta(days=120)


@pytest.fixture
def scored(trained_world, tmp_path: Path):
    monitor_params = trained_world.monitor.model_copy(
        update={"issue_window_days": 120, "min_loans": 50}
    )
    world = private_world(trained_world, tmp_path, monitor=monitor_params)
    as_of = _early(world)
    score.run(world, "merchant", as_of)
    return world, as_of


def _true_pds(world, as_of: dt.date) -> None:
    """Put the world's true PDs into the cohort's scores: what a perfectly calibrated model gives.

    The synthetic world's default odds carry a macro path after issue that no model can see at
    scoring time, so a cohort's realised bad rate may part from a good model's promise by more
    than sampling noise (which is what the monitor is for). The true PD (the Bernoulli
    probability the world drew each label with) separates the monitor's arithmetic from the
    model's quality: with it, realised and expected must agree within the estimate's error.
    """
    layout = Layout(world.data_dir)
    end = as_of + dt.timedelta(days=world.monitor.issue_window_days)
    truth = (
        inputs.training_spine(layout, "merchant", world.label)
        .filter((pl.col("as_of") >= as_of) & (pl.col("as_of") < end))
        .group_by("entity_id")
        .agg(pl.col("true_pd").mean())
    )
    path = layout.scores("merchant", as_of) / "scores.parquet"
    frame = pl.read_parquet(path).join(truth, on="entity_id", how="left")
    frame.with_columns(pl.coalesce("true_pd", "pd").alias("pd")).drop("true_pd").write_parquet(path)


def test_realised_agrees_with_expected_within_its_error(scored) -> None:
    world, as_of = scored
    model = monitor.run(world, "merchant")["cohorts"][0]  # the trained model's own PDs
    _true_pds(world, as_of)
    summary = monitor.run(world, "merchant")
    (cohort,) = summary["cohorts"]
    assert cohort["as_of"] == as_of.isoformat()
    exp, real = cohort["expected"], cohort["realised"]
    assert real["n"] >= 50
    assert cohort["pending"] == 0
    assert exp["n"] == real["n"] == model["realised"]["n"]
    assert abs(real["bad_rate"] - exp["bad_rate"]) <= 3 * exp["bad_rate_se"]
    assert abs(real["auc"] - exp["auc"]) <= 3 * exp["auc_se"]
    assert cohort["status"] == "ok"
    assert summary["status"] == "ok"
    scored_rows = pl.scan_parquet(Layout(world.data_dir).scores("merchant", as_of) / "*.parquet")
    assert cohort["book_expected"]["n"] == scored_rows.select(pl.len()).collect().item()
    folder = Layout(world.data_dir).monitor("merchant")
    assert json.loads((folder / monitor.JSON_FILE).read_text())["status"] == "ok"
    assert "Vintage curves" in (folder / monitor.HTML_FILE).read_text()
    assert summary["vintage"]
    assert summary["roll_rates"]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_monitor_alerts_when_the_pds_were_wrong(scored, tmp_path: Path) -> None:
    world, as_of = scored
    _true_pds(world, as_of)
    path = Layout(world.data_dir).scores("merchant", as_of) / "scores.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns((pl.col("pd") * 0.2).alias("pd")).write_parquet(path)  # promised too little
    summary = monitor.run(world, "merchant")
    assert summary["status"] == "alert"
    assert summary["alerts"] == [as_of.isoformat()]
    assert "bad_rate" in summary["cohorts"][0]["out"]

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(world.model_dump(mode="json"), allow_unicode=True))
    args = ["monitor", "--params", str(params), "--segment", "merchant"]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == monitor.MONITOR_EXIT_CODE, failed.output
    assert "monitor alert" in failed.output
    quiet = CliRunner().invoke(app, [*args, "--no-fail-on-alert"])
    assert quiet.exit_code == 0, quiet.output
    assert f"as of {as_of.isoformat()}" in quiet.output


def test_monitor_needs_scores_first(trained_world, tmp_path: Path) -> None:
    world = private_world(trained_world, tmp_path)
    with pytest.raises(FileNotFoundError, match="longtail score"):
        monitor.run(world, "merchant")
