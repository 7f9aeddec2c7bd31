"""Out-of-time design: train, validation and test slices by issue month.

A credit model is used on loans issued after it was built, so it is validated the same way: the
latest labelled issue months are the test slice, the months before them the validation slice
(early stopping and calibration), and older months the training slice. No issue month ever falls
in two slices, so no borrower cohort leaks from training into the test.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

TRAIN, VALID, TEST = "train", "valid", "test"
SLICES: tuple[str, ...] = (TRAIN, VALID, TEST)


class SplitParams(BaseModel):
    """Slices counted back from the latest issue month that has labels.

    ``train_months`` limits training to the most recent months before validation (null: all
    of them), for when old vintages no longer resemble today's applicants.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    test_months: int = Field(3, gt=0)
    valid_months: int = Field(3, gt=0)
    train_months: int | None = Field(None, gt=0)


def complete_months(issue_month: pl.Series, labelled: pl.Series) -> list[str]:
    """Issue months all of whose loans are labelled, oldest first.

    The most recent labelled month is usually a stub: only loans issued on its first days have
    a closed performance window. A slice built on it would hold an unrepresentative handful of
    loans (early-month issues only), so a month enters the design only once every loan issued
    in it is labelled.
    """
    frame = pl.DataFrame({"month": issue_month, "labelled": labelled})
    done = frame.group_by("month").agg(pl.col("labelled").all()).filter(pl.col("labelled"))
    return sorted(done["month"].to_list())


def slice_months(labelled_months: list[str], params: SplitParams) -> dict[str, list[str]]:
    """The issue months ("YYYY-MM") of each slice, oldest first; months not used are dropped."""
    months = sorted(set(labelled_months))
    needed = params.test_months + params.valid_months + 1
    if len(months) < needed:
        raise ValueError(
            f"expected at least {needed} labelled issue months for the out-of-time split; "
            f"got {len(months)}"
        )
    cut_valid = len(months) - params.test_months
    cut_train = cut_valid - params.valid_months
    first_train = 0 if params.train_months is None else max(0, cut_train - params.train_months)
    return {
        TRAIN: months[first_train:cut_train],
        VALID: months[cut_train:cut_valid],
        TEST: months[cut_valid:],
    }


def assign_slices(issued_on: pl.Expr, labelled_months: list[str], params: SplitParams) -> pl.Expr:
    """An expression giving each row its slice from its issue month ("YYYY-MM").

    ``labelled_months`` are the distinct issue months of labelled loans; the last
    ``test_months`` of them are test, the ``valid_months`` before those validation, the rest
    (or the last ``train_months`` of the rest) train. Rows of other months get null: they
    belong to no slice and must be dropped.
    """
    months = slice_months(labelled_months, params)
    month = issued_on.dt.strftime("%Y-%m")
    return (
        pl.when(month.is_in(months[TEST]))
        .then(pl.lit(TEST))
        .when(month.is_in(months[VALID]))
        .then(pl.lit(VALID))
        .when(month.is_in(months[TRAIN]))
        .then(pl.lit(TRAIN))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
