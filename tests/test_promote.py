"""The promotion gate: a challenger becomes champion only when it earns it, and says why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from registry_world import private_world, register_folder, worse_scorer
from typer.testing import CliRunner

from models.stability import Levels
from pipeline import registry
from pipeline.cli import app
from pipeline.config import RegistryParams
from pipeline.stages import promote, register

REPO = Path(__file__).resolve().parent.parent
SEGMENT = "merchant"
NAME = registry.model_name(SEGMENT)


def _aliases(settings) -> dict[str, str]:
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    return {k: str(v) for k, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def _tags(version: int | str) -> dict[str, str]:
    return MlflowClient().get_model_version(NAME, str(version)).tags


def test_first_promotion_without_champion_is_recorded(trained_world, tmp_path: Path) -> None:
    settings = private_world(trained_world, tmp_path)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    MlflowClient().delete_registered_model_alias(NAME, registry.CHAMPION)
    result = promote.run(settings, SEGMENT)
    assert result["decision"] == "promoted", result["reasons"]
    assert "no champion yet" in result["reasons"][0]
    assert _aliases(settings)[registry.CHAMPION] == "1"
    tags = _tags(1)
    assert tags["promotion_decision"] == "promoted"
    assert tags["promotion_champion_version"] == "none"


def test_promotion_accepted_moves_champion_and_keeps_previous(
    trained_world, tmp_path: Path
) -> None:
    settings = private_world(trained_world, tmp_path)
    record = register.run(settings, SEGMENT)
    assert record["alias"] == registry.CHALLENGER
    assert record["version"] == 2
    assert _aliases(settings)[registry.CHAMPION] == "1", "register alone never moves champion"

    result = promote.run(settings, SEGMENT)
    assert result["decision"] == "promoted", result["reasons"]
    assert result["checks"]["champion_auc"] is not None  # compared on the same rows
    # both models' fairness measured on the same rows; the world's gender is independent of risk
    fair = result["checks"]["fairness"]
    assert set(fair["challenger"]) == {"gender", "age", "region"}
    assert fair["champion"] == fair["challenger"]  # the same model retrained identically
    aliases = _aliases(settings)
    assert aliases[registry.CHAMPION] == "2"
    assert aliases[registry.PREVIOUS] == "1"
    assert _tags(2)["promotion_decision"] == "promoted"
    assert _tags(1)["replaced_by"] == "2"
    last = json.loads(MlflowClient().get_registered_model(NAME).tags["last_promotion"])
    assert last["decision"] == "promoted"

    again = promote.run(settings, SEGMENT)
    assert again["decision"] == "unchanged"


def test_promotion_refused_when_challenger_is_worse(trained_world, tmp_path: Path) -> None:
    settings = private_world(trained_world, tmp_path)
    folder = tmp_path / "worse"
    scorer = worse_scorer(settings, SEGMENT, folder)
    version = register_folder(settings, scorer, folder, registry.CHALLENGER)

    result = promote.run(settings, SEGMENT)
    assert result["decision"] == "refused"
    assert any("AUC" in r and "worse than champion" in r for r in result["reasons"]), result[
        "reasons"
    ]
    assert _aliases(settings)[registry.CHAMPION] == "1"
    tags = _tags(version)
    assert tags["promotion_decision"] == "refused"
    assert "worse than champion" in tags["promotion_reasons"]

    # The CLI says why and exits non-zero; champion still unchanged.
    params = tmp_path / "params.yaml"
    params.write_text(
        (REPO / "params.yaml")
        .read_text()
        .replace("sqlite:///mlflow.db", settings.mlflow.tracking_uri)
    )
    result = CliRunner().invoke(
        app, ["promote", "--params", str(params), "--data", str(settings.data_dir), "-s", SEGMENT]
    )
    assert result.exit_code == 1, result.output
    assert "refused" in result.output
    assert "worse than champion" in " ".join(result.output.split())
    assert _aliases(settings)[registry.CHAMPION] == "1"

    forced = promote.run(settings, SEGMENT, force=True)
    assert forced["decision"] == "forced"
    assert _aliases(settings)[registry.CHAMPION] == str(version)
    assert _tags(version)["promotion_decision"] == "forced"


def test_promote_without_challenger_is_a_clear_error(trained_world, tmp_path: Path) -> None:
    settings = private_world(trained_world, tmp_path)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    MlflowClient().delete_registered_model_alias(NAME, registry.CHALLENGER)
    with pytest.raises(ValueError, match="longtail register"):
        promote.run(settings, SEGMENT)


BASE = {
    "challenger_auc": 0.70,
    "champion_auc": 0.70,
    "champion_error": None,
    "monotone_violations": [],
    "challenger_score_psi": 0.02,
    "oot_rows": 1000,
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, None),
        ({"challenger_auc": 0.697}, None),  # within the tolerance
        ({"challenger_auc": 0.69}, "worse than champion"),
        ({"champion_auc": None}, None),
        ({"monotone_violations": ["tenure_days"]}, "monotone"),
        ({"challenger_score_psi": 0.4}, "alert level"),
        ({"challenger_score_psi": 0.25}, "alert level"),  # the level itself is an alert
        ({"challenger_score_psi": 0.2}, None),  # a warning is not a refusal
        ({"challenger_score_psi": float("nan")}, "alert level"),
        ({"challenger_auc": float("nan")}, "undefined"),
        ({"challenger_auc": float("nan"), "champion_auc": None}, None),
        ({"champion_error": "the champion cannot score"}, "cannot score"),
    ],
)
def test_gate_rules(change: dict, expected: str | None) -> None:
    params = RegistryParams(auc_tolerance=0.005)
    refusals = registry.promotion_gate({**BASE, **change}, params, Levels(warn=0.1, alert=0.25))
    if expected is None:
        assert refusals == []
    else:
        assert len(refusals) == 1
        assert expected in refusals[0]


def test_promote_command_explains_itself() -> None:
    result = CliRunner().invoke(app, ["promote", "--help"])
    assert result.exit_code == 0
    assert "--force" in result.output
    assert "challenger" in result.output


def _gender_by_decision(settings, segment: str) -> None:
    """Plant a group bias in the validated entity table: the model's declined are "female".

    Every entity with a test loan the trained model declines becomes female, every other
    male, so the model's approvals part by gender as a biased model's would.
    """
    import polars as pl

    from features.contract.segments import segment as segment_named
    from models.scaling import pd_to_score
    from models.scorer import Scorer
    from models.split import TEST
    from pipeline import inputs
    from pipeline.storage import Layout

    layout = Layout(settings.data_dir)
    scorer = Scorer.load(layout.model(segment))
    test = inputs.sliced(layout, segment, settings.split).filter(pl.col("slice") == TEST)
    score = pd_to_score(scorer.predict_pd(test), scorer.scaling)
    declined = test.filter(pl.Series(score < scorer.policy.approval_cutoff))["entity_id"]
    seg = segment_named(segment)
    path = layout.validated / f"{seg.entity_table}.parquet"
    table = pl.read_parquet(path)
    table.with_columns(
        pl.when(pl.col(seg.entity_id).is_in(declined.implode()))
        .then(pl.lit("female"))
        .otherwise(pl.lit("male"))
        .alias("gender")
    ).write_parquet(path)


def test_a_biased_challenger_is_flagged_by_evaluate_and_refused_by_the_gate(
    trained_world, tmp_path: Path
) -> None:
    from pipeline.stages import evaluate

    settings = private_world(trained_world, tmp_path)
    fairness = settings.fairness.model_copy(update={"min_group_size": 5})
    settings = settings.model_copy(update={"fairness": fairness})
    _gender_by_decision(settings, SEGMENT)

    metrics = evaluate.run(settings, SEGMENT)
    assert metrics["fairness"]["flagged"] == ["gender"]
    gender = metrics["fairness"]["attributes"]["gender"]
    assert gender["adverse_impact_ratio"] < 0.5
    assert (gender["lowest_group"], gender["highest_group"]) == ("female", "male")
    check = metrics["checks"]["adverse_impact_ratio"]
    assert check["attribute"] == "gender"
    assert not check["passed"]
    report = (settings.data_dir / "reports" / SEGMENT / "report.html").read_text()
    assert "Fairness by group" in report
    assert "FLAGGED" in report
    card = json.loads((settings.data_dir / "reports" / SEGMENT / "model_card.json").read_text())
    assert card["fairness"]["flagged"] == ["gender"]

    register.run(settings, SEGMENT)
    result = promote.run(settings, SEGMENT)
    assert result["decision"] == "refused"
    assert any(
        "adverse impact ratio on gender" in r and "below the limit 0.8" in r
        for r in result["reasons"]
    ), result["reasons"]
    assert _aliases(settings)[registry.CHAMPION] == "1"
    assert json.loads(_tags(2)["promotion_challenger_adverse_impact"])["gender"] < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("bias", [None, 2.5], ids=["fair-world", "biased-world"])
def test_a_world_with_a_planted_bias_is_flagged_and_refused(
    bias: float | None, tmp_path: Path, tracking_uri: str
) -> None:
    """End to end on a small bank world: generate (with or without a planted gender bias),
    validate, features, train, evaluate, register, promote."""
    from conftest import make_settings

    from pipeline.config import WorldBias
    from pipeline.stages import evaluate, features, generate, train, validate

    settings = make_settings(tmp_path / "data", tracking_uri)
    planted = None if bias is None else WorldBias(group="female", pd_multiplier=bias)
    world = settings.world.model_copy(
        update={"consumers": 1500, "months": 24, "flavour": "bank", "bias": planted}
    )
    settings = settings.model_copy(update={"world": world})
    generate.run(settings)
    validate.run(settings)
    for stage in (features, train, evaluate):
        stage.run(settings, "consumer")
    metrics = json.loads((tmp_path / "data/reports/consumer/metrics.json").read_text())
    register.run(settings, "consumer")
    result = promote.run(settings, "consumer")
    gender = metrics["fairness"]["attributes"]["gender"]
    if bias is None:
        assert gender["adverse_impact_ratio"] > 0.8, gender
        assert "gender" not in metrics["fairness"]["flagged"]
        assert result["decision"] == "promoted", result["reasons"]
    else:
        assert gender["adverse_impact_ratio"] < 0.8, gender
        assert gender["lowest_group"] == "female"
        assert "gender" in metrics["fairness"]["flagged"]
        assert result["decision"] == "refused"
        assert any("adverse impact ratio on gender" in r for r in result["reasons"])
