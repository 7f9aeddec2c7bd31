"""dvc.yaml tells the truth: each stage declares every data file and params section it uses.

The session's chain (generate -> validate -> features -> train -> evaluate -> register with
--promote, then score on a private copy) runs under tests/stage_trace.py, which records the
data paths each stage asks :class:`~pipeline.storage.Layout` for, the files it changed and the
params keys it read. Here the record is held against dvc.yaml (every path touched is a dep or
an out, or under one; every file written is under an out; the params sections read, the
sections the stage function declares in ``PARAMS`` and dvc.yaml's ``params`` are the same) and
against params.yaml (every key is read by some stage, or by a branch the chain does not take,
listed in OTHER_BRANCHES with the test that covers it).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from registry_world import private_world
from stage_trace import dvc_stages

from pipeline.stages import monitor, score

REPO = Path(__file__).resolve().parent.parent
SEGMENTS = ("merchant", "consumer")
# Keys the chain does not read because it takes another branch; each is read where named.
OTHER_BRANCHES = {
    # read only when a champion exists to compare with: test_promote.py
    # (test_promotion_refused_when_challenger_is_worse, test_gate_rules)
    "registry.auc_tolerance",
    # not a DVC stage: read by `longtail serve` (pipeline/serve.py), tested in tests/test_serve.py
    "serve.host", "serve.port", "serve.decision_store", "serve.alias",
    "serve.reload_seconds", "serve.as_of", "serve.segments", "serve.max_batch",
}  # fmt: skip


def _stages() -> dict[str, dict]:
    return dvc_stages(REPO)


def _paths(entries: list) -> set[str]:
    return {e if isinstance(e, str) else next(iter(e)) for e in entries}


def _params(stage: dict) -> set[str]:
    return {e if isinstance(e, str) else next(iter(e)) for e in stage.get("params", [])}


def _under(path: str, declared: set[str]) -> bool:
    return any(path == d or path.startswith(f"{d}/") for d in declared)


def _problems(name: str, record, stage: dict) -> list[str]:
    """Every way ``stage`` (from dvc.yaml) under-declares what ``record`` saw it do."""
    deps = {p for p in _paths(stage.get("deps", [])) if p.startswith("data/")}
    outs = _paths(stage.get("outs", []) + stage.get("metrics", []))
    locks = {f"data/scores/.longtail-score-{s}.lock" for s in SEGMENTS}  # not data: a flock
    problems = [
        f"{name} uses {p}, which is neither a dep nor an out"
        for p in sorted(record.relative(record.touched) - locks)
        if not _under(p, deps | outs)
    ]
    problems += [
        f"{name} writes {p}, which is not under an out"
        for p in sorted(record.relative(record.written) - locks)
        if not _under(p, outs)
    ]
    read = {k.split(".")[0] for k in record.keys} - {"data_dir", "*"}
    declared = _params(stage)
    problems += [f"{name} reads params section {s}, not in dvc.yaml" for s in read - declared]
    problems += [f"{name}: dvc.yaml names {s}, which it never reads" for s in declared - read]
    if record.declared != declared:
        problems.append(f"{name}: PARAMS {sorted(record.declared)} != dvc.yaml {sorted(declared)}")
    return problems


@pytest.fixture(scope="module")
def chain(trained_world, stage_trace, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's trace, completed with the score stage as its DVC stage runs it."""
    world = private_world(trained_world, tmp_path_factory.mktemp("score-trace"))
    for segment in SEGMENTS:
        name = f"score@{segment}"
        assert segment in stage_trace.run(name, score.segments, world)
        manifest = stage_trace.run(name, score.run, world, segment, force=True)
        stage_trace.run(name, score.fails_run, world, manifest)
    for segment in SEGMENTS:  # after score: it reads the scores folders score wrote
        name = f"monitor@{segment}"
        summary = stage_trace.run(name, monitor.run, world, segment)
        stage_trace.run(name, monitor.fails_run, world, summary)
    return stage_trace.stages


def test_every_stage_is_traced(chain) -> None:
    assert set(chain) == set(_stages())


def test_dvc_declares_what_each_stage_touches(chain) -> None:
    stages = _stages()
    problems = [p for name, record in chain.items() for p in _problems(name, record, stages[name])]
    assert problems == []


