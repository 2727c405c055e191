"""Defects found by trying tarn as an attacker and as a user of the real clients would, each
driven from outside on the backend the suite runs on (SQLite, or PostgreSQL when
TARN_TEST_DATABASE_URL is set): expressions deep enough to overflow a stack, numbers that must
come back bit for bit, search filters that tie up the database, a feature publication taken
over by a reader, keep-alive connections after early errors, server paths in error messages,
replicas racing at first start and concurrent appends to one table."""

import http.client
import math
import os
import random
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from conftest import _psql, start_tarn
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from test_features import create_feature_table, feature_rows
from test_lakehouse import UC, call, payments, payments_table, schema, write  # noqa: F401 (schema is a fixture)
from test_sql import STATEMENTS


def alive(server):
    assert requests.get(server.base + "/health", timeout=5).text == "OK"


def statement_error(server, statement):
    """The error a statement ends with (the API answers 200 with a FAILED status)."""
    response = call(server, "POST", STATEMENTS, json={"statement": statement, "warehouse_id": "any"})
    assert response.status_code == 200, response.text
    status = response.json()["status"]
    assert status["state"] == "FAILED", status
    return status["error"]


def chain(term, op, count):
    return op.join([term] * count)


def test_deep_expressions_are_refused_and_the_server_stays_up(server, schema):
    payments_table(server, schema)
    table = f"dev.{schema}.payments"
    assert write(server, table, payments([1, 2], [10.0, 20.0], ["FR", "DE"])).status_code == 200
    deep = [
        "SELECT " + chain("1", "+", 100_000),
        f"SELECT * FROM {table} WHERE " + chain("amount > 0", " AND ", 60_000),
        "SELECT " + "(" * 100_000 + "1" + ")" * 100_000,
        "SELECT " + "- " * 100_000 + "1",
        "SELECT " + "abs(" * 20_000 + "1" + ")" * 20_000,
    ]
    for statement in deep:
        error = statement_error(server, statement)
        assert error["error_code"] == "INVALID_PARAMETER_VALUE", error
        assert "nests too deeply" in error["message"] or "recursion limit" in error["message"], error
        alive(server)
    # The chain that used to abort the server (~260 terms) is answered; so are a 500-way OR
    # (1,000 levels, the deepest accepted) and a wide IN list.
    sum_300 = call(server, "POST", STATEMENTS, json={"statement": "SELECT " + chain("1", "+", 300) + " AS n", "warehouse_id": "any"}).json()
    assert sum_300["result"]["data_array"] == [["300"]], sum_300
    ors = " OR ".join(f"id = {i}" for i in range(500))
    fine = call(server, "POST", STATEMENTS, json={"statement": f"SELECT count(*) AS n FROM {table} WHERE {ors}", "warehouse_id": "any"}).json()
    assert fine["status"]["state"] == "SUCCEEDED", fine
    assert fine["result"]["data_array"] == [["2"]]
    listed = ", ".join(str(i) for i in range(20_000))
    wide = call(server, "POST", STATEMENTS, json={"statement": f"SELECT count(*) FROM {table} WHERE id IN ({listed})", "warehouse_id": "any"}).json()
    assert wide["status"]["state"] == "SUCCEEDED", wide

    # A table-API delete predicate.
    deleted = call(server, "POST", f"/api/2.0/tarn/tables/{table}/delete", json={"predicate": chain("id > 0", " AND ", 100_000)})
    assert deleted.status_code == 400 and deleted.json()["error_code"] == "INVALID_PARAMETER_VALUE", deleted.text
    alive(server)
    # A feature table made from a query.
    made = call(server, "POST", "/api/2.0/tarn/feature-tables", json={
        "name": f"dev.{schema}.deep", "primary_keys": ["id"],
        "query": f"SELECT id, {chain('amount', '+', 100_000)} AS f FROM {table}",
    })
    assert made.status_code == 400 and "nests too deeply" in made.json()["message"], made.text[:500]
    alive(server)
    # An on-demand feature of a training set.
    features = f"dev.{schema}.spend"
    create_feature_table(server, features, feature_rows(seed=5, keys=5), primary_keys="customer_id", timestamp_keys="ts")
    def training_set(terms):
        return call(server, "POST", "/api/2.0/tarn/training-sets", json={
            "label": {"query": f"SELECT customer_id, ts AS event_ts FROM {features}"},
            "feature_lookups": [{"table_name": features, "lookup_key": ["customer_id"], "timestamp_lookup_key": "event_ts", "feature_names": ["spend"]}],
            "on_demand_features": [{"name": "f", "expression": chain("spend", "+", terms)}],
        })

    refused = training_set(100_000)
    assert refused.status_code == 400 and "nests too deeply" in refused.json()["message"], refused.text[:500]
    alive(server)
    # 400 terms, which used to abort the server, are computed.
    assert training_set(400).status_code == 200
    # Nothing was written by any of them.
    assert call(server, "GET", f"{UC}/tables/dev.{schema}.deep").status_code == 404
    history = call(server, "GET", f"/api/2.0/tarn/tables/{table}/history").json()["history"]
    assert [c["operation"] for c in history].count("DELETE") == 0


