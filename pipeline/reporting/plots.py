"""The report's plots, rendered with matplotlib to PNG bytes (no files, no display).

Each function takes plain arrays or polars tables and returns the PNG; the report embeds them
as base64 so the HTML is one self-contained file, and the evaluate stage also writes them to
``plots/`` for MLflow and DVC.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from models import evaluate as ev

COLOURS = {"model": "#1f5fa8", "baseline": "#d9822b", "true_pd": "#6a6a6a"}
LABELS = {"model": "LightGBM", "baseline": "WoE scorecard", "true_pd": "true PD (ceiling)"}
BAND_COLOURS = ("#c0392b", "#e67e22", "#f1c40f", "#7fb800", "#1e8449")
SLICE_COLOURS = {"train": "#eef3fb", "valid": "#fdf2e3", "test": "#e8f6ec"}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=96)
    plt.close(fig)
    return buf.getvalue()


def roc_plot(y: np.ndarray, pds: Mapping[str, np.ndarray]) -> bytes:
    """ROC curves of each PD vector (model, baseline, true PD) on the test slice."""
    fig, ax = plt.subplots(figsize=(5, 4.4))
    for label, pd_ in pds.items():
        fpr, tpr = ev.roc(y, pd_)
        ax.plot(
            fpr,
            tpr,
            color=COLOURS.get(label),
            lw=1.8 if label == "model" else 1.2,
            ls="--" if label == "true_pd" else "-",
            label=f"{LABELS.get(label, label)}  AUC {ev.auc(y, pd_):.3f}",
        )
    ax.plot([0, 1], [0, 1], color="#bbb", lw=0.8)
    ax.set(xlabel="share of goods declined", ylabel="share of bads declined", title="ROC, test")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def ks_plot(y: np.ndarray, score: np.ndarray) -> bytes:
    """Cumulative shares of bads and goods by score, with the KS gap marked."""
    grid, bad_cdf, good_cdf = ev.ks_curve(y, np.asarray(score, dtype=float))
    gap = np.abs(bad_cdf - good_cdf)
    at = int(np.argmax(gap)) if gap.size else 0
    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.step(grid, bad_cdf, where="post", color="#c0392b", label="bads")
    ax.step(grid, good_cdf, where="post", color="#1e8449", label="goods")
    if gap.size:
        ax.vlines(grid[at], good_cdf[at], bad_cdf[at], color="k", ls=":", lw=1.2)
        ax.annotate(
            f"KS {gap[at]:.3f}\nat {grid[at]:.0f}",
            (grid[at], (good_cdf[at] + bad_cdf[at]) / 2),
            xytext=(6, 0),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set(xlabel="score", ylabel="cumulative share at or below", title="KS, test")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def calibration_plot(tables: Mapping[str, pl.DataFrame]) -> bytes:
    """Predicted vs observed default rate per equal-count PD bin, with 95% intervals."""
    fig, ax = plt.subplots(figsize=(5, 4.4))
    top = 0.0
    for label, table in tables.items():
        pred = table["predicted"].to_numpy()
        obs = table["observed"].to_numpy()
        err = np.clip(
            np.vstack(
                [obs - table["observed_low"].to_numpy(), table["observed_high"].to_numpy() - obs]
            ),
            0.0,
            None,
        )
        ax.errorbar(
            pred,
            obs,
            yerr=err,
            fmt="o-",
            ms=4,
            lw=1,
            capsize=2,
            color=COLOURS.get(label),
            label=LABELS.get(label, label),
        )
        top = max(top, float(pred.max()), float(obs.max()))
    top = top * 1.1 or 1.0
    ax.plot([0, top], [0, top], color="#bbb", lw=0.8)
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="predicted PD (bin mean)",
        ylabel="observed default rate",
        title="Calibration, test (deciles of PD)",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def score_distribution_plot(
    score: np.ndarray, bad: np.ndarray, bands: Sequence[tuple[str, str, int, int]]
) -> bytes:
    """Histogram of test scores, coloured by band, with each band's observed bad rate."""
    score = np.asarray(score, dtype=float)
    bad = np.asarray(bad, dtype=float)
    ordered = sorted(bands, key=lambda b: b[2])
    fig, ax = plt.subplots(figsize=(10, 3.8))
    lo = min(float(score.min()) if score.size else 350, ordered[0][2])
    edges = np.arange(np.floor(lo / 10) * 10, ordered[-1][3] + 11, 10)
    for (name, _, b_min, b_max), colour in zip(ordered, BAND_COLOURS, strict=False):
        inside = (score >= b_min) & (score <= b_max)
        ax.hist(score[inside], bins=edges, color=colour, alpha=0.85, label=name)
        if inside.any():
            ax.text(
                (max(b_min, lo) + min(b_max, float(score.max()) + 10)) / 2,
                0.97,
                f"{name}\n{inside.sum():,} loans\nbad {bad[inside].mean():.1%}",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=8,
            )
    for _, _, b_min, _ in ordered[1:]:
        ax.axvline(b_min - 0.5, color="#888", lw=0.6, ls=":")
    hi = float(score.max()) + 20 if score.size else ordered[-1][3]
    ax.set(
        xlim=(lo - 5, min(hi, ordered[-1][3])),
        xlabel="score",
        ylabel="test loans",
        title="Score distribution by band, test",
    )
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    return _png(fig)


