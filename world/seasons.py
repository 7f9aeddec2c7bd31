"""The world's time: its day grid, seasonality, event timestamps and the macro path by month.

The calendar is real: weekly and monthly cycles, the 6-18 and 11-11 shopping festivals, the
Spring Festival dip. A macro stress factor by month moves sales, job losses, distress and
defaults. (Named ``seasons`` rather than ``calendar`` so it never shadows the standard library.)
"""

from __future__ import annotations

import calendar
import datetime
from dataclasses import dataclass

import numpy as np

DAY_US = 86_400_000_000

# Spring Festival (Chinese New Year's Day); the dip and the run-up follow it.
SPRING_FESTIVAL: dict[int, datetime.date] = {
    y: datetime.date.fromisoformat(d)
    for y, d in {
        2015: "2015-02-19",
        2016: "2016-02-08",
        2017: "2017-01-28",
        2018: "2018-02-16",
        2019: "2019-02-05",
        2020: "2020-01-25",
        2021: "2021-02-12",
        2022: "2022-02-01",
        2023: "2023-01-22",
        2024: "2024-02-10",
        2025: "2025-01-29",
        2026: "2026-02-17",
        2027: "2027-02-06",
        2028: "2028-01-26",
        2029: "2029-02-13",
        2030: "2030-02-03",
        2031: "2031-01-23",
        2032: "2032-02-11",
        2033: "2033-01-31",
        2034: "2034-02-19",
        2035: "2035-02-08",
    }.items()
}

# Relative activity by weekday (Mon..Sun) and by hour of day (local time, stored as UTC).
WEEKDAY_FACTOR = np.array([0.93, 0.92, 0.95, 0.98, 1.07, 1.13, 1.04])
HOUR_WEIGHT = np.array(
    [
        *(0.4, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.5, 1.8, 2.0, 2.2),
        *(2.4, 2.1, 1.9, 1.9, 2.0, 2.1, 2.3, 2.6, 2.8, 2.7, 2.0, 1.0),
    ]
)


def add_months(day: datetime.date, months: int) -> datetime.date:
    """``day`` moved by ``months`` calendar months (clipped to the end of a shorter month)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return datetime.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


@dataclass(frozen=True)
class Calendar:
    """Day grid of the world (plus a year after it for loan schedules) and its activity weights."""

    month_start: np.ndarray  # int64 day numbers (days since 1970-01-01), length months + 14
    day_weight: np.ndarray  # float64 activity weight of every day from the first month start
    season: np.ndarray  # expected events in a month relative to an average month

    def days_in(self, m: int) -> int:
        """The number of days in month ``m``."""
        return int(self.month_start[m + 1] - self.month_start[m])

    def sample_days(self, rng: np.random.Generator, m: int, n: int) -> np.ndarray:
        """Day numbers of ``n`` events in month ``m``, drawn by the calendar weights."""
        lo = int(self.month_start[m] - self.month_start[0])
        w = self.day_weight[lo : lo + self.days_in(m)]
        cw = np.cumsum(w)
        pick = np.searchsorted(cw, rng.random(n) * cw[-1], side="right")
        return self.month_start[m] + np.minimum(pick, len(w) - 1)


def build_calendar(start: datetime.date, months: int) -> Calendar:
    """The calendar of ``months`` months from ``start`` and the 13 after them."""
    base = np.datetime64(start, "M")
    month_start = (base + np.arange(months + 14)).astype("datetime64[D]").astype(np.int64)
    days = np.arange(month_start[0], month_start[-1])
    dates = days.astype("datetime64[D]")
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    month_of = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    w = WEEKDAY_FACTOR[weekday].copy()
    w *= 1.0 + 0.10 * np.exp(-(((dom - 12) / 4.0) ** 2))  # spending after mid-month paydays
    # Shopping festivals: 6-18 and 11-11 with their run-ups, and 12-12.
    w *= np.where((month_of == 6) & (dom < 18), 1.2, 1.0)
    w *= np.where((month_of == 6) & (dom == 18), 2.4, 1.0)
    w *= np.where((month_of == 11) & (dom < 11), 1.3, 1.0)
    w *= np.where((month_of == 11) & (dom == 11), 3.5, 1.0)
    w *= np.where((month_of == 11) & (dom > 11) & (dom <= 13), 1.3, 1.0)
    w *= np.where((month_of == 12) & (dom == 12), 1.6, 1.0)
    # Spring Festival: busy run-up, deep dip around the holiday week.
    years = np.unique(dates.astype("datetime64[Y]").astype(np.int64) + 1970)
    for year in years:  # a handful of years, not rows
        sf = SPRING_FESTIVAL.get(int(year), datetime.date(int(year), 2, 1))
        d0 = np.datetime64(sf, "D").astype(np.int64)
        rel = days - d0
        w *= np.where((rel >= -21) & (rel < -7), 1.15, 1.0)
        w *= np.where((rel >= -7) & (rel < -2), 0.7, 1.0)
        w *= np.where((rel >= -2) & (rel <= 4), 0.35, 1.0)
        w *= np.where((rel > 4) & (rel <= 10), 0.7, 1.0)
    w /= w.mean()
    per_month = np.add.reduceat(w, month_start[:-1] - month_start[0])
    return Calendar(month_start=month_start, day_weight=w, season=per_month / per_month.mean())


def timestamps(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """Microsecond timestamps on the given day numbers, at realistic hours."""
    cw = np.cumsum(HOUR_WEIGHT) / HOUR_WEIGHT.sum()
    hour = np.minimum(np.searchsorted(cw, rng.random(len(days)), side="right"), 23)
    second = hour * 3600 + rng.integers(0, 3600, len(days))
    return (
        days.astype(np.int64) * DAY_US + second * 1_000_000 + rng.integers(0, 1_000_000, len(days))
    )


def macro_path(rng: np.random.Generator, months: int, n: int) -> np.ndarray:
    """Macro stress by month (0 is normal, higher is worse): AR(1) noise plus one downturn."""
    x = np.zeros(n)
    eps = rng.standard_normal(n) * 0.08
    for m in range(1, n):  # months, not rows
        x[m] = 0.8 * x[m - 1] + eps[m]
    t0 = rng.integers(max(1, months // 3), max(2, (2 * months) // 3 + 1))
    return x + 0.45 * np.exp(-(((np.arange(n) - t0) / 3.0) ** 2))
