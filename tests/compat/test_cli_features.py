"""`tarn features` and `tarn monitors` as clients of the server: what they print is what the
API holds, a member's token is refused exactly what the API refuses it (the server's message
shown, exit status non-zero), and a refused or bad command changes nothing."""

import json
import uuid
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_lakehouse import UC, arrow_body, call, grant, read_back
from test_monitors import create_table, predictions, to_arrow

FEATURES = "/api/2.0/tarn/feature-tables"
ARROW = {"Content-Type": "application/vnd.apache.arrow.stream"}
COLUMNS = "customer_id bigint, ts timestamp, spend double, visits bigint"
FIRST_DAY = "customer_id,ts,spend,visits\n1,2025-01-01T00:00:00Z,10.5,3\n2,2025-01-01T00:00:00Z,20.0,4\n1,2025-01-02T00:00:00Z,11.0,5\n"


@pytest.fixture
def schema(server):
    name = f"cli_{uuid.uuid4().hex[:8]}"
    created = call(server, "POST", f"{UC}/schemas", json={"name": name, "catalog_name": "dev"})
    assert created.status_code == 200, created.text
    return name


def refused(done, *fragments):
    """The command failed, naming the server's reason."""
    assert done.returncode != 0, done.stdout
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def refused_alike(done, response):
    """The command failed as the API call did: its message and error code on stderr."""
    assert response.status_code >= 400, response.text
    body = response.json()
    refused(done, body["message"], body["error_code"])


def member(server):
    name = f"member-{uuid.uuid4().hex[:6]}"
    return name, server.create_user(name, "long-password-9")


def feature_table(server, name, tmp_path):
    """A feature table made and filled with the CLI."""
    server.cli("features", "create", name, "--primary-keys", "customer_id", "--timestamp-key", "ts", "--columns", COLUMNS)
    rows = tmp_path / "first.csv"
    rows.write_text(FIRST_DAY)
    server.cli("features", "write", name, str(rows))


def version_of(server, name):
    history = call(server, "GET", f"/api/2.0/tarn/tables/{name}/history").json()
    return max(c["version"] for c in history["history"])


def sorted_rows(table):
    return sorted(table.to_pylist(), key=lambda r: (r["customer_id"], r["ts"]))


def millis_text(millis):
    """A time as the CLI prints it."""
    at = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_features_commands_print_what_the_api_holds(server, schema, tmp_path):
    name = f"dev.{schema}.customers"
    created = server.cli(
        "features", "create", name, "--primary-keys", "customer_id", "--timestamp-key", "ts", "--columns", COLUMNS,
        "--description", "spend per customer", "--job", "nightly", "--commit", "abc123",
    ).stdout
    info = call(server, "GET", f"{FEATURES}/{name}").json()
    assert created.strip() == f"created feature table {name} (keys customer_id, timestamp ts) at {info['storage_location']}"
    assert (info["description"], info["pipeline"]) == ("spend per customer", {"job": "nightly", "commit": "abc123"})

    # Rows from a CSV file, then a correction and a new key from JSON lines: merged on the keys.
    first = tmp_path / "first.csv"
    first.write_text(FIRST_DAY)
    assert server.cli("features", "write", name, str(first)).stdout.strip() == "merged 3 rows: 3 inserted, 0 updated; version 1"
    second = tmp_path / "second.json"
    second.write_text(
        '{"customer_id": 2, "ts": "2025-01-01T00:00:00Z", "spend": 25.0, "visits": 4}\n'
        '{"customer_id": 3, "ts": "2025-01-03T00:00:00Z", "spend": 7.5, "visits": 1}\n'
    )
    assert server.cli("features", "write", name, str(second)).stdout.strip() == "merged 2 rows: 1 inserted, 1 updated; version 2"
    assert [(r["customer_id"], r["spend"], r["visits"]) for r in sorted_rows(read_back(server, name))] == [
        (1, 10.5, 3), (1, 11.0, 5), (2, 25.0, 4), (3, 7.5, 1),
    ]

    listed = server.cli("features", "list", "--search", schema).stdout.splitlines()
    assert listed[0].split() == ["FEATURE", "TABLE", "KEYS", "FEATURES", "DESCRIPTION"]
    assert f"{name:<44} {'customer_id, ts':<28} {len(info['features']):<9} spend per customer" in listed, listed

    shown = server.cli("features", "show", name).stdout.splitlines()
    for line in [
        f"feature table  {name}", "primary keys   customer_id", "timestamp key  ts", f"owner          {info['owner']}",
        "job            nightly", "commit         abc123", f"location       {info['storage_location']}", "online         not published",
    ]:
        assert line in shown, (line, shown)
    features = shown[shown.index(f"{'FEATURE':<32} TYPE") + 1:]
    assert features == [f"{f['name']:<32} {f['type_text']}" for f in info["features"]] and len(features) == 2

    published = server.cli("features", "publish", name).stdout.splitlines()
    online = call(server, "GET", f"{FEATURES}/{name}").json()["online"]
    assert published == [f"published {name} version 2 to the {online['online_store']} online store (full): 3 keys written, 0 removed"]
    shown = server.cli("features", "show", name).stdout.splitlines()
    assert (
        f"online         version 2 (3 keys) in the {online['online_store']} store, published "
        f"{millis_text(online['published_at'])} by {online['published_by']}"
    ) in shown, shown
    assert "refresh        manual" in shown

    keys = [{"customer_id": 1}, {"customer_id": 99}]
    looked = server.cli("features", "lookup", name, "--key", "customer_id=1", "--key", "customer_id=99").stdout.splitlines()
    expected = call(server, "POST", "/api/2.0/tarn/online/lookup", json={"table_name": name, "keys": keys}).json()["results"]
    assert [tuple(json.loads(part) for part in line.split("  ", 1)) for line in looked] == list(zip(keys, expected))
    assert expected[0]["values"]["spend"] == 11.0 and expected[1]["status"] != "PRESENT"


