"""A synthetic lending world with known risk, written in the input contract.

No lender hands out its logs, so the demo, the tests and the benchmarks run on this world. It is
built so that the figures measured on it mean something:

* every merchant and consumer has latent traits (business health or income stability,
  discipline, volatility, growth) that drive its *behaviour* (sales level, trend and volatility,
  refunds, chargebacks, income regularity, spending ratio, bill payments, balances, lateness on
  earlier loans) and, through the same traits, its default risk (:mod:`world.population`);
* merchants and consumers are linked: a consumer's purchase from a platform merchant is also that
  merchant's sale (``buyer_id``), and risky consumers tend to buy from riskier merchants
  (:mod:`world.activity`);
* the calendar is real: weekly and monthly cycles, the 6-18 and 11-11 shopping festivals, the
  Spring Festival dip; a macro factor by month moves sales, job losses, distress and defaults
  (:mod:`world.seasons`);
* loans are issued from month 4 onwards (repeat loans included) with instalment schedules;
  each loan's true default probability is drawn from the traits, the state at issue, the macro
  path over its window and unobserved noise, the default is a Bernoulli draw from it, and the
  repayments follow, so 90+ days-past-due defaults arise naturally (:mod:`world.loans`). The
  true PD is saved beside the data (``truth/loans.parquet``), never as a feature;
* risk is not a sum of parts. Besides the additive trait index, each segment's risk at issue has
  interactions that real lending shows and that leave traces in the log (see
  :func:`world.risk.merchant_risk_now` and :func:`world.risk.consumer_risk_now`): fixed
  obligations (rent, other lenders' instalments, paid as bills) weigh on irregular earners far
  more than on salaried ones; over-spending hurts the undisciplined most; young borrowers new to
  the platform are riskier than youth or a short tenure alone suggest; a sales slump is worse
  for a merchant with many refunds and chargebacks; a young merchant with few sales is riskier
  than a young or a small one. A points-per-bin scorecard cannot add these up; a tree model can
  find them;
* merchants borrow often (a credit line drawn every few months, top-ups while a loan is open)
  and consumers less often, so an out-of-time month holds enough loans to measure calibration.

The world comes in two flavours (:data:`FLAVOURS`, ``WorldSpec.flavour``): ``platform`` (all of
the above) and ``bank``, a retail bank's consumers whose log is a current-account statement
(overdrafts, penalties, cash, fees, interest) and whose loans come with outcomes instead of an
instalment log (:mod:`world.bank_synth`, :mod:`world.bank`); the same traits drive both.

Everything is vectorised over entities and events (numpy/polars); the only Python loop is over
months, which also bounds memory: each month's transactions are written as one Parquet row group
(:mod:`world.writer`). The same seed gives byte-identical tables.

This module is the world's public face: :class:`WorldSpec`, :func:`generate` and
:func:`world_end`; the month loop here calls the steps the other modules hold.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from features.contract.truth import KNOWABLE_PARTS, LOGIT_PARTS
from world import activity, bank_synth
from world.groups import (
    CONSUMER_LOGIT_PER_SHIFT,
    MERCHANT_LOGIT_PER_SHIFT,
    GroupBias,
    draw_gender,
)
from world.loans import (
    FIRST_LOAN_MONTH,
    LoanBook,
    consumer_applications,
    merchant_applications,
)
from world.population import Consumers, Merchants, draw_consumers, draw_merchants
from world.seasons import Calendar, add_months, build_calendar, macro_path
from world.writer import ChunkWriter, consumer_rows, merchant_rows, write_entities, write_loans

__all__ = [
    "FIRST_LOAN_MONTH",
    "FLAVOURS",
    "KNOWABLE_PARTS",
    "LOGIT_PARTS",
    "WorldSpec",
    "generate",
    "world_end",
]


#: The world's flavours: a payment platform's merchants and consumers (wallet logs, instalment
#: schedules), or a retail bank's consumers (current-account statements, loan outcomes).
FLAVOURS: tuple[str, ...] = ("platform", "bank")


@dataclass(frozen=True)
class WorldSpec:
    """The size, span, seed and flavour of a synthetic world.

    ``start`` must be the first day of a month; the world covers ``months`` whole calendar
    months from it, and :func:`world_end` is the first day after them. The ``bank`` flavour
    has consumers only (:mod:`world.bank_synth`): ``merchants`` is not used. ``bias``
    (a :class:`world.groups.GroupBias` or its params mapping; none by default) plants a
    group disparity for the fairness tests.
    """

    merchants: int
    consumers: int
    months: int
    seed: int
    start: datetime.date = datetime.date(2023, 1, 1)
    flavour: str = "platform"
    bias: GroupBias | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", GroupBias.of(self.bias))
        if self.flavour not in FLAVOURS:
            raise ValueError(f"expected a flavour in {list(FLAVOURS)}; got {self.flavour!r}")
        if self.consumers < 1 or (self.flavour == "platform" and self.merchants < 1):
            raise ValueError(
                "expected at least one merchant and one consumer; "
                f"got merchants={self.merchants}, consumers={self.consumers}"
            )
        if self.months < 1:
            raise ValueError(f"expected months >= 1; got {self.months}")
        if self.seed < 0:
            raise ValueError(f"expected a non-negative seed; got {self.seed}")
        if not isinstance(self.start, datetime.date) or self.start.day != 1:
            raise ValueError(f"expected start on the first day of a month; got {self.start!r}")


def world_end(spec: WorldSpec) -> datetime.date:
    """The first day after the observed period (nothing on or after it is observed)."""
    return add_months(spec.start, spec.months)


def generate(
    spec: WorldSpec,
    raw_dir: Path,
    truth_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write a synthetic world in the input contract and the true PD of every loan.

    The platform flavour writes ``raw_dir/<table>.parquet`` for each contract table except
    ``outcomes``; the bank flavour writes ``consumers``, ``consumer_transactions``, ``loans``
    and ``outcomes`` (:mod:`world.bank_synth`). Both write
    ``truth_dir/loans.parquet`` (``loan_id``, ``segment``, ``entity_id``, ``issued_on``,
    ``true_pd``, ``defaulted``, the parts of its log-odds and the borrower's latent traits) so
    calibration can be checked against the truth. It writes straight into the folders it is
    given: the pipeline's generate stage hands it temporary folders and publishes them whole
    (:func:`pipeline.storage.publishing`), so a failure leaves no half-written world. Returns
    the rows written per table.
    """
    say = progress or (lambda _msg: None)
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    if spec.flavour == "bank":
        counts = bank_synth.generate_into(
            raw_dir,
            consumers=spec.consumers,
            months=spec.months,
            seed=spec.seed,
            start=spec.start,
            say=say,
            bias=spec.bias,
        )
    else:
        counts = _generate_into(spec, raw_dir, say)
    (raw_dir / "truth_loans.parquet").replace(truth_dir / "loans.parquet")
    return counts


