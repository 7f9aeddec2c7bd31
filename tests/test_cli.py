"""The CLI explains itself and turns bad arguments into one-line errors with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()
COMMANDS = [
    "generate", "validate", "features", "train", "evaluate", "register", "promote", "score",
    "monitor", "serve", "explain", "review", "demo",
]  # fmt: skip
REPO = Path(__file__).resolve().parent.parent


def test_top_level_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_itself(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output
    assert "--params" in result.output


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    return text


def test_unparseable_date_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["score", "--params", str(REPO / "params.yaml"), "--as-of", "2025-13-45"]
    )
    assert "expected a date as YYYY-MM-DD" in _one_line_error(result)


def test_unknown_segment_is_a_clear_error() -> None:
    result = runner.invoke(app, ["train", "--segment", "bank"])
    assert result.exit_code == 2
    assert "bank" in _one_line_error(result)


def test_missing_input_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["validate", "--params", str(REPO / "params.yaml"), "--data", str(tmp_path / "nope")]
    )
    assert result.exit_code == 1
    text = _one_line_error(result)
    assert "error in validate" in text
    assert "longtail generate" in text
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_params_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 1
    assert "expected a params file" in _one_line_error(result)


def test_invalid_params_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("pdo: 40", "pdo: -4"))
    result = runner.invoke(app, ["validate", "--params", str(bad)])
    assert result.exit_code == 1
    assert "scaling.pdo" in _one_line_error(result)


def test_a_params_file_extends_another_and_overrides_only_what_it_names(tmp_path: Path) -> None:
    from pipeline.config import load_settings

    base = load_settings(Path("params.yaml"))
    (tmp_path / "lender").mkdir()
    own = tmp_path / "lender" / "params.yaml"
    own.write_text(
        f"extends: {Path('params.yaml').resolve()}\n"
        "data_dir: data-lender\n"
        "label: {dpd_threshold: 30}\n"
    )
    settings = load_settings(own)
    assert settings.data_dir == Path("data-lender")
    assert settings.label.dpd_threshold == 30
    # the rest of the section and every other section come from the base
    assert settings.label.performance_months == base.label.performance_months
    assert settings.limits == base.limits


def test_params_files_extending_each_other_in_a_circle_are_a_clear_error(tmp_path: Path) -> None:
    from pipeline.config import ConfigError, load_settings

    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="circle"):
        load_settings(tmp_path / "a.yaml")