def test_a_training_set_from_the_cli_is_the_apis(server, schema, tmp_path):
    name = f"dev.{schema}.customers"
    feature_table(server, name, tmp_path)
    labels = f"dev.{schema}.labels"
    columns = [{"name": "customer_id", "type_text": "bigint"}, {"name": "event_ts", "type_text": "timestamp"}, {"name": "label", "type_text": "boolean"}]
    assert call(server, "POST", f"{UC}/tables", json={"name": "labels", "catalog_name": "dev", "schema_name": schema, "columns": columns}).status_code == 200
    label_rows = pa.table({
        "customer_id": pa.array([1, 2, 1, 5], type=pa.int64()),
        "event_ts": pa.array([1_735_700_000_000_000, 1_735_700_000_000_000, 1_735_800_000_000_000, 1_735_800_000_000_000], type=pa.timestamp("us", tz="UTC")),
        "label": [True, False, True, False],
    })
    assert call(server, "POST", f"/api/2.0/tarn/tables/{labels}/data", data=arrow_body(label_rows), headers=ARROW).status_code == 200
    spec = {"label": {"table": labels}, "feature_lookups": [{"table_name": name, "timestamp_lookup_key": "event_ts"}]}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))

    expected = call(server, "POST", "/api/2.0/tarn/training-sets", json=spec)
    assert expected.status_code == 200, expected.text
    expected = pa.ipc.open_stream(expected.content).read_all()

    parquet = tmp_path / "train.parquet"
    lines = server.cli("features", "training-set", "--spec", str(spec_file), "--out", str(parquet)).stdout.splitlines()
    set_id = lines[0].split()[2].rstrip(":")
    record = call(server, "GET", f"/api/2.0/tarn/training-sets/{set_id}").json()["training_set"]
    assert lines[0] == f"training set {set_id}: {record['num_rows']} rows, {expected.num_columns} columns"
    assert [f"  read {t['name']} at version {t['version']}" for t in record["tables_read"]] == lines[1:-1]
    assert lines[-1] == f"  rows in {parquet}"
    assert pq.read_table(parquet).to_pylist() == expected.to_pylist() and record["num_rows"] == 4

    # Without a destination the first rows are printed.
    printed = server.cli("features", "training-set", "--spec", str(spec_file)).stdout
    assert "| customer_id | event_ts" in printed and printed.count("| true ") + printed.count("| false ") == 4

    output = f"dev.{schema}.train"
    lines = server.cli("features", "training-set", "--spec", str(spec_file), "--output-table", output).stdout.splitlines()
    set_id = lines[0].split()[2].rstrip(":")
    record = call(server, "GET", f"/api/2.0/tarn/training-sets/{set_id}").json()["training_set"]
    assert lines[0] == f"training set {set_id}: 4 rows, {expected.num_columns} columns"
    assert lines[-1] == f"  wrote {output} version {record['output_table']['version']}"
    assert read_back(server, output).to_pylist() == expected.to_pylist()


