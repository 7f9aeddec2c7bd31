"""The one-second decision: online features equal batch, the decision log, clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from registry_world import private_world, register_folder, scoring_date, worse_scorer
from typer.testing import CliRunner

from features.build import build
from features.definitions import POLICY_INPUTS
from pipeline import registry
from pipeline.cli import app
from pipeline.decisions import DecisionStore, clean
from pipeline.inputs import feature_definitions, scoring_spine, segment_features
from pipeline.online import OnlineState, Request
from pipeline.serve import BASE_COLUMNS, create_app, decision_store, service
from pipeline.storage import Layout

REPO = Path(__file__).resolve().parent.parent
SEGMENTS = ("merchant", "consumer")
runner = CliRunner()


@pytest.fixture(scope="module")
def world(trained_world, tmp_path_factory: pytest.TempPathFactory):
    """A private copy of the trained world, with the raw entity tables (who consented)."""
    root = tmp_path_factory.mktemp("serve")
    settings = private_world(trained_world, root)
    raw = Layout(settings.data_dir).raw
    raw.mkdir()
    for table in ("merchants", "consumers"):
        shutil.copy(Layout(trained_world.data_dir).raw / f"{table}.parquet", raw)
    serve = settings.serve.model_copy(
        update={"decision_store": f"sqlite:///{root / 'decisions.db'}", "reload_seconds": 0}
    )
    return settings.model_copy(update={"serve": serve})


@pytest.fixture(scope="module")
def client(world):
    """A running service (as of the batch scoring date) behind FastAPI's TestClient."""
    from fastapi.testclient import TestClient

    decisions = service(world, as_of=scoring_date(world))
    with TestClient(create_app(decisions)) as http:
        http.decisions = decisions
        yield http
    decisions.close()


