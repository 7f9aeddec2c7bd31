"""The application family: the loan asked for, its instalment and its affordability, by hand.

Tiny logs in memory (tests/features_helpers.py). The instalments are the textbook annuities:
12,000 at 18% a year over 12 months is 1,100.16 a month, so 6,000 is 550.08; 6,000 at 12% over
12 months is 533.09. The spine carries the loan (``principal``, ``term_months``); the book's
spine carries the segment's reference loan from params.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.application import RATIO_CAP, SPINE_COLUMNS, annuity
from features.build import DefinitionParams, Inputs, build
from features.definitions import definitions
from tests.features_helpers import (
    AS_OF,
    PARAMS,
    consumer_events,
    entities,
    features,
    inputs,
    loans,
    merchant_events,
    repayments,
)

D = dt.datetime
CONSUMER_INSTALMENT = 550.08  # 6,000 at 18% over 12 months
MERCHANT_INSTALMENT = 533.09  # 6,000 at 12% over 12 months
RATIOS = {
    "consumer": (
        "instalment_to_monthly_inflow",
        "principal_to_monthly_inflow",
        "balance_floor_in_instalments_90d",
        "months_of_cover_90d",
    ),
    "merchant": (
        "instalment_to_monthly_inflow",
        "principal_to_monthly_inflow",
        "worst_month_in_instalments_90d",
    ),
}
LOAN_FEATURES = ("loan_principal", "loan_term_months", "loan_instalment")


def _spine(ids: list[str], principal: float = 6000.0, term: int = 12) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "entity_id": ids,
            "as_of": [AS_OF] * len(ids),
            "principal": [principal] * len(ids),
            "term_months": pl.Series([term] * len(ids), dtype=pl.Int32),
        }
    )


def _rows(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["entity_id"]: row for row in frame.iter_rows(named=True)}


# C1: income of 3,000 twice in the 90 days (plus one before them), a balance of 500 carried
# into the window from March, 3,500 / 4,200 / 3,200 after. C2: purchases only, no inflow.
# C3: a single day of log, the day before as_of. C4: in the book, not in the log.
CONSUMER_LOG = [
    ("C1", D(2024, 3, 15, 9), "income", 3000.0, None, 500.0),
    ("C1", D(2024, 5, 10, 9), "income", 3000.0, None, 3500.0),
    ("C1", D(2024, 6, 10, 9), "income", 3000.0, None, 4200.0),
    ("C1", D(2024, 6, 20, 9), "purchase", 1000.0, "M1", 3200.0),
    ("C2", D(2024, 5, 1, 9), "purchase", 100.0, "M1", 800.0),
    ("C2", D(2024, 6, 1, 9), "purchase", 100.0, "M1", 700.0),
    ("C3", D(2024, 6, 30, 12), "income", 1500.0, None, 2000.0),
]
CONSUMERS = ["C1", "C2", "C3", "C4"]


@pytest.fixture(scope="module")
def consumer_rows() -> dict[str, dict]:
    data = inputs("consumer", consumer_events(CONSUMER_LOG), CONSUMERS)
    return _rows(features("consumer", _spine(CONSUMERS), data))


def test_annuity_is_the_textbook_instalment() -> None:
    frame = pl.DataFrame({"p": [12_000.0, 6000.0, 1200.0], "n": [12, 12, 12]})
    at_18 = frame.select(annuity(pl.col("p"), pl.col("n"), 0.18))["p"].to_list()
    assert at_18 == pytest.approx([1100.16, 550.08, 110.016], abs=0.005)
    at_12 = frame.select(annuity(pl.col("p"), pl.col("n"), 0.12))["p"].to_list()
    assert at_12[1] == pytest.approx(MERCHANT_INSTALMENT, abs=0.005)
    at_0 = frame.select(annuity(pl.col("p"), pl.col("n"), 0.0))["p"].to_list()
    assert at_0 == [1000.0, 500.0, 100.0]
    with pytest.raises(ValueError, match=r"expected an annual interest rate in \[0, 1\)"):
        annuity(pl.col("p"), pl.col("n"), 1.2)


def test_hand_computed_consumer_affordability(consumer_rows: dict[str, dict]) -> None:
    c1 = consumer_rows["C1"]
    assert c1["loan_principal"] == 6000.0
    assert c1["loan_term_months"] == 12
    assert c1["loan_instalment"] == pytest.approx(CONSUMER_INSTALMENT, abs=0.005)
    inflow = 6000.0 / 3  # income of the 90 days, per month (the March pay is older)
    assert c1["instalment_to_monthly_inflow"] == pytest.approx(CONSUMER_INSTALMENT / inflow, 1e-4)
    assert c1["principal_to_monthly_inflow"] == pytest.approx(3.0)
    # the floor is March's 500, still in force when the window opens on April 2
    assert c1["balance_floor_in_instalments_90d"] == pytest.approx(500 / CONSUMER_INSTALMENT, 1e-4)
    # days in force over the 90: 500 x 38, 3,500 x 31, 4,200 x 10, 3,200 x 11 -> median 3,200
    assert c1["months_of_cover_90d"] == pytest.approx(3200 / CONSUMER_INSTALMENT, 1e-4)


def test_no_inflow_is_the_cap_not_null(consumer_rows: dict[str, dict]) -> None:
    for entity in ("C2", "C4"):  # purchases only; no event at all
        row = consumer_rows[entity]
        assert row["instalment_to_monthly_inflow"] == RATIO_CAP, entity
        assert row["principal_to_monthly_inflow"] == RATIO_CAP, entity
    assert consumer_rows["C2"]["balance_floor_in_instalments_90d"] == pytest.approx(
        700 / CONSUMER_INSTALMENT, 1e-4
    )
    # no balance ever known: unknown, like the balance features themselves
    assert consumer_rows["C4"]["balance_floor_in_instalments_90d"] is None
    assert consumer_rows["C4"]["months_of_cover_90d"] is None


def test_a_single_day_of_log(consumer_rows: dict[str, dict]) -> None:
    c3 = consumer_rows["C3"]
    assert c3["instalment_to_monthly_inflow"] == pytest.approx(CONSUMER_INSTALMENT / 500, 1e-4)
    assert c3["principal_to_monthly_inflow"] == pytest.approx(12.0)
    # the window's only known day: floor and median are that day's closing balance
    assert c3["balance_floor_in_instalments_90d"] == pytest.approx(2000 / CONSUMER_INSTALMENT, 1e-4)
    assert c3["months_of_cover_90d"] == pytest.approx(2000 / CONSUMER_INSTALMENT, 1e-4)


def test_an_overdrawn_floor_is_negative_cover() -> None:
    log = [
        ("C1", D(2024, 6, 1, 9), "income", 3000.0, None, 2500.0),
        ("C1", D(2024, 6, 5, 9), "purchase", 2700.0, "M1", -200.0),
        ("C1", D(2024, 6, 6, 9), "income", 500.0, None, 300.0),
    ]
    data = inputs("consumer", consumer_events(log), ["C1"])
    row = features("consumer", _spine(["C1"]), data).row(0, named=True)
    assert row["balance_floor_in_instalments_90d"] == pytest.approx(
        -200 / CONSUMER_INSTALMENT, 1e-4
    )


def test_a_larger_loan_never_looks_more_affordable() -> None:
    """Same entity, same log, a loan 4x larger: every ratio moves against the applicant."""
    data = inputs("consumer", consumer_events(CONSUMER_LOG), ["C1"])
    small = features("consumer", _spine(["C1"], 3000.0), data).row(0, named=True)
    large = features("consumer", _spine(["C1"], 12_000.0), data).row(0, named=True)
    specs = {s.name: s for s in definitions("consumer", PARAMS).catalog.specs}
    for name in RATIOS["consumer"]:
        assert specs[name].monotone * (large[name] - small[name]) < 0, name


def test_hand_computed_merchant_affordability() -> None:
    # blocks of 30 days back from as_of: net sales 9,000 (June), 5,000 (May), 2,500 (April)
    log = [
        ("M1", D(2024, 6, 15, 10), "sale", 9000.0, None),
        ("M1", D(2024, 5, 15, 10), "sale", 6000.0, None),
        ("M1", D(2024, 5, 16, 10), "refund", 1000.0, None),
        ("M1", D(2024, 4, 15, 10), "sale", 3000.0, None),
        ("M1", D(2024, 4, 16, 10), "chargeback", 500.0, None),
    ]
    data = inputs("merchant", merchant_events(log), ["M1", "M2"])
    rows = _rows(features("merchant", _spine(["M1", "M2"]), data))
    m1 = rows["M1"]
    assert m1["loan_instalment"] == pytest.approx(MERCHANT_INSTALMENT, abs=0.005)
    inflow = (18_000 - 1000) / 3  # the limit's monthly inflow: sales - refunds, per month
    assert m1["monthly_inflow"] == pytest.approx(inflow)
    assert m1["instalment_to_monthly_inflow"] == pytest.approx(MERCHANT_INSTALMENT / inflow, 1e-4)
    assert m1["principal_to_monthly_inflow"] == pytest.approx(6000 / inflow)
    assert m1["worst_month_in_instalments_90d"] == pytest.approx(2500 / MERCHANT_INSTALMENT, 1e-4)
    m2 = rows["M2"]  # no sales: the cap; the leanest month is a month of nothing
    assert m2["instalment_to_monthly_inflow"] == RATIO_CAP
    assert m2["worst_month_in_instalments_90d"] == 0


@pytest.mark.parametrize("segment", ["merchant", "consumer"])
def test_without_a_log_the_loan_is_kept_and_the_ratios_are_unknown(segment: str) -> None:
    events = consumer_events([]) if segment == "consumer" else merchant_events([])
    data = inputs(segment, events, ["E1"])
    data = Inputs(data.events, data.entities, data.loans, data.repayments, has_log=False)
    row = features(segment, _spine(["E1"]), data).row(0, named=True)
    for name in RATIOS[segment]:
        assert row[name] is None, name
    assert row["loan_principal"] == 6000.0
    assert row["loan_term_months"] == 12
    assert row["loan_instalment"] > 0


def test_every_catalog_has_the_family_with_its_metadata() -> None:
    for segment, ratios in RATIOS.items():
        specs = {s.name: s for s in definitions(segment, PARAMS).catalog.specs}
        family = {n for n, s in specs.items() if s.family == "application"}
        assert family == {*LOAN_FEATURES, *ratios}, segment
        for name in family:
            assert specs[name].dimension == "ability_to_pay"
            assert specs[name].reason
        assert specs["instalment_to_monthly_inflow"].monotone == -1
        assert specs["principal_to_monthly_inflow"].monotone == -1
        assert all(specs[n].monotone == 0 for n in LOAN_FEATURES)
    assert definitions("consumer", PARAMS).spine_columns == SPINE_COLUMNS


def test_the_rate_is_the_products_and_part_of_the_catalog_hash() -> None:
    rates = dict(PARAMS.annual_interest_rates)
    cheaper = DefinitionParams(
        windows=PARAMS.windows,
        rules=PARAMS.rules,
        merchant_net_margin=PARAMS.merchant_net_margin,
        consumer_low_balance_share=PARAMS.consumer_low_balance_share,
        annual_interest_rates={**rates, "consumer": 0.0},
    )
    assert (
        definitions("consumer", cheaper).catalog.hash
        != definitions("consumer", PARAMS).catalog.hash
    )
    data = inputs("consumer", consumer_events(CONSUMER_LOG), ["C1"])
    row = features("consumer", _spine(["C1"]), data, params=cheaper).row(0, named=True)
    assert row["loan_instalment"] == 500.0
    without = DefinitionParams(
        windows=PARAMS.windows,
        rules=PARAMS.rules,
        merchant_net_margin=PARAMS.merchant_net_margin,
        consumer_low_balance_share=PARAMS.consumer_low_balance_share,
        annual_interest_rates={"merchant": 0.12},
    )
    with pytest.raises(ValueError, match=r"expected limits\.consumer\.annual_interest_rate"):
        definitions("consumer", without)


# --- the spine contract -------------------------------------------------------------------


def _build(spine: pl.DataFrame) -> pl.DataFrame:
    data = inputs("consumer", consumer_events(CONSUMER_LOG), CONSUMERS)
    return build(definitions("consumer", PARAMS), spine, data)


def test_a_spine_without_the_loan_is_refused_in_one_line() -> None:
    spine = _spine(["C1"]).drop("principal")
    with pytest.raises(ValueError, match=r"expected spine columns .*; missing \['principal'\]"):
        _build(spine)
    with pytest.raises(ValueError, match=r"missing \['principal', 'term_months'\]"):
        _build(spine.drop("term_months"))


@pytest.mark.parametrize(
    ("principal", "term", "rule"),
    [
        (0.0, 12, "principal > 0"),
        (-5.0, 12, "principal > 0"),
        (None, 12, "principal > 0"),
        (float("inf"), 12, "principal > 0"),
        (1000.0, 0, "term_months a whole number"),
        (1000.0, None, "term_months a whole number"),
        (1000.0, 361, "term_months a whole number"),
    ],
)
def test_a_bad_loan_is_refused_naming_the_rule_and_the_entity(
    principal: float | None, term: int | None, rule: str
) -> None:
    spine = pl.DataFrame(
        {
            "entity_id": ["C1", "C2"],
            "as_of": [AS_OF, AS_OF],
            "principal": pl.Series([1000.0, principal], dtype=pl.Float64),
            "term_months": pl.Series([6, term], dtype=pl.Int32),
        }
    )
    with pytest.raises(ValueError, match=rf"expected {rule}.*1 row\(s\).*entity 'C2'"):
        _build(spine)


def test_a_text_principal_is_refused() -> None:
    spine = _spine(["C1"]).with_columns(pl.col("principal").cast(pl.String))
    with pytest.raises(ValueError, match="expected a numeric spine column 'principal'; got String"):
        _build(spine)


def test_any_spine_carrying_the_loan_works_and_keeps_its_columns() -> None:
    """An online decision's spine: one applicant, the amount and term asked for, any order."""
    spine = pl.DataFrame(
        {
            "term_months": [6, 24],
            "request_id": ["r1", "r2"],
            "principal": [2000, 9000],  # integers are fine
            "as_of": [AS_OF, AS_OF],
            "entity_id": ["C3", "C1"],
        }
    )
    frame = _build(spine)
    assert frame.columns[:5] == spine.columns
    assert frame["loan_principal"].to_list() == [2000.0, 9000.0]
    assert frame["loan_term_months"].to_list() == [6, 24]


