"""The validation design: out-of-time slices by issue month, or repeated cross-validation.

``oot`` (the default): a credit model is used on loans issued after it was built, so it is
validated the same way: the latest labelled issue months are the test slice, the months before
them the validation slice (early stopping and calibration), and older months the training slice.
No issue month ever falls in two slices, so no borrower cohort leaks from training into the test.

``cv``: a book of a few hundred loans, or a single cohort issued at one date, has no out-of-time
slice worth the name (80 training loans, a test AUC with an SE of 0.05, or no second month at
all). Every labelled loan is then in the one ``train`` slice and :func:`cv_folds` assigns it a
fold per repeat: repeated k-fold, stratified by the entity's bads and grouped by entity (an
entity's loans are always in one fold of a repeat, so a borrower never sits on both sides).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

TRAIN, VALID, TEST = "train", "valid", "test"
SLICES: tuple[str, ...] = (TRAIN, VALID, TEST)


class SplitParams(BaseModel):
    """The validation design: ``oot`` slices or ``cv`` folds.

    ``oot``: slices counted back from the latest issue month that has labels;
    ``train_months`` limits training to the most recent months before validation (null: all
    of them), for when old vintages no longer resemble today's applicants.
    ``cv``: ``repeats`` x ``folds``-fold cross-validation grouped by entity and stratified by
    its bads, drawn from ``seed`` (the month fields are then unused).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Literal["oot", "cv"] = "oot"
    test_months: int = Field(3, gt=0)
    valid_months: int = Field(3, gt=0)
    train_months: int | None = Field(None, gt=0)
    folds: int = Field(5, ge=3)
    repeats: int = Field(5, ge=1)
    seed: int = Field(42, ge=0)


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
    belong to no slice and must be dropped. In ``cv`` mode every row is ``train``: the folds
    (:func:`cv_folds`) do the validating.
    """
    if params.mode == "cv":
        return pl.lit(TRAIN)
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


def cv_folds(entity_id: pl.Series, bad: pl.Series, params: SplitParams) -> np.ndarray:
    """Each row's fold in each repeat: an int array of shape (repeats, rows), folds 0..k-1.

    Grouped: the fold is drawn per entity, so all of an entity's loans share it. Stratified: the
    entities are ranked within their stratum (0, 1 or 2+ bad loans) in a random order and dealt
    round-robin from a random starting fold, so every fold gets the same number of bad entities
    (to within one) and of good ones. Deterministic: repeat r draws from ``(seed, r)`` over the
    entities sorted by id, so the same loans give the same folds whatever their row order.

    Why k-fold needs at least ``folds`` bad entities: a fold without bads has no AUC.
    """
    if entity_id.len() != bad.len():
        raise ValueError(
            f"expected one entity id per outcome; got {entity_id.len()} and {bad.len()}"
        )
    if bad.null_count():
        raise ValueError(f"expected labelled loans only; got {bad.null_count()} without a label")
    k = params.folds
    rows = pl.DataFrame({"entity_id": entity_id, "bad": bad.cast(pl.Int64)})
    entities = (
        rows.group_by("entity_id")
        .agg(pl.col("bad").sum().clip(upper_bound=2).alias("stratum"))
        .sort("entity_id")
    )
    bad_entities = int((entities["stratum"] > 0).sum())
    if bad_entities < k or entities.height - bad_entities < k:
        raise ValueError(
            f"expected at least {k} entities with a bad loan and {k} without for {k}-fold "
            f"cross-validation; got {bad_entities} and {entities.height - bad_entities}"
        )
    out = np.empty((params.repeats, rows.height), dtype=np.int64)
    for r in range(params.repeats):
        rng = np.random.default_rng([params.seed, r])
        start = pl.lit(pl.Series("start", rng.integers(0, k, size=3)))
        drawn = (
            entities.with_columns(pl.Series("key", rng.random(entities.height)))
            .sort("stratum", "key")
            .with_columns(
                (
                    (pl.int_range(pl.len()).over("stratum") + start.gather(pl.col("stratum"))) % k
                ).alias("fold")
            )
        )
        folds = rows.join(
            drawn.select("entity_id", "fold"), on="entity_id", how="left", maintain_order="left"
        )
        out[r] = folds["fold"].to_numpy()
    return out