def _params_file(settings, tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(
        f"extends: {REPO / 'params.yaml'}\ndata_dir: {settings.data_dir}\n"
        f"serve: {{decision_store: '{settings.serve.decision_store}'}}\n"
        f"mlflow: {{tracking_uri: '{settings.mlflow.tracking_uri}'}}\n"
    )
    return path


# the loan asked for reaches the features as spine columns (the application features read them)
_LOAN = (pl.lit(1000.0).alias("principal"), pl.lit(12, dtype=pl.Int32).alias("term_months"))


def _body(entity: str, segment: str, **extra: object) -> dict:
    return {"entity_id": entity, "segment": segment, "amount": 1000.0, "term_months": 12, **extra}


@pytest.mark.parametrize("segment", SEGMENTS)
def test_online_features_equal_batch_for_many_entities(world, client, segment: str) -> None:
    """Every feature of 80 entities, each built from its own slice, equals the whole-book build."""
    layout = Layout(world.data_dir)
    as_of = scoring_date(world)
    defined = feature_definitions(segment, world.features, world.label, world.limits)
    spine = scoring_spine(layout, segment, as_of, world.application).with_columns(_LOAN)
    chosen = spine.sample(80, seed=3).sort("entity_id")
    batch = segment_features(layout, defined, spine, chunks=1).join(
        chosen.select("entity_id"), on="entity_id", how="semi", maintain_order="left"
    )
    state: OnlineState = client.decisions.state
    alone = pl.concat(
        build(defined, chosen.slice(i, 1), state.inputs(segment, [Request(e, as_of, _no())]))
        for i, e in enumerate(chosen["entity_id"])
    )
    assert_frame_equal(alone, batch)
    # several entities in one build (the service's micro-batch) give the same values
    requests = [Request(e, as_of, _no()) for e in chosen["entity_id"]]
    assert_frame_equal(build(defined, chosen, state.inputs(segment, requests)), batch)


def _no() -> pl.DataFrame:
    return pl.DataFrame()


def test_events_sent_with_the_request_equal_the_batch_log(world, tmp_path: Path) -> None:
    """The last events of some consumers, sent with the request, give the batch features."""
    segment = "consumer"
    layout = Layout(world.data_dir)
    as_of = scoring_date(world)
    log = pl.read_parquet(layout.validated / "consumer_transactions.parquet")
    entities = scoring_spine(layout, segment, as_of, world.application).sample(12, seed=5)[
        "entity_id"
    ]
    recent = (
        log.filter(pl.col("consumer_id").is_in(entities.implode()))
        .with_row_index("__row")
        .filter(pl.col("__row") >= pl.col("__row").max().over("consumer_id") - 6)
        .drop("__row")
    )
    shortened = tmp_path / "data"
    shutil.copytree(layout.validated, shortened / "validated")
    log.join(recent.select("txn_id"), on="txn_id", how="anti").write_parquet(
        shortened / "validated" / "consumer_transactions.parquet"
    )
    state = OnlineState.load(shortened, [segment])
    defined = feature_definitions(segment, world.features, world.label, world.limits)
    requests = []
    for entity in entities:
        sent = recent.filter(pl.col("consumer_id") == entity).drop("consumer_id")
        rows = sent.with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")).to_dicts()
        requests.append(Request(entity, as_of, state.validate_events(segment, entity, as_of, rows)))
    spine = pl.DataFrame({"entity_id": entities, "as_of": [as_of] * len(entities)}).with_columns(
        _LOAN
    )
    online = pl.concat(
        build(defined, spine.slice(i, 1), state.inputs(segment, [r]))
        for i, r in enumerate(requests)
    )
    assert_frame_equal(online, segment_features(layout, defined, spine, chunks=1))


def test_a_decision_has_every_part_and_its_stored_features_are_the_batch_ones(
    world, client
) -> None:
    as_of = scoring_date(world)
    entity = scoring_spine(Layout(world.data_dir), "merchant", as_of, world.application)[
        "entity_id"
    ][7]
    response = client.post("/decisions", json=_body(entity, "merchant"))
    assert response.status_code == 200, response.text
    got = response.json()
    for key in (
        "pd",
        "score",
        "band",
        "sub_scores",
        "reasons",
        "limit",
        "binding_constraint",
        "price",
        "model_version",
        "decision_id",
        "outcome",
    ):
        assert key in got
    assert 0 < got["pd"] < 1
    assert 350 <= got["score"] <= 950
    model = client.decisions.models.get("merchant")
    assert got["model_version"] == model.version
    # the Scorer's price columns (whatever the pricing engine names them) are passed through
    defined = feature_definitions("merchant", world.features, world.label, world.limits)
    spine = pl.DataFrame(
        {"entity_id": [entity], "as_of": [as_of], "principal": [1000.0], "term_months": [12]},
        schema_overrides={"term_months": pl.Int32},
    )
    frame = segment_features(Layout(world.data_dir), defined, spine, chunks=1)
    scored = model.scorer.score(frame)
    price = {c for c in scored.columns if c not in BASE_COLUMNS} - {
        c for c in scored.columns if c.startswith(("reason_", "sub_"))
    }
    assert set(got["price"]) == price
    assert got["pd"] == pytest.approx(scored["pd"][0], rel=1e-12)
    assert got["limit"] == scored["limit"][0]
    stored = client.get(f"/decisions/{got['decision_id']}").json()
    names = [*model.scorer.feature_names, *POLICY_INPUTS, "principal", "term_months"]
    assert stored["features"] == clean(frame.select(names).row(0, named=True))


def test_a_declined_applicant_is_explained_by_id_and_may_ask_for_review(
    world, client, tmp_path: Path
) -> None:
    as_of = scoring_date(world)
    layout = Layout(world.data_dir)
    defined = feature_definitions("consumer", world.features, world.label, world.limits)
    book = segment_features(
        layout, defined, scoring_spine(layout, "consumer", as_of, world.application), chunks=1
    )
    scored = client.decisions.models.get("consumer").scorer.score(book)
    worst = scored.sort("pd", descending=True)["entity_id"][0]
    got = client.post("/decisions", json=_body(worst, "consumer")).json()
    assert got["outcome"] == "declined"
    assert got["decline_reason"]
    assert got["reasons"]
    record = client.get(f"/decisions/{got['decision_id']}").json()
    assert record["outputs"]["reasons"] == got["reasons"]
    assert record["inputs"]["amount"] == 1000.0
    assert record["model_version"] == got["model_version"]

    params = _params_file(world, tmp_path)
    shown = runner.invoke(app, ["explain", got["decision_id"], "--params", str(params)])
    assert shown.exit_code == 0, shown.output
    assert "declined" in shown.output
    assert got["reasons"][0].split(":")[0] in shown.output

    replayed = runner.invoke(
        app, ["explain", got["decision_id"], "--params", str(params), "--replay"]
    )
    assert replayed.exit_code == 0, replayed.output
    assert f"replay: the same outputs with version {got['model_version']}" in replayed.output

    review = client.post(f"/decisions/{got['decision_id']}/review", json={"note": "look again"})
    assert review.status_code == 200
    assert review.json()["status"] == "open"
    listed = runner.invoke(app, ["review", "--params", str(params)])
    assert listed.exit_code == 0
    assert got["decision_id"] in listed.output
    assert worst in listed.output


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (_body("NO-SUCH-ONE", "merchant"), 404, "expected a known merchant id"),
        (_body("X", "household"), 422, "expected a segment this service serves"),
        ({**_body("X", "merchant"), "amount": 6_000_000}, 422, "product cap"),
        ({"entity_id": "X", "segment": "merchant"}, 422, "amount: Field required"),
        ({**_body("X", "merchant"), "amount": "lots"}, 422, "amount: Input should be"),
        ({**_body("X", "merchant"), "name": "Li Lei"}, 422, "name: Extra inputs"),
    ],
)
def test_refusals_are_clear_4xx(client, body: dict, status: int, says: str) -> None:
    if body.get("entity_id") == "X":  # a real entity, so only the rule under test fails
        body = {
            **body,
            "entity_id": client.decisions.state.segments["merchant"].entities.frame["entity_id"][0],
        }
    response = client.post("/decisions", json=body)
    assert response.status_code == status
    assert says in response.json()["detail"]
    assert "Traceback" not in response.text


