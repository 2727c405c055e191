"""The README's main job, `tarn quickstart`, on embedded defaults in a fresh data dir: raw file
to bronze (bad rows quarantined), silver by SQL, a feature table and a point-in-time training
set, training runs that record their dataset, the registry (the version knows its training
set), online features, the endpoint's predictions monitored for drift, and the lineage. Run
twice, the raw file is not ingested again."""

import json
import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import deltalake
import pytest
from conftest import start_tarn, tarn_bin
from mlflow.tracking import MlflowClient

def quickstart(data_dir):
    binary = tarn_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARN_")}
    env["TARN_LOG"] = "warn"
    done = subprocess.run(
        [binary, "quickstart", "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def table_path(data_dir, schema, prefix):
    found = sorted((data_dir / "lake" / "dev" / schema).glob(f"{prefix}-*"))
    assert len(found) == 1, found
    return str(found[0])


@pytest.mark.skipif(bool(os.environ.get("TARN_TEST_DATABASE_URL")), reason="the quickstart runs on embedded defaults")
def test_quickstart_builds_the_pipeline_from_a_raw_file(tmp_path):
    data_dir = tmp_path / "tarn"
    first = quickstart(data_dir)
    raw = data_dir / "quickstart" / "landing" / "measurements.csv"
    # 2,000 readings, 2 glitches (SQL filters them), 4 garbled lines and 1 short one (quarantined).
    assert f"{raw}: 2002 rows written, 5 bad rows to dev.bronze.quickstart_measurements_quarantine" in first
    silver = deltalake.DeltaTable(table_path(data_dir, "silver", "quickstart_training")).to_pyarrow_table()
    assert silver.num_rows == 2000 and max(silver.column("y").to_pylist()) < 10
    quarantine = deltalake.DeltaTable(table_path(data_dir, "bronze", "quickstart_measurements_quarantine")).to_pyarrow_table()
    assert quarantine.num_rows == 5
    # Features: each sensor's daily statistics, known at the day's end; readings of the first
    # day have none, all others find the day before's.
    assert "Built feature table dev.features.quickstart_sensor_daily (keys sensor_id, known_at; from dev.silver.quickstart_training) with 3 features" in first
    first_day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    later = sum(1 for t in silver.column("read_at").to_pylist() if t >= first_day)
    built = re.search(r"Built training set ([0-9a-f]{32}) point-in-time: (\d+) rows of dev.silver.quickstart_training version 0, (\d+) with", first)
    assert built and int(built.group(2)) == 2000 and int(built.group(3)) == later
    training_set_id = built.group(1)
    assert f"its feature spec: training set {training_set_id}" in first
    assert "Published dev.features.quickstart_sensor_daily version 1 to the sqlite online store (full): 40 keys written" in first
    assert "online lookup of sensor 7: PRESENT" in first
    assert "Lineage of dev.features.quickstart_sensor_daily:" in first
    lineage = first.split("Lineage of dev.features.quickstart_sensor_daily:")[1]
    assert "dev.bronze.quickstart_measurements" in lineage and f"file {raw}" in lineage
    assert "CREATE TABLE AS SELECT" in lineage and "INGEST" in lineage
    assert "model version dev/quickstart-linear/1" in lineage and "CREATE MODEL VERSION" in lineage

    # The champion serves requests by sensor id; each request is a row of the inference table,
    # read here by the deltalake package.
    assert "Serving endpoint quickstart: quickstart-linear@champion (version 1), READY, logging to dev.inference.quickstart_payload" in first
    served = re.findall(r"sensor +(\d+) x0=(\S+) +x1=(\S+) +-> y=(\S+) \(version 1; looked up (\{.*\})\)", first)
    assert [int(s[0]) for s in served] == [7, 3, 12] and all('"readings"' in s[4] for s in served)
    inference = deltalake.DeltaTable(table_path(data_dir, "inference", "quickstart_payload")).to_pyarrow_table()
    named = [i for i in inference.column("client_request_id").to_pylist() if i is not None]
    assert sorted(named) == ["quickstart-sensor-12", "quickstart-sensor-3", "quickstart-sensor-7"]
    assert inference.num_rows == 3 + 4  # and the monitored readings' four requests
    assert set(inference.column("status_code").to_pylist()) == {200} and set(inference.column("model_version").to_pylist()) == {1}

    # The endpoint's predictions, one row per scored reading, are monitored against the training
    # table: the drift the quickstart shows is the drift injected into x1, and only there.
    predictions = deltalake.DeltaTable(table_path(data_dir, "inference", "quickstart_predictions")).to_pyarrow_table()
    assert predictions.num_rows == 3 + 200
    assert "Scored 200 more readings (x1 drifted by +0.8); dev.inference.quickstart_predictions holds one row per prediction:" in first
    assert "Monitor on dev.inference.quickstart_predictions (baseline dev.silver.quickstart_training) refreshed" in first, first
    drift = {line.split()[0]: line.split() for line in first.split("against the baseline:")[1].splitlines()[2:5]}
    assert set(drift) == {"sensor_id", "x0", "x1"}, first
    assert drift["x1"][-1] == "yes" and drift["x0"][-1] == "no", first

    # The pipeline ran as a job of four tasks, followed live; it stays with a paused schedule.
    started = re.search(r"Running job (\d+) \(quickstart pipeline: ingest -> features -> train -> register\)", first)
    assert started, first
    job_id = started.group(1)
    assert [line for line in first.splitlines() if line in ("[ingest]", "[features]", "[train]", "[register]")] == [
        "[ingest]", "[features]", "[train]", "[register]"
    ]
    second = quickstart(data_dir)
    assert f"Running job {job_id} (quickstart pipeline" in second, "the same job, run again"
    assert f"{raw}: ingested before, skipped" in second
    # The new champion (version 2) took over the endpoint.
    assert "Serving endpoint quickstart: quickstart-linear@champion (version 2), READY" in second
    assert "Monitor on dev.inference.quickstart_predictions (baseline dev.silver.quickstart_training) refreshed" in second
    assert "on dev.silver.quickstart_training (version 1)" in second
    assert "Refreshed feature table dev.features.quickstart_sensor_daily" in second

    # The runs record the table version they trained on, readable by the stock client.
    run_ids = re.findall(r"run ([0-9a-f]{32})", second)
    assert len(run_ids) == 3
    token = (data_dir / "admin.token").read_text().strip()
    server, stop = start_tarn(data_dir=str(data_dir), admin_token=token)
    try:
        # The commands the quickstart suggests, against a server on its data dir.
        settings = json.loads(server.cli("jobs", "get", job_id).stdout)
        assert settings["schedule"] == {"quartz_cron_expression": "0 0 6 * * ?", "timezone_id": "UTC", "pause_status": "PAUSED"}
        assert [t["task_key"] for t in settings["tasks"]] == ["ingest", "features", "train", "register"]
        runs = server.cli("jobs", "runs", "--job-id", job_id).stdout
        assert runs.count("SUCCESS") == 2, runs
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
        run = MlflowClient(tracking_uri=server.base).get_run(run_ids[0])
        dataset = run.inputs.dataset_inputs[0].dataset
        assert dataset.name == "dev.silver.quickstart_training"
        assert dataset.source_type == "delta_table" and '"delta_table_version":1' in dataset.source.replace(" ", "")
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        stop()