def test_a_member_is_refused_what_the_api_refuses_and_nothing_changes(server, schema, tmp_path):
    name = f"dev.{schema}.customers"
    feature_table(server, name, tmp_path)
    reader, token = member(server)
    more = tmp_path / "more.csv"
    more.write_text("customer_id,ts,spend,visits\n9,2025-01-05T00:00:00Z,1.0,1\n")

    # Creating in the catalog of a workspace the member is not in; in their own, the table is
    # theirs.
    elsewhere = f"prod.{schema}.mine"
    body = {"name": elsewhere, "primary_keys": ["customer_id"], "columns": [{"name": "customer_id", "type_text": "bigint"}]}
    done = server.cli("features", "create", elsewhere, "--primary-keys", "customer_id", "--columns", COLUMNS, token=token, check=False)
    refused_alike(done, call(server, "POST", FEATURES, token=token, workspace="prod", json=body))
    assert call(server, "GET", f"{UC}/tables/{elsewhere}", workspace="prod").status_code == 404
    mine = f"dev.{schema}.mine"
    server.cli("features", "create", mine, "--primary-keys", "customer_id", "--columns", COLUMNS, token=token)
    assert call(server, "GET", f"{FEATURES}/{mine}").json()["owner"] == reader

    # Writing, publishing and looking up a table the member was granted nothing on.
    before = version_of(server, name)
    done = server.cli("features", "write", name, str(more), token=token, check=False)
    refused_alike(done, call(server, "POST", f"{FEATURES}/{name}/data", token=token, data=arrow_body(read_back(server, name)), headers=ARROW))
    done = server.cli("features", "publish", name, token=token, check=False)
    refused_alike(done, call(server, "POST", f"{FEATURES}/{name}/publish", token=token, json={}))
    lookup = {"table_name": name, "keys": [{"customer_id": 1}]}
    done = server.cli("features", "lookup", name, "--key", "customer_id=1", token=token, check=False)
    refused_alike(done, call(server, "POST", "/api/2.0/tarn/online/lookup", token=token, json=lookup))
    assert version_of(server, name) == before
    assert "online" not in call(server, "GET", f"{FEATURES}/{name}").json()

    # What the member lists is what the API shows them.
    listed = server.cli("features", "list", "--search", schema, token=token).stdout.splitlines()[1:]
    visible = call(server, "GET", FEATURES, token=token, params={"search": schema}).json().get("feature_tables", [])
    assert sorted(line.split()[0] for line in listed) == sorted(t["name"] for t in visible)

    # Granted SELECT, the member looks up what the admin published; still no writes.
    server.cli("features", "publish", name)
    grant(server, "table", name, reader, add=["SELECT"])
    looked = server.cli("features", "lookup", name, "--key", "customer_id=1", token=token).stdout.split("  ", 1)[1]
    assert json.loads(looked) == call(server, "POST", "/api/2.0/tarn/online/lookup", token=token, json=lookup).json()["results"][0]
    refused(server.cli("features", "write", name, str(more), token=token, check=False), "PERMISSION_DENIED")
    assert version_of(server, name) == before


