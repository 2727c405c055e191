"""Backups: `tarn admin backup` of a running server (a snapshot of the metadata, the online
store, the lake and the artifacts) restored by `tarn admin restore` into a new installation
whose server answers the same reads: a run's params, metric history and artifacts through the
stock `mlflow` client, a model version's files, a table's rows and history (and `deltalake`
reading the table at its new place), SQL. Writes made after the backup are not in it."""

import os
import subprocess
import uuid

import deltalake
import mlflow
import pytest
import requests

from conftest import _psql, _reset_client, start_tarn
from test_lakehouse import UC, call, payments, read_back, rows, write

BIN = os.environ.get("TARN_BIN", "target/debug/tarn")


def tarn(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def test_a_backup_of_a_running_server_restores_into_a_new_installation(tmp_path, monkeypatch):
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    source_url = f"{database_url}_backup_source" if database_url else None
    restored_url = f"{database_url}_backup_restored" if database_url else None
    source_dir, restored_dir, backup_dir = tmp_path / "source", tmp_path / "restored", tmp_path / "backup"
    source, stop_source = start_tarn(database_url=source_url, data_dir=str(source_dir))
    stop_restored = None
    try:
        _reset_client()
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", source.admin_token)
        client = mlflow.MlflowClient(tracking_uri=source.base)
        experiment = client.create_experiment(f"backup-{uuid.uuid4().hex[:8]}")
        run = client.create_run(experiment, run_name="kept")
        run_id = run.info.run_id
        client.log_param(run_id, "alpha", "0.5")
        for step in range(5):
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        client.log_text(run_id, "notes ü\n", "notes/readme.txt")
        client.log_text(run_id, "flavors: {}\n", "model/MLmodel")
        client.set_terminated(run_id)
        model = f"backup-model-{uuid.uuid4().hex[:6]}"
        client.create_registered_model(model)
        version = client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id)

        schema = f"backup_{uuid.uuid4().hex[:8]}"
        assert call(source, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
        table = f"dev.{schema}.payments"
        created = call(source, "POST", f"{UC}/tables", json={
            "name": "payments", "catalog_name": "dev", "schema_name": schema, "table_type": "MANAGED",
            "columns": [
                {"name": "id", "type_text": "bigint", "type_name": "LONG", "position": 0},
                {"name": "amount", "type_text": "double", "type_name": "DOUBLE", "position": 1},
                {"name": "country", "type_text": "string", "type_name": "STRING", "position": 2},
            ],
        })
        assert created.status_code == 200, created.text
        assert write(source, table, payments([1, 2], [10.0, 20.0], ["FR", "DE"])).status_code == 200
        assert write(source, table, payments([3], [30.0], ["IT"])).status_code == 200
        kept_rows = rows(read_back(source, table))

        backup = tarn("admin", "backup", "--data-dir", str(source_dir), "--to", str(backup_dir),
                      *(["--database-url", source_url] if source_url else []))
        assert backup.returncode == 0, backup.stderr
        assert (backup_dir / "manifest.json").exists()
        # Written after the backup: not in it.
        assert write(source, table, payments([4], [40.0], ["NL"])).status_code == 200
        client.log_param(run_id, "late", "yes")
        again = tarn("admin", "backup", "--data-dir", str(source_dir), "--to", str(backup_dir))
        assert again.returncode != 0 and "exists already" in again.stderr

        if restored_url:
            admin_url = restored_url.rsplit("/", 1)[0] + "/postgres"
            _psql(admin_url, f"DROP DATABASE IF EXISTS {restored_url.rsplit('/', 1)[1]} WITH (FORCE)")
            _psql(admin_url, f"CREATE DATABASE {restored_url.rsplit('/', 1)[1]}")
        restore = tarn("admin", "restore", "--from", str(backup_dir), "--data-dir", str(restored_dir),
                       *(["--database-url", restored_url] if restored_url else []))
        assert restore.returncode == 0, restore.stderr
        twice = tarn("admin", "restore", "--from", str(backup_dir), "--data-dir", str(restored_dir),
                     *(["--database-url", restored_url] if restored_url else []))
        assert twice.returncode != 0

        restored, stop_restored = start_tarn(database_url=restored_url, data_dir=str(restored_dir),
                                             fresh_database=False, admin_token=source.admin_token)
        client = mlflow.MlflowClient(tracking_uri=restored.base)
        back = client.get_run(run_id)
        assert back.data.params == {"alpha": "0.5"}
        assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0 / (s + 1) for s in range(5)]
        assert back.info.status == "FINISHED"
        downloaded = client.download_artifacts(run_id, "notes/readme.txt", str(tmp_path / "dl"))
        assert open(downloaded, encoding="utf-8").read() == "notes ü\n"
        restored_version = client.get_model_version(model, version.version)
        assert restored_version.run_id == run_id
        uri = requests.get(f"{restored.base}/api/2.0/mlflow/model-versions/get-download-uri",
                           params={"name": model, "version": version.version},
                           headers={"Authorization": f"Bearer {restored.admin_token}"}, timeout=30).json()["artifact_uri"]
        path = uri.split("mlflow-artifacts:/", 1)[1]
        model_file = requests.get(f"{restored.base}/api/2.0/mlflow-artifacts/artifacts/{path}/MLmodel",
                                  headers={"Authorization": f"Bearer {restored.admin_token}"}, timeout=30)
        assert (model_file.status_code, model_file.content) == (200, b"flavors: {}\n")

        assert rows(read_back(restored, table)) == kept_rows
        info = call(restored, "GET", f"{UC}/tables/{table}").json()
        location = info["storage_location"]
        assert location.startswith((restored_dir / "lake").resolve().as_uri()), location
        theirs = deltalake.DeltaTable(location)
        assert theirs.version() == 2
        assert sorted(theirs.to_pyarrow_table().column("id").to_pylist()) == [1, 2, 3]
        history = call(restored, "GET", f"/api/2.0/tarn/tables/{table}/history").json()
        assert len(history["history"]) == 3, history
        answer = call(restored, "POST", "/api/2.0/sql/statements", json={
            "statement": f"SELECT sum(amount) AS total FROM {table}", "warehouse_id": "any", "wait_timeout": "30s",
        }).json()
        assert answer["result"]["data_array"] == [["60.0"]], answer
    finally:
        _reset_client()
        if stop_restored:
            stop_restored()
        stop_source()
