"""`tarn serve` scores models exported to ONNX by scikit-learn (skl2onnx), LightGBM and XGBoost
(onnxmltools) exactly as the library that trained them predicts, through the payload formats of
MLflow's scoring server."""

import json
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests

import serving_models
from conftest import _free_port, _wait_for, tarn_bin

# Equal to the library's predictions within 1e-5 (relative or absolute): ONNX exports score
# in float32 where the libraries use float64.
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def probability_rows(predictions, key):
    """Class probabilities per row: the answer is MLflow's ZipMap form, {label: probability}."""
    return np.array([list(p[key].values()) if isinstance(p[key], dict) else p[key] for p in predictions])


@contextmanager
def tarn_serve(model_path, *extra):
    port = _free_port()
    log_path = Path(model_path).parent / f"serve-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [tarn_bin(), "serve", model_path, "--port", str(port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, TARN_LOG="warn"),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base + "/ping", process, log_path)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def invoke(base, body):
    return requests.post(base + "/invocations", data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=60)


def split_payload(rows):
    # pandas writes NaN as null, as the MLflow client does.
    return {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}


@pytest.mark.parametrize("name", [name for name, _ in serving_models.catalogue()])
def test_predictions_equal_the_library(name, tmp_path):
    trained = serving_models.build(name, str(tmp_path))
    with tarn_serve(trained.path) as base:
        response = invoke(base, split_payload(trained.rows))
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == len(trained.rows)
        if trained.labels is not None:
            label_key, probability_key = list(predictions[0])
            labels = [p[label_key] for p in predictions]
            assert labels == trained.labels.tolist()
            np.testing.assert_allclose(probability_rows(predictions, probability_key), trained.probabilities, **TOLERANCE)
        else:
            (value_key,) = predictions[0]
            values = np.array([p[value_key] for p in predictions], dtype=np.float64).reshape(-1)
            np.testing.assert_allclose(values, trained.values, **TOLERANCE)


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    return serving_models.build("random_forest_multiclass", str(tmp_path_factory.mktemp("forest")))


def test_every_payload_format_gives_the_same_predictions(forest):
    rows = forest.rows.head(5)
    with tarn_serve(forest.path) as base:
        split = invoke(base, split_payload(rows)).json()["predictions"]
        records = invoke(base, {"dataframe_records": rows.to_dict(orient="records")}).json()["predictions"]
        instances = invoke(base, {"instances": rows.to_dict(orient="records")}).json()["predictions"]
        assert split == records == instances
        # Tensors answer a dict of outputs, as MLflow does for tensor input.
        tensors = invoke(base, {"inputs": rows.to_numpy().tolist()}).json()["predictions"]
        assert tensors["output_label"] == [r["output_label"] for r in split]
        assert tensors["output_probability"] == [r["output_probability"] for r in split]
        listed = invoke(base, {"instances": rows.to_numpy().tolist(), "params": {}}).json()["predictions"]
        assert listed == tensors
        # Columns in another order are put in the signature's order.
        shuffled = rows[list(reversed(rows.columns))]
        assert invoke(base, split_payload(shuffled)).json()["predictions"] == split


def test_bad_requests_get_mlflow_errors(forest):
    rows = forest.rows.head(2)
    with tarn_serve(forest.path, "--max-rows", "100") as base:
        def error(body, raw=None, headers=None):
            response = requests.post(
                base + "/invocations",
                data=raw if raw is not None else json.dumps(body),
                headers=headers or {"Content-Type": "application/json"},
                timeout=60,
            )
            assert response.status_code == 400, response.text
            payload = response.json()
            assert payload["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE"), payload
            return payload["message"]

        assert "f3" in error({"dataframe_split": json.loads(rows.drop(columns=["f3"]).to_json(orient="split", index=False))})
        wrong_type = rows.astype(object)
        wrong_type.loc[0, "f2"] = "abc"
        assert "f2" in error({"dataframe_records": wrong_type.to_dict(orient="records")})
        assert "exactly one" in error({"dataframe_split": {}, "instances": []})
        assert "exactly one" in error({"rows": []})
        assert "JSON" in error(None, raw=b"{not json")
        assert "ragged" in error({"inputs": [[1.0] * 20, [1.0] * 19]})
        assert "shape" in error({"inputs": [[1.0] * 19]})
        many = {"inputs": [[0.0] * 20] * 101}
        assert "101 rows" in error(many)
        assert "no rows" in error({"dataframe_records": []})
        assert "content type" in error(None, raw=b"a,b\n1,2", headers={"Content-Type": "text/csv"})
        oversized = b'{"inputs": [' + b"0.0," * (5 * 1024 * 1024) + b"0.0]}"
        assert "larger than" in error(None, raw=oversized)
        # The server still answers.
        assert invoke(base, split_payload(rows)).status_code == 200