def test_bad_feature_commands_are_refused_and_change_nothing(server, schema, tmp_path):
    name = f"dev.{schema}.customers"
    feature_table(server, name, tmp_path)
    before = version_of(server, name)
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,ts,spend,visits\n4,2025-01-05T00:00:00Z,lots,1\n5,2025-01-05T00:00:00Z,2.0,1\n")
    refused(server.cli("features", "write", name, str(bad), check=False), "do not fit", "line 2")
    refused(server.cli("features", "write", name, str(tmp_path / "missing.csv"), check=False), "missing.csv")
    refused(server.cli("features", "lookup", name, "--key", "customer_id", check=False), "is not column=value")
    refused(server.cli("features", "publish", name, "--refresh", "hourly-ish", check=False), "Invalid refresh", "INVALID_PARAMETER_VALUE")
    refused(
        server.cli("features", "create", name, "--primary-keys", "customer_id", "--columns", COLUMNS, check=False),
        "already exists",
    )
    spec = tmp_path / "spec.json"
    spec.write_text('{"label": "not a label"}')
    refused(server.cli("features", "training-set", "--spec", str(spec), check=False), "is not a training set spec")
    refused(server.cli("features", "show", f"dev.{schema}.nothing", check=False), "RESOURCE_DOES_NOT_EXIST")
    assert version_of(server, name) == before
    assert len(read_back(server, name)) == 3
    assert "online" not in call(server, "GET", f"{FEATURES}/{name}").json()


def monitor_settings(tmp_path, schema, file="monitor.json", **extra):
    settings = tmp_path / file
    settings.write_text(json.dumps({"output_schema_name": f"dev.{schema}", "time_series": {"timestamp_col": "ts", "granularities": ["1 day"]}, **extra}))
    return settings


def test_monitors_commands_print_what_the_api_holds_and_refuse_as_it_does(server, schema, tmp_path):
    table = f"dev.{schema}.predictions"
    create_table(server, table, to_arrow(predictions(days=3, per_day=200, shift_from=2)))
    monitor = f"{UC}/tables/{table}/monitor"
    analyst, token = member(server)
    settings = monitor_settings(tmp_path, schema)

    # Without MANAGE the member may not create the monitor: the API's refusal, nothing made.
    done = server.cli("monitors", "create", table, "--settings", str(settings), token=token, check=False)
    refused_alike(done, call(server, "POST", monitor, token=token, json=json.loads(settings.read_text())))
    assert call(server, "GET", monitor).status_code == 404

    created = server.cli("monitors", "create", table, "--settings", str(settings)).stdout
    info = call(server, "GET", monitor).json()
    assert created.strip() == f"Created the monitor on {table}: metrics go to {info['profile_metrics_table_name']} and {info['drift_metrics_table_name']}"

    # Nor refresh it.
    done = server.cli("monitors", "refresh", table, token=token, check=False)
    refused_alike(done, call(server, "POST", f"{monitor}/refreshes", token=token))
    assert call(server, "GET", f"{monitor}/refreshes").json()["refreshes"] == []

    shown = server.cli("monitors", "refresh", table).stdout.splitlines()
    refreshes = call(server, "GET", f"{monitor}/refreshes").json()["refreshes"]
    assert [r["state"] for r in refreshes] == ["SUCCESS"]
    assert shown[0].startswith(f"Refresh {refreshes[0]['refresh_id']} of {table} succeeded in ")
    # The latest window's rows and columns are the profile metrics table's.
    profile = read_back(server, info["profile_metrics_table_name"]).to_pylist()
    whole = [r for r in profile if r["slice_key"] is None and r["model_id"] is None and r["log_type"] == "INPUT"]
    last = max(r["window"]["start"] for r in whole)
    latest = {r["column_name"]: r for r in whole if r["window"]["start"] == last}
    rows = latest[":table"]["count"]
    assert rows == 200 and f"· {rows} rows ·" in shown[1], shown[1]
    header = next(i for i, line in enumerate(shown) if line.startswith("COLUMN"))
    assert {line.split()[0] for line in shown[header + 1:]} == set(latest) - {":table"}

    # Granted SELECT on the table and its metrics, the member sees what the admin sees.
    for readable in (table, info["profile_metrics_table_name"], info["drift_metrics_table_name"]):
        grant(server, "table", readable, analyst, add=["SELECT"])
    assert server.cli("monitors", "show", table, token=token).stdout.splitlines() == shown[1:]
    report = tmp_path / "report.html"
    assert server.cli("monitors", "report", table, "--out", str(report), token=token).stdout.strip() == f"Wrote the report of {table} to {report}"
    assert report.read_text().startswith("<!doctype html>")

    # Bad requests are refused and change nothing.
    refused(server.cli("monitors", "show", table, "--granularity", "1 hour", check=False), "no granularity")
    typo = monitor_settings(tmp_path, schema, file="typo.json", granularity="1 day")
    refused(server.cli("monitors", "create", table, "--settings", str(typo), check=False), "is not monitor settings")
    refused(server.cli("monitors", "create", table, "--settings", str(settings), check=False), "RESOURCE_ALREADY_EXISTS")
    refused(server.cli("monitors", "refresh", f"dev.{schema}.nothing", check=False), "RESOURCE_DOES_NOT_EXIST")
    assert call(server, "GET", monitor).json() == info
    assert len(call(server, "GET", f"{monitor}/refreshes").json()["refreshes"]) == 1


