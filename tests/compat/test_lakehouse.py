"""The lakehouse catalog and table data: Unity Catalog-shaped API, Arrow IPC in and out, and
interop with the `deltalake` and `polars` Python packages reading and writing the same tables."""

import os
import uuid
from urllib.parse import urlparse

import deltalake
import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pytest
import requests

UC = "/api/2.1/unity-catalog"


def call(server, method, path, token=None, workspace="dev", headers=None, **kwargs):
    return requests.request(
        method,
        server.url(workspace) + path,
        headers={"Authorization": f"Bearer {token or server.admin_token}", **(headers or {})},
        timeout=60,
        **kwargs,
    )


def arrow_body(table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def read_back(server, full_name, token=None, workspace="dev", **params):
    response = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", token=token, workspace=workspace, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    return pa.ipc.open_stream(response.content).read_all()


def write(server, full_name, table, token=None, workspace="dev", **params):
    return call(
        server,
        "POST",
        f"/api/2.0/tarn/tables/{full_name}/data",
        token=token,
        workspace=workspace,
        params=params,
        data=arrow_body(table),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )


def local_path(table_info):
    return urlparse(table_info["storage_location"]).path


@pytest.fixture
def schema(server):
    name = f"bronze_{uuid.uuid4().hex[:8]}"
    created = call(server, "POST", f"{UC}/schemas", json={"name": name, "catalog_name": "dev", "comment": "raw"})
    assert created.status_code == 200, created.text
    assert created.json()["full_name"] == f"dev.{name}"
    return name


def payments_table(server, schema, name="payments", properties=None):
    response = call(
        server,
        "POST",
        f"{UC}/tables",
        json={
            "name": name,
            "catalog_name": "dev",
            "schema_name": schema,
            "table_type": "MANAGED",
            "data_source_format": "DELTA",
            "comment": "card payments",
            "columns": [
                {"name": "id", "type_text": "bigint", "type_name": "LONG", "position": 0, "nullable": True},
                {"name": "amount", "type_text": "double", "type_name": "DOUBLE", "position": 1, "nullable": True, "comment": "in euros"},
                {"name": "country", "type_text": "string", "type_name": "STRING", "position": 2, "nullable": True, "partition_index": 0},
            ],
            "properties": properties or {},
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def rows(table):
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_tables_tarn_writes_are_read_by_deltalake_and_polars(server, schema):
    info = payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    assert info["full_name"] == full_name
    assert info["table_type"] == "MANAGED"
    assert [c["name"] for c in info["columns"]] == ["id", "amount", "country"]
    assert [c["type_name"] for c in info["columns"]] == ["LONG", "DOUBLE", "STRING"]
    assert info["columns"][1]["comment"] == "in euros"
    assert info["columns"][2]["partition_index"] == 0

    batch = pa.table(
        {"id": pa.array([1, 2, 3], pa.int64()), "amount": [9.5, 20.0, None], "country": ["FR", "DE", "FR"]},
        schema=pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("country", pa.string())]),
    )
    written = write(server, full_name, batch)
    assert written.status_code == 200, written.text
    assert written.json() == {"version": 1, "num_rows": 3}

    expected = [
        {"id": 1, "amount": 9.5, "country": "FR"},
        {"id": 2, "amount": 20.0, "country": "DE"},
        {"id": 3, "amount": None, "country": "FR"},
    ]
    assert rows(read_back(server, full_name)) == expected
    # The same table, read by the deltalake and polars packages straight from the lake.
    path = local_path(info)
    table = deltalake.DeltaTable(path)
    assert table.version() == 1
    assert table.metadata().partition_columns == ["country"]
    assert rows(table.to_pyarrow_table()) == expected
    assert sorted(pl.read_delta(path).to_dicts(), key=lambda r: r["id"]) == expected

    # Parquet out, for tools that want a file.
    parquet = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", params={"format": "parquet"})
    assert parquet.status_code == 200
    assert sorted(pl.read_parquet(parquet.content).to_dicts(), key=lambda r: r["id"]) == expected


def test_tables_deltalake_writes_are_read_by_tarn_with_history_and_time_travel(server, schema, tmp_path):
    info = payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    path = local_path(info)
    deltalake.write_deltalake(
        path,
        pa.table({"id": pa.array([10], pa.int64()), "amount": [1.0], "country": ["NL"]}),
        mode="append",
    )
    assert [r["id"] for r in rows(read_back(server, full_name))] == [10]
    overwrite = write(
        server,
        full_name,
        pa.table({"id": pa.array([11, 12], pa.int64()), "amount": [2.0, 3.0], "country": ["NL", "BE"]}),
        mode="overwrite",
    )
    assert overwrite.json()["version"] == 2
    assert [r["id"] for r in rows(read_back(server, full_name))] == [11, 12]
    assert [r["id"] for r in rows(read_back(server, full_name, version=1))] == [10]
    assert read_back(server, full_name, version=0).num_rows == 0
    history = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/history").json()["history"]
    assert [c["version"] for c in history] == [2, 1, 0]
    assert history[-1]["operation"] == "CREATE TABLE"
    missing = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", params={"version": 9})
    assert missing.status_code == 400
    assert missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    # A table the deltalake package made elsewhere, registered as an external table.
    external = tmp_path / "events"
    deltalake.write_deltalake(str(external), pa.table({"event": ["click", "view"], "n": pa.array([1, 2], pa.int32())}))
    registered = call(
        server,
        "POST",
        f"{UC}/tables",
        json={"name": "events", "catalog_name": "dev", "schema_name": schema, "table_type": "EXTERNAL", "storage_location": external.as_uri()},
    )
    assert registered.status_code == 200, registered.text
    assert [(c["name"], c["type_name"]) for c in registered.json()["columns"]] == [("event", "STRING"), ("n", "INT")]
    assert sorted(read_back(server, f"dev.{schema}.events").column("event").to_pylist()) == ["click", "view"]
    # Dropping an external table leaves its data.
    assert call(server, "DELETE", f"{UC}/tables/dev.{schema}.events").status_code == 200
    assert deltalake.DeltaTable(str(external)).version() == 0


def test_checkpointed_tables_with_many_versions_work_both_ways(server, schema, tmp_path):
    # tarn writes 25 versions of a table that checkpoints every 10 commits (delta-rs writes the
    # checkpoints); the Python packages read it whole and at old versions.
    info = payments_table(server, schema, properties={"delta.checkpointInterval": "10"})
    full_name = f"dev.{schema}.payments"
    for i in range(1, 26):
        assert write(server, full_name, payments([i], [float(i)], ["FR"])).json()["version"] == i
    log = os.path.join(local_path(info), "_delta_log")
    checkpoints = sorted(f for f in os.listdir(log) if ".checkpoint" in f)
    # delta-rs checkpoints after every tenth commit (versions 9 and 19).
    assert checkpoints == ["00000000000000000009.checkpoint.parquet", "00000000000000000019.checkpoint.parquet"]
    theirs = deltalake.DeltaTable(local_path(info))
    assert theirs.version() == 25
    assert sorted(theirs.to_pyarrow_table().column("id").to_pylist()) == list(range(1, 26))
    assert pl.read_delta(local_path(info), version=15).height == 15
    assert read_back(server, full_name, version=12).num_rows == 12

    # A table the deltalake package wrote 30 versions of and checkpointed at 20 (its older
    # JSON commits cleaned up), registered in tarn: latest, travel past the checkpoint, SQL.
    external = tmp_path / "clicks"
    for i in range(30):
        deltalake.write_deltalake(str(external), pa.table({"n": pa.array([i], pa.int64())}), mode="append")
        if i == 20:
            table = deltalake.DeltaTable(str(external))
            table.create_checkpoint()
    for old in range(0, 10):
        os.remove(external / "_delta_log" / f"{old:020d}.json")
    registered = call(
        server,
        "POST",
        f"{UC}/tables",
        json={"name": "clicks", "catalog_name": "dev", "schema_name": schema, "table_type": "EXTERNAL", "storage_location": external.as_uri()},
    )
    assert registered.status_code == 200, registered.text
    clicks = f"dev.{schema}.clicks"
    assert sorted(read_back(server, clicks).column("n").to_pylist()) == list(range(30))
    assert read_back(server, clicks, version=25).num_rows == 26
    history = call(server, "GET", f"/api/2.0/tarn/tables/{clicks}/history", params={"max_results": 5}).json()["history"]
    assert [c["version"] for c in history] == [29, 28, 27, 26, 25]
    gone = call(server, "GET", f"/api/2.0/tarn/tables/{clicks}/data", params={"version": 3})
    assert gone.status_code == 400, gone.text
    assert "clicks" in gone.json()["message"]
    summed = call(server, "POST", "/api/2.0/sql/statements", json={"statement": f"SELECT sum(n) FROM {clicks} VERSION AS OF 22"}).json()
    assert summed["result"]["data_array"] == [[str(sum(range(23)))]], summed


def test_schema_evolution_needs_merge_schema(server, schema):
    info = payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    wider = pa.table({"id": pa.array([1], pa.int64()), "amount": [1.0], "country": ["FR"], "channel": ["web"]})
    refused = write(server, full_name, wider)
    assert refused.status_code == 400
    assert full_name in refused.json()["message"]
    assert deltalake.DeltaTable(local_path(info)).version() == 0
    evolved = write(server, full_name, wider, merge_schema="true")
    assert evolved.status_code == 200, evolved.text
    columns = call(server, "GET", f"{UC}/tables/{full_name}").json()["columns"]
    assert [c["name"] for c in columns] == ["id", "amount", "country", "channel"]
    assert columns[1]["comment"] == "in euros", "comments survive a schema change"


def test_catalog_listing_paging_and_bad_input(server, schema):
    catalogs = call(server, "GET", f"{UC}/catalogs").json()["catalogs"]
    # The workspace's own catalog and those bound to it (prod, read-only, from first start).
    assert {c["name"] for c in catalogs} == {"dev", "prod"}
    staging = call(server, "GET", f"{UC}/catalogs", workspace="staging").json()["catalogs"]
    assert {c["name"] for c in staging} == {"staging", "prod"}
    for name in ("a", "b", "c"):
        payments_table(server, schema, name)
    first = call(server, "GET", f"{UC}/tables", params={"catalog_name": "dev", "schema_name": schema, "max_results": 2}).json()
    assert [t["name"] for t in first["tables"]] == ["a", "b"]
    rest = call(server, "GET", f"{UC}/tables", params={"catalog_name": "dev", "schema_name": schema, "page_token": first["next_page_token"]}).json()
    assert [t["name"] for t in rest["tables"]] == ["c"]
    assert "next_page_token" not in rest

    def refused(method, path, status, code, **kwargs):
        response = call(server, method, path, **kwargs)
        assert response.status_code == status, response.text
        assert response.json()["error_code"] == code, response.text
        return response

    refused("POST", f"{UC}/schemas", 400, "INVALID_PARAMETER_VALUE", json={"name": "../etc", "catalog_name": "dev"})
    refused("POST", f"{UC}/schemas", 400, "INVALID_PARAMETER_VALUE", json={"name": "x'; DROP TABLE catalog_schemas;--", "catalog_name": "dev"})
    refused("POST", f"{UC}/schemas", 400, "RESOURCE_ALREADY_EXISTS", json={"name": schema, "catalog_name": "dev"})
    refused("POST", f"{UC}/schemas", 404, "RESOURCE_DOES_NOT_EXIST", json={"name": "s", "catalog_name": "nowhere"})
    refused("POST", f"{UC}/tables", 400, "INVALID_PARAMETER_VALUE", json={"name": "t", "catalog_name": "dev", "schema_name": schema, "columns": [{"name": "x", "type_text": "uuid"}]})
    refused("POST", f"{UC}/tables", 400, "INVALID_PARAMETER_VALUE", json={"name": "t", "catalog_name": "dev", "schema_name": schema, "columns": []})
    refused("POST", f"{UC}/tables", 404, "RESOURCE_DOES_NOT_EXIST", json={"name": "t", "catalog_name": "dev", "schema_name": "nope", "columns": [{"name": "x", "type_text": "int"}]})
    refused("POST", f"{UC}/tables", 400, "INVALID_PARAMETER_VALUE", json={"name": "t", "catalog_name": "dev", "schema_name": schema, "table_type": "EXTERNAL", "storage_location": "file:///etc/"})
    refused("GET", f"{UC}/tables/dev.{schema}", 400, "INVALID_PARAMETER_VALUE")
    refused("GET", f"{UC}/tables/dev.{schema}.missing", 404, "RESOURCE_DOES_NOT_EXIST")
    refused("POST", f"/api/2.0/tarn/tables/dev.{schema}.a/data", 400, "INVALID_PARAMETER_VALUE", data=b"not arrow")
    refused("POST", f"/api/2.0/tarn/tables/dev.{schema}.a/data", 400, "INVALID_PARAMETER_VALUE", params={"mode": "upsert"}, data=b"x")
    refused("DELETE", f"{UC}/schemas/dev.{schema}", 400, "INVALID_PARAMETER_VALUE")
    # Another workspace's catalog is addressed under its own prefix.
    refused("GET", f"{UC}/schemas", 403, "PERMISSION_DENIED", params={"catalog_name": "staging"})
    assert call(server, "GET", f"{UC}/schemas", workspace="staging", params={"catalog_name": "staging"}).status_code == 200
    # prod is bound to dev read-only: listed, but not written.
    assert call(server, "GET", f"{UC}/schemas", params={"catalog_name": "prod"}).status_code == 200
    refused("POST", f"{UC}/schemas", 403, "PERMISSION_DENIED", json={"name": "x", "catalog_name": "prod"})

    # A forced drop removes the managed tables' files.
    paths = [local_path(t) for t in first["tables"] + rest["tables"]]
    assert call(server, "DELETE", f"{UC}/schemas/dev.{schema}", params={"force": "true"}).status_code == 200
    assert not any(os.path.exists(p) for p in paths)


def test_members_read_owners_write(server, schema):
    info = payments_table(server, schema)
    full_name = info["full_name"]
    member_name = f"reader-{uuid.uuid4().hex[:6]}"
    member = server.create_user(member_name, "long-password-1")
    outsider = server.create_user(f"outsider-{uuid.uuid4().hex[:6]}", "long-password-2", workspaces=("staging",))
    batch = pa.table({"id": pa.array([1], pa.int64()), "amount": [1.0], "country": ["FR"]})
    assert write(server, full_name, batch).status_code == 200

    # Members see the table; reading its rows takes SELECT.
    assert call(server, "GET", f"{UC}/tables/{full_name}", token=member).status_code == 200
    unread = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", token=member)
    assert unread.status_code == 403 and f"SELECT on table {full_name}" in unread.json()["message"]
    grant(server, "table", full_name, member_name, add=["SELECT"])
    assert read_back(server, full_name, token=member).num_rows == 1
    denied = write(server, full_name, batch, token=member)
    assert denied.status_code == 403
    assert denied.json()["error_code"] == "PERMISSION_DENIED"
    assert "MODIFY" in denied.json()["message"]
    assert call(server, "DELETE", f"{UC}/tables/{full_name}", token=member).status_code == 403
    # staging is not bound to dev's catalog.
    assert call(server, "GET", f"{UC}/tables/{full_name}", token=outsider, workspace="staging").status_code == 403
    assert read_back(server, full_name).num_rows == 1, "refused writes changed nothing"

    # A member's own schema and table are theirs to write.
    own = f"sandbox_{uuid.uuid4().hex[:6]}"
    assert call(server, "POST", f"{UC}/schemas", token=member, json={"name": own, "catalog_name": "dev"}).status_code == 200
    mine = payments_table_as(server, member, own)
    assert mine["owner"].startswith("reader-")
    assert write(server, mine["full_name"], batch, token=member).status_code == 200
    # External locations are for admins.
    external = call(server, "POST", f"{UC}/tables", token=member, json={"name": "ext", "catalog_name": "dev", "schema_name": own, "storage_location": "file:///tmp/x"})
    assert external.status_code == 403


def grant(server, securable_type, full_name, principal, add=(), remove=(), token=None, workspace="dev"):
    response = call(
        server,
        "PATCH",
        f"{UC}/permissions/{securable_type}/{full_name}",
        token=token,
        workspace=workspace,
        json={"changes": [{"principal": principal, "add": list(add), "remove": list(remove)}]},
    )
    assert response.status_code == 200, response.text
    return response.json()["privilege_assignments"]


def payments_table_as(server, token, schema):
    response = call(
        server,
        "POST",
        f"{UC}/tables",
        token=token,
        json={"name": "mine", "catalog_name": "dev", "schema_name": schema, "columns": [
            {"name": "id", "type_text": "bigint"}, {"name": "amount", "type_text": "double"}, {"name": "country", "type_text": "string"},
        ]},
    )
    assert response.status_code == 200, response.text
    return response.json()


def payments(ids, amounts, countries):
    return pa.table(
        {"id": pa.array(ids, pa.int64()), "amount": pa.array(amounts, pa.float64()), "country": countries},
        schema=pa.schema([("id", pa.int64()), ("amount", pa.float64()), ("country", pa.string())]),
    )


def table_op(server, full_name, op, token=None, **kwargs):
    return call(server, "POST", f"/api/2.0/tarn/tables/{full_name}/{op}", token=token, **kwargs)


def test_merge_delete_and_the_change_feed_are_seen_by_deltalake(server, schema):
    info = payments_table(server, schema, properties={"delta.enableChangeDataFeed": "true", "team": "risk"})
    full_name = f"dev.{schema}.payments"
    assert info["properties"] == {"delta.enableChangeDataFeed": "true", "team": "risk"}
    assert write(server, full_name, payments([1, 2, 3], [10.0, 20.0, 30.0], ["FR", "DE", "FR"])).status_code == 200

    merged = call(
        server,
        "POST",
        f"/api/2.0/tarn/tables/{full_name}/merge",
        params={"keys": "id"},
        data=arrow_body(payments([2, 4], [25.0, 40.0], ["DE", "IT"])),
    )
    assert merged.status_code == 200, merged.text
    assert merged.json() == {
        "version": 2,
        "num_source_rows": 2,
        "num_inserted_rows": 1,
        "num_updated_rows": 1,
        "num_deleted_rows": 0,
    }
    deleted = table_op(server, full_name, "delete", json={"predicate": "country = 'FR' AND amount > 15"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"version": 3, "num_deleted_rows": 1}

    expected = [
        {"id": 1, "amount": 10.0, "country": "FR"},
        {"id": 2, "amount": 25.0, "country": "DE"},
        {"id": 4, "amount": 40.0, "country": "IT"},
    ]
    assert rows(read_back(server, full_name)) == expected
    table = deltalake.DeltaTable(local_path(info))
    assert table.version() == 3
    assert rows(table.to_pyarrow_table()) == expected
    assert table.metadata().configuration["delta.enableChangeDataFeed"] == "true"

    # The change feed, as tarn serves it and as deltalake reads it from the same files.
    feed = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/changes", params={"starting_version": 2})
    assert feed.status_code == 200, feed.text
    changes = pa.ipc.open_stream(feed.content).read_all().to_pylist()
    seen = sorted((c["_commit_version"], c["_change_type"], c["id"]) for c in changes)
    assert seen == [
        (2, "insert", 4),
        (2, "update_postimage", 2),
        (2, "update_preimage", 2),
        (3, "delete", 3),
    ]
    theirs = pa.table(table.load_cdf(starting_version=2).read_all()).to_pylist()
    assert sorted((c["_commit_version"], c["_change_type"], c["id"]) for c in theirs) == seen

    # Bad input changes nothing.
    for op, kwargs, message in [
        ("merge", {"params": {"keys": "nope"}, "data": arrow_body(payments([9], [9.0], ["FR"]))}, "Merge key 'nope'"),
        ("merge", {"data": arrow_body(payments([9], [9.0], ["FR"]))}, "at least one key"),
        ("merge", {"params": {"keys": "id"}, "data": b"not arrow"}, "not valid Arrow IPC"),
        ("delete", {"json": {"predicate": "id = 1; DROP TABLE x"}}, "Invalid predicate"),
        ("delete", {"json": {"predicate": "secret_column = 1"}}, "Invalid predicate"),
        ("delete", {"json": {}}, "needs a predicate"),
    ]:
        refused = table_op(server, full_name, op, **kwargs)
        assert refused.status_code == 400, (op, kwargs, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert message in refused.json()["message"], refused.text
    assert deltalake.DeltaTable(local_path(info)).version() == 3
    no_feed_info = payments_table(server, schema, name="no_feed")
    no_feed = call(server, "GET", f"/api/2.0/tarn/tables/{no_feed_info['full_name']}/changes")
    assert no_feed.status_code == 400
    assert "delta.enableChangeDataFeed" in no_feed.json()["message"]


def test_optimize_vacuum_and_time_travel_by_timestamp(server, schema):
    info = payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    for i in range(4):
        assert write(server, full_name, payments([i], [float(i)], ["FR"])).status_code == 200
    history = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/history").json()["history"]
    second_write = history[2]["timestamp"]
    assert history[2]["version"] == 2

    at_second = read_back(server, full_name, timestamp=str(second_write))
    assert [r["id"] for r in rows(at_second)] == [0, 1]
    before = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", params={"timestamp": "2001-01-01T00:00:00Z"})
    assert before.status_code == 400 and "did not exist yet" in before.json()["message"]
    both = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", params={"timestamp": "1", "version": "1"})
    assert both.status_code == 400

    optimized = table_op(server, full_name, "optimize", json={})
    assert optimized.status_code == 200, optimized.text
    assert optimized.json()["num_files_removed"] == 4
    assert optimized.json()["num_files_added"] == 1
    table = deltalake.DeltaTable(local_path(info))
    assert len(table.file_uris()) == 1
    assert [r["id"] for r in rows(table.to_pyarrow_table())] == [0, 1, 2, 3]

    guarded = table_op(server, full_name, "vacuum", json={"retention_hours": 1})
    assert guarded.status_code == 400
    assert "168 hours" in guarded.json()["message"]
    dry = table_op(server, full_name, "vacuum", json={"retention_hours": 0, "skip_retention_check": True, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert len(dry.json()["files_deleted"]) == 4
    assert [r["id"] for r in rows(read_back(server, full_name, version="2"))] == [0, 1]
    done = table_op(server, full_name, "vacuum", json={"retention_hours": 0, "skip_retention_check": True})
    assert done.status_code == 200 and len(done.json()["files_deleted"]) == 4
    assert [r["id"] for r in rows(read_back(server, full_name))] == [0, 1, 2, 3]
    gone = call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", params={"version": "2"})
    assert gone.status_code >= 400 and full_name in gone.json()["message"]
    assert [r["id"] for r in rows(deltalake.DeltaTable(local_path(info)).to_pyarrow_table())] == [0, 1, 2, 3]


def test_members_may_not_change_tables_they_do_not_own(server, schema):
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    member = server.create_user(f"member-{uuid.uuid4().hex[:6]}", "long-password-3")
    for op, kwargs in [
        ("merge", {"params": {"keys": "id"}, "data": arrow_body(payments([1], [1.0], ["FR"]))}),
        ("delete", {"json": {"predicate": "id = 1"}}),
        ("optimize", {"json": {}}),
        ("vacuum", {"json": {}}),
    ]:
        refused = table_op(server, full_name, op, token=member, **kwargs)
        assert refused.status_code == 403, (op, refused.text)
        assert refused.json()["error_code"] == "PERMISSION_DENIED"


def test_grants_for_each_privilege_and_read_only_bindings(server, schema):
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    assert write(server, full_name, payments([1, 2], [1.0, 2.0], ["FR", "DE"])).status_code == 200
    name = f"analyst-{uuid.uuid4().hex[:6]}"
    analyst = server.create_user(name, "long-password-7")

    # SELECT: the table API and SQL refuse alike, then both allow.
    assert call(server, "GET", f"/api/2.0/tarn/tables/{full_name}/data", token=analyst).status_code == 403
    sql = call(server, "POST", "/api/2.0/sql/statements", token=analyst, json={"statement": f"SELECT count(*) FROM {full_name}"}).json()
    assert sql["status"]["error"]["error_code"] == "PERMISSION_DENIED" and "SELECT" in sql["status"]["error"]["message"]
    assignments = grant(server, "schema", f"dev.{schema}", name, add=["SELECT"])
    assert assignments == [{"principal": name, "privileges": ["SELECT"]}]
    assert read_back(server, full_name, token=analyst).num_rows == 2
    sql = call(server, "POST", "/api/2.0/sql/statements", token=analyst, json={"statement": f"SELECT count(*) FROM {full_name}"}).json()
    assert sql["result"]["data_array"] == [["2"]]

    # MODIFY: writes through the API and SQL.
    assert write(server, full_name, payments([3], [3.0], ["IT"]), token=analyst).status_code == 403
    grant(server, "table", full_name, name, add=["MODIFY"])
    assert write(server, full_name, payments([3], [3.0], ["IT"]), token=analyst).status_code == 200
    inserted = call(server, "POST", "/api/2.0/sql/statements", token=analyst, json={"statement": f"INSERT INTO {full_name} VALUES (4, 4.0, 'ES')"}).json()
    assert inserted["status"]["state"] == "SUCCEEDED", inserted
    listed = call(server, "GET", f"{UC}/permissions/table/{full_name}").json()["privilege_assignments"]
    assert listed == [{"principal": name, "privileges": ["MODIFY"]}]
    # Only owners and admins grant; privileges must fit the securable.
    assert call(server, "PATCH", f"{UC}/permissions/table/{full_name}", token=analyst, json={"changes": [{"principal": name, "add": ["SELECT"]}]}).status_code == 403
    for body, status in [
        ({"changes": [{"principal": name, "add": ["USE_CATALOG"]}]}, 400),
        ({"changes": [{"principal": name, "add": ["FLY"]}]}, 400),
        ({"changes": [{"principal": "nobody-here", "add": ["SELECT"]}]}, 404),
    ]:
        assert call(server, "PATCH", f"{UC}/permissions/table/{full_name}", json=body).status_code == status, body
    grant(server, "table", full_name, name, remove=["MODIFY"])
    assert write(server, full_name, payments([5], [5.0], ["FR"]), token=analyst).status_code == 403

    # prod's catalog, bound read-only to dev at first start: USE_CATALOG, USE_SCHEMA, SELECT.
    bindings = call(server, "GET", f"{UC}/bindings/catalog/prod").json()["bindings"]
    assert {b["workspace"] for b in bindings} == {"dev", "staging"}
    prod_schema = f"gold_{uuid.uuid4().hex[:6]}"
    assert call(server, "POST", f"{UC}/schemas", workspace="prod", json={"name": prod_schema, "catalog_name": "prod"}).status_code == 200
    prod_info = call(server, "POST", f"{UC}/tables", workspace="prod", json={
        "name": "scores", "catalog_name": "prod", "schema_name": prod_schema,
        "columns": [{"name": "id", "type_text": "bigint"}, {"name": "amount", "type_text": "double"}, {"name": "country", "type_text": "string"}],
    })
    assert prod_info.status_code == 200, prod_info.text
    prod_table = f"prod.{prod_schema}.scores"
    assert write(server, prod_table, payments([7], [7.0], ["FR"]), workspace="prod").status_code == 200
    for missing, securable_type, securable in [
        ("USE_CATALOG", "catalog", "prod"),
        ("USE_SCHEMA", "schema", f"prod.{prod_schema}"),
        ("SELECT", "table", prod_table),
    ]:
        refused = call(server, "GET", f"/api/2.0/tarn/tables/{prod_table}/data", token=analyst)
        assert refused.status_code == 403 and f"lacks {missing}" in refused.json()["message"], refused.text
        grant(server, securable_type, securable, name, add=[missing], workspace="prod")
    assert read_back(server, prod_table, token=analyst).num_rows == 1
    # A join across dev and prod in SQL, from dev.
    joined = call(server, "POST", "/api/2.0/sql/statements", token=analyst, json={
        "statement": f"SELECT count(*) FROM {full_name} d JOIN {prod_table} p ON d.country = p.country",
    }).json()
    assert joined["result"]["data_array"] == [["1"]], joined
    # Writes to prod from dev are refused even with MODIFY, even for admins.
    grant(server, "table", prod_table, name, add=["MODIFY"], workspace="prod")
    for token in (analyst, None):
        refused = write(server, prod_table, payments([8], [8.0], ["FR"]), token=token)
        assert refused.status_code == 403 and "read-only" in refused.json()["message"], refused.text
        via_sql = call(server, "POST", "/api/2.0/sql/statements", token=token, json={"statement": f"DELETE FROM {prod_table}"}).json()
        assert via_sql["status"]["error"]["error_code"] == "PERMISSION_DENIED"
    assert call(server, "POST", f"{UC}/schemas", json={"name": "nope", "catalog_name": "prod"}).status_code == 403
    # Unbinding cuts dev off; only admins bind.
    assert call(server, "PATCH", f"{UC}/bindings/catalog/prod", token=analyst, json={"remove": [{"workspace": "dev"}]}).status_code == 403
    unbound = call(server, "PATCH", f"{UC}/bindings/catalog/prod", json={"remove": [{"workspace": "dev"}]})
    assert {b["workspace"] for b in unbound.json()["bindings"]} == {"staging"}
    cut = call(server, "GET", f"/api/2.0/tarn/tables/{prod_table}/data", token=analyst)
    assert cut.status_code == 403 and "not bound" in cut.json()["message"]
    call(server, "PATCH", f"{UC}/bindings/catalog/prod", json={"add": [{"workspace": "dev"}]})
    assert read_back(server, prod_table, token=analyst).num_rows == 1


def test_tags_on_tables_and_schemas(server, schema):
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    tags = f"{UC}/tags/table/{full_name}"
    changed = call(server, "PATCH", tags, json={"set": {"pii": "none", "tier": "bronze"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["tags"] == {"pii": "none", "tier": "bronze"}
    assert call(server, "PATCH", tags, json={"set": {"tier": "silver"}, "unset": ["pii"]}).json()["tags"] == {"tier": "silver"}
    assert call(server, "PATCH", f"{UC}/tags/schema/dev.{schema}", json={"set": {"team": "payments"}}).json()["tags"] == {"team": "payments"}

    # Members see tags where they may use the schema; only owners and admins change them.
    member_name = f"tagger-{uuid.uuid4().hex[:6]}"
    member = server.create_user(member_name, "long-password-8")
    assert call(server, "GET", tags, token=member).json()["tags"] == {"tier": "silver"}
    denied = call(server, "PATCH", tags, token=member, json={"set": {"tier": "gold"}})
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"

    for body, message in [
        ({"set": {"": "x"}}, "tag key"),
        ({"set": {"k": "v" * 1001}}, "value of tag"),
        ({"set": {"k": "v"}, "unset": ["k"]}, "both set and unset"),
        ({"set": {f"k{i}": "v" for i in range(60)}}, "at most 50"),
    ]:
        bad = call(server, "PATCH", tags, json=body)
        assert bad.status_code == 400 and message in bad.json()["message"], bad.text
    assert call(server, "GET", tags).json()["tags"] == {"tier": "silver"}, "refused changes change nothing"
    assert call(server, "GET", f"{UC}/tags/table/dev.{schema}.nope").status_code == 404
    assert call(server, "GET", f"{UC}/tags/volume/x").status_code == 400

    # Tags go with their table.
    assert call(server, "DELETE", f"{UC}/tables/{full_name}").status_code == 200
    payments_table(server, schema)
    assert call(server, "GET", tags).json()["tags"] == {}


def test_databricks_sdk_lists_the_catalog_with_its_defaults(server, schema, caplog):
    """The SDK's list calls send max_results=0 ("a page of the server's size") and page with
    the tokens; its client first asks the host's /.well-known/databricks-config."""
    from databricks.sdk import WorkspaceClient

    for name in ("a", "b", "c"):
        payments_table(server, schema, name)
    with caplog.at_level("WARNING", logger="databricks.sdk"):
        w = WorkspaceClient(host=server.base, token=server.admin_token)
    assert not [r for r in caplog.records if "host metadata" in r.getMessage()]
    assert {c.name for c in w.catalogs.list()} == {"dev", "prod"}
    assert schema in {s.name for s in w.schemas.list(catalog_name="dev")}
    tables = list(w.tables.list(catalog_name="dev", schema_name=schema))
    assert [t.full_name for t in tables] == [f"dev.{schema}.{n}" for n in ("a", "b", "c")]
    assert [c.name for c in tables[0].columns] == ["id", "amount", "country"]
    paged = list(w.tables.list(catalog_name="dev", schema_name=schema, max_results=1))
    assert [t.name for t in paged] == ["a", "b", "c"]
    assert w.tables.get(f"dev.{schema}.b").comment == "card payments"
    negative = call(server, "GET", f"{UC}/tables", params={"catalog_name": "dev", "schema_name": schema, "max_results": -1})
    assert negative.status_code == 400 and negative.json()["error_code"] == "INVALID_PARAMETER_VALUE"
