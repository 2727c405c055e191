"""The closed loop on a live endpoint, driven as a user drives it: requests scored by a serving
endpoint are unpacked from its payload table into one row per prediction, labels that arrive
later join in by an id from the request, a monitor (`databricks-sdk`'s `w.quality_monitors`) on
the predictions finds drift in exactly the shifted column and window, and an alert
(`w.alerts_v2`) on the drift metrics fires once, telling its webhook and starting its retraining
job with the alert's details. Also: alerts' bad settings and permissions."""

import json
import time
import uuid

import deltalake
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from databricks.sdk.errors import DatabricksError, PermissionDenied
from databricks.sdk.service import jobs
from databricks.sdk.service.catalog import (
    MonitorInferenceLog,
    MonitorInferenceLogProblemType,
    MonitorRefreshInfoState,
)
from databricks.sdk.service.sql import (
    AlertV2,
    AlertV2Evaluation,
    AlertV2Notification,
    AlertV2Operand,
    AlertV2OperandColumn,
    AlertV2OperandValue,
    AlertV2Subscription,
    ComparisonOperator,
    CronSchedule,
)
from sklearn import metrics as skm

from test_job_runs import script, wait_for, workspace
from test_lakehouse import UC, arrow_body, call, local_path
from test_monitors import create_table, metrics_frame, refreshed
from test_webhooks import Receiver, admin_api

FEATURES = ["f0", "f1", "f2", "f3"]
WINDOW_S = 300
ROWS_PER_HALF = 400
TOLERANCE = 1e-6


@pytest.fixture
def schema(server):
    name = f"loop_{uuid.uuid4().hex[:8]}"
    created = call(server, "POST", f"{UC}/schemas", json={"name": name, "catalog_name": "dev"})
    assert created.status_code == 200, created.text
    return name


def train_and_register(client, name):
    """A logistic regression on f0..f3 logged as ONNX with its signature, version 1 of `name`."""
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, len(FEATURES))).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    model = LogisticRegression(max_iter=500).fit(x, y)
    frame = pd.DataFrame(x, columns=FEATURES)
    mlflow.set_experiment(f"loop-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        logged = mlflow.onnx.log_model(
            to_onnx(model, x[:1], options={id(model): {"zipmap": False}}),
            name="model",
            signature=infer_signature(frame, model.predict(x)),
            pip_requirements=["onnx"],
        )
    client.create_registered_model(name)
    client.create_model_version(name, logged.model_uri, run_id=run.info.run_id)
    return model


