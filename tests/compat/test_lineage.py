"""Lineage through the live server: the table API, SQL statements and `tarn ingest` record
what each write read and who ran it; `/api/2.0/tarn/lineage`, Databricks' table-lineage
shape and `tarn lineage` show it, masking what the caller may not read."""

import uuid

from test_lakehouse import call, grant, payments, payments_table, schema, write  # noqa: F401 (schema is a fixture)
from test_sql import rows_of, run_sql

LINEAGE = "/api/2.0/tarn/lineage"


def test_writes_record_lineage_shown_by_api_and_cli(server, schema, tmp_path):
    raw = tmp_path / "orders.csv"
    raw.write_text("id,amount,country\n1,10.0,FR\n2,20.0,DE\n3,30.0\n")
    orders = f"dev.{schema}.orders"
    server.cli("ingest", str(raw), "--table", orders)
    payments_table(server, schema)
    assert write(server, f"dev.{schema}.payments", payments([7], [70.0], ["IT"])).status_code == 200
    summary = f"dev.{schema}.by_country"
    rows_of(run_sql(
        server,
        f"CREATE TABLE {summary} AS SELECT country, sum(amount) AS total FROM "
        f"(SELECT country, amount FROM {orders} UNION ALL SELECT country, amount FROM {schema}.payments) GROUP BY country",
    ))

    graph = call(server, "GET", LINEAGE, params={"table_name": summary, "direction": "upstream", "depth": 3}).json()
    assert graph["root"] == f"table:{summary}"
    names = {n["id"]: n for n in graph["nodes"]}
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert (f"table:{orders}", f"table:{summary}") in edges
    from_payments = edges[(f"table:dev.{schema}.payments", f"table:{summary}")]
    assert from_payments["last_operation"] == "CREATE TABLE AS SELECT"
    assert from_payments["last_actor"] == "admin"
    assert from_payments["source_version"] == 1 and from_payments["target_version"] == 0
    ingest = edges[(f"file:{raw}", f"table:{orders}")]
    assert ingest["last_operation"] == "INGEST" and ingest["last_actor"] == "admin"
    assert names[f"file:{raw}"]["type"] == "FILE"
    assert names[f"table:{orders}"]["table_type"] == "MANAGED"
    assert graph["recent_writes"][0]["operation"] == "CREATE TABLE AS SELECT"
    assert "UNION ALL" in graph["recent_writes"][0]["statement"]

    # The table API's own writes are recorded with who made them, though they read no table.
    payments_graph = call(server, "GET", LINEAGE, params={"table_name": f"dev.{schema}.payments"}).json()
    assert [(w["operation"], w["actor"], w["target_version"]) for w in payments_graph["recent_writes"]] == [("APPEND", "admin", 1)]
    assert [e["target"] for e in payments_graph["edges"]] == [f"table:{summary}"]

    # Databricks' shape: direct neighbours only.
    databricks = call(server, "GET", "/api/2.0/lineage-tracking/table-lineage", params={"table_name": orders}).json()
    assert databricks["upstreams"][0]["fileInfo"]["path"] == str(raw)
    down = databricks["downstreams"][0]["tableInfo"]
    assert (down["catalog_name"], down["schema_name"], down["name"]) == ("dev", schema, "by_country")
    assert down["lineage_timestamp"].endswith("Z")

    tree = server.cli("lineage", summary, "--direction", "upstream").stdout
    assert f"└── file {raw}" in tree or f"file {raw}" in tree
    assert orders in tree and "INGEST" in tree and "CREATE TABLE AS SELECT" in tree
    as_json = server.cli("lineage", summary, "--format", "json").stdout
    assert f'"root": "table:{summary}"' in as_json


def test_lineage_is_masked_and_checked_like_reads(server, schema):
    payments_table(server, schema)
    assert write(server, f"dev.{schema}.payments", payments([1], [1.0], ["FR"])).status_code == 200
    copy = f"dev.{schema}.copy"
    rows_of(run_sql(server, f"CREATE TABLE {copy} AS SELECT * FROM {schema}.payments"))
    member_name = f"lineage-{uuid.uuid4().hex[:6]}"
    member = server.create_user(member_name, "long-password-7")
    denied = call(server, "GET", LINEAGE, token=member, params={"table_name": copy})
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    grant(server, "table", copy, member_name, add=["SELECT"])
    seen = call(server, "GET", LINEAGE, token=member, params={"table_name": copy}).json()
    masked = [n for n in seen["nodes"] if n["masked"]]
    assert len(masked) == 1 and "name" not in masked[0]
    assert "payments" not in str(seen)
    databricks = call(server, "GET", "/api/2.0/lineage-tracking/table-lineage", token=member, params={"table_name": copy}).json()
    assert databricks["upstreams"][0]["tableInfo"]["has_permission"] is False

    for params, message in [
        ({}, "table_name"),
        ({"table_name": copy, "direction": "sideways"}, "direction"),
        ({"table_name": copy, "depth": 0}, "depth"),
        ({"table_name": copy, "depth": 11}, "depth"),
        ({"table_name": "no-dots"}, "catalog.schema.table"),
    ]:
        bad = call(server, "GET", LINEAGE, params=params)
        assert bad.status_code == 400, (params, bad.text)
        assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE" and message in bad.json()["message"]
    missing = call(server, "GET", LINEAGE, params={"table_name": f"dev.{schema}.nope"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
