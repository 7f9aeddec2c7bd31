"""Commands of the online decision: ``serve`` the service, ``explain`` a decision, ``review``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipeline import keep_freed_memory
from pipeline.cli.common import (
    AsOfOption,
    DataOption,
    ParamsOption,
    app,
    console,
    out,
    parse_date,
    running,
    settings_for,
)


@app.command()
def serve(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    host: Annotated[str | None, typer.Option(help="Interface (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port).")] = None,
    as_of: AsOfOption = None,
) -> None:
    """Serve online decisions over HTTP: POST /decisions, GET /decisions/{id}, review, latency.

    Loads the validated tables and the champion once; a promotion is picked up within
    ``serve.reload_seconds``. ``--as-of`` freezes the decision date (a synthetic world's log
    ends in the past); by default every event up to the request counts.
    """
    keep_freed_memory()  # the service builds features: before polars is imported
    import uvicorn

    from pipeline import serve as service

    date = parse_date(as_of)
    with running("serve", quiet=True):
        settings = settings_for(params, data)
        decisions = service.service(settings, as_of=date)
    bind_host, bind_port = host or settings.serve.host, port or settings.serve.port
    console.print(
        f"serving {', '.join(decisions.definitions)} decisions on http://{bind_host}:{bind_port}"
        f" (decision log: {service.decision_store(settings)})",
        soft_wrap=True,
    )
    try:
        uvicorn.run(
            service.create_app(decisions),
            host=bind_host,
            port=bind_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        decisions.close()


@app.command()
def explain(
    decision_id: Annotated[str, typer.Argument(help="The decision id the service returned.")],
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole stored record.")] = False,
    replay: Annotated[
        bool, typer.Option(help="Score the stored features again with the stored model version.")
    ] = False,
) -> None:
    """Explain a logged decision: outcome, score, limit, reasons, sub-scores, model version.

    ``--replay`` scores the stored features again with the model version that decided and
    says whether every output is the same (exit 1 if not).
    """
    from pipeline.decisions import DecisionStore, clean, explanation
    from pipeline.serve import decision_store

    with running("explain", quiet=True):
        settings = settings_for(params, data)
        store = DecisionStore(decision_store(settings))
        record = store.get(decision_id)
        store.close()
        if record is None:
            raise ValueError(f"expected a decision id in the decision log; got {decision_id!r}")
    if as_json:
        out.print_json(json.dumps(clean(record), ensure_ascii=False))
    else:
        for line in explanation(record):
            out.print(line, soft_wrap=True, markup=False)
    if replay:
        with running("replay", quiet=True):
            again = _replayed(settings, record)
        differ = sorted(k for k in record["outputs"] if again.get(k) != record["outputs"][k])
        if differ:
            out.print(f"replay: different {', '.join(differ)}", markup=False)
            raise typer.Exit(1)
        out.print(f"replay: the same outputs with version {record['model_version']}")


def _replayed(settings, record: dict) -> dict:
    """The record's outputs made again from its stored features by its model version."""
    import tempfile

    from pipeline import registry
    from pipeline.serve import replay

    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    uri = registry.version_uri(record["model_name"], record["model_version"])
    with tempfile.TemporaryDirectory(prefix="longtail-replay-") as folder:
        scorer = registry.load_scorer(uri, Path(folder))
    return replay(record, scorer)


@app.command()
def review(
    params: ParamsOption = Path("params.yaml"),
    data: DataOption = None,
) -> None:
    """List the open requests for human review of a decision, oldest first."""
    from pipeline.decisions import DecisionStore
    from pipeline.serve import decision_store

    with running("review", quiet=True):
        store = DecisionStore(decision_store(settings_for(params, data)))
        rows = store.open_reviews()
        store.close()
    if not rows:
        out.print("no open review requests")
        return
    for r in rows:
        out.print(
            f"review {r['review_id']}  {r['requested_at']}  decision {r['decision_id']}  "
            f"{r['segment']} {r['entity_id']}  {r['outcome']}  model v{r['model_version']}",
            soft_wrap=True,
            markup=False,
        )
