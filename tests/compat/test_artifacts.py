"""Artifacts through the proxy (`mlflow-artifacts:` URIs) with the stock client."""

import os

import mlflow


def test_log_list_download(client, unique, tmp_path):
    mlflow.set_experiment(unique())
    folder = tmp_path / "report"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "summary.txt").write_text("summary")
    (folder / "nested" / "deeper" / "data.csv").write_text("a,b\n1,2\n")
    binary = tmp_path / "weights.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    binary.write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(binary))
        mlflow.log_artifacts(str(folder), artifact_path="report")
        mlflow.log_text("hello", "notes/hello.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config.json")
    run_id = run.info.run_id

    top = {f.path: f.is_dir for f in client.list_artifacts(run_id)}
    assert top == {"config.json": False, "notes": True, "report": True, "weights.bin": False}
    nested = client.list_artifacts(run_id, "report/nested/deeper")
    assert [(f.path, f.file_size) for f in nested] == [("report/nested/deeper/data.csv", 8)]
    sizes = {f.path: f.file_size for f in client.list_artifacts(run_id)}
    assert sizes["weights.bin"] == len(payload)

    downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="weights.bin", dst_path=str(tmp_path / "d1"))
    assert open(downloaded, "rb").read() == payload
    report = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report", dst_path=str(tmp_path / "d2"))
    assert open(os.path.join(report, "nested", "deeper", "data.csv")).read() == "a,b\n1,2\n"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/hello.txt") == "hello"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == {"a": 1, "b": [1, 2]}


def test_multipart_on_local_storage_falls_back_to_a_plain_upload(client, unique, tmp_path, monkeypatch):
    """On a local artifact root the server refuses multipart with MLflow's own message, which
    makes the client fall back to a single PUT."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1024")
    mlflow.set_experiment(unique())
    payload = os.urandom(64 * 1024)
    (tmp_path / "blob.bin").write_bytes(payload)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "blob.bin"))
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="blob.bin", dst_path=str(tmp_path / "d"))
    with open(local, "rb") as f:
        assert f.read() == payload