def alert_lines(output, alert_id):
    return [line for line in output.splitlines() if line.startswith(alert_id)]


def test_monitors_alerts_lists_and_evaluates_the_workspaces_alerts(server, tmp_path):
    # In staging, apart from the alerts other tests make in dev.
    schema = f"alerts_{uuid.uuid4().hex[:8]}"
    assert call(server, "POST", f"{UC}/schemas", workspace="staging", json={"name": schema, "catalog_name": "staging"}).status_code == 200
    table = f"staging.{schema}.scores"
    created = call(server, "POST", f"{UC}/tables", workspace="staging", json={"name": "scores", "catalog_name": "staging", "schema_name": schema, "columns": [{"name": "psi", "type_text": "double"}]})
    assert created.status_code == 200, created.text
    written = call(server, "POST", f"/api/2.0/tarn/tables/{table}/data", workspace="staging", data=arrow_body(pa.table({"psi": [0.1, 0.5]})), headers=ARROW)
    assert written.status_code == 200, written.text
    alert = call(server, "POST", "/api/2.0/alerts", workspace="staging", json={
        "display_name": f"psi-{uuid.uuid4().hex[:6]}",
        "query_text": f"SELECT MAX(psi) AS psi FROM {table}",
        "warehouse_id": "any",
        "evaluation": {"source": {"name": "psi"}, "comparison_operator": "GREATER_THAN", "threshold": {"value": {"double_value": 0.3}}},
    })
    assert alert.status_code == 200, alert.text
    alert = alert.json()

    [line] = alert_lines(server.cli("monitors", "alerts", workspace="staging").stdout, alert["id"])
    assert line.split()[1:5] == [alert["display_name"], "UNKNOWN", "-", "psi"] and line.split().count("-") == 3, line
    assert call(server, "GET", f"/api/2.0/tarn/alerts/{alert['id']}/history", workspace="staging").json()["evaluations"] == []

    listed = server.cli("monitors", "alerts", "--evaluate", workspace="staging").stdout
    [line] = alert_lines(listed, alert["id"])
    [evaluation] = call(server, "GET", f"/api/2.0/tarn/alerts/{alert['id']}/history", workspace="staging").json()["evaluations"]
    state = call(server, "GET", f"/api/2.0/alerts/{alert['id']}", workspace="staging").json()["evaluation"]["state"]
    assert (state, evaluation["state"], evaluation["value"]) == ("TRIGGERED", "TRIGGERED", "0.5")
    at = millis_text(evaluation["evaluated_at"])
    assert line.split()[1:9] == [alert["display_name"], "TRIGGERED", "0.5", "psi", ">", "0.3", at, at], line
    assert listed.splitlines()[0].split()[-2:] == ["RECENT", "VALUES"]

    # Someone who is no member of staging is refused as the API refuses them.
    _, outsider = member(server)
    done = server.cli("monitors", "alerts", token=outsider, workspace="staging", check=False)
    refused_alike(done, call(server, "GET", "/api/2.0/alerts", token=outsider, workspace="staging"))
    done = server.cli("monitors", "alerts", "--evaluate", token=outsider, workspace="staging", check=False)
    refused(done, "PERMISSION_DENIED")
    assert len(call(server, "GET", f"/api/2.0/tarn/alerts/{alert['id']}/history", workspace="staging").json()["evaluations"]) == 1
