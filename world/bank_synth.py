"""The bank flavour of the world: a retail bank's current-account customers and their loans.

What a consumer-only lender brings: ``consumers``, their account statements
(``consumer_transactions``, :mod:`world.bank`), ``loans`` and each loan's ``outcomes``, and no
merchant tables and no instalment log. The consumers, their traits, their employment, income,
bills and transfers, the macro path and the loans with their true PDs are the platform world's
own (:mod:`world.population`, :mod:`world.activity`, :mod:`world.seasons`, :mod:`world.loans`,
:mod:`world.risk`), so risk comes from the same traits; only the log differs. A loan's outcome
(its default draw) is written once its 12-month window has closed before the log ends; younger
loans have none and are indeterminate. Instalments still leave the account as ``repayment``
debits (a defaulter's stop), and the truth is saved as in the platform flavour.

The only Python loop is over months; the same seed gives byte-identical tables.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from world import activity, bank
from world.groups import CONSUMER_LOGIT_PER_SHIFT, GroupBias, draw_gender
from world.loans import FIRST_LOAN_MONTH, LoanBook, consumer_applications
from world.population import Consumers, draw_consumers
from world.seasons import Calendar, build_calendar, macro_path
from world.writer import ChunkWriter, statement_rows, write_consumers, write_outcomes

#: A loan's outcome is known (and written) once this many months have passed since its issue.
OUTCOME_MONTHS = 12


def generate_into(
    out: Path,
    *,
    consumers: int,
    months: int,
    seed: int,
    start: datetime.date,
    say: Callable[[str], None],
    bias: GroupBias | None = None,
) -> dict[str, int]:
    """Write the bank world's tables into ``out`` (truth as ``truth_loans.parquet``).

    ``start`` is the first day of the first month (:class:`world.synth.WorldSpec` checks the
    arguments); ``bias`` plants a group disparity (:class:`world.groups.GroupBias`); returns
    the rows written per table.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    cal = build_calendar(start, months)
    macro = macro_path(rng, months, months + 13)
    say(f"entities: {consumers} consumers with current accounts")
    gender = draw_gender(seed, consumers, stream=1)
    con = draw_consumers(
        rng,
        consumers,
        cal,
        months,
        gender=gender,
        shift=None if bias is None else bias.shift(gender, CONSUMER_LOGIT_PER_SHIFT),
    )
    acct = bank.open_accounts(rng, con)
    write_consumers(out, con)
    with ThreadPoolExecutor(max_workers=1) as pool:
        writer = ChunkWriter(out / "consumer_transactions.parquet", "consumer_transactions", pool)
        book = _months(seed, months, cal, macro, con, acct, writer, say)
        writer.close()
    say("loans and outcomes")
    loans = pl.concat(book.loans) if book.loans else None
    end = datetime.date(1970, 1, 1) + datetime.timedelta(days=int(cal.month_start[months]))
    closed = pl.col("issued_on").dt.offset_by(f"{OUTCOME_MONTHS}mo") <= pl.lit(end)
    n_outcomes = write_outcomes(out, loans, con, known_before=closed)
    return {
        "consumers": consumers,
        "consumer_transactions": writer.rows,
        "loans": 0 if loans is None else loans.height,
        "outcomes": n_outcomes,
    }


def _months(
    seed: int,
    months: int,
    cal: Calendar,
    macro: np.ndarray,
    con: Consumers,
    acct: bank.Accounts,
    writer: ChunkWriter,
    say: Callable[[str], None],
) -> LoanBook:
    """Month by month: employment, loans issued, then the month's statements."""
    n = len(con.risk)
    month_seeds = np.random.SeedSequence([seed, 1]).spawn(months)
    income = np.zeros((months, n))
    unemployed = np.zeros((months, n), dtype=bool)
    balance = np.round(con.balance0 * 100).astype(np.int64)  # closing balances, fen
    book = LoanBook.empty(0, n)
    end_day = int(cal.month_start[months])
    for m in range(months):
        say(f"month {m + 1}/{months}")
        rng = np.random.default_rng(month_seeds[m])
        lo, hi = int(cal.month_start[m]), int(cal.month_start[m + 1])
        active = con.first_month <= m
        before = unemployed[m - 1] if m else np.zeros(n, dtype=bool)
        unemployed[m] = activity.next_unemployed(rng, con, macro[m], before)
        level = activity.income_level(con, m)
        disbursed = activity.Payments(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        if m >= FIRST_LOAN_MONTH:
            apps = consumer_applications(
                con,
                m,
                cal=cal,
                income=income,
                level=level,
                unemployed=unemployed,
                busy=book.busy["consumer"],
            )
            book.issue(rng, m, apps, cal=cal, macro=macro, end_day=end_day)
            new = book.loans[-1]
            disbursed = activity.Payments(
                new["entity"].to_numpy(), new["issued"].to_numpy(), new["principal"].to_numpy()
            )
        now = unemployed[m]
        inc = activity.income(rng, cal, m, con, level=level, unemployed=now, active=active)
        income[m] = inc.per_consumer(n)
        bills = activity.bills(rng, cal, m, con, unemployed=now, active=active)
        between, inflow = activity.transfers(rng, cal, m, con, level=level, active=active)
        flows = bank.Flows(
            income=inc,
            salaried=int(activity.salaried(con, unemployed=now, active=active).sum()),
            bills=bills,
            between=between,
            inflow=inflow,
            repaid=activity.Payments(*book.paid_in("consumer", lo, hi)),
            disbursed=disbursed,
        )
        spend = bank.spending(
            rng, cal, m, con, acct, level=level, unemployed=now, active=active, balance=balance
        )
        ev = bank.month_statement(
            rng,
            cal,
            m,
            con,
            acct,
            flows=flows,
            spend=spend,
            active=active,
            level=level,
            balance=balance,
        )
        writer.write(statement_rows(ev, con, acct.parties, writer.rows))
    return book