# --- point in time ------------------------------------------------------------------------


def test_events_at_or_after_as_of_never_change_the_family() -> None:
    spine = _spine(CONSUMERS)
    data = inputs("consumer", consumer_events(CONSUMER_LOG), CONSUMERS)
    later = [
        ("C1", D(2024, 7, 1, 0), "purchase", 9000.0, "M1", -5000.0),  # on as_of itself
        ("C2", D(2024, 7, 1, 8), "income", 50_000.0, None, 60_000.0),
        ("C3", D(2024, 9, 1, 8), "income", 80_000.0, None, 90_000.0),
        ("C4", D(2024, 7, 2, 8), "income", 1000.0, None, 10.0),
    ]
    future = inputs("consumer", consumer_events([*CONSUMER_LOG, *later]), CONSUMERS)
    names = [*LOAN_FEATURES, *RATIOS["consumer"]]
    before = features("consumer", spine, data).select(names)
    after = features("consumer", spine, future).select(names)
    assert_frame_equal(after, before)
    merchant_log = [("M1", D(2024, 6, 15, 10), "sale", 900.0, None)]
    merchant_later = [("M1", D(2024, 7, 1, 0), "refund", 900.0, None)]
    names = [*LOAN_FEATURES, *RATIOS["merchant"]]
    before = features(
        "merchant", _spine(["M1"]), inputs("merchant", merchant_events(merchant_log), ["M1"])
    ).select(names)
    after = features(
        "merchant",
        _spine(["M1"]),
        inputs("merchant", merchant_events(merchant_log + merchant_later), ["M1"]),
    ).select(names)
    assert_frame_equal(after, before)