def test_unsupported_models_are_refused_at_load_naming_the_operator(tmp_path):
    import mlflow.onnx
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.svm import SVC

    frame, y = serving_models.dataset()
    model = SVC().fit(frame.to_numpy(np.float32)[:300], y[:300])
    path = str(tmp_path / "svc")
    mlflow.onnx.save_model(
        to_onnx(model, frame.to_numpy(np.float32)[:1]),
        path,
        signature=infer_signature(frame, y),
        pip_requirements=["onnx"],
    )
    result = subprocess.run(
        [tarn_bin(), "serve", path, "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SVMClassifier" in result.stderr, result.stderr


def test_an_endpoint_looks_up_the_features_its_model_was_trained_on(server, client, unique):
    """A model trained on a training set (feature lookups with defaults, an on-demand feature)
    is served by key: the endpoint looks up the online store, fills defaults for unknown keys,
    computes the on-demand feature, scores, and logs the request to its inference table."""
    import mlflow
    import mlflow.onnx
    import pandas as pd
    import pyarrow as pa
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from test_features import ARROW, create_feature_table, training_set
    from test_lakehouse import UC, arrow_body, call

    schema = f"serving_{unique('s').split('-')[1]}"
    assert call(server, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
    rng = np.random.default_rng(5)
    keys = 60
    features = pa.table({
        "customer_id": pa.array(range(keys), type=pa.int64()),
        "spend": pa.array(np.round(rng.normal(50, 20, keys), 3), type=pa.float64()),
        "visits": pa.array(rng.integers(0, 30, keys), type=pa.int64()),
    })
    table = f"dev.{schema}.customers"
    create_feature_table(server, table, features, primary_keys="customer_id")
    customer = rng.integers(0, keys + 10, 500)  # some keys the table lacks
    amount = np.round(rng.gamma(2.0, 20.0, 500), 2)
    spend = np.array([features["spend"][int(c)].as_py() if c < keys else 0.0 for c in customer])
    labels = pa.table({
        "customer_id": pa.array(customer, type=pa.int64()),
        "amount": pa.array(amount, type=pa.float64()),
        "label": pa.array((amount > spend).astype(np.int64)),
    })
    columns = [{"name": "customer_id", "type_text": "bigint"}, {"name": "amount", "type_text": "double"}, {"name": "label", "type_text": "bigint"}]
    assert call(server, "POST", f"{UC}/tables", json={"name": "labels", "catalog_name": "dev", "schema_name": schema, "columns": columns}).status_code == 200
    assert call(server, "POST", f"/api/2.0/tarn/tables/dev.{schema}.labels/data", data=arrow_body(labels), headers=ARROW).status_code == 200
    spec = {
        "label": {"table": f"dev.{schema}.labels"},
        "feature_lookups": [{"table_name": table, "feature_names": ["spend", "visits"], "default_values": {"spend": 0.0, "visits": 0}}],
        "on_demand_features": [{"name": "amount_per_visit", "expression": "amount / (visits + 1)"}],
        "exclude_columns": ["customer_id"],
    }
    training_set_id, rows = training_set(server, spec)
    frame = rows.to_pandas()
    x = frame.drop(columns=["label"]).astype(np.float64)
    model = LogisticRegression(max_iter=1000).fit(x.to_numpy(np.float32), frame["label"])

    mlflow.set_experiment(unique("serving-features"))
    with mlflow.start_run() as run:
        mlflow.set_tag("tarn.training_set_id", training_set_id)
        logged = mlflow.onnx.log_model(
            to_onnx(model, x.to_numpy(np.float32)[:1]),
            name="model",
            signature=infer_signature(x, model.predict(x.to_numpy(np.float32))),
            pip_requirements=["onnx"],
        )
    model_name = unique("by-key")
    client.create_registered_model(model_name)
    client.create_model_version(model_name, logged.model_uri, run_id=run.info.run_id)
    assert call(server, "POST", f"/api/2.0/tarn/feature-tables/{table}/publish", json={}).status_code == 200

    endpoint = unique("by-key")
    created = call(server, "POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {"served_entities": [{"entity_name": model_name, "entity_version": "1"}]}})
    assert created.status_code == 200, created.text
    request = [{"customer_id": 3, "amount": 12.5}, {"customer_id": 9999, "amount": 40.0}, {"customer_id": 17, "amount": 80.0}]
    answer = call(server, "POST", f"/serving-endpoints/{endpoint}/invocations", json={"dataframe_records": request, "return_features": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()

    # What the endpoint should have computed, by hand.
    expected_rows = []
    for row in request:
        key = row["customer_id"]
        spend_value = features["spend"][key].as_py() if key < keys else 0.0
        visits_value = features["visits"][key].as_py() if key < keys else 0
        expected_rows.append({"amount": row["amount"], "spend": spend_value, "visits": visits_value, "amount_per_visit": row["amount"] / (visits_value + 1)})
    for got, want in zip(body["features"], expected_rows):
        assert got["spend"] == pytest.approx(want["spend"]) and got["visits"] == want["visits"], (got, want)
        assert got["amount_per_visit"] == pytest.approx(want["amount_per_visit"])
    expected = pd.DataFrame(expected_rows)[list(x.columns)].to_numpy(np.float32)
    labels = [p["output_label"] for p in body["predictions"]]
    assert labels == model.predict(expected).tolist()
    np.testing.assert_allclose(probability_rows(body["predictions"], "output_probability"), model.predict_proba(expected), **TOLERANCE)

    # Without its keys the request is refused, and said why.
    missing = call(server, "POST", f"/serving-endpoints/{endpoint}/invocations", json={"dataframe_records": [{"amount": 1.0}]})
    assert missing.status_code == 400 and "customer_id" in missing.json()["message"], missing.text


def register_directory(client, unique, trained):
    """Registers a model directory as version 1 of a new model (from a run's artifacts)."""
    import mlflow

    mlflow.set_experiment(unique("serving"))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(trained.path, "model")
    name = unique(trained.name.replace("_", "-"))
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return name


def rows_table(server, unique, trained, table, properties=None):
    """A new schema with a table `table` of the trained rows plus an `id`; returns the schema."""
    from test_lakehouse import UC, call

    schema = f"serving_{unique('s').split('-')[1]}"
    assert call(server, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
    columns = [{"name": "id", "type_text": "bigint"}] + [{"name": c, "type_text": "double"} for c in trained.rows.columns]
    created = call(server, "POST", f"{UC}/tables", json={
        "name": table, "catalog_name": "dev", "schema_name": schema, "columns": columns, "properties": properties or {},
    })
    assert created.status_code == 200, created.text
    return schema


def with_ids(trained, start=0, stop=None):
    """The trained rows (with an `id`) as an Arrow table from pandas, schema metadata and all,
    as users write them."""
    import pyarrow as pa

    rows = trained.rows.assign(id=range(len(trained.rows)))[["id", *trained.rows.columns]]
    return pa.Table.from_pandas(rows.iloc[start:stop], preserve_index=False)


def test_tarn_score_writes_the_library_predictions_with_the_model_version(server, client, unique, tmp_path):
    """Batch scoring: `tarn score` reads a table, scores it with models:/NAME@ALIAS and writes a
    predictions table (read back here by the deltalake package) equal to the library's
    predictions, each row with the model's name and version; merging again on the key replaces
    rows instead of adding them."""
    import deltalake

    from test_lakehouse import UC, call, write

    trained = serving_models.build("gradient_boosting_binary", str(tmp_path))
    name = register_directory(client, unique, trained)
    client.set_registered_model_alias(name, "champion", "1")
    schema = rows_table(server, unique, trained, "customers")
    written = write(server, f"dev.{schema}.customers", with_ids(trained))
    assert written.status_code == 200, written.text

    output = f"dev.{schema}.predictions"
    args = ["--model", f"models:/{name}@champion", "--table", f"dev.{schema}.customers", "--output", output, "--keep", "id"]
    server.cli("score", *args)
    location = call(server, "GET", f"{UC}/tables/{output}").json()["storage_location"]
    scored = deltalake.DeltaTable(location).to_pandas().sort_values("id").reset_index(drop=True)
    assert list(scored.columns) == ["id", "output_label", "output_probability", "model_name", "model_version"]
    assert scored["output_label"].tolist() == trained.labels.tolist()
    np.testing.assert_allclose(np.stack(scored["output_probability"].to_numpy()), trained.probabilities, **TOLERANCE)
    assert set(scored["model_name"]) == {name} and set(scored["model_version"]) == {1}

    server.cli("score", *args, "--mode", "merge", "--merge-on", "id")
    assert len(deltalake.DeltaTable(location).to_pandas()) == len(trained.rows)


def test_streaming_scoring_scores_each_new_row_exactly_once(server, client, unique, tmp_path):
    """`tarn score --incremental` scores what the table gained since its last run (the change
    feed), recording how far it got in the same commit as the predictions; `--follow` keeps up
    with new versions until stopped. Across runs, stops and restarts every row is scored once."""
    import time

    import deltalake

    from test_lakehouse import UC, call, write

    trained = serving_models.build("random_forest_binary", str(tmp_path))
    name = register_directory(client, unique, trained)
    schema = rows_table(server, unique, trained, "events", {"delta.enableChangeDataFeed": "true"})
    source = f"dev.{schema}.events"

    def append(start, stop):
        written = write(server, source, with_ids(trained, start, stop))
        assert written.status_code == 200, written.text

    output = f"dev.{schema}.scored"
    args = ["--model", f"models:/{name}/1", "--table", source, "--output", output, "--keep", "id"]

    def scored():
        location = call(server, "GET", f"{UC}/tables/{output}").json()["storage_location"]
        return deltalake.DeltaTable(location).to_pandas().sort_values("id").reset_index(drop=True)

    append(0, 80)
    server.cli("score", *args, "--incremental")
    assert scored()["id"].tolist() == list(range(80))
    append(80, 120)
    append(120, 130)
    server.cli("score", *args, "--incremental")
    server.cli("score", *args, "--incremental")  # nothing new: nothing written
    assert scored()["id"].tolist() == list(range(130))

    # --follow picks up versions as they land, and stops cleanly on SIGTERM.
    command = [tarn_bin(), "score", *args, "--follow", "--poll-seconds", "0.2"]
    follower = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=server.cli_env()
    )
    try:
        append(130, 170)
        append(170, 200)
        deadline = time.monotonic() + 60
        while len(scored()) < 200:
            assert time.monotonic() < deadline and follower.poll() is None, follower.stdout.read() if follower.poll() is not None else "timed out"
            time.sleep(0.2)
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=30)
    final = scored()
    assert final["id"].tolist() == list(range(200)), "each row scored exactly once"
    assert final["output_label"].tolist() == trained.labels.tolist()
    np.testing.assert_allclose(np.stack(final["output_probability"].to_numpy()), trained.probabilities, **TOLERANCE)


def test_a_graceful_shutdown_writes_every_acknowledged_request_to_the_inference_table(tmp_path):
    """Requests answered just before SIGTERM are in the inference table after the server exits
    (the writer drains its buffer before the process ends); /metrics counts the rows, and shows
    concurrent requests scored together (a bounded wait of 20 ms to gather them)."""
    import deltalake
    import mlflow
    from concurrent.futures import ThreadPoolExecutor

    from conftest import start_tarn

    trained = serving_models.build("logistic_binary", str(tmp_path))
    # A server of its own (on a database of its own when the suite runs on PostgreSQL).
    shared = os.environ.get("TARN_TEST_DATABASE_URL")
    database_url = f"{shared.rsplit('/', 1)[0]}/tarn_shutdown_{os.getpid()}" if shared else None
    server, stop = start_tarn(
        data_dir=str(tmp_path / "tarn"), database_url=database_url, extra_args=["--serving-max-wait-us", "20000"]
    )
    stopped = False
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        os.environ["MLFLOW_TRACKING_TOKEN"] = server.admin_token
        own = mlflow.MlflowClient(tracking_uri=server.base)
        run = own.create_run(own.create_experiment("shutdown"))
        own.log_artifacts(run.info.run_id, trained.path, "model")
        own.create_registered_model("shutdown-model")
        own.create_model_version("shutdown-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        created = requests.post(f"{server.base}/api/2.0/serving-endpoints", headers=headers, json={
            "name": "shutdown", "config": {"served_entities": [{"entity_name": "shutdown-model", "entity_version": "1"}]}})
        assert created.status_code == 200, created.text
        body = split_payload(trained.rows.head(1))

        def send(_):
            return requests.post(f"{server.base}/serving-endpoints/shutdown/invocations", headers=headers, json=body, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, range(400)))
        assert statuses == [200] * 400
        metrics = requests.get(f"{server.base}/metrics", headers=headers, timeout=30).text
        assert 'tarn_inference_rows_total{workspace="dev",endpoint="shutdown",outcome="dropped_full"} 0' in metrics
        labels = '{workspace="dev",endpoint="shutdown",entity="shutdown-model-1",version="1"}'
        counted = {line.split(" ")[0]: int(line.split(" ")[1]) for line in metrics.splitlines() if labels in line}
        assert counted[f"tarn_serving_requests_total{labels}"] == 400, counted
        assert counted[f"tarn_serving_model_runs_total{labels}"] < 400, counted
        stop()
        stopped = True
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        if not stopped:
            stop()
    found = sorted((tmp_path / "tarn" / "lake" / "dev" / "inference").glob("shutdown_payload-*"))
    assert len(found) == 1, found
    table = deltalake.DeltaTable(str(found[0])).to_pyarrow_table()
    assert table.num_rows == 400
    assert set(table.column("status_code").to_pylist()) == {200}
