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


def aws_env(endpoint):
    """What tarn reads to reach the S3-compatible store at `endpoint`."""
    return {
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


@pytest.fixture(scope="module")
def s3_server(s3_endpoint):
    started, stop = start_tarn(extra_args=["--artifact-root", "s3://tarn-artifacts/team-a"], extra_env=aws_env(s3_endpoint))
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


def test_large_artifact_goes_up_in_parts(s3_server, s3_endpoint, monkeypatch, tmp_path):
    """With proxy multipart on, the stock client uploads through mpu/create, part URLs and
    mpu/complete; the object in the bucket is a real S3 multipart object."""
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", s3_server.admin_token)
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(1024 * 1024))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(5 * 1024 * 1024))
    mlflow.set_tracking_uri(s3_server.base)
    mlflow.set_experiment("s3-multipart")
    payload = os.urandom(12 * 1024 * 1024 + 5)
    (tmp_path / "weights.bin").write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "weights.bin"), artifact_path="model")
    key = f"team-a/dev/{run.info.experiment_id}/{run.info.run_id}/artifacts/model/weights.bin"
    head = requests.head(f"{s3_endpoint}/tarn-artifacts/{key}", timeout=10)
    assert head.status_code == 200
    assert head.headers["ETag"].strip('"').endswith("-3"), head.headers["ETag"]
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model/weights.bin", dst_path=str(tmp_path / "d"))
    assert Path(downloaded).read_bytes() == payload
    mlflow.set_tracking_uri("")


def test_part_urls_are_bound_to_their_upload(s3_server):
    """A part URL authorises one part of one upload: a changed part number, path or signature
    is refused, and so are uploads without a grant."""
    headers = {"Authorization": f"Bearer {s3_server.admin_token}"}
    api = f"{s3_server.base}/api/2.0/mlflow"
    experiment_id = requests.post(f"{api}/experiments/create", json={"name": "mpu-hostile"}, headers=headers, timeout=10).json()["experiment_id"]
    path = f"{experiment_id}/r1/artifacts"
    created = requests.post(f"{s3_server.base}/api/2.0/mlflow-artifacts/mpu/create/{path}", json={"path": "/tmp/local/x.bin", "num_parts": 2}, headers=headers, timeout=10)
    assert created.status_code == 200, created.text
    body = created.json()
    assert [c["part_number"] for c in body["credentials"]] == [1, 2]
    url = body["credentials"][0]["url"]
    tampered = [
        url.replace("part_number=1", "part_number=2"),
        url.replace("x.bin", "y.bin"),
        url[:-4] + ("0000" if not url.endswith("0000") else "1111"),
        url.replace("upload_id=", "upload_id=zz"),
    ]
    for bad in tampered:
        answer = requests.put(bad, data=b"x" * 10, timeout=10)
        assert answer.status_code == 403, (bad, answer.text)
        assert answer.json()["error_code"] == "PERMISSION_DENIED"
    assert "/r1/artifacts/x.bin?" in url
    too_many = requests.post(f"{s3_server.base}/api/2.0/mlflow-artifacts/mpu/create/{path}", json={"path": "x.bin", "num_parts": 10001}, headers=headers, timeout=10)
    assert too_many.status_code == 400
    assert too_many.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Percent-encoded so the HTTP client sends the dots as they are.
    traversal = requests.post(f"{s3_server.base}/api/2.0/mlflow-artifacts/mpu/create/{experiment_id}/%2E%2E/0", json={"path": "x", "num_parts": 1}, headers=headers, timeout=10)
    assert traversal.status_code == 400, traversal.text
    sneaky_name = requests.post(f"{s3_server.base}/api/2.0/mlflow-artifacts/mpu/create/{path}", json={"path": "..", "num_parts": 1}, headers=headers, timeout=10)
    assert sneaky_name.status_code == 400, sneaky_name.text
    aborted = requests.post(f"{s3_server.base}/api/2.0/mlflow-artifacts/mpu/abort/{path}", json={"path": "x.bin", "upload_id": body["upload_id"]}, headers=headers, timeout=10)
    assert aborted.status_code == 200, aborted.text
    no_token = requests.post(f"{s3_server.base}/api/2.0/mlflow-artifacts/mpu/create/{path}", json={"path": "x.bin", "num_parts": 1}, timeout=10)
    assert no_token.status_code == 401


def test_registry_copies_versions_within_the_bucket(s3_server, s3_endpoint, monkeypatch):
    """On S3 a version's copy is made in the bucket; it outlives the run's objects."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", s3_server.admin_token)
    mlflow.set_tracking_uri(s3_server.base)
    mlflow.set_experiment("s3-registry")
    features = np.arange(20, dtype=float).reshape(10, 2)
    model = LinearRegression().fit(features, features @ [1.5, -2.0] + 3)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name="s3-model")
    client = mlflow.MlflowClient()
    version = client.get_model_version("s3-model", info.registered_model_version)
    registry_path = client.get_model_version_download_uri("s3-model", version.version).split("mlflow-artifacts:/", 1)[1]
    listing = requests.get(f"{s3_endpoint}/tarn-artifacts?list-type=2&prefix=team-a/dev/{registry_path}/", timeout=10).text
    assert f"team-a/dev/{registry_path}/MLmodel" in listing
    # Remove every object of the run and of its logged model from the bucket.
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    source = s3.list_objects_v2(Bucket="tarn-artifacts", Prefix=f"team-a/dev/{run.info.experiment_id}/")["Contents"]
    assert any(o["Key"].endswith("/MLmodel") for o in source)
    s3.delete_objects(Bucket="tarn-artifacts", Delete={"Objects": [{"Key": o["Key"]} for o in source]})
    assert s3.list_objects_v2(Bucket="tarn-artifacts", Prefix=f"team-a/dev/{run.info.experiment_id}/")["KeyCount"] == 0
    loaded = mlflow.pyfunc.load_model(f"models:/s3-model/{version.version}")
    np.testing.assert_allclose(loaded.predict(features), model.predict(features))
    mlflow.set_tracking_uri("")
