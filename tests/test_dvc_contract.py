"""dvc.yaml, the CLI and params.yaml agree: every stage command is a real CLI command with real
options, and every params key a stage names exists."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
import yaml
from stage_trace import dvc_stages

from pipeline.cli import app

REPO = Path(__file__).resolve().parent.parent


def _stages() -> dict[str, dict]:
    return dvc_stages(REPO)


def test_every_stage_command_is_a_cli_command_with_real_options() -> None:
    group = typer.main.get_command(app)
    stages = _stages()
    assert {s.split("@")[0] for s in stages} == {
        "generate",
        "validate",
        "features",
        "train",
        "evaluate",
        "register",
        "score",
        "monitor",
    }
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        assert words[0] == "longtail", name
        command = group.commands.get(words[1])
        assert command is not None, f"{name}: no CLI command {words[1]!r}"
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in words[2:]:
            if word.startswith("-"):
                assert word in options, f"{name}: {words[1]} has no option {word}"


def test_every_params_key_named_by_a_stage_exists() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in _stages().items():
        for entry in stage.get("params", []):
            keys = entry if isinstance(entry, str) else next(iter(entry.values()))
            for key in [keys] if isinstance(keys, str) else keys:
                node = params
                for part in key.split("."):
                    assert isinstance(node, dict), f"{name}: {key} is not a section"
                    assert part in node, f"{name}: no params key {key}"
                    node = node[part]


def test_every_stage_output_is_under_data() -> None:
    for name, stage in _stages().items():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert path.startswith("data/"), f"{name}: {path}"
