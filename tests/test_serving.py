"""The champion answers over HTTP: `mlflow models serve --env-manager local` on 127.0.0.1."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from registry_world import private_world

from features.definitions import POLICY_INPUTS
from pipeline import registry
from pipeline.drift import read_reference

READY_WITHIN_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_champion_serves_scores_over_http(trained_world, tmp_path: Path) -> None:
    settings = private_world(trained_world, tmp_path)
    registry.configure(settings.mlflow.tracking_uri, settings.mlflow.experiment)
    uri = f"models:/{registry.model_name('merchant')}@champion"
    scorer_dir = registry.download_scorer(uri, tmp_path / "model")
    scorer = registry.load_scorer(uri, tmp_path / "model2")
    example = registry.synthetic_example(scorer, read_reference(scorer_dir), rows=3)
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.mlflow.tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow.tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the server did not become ready in time"
            time.sleep(0.5)
        frame = example.to_pandas()
        body = json.dumps(
            {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
        ).encode()
        request = urllib.request.Request(
            f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            answer = json.loads(response.read())
        lean = json.loads(body)
        lean["params"] = {"reasons": False}
        request = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps(lean).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            without_reasons = json.loads(response.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    rows = answer["predictions"]
    expected = scorer.score(example).to_dicts()
    assert [r["entity_id"] for r in rows] == ["example-0", "example-1", "example-2"]
    for got, want in zip(rows, expected, strict=True):
        assert 350 <= got["score"] <= 950
        assert got["score"] == want["score"]
        assert got["band"] == want["band"]
        assert got["pd"] == pytest.approx(want["pd"])
        assert got["limit"] == pytest.approx(want["limit"])
        assert got["priced_out"] == want["priced_out"]
        if want["apr"] is None:  # a null price travels as JSON null or NaN
            assert got["apr"] is None or math.isnan(got["apr"])
        else:
            assert got["apr"] == pytest.approx(want["apr"])
            assert got["apr"] <= scorer.policy.pricing.max_apr
    assert set(POLICY_INPUTS).isdisjoint(rows[0])
    assert "reason_1" in rows[0]
    assert "reason_1" not in without_reasons[0]
    assert [r["score"] for r in without_reasons] == [r["score"] for r in rows]