def test_removing_any_used_dep_out_or_params_section_is_caught(chain) -> None:
    """The check above has teeth: drop any one entry a stage uses and it fails."""
    stages = _stages()
    tried = 0
    for name, record in chain.items():
        stage = stages[name]
        used = record.relative(record.touched | record.written)
        for kind in ("deps", "outs", "params"):
            for entry in stage.get(kind, []):
                key = entry if isinstance(entry, str) else next(iter(entry))
                if kind != "params" and not any(_under(p, {key}) for p in used):
                    continue  # a code dep, or one kept for ordering: nothing to catch
                smaller = copy.deepcopy(stage)
                smaller[kind] = [e for e in stage[kind] if e is not entry and e != entry]
                assert _problems(name, record, smaller), f"{name}: dropping {key} went unseen"
                tried += 1
    assert tried > 20


def _leaves(node: object, path: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(
            *(_leaves(v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        )
    return {path}


def _read(leaf: str, keys: set[str], sections: set[str]) -> bool:
    for key in keys:
        if key == leaf or key.startswith(f"{leaf}."):
            return True
        if key.endswith(".*") and leaf.startswith(key[:-1]):
            return True  # model_dump of a section reads every key under it
        if leaf.startswith(f"{key}.") and key not in sections:
            return True  # a dict-valued key (band multiples, limits' segments) read whole
    return False


def test_every_params_key_is_read(chain) -> None:
    keys = set().union(*(r.keys for r in chain.values()))
    sections = set().union(*(r.sections for r in chain.values()))
    leaves = _leaves(yaml.safe_load((REPO / "params.yaml").read_text()))
    unread = {leaf for leaf in leaves if not _read(leaf, keys, sections)}
    assert unread == OTHER_BRANCHES


def test_a_stage_sees_only_the_sections_it_declares() -> None:
    from pipeline.config import Sections, UndeclaredSection, load_settings, uses

    settings = load_settings(REPO / "params.yaml")
    view = Sections(settings, ("features",))
    assert view.features is settings.features
    assert view.data_dir == settings.data_dir
    with pytest.raises(UndeclaredSection, match="declare it in PARAMS"):
        _ = view.label

    @uses("features")
    def stage(params: Sections) -> object:
        return params.label

    with pytest.raises(UndeclaredSection):
        stage(settings)
    assert stage.params == ("features",)


@pytest.mark.parametrize(
    "name",
    [
        "generate",
        "validate",
        "features",
        "train",
        "evaluate",
        "register",
        "promote",
        "score",
        "monitor",
    ],
)
def test_every_stage_runs_under_its_declared_params(name: str) -> None:
    import importlib

    module = importlib.import_module(f"pipeline.stages.{name}")
    assert module.run.params == module.PARAMS


# --- code deps: a stage's dvc deps cover every module its function can import ---------------

STAGE_MODULES = {
    "generate": ("pipeline.stages.generate", "world.synth"),  # the stage imports it lazily
    "validate": ("pipeline.stages.validate",),
    "features": ("pipeline.stages.features",),
    "train": ("pipeline.stages.train",),
    "evaluate": ("pipeline.stages.evaluate",),
    "register": ("pipeline.stages.register", "pipeline.stages.promote"),  # register --promote
    "score": ("pipeline.stages.score",),
    "monitor": ("pipeline.stages.monitor",),
}


def _module_file(module: str) -> str:
    path = REPO / Path(*module.split("."))
    return str(
        (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(REPO)
    )


def _code_closure(graph, modules: tuple[str, ...]) -> set[str]:
    found = set(modules)
    for module in modules:
        found |= graph.find_upstream_modules(module)
    return {
        _module_file(m)
        for m in found
        if m.split(".")[0] in {"features", "models", "pipeline", "world"}
    }


def test_dvc_code_deps_cover_every_module_a_stage_imports() -> None:
    """A change to any code a stage runs makes `dvc repro` rerun it: its deps cover the closure."""
    import grimp

    graph = grimp.build_graph("features", "models", "pipeline", "world")
    # pipeline.config imports the params schemas of models/ (LabelParams, TrainParams, ...):
    # what those sections hold is tracked by dvc's params, so config's imports are not code
    # every stage runs.
    for imported in list(graph.find_modules_directly_imported_by("pipeline.config")):
        graph.remove_import(importer="pipeline.config", imported=imported)
    stages = _stages()
    assert {n.split("@")[0] for n in stages} == set(STAGE_MODULES)
    problems = []
    for name, stage in stages.items():
        deps = {p for p in _paths(stage.get("deps", [])) if not p.startswith("data/")}
        closure = _code_closure(graph, STAGE_MODULES[name.split("@")[0]])
        problems += [
            f"{name} runs {f}, not under a dep" for f in sorted(closure) if not _under(f, deps)
        ]
    assert problems == []