def importance_plot(importance: pl.DataFrame, top: int = 15) -> bytes:
    """Gain share by dimension (left) and the top features (right)."""
    by_dim = (
        importance.group_by("dimension")
        .agg(pl.col("gain_share").sum())
        .sort("gain_share", descending=False)
    )
    head = importance.head(top).reverse()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), width_ratios=(1, 1.5))
    left.barh(by_dim["dimension"].to_list(), by_dim["gain_share"].to_numpy(), color="#1f5fa8")
    left.set(xlabel="share of split gain", title="Importance by dimension")
    right.barh(head["feature"].to_list(), head["gain_share"].to_numpy(), color="#6c8ebf")
    right.set(xlabel="share of split gain", title=f"Top {min(top, importance.height)} features")
    right.tick_params(axis="y", labelsize=7)
    return _png(fig)


def by_month_plot(by_month: pl.DataFrame) -> bytes:
    """AUC by issue month (top) and observed bad rate vs mean PD (bottom), slices shaded."""
    months = by_month["issue_month"].to_list()
    xs = np.arange(len(months))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True)
    slices = by_month["slice"].to_list()
    for ax in (top, bottom):
        for i, sl in enumerate(slices):
            ax.axvspan(i - 0.5, i + 0.5, color=SLICE_COLOURS.get(sl, "white"), lw=0)
    for label in ("model", "baseline", "true_pd"):
        if f"{label}_auc" in by_month.columns:
            top.plot(
                xs,
                by_month[f"{label}_auc"].to_numpy(),
                marker="o",
                ms=3,
                lw=1.2,
                color=COLOURS[label],
                ls="--" if label == "true_pd" else "-",
                label=LABELS[label],
            )
    top.set(ylabel="AUC", title="By issue month (shaded: train / valid / test)")
    top.legend(fontsize=8, loc="lower left")
    bottom.bar(xs, by_month["bad_rate"].to_numpy(), color="#c9a0a0", label="observed bad rate")
    bottom.plot(
        xs,
        by_month["model_mean_pd"].to_numpy(),
        "o-",
        ms=3,
        color=COLOURS["model"],
        label="mean predicted PD",
    )
    bottom.set(ylabel="default rate")
    bottom.legend(fontsize=8, loc="upper left")
    step = max(1, len(months) // 15)
    bottom.set_xticks(xs[::step], months[::step], rotation=45, fontsize=7)
    return _png(fig)