def random_doubles(count, seed=23):
    """Doubles of every kind: random bit patterns (subnormals included), huge, tiny, negative zero."""
    rng = random.Random(seed)
    values = [0.36177935915167525, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308, 1e-300, 0.1, 1 / 3]
    while len(values) < count:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(value):
            values.append(value)
    return values


def bits(value):
    return struct.pack("<d", value)


def test_numbers_come_back_bit_for_bit(server, client, unique):
    values = random_doubles(400)
    experiment_id = client.create_experiment(unique())
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    for start in range(0, len(values), 100):
        batch = [Metric("m", v, 1_700_000_000_000 + i, i) for i, v in enumerate(values[start:start + 100], start)]
        client.log_batch(run_id, metrics=batch)
    for i, v in enumerate(values[:50]):
        client.log_metric(run_id, "single", v, timestamp=1_700_000_000_000, step=i)
    history = sorted(client.get_metric_history(run_id, "m"), key=lambda m: m.step)
    assert [bits(m.value) for m in history] == [bits(v) for v in values]
    single = sorted(client.get_metric_history(run_id, "single"), key=lambda m: m.step)
    assert [bits(m.value) for m in single] == [bits(v) for v in values[:50]]
    latest = client.get_run(run_id).data.metrics
    assert bits(latest["m"]) == bits(values[-1]) and bits(latest["single"]) == bits(values[49])
    # A filter on the exact value finds the run.
    client.log_metric(run_id, "needle", 0.36177935915167525)
    found = client.search_runs([experiment_id], "metrics.needle = 0.36177935915167525")
    assert [r.info.run_id for r in found] == [run_id]

    # Out-of-range integers are refused, not clamped, and store nothing.
    for bad in ({"timestamp": 2**63}, {"step": 2**63}, {"timestamp": -(2**63) - 1}, {"step": 1e300}, {"timestamp": "9223372036854775808"}):
        answer = call(server, "POST", "/api/2.0/mlflow/runs/log-metric", json={"run_id": run_id, "key": "bad", "value": 1.0, **{"timestamp": 1, "step": 0, **bad}})
        assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", (bad, answer.text)
        batch = call(server, "POST", "/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": [{"key": "bad", "value": 1.0, **{"timestamp": 1, "step": 0, **bad}}]})
        assert batch.status_code == 400, (bad, batch.text)
    assert "bad" not in client.get_run(run_id).data.metrics
    edge = call(server, "POST", "/api/2.0/mlflow/runs/log-metric", json={"run_id": run_id, "key": "edge", "value": 1.0, "timestamp": 2**63 - 1, "step": -(2**63)})
    assert edge.status_code == 200, edge.text
    (point,) = client.get_metric_history(run_id, "edge")
    assert (point.timestamp, point.step) == (2**63 - 1, -(2**63))