@dataclass(frozen=True)
class _World:
    """What stays fixed while the months run: calendar, macro path, entities and their distress."""

    spec: WorldSpec
    cal: Calendar
    macro: np.ndarray
    mer: Merchants
    distress: np.ndarray  # (months, merchants)
    con: Consumers

    @property
    def end_day(self) -> int:
        """Day number of :func:`world_end`."""
        return int(self.cal.month_start[self.spec.months])


@dataclass
class _History:
    """What the world remembers from month to month (by month, by entity)."""

    sales: np.ndarray  # (months, merchants) sales in yuan
    income: np.ndarray  # (months, consumers) income in yuan
    unemployed: np.ndarray  # (months, consumers)
    balance: np.ndarray  # consumers' latest closing balance

    @classmethod
    def start(cls, world: _World) -> _History:
        """Nothing remembered yet; balances at their opening level."""
        months, n_m, n_c = world.spec.months, world.spec.merchants, world.spec.consumers
        return cls(
            sales=np.zeros((months, n_m)),
            income=np.zeros((months, n_c)),
            unemployed=np.zeros((months, n_c), dtype=bool),
            balance=world.con.balance0.copy(),
        )


def _generate_into(spec: WorldSpec, out: Path, say: Callable[[str], None]) -> dict[str, int]:
    """Write every table into ``out`` (truth as ``truth_loans.parquet``); return the rows."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0]))
    cal = build_calendar(spec.start, spec.months)
    macro = macro_path(rng, spec.months, spec.months + 13)
    say(f"entities: {spec.merchants} merchants, {spec.consumers} consumers")
    mer_gender = draw_gender(spec.seed, spec.merchants, stream=0)
    con_gender = draw_gender(spec.seed, spec.consumers, stream=1)
    bias = spec.bias
    mer, distress = draw_merchants(
        rng,
        spec.merchants,
        cal,
        spec.months,
        macro,
        gender=mer_gender,
        shift=None if bias is None else bias.shift(mer_gender, MERCHANT_LOGIT_PER_SHIFT),
    )
    con = draw_consumers(
        rng,
        spec.consumers,
        cal,
        spec.months,
        gender=con_gender,
        shift=None if bias is None else bias.shift(con_gender, CONSUMER_LOGIT_PER_SHIFT),
    )
    write_entities(out, mer, con)
    world = _World(spec=spec, cal=cal, macro=macro, mer=mer, distress=distress, con=con)

    with ThreadPoolExecutor(max_workers=1) as pool:
        m_writer = ChunkWriter(out / "merchant_transactions.parquet", "merchant_transactions", pool)
        c_writer = ChunkWriter(out / "consumer_transactions.parquet", "consumer_transactions", pool)
        book = _months(world, m_writer=m_writer, c_writer=c_writer, say=say)
        m_writer.close()
        c_writer.close()
    say("loans and repayments")
    all_loans = pl.concat(book.loans) if book.loans else None
    n_rep = write_loans(out, all_loans, book.schedules, mer, con)
    return {
        "merchants": spec.merchants,
        "consumers": spec.consumers,
        "merchant_transactions": m_writer.rows,
        "consumer_transactions": c_writer.rows,
        "loans": 0 if all_loans is None else all_loans.height,
        "repayments": n_rep,
    }


def _months(
    world: _World,
    *,
    m_writer: ChunkWriter,
    c_writer: ChunkWriter,
    say: Callable[[str], None],
) -> LoanBook:
    """Month by month: issue loans, then write the month's consumer and merchant transactions."""
    spec = world.spec
    month_seeds = np.random.SeedSequence([spec.seed, 1]).spawn(spec.months)
    history = _History.start(world)
    book = LoanBook.empty(spec.merchants, spec.consumers)
    for m in range(spec.months):
        say(f"month {m + 1}/{spec.months}")
        rng = np.random.default_rng(month_seeds[m])
        _month(rng, m, world, history, book, m_writer=m_writer, c_writer=c_writer)
    return book