# --- the spines the pipeline builds -------------------------------------------------------


def _validated(tmp_path: Path) -> Path:
    """A tiny validated book: two consumers (one without consent), two loans with outcomes."""
    from pipeline.storage import Layout

    layout = Layout(tmp_path / "data")
    folder = layout.validated
    folder.mkdir(parents=True)
    people = entities(["C1", "C2"]).drop("onboarded_on").rename({"entity_id": "consumer_id"})
    people.with_columns(consent=pl.Series([True, False])).write_parquet(
        folder / "consumers.parquet"
    )
    loans(
        [
            ("L1", "consumer", "C1", dt.date(2023, 1, 10), 4000.0, 6),
            ("L2", "consumer", "C1", dt.date(2024, 2, 10), 7500.0, 12),
        ]
    ).write_parquet(folder / "loans.parquet")
    repayments([]).write_parquet(folder / "repayments.parquet")
    pl.DataFrame({"loan_id": ["L1"], "defaulted": [True]}).write_parquet(
        folder / "outcomes.parquet"
    )
    return layout.root


def test_the_training_spine_carries_each_loans_own_principal_and_term(tmp_path: Path) -> None:
    from models.labels import LabelParams
    from pipeline.inputs import training_spine
    from pipeline.storage import Layout

    spine = training_spine(Layout(_validated(tmp_path)), "consumer", LabelParams())
    assert spine.select("loan_id", "principal", "term_months").rows() == [
        ("L1", 4000.0, 6),
        ("L2", 7500.0, 12),
    ]