def test_search_filters_are_bounded(server, client, unique):
    experiment_id = client.create_experiment(unique())
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "m0", 1.0)
    at_limit = " AND ".join(f"metrics.m{i % 5} > -1" for i in range(50))
    started = time.monotonic()
    answer = call(server, "POST", "/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id], "filter": at_limit})
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < 20
    for clauses in (51, 500, 2000):
        text = " AND ".join(f"metrics.m{i} > 0" for i in range(clauses))
        refused = call(server, "POST", "/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id], "filter": text})
        assert refused.status_code == 400, refused.text[:300]
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "too many clauses" in refused.json()["message"]
    with pytest.raises(MlflowException) as error:
        client.search_model_versions(" AND ".join(f"tags.t{i} = 'x'" for i in range(51)))
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"
    alive(server)


def test_publishing_needs_modify_and_settings_need_ownership(server, schema):
    name = f"dev.{schema}.spend"
    create_feature_table(server, name, feature_rows(seed=9, keys=8), primary_keys="customer_id", timestamp_keys="ts")
    published = call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/publish", json={"ttl": "3d", "refresh": "continuous"})
    assert published.status_code == 200, published.text

    reader = f"reader_{uuid.uuid4().hex[:6]}"
    writer = f"writer_{uuid.uuid4().hex[:6]}"
    reader_token = server.create_user(reader, "pw-reader-1")
    writer_token = server.create_user(writer, "pw-writer-1")
    for principal, privileges in ((reader, ["SELECT"]), (writer, ["SELECT", "MODIFY"])):
        granted = call(server, "PATCH", f"{UC}/permissions/table/{name}", json={"changes": [{"principal": principal, "add": privileges}]})
        assert granted.status_code == 200, granted.text

    def publish(token, **body):
        return call(server, "POST", f"/api/2.0/tarn/feature-tables/{name}/publish", token=token, json=body)

    def online():
        return call(server, "GET", f"/api/2.0/tarn/feature-tables/{name}").json()["online"]

    before = online()
    for body in ({}, {"ttl": "1s"}, {"refresh": "manual"}):
        refused = publish(reader_token, **body)
        assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED", (body, refused.text)
    for body in ({"ttl": "1s"}, {"refresh": "manual"}, {"ttl": "3d", "refresh": "1h"}):
        refused = publish(writer_token, **body)
        assert refused.status_code == 403 and "owner" in refused.json()["message"], (body, refused.text)
    after = online()
    assert (after["published_by"], after["refresh"], after["published_at"]) == (before["published_by"], "continuous", before["published_at"])
    # MODIFY publishes with the table's settings (or the same ones spelt out).
    assert publish(writer_token).status_code == 200
    assert publish(writer_token, ttl="3d", refresh="continuous").status_code == 200
    assert online()["refresh"] == "continuous"
    audit = call(server, "GET", "/api/2.0/tarn/audit", params={"entity": "feature_table", "object": name}).json()["events"]
    audit = [e for e in audit if e["action"] == "published"]
    assert [(e["action"], e["actor"]) for e in audit] == [("published", "admin"), ("published", writer), ("published", writer)]
    assert audit[0]["data"]["refresh"] == "continuous" and audit[0]["data"]["ttl"] == "3d"


def test_keep_alive_connections_survive_early_errors(server):
    """Requests answered before their body is read (a bad credential, a body over the limit)
    never cost the next request on the same keep-alive connection its answer."""
    host = urlparse(server.base)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    body = b"x" * (256 * 1024)
    good = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": "application/json"}
    answered = 0
    for i in range(200):
        headers = {"Authorization": "Bearer tarn_wrong", "Content-Type": "application/json"} if i % 2 == 0 else good
        connection.request("POST", "/api/2.0/mlflow/runs/log-batch", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status in (400, 401), response.status
        connection.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1", headers=good)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        answered += 1
    connection.close()
    assert answered == 200


def test_error_messages_hold_no_server_paths(server, client, unique):
    experiment_id = client.create_experiment(unique())
    run_id = client.create_run(experiment_id).info.run_id
    base = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts"
    long_name = call(server, "PUT", f"{base}/{'a' * 300}.txt", data=b"x")
    assert long_name.status_code == 400, long_name.text
    assert long_name.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    missing = call(server, "GET", f"{base}/nothing/here.txt")
    assert missing.status_code == 404, missing.text
    for answer in (long_name, missing):
        assert server.data_dir not in answer.text and "/tmp" not in answer.text, answer.text
    # Nothing was stored under the long name.
    assert not any(len(name) > 255 for _, _, files in os.walk(server.data_dir) for name in files)


def test_replicas_started_together_on_a_fresh_database(tmp_path):
    """Two servers starting at once on one fresh database both come up, and the admin token
    given to both works on each."""
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    for attempt in range(4):
        token = "tarn_race_" + uuid.uuid4().hex
        data_dir = str(tmp_path / f"data{attempt}")
        url = None
        if database_url:
            url = f"{database_url}_race"
            admin_url = url.rsplit("/", 1)[0] + "/postgres"
            name = url.rsplit("/", 1)[1]
            _psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            _psql(admin_url, f"CREATE DATABASE {name}")
        started = []

        def start():
            started.append(start_tarn(database_url=url, data_dir=data_dir, fresh_database=False, admin_token=token))

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert len(started) == 2, f"attempt {attempt}: a replica failed to start"
            for replica, _ in started:
                answer = requests.get(f"{replica.base}/api/2.0/mlflow/experiments/search?max_results=5", headers={"Authorization": f"Bearer {token}"}, timeout=10)
                assert answer.status_code == 200, answer.text
        finally:
            for _, stop in started:
                stop(drop_database=False)
    if database_url:
        _psql(database_url.rsplit("/", 1)[0] + "/postgres", f"DROP DATABASE IF EXISTS {database_url.rsplit('/', 1)[1]}_race WITH (FORCE)")


def test_concurrent_inserts_into_one_table_all_land(server, schema):
    payments_table(server, schema)
    table = f"dev.{schema}.payments"

    def insert(client_index):
        errors = []
        for i in range(25):
            row_id = client_index * 1000 + i
            answer = call(server, "POST", STATEMENTS, json={"statement": f"INSERT INTO {table} VALUES ({row_id}, 1.0, 'FR')", "warehouse_id": "any"}).json()
            if answer["status"]["state"] != "SUCCEEDED":
                errors.append(answer["status"])
        return errors

    with ThreadPoolExecutor(8) as pool:
        errors = [e for found in pool.map(insert, range(8)) for e in found]
    assert errors == []
    counted = call(server, "POST", STATEMENTS, json={"statement": f"SELECT count(*), count(DISTINCT id) FROM {table}", "warehouse_id": "any"}).json()
    assert counted["result"]["data_array"] == [["200", "200"]]


def test_password_guessing_is_slowed(server):
    name = f"guess_{uuid.uuid4().hex[:6]}"
    server.create_user(name, "the-right-password-1")
    url = f"{server.base}/api/2.0/mlflow/experiments/search?max_results=1"

    def sign_in(password):
        return requests.get(url, auth=(name, password), timeout=10)

    assert [sign_in(f"wrong-{i}").status_code for i in range(5)] == [401] * 5
    started = time.monotonic()
    statuses = [sign_in(f"wrong-again-{i}").status_code for i in range(50)]
    # Past five failures in a row each try waits: the right password too, until the wait ends.
    assert statuses.count(401) <= 2 and statuses.count(429) >= 48, statuses
    assert time.monotonic() - started < 30
    locked = sign_in("the-right-password-1")
    assert locked.status_code == 429 and locked.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED", locked.text
    assert "try again in" in locked.json()["message"]
    # Another user is not slowed by it.
    assert requests.get(url, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10).status_code == 200
    deadline = time.monotonic() + 20
    while (answer := sign_in("the-right-password-1")).status_code == 429:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert sign_in("wrong-after").status_code == 401


def test_registry_copies_no_version_owns_are_removed(tmp_path):
    """A create that crashed between copying the files and storing the version leaves a copy
    nobody owns: the next start removes it once nothing has written to it for an hour, and
    leaves every version's copy (and a copy a create may still be making) alone."""
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    url = f"{database_url}_sweep" if database_url else None
    data_dir = str(tmp_path / "data")
    started, stop = start_tarn(database_url=url, data_dir=data_dir)
    headers = {"Authorization": f"Bearer {started.admin_token}"}

    def api(method, path, **body):
        arguments = {"params": body} if method == "GET" else {"json": body}
        answer = requests.request(method, f"{started.base}/api/2.0/mlflow/{path}", headers=headers, timeout=30, **arguments)
        assert answer.status_code == 200, answer.text
        return answer.json()

    experiment_id = api("POST", "experiments/create", name="sweep")["experiment_id"]
    run_id = api("POST", "runs/create", experiment_id=experiment_id)["run"]["info"]["run_id"]
    uploaded = requests.put(f"{started.base}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/model/MLmodel", data=b"flavors: {}\n", headers=headers, timeout=30)
    assert uploaded.status_code == 200, uploaded.text
    api("POST", "registered-models/create", name="swept")
    version = api("POST", "model-versions/create", name="swept", source=f"runs:/{run_id}/model")["model_version"]
    model_id = api("GET", "databricks/registered-models/get", name="swept")["registered_model_databricks"]["id"]
    registry = os.path.join(data_dir, "artifacts", "dev", "_registry", model_id)
    owned = [os.path.join(registry, name) for name in os.listdir(registry)]
    assert len(owned) == 1
    stale = os.path.join(registry, "a" * 32)
    fresh = os.path.join(registry, "b" * 32)
    for folder, age in ((stale, 7200), (fresh, 0)):
        os.makedirs(os.path.join(folder, "data"))
        for name in ("MLmodel", "data/model.onnx"):
            path = os.path.join(folder, name)
            with open(path, "wb") as file:
                file.write(b"left behind")
            os.utime(path, (time.time() - age, time.time() - age))
    old_version = os.path.join(owned[0], "MLmodel")
    os.utime(old_version, (time.time() - 7200, time.time() - 7200))
    stop(drop_database=False)

    restarted, stop_again = start_tarn(database_url=url, data_dir=data_dir, fresh_database=False, admin_token=started.admin_token)
    try:
        deadline = time.monotonic() + 30
        while os.path.exists(stale):
            assert time.monotonic() < deadline, "the unowned copy was not removed"
            time.sleep(0.2)
        assert os.path.exists(fresh) and os.path.exists(old_version)
        uri = requests.get(f"{restarted.base}/api/2.0/mlflow/model-versions/get-download-uri", params={"name": "swept", "version": version["version"]}, headers=headers, timeout=30)
        assert uri.status_code == 200, uri.text
        path = uri.json()["artifact_uri"].split("mlflow-artifacts:/", 1)[1]
        copy = requests.get(f"{restarted.base}/api/2.0/mlflow-artifacts/artifacts/{path}/MLmodel", headers=headers, timeout=30)
        assert (copy.status_code, copy.content) == (200, b"flavors: {}\n")
    finally:
        stop_again()


def test_statement_results_are_bounded_and_large_ones_come_by_link(server):
    import pyarrow as pa
    import pyarrow.ipc
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.sql import Disposition, Format, StatementState

    # INLINE results stop at 25 MiB of rows: the rest is never computed, and the manifest says so.
    big = call(server, "POST", STATEMENTS, json={"statement": "SELECT value FROM generate_series(1, 100000000)", "warehouse_id": "any", "wait_timeout": "50s"}).json()
    assert big["status"]["state"] == "SUCCEEDED", big["status"]
    manifest = big["manifest"]
    assert manifest["truncated"] is True
    assert 1_000_000 < manifest["total_row_count"] <= 25 * 1024 * 1024 // 8
    assert sum(c["row_count"] for c in manifest["chunks"]) == manifest["total_row_count"]
    # A chunk's rows are dropped once fetched: the answer had chunk 0, a poll no longer does.
    assert len(big["result"]["data_array"]) == manifest["chunks"][0]["row_count"]
    polled = call(server, "GET", f"{STATEMENTS}/{big['statement_id']}").json()
    assert polled["status"]["state"] == "SUCCEEDED" and "result" not in polled
    second = call(server, "GET", f"{STATEMENTS}/{big['statement_id']}/result/chunks/1").json()
    assert second["row_offset"] == manifest["chunks"][0]["row_count"]
    gone = call(server, "GET", f"{STATEMENTS}/{big['statement_id']}/result/chunks/1")
    assert gone.status_code == 400 and "once fetched" in gone.json()["message"]
    limited = call(server, "POST", STATEMENTS, json={"statement": "SELECT value FROM generate_series(1, 1000000)", "warehouse_id": "any", "byte_limit": 80_000}).json()
    assert limited["manifest"]["truncated"] is True and limited["manifest"]["total_row_count"] <= 10_000

    # EXTERNAL_LINKS: any size, written to files while the statement runs, downloaded by link
    # without credentials, as the SDK does with Databricks' presigned URLs.
    w = WorkspaceClient(host=server.base, token=server.admin_token)
    response = w.statement_execution.execute_statement(
        statement="SELECT value, value * 2 AS twice FROM generate_series(1, 5000000)",
        warehouse_id="any",
        disposition=Disposition.EXTERNAL_LINKS,
        format=Format.ARROW_STREAM,
        wait_timeout="50s",
    )
    assert response.status.state == StatementState.SUCCEEDED
    assert response.manifest.total_row_count == 5_000_000 and response.manifest.total_chunk_count >= 2
    tables, links = [], []
    link = response.result.external_links[0]
    while True:
        links.append(link.external_link)
        downloaded = requests.get(link.external_link, timeout=60)
        assert downloaded.status_code == 200, downloaded.text
        tables.append(pa.ipc.open_stream(downloaded.content).read_all())
        if link.next_chunk_index is None:
            break
        link = w.statement_execution.get_statement_result_chunk_n(response.statement_id, link.next_chunk_index).external_links[0]
    import pyarrow.compute as pc

    table = pa.concat_tables(tables)
    assert table.num_rows == 5_000_000
    values = table.column("value")
    assert (pc.min(values).as_py(), pc.max(values).as_py(), pc.count_distinct(values).as_py()) == (1, 5_000_000, 5_000_000)
    assert pc.all(pc.equal(table.column("twice"), pc.multiply(values, 2))).as_py()
    # A file goes once downloaded; a link whose signature was changed is refused.
    assert requests.get(links[0], timeout=10).status_code == 404
    fresh = call(server, "POST", STATEMENTS, json={"statement": "SELECT 1 AS one", "warehouse_id": "any", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM"}).json()
    url = fresh["result"]["external_links"][0]["external_link"]
    tampered = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert requests.get(tampered, timeout=10).status_code == 403
    assert requests.get(url.replace("/chunks/0/", "/chunks/1/"), timeout=10).status_code == 403
    bad = call(server, "POST", STATEMENTS, json={"statement": "SELECT 1", "warehouse_id": "any", "disposition": "EXTERNAL_LINKS", "format": "JSON_ARRAY"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_statements_are_bounded_in_time_and_memory_and_admins_cancel(server, tmp_path):
    # An admin cancels another user's statement.
    name = f"sqluser_{uuid.uuid4().hex[:6]}"
    token = server.create_user(name, "pw-sql-user-1")
    started = call(server, "POST", STATEMENTS, token=token, json={"statement": "SELECT count(*) FROM generate_series(1, 100000000000)", "warehouse_id": "any", "wait_timeout": "0s"}).json()
    statement_id = started["statement_id"]
    assert call(server, "GET", f"{STATEMENTS}/{statement_id}").json()["status"]["state"] == "RUNNING"
    assert call(server, "POST", f"{STATEMENTS}/{statement_id}/cancel").status_code == 200
    assert call(server, "GET", f"{STATEMENTS}/{statement_id}", token=token).json()["status"]["state"] == "CANCELED"
    other = server.create_user(f"other_{uuid.uuid4().hex[:6]}", "pw-sql-other-1")
    assert call(server, "POST", f"{STATEMENTS}/{statement_id}/cancel", token=other).status_code == 404

    # A server with a 4 s time limit and a 32 MiB memory limit per statement.
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    bounded, stop = start_tarn(extra_args=["--sql-timeout-seconds", "4", "--sql-memory-limit-mib", "32"], database_url=f"{database_url}_bounded" if database_url else None, data_dir=str(tmp_path / "bounded"))
    try:
        # A whole sort of 6M rows (48 MB of values, more while sorting) spills to disk.
        sorted_rows = call(bounded, "POST", STATEMENTS, json={"statement": "SELECT value FROM generate_series(1, 6000000) ORDER BY value DESC", "warehouse_id": "any", "wait_timeout": "30s"}).json()
        assert sorted_rows["status"]["state"] == "SUCCEEDED", sorted_rows["status"]
        assert sorted_rows["result"]["data_array"][:2] == [["6000000"], ["5999999"]]
        # What cannot spill is refused with the limit named, and the server stays up.
        grouped = call(bounded, "POST", STATEMENTS, json={"statement": "SELECT array_agg(value) FROM generate_series(1, 20000000)", "warehouse_id": "any", "wait_timeout": "30s"}).json()
        if grouped["status"]["state"] == "FAILED":
            assert grouped["status"]["error"]["error_code"] == "REQUEST_LIMIT_EXCEEDED", grouped["status"]
            assert "sql-memory-limit-mib" in grouped["status"]["error"]["message"]
        began = time.monotonic()
        slow = call(bounded, "POST", STATEMENTS, json={"statement": "SELECT count(*) FROM generate_series(1, 100000000000)", "warehouse_id": "any", "wait_timeout": "30s"}).json()
        assert slow["status"]["state"] == "FAILED", slow["status"]
        assert slow["status"]["error"]["error_code"] == "DEADLINE_EXCEEDED"
        assert time.monotonic() - began < 25
        alive(bounded)
    finally:
        stop()


def test_no_secret_reaches_the_log(tmp_path):
    """Tokens, passwords, webhook secrets and signed-link signatures stay out of the server's
    log, at the most verbose level, whether they were used, refused or set."""
    started, stop = start_tarn(extra_args=["--webhooks-allow-private"], extra_env={"TARN_LOG": "trace"}, database_url=os.environ.get("TARN_TEST_DATABASE_URL", "").replace("tarn_compat", "tarn_logs") or None)
    try:
        user = f"logged_{uuid.uuid4().hex[:6]}"
        password = "Pa55word-" + uuid.uuid4().hex
        token = started.create_user(user, password)
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{started.base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(url, headers=headers, timeout=10).status_code == 200
        assert requests.get(url, auth=(user, password), timeout=10).status_code == 200
        wrong = "Wrong-" + uuid.uuid4().hex
        assert requests.get(url, auth=(user, wrong), timeout=10).status_code == 401
        forged = "tarn_" + uuid.uuid4().hex
        assert requests.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=10).status_code == 401
        own = requests.post(f"{started.base}/api/2.0/token/create", headers=headers, json={"comment": "ci"}, timeout=10).json()["token_value"]
        changed = "Changed-" + uuid.uuid4().hex
        user_id = requests.get(f"{started.base}/api/2.0/preview/scim/v2/Users", params={"filter": f'userName eq "{user}"'}, headers={"Authorization": f"Bearer {started.admin_token}"}, timeout=10).json()["Resources"][0]["id"]
        assert requests.patch(
            f"{started.base}/api/2.0/preview/scim/v2/Users/{user_id}",
            headers={"Authorization": f"Bearer {started.admin_token}"},
            json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"password": changed}}]},
            timeout=10,
        ).status_code == 200
        hook_secret = "hook-" + uuid.uuid4().hex
        hook = requests.post(
            f"{started.base}/api/2.0/mlflow/webhooks",
            headers={"Authorization": f"Bearer {started.admin_token}"},
            json={"name": "logged", "url": "http://127.0.0.1:9/hook", "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}], "secret": hook_secret},
            timeout=10,
        )
        assert hook.status_code == 200, hook.text
        big = call(started, "POST", STATEMENTS, json={"statement": "SELECT value FROM generate_series(1, 30000)", "warehouse_id": "any", "disposition": "EXTERNAL_LINKS", "format": "ARROW_STREAM"})
        assert big.status_code == 200, big.text
        link = big.json()["result"]["external_links"][0]["external_link"]
        signature = dict(p.split("=", 1) for p in urlparse(link).query.split("&"))["signature"]
        assert requests.get(link, timeout=30).status_code == 200
    finally:
        stop()
    log = (Path(started.data_dir) / "server.log").read_text()
    assert "request" in log and len(log) > 10_000, "the log is empty: nothing was checked"
    for secret in [started.admin_token, token, own, password, wrong, forged, changed, hook_secret, signature]:
        assert secret not in log, "a secret is in the log"
