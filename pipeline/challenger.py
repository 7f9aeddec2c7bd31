"""Champion/challenger on the live book: both models score the same entities on the same day.

The score stage calls :func:`compare` with the champion's and the challenger's decisions on the
one feature frame, and :func:`decide` to apply the challenger's decision to a randomised test
cell (:func:`in_cell`). What a model risk team reads, in the manifest's ``challenger`` section
and in ``challenger.html`` beside the scores:

- **approvals**: an entity is approved by a model when its score reaches the model's approval
  cut-off and the model grants it a limit (``limit > 0``: knock-outs grant none);
- **swap-in / swap-out**: approved by the challenger only / by the champion only, with the
  expected bad rate of each group (its mean calibrated PD) under each model's PD;
- **limits**: the total granted, and by band (each model's own band);
- **score shift**: the mean and quantiles of challenger minus champion, and the PSI of the
  challenger's scores against the champion's (:func:`models.stability.psi`, the one PSI).

The test cell: the entity id, salted with ``challenger_seed``, is hashed with 64-bit FNV-1a and
MurmurHash3's finaliser (vectorised over the ids' bytes, stable across processes and library
versions, unlike Python's ``hash`` or polars' ``hash``) to a number in [0, 1); the entity is in
the cell when that number is below the share. So an entity stays in (or out of) the cell from
run to run, and a larger share keeps every entity of a smaller one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2
import numpy as np
import polars as pl

from models import stability
from models.stability import Levels

REPORT_FILE = "challenger.html"
TEMPLATE = "challenger.html.j2"
CHAMPION, CHALLENGER = "champion", "challenger"
# The extra columns of the scores file when a challenger scored the book: each model's own
# figures, whichever model decided the row (the decision applied is in the usual columns).
EXTRA_COLUMNS = ("pd", "score", "limit")
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads every input bit over the high bits."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def stable_hash(ids: pl.Series | Sequence[str], seed: int = 0) -> np.ndarray:
    """64-bit FNV-1a of ``"<seed>:<id>"`` in UTF-8, finalised by MurmurHash3's fmix64 (uint64).

    FNV-1a alone leaves the high bits of short, similar ids (M0000001, M0000002, ...) poorly
    mixed, so a cell drawn from them would miss its share; the finaliser fixes that.
    """
    series = pl.Series(ids, dtype=pl.String) if not isinstance(ids, pl.Series) else ids
    if series.null_count():
        raise ValueError(f"expected entity ids without nulls; got {series.null_count()} null(s)")
    text = (pl.lit(f"{seed}:") + series.cast(pl.String)).alias("id")
    raw = np.strings.encode(pl.select(text).to_series().to_numpy().astype(str), "utf-8")
    width = raw.dtype.itemsize
    lengths = np.strings.str_len(raw)
    matrix = raw.view(np.uint8).reshape(raw.size, width) if width else np.zeros((raw.size, 0))
    hashed = np.full(raw.size, _FNV_OFFSET, dtype=np.uint64)
    for position in range(width):  # over byte positions, vectorised over the ids
        live = lengths > position
        step = (hashed ^ matrix[:, position].astype(np.uint64)) * _FNV_PRIME
        hashed = np.where(live, step, hashed)
    return _fmix64(hashed)


def cell_draw(ids: pl.Series | Sequence[str], seed: int = 0) -> np.ndarray:
    """A number in [0, 1) per id, fixed by the id and the seed (the top 53 bits of its hash)."""
    return (stable_hash(ids, seed) >> np.uint64(11)).astype(np.float64) / float(2**53)


def in_cell(ids: pl.Series | Sequence[str], share: float, seed: int = 0) -> np.ndarray:
    """Whether each entity is in the challenger's test cell of ``share`` (bool per id)."""
    if not 0 <= share <= 1:
        raise ValueError(f"expected a test cell share in [0, 1]; got {share}")
    return cell_draw(ids, seed) < share


def approved(scores: pl.DataFrame, cutoff: int) -> np.ndarray:
    """Approved by a model: its score at or above its cut-off and a limit granted."""
    return ((scores["score"] >= cutoff) & (scores["limit"] > 0)).to_numpy()


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _group(mask: np.ndarray, champion_pd: np.ndarray, challenger_pd: np.ndarray) -> dict:
    return {
        "count": int(mask.sum()),
        "expected_bad_rate_champion": _mean(champion_pd[mask]),
        "expected_bad_rate_challenger": _mean(challenger_pd[mask]),
    }


def _limits(scores: pl.DataFrame, band_order: Sequence[str]) -> dict:
    by_band = dict(scores.group_by("band").agg(pl.col("limit").sum()).iter_rows())
    return {
        "total": float(scores["limit"].sum()),
        "by_band": {band: float(by_band.get(band, 0.0)) for band in band_order},
    }


