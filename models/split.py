"""Out-of-time design: train, validation and test slices by issue month."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

TRAIN, VALID, TEST = "train", "valid", "test"


class SplitParams(BaseModel):
    """Slices counted back from the latest issue month that has labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    test_months: int = Field(3, gt=0)
    valid_months: int = Field(3, gt=0)


def assign_slices(issued_on: pl.Expr, labelled_months: list[str], params: SplitParams) -> pl.Expr:
    """An expression giving each row its slice from its issue month ("YYYY-MM").

    ``labelled_months`` are the distinct issue months of labelled loans; the last
    ``test_months`` of them are test, the ``valid_months`` before those validation, the rest
    train. No issue month falls in two slices.
    """
    months = sorted(set(labelled_months))
    needed = params.test_months + params.valid_months + 1
    if len(months) < needed:
        raise ValueError(
            f"expected at least {needed} labelled issue months for the out-of-time split; "
            f"got {len(months)}"
        )
    test = months[-params.test_months :]
    valid = months[-(params.test_months + params.valid_months) : -params.test_months]
    month = issued_on.dt.strftime("%Y-%m")
    return (
        pl.when(month.is_in(test))
        .then(pl.lit(TEST))
        .when(month.is_in(valid))
        .then(pl.lit(VALID))
        .otherwise(pl.lit(TRAIN))
    )
