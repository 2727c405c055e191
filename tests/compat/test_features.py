"""The feature store against independent references: training sets built by tarn's
point-in-time join equal, row for row, what pandas' `merge_asof` and DuckDB's `ASOF JOIN`
compute on the same data (ties at the event time, duplicate label rows, late corrections,
unknown keys, null feature values, events before a key's first row, a lookback window), and a
recorded training set can be traced to the exact table versions it read."""

import uuid

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from test_lakehouse import UC, arrow_body, call, local_path

ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}
DAY_US = 86_400_000_000
START_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z


def micros(values):
    return pa.array(values, type=pa.timestamp("us", tz="UTC"))


def feature_rows(seed=7, keys=400):
    """Per key 0 to 8 rows at distinct random minutes over 30 days; ~5% null spend."""
    rng = np.random.default_rng(seed)
    ids, times, spend, visits = [], [], [], []
    for key in range(keys):
        count = int(rng.integers(0, 9))
        minutes = rng.choice(30 * 24 * 60, size=count, replace=False)
        for minute in sorted(minutes):
            ids.append(key)
            times.append(START_US + int(minute) * 60_000_000)
            spend.append(None if rng.random() < 0.05 else float(np.round(rng.normal(50, 20), 3)))
            visits.append(int(rng.integers(0, 100)))
    return pa.table({
        "customer_id": pa.array(ids, type=pa.int64()),
        "ts": micros(times),
        "spend": pa.array(spend, type=pa.float64()),
        "visits": pa.array(visits, type=pa.int64()),
    })