def compare(
    champion: pl.DataFrame,
    challenger: pl.DataFrame,
    *,
    champion_cutoff: int,
    challenger_cutoff: int,
    band_order: Sequence[str],
    levels: Levels,
    bins: int = 10,
) -> dict:
    """Approvals, swaps, limits and score shift of two models' decisions on the same rows."""
    if champion["entity_id"].to_list() != challenger["entity_id"].to_list():
        raise ValueError("expected both models' decisions on the same entities in the same order")
    champ_ok = approved(champion, champion_cutoff)
    chall_ok = approved(challenger, challenger_cutoff)
    champ_pd, chall_pd = champion["pd"].to_numpy(), challenger["pd"].to_numpy()
    champ_score = champion["score"].to_numpy().astype(float)
    chall_score = challenger["score"].to_numpy().astype(float)
    shift = chall_score - champ_score
    psi = stability.psi(champ_score, chall_score, bins)
    return {
        "rows": champion.height,
        "cutoffs": {CHAMPION: int(champion_cutoff), CHALLENGER: int(challenger_cutoff)},
        "approved": {
            CHAMPION: int(champ_ok.sum()),
            CHALLENGER: int(chall_ok.sum()),
            "both": int((champ_ok & chall_ok).sum()),
        },
        "swap_in": _group(chall_ok & ~champ_ok, champ_pd, chall_pd),
        "swap_out": _group(champ_ok & ~chall_ok, champ_pd, chall_pd),
        "approved_expected_bad_rate": {
            CHAMPION: _mean(champ_pd[champ_ok]),
            CHALLENGER: _mean(chall_pd[chall_ok]),
        },
        "limits": {
            CHAMPION: _limits(champion, band_order),
            CHALLENGER: _limits(challenger, band_order),
        },
        "score_shift": {
            "mean": _mean(shift),
            "quantiles": {
                f"p{round(q * 100)}": float(np.quantile(shift, q, method="lower"))
                for q in QUANTILES
            }
            if shift.size
            else {},
            "psi": psi if np.isfinite(psi) else None,
            "psi_status": stability.status(psi, levels),
        },
    }


def decide(
    champion: pl.DataFrame,
    challenger: pl.DataFrame,
    cell: np.ndarray,
    *,
    champion_version: int,
    challenger_version: int,
) -> pl.DataFrame:
    """The decisions applied: the challenger's in the cell, the champion's elsewhere.

    The usual columns hold the deciding model's figures (``model_version`` names it);
    ``decided_by`` says which model it was, and ``champion_<x>`` / ``challenger_<x>`` for x in
    pd, score, limit keep both models' figures on every row, so the cell's outcomes can be read
    against what the champion would have done.
    """
    cell_s = pl.Series("_cell", np.asarray(cell, dtype=bool))
    if cell_s.len() != champion.height or challenger.height != champion.height:
        raise ValueError(
            f"expected one cell flag and one challenger row per champion row ({champion.height});"
            f" got {cell_s.len()} and {challenger.height}"
        )
    keys = {"entity_id", "as_of", "segment"}
    swapped = [c for c in champion.columns if c not in keys and c != "model_version"]
    missing = [c for c in swapped if c not in challenger.columns]
    if missing and cell_s.any():
        raise ValueError(f"expected the challenger's decisions to hold {missing}; they do not")
    theirs = challenger.select([c for c in swapped if c in challenger.columns]).rename(
        lambda c: f"_ch_{c}"
    )
    frame = pl.concat([champion, theirs, cell_s.to_frame()], how="horizontal")
    return frame.with_columns(
        *[
            pl.when(pl.col("_cell")).then(pl.col(f"_ch_{c}")).otherwise(pl.col(c)).alias(c)
            for c in swapped
            if c not in missing
        ],
        pl.when(pl.col("_cell"))
        .then(pl.lit(challenger_version))
        .otherwise(pl.lit(champion_version))
        .cast(pl.Int32)
        .alias("model_version"),
        pl.when(pl.col("_cell"))
        .then(pl.lit(CHALLENGER))
        .otherwise(pl.lit(CHAMPION))
        .alias("decided_by"),
        *[pl.col(c).alias(f"{CHAMPION}_{c}") for c in EXTRA_COLUMNS],
        *[pl.col(f"_ch_{c}").alias(f"{CHALLENGER}_{c}") for c in EXTRA_COLUMNS],
    ).drop("_cell", *theirs.columns)


def champion_only(scores: pl.DataFrame) -> pl.DataFrame:
    """The scores with ``decided_by`` = champion on every row (no challenger to compare)."""
    return scores.with_columns(pl.lit(CHAMPION).alias("decided_by"))


def render(section: dict) -> str:
    """The champion/challenger report (HTML) from the manifest's ``challenger`` section."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "reporting" / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(c=section, cmp=section["comparison"])


def summary_line(section: dict | None) -> str | None:
    """One line for the CLI: versions, approvals, swaps, score shift; None without a challenger."""
    if not section:
        return None
    if "skipped" in section:
        return f"challenger v{section['model_version']} not compared: {section['skipped']}"
    cmp = section["comparison"]
    shift = cmp["score_shift"]
    psi = "n/a" if shift["psi"] is None else f"{shift['psi']:.3f}"
    return (
        f"challenger v{section['model_version']} vs champion v{section['champion_version']}: "
        f"approved {cmp['approved'][CHAMPION]:,} -> {cmp['approved'][CHALLENGER]:,} "
        f"(swap-in {cmp['swap_in']['count']:,}, swap-out {cmp['swap_out']['count']:,}); "
        f"score shift {shift['mean']:+.1f}, PSI {psi} ({shift['psi_status']}); "
        f"test cell {section['decided_by_challenger']:,} of {cmp['rows']:,}"
    )
