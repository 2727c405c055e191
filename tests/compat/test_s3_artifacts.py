"""Artifacts on an S3-compatible object store (moto's server standing in for S3)."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
import requests

from conftest import _free_port, _wait_for, start_tarn


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    log_path = Path(tempfile.mkdtemp(prefix="moto-")) / "moto.log"
    log = open(log_path, "w")
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint + "/moto-api/", process, log_path)
        assert requests.put(endpoint + "/tarn-artifacts", timeout=10).status_code == 200
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def s3_server(s3_endpoint):
    env = {
        "AWS_ENDPOINT": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    started, stop = start_tarn(extra_args=["--artifact-root", "s3://tarn-artifacts/team-a"], extra_env=env)
    try:
        yield started
    finally:
        stop()


def test_artifacts_round_trip_through_s3(s3_server, s3_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", s3_server.admin_token)
    mlflow.set_tracking_uri(s3_server.base)
    mlflow.set_experiment("s3-artifacts")
    payload = os.urandom(12 * 1024 * 1024 + 3)
    (tmp_path / "big.bin").write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "big.bin"), artifact_path="data")
        mlflow.log_text("on s3", "notes.txt")
    client = mlflow.MlflowClient()
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"data", "notes.txt"}
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data/big.bin", dst_path=str(tmp_path / "d"))
    assert Path(downloaded).read_bytes() == payload
    # The objects are in the bucket, under the prefix and the workspace.
    listing = requests.get(f"{s3_endpoint}/tarn-artifacts?list-type=2&prefix=team-a/dev/", timeout=10).text
    assert f"team-a/dev/{run.info.experiment_id}/{run.info.run_id}/artifacts/data/big.bin" in listing
    assert f"team-a/dev/{run.info.experiment_id}/{run.info.run_id}/artifacts/notes.txt" in listing
    mlflow.set_tracking_uri("")