def half(seed, start_id, shift=0.0):
    """ROWS_PER_HALF requests' rows: an id and f0..f3. Both halves draw f0, f2 and f3 from the
    same values (so they cannot drift by chance); the second moves f1 by `shift`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS_PER_HALF, len(FEATURES)))
    same = np.random.default_rng(99).normal(size=(ROWS_PER_HALF, len(FEATURES)))
    x[:, [0, 2, 3]] = same[:, [0, 2, 3]]
    x[:, 1] += shift
    frame = pd.DataFrame(np.round(x, 6), columns=FEATURES)
    frame.insert(0, "txn_id", range(start_id, start_id + ROWS_PER_HALF))
    return frame


def send(server, endpoint, frame, batch=50):
    for start in range(0, len(frame), batch):
        rows = frame.iloc[start:start + batch].to_dict(orient="records")
        answer = call(server, "POST", f"/serving-endpoints/{endpoint}/invocations", json={"dataframe_records": rows})
        assert answer.status_code == 200, answer.text


def table_frame(server, full_name):
    info = call(server, "GET", f"{UC}/tables/{full_name}").json()
    return deltalake.DeltaTable(local_path(info)).to_pyarrow_table().to_pandas()


def wait_until(check, what, timeout=60):
    deadline = time.time() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def predictions_of(server, full_name, rows, labeled=False):
    def check():
        exists = call(server, "GET", f"{UC}/tables/{full_name}")
        if exists.status_code != 200:
            return None
        frame = table_frame(server, full_name)
        if len(frame) < rows or (labeled and frame.label.isna().any()):
            return None
        return frame
    return wait_until(check, f"{rows} {'labeled ' if labeled else ''}rows in {full_name}")


def wait_for_next_window(margin=3):
    """Sleeps into the next five-minute window (the monitor's granularity)."""
    now = time.time()
    time.sleep(WINDOW_S - now % WINDOW_S + margin)


def test_an_endpoints_predictions_drift_fire_an_alert_once_and_start_retraining(server, client, schema, tmp_path):
    w = workspace(server)
    receiver = Receiver()
    try:
        run_loop(server, client, w, schema, receiver, tmp_path)
    finally:
        receiver.close()


def run_loop(server, client, w, schema, receiver, tmp_path):
    model_name = f"loop-{uuid.uuid4().hex[:6]}"
    model = train_and_register(client, model_name)
    labels = f"dev.{schema}.labels"
    columns = [{"name": "txn_id", "type_text": "bigint"}, {"name": "label", "type_text": "bigint"}]
    made = call(server, "POST", f"{UC}/tables", json={"name": "labels", "catalog_name": "dev", "schema_name": schema, "columns": columns, "properties": {"delta.enableChangeDataFeed": "true"}})
    assert made.status_code == 200, made.text
    # Nothing to write is refused, and says so.
    empty = call(server, "POST", f"/api/2.0/tarn/tables/{labels}/data", data=arrow_body(pa.table({"txn_id": pa.array([], pa.int64()), "label": pa.array([], pa.int64())})), headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert empty.status_code == 400 and "No rows" in empty.json()["message"], empty.text
    endpoint = f"loop-{uuid.uuid4().hex[:6]}"
    capture = {"catalog_name": "dev", "schema_name": schema, "table_name_prefix": "scoring", "labels": {"table_name": labels, "join_columns": ["txn_id"]}}
    created = call(server, "POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {"served_entities": [{"entity_name": model_name, "entity_version": "1"}], "auto_capture_config": capture}})
    assert created.status_code == 200, created.text
    predictions = f"dev.{schema}.scoring_predictions"

    # The first half inside one window, the second in the next.
    if WINDOW_S - time.time() % WINDOW_S < 90:
        wait_for_next_window()
    first = half(seed=1, start_id=0)
    send(server, endpoint, first)
    unpacked = predictions_of(server, predictions, ROWS_PER_HALF)
    # One row per scored row, with the request's fields, the model's answer and who gave it.
    unpacked = unpacked.sort_values("txn_id").reset_index(drop=True)
    assert list(unpacked.txn_id) == list(first.txn_id)
    for feature in FEATURES:
        assert np.array_equal(unpacked[feature].to_numpy(), first[feature].to_numpy()), feature
    x = first[FEATURES].to_numpy(np.float32)
    assert list(unpacked.prediction) == model.predict(x).tolist()
    np.testing.assert_allclose(unpacked.probability, model.predict_proba(x)[:, 1], rtol=1e-5, atol=1e-6)
    assert set(unpacked.model_name) == {model_name} and set(unpacked.model_version) == {1}
    assert unpacked.label.isna().all()
    assert unpacked.groupby("request_id").row_index.apply(sorted).map(list).tolist() == [list(range(50))] * (ROWS_PER_HALF // 50)

    # A monitor on the predictions, with the first half as its baseline.
    baseline = f"dev.{schema}.baseline"
    create_table(server, baseline, pa.Table.from_pandas(first[FEATURES], preserve_index=False))
    info = w.quality_monitors.create(
        table_name=predictions,
        output_schema_name=f"dev.{schema}",
        assets_dir=f"/Workspace/Shared/{schema}",
        inference_log=MonitorInferenceLog(
            problem_type=MonitorInferenceLogProblemType.PROBLEM_TYPE_CLASSIFICATION,
            timestamp_col="timestamp",
            granularities=["5 minutes"],
            model_id_col="model_version",
            prediction_col="prediction",
            label_col="label",
            prediction_proba_col="probability",
        ),
        baseline_table_name=baseline,
    )
    done = refreshed(w, predictions)
    assert done.state == MonitorRefreshInfoState.SUCCESS, done.message

    # An alert on f1's drift against the baseline, telling a webhook and starting a job.
    hook = admin_api(server, "POST", "mlflow/webhooks", name=f"alerts-{uuid.uuid4().hex[:6]}", url=f"{receiver.url}/alerts", events=[{"entity": "MODEL_VERSION", "action": "CREATED"}], secret="alert-secret")
    assert hook.status_code == 200, hook.text
    drift_table = info.drift_metrics_table_name
    alert = w.alerts_v2.create_alert(AlertV2(
        display_name="f1 drifted",
        query_text=f"SELECT MAX(population_stability_index) AS psi FROM {drift_table} WHERE column_name = 'f1' AND drift_type = 'BASELINE' AND slice_key IS NULL",
        warehouse_id="tarn",
        evaluation=AlertV2Evaluation(
            source=AlertV2OperandColumn(name="psi"),
            comparison_operator=ComparisonOperator.GREATER_THAN,
            threshold=AlertV2Operand(value=AlertV2OperandValue(double_value=0.2)),
            notification=AlertV2Notification(subscriptions=[AlertV2Subscription(destination_id=hook.json()["webhook"]["webhook_id"])]),
        ),
        schedule=CronSchedule(quartz_cron_schedule="0 0 0 * * ?", timezone_id="UTC"),
    ))
    assert alert.id and alert.evaluation.state.value == "UNKNOWN"
    retrain = script(tmp_path, "retrain.py", """
        import json, sys
        print(json.dumps(sys.argv[1:]))
    """)
    job = w.jobs.create(
        name=f"retrain-{uuid.uuid4().hex[:6]}",
        tasks=[jobs.Task(task_key="retrain", spark_python_task=jobs.SparkPythonTask(python_file=retrain, parameters=["{{job.parameters.alert_value}}"]))],
        parameters=[jobs.JobParameterDefinition(name="alert_value", default=""), jobs.JobParameterDefinition(name="alert_name", default="")],
    )
    armed = call(server, "POST", "/api/2.2/jobs/update", json={"job_id": job.job_id, "new_settings": {"trigger": {"alert": {"alert_id": alert.id, "min_time_between_triggers_seconds": 3600}}}})
    assert armed.status_code == 200, armed.text
    evaluated = call(server, "POST", f"/api/2.0/tarn/alerts/{alert.id}/evaluate").json()
    assert evaluated["state"] == "OK" and float(evaluated["value"]) < 0.01, evaluated

    # The second half, shifted, in the next window; labels for the first half came meanwhile.
    wait_for_next_window()
    second = half(seed=2, start_id=ROWS_PER_HALF, shift=2.0)
    send(server, endpoint, second)
    predictions_of(server, predictions, 2 * ROWS_PER_HALF)
    done = refreshed(w, predictions)
    assert done.state == MonitorRefreshInfoState.SUCCESS, done.message

    drift = metrics_frame(server, drift_table)
    drift = drift[drift.slice_key.isna() & drift.model_id.isna() & drift.column_name.isin(FEATURES)]
    windows = sorted(drift.window.map(lambda v: v["start"]).unique())
    assert len(windows) == 2, windows
    detected = {(r.window["start"], r.drift_type, r.column_name) for _, r in drift.iterrows() if r.drift_detected}
    assert detected == {(windows[1], "BASELINE", "f1"), (windows[1], "CONSECUTIVE", "f1")}, detected

    # The refresh made the alert TRIGGERED: its webhook is told, the job runs with its details.
    def told(seen):
        return [json.loads(r["body"]) for r in seen if r["path"] == "/alerts"]
    bodies = told(receiver.wait_for(lambda seen: len(told(seen)) >= 1))
    assert (bodies[0]["entity"], bodies[0]["action"]) == ("alert", "state_changed")
    assert bodies[0]["data"]["state"] == "TRIGGERED" and bodies[0]["data"]["previous_state"] == "OK"
    value = float(bodies[0]["data"]["value"])
    assert value > 0.2
    runs = wait_until(lambda: list(w.jobs.list_runs(job_id=job.job_id)) or None, "the retraining run")
    assert len(runs) == 1 and runs[0].trigger is None  # tarn's ALERT trigger is not in the SDK's enum
    run = wait_for(w, runs[0].run_id, lambda r: r.state.life_cycle_state.value == "TERMINATED")
    parameters = {p.name: p.value for p in run.job_parameters}
    assert parameters == {"alert_value": bodies[0]["data"]["value"], "alert_name": "f1 drifted"}
    assert w.alerts_v2.get_alert(alert.id).evaluation.state.value == "TRIGGERED"
    def evaluations():
        return call(server, "GET", f"/api/2.0/tarn/alerts/{alert.id}/history").json()["evaluations"]
    before = len(evaluations())

    # Labels arrive for every request: they join in, and the quality windows are recomputed.
    truth = pd.concat([first, second])
    x_all = truth[FEATURES].to_numpy(np.float32)
    truth = truth.assign(label=(x_all[:, 0] + 0.5 * x_all[:, 1] > 0.3).astype(np.int64))
    written = call(server, "POST", f"/api/2.0/tarn/tables/{labels}/data", data=arrow_body(pa.table({"txn_id": pa.array(truth.txn_id, pa.int64()), "label": pa.array(truth.label, pa.int64())})), headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert written.status_code == 200, written.text
    labeled = predictions_of(server, predictions, 2 * ROWS_PER_HALF, labeled=True).sort_values("txn_id")
    assert list(labeled.label) == list(truth.label)
    done = refreshed(w, predictions)
    assert done.state == MonitorRefreshInfoState.SUCCESS, done.message
    profile = metrics_frame(server, info.profile_metrics_table_name)
    table_rows = profile[(profile.column_name == ":table") & profile.slice_key.isna() & profile.model_id.isna() & (profile.log_type == "INPUT")]
    for window, rows in ((windows[0], first), (windows[1], second)):
        quality = table_rows[table_rows.window.map(lambda v: v["start"]) == window].iloc[0]
        got = labeled[labeled.txn_id.isin(rows.txn_id)]
        assert abs(quality.accuracy_score - skm.accuracy_score(got.label, got.prediction)) < TOLERANCE
        assert abs(quality.roc_auc_score - skm.roc_auc_score(got.label, got.probability)) < TOLERANCE

    # Still TRIGGERED after that refresh: no second webhook call, no second run (it fires once).
    history = wait_until(lambda: (h := evaluations()) and len(h) > before and h, "the evaluation after the labels' refresh")
    assert (history[0]["state"], history[0]["reason"]) == ("TRIGGERED", "refresh")
    triggered = [e for e in history if e["state"] == "TRIGGERED"]
    assert len(triggered) == 2 and [e["notified"] for e in triggered] == [False, True], history
    assert all(e["state"] == "OK" for e in history[len(triggered):]), history
    time.sleep(3)
    with receiver.lock:
        assert len(told(receiver.received)) == 1
    assert len(list(w.jobs.list_runs(job_id=job.job_id))) == 1
    listed = [a.id for a in w.alerts_v2.list_alerts()]
    assert alert.id in listed


def test_alerts_refuse_bad_settings_and_only_their_owner_changes_them(server, schema):
    w = workspace(server)
    table = f"dev.{schema}.scores"
    create_table(server, table, pa.table({"psi": [0.1, 0.5], "column_name": ["a", "b"]}))
    query = f"SELECT MAX(psi) AS psi FROM {table}"

    def alert(**changes):
        fields = dict(
            display_name="psi",
            query_text=query,
            warehouse_id="any",
            evaluation=AlertV2Evaluation(
                source=AlertV2OperandColumn(name="psi"),
                comparison_operator=ComparisonOperator.GREATER_THAN,
                threshold=AlertV2Operand(value=AlertV2OperandValue(double_value=0.3)),
            ),
            schedule=CronSchedule(quartz_cron_schedule="0 0 * * * ?", timezone_id="UTC"),
        )
        fields.update(changes)
        return AlertV2(**fields)

    bad = [
        (alert(query_text=f"SELECT nope FROM {table}"), "nope"),
        (alert(query_text="SELECT 1 AS psi; DROP TABLE x"), ""),
        (alert(evaluation=AlertV2Evaluation(source=AlertV2OperandColumn(name="missing"), comparison_operator=ComparisonOperator.IS_NULL)), "missing"),
        (alert(evaluation=AlertV2Evaluation(source=AlertV2OperandColumn(name="psi"), comparison_operator=ComparisonOperator.GREATER_THAN)), "threshold"),
        (alert(schedule=CronSchedule(quartz_cron_schedule="every day", timezone_id="UTC")), "quartz"),
        (alert(schedule=CronSchedule(quartz_cron_schedule="0 0 * * * ?", timezone_id="Mars/Olympus")), "Mars"),
        (alert(evaluation=AlertV2Evaluation(source=AlertV2OperandColumn(name="psi"), comparison_operator=ComparisonOperator.IS_NULL, notification=AlertV2Notification(subscriptions=[AlertV2Subscription(destination_id="no-such-hook")]))), "no-such-hook"),
    ]
    before = len(list(w.alerts_v2.list_alerts()))
    for settings, words in bad:
        with pytest.raises(DatabricksError) as refused:
            w.alerts_v2.create_alert(settings)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE", (settings, refused.value)
        assert words.lower() in str(refused.value).lower(), (words, str(refused.value))
    assert len(list(w.alerts_v2.list_alerts())) == before

    created = w.alerts_v2.create_alert(alert())
    evaluated = call(server, "POST", f"/api/2.0/tarn/alerts/{created.id}/evaluate").json()
    assert (evaluated["state"], evaluated["value"], evaluated["threshold"]) == ("TRIGGERED", "0.5", "0.3")
    renamed = w.alerts_v2.update_alert(created.id, AlertV2(display_name="renamed", query_text="ignored", warehouse_id="x", evaluation=created.evaluation, schedule=created.schedule), update_mask="display_name")
    assert (renamed.display_name, renamed.query_text) == ("renamed", query)

    # Someone else in the workspace sees it but cannot change or delete it, nor read the table
    # through an alert of their own.
    token = server.create_user(f"u{uuid.uuid4().hex[:6]}", "pw-123456")
    other = workspace(server, token=token)
    assert other.alerts_v2.get_alert(created.id).display_name == "renamed"
    with pytest.raises(PermissionDenied):
        other.alerts_v2.update_alert(created.id, renamed, update_mask="display_name")
    with pytest.raises(PermissionDenied):
        other.alerts_v2.trash_alert(created.id)
    with pytest.raises(DatabricksError) as unreadable:
        other.alerts_v2.create_alert(alert())
    assert unreadable.value.error_code in ("PERMISSION_DENIED", "RESOURCE_DOES_NOT_EXIST"), unreadable.value
    w.alerts_v2.trash_alert(created.id)
    assert created.id not in [a.id for a in w.alerts_v2.list_alerts()]


def test_bad_label_settings_are_refused_and_odd_requests_unpack_as_sent(server, client, schema):
    model_name = f"odd-{uuid.uuid4().hex[:6]}"
    train_and_register(client, model_name)
    endpoint = f"odd-{uuid.uuid4().hex[:6]}"
    entities = [{"entity_name": model_name, "entity_version": "1"}]
    for labels, words in [
        ({"table_name": "nope", "join_columns": ["id"]}, "catalog.schema.table"),
        ({"table_name": f"dev.{schema}.missing", "join_columns": ["id"]}, "missing"),
        ({"table_name": f"dev.{schema}.t", "join_columns": []}, "join_columns"),
        ({"table_name": f"dev.{schema}.t", "join_columns": ["label"]}, "label"),
        ({"table_name": f"dev.{schema}.t", "join_columns": ["id"], "extra": 1}, "extra"),
    ]:
        capture = {"catalog_name": "dev", "schema_name": schema, "table_name_prefix": "odd", "labels": labels}
        refused = call(server, "POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {"served_entities": entities, "auto_capture_config": capture}})
        assert refused.status_code in (400, 404), (labels, refused.text)
        assert words in refused.json()["message"], (words, refused.json())
    assert call(server, "GET", f"/api/2.0/serving-endpoints/{endpoint}").status_code == 404

    created = call(server, "POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {"served_entities": entities, "auto_capture_config": {"catalog_name": "dev", "schema_name": schema, "table_name_prefix": "odd"}}})
    assert created.status_code == 200, created.text
    hostile = "x'); DROP TABLE t; --"
    body = {
        "dataframe_split": {"columns": ["f0", "f1", "f2", "f3", "Note (free text)", "prediction"], "data": [[0.5, -1.25, 2.0, 0.0, hostile, "client's"], [1.5, 0.25, -2.0, 3.0, "ünïcode ✓", None]]},
        "client_request_id": "batch-7",
    }
    answer = call(server, "POST", f"/serving-endpoints/{endpoint}/invocations", json=body)
    assert answer.status_code == 200, answer.text
    failed = call(server, "POST", f"/serving-endpoints/{endpoint}/invocations", json={"dataframe_records": [{"f0": 1.0}]})
    assert failed.status_code == 400
    rows = predictions_of(server, f"dev.{schema}.odd_predictions", 2).sort_values("row_index")
    assert list(rows.note__free_text_) == [hostile, "ünïcode ✓"]
    assert [None if pd.isna(v) else v for v in rows.input_prediction] == ["client's", None]
    assert list(rows.client_request_id) == ["batch-7", "batch-7"]
    assert list(rows.f1) == [-1.25, 0.25]
    # The refused request is in the payload table, not among the predictions.
    time.sleep(3)
    assert len(table_frame(server, f"dev.{schema}.odd_predictions")) == 2