def test_a_non_consented_entity_is_refused_before_anything_is_read(client) -> None:
    withheld = sorted(client.decisions.state.withheld["consumers"])
    assert withheld, "the small world has consumers who withheld consent"
    response = client.post("/decisions", json=_body(withheld[0], "consumer"))
    assert response.status_code == 403
    assert "has not authorised the use of its data" in response.json()["detail"]


def test_bad_events_are_refused_naming_the_rule(client) -> None:
    entity = client.decisions.state.segments["consumer"].entities.frame["entity_id"][0]
    event = {
        "txn_id": "n1",
        "ts": "2024-01-02T10:00:00Z",
        "kind": "income",
        "direction": "out",
        "amount": -5.0,
    }
    response = client.post("/decisions", json=_body(entity, "consumer", events=[event]))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "non_positive_amount" in detail
    assert "direction_mismatch" in detail
    late = {**event, "direction": "in", "amount": 5.0, "ts": "2999-01-01T00:00:00Z"}
    response = client.post("/decisions", json=_body(entity, "consumer", events=[late]))
    assert response.status_code == 422
    assert "not_before_as_of" in response.json()["detail"]
    odd = {**event, "colour": "red"}
    response = client.post("/decisions", json=_body(entity, "consumer", events=[odd]))
    assert response.status_code == 422
    assert "unknown ['colour']" in response.json()["detail"]


def test_unknown_decision_ids_are_404(client) -> None:
    assert client.get("/decisions/nope").status_code == 404
    assert client.post("/decisions/nope/review").status_code == 404


def test_the_decision_log_survives_a_restart(world, client) -> None:
    entity = client.decisions.state.segments["merchant"].entities.frame["entity_id"][3]
    made = client.post("/decisions", json=_body(entity, "merchant")).json()
    again = DecisionStore(decision_store(world))
    try:
        record = again.get(made["decision_id"])
    finally:
        again.close()
    assert record is not None
    assert record["outputs"]["score"] == made["score"]
    assert record["entity_id"] == entity


def test_a_promotion_is_served_without_a_restart(world, client, tmp_path: Path) -> None:
    models = client.decisions.models
    before = models.get("merchant").version
    registry.configure(world.mlflow.tracking_uri, world.mlflow.experiment)
    scorer = worse_scorer(world, "merchant", tmp_path / "worse")
    version = register_folder(world, scorer, tmp_path / "worse", models.alias)
    try:
        assert models.refresh("merchant")
        assert models.get("merchant").version == str(version) != before
        entity = client.decisions.state.segments["merchant"].entities.frame["entity_id"][1]
        got = client.post("/decisions", json=_body(entity, "merchant")).json()
        assert got["model_version"] == str(version)
    finally:
        registry.set_alias("merchant", models.alias, int(before))
        models.refresh("merchant")
    assert not models.refresh("merchant")  # nothing changed: nothing reloaded