def _month(
    rng: np.random.Generator,
    m: int,
    world: _World,
    history: _History,
    book: LoanBook,
    *,
    m_writer: ChunkWriter,
    c_writer: ChunkWriter,
) -> None:
    """One month: employment, loans issued (before the month's events), then transactions."""
    cal, mer, con = world.cal, world.mer, world.con
    open_m = mer.first_month <= m
    active = con.first_month <= m
    before = history.unemployed[m - 1] if m else np.zeros(len(active), dtype=bool)
    unemployed = activity.next_unemployed(rng, con, world.macro[m], before)
    history.unemployed[m] = unemployed
    level = activity.income_level(con, m)
    if m >= FIRST_LOAN_MONTH:
        _lend(rng, m, world, history, book, level=level)

    inc = activity.income(rng, cal, m, con, level=level, unemployed=unemployed, active=active)
    history.income[m] = inc.per_consumer(len(active))
    pur = activity.purchases(
        rng, cal, m, con, mer, level=level, unemployed=unemployed, active=active, open_m=open_m
    )
    bill = activity.bills(rng, cal, m, con, unemployed=unemployed, active=active)
    between, inflow = activity.transfers(rng, cal, m, con, level=level, active=active)
    repaid = activity.Payments(
        *book.paid_in("consumer", int(cal.month_start[m]), int(cal.month_start[m + 1]))
    )
    cons = activity.consumer_events(
        rng, inc=inc, pur=pur, bill=bill, between=between, inflow=inflow, repaid=repaid
    )
    cons = activity.with_balances(cons, history.balance)
    c_writer.write(consumer_rows(cons, mer, con, c_writer.rows))
    del cons

    sale = activity.sales(rng, cal, m, mer, pur=pur, open_m=open_m)
    mt, history.sales[m] = activity.merchant_events(
        rng, cal, m, mer, sale=sale, end_day=world.end_day
    )
    m_writer.write(merchant_rows(mt, mer, con, m_writer.rows))


def _lend(
    rng: np.random.Generator,
    m: int,
    world: _World,
    history: _History,
    book: LoanBook,
    *,
    level: np.ndarray,
) -> None:
    """Month ``m``'s loans, merchants' then consumers', from what the months before showed."""
    cal = world.cal
    merchants = merchant_applications(
        world.mer,
        m,
        cal=cal,
        sales=history.sales,
        distress=world.distress,
        busy=book.busy["merchant"],
    )
    book.issue(rng, m, merchants, cal=cal, macro=world.macro, end_day=world.end_day)
    consumers = consumer_applications(
        world.con,
        m,
        cal=cal,
        income=history.income,
        level=level,
        unemployed=history.unemployed,
        busy=book.busy["consumer"],
    )
    book.issue(rng, m, consumers, cal=cal, macro=world.macro, end_day=world.end_day)
