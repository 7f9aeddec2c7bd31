"""The synthetic world: contract-shaped, deterministic, realistic, with known and learnable risk."""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from features.contract import tables as contract
from features.contract.truth import LOGIT_PARTS
from pipeline.validate import validate
from tests.synth_fixtures import (
    auc,
    consumer_features,
    labels,
    make_world,
    merchant_features,
)
from world.loans import FIRST_LOAN_MONTH
from world.risk import RiskParts
from world.seasons import add_months, build_calendar
from world.synth import WorldSpec, generate, world_end

TABLES = [t for t in contract.TABLES if t != "outcomes"]
SEED = int(os.environ.get("LONGTAIL_TEST_SEED", "11"))
# A world big enough for stable default rates and AUCs, small enough to build in seconds.
MODERATE = WorldSpec(merchants=3000, consumers=12000, months=30, seed=SEED)
SMALL = WorldSpec(merchants=120, consumers=400, months=8, seed=3, start=datetime.date(2023, 9, 1))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    make_world(root, MODERATE)
    return root


@pytest.fixture(scope="module")
def tables(world: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(world / "raw" / f"{name}.parquet") for name in TABLES}


@pytest.fixture(scope="module")
def closed(world: Path) -> pl.DataFrame:
    """Loans whose 12-month window closed, with the label from the repayments and the truth."""
    truth = pl.read_parquet(world / "truth" / "loans.parquet")
    return labels(world / "raw", world_end(MODERATE)).join(
        truth.select("loan_id", "true_pd", "defaulted"), on="loan_id"
    )


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_same_seed_gives_byte_identical_tables(tmp_path: Path) -> None:
    first = generate(SMALL, tmp_path / "a" / "raw", tmp_path / "a" / "truth")
    second = generate(SMALL, tmp_path / "b" / "raw", tmp_path / "b" / "truth")
    assert first == second
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    other = WorldSpec(SMALL.merchants, SMALL.consumers, SMALL.months, seed=4, start=SMALL.start)
    generate(other, tmp_path / "c" / "raw", tmp_path / "c" / "truth")
    assert _digests(tmp_path / "a") != _digests(tmp_path / "c")


def test_the_public_face_keeps_its_names() -> None:
    """The pipeline, the benchmarks and the tests import these from world.synth."""
    import world.synth

    assert {"WorldSpec", "generate", "world_end", "FIRST_LOAN_MONTH"} <= set(world.synth.__all__)
    assert world.synth.FIRST_LOAN_MONTH == FIRST_LOAN_MONTH
    assert world.synth.LOGIT_PARTS == LOGIT_PARTS


def test_risk_parts_and_the_loan_give_every_logit_part_of_the_contract() -> None:
    parts = RiskParts(*(np.arange(3.0) + i for i in range(4)))
    np.testing.assert_array_equal(parts.total, np.arange(3.0) * 4 + 6)
    at = parts.at(np.array([2, 0]))
    # issue_loans adds the loan's own terms and the macro path to the entity's parts.
    assert {*at, "logit_loan", "logit_macro"} == set(LOGIT_PARTS)
    np.testing.assert_array_equal(at["logit_hidden"], [5.0, 3.0])


def test_calendar_months_and_sampled_days() -> None:
    assert add_months(datetime.date(2024, 1, 31), 1) == datetime.date(2024, 2, 29)
    assert add_months(datetime.date(2023, 11, 1), 14) == datetime.date(2025, 1, 1)
    cal = build_calendar(datetime.date(2023, 11, 1), 3)
    assert len(cal.month_start) == 3 + 14
    assert [cal.days_in(m) for m in range(3)] == [30, 31, 31]
    days = cal.sample_days(np.random.default_rng(0), 0, 20_000)
    assert days.min() >= cal.month_start[0]
    assert days.max() < cal.month_start[1]
    # 11-11 is the busiest day of November.
    busiest = np.bincount(days - cal.month_start[0]).argmax() + 1
    assert busiest == 11