def label_rows(features, seed=11, count=3000):
    """Labels at random times, a quarter exactly at a feature row's time, some keys unknown to
    the feature table, some events before any feature row, and duplicated rows."""
    rng = np.random.default_rng(seed)
    feature_ids = features.column("customer_id").to_pylist()
    feature_times = features.column("ts").cast(pa.int64()).to_pylist()
    ids, times = [], []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.25 and feature_ids:
            pick = int(rng.integers(0, len(feature_ids)))
            ids.append(feature_ids[pick])
            times.append(feature_times[pick])
        elif kind < 0.30:
            ids.append(int(rng.integers(10_000, 10_100)))  # not in the feature table
            times.append(START_US + int(rng.integers(0, 30 * DAY_US)))
        else:
            ids.append(int(rng.integers(0, 420)))
            times.append(START_US + int(rng.integers(-3 * DAY_US, 34 * DAY_US)))
    duplicates = rng.choice(count, size=count // 20, replace=False)
    ids += [ids[i] for i in duplicates]
    times += [times[i] for i in duplicates]
    return pa.table({
        "row_id": pa.array(range(len(ids)), type=pa.int64()),
        "customer_id": pa.array(ids, type=pa.int64()),
        "event_ts": micros(times),
        "label": pa.array(rng.random(len(ids)) < 0.3),
    })


@pytest.fixture
def schema(server):
    name = f"features_{uuid.uuid4().hex[:8]}"
    created = call(server, "POST", f"{UC}/schemas", json={"name": name, "catalog_name": "dev"})
    assert created.status_code == 200, created.text
    return name


def create_feature_table(server, name, rows, **params):
    response = call(
        server,
        "POST",
        "/api/2.0/tarn/feature-tables",
        params={"name": name, **params},
        data=arrow_body(rows),
        headers=ARROW,
    )
    assert response.status_code == 200, response.text
    return response.json()


def create_label_table(server, schema, rows):
    columns = [
        {"name": "row_id", "type_text": "bigint"},
        {"name": "customer_id", "type_text": "bigint"},
        {"name": "event_ts", "type_text": "timestamp"},
        {"name": "label", "type_text": "boolean"},
    ]
    created = call(server, "POST", f"{UC}/tables", json={"name": "labels", "catalog_name": "dev", "schema_name": schema, "columns": columns})
    assert created.status_code == 200, created.text
    written = call(server, "POST", f"/api/2.0/tarn/tables/dev.{schema}.labels/data", data=arrow_body(rows), headers=ARROW)
    assert written.status_code == 200, written.text


def training_set(server, spec, **extra):
    response = call(server, "POST", "/api/2.0/tarn/training-sets", json={**spec, **extra})
    assert response.status_code == 200, response.text
    return response.headers["x-tarn-training-set-id"], pa.ipc.open_stream(response.content).read_all()


def pandas_reference(labels, features, lookback, default_visits):
    """`merge_asof` backwards, exact matches allowed, within the lookback; defaults where
    nothing matched; label order restored."""
    left = labels.to_pandas().sort_values("event_ts", kind="stable")
    right = features.to_pandas().rename(columns={"ts": "feature_ts"}).sort_values("feature_ts")
    joined = pd.merge_asof(
        left,
        right,
        left_on="event_ts",
        right_on="feature_ts",
        by="customer_id",
        direction="backward",
        allow_exact_matches=True,
        tolerance=lookback,
    ).sort_values("row_id")
    unmatched = joined["feature_ts"].isna()
    joined["visits"] = joined["visits"].astype("Float64").where(~unmatched, default_visits)
    return joined.rename(columns={"spend": "spend_now"})[["row_id", "spend_now", "visits"]].reset_index(drop=True)


def duckdb_reference(labels, features, lookback_days, default_visits):
    con = duckdb.connect()
    con.register("labels", labels)
    con.register("features", features)
    return con.execute(
        f"""
        SELECT l.row_id,
               CASE WHEN l.event_ts - f.ts <= INTERVAL {lookback_days} DAY THEN f.spend END AS spend_now,
               CASE WHEN l.event_ts - f.ts <= INTERVAL {lookback_days} DAY THEN f.visits
                    ELSE {default_visits} END AS visits
        FROM labels l ASOF LEFT JOIN features f
          ON l.customer_id = f.customer_id AND l.event_ts >= f.ts
        ORDER BY l.row_id
        """
    ).df()


def as_frame(table):
    frame = table.select(["row_id", "spend_now", "visits"]).to_pandas()
    frame["visits"] = frame["visits"].astype("Float64")
    return frame.sort_values("row_id").reset_index(drop=True)


def assert_same_rows(ours, reference, what):
    reference = reference.copy()
    reference["visits"] = reference["visits"].astype("Float64")
    reference["spend_now"] = reference["spend_now"].astype("float64")
    pd.testing.assert_frame_equal(ours, reference, check_dtype=False, obj=what)


def test_training_sets_equal_merge_asof_and_duckdb_asof_join(server, schema):
    features = feature_rows()
    name = f"dev.{schema}.customer_spend"
    created = create_feature_table(server, name, features, primary_keys="customer_id", timestamp_keys="ts", description="Spend per customer")
    assert created["primary_keys"] == ["customer_id"]
    assert created["timestamp_keys"] == ["ts"]
    assert [f["name"] for f in created["features"]] == ["spend", "visits"]

    # Late corrections: new values for existing (key, time) pairs, one new row.
    corrections = features.slice(0, 25)
    corrections = corrections.set_column(2, "spend", pa.array([1000.0 + i for i in range(25)]))
    merged = call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/data", data=arrow_body(corrections), headers=ARROW)
    assert merged.status_code == 200, merged.text
    assert merged.json()["num_updated_rows"] == 25
    corrected = pa.concat_tables([corrections, features.slice(25)])

    labels = label_rows(corrected)
    create_label_table(server, schema, labels)
    spec = {
        "label": {"table": f"dev.{schema}.labels"},
        "feature_lookups": [{
            "table_name": name,
            "lookup_key": ["customer_id"],
            "timestamp_lookup_key": "event_ts",
            "lookback_window": "3d",
            "feature_names": ["spend", "visits"],
            "rename_outputs": {"spend": "spend_now"},
            "default_values": {"visits": -1},
        }],
        "on_demand_features": [{"name": "spend_x2", "expression": "spend_now * 2"}],
    }
    training_set_id, ours = training_set(server, spec)
    assert ours.num_rows == labels.num_rows, "every label row once"
    assert ours.column("row_id").to_pylist() == labels.column("row_id").to_pylist(), "label order kept"
    assert ours.column_names == ["row_id", "customer_id", "event_ts", "label", "spend_now", "visits", "spend_x2"]

    frame = as_frame(ours)
    assert_same_rows(frame, pandas_reference(labels, corrected, pd.Timedelta("3D"), -1), "pandas merge_asof")
    assert_same_rows(frame, duckdb_reference(labels, corrected, 3, -1), "DuckDB ASOF JOIN")
    doubled = ours.column("spend_x2").to_pylist()
    assert doubled == [None if s is None else s * 2 for s in ours.column("spend_now").to_pylist()]
    # The cases the data was made to hold are all there.
    spend = ours.column("spend_now").to_pylist()
    assert spend.count(None) > 100
    assert sum(1 for s in spend if s is not None and s >= 1000) > 0, "corrections are used"

    # The record pins the versions read; the feature table at that version, read by deltalake,
    # gives the same training set again.
    record = call(server, "GET", f"/api/2.0/tarn/training-sets/{training_set_id}").json()["training_set"]
    versions = {t["name"]: t["version"] for t in record["tables_read"]}
    assert versions[name] == 2
    assert record["spec"]["feature_lookups"][0]["version"] == 2
    assert record["num_rows"] == labels.num_rows
    import deltalake

    at_version = deltalake.DeltaTable(local_path(created), version=versions[name]).to_pyarrow_table()
    at_version = at_version.select(["customer_id", "ts", "spend", "visits"])
    assert_same_rows(frame, duckdb_reference(labels, at_version, 3, -1), "deltalake at the recorded version")

    # A later correction changes fresh builds, not the recorded set's rows.
    later = features.slice(0, 1).set_column(2, "spend", pa.array([-5.0]))
    assert call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/data", data=arrow_body(later), headers=ARROW).status_code == 200
    again = call(server, "GET", f"/api/2.0/tarn/training-sets/{training_set_id}/data", params={"format": "parquet"})
    assert again.status_code == 200, again.text
    assert again.headers["content-type"] == "application/vnd.apache.parquet"
    rebuilt = pl.read_parquet(again.content).to_arrow()
    assert rebuilt.column("spend_now").to_pylist() == ours.column("spend_now").to_pylist()


def test_training_sets_from_a_query_written_to_a_table(server, schema):
    features = feature_rows(seed=3, keys=50)
    name = f"dev.{schema}.spend"
    create_feature_table(server, name, features, primary_keys="customer_id", timestamp_keys="ts")
    labels = label_rows(features, seed=5, count=400)
    create_label_table(server, schema, labels)
    spec = {
        "label": {"query": f"SELECT row_id, customer_id, event_ts, label FROM dev.{schema}.labels WHERE label"},
        "feature_lookups": [{"table_name": name, "timestamp_lookup_key": "event_ts", "feature_names": ["spend"]}],
        "exclude_columns": ["customer_id"],
    }
    response = call(server, "POST", "/api/2.0/tarn/training-sets", json={**spec, "output_table": f"dev.{schema}.train"})
    assert response.status_code == 200, response.text
    record = response.json()["training_set"]
    assert record["output_table"]["name"] == f"dev.{schema}.train"
    assert record["spec"]["label"]["versions"] == {f"dev.{schema}.labels": 1}
    table = call(server, "GET", f"{UC}/tables/dev.{schema}.train").json()
    import deltalake

    written = deltalake.DeltaTable(local_path(table)).to_pyarrow_table()
    positives = labels.filter(labels.column("label"))
    assert sorted(written.column("row_id").to_pylist()) == sorted(positives.column("row_id").to_pylist())
    assert "customer_id" not in written.column_names
    reference = duckdb_reference(positives, features.select(["customer_id", "ts", "spend", "visits"]), 100_000, 0)
    got = written.to_pandas().sort_values("row_id").reset_index(drop=True)
    assert got["spend"].tolist() == pytest.approx(reference["spend_now"].tolist(), nan_ok=True)
    lineage = call(server, "GET", "/api/2.0/tarn/lineage", params={"table_name": f"dev.{schema}.train", "direction": "upstream"}).json()
    upstream = sorted(n["name"] for n in lineage["nodes"] if n["id"] != lineage["root"])
    assert upstream == [f"dev.{schema}.labels", name]


def test_feature_tables_are_searched_and_bad_input_changes_nothing(server, schema):
    features = feature_rows(seed=1, keys=10)
    name = f"dev.{schema}.visits"
    create_feature_table(server, name, features, primary_keys="customer_id", timestamp_keys="ts", description="Visits per customer")
    by_query = call(server, "POST", "/api/2.0/tarn/feature-tables", json={
        "name": f"dev.{schema}.latest_visits",
        "primary_keys": ["customer_id"],
        "query": f"SELECT customer_id, max(visits) AS max_visits FROM {name} GROUP BY customer_id",
    })
    assert by_query.status_code == 200, by_query.text
    assert by_query.json()["source_tables"] == [name]

    found = call(server, "GET", "/api/2.0/tarn/feature-tables", params={"search": "VISITS PER"}).json()["feature_tables"]
    assert [t["name"] for t in found] == [name]
    found = call(server, "GET", "/api/2.0/tarn/feature-tables", params={"search": "max_visits"}).json()["feature_tables"]
    assert [t["name"] for t in found] == [f"dev.{schema}.latest_visits"]

    def refused(method, path, status, code, text, **kwargs):
        response = call(server, method, path, **kwargs)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["error_code"] == code, body
        assert text in body["message"], body

    duplicate = pa.concat_tables([features.slice(0, 1), features.slice(0, 1)])
    refused("POST", f"/api/2.0/tarn/feature-tables/{name}/data", 400, "INVALID_PARAMETER_VALUE", "more than one row", data=arrow_body(duplicate), headers=ARROW)
    refused("POST", "/api/2.0/tarn/feature-tables", 400, "INVALID_PARAMETER_VALUE", "Primary key 'nope'",
            params={"name": f"dev.{schema}.bad", "primary_keys": "nope"}, data=arrow_body(features), headers=ARROW)
    refused("POST", "/api/2.0/tarn/feature-tables", 400, "INVALID_PARAMETER_VALUE", "Invalid name",
            json={"name": f"dev.{schema}.x'; DROP TABLE t; --", "primary_keys": ["customer_id"], "columns": [{"name": "customer_id", "type_text": "bigint"}, {"name": "f", "type_text": "double"}]})
    refused("POST", "/api/2.0/tarn/feature-tables", 400, "INVALID_PARAMETER_VALUE", "would change the lakehouse",
            json={"name": f"dev.{schema}.q", "primary_keys": ["customer_id"], "query": f"DROP TABLE {name}"})
    refused("POST", "/api/2.0/tarn/training-sets", 400, "INVALID_PARAMETER_VALUE", "lookback_window",
            json={"label": {"table": name}, "feature_lookups": [{"table_name": name, "timestamp_lookup_key": "ts", "lookback_window": "soon"}]})
    refused("POST", "/api/2.0/tarn/training-sets", 400, "INVALID_PARAMETER_VALUE", "is a key of",
            json={"label": {"table": name}, "feature_lookups": [{"table_name": name, "timestamp_lookup_key": "ts", "feature_names": ["customer_id"]}]})
    plain = call(server, "POST", f"{UC}/tables", json={"name": "plain", "catalog_name": "dev", "schema_name": schema, "columns": [{"name": "customer_id", "type_text": "bigint"}]})
    assert plain.status_code == 200, plain.text
    refused("POST", "/api/2.0/tarn/training-sets", 400, "INVALID_PARAMETER_VALUE", "is not a feature table",
            json={"label": {"table": name}, "feature_lookups": [{"table_name": f"dev.{schema}.plain"}]})
    refused("GET", f"/api/2.0/tarn/feature-tables/dev.{schema}.missing", 404, "RESOURCE_DOES_NOT_EXIST", "missing")
    refused("GET", "/api/2.0/tarn/training-sets/nope", 404, "RESOURCE_DOES_NOT_EXIST", "nope")
    # Nothing above changed the feature table or made another.
    history = call(server, "GET", f"/api/2.0/tarn/tables/{name}/history").json()
    assert [c["version"] for c in history["history"]] == [1, 0]
    tables = call(server, "GET", f"{UC}/tables", params={"catalog_name": "dev", "schema_name": schema}).json()["tables"]
    assert sorted(t["name"] for t in tables) == ["latest_visits", "plain", "visits"]

    # A member without grants finds the feature tables of the workspace (discovery) but may
    # not read their rows.
    token = server.create_user(f"fs_{uuid.uuid4().hex[:6]}", "pw-123456")
    seen = call(server, "GET", "/api/2.0/tarn/feature-tables", token=token, params={"search": schema}).json()["feature_tables"]
    assert name in [t["name"] for t in seen]
    refused("POST", "/api/2.0/tarn/training-sets", 403, "PERMISSION_DENIED", "SELECT", token=token,
            json={"label": {"table": name}, "feature_lookups": []})


def test_online_features_follow_the_table_and_its_grants(server, schema):
    """A continuously published table is republished by the server soon after a write, and a
    revoked grant stops lookups at once."""
    import time

    name = f"dev.{schema}.spend"
    create_feature_table(server, name, feature_rows(seed=3, keys=10), primary_keys="customer_id", timestamp_keys="ts")
    published = call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/publish", json={"refresh": "continuous"})
    assert published.status_code == 200, published.text
    assert (published.json()["mode"], published.json()["refresh"]) == ("full", "continuous")
    online = call(server, "GET", f"/api/2.0/tarn/feature-tables/{name}").json()["online"]
    assert (online["refresh"], online["refresh_error"]) == ("continuous", None)

    def lookup(token=None):
        return call(server, "POST", "/api/2.0/tarn/online/lookup", token=token, json={"table_name": name, "keys": [{"customer_id": 3}]})

    late = pa.table({
        "customer_id": pa.array([3], type=pa.int64()),
        "ts": micros([START_US + 40 * DAY_US]),
        "spend": pa.array([12345.0]),
        "visits": pa.array([7], type=pa.int64()),
    })
    written = call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/data", data=arrow_body(late), headers=ARROW)
    assert written.status_code == 200, written.text
    deadline = time.monotonic() + 30
    while call(server, "GET", f"/api/2.0/tarn/feature-tables/{name}").json()["online"]["published_version"] <= online["published_version"]:
        assert time.monotonic() < deadline, "the server did not republish the new version"
        time.sleep(0.2)
    found = lookup().json()["results"][0]
    assert (found["status"], found["values"]["spend"]) == ("PRESENT", 12345.0)
    # The CLI shows the same freshness.
    state = call(server, "GET", f"/api/2.0/tarn/feature-tables/{name}").json()["online"]
    keys = len(set(feature_rows(seed=3, keys=10).column("customer_id").to_pylist()) | {3})
    shown = server.cli("features", "show", name).stdout
    assert f"online         version {state['published_version']} ({keys} keys) in the sqlite store, published " in shown, shown
    assert "refresh        continuous" in shown, shown

    # A refresh policy the server does not know is refused and leaves the publication alone.
    bad = call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/publish", json={"refresh": "hourly-ish"})
    assert bad.status_code == 400 and "Invalid refresh" in bad.json()["message"], bad.text
    assert call(server, "GET", f"/api/2.0/tarn/feature-tables/{name}").json()["online"]["refresh"] == "continuous"

    reader = f"online_{uuid.uuid4().hex[:6]}"
    token = server.create_user(reader, "pw-123456")
    assert lookup(token).status_code == 403
    grant = call(server, "PATCH", f"{UC}/permissions/table/{name}", json={"changes": [{"principal": reader, "add": ["SELECT"]}]})
    assert grant.status_code == 200, grant.text
    assert [lookup(token).status_code for _ in range(3)] == [200, 200, 200]
    revoke = call(server, "PATCH", f"{UC}/permissions/table/{name}", json={"changes": [{"principal": reader, "remove": ["SELECT"]}]})
    assert revoke.status_code == 200, revoke.text
    refused = lookup(token)
    assert refused.status_code == 403 and "SELECT" in refused.json()["message"], refused.text


def test_a_model_version_knows_its_features_and_exact_training_data(server, schema, client, unique):
    """Train on a training set with the stock mlflow client, tag the run with the set's id, and
    register: the version carries the tag, the feature table's lineage reaches the version, and
    the recorded set rebuilds the exact rows trained on."""
    import mlflow

    features = feature_rows(seed=21, keys=30)
    name = f"dev.{schema}.spend"
    create_feature_table(server, name, features, primary_keys="customer_id", timestamp_keys="ts")
    labels = label_rows(features, seed=22, count=200)
    create_label_table(server, schema, labels)
    spec = {
        "label": {"table": f"dev.{schema}.labels"},
        "feature_lookups": [{"table_name": name, "timestamp_lookup_key": "event_ts", "lookback_window": "3d", "default_values": {"spend": 0.0, "visits": 0}}],
        "exclude_columns": ["row_id", "customer_id", "event_ts"],
    }
    training_set_id, rows = training_set(server, spec)
    frame = rows.to_pandas()

    mlflow.set_experiment(unique("features"))
    with mlflow.start_run() as run:
        mlflow.set_tag("tarn.training_set_id", training_set_id)
        # A model anyone can check: the mean spend of positive and negative labels.
        model = {str(k): float(v) for k, v in frame.groupby("label")["spend"].mean().items()}
        mlflow.log_dict(model, "model/model.json")
    model_name = unique("spend-model")
    client.create_registered_model(model_name)
    version = client.create_model_version(model_name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert version.tags["tarn.training_set_id"] == training_set_id

    # The version's training data: the recorded set, its tables at their versions.
    record = call(server, "GET", f"/api/2.0/tarn/training-sets/{version.tags['tarn.training_set_id']}").json()["training_set"]
    assert {t["name"]: t["version"] for t in record["tables_read"]} == {name: 1, f"dev.{schema}.labels": 1}
    again = call(server, "GET", f"/api/2.0/tarn/training-sets/{training_set_id}/data")
    assert pa.ipc.open_stream(again.content).read_all().equals(rows)

    # Lineage: feature table -> model version.
    graph = call(server, "GET", "/api/2.0/tarn/lineage", params={"table_name": name, "direction": "downstream"}).json()
    versions = [n for n in graph["nodes"] if n["type"] == "MODEL_VERSION"]
    assert [n["name"] for n in versions] == [f"dev/{model_name}/1"]
    edge = next(e for e in graph["edges"] if e["target"] == versions[0]["id"])
    assert (edge["source_version"], edge["last_operation"]) == (1, "CREATE MODEL VERSION")

    # A tag naming a training set the workspace lacks is refused; nothing is registered.
    with mlflow.start_run() as other:
        mlflow.set_tag("tarn.training_set_id", "no-such-set")
        mlflow.log_dict(model, "model/model.json")
    with pytest.raises(mlflow.exceptions.MlflowException, match="no-such-set"):
        client.create_model_version(model_name, f"runs:/{other.info.run_id}/model", run_id=other.info.run_id)
    assert [v.version for v in client.search_model_versions(f"name = '{model_name}'")] == ["1"]
