"""The recourse frame and its plain text, from the catalog's reason text and window.

One change reads "a high share of sales refunded in the last 90 days (REFUND_RATE_90D): keep it
at or below 3.1% for 90 days (now 12.4%)"; a feature without a window is brought "down to 0
or less". Shares, rates and ratios print in percent, counts whole, other values to three
decimals. Options are alternatives ("any one of these reaches it"); an entity for which nothing
within reach was found is told so, with the best score the search found.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from features.catalog import FeatureSpec

STATUSES = ("above_cutoff", "change", "out_of_reach", "knocked_out")
_KINDS = (pl.Int32, pl.String, pl.Float64, pl.Float64, pl.Int32, pl.Int32)
_NAMES = ("option", "feature", "current", "target", "window_days", "score_after")
CHANGE = pl.Struct(dict(zip(_NAMES, _KINDS, strict=True)))  # one changed feature of an option
_PERCENT_WORDS = ("rate", "share", "ratio", "_to_")


def _percent(name: str) -> bool:
    return any(word in name for word in _PERCENT_WORDS)


def _number(value: pl.Expr, percent: pl.Expr) -> pl.Expr:
    """A value as a reader wants it: a share in percent, a count whole, else 3 decimals."""
    whole = value.round(0).cast(pl.Int64).cast(pl.String)
    return (
        pl.when(percent)
        .then(pl.format("{}%", (value * 100).round(1)))
        .when((value == value.round(0)) | (value.abs() >= 100))
        .then(whole)
        .otherwise(value.round(3).cast(pl.String))
    )


def _change_text() -> pl.Expr:
    """'reason (CODE): keep it at or below 3.1% for 90 days (now 12.4%)', window-aware."""
    low = pl.col("direction") < 0

    def word(if_low: str, if_high: str) -> pl.Expr:
        return pl.when(low).then(pl.lit(if_low)).otherwise(pl.lit(if_high))

    target, now = (_number(pl.col(c), pl.col("percent")) for c in ("target", "current"))
    action = (
        pl.when(pl.col("window_days").is_null())
        .then(pl.format("bring it {} to {} or {} (now {})", word("down", "up"), target,
                        word("less", "more"), now))
        .otherwise(pl.format("keep it at or {} {} for {} days (now {})", word("below", "above"),
                             target, pl.col("window_days"), now))
    )  # fmt: skip
    return pl.format("{} ({}): {}", pl.col("reason"), pl.col("code"), action)


def table(
    frame: pl.DataFrame,
    specs: Sequence[FeatureSpec],
    segment: str,
    score: np.ndarray,
    best: np.ndarray,
    changes: pl.DataFrame,
    cutoff: int,
    *,
    arrears: np.ndarray,
    knockout_dpd: int,
) -> pl.DataFrame:
    """The recourse frame: one row per row of ``frame``, keyed as it is (entity_id, as_of).

    ``score`` is each row's score now and ``best`` the best score the search found for a row
    without a change (-1: nothing could move); ``changes`` holds the verified options, one row
    per changed feature: ``row`` (of ``frame``), ``option`` (its rank), ``column`` (index into
    ``specs``), ``current``, ``target`` and ``score_after``. A row ``arrears`` days past due
    at or beyond ``knockout_dpd`` is declined by the policy whatever its score: its text says
    so first (status knocked_out when its score is above the cut-off).
    """
    about = pl.DataFrame(
        [
            (j, s.name, s.code, s.reason, s.window_days, s.monotone, _percent(s.name))
            for j, s in enumerate(specs)
        ],
        schema=["column", "feature", "code", "reason", "window_days", "direction", "percent"],
        schema_overrides={"column": pl.Int64, "window_days": pl.Int32},
        orient="row",
    )
    changes = (
        changes.join(about, on="column", how="left")
        .sort("row", "option", "column")
        .with_columns(_change_text().alias("text"))
    )
    said = (
        changes.group_by("row", "option", maintain_order=True)
        .agg(pl.format("option {} (score {}): {}", pl.col("option").first(),
                       pl.col("score_after").first(), pl.col("text").str.join(" and "))
             .alias("text"))
        .group_by("row", maintain_order=True)
        .agg(pl.col("text").str.join("; ").alias("options"))
    )  # fmt: skip
    per_row = (
        changes.group_by("row", maintain_order=True)
        .agg(pl.struct(list(CHANGE.to_schema())).alias("recourse_changes"))
        .join(said, on="row")
    )
    keys = [c for c in ("entity_id", "as_of") if c in frame.columns]
    now, who = pl.col("__score"), pl.lit(segment)
    reach = pl.format("score {} is below the cut-off {}; any one of these reaches it: {}",
                      now, pl.lit(cutoff), pl.col("options"))  # fmt: skip
    best_found = (
        pl.when(pl.col("__best") >= 0)
        .then(pl.format("the best change found in up to two features the {} controls reaches "
                        "{}", who, pl.col("__best")))
        .otherwise(pl.format("no feature the {} controls can improve it", who))
    )  # fmt: skip
    none = pl.format("no change within reach: score {}, cut-off {}; {}", now, pl.lit(cutoff),
                     best_found)  # fmt: skip
    above, has = now >= cutoff, pl.col("options").is_not_null()
    knocked = pl.col("__dpd") >= knockout_dpd
    clear = pl.format("{} days past due now, and the policy declines from {} days whatever the "
                      "score: clear the arrears", pl.col("__dpd").cast(pl.Int64),
                      pl.lit(knockout_dpd))  # fmt: skip
    text = pl.when(has).then(reach).otherwise(none)
    return (
        frame.select(keys)
        .with_columns(pl.Series("row", np.arange(frame.height, dtype=np.int64)),
                      pl.Series("__score", score), pl.Series("__best", best),
                      pl.Series("__dpd", np.nan_to_num(arrears, nan=0.0)))
        .join(per_row, on="row", how="left", maintain_order="left")
        .with_columns(
            pl.when(above & knocked).then(pl.lit(STATUSES[3])).when(above)
            .then(pl.lit(STATUSES[0])).when(has).then(pl.lit(STATUSES[1]))
            .otherwise(pl.lit(STATUSES[2])).alias("recourse_status"),
            pl.when(above & knocked).then(clear).when(above).then(None)
            .when(knocked).then(pl.format("{}; and {}", clear, text)).otherwise(text)
            .alias("recourse"),
            pl.col("recourse_changes").fill_null(pl.lit([], dtype=pl.List(CHANGE))),
        )
        .select(*keys, "recourse_status", "recourse", "recourse_changes")
    )  # fmt: skip