def test_world_spec_and_end() -> None:
    assert world_end(SMALL) == datetime.date(2024, 5, 1)
    assert world_end(MODERATE) == datetime.date(2025, 7, 1)
    with pytest.raises(ValueError, match="first day of a month"):
        WorldSpec(1, 1, 1, 0, start=datetime.date(2023, 1, 2))
    with pytest.raises(ValueError, match="months >= 1"):
        WorldSpec(1, 1, 0, 0)
    with pytest.raises(ValueError, match="at least one merchant"):
        WorldSpec(0, 1, 1, 0)


def test_tables_follow_the_contract_and_pass_validation(
    world: Path, tables: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    for name, df in tables.items():
        assert df.schema == contract.TABLES[name].schema, name
    summary = validate(
        world / "raw",
        tmp_path / "validated",
        tmp_path / "quarantine",
        reference_time=datetime.datetime.combine(
            world_end(MODERATE), datetime.time(), datetime.UTC
        ),
    )
    assert {t: s["quarantined"] for t, s in summary["tables"].items()} == dict.fromkeys(TABLES, 0)
    excluded = summary["consent_excluded"]
    # A few percent have not authorised data use.
    assert 0.01 < excluded["merchants"] / MODERATE.merchants < 0.06
    assert 0.01 < excluded["consumers"] / MODERATE.consumers < 0.07
    truth = pl.read_parquet(world / "truth" / "loans.parquet")
    assert truth["loan_id"].to_list() == tables["loans"]["loan_id"].to_list()
    assert truth["true_pd"].is_between(0, 1).all()


def test_volume_and_links(tables: dict[str, pl.DataFrame]) -> None:
    mt, ct = tables["merchant_transactions"], tables["consumer_transactions"]
    end = world_end(MODERATE)
    for df in (mt, ct):
        assert df["ts"].max().date() < end
        assert df["ts"].min().date() >= MODERATE.start
        assert (df["amount"] == df["amount"].round(2)).all()
    # Kinds all occur; consumer directions agree with kinds.
    assert set(mt["kind"]) == set(contract.MERCHANT_TXN_KINDS)
    # The platform flavour uses the wallet's six kinds; the bank's kinds come from its flavour.
    assert set(ct["kind"]) == {
        "purchase",
        "transfer_in",
        "transfer_out",
        "income",
        "bill_payment",
        "repayment",
    }
    # Every sale to a known buyer is that buyer's purchase from the merchant (same time/amount).
    sales = mt.filter((pl.col("kind") == "sale") & pl.col("buyer_id").is_not_null())
    purchases = ct.filter(pl.col("counterparty_id").str.starts_with("M"))
    assert sales.height == purchases.height > 0
    key = ["ts", "amount"]
    assert (
        sales.select(pl.col("merchant_id").alias("m"), pl.col("buyer_id").alias("c"), *key)
        .sort("m", "c", *key)
        .equals(
            purchases.select(
                pl.col("counterparty_id").alias("m"), pl.col("consumer_id").alias("c"), *key
            ).sort("m", "c", *key)
        )
    )
    # Transfers between consumers appear on both sides.
    outs = ct.filter(pl.col("kind") == "transfer_out")
    ins = ct.filter((pl.col("kind") == "transfer_in") & pl.col("counterparty_id").is_not_null())
    assert outs.height == ins.height > 0


def test_risky_consumers_buy_from_risky_merchants(
    world: Path, tables: dict[str, pl.DataFrame]
) -> None:
    """A connection effect: the buyer's latent risk and the seller's latent risk go together."""
    truth = pl.read_parquet(world / "truth" / "loans.parquet")
    risk = truth.group_by("entity_id").agg(pl.col("risk_index").first())
    pairs = (
        tables["merchant_transactions"]
        .filter(pl.col("buyer_id").is_not_null())
        .join(risk.rename({"risk_index": "m_risk"}), left_on="merchant_id", right_on="entity_id")
        .join(risk.rename({"risk_index": "c_risk"}), left_on="buyer_id", right_on="entity_id")
    )
    assert pairs.select(pl.corr("m_risk", "c_risk")).item() > 0.15


def test_calendar_peaks_and_dips(tables: dict[str, pl.DataFrame]) -> None:
    daily = (
        tables["merchant_transactions"]
        .filter(pl.col("kind") == "sale")
        .group_by(pl.col("ts").dt.date().alias("day"))
        .len()
        .sort("day")
    )

    def mean_between(lo: str, hi: str) -> float:
        d0, d1 = datetime.date.fromisoformat(lo), datetime.date.fromisoformat(hi)
        return daily.filter(pl.col("day").is_between(d0, d1))["len"].mean()

    november = mean_between("2023-11-14", "2023-11-30")
    assert mean_between("2023-11-11", "2023-11-11") > 2.5 * november  # Double Eleven
    assert mean_between("2024-06-18", "2024-06-18") > 1.8 * mean_between("2024-06-19", "2024-06-30")
    # Spring Festival 2024 fell on 10 February: the holiday week is far quieter than early January.
    assert mean_between("2024-02-08", "2024-02-14") < 0.6 * mean_between("2024-01-02", "2024-01-14")
    # Weekly cycle: Saturdays busier than Tuesdays.
    dow = (
        daily.with_columns(pl.col("day").dt.weekday().alias("dow"))
        .group_by("dow")
        .agg(pl.col("len").median())
    )
    med = dict(zip(dow["dow"].to_list(), dow["len"].to_list(), strict=True))
    assert med[6] > med[2]


def test_loans_schedules_and_observation(tables: dict[str, pl.DataFrame]) -> None:
    loans, reps = tables["loans"], tables["repayments"]
    first_issue = loans["issued_on"].min()
    assert first_issue >= datetime.date(2023, 1 + FIRST_LOAN_MONTH, 1)
    # Repeat borrowers exist, in both segments.
    repeat = loans.group_by("segment", "entity_id").len().filter(pl.col("len") > 1)
    assert set(repeat["segment"]) == {"merchant", "consumer"}
    # Every loan has its full schedule, instalments 1..term, due after issue.
    sched = reps.group_by("loan_id").agg(pl.len().alias("n"), pl.col("installment").max())
    joined = loans.join(sched, on="loan_id")
    assert joined.height == loans.height
    assert (joined["n"] == joined["term_months"]).all()
    assert (joined["installment"] == joined["term_months"]).all()
    end = world_end(MODERATE)
    paid = reps.filter(pl.col("paid_on").is_not_null())
    assert paid["paid_on"].max() < end
    assert reps.filter(pl.col("paid_on").is_null())["amount_paid"].eq(0).all()
    assert reps["due_on"].max() > end  # schedules run past the world's end
    # Partial payments occur.
    assert paid.filter(pl.col("amount_paid") < pl.col("amount_due")).height > 0
    merchant_caps = loans.group_by("segment").agg(pl.col("principal").max())
    caps = dict(zip(merchant_caps["segment"], merchant_caps["principal"], strict=True))
    assert caps["merchant"] <= 5_000_000
    assert caps["consumer"] <= 200_000


def test_discipline_shows_in_refunds_and_in_punctuality(
    world: Path, tables: dict[str, pl.DataFrame]
) -> None:
    """The trait the interactions turn on leaves traces: refunds per order and late instalments."""
    truth = pl.read_parquet(world / "truth" / "loans.parquet")
    discipline = truth.select("segment", "entity_id", "discipline").unique(["segment", "entity_id"])
    txns = tables["merchant_transactions"]
    refunds = (
        txns.group_by(pl.col("merchant_id").alias("entity_id"))
        .agg(
            (pl.col("kind") == "refund").sum().alias("refunds"),
            (pl.col("kind") == "sale").sum().alias("sales"),
        )
        .filter(pl.col("sales") >= 100)
        .join(discipline.filter(pl.col("segment") == "merchant"), on="entity_id")
        .with_columns((pl.col("refunds") / pl.col("sales")).alias("rate"))
    )
    rho = refunds.select(pl.corr("rate", "discipline", method="spearman")).item()
    assert rho < -0.85, rho  # e^-0.8 per SD of discipline, read through Poisson counts
    late = (
        tables["repayments"]
        .filter(pl.col("paid_on").is_not_null())
        .group_by("loan_id")
        .agg((pl.col("paid_on") > pl.col("due_on")).mean().alias("late_share"))
        .join(tables["loans"].select("loan_id", "segment", "entity_id"), on="loan_id")
        .join(discipline, on=["segment", "entity_id"])
    )
    for segment, part in late.group_by("segment"):
        rho = part.select(pl.corr("late_share", "discipline", method="spearman")).item()
        assert rho < -0.35, (segment, rho)  # lateness is risk plus a habit term


def test_default_rates_in_range_and_match_the_truth(closed: pl.DataFrame) -> None:
    rates = closed.group_by("segment").agg(
        pl.len(), pl.col("bad").mean().alias("rate"), pl.col("true_pd").mean().alias("pd")
    )
    by = {row["segment"]: row for row in rates.iter_rows(named=True)}
    assert 0.02 <= by["merchant"]["rate"] <= 0.05
    # Unsecured online consumer credit: a few percent go 90+ days past due within a year.
    assert 0.01 <= by["consumer"]["rate"] <= 0.05
    for seg in ("merchant", "consumer"):
        assert by[seg]["len"] > 2000
        # Calibration of the truth: the mean true PD is close to the observed rate.
        assert abs(by[seg]["pd"] - by[seg]["rate"]) < 0.4 * by[seg]["rate"]
    # The label derived from the repayments is exactly the Bernoulli draw from the true PD.
    assert (closed["bad"] == closed["defaulted"]).all()


def test_truth_splits_the_log_odds_into_parts_the_log_can_and_cannot_show(world: Path) -> None:
    """The saved parts add up to the true PD; the hidden part is real but not most of the risk."""
    truth = pl.read_parquet(world / "truth" / "loans.parquet")
    total = truth.select(pl.sum_horizontal(LOGIT_PARTS)).to_series().to_numpy()
    pd_ = truth["true_pd"].to_numpy()
    np.testing.assert_allclose(total, np.log(pd_ / (1.0 - pd_)), rtol=0, atol=1e-9)
    for seg, part in truth.group_by("segment"):
        spread = {c: float(part[c].std()) for c in LOGIT_PARTS}
        # Every segment's risk has traits, state at issue, interactions and a hidden part ...
        assert all(spread[c] > 0.05 for c in LOGIT_PARTS if c != "logit_loan"), (seg, spread)
        # ... and what the log can reveal outweighs what it cannot.
        shown = part.select(
            pl.sum_horizontal("logit_traits", "logit_state", "logit_interactions")
        ).to_series()
        assert float(shown.std()) > 2 * spread["logit_hidden"], (seg, spread)
        # The interactions are a real share of the risk, not a rounding error.
        assert spread["logit_interactions"] > 0.3 * spread["logit_traits"], (seg, spread)


@pytest.mark.parametrize(
    ("segment", "columns"),
    [
        ("merchant", ["log_sales", "trend", "refund_rate", "chargebacks_90", "sale_days_90"]),
        (
            "consumer",
            ["log_income", "income_n", "out_in", "bills_90", "log_balance", "has_balance"],
        ),
    ],
)
def test_simple_model_is_clearly_better_than_random_and_below_perfect(
    world: Path, closed: pl.DataFrame, segment: str, columns: list[str]
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    build = merchant_features if segment == "merchant" else consumer_features
    frame = build(world / "raw", closed).join(
        closed.select("loan_id", "bad", "true_pd"), on="loan_id"
    )
    x = frame.select(columns).to_numpy().astype(float)
    y = frame["bad"].to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    model_auc = auc(y, scores)
    ceiling = auc(y, frame["true_pd"].to_numpy())
    assert 0.6 < model_auc < 0.95, model_auc
    assert 0.6 < ceiling < 0.97, ceiling
    # No single column leaks the label.
    for j in range(x.shape[1]):
        single = auc(y, x[:, j])
        assert max(single, 1 - single) < 0.9, columns[j]
    assert np.isfinite(scores).all()