def test_the_reference_loan_reaches_the_scoring_spine_and_the_manifest(tmp_path: Path) -> None:
    from pipeline.config import ApplicationParams, load_settings
    from pipeline.inputs import reference_loan_stated, scoring_spine
    from pipeline.storage import Layout

    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    application = ApplicationParams.model_validate(
        {"reference_loan": {"consumer": {"principal": 6000, "term_months": 12}}}
    )
    layout = Layout(_validated(tmp_path))
    spine = scoring_spine(layout, "consumer", dt.date(2024, 6, 1), application)
    assert spine.to_dicts() == [
        {"entity_id": "C1", "as_of": dt.date(2024, 6, 1), "principal": 6000.0, "term_months": 12}
    ]  # C2 gave no consent
    stated = reference_loan_stated(application, settings.limits, "consumer")
    assert stated == {
        "principal": 6000.0,
        "term_months": 12,
        "annual_interest_rate": settings.limits["consumer"].annual_interest_rate,
        "instalment": pytest.approx(CONSUMER_INSTALMENT, abs=0.005),
    }
    with pytest.raises(ValueError, match=r"expected application\.reference_loan\.merchant"):
        scoring_spine(layout, "merchant", dt.date(2024, 6, 1), application)


def test_params_hold_a_reference_loan_for_every_segment() -> None:
    from features.contract.segments import NAMES
    from pipeline.config import load_settings

    settings = load_settings(Path(__file__).resolve().parent.parent / "params.yaml")
    assert set(settings.application.reference_loan) == set(NAMES)
    for loan in settings.application.reference_loan.values():
        assert loan.principal > 0
        assert loan.term_months > 0
