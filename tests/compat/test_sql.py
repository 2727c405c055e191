"""SQL over the lakehouse: the Databricks-shaped statement API (`/api/2.0/sql/statements`)
and `tarn sql`, with what they write read back by the `deltalake` and `polars` packages."""

import base64
import os
import subprocess
import time
import uuid

import deltalake
import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pytest

from conftest import tarn_bin
from test_lakehouse import UC, call, grant, local_path, payments, payments_table, schema, write  # noqa: F401 (schema is a fixture)

STATEMENTS = "/api/2.0/sql/statements"


def run_sql(server, statement, token=None, workspace="dev", **options):
    response = call(server, "POST", STATEMENTS, token=token, workspace=workspace, json={"statement": statement, "warehouse_id": "any", **options})
    assert response.status_code == 200, response.text
    return response.json()


def rows_of(result):
    assert result["status"]["state"] == "SUCCEEDED", result
    return result["result"].get("data_array", [])


@pytest.fixture
def loaded(server, schema):
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    assert write(server, full_name, payments([1, 2, 3, 4], [10.0, 20.0, 30.0, None], ["FR", "DE", "FR", "IT"])).status_code == 200
    return schema


def test_queries_answer_in_the_databricks_shape(server, loaded):
    result = run_sql(
        server,
        f"SELECT country, count(*) AS n, sum(amount) AS total FROM {loaded}.payments GROUP BY country ORDER BY country",
    )
    assert result["statement_id"]
    manifest = result["manifest"]
    assert manifest["format"] == "JSON_ARRAY"
    assert manifest["total_row_count"] == 3 and manifest["truncated"] is False
    columns = manifest["schema"]["columns"]
    assert [c["name"] for c in columns] == ["country", "n", "total"]
    assert [c["type_name"] for c in columns] == ["STRING", "LONG", "DOUBLE"]
    # Values are strings, nulls are null: Databricks' JSON_ARRAY.
    assert rows_of(result) == [["DE", "1", "20.0"], ["FR", "2", "40.0"], ["IT", "1", None]]

    arrow = run_sql(server, f"SELECT id, amount FROM dev.{loaded}.payments ORDER BY id", format="ARROW_STREAM")
    table = pa.ipc.open_stream(base64.b64decode(arrow["result"]["attachment"])).read_all()
    assert table.column("id").to_pylist() == [1, 2, 3, 4]

    # Results come in chunks of 10,000 rows, linked one to the next.
    big = run_sql(server, "SELECT value FROM generate_series(1, 25000) ORDER BY value", row_limit=24000)
    assert "manifest" in big, big
    assert big["manifest"]["total_chunk_count"] == 3
    assert big["manifest"]["total_row_count"] == 24000 and big["manifest"]["truncated"] is True
    assert [c["row_count"] for c in big["manifest"]["chunks"]] == [10000, 10000, 4000]
    link = big["result"]["next_chunk_internal_link"]
    seen = len(big["result"]["data_array"])
    while link:
        chunk = call(server, "GET", link).json()
        seen += len(chunk["data_array"])
        link = chunk.get("next_chunk_internal_link")
        last = chunk
    assert seen == 24000 and last["data_array"][-1] == ["24000"]


def test_writes_through_sql_are_delta_tables_others_read(server, loaded):
    created = run_sql(
        server,
        f"CREATE TABLE {loaded}.by_country AS SELECT country, sum(amount) AS total FROM {loaded}.payments GROUP BY country",
    )
    assert rows_of(created) == [["3", "3"]]
    info = call(server, "GET", f"{UC}/tables/dev.{loaded}.by_country").json()
    assert info["table_type"] == "MANAGED"
    assert [c["name"] for c in info["columns"]] == ["country", "total"]
    theirs = deltalake.DeltaTable(local_path(info)).to_pyarrow_table().to_pylist()
    assert sorted(theirs, key=lambda r: r["country"]) == [
        {"country": "DE", "total": 20.0},
        {"country": "FR", "total": 40.0},
        {"country": "IT", "total": None},
    ]

    assert rows_of(run_sql(server, f"INSERT INTO {loaded}.by_country VALUES ('ES', 5.0)")) == [["1", "1"]]
    assert rows_of(run_sql(server, f"DELETE FROM {loaded}.by_country WHERE total IS NULL")) == [["1"]]
    frame = pl.read_delta(local_path(info)).sort("country")
    assert frame["country"].to_list() == ["DE", "ES", "FR"]
    old = run_sql(server, f"SELECT count(*) FROM {loaded}.by_country VERSION AS OF 0")
    assert rows_of(old) == [["3"]]

    run_sql(server, f"CREATE VIEW {loaded}.big_countries AS SELECT country FROM {loaded}.by_country WHERE total > 10")
    view = call(server, "GET", f"{UC}/tables/dev.{loaded}.big_countries").json()
    assert view["table_type"] == "VIEW" and "storage_location" not in view
    assert f"dev.{loaded}" in view["view_definition"]
    assert rows_of(run_sql(server, f"SELECT * FROM {loaded}.big_countries ORDER BY country")) == [["DE"], ["FR"]]
    no_data = call(server, "GET", f"/api/2.0/tarn/tables/dev.{loaded}.big_countries/data")
    assert no_data.status_code == 400 and "is a view" in no_data.json()["message"]

    run_sql(server, f"DROP TABLE {loaded}.by_country")
    assert call(server, "GET", f"{UC}/tables/dev.{loaded}.by_country").status_code == 404
    assert not os.path.exists(local_path(info))


def test_failures_waits_cancels_and_bad_input(server, loaded):
    failed = run_sql(server, "SELECT * FROM nowhere.at_all")
    assert failed["status"]["state"] == "FAILED"
    assert failed["status"]["error"]["error_code"] in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED")
    for statement in [
        "COPY (SELECT 1) TO '/tmp/tarn-copy.csv'",
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
        f"SELECT 1; DROP TABLE {loaded}.payments",
    ]:
        refused = run_sql(server, statement)
        assert refused["status"]["state"] == "FAILED", (statement, refused)
        assert refused["status"]["error"]["error_code"] == "INVALID_PARAMETER_VALUE", refused
    assert not os.path.exists("/tmp/tarn-copy.csv")
    assert call(server, "GET", f"{UC}/tables/dev.{loaded}.payments").status_code == 200

    # wait_timeout=0s answers at once; the statement is then polled.
    started = run_sql(server, f"SELECT count(*) FROM {loaded}.payments", wait_timeout="0s")
    assert started["status"]["state"] in ("PENDING", "RUNNING", "SUCCEEDED")
    deadline = time.time() + 30
    state = started
    while state["status"]["state"] not in ("SUCCEEDED", "FAILED") and time.time() < deadline:
        time.sleep(0.05)
        state = call(server, "GET", f"{STATEMENTS}/{started['statement_id']}").json()
    assert rows_of(state) == [["4"]]
    # Cancelling a finished statement leaves it as it was.
    assert call(server, "POST", f"{STATEMENTS}/{started['statement_id']}/cancel").status_code == 200
    assert call(server, "GET", f"{STATEMENTS}/{started['statement_id']}").json()["status"]["state"] == "SUCCEEDED"

    # A statement is its submitter's only.
    other = server.create_user(f"sqlpeer-{uuid.uuid4().hex[:6]}", "long-password-4")
    assert call(server, "GET", f"{STATEMENTS}/{started['statement_id']}", token=other).status_code == 404
    assert call(server, "GET", f"{STATEMENTS}/no-such-id").status_code == 404
    for body in [
        {},
        {"statement": "SELECT 1", "wait_timeout": "3s"},
        {"statement": "SELECT 1", "wait_timeout": "soon"},
        {"statement": "SELECT 1", "format": "CSV"},
        {"statement": "SELECT 1", "disposition": "EXTERNAL_LINKS"},
        {"statement": "SELECT 1", "on_wait_timeout": "LATER"},
        {"statement": "SELECT 1", "row_limit": 0},
        {"statement": "x" * (1024 * 1024 + 1)},
    ]:
        response = call(server, "POST", STATEMENTS, json=body)
        assert response.status_code == 400, (str(body)[:80], response.text)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_sql_respects_catalog_access(server, loaded):
    member_name = f"sqlmember-{uuid.uuid4().hex[:6]}"
    member = server.create_user(member_name, "long-password-5")
    denied = run_sql(server, f"SELECT count(*) FROM dev.{loaded}.payments", token=member)
    assert denied["status"]["error"]["error_code"] == "PERMISSION_DENIED"
    grant(server, "table", f"dev.{loaded}.payments", member_name, add=["SELECT"])
    outsider = server.create_user(f"sqloutsider-{uuid.uuid4().hex[:6]}", "long-password-6", workspaces=("staging",))
    assert rows_of(run_sql(server, f"SELECT count(*) FROM dev.{loaded}.payments", token=member)) == [["4"]]
    for statement in [f"INSERT INTO dev.{loaded}.payments VALUES (9, 9.0, 'FR')", f"DELETE FROM dev.{loaded}.payments", f"DROP TABLE dev.{loaded}.payments"]:
        denied = run_sql(server, statement, token=member)
        assert denied["status"]["error"]["error_code"] == "PERMISSION_DENIED", (statement, denied)
    # From staging, dev's catalog is out of reach.
    hidden = run_sql(server, f"SELECT count(*) FROM dev.{loaded}.payments", token=outsider, workspace="staging")
    assert hidden["status"]["error"]["error_code"] == "PERMISSION_DENIED"
    assert rows_of(run_sql(server, f"SELECT count(*) FROM dev.{loaded}.payments")) == [["4"]]


def test_tarn_sql_prints_and_exports(server, loaded, tmp_path):
    table = server.cli("sql", f"SELECT id, country FROM {loaded}.payments ORDER BY id")
    assert "| id | country |" in table.stdout and "(4 rows)" in table.stdout
    csv = server.cli("sql", "--format", "csv", f"SELECT id FROM {loaded}.payments ORDER BY id")
    assert csv.stdout.split() == ["id", "1", "2", "3", "4"]
    out = tmp_path / "payments.parquet"
    server.cli("sql", "--format", "parquet", "--output", str(out), f"SELECT * FROM {loaded}.payments")
    assert pl.read_parquet(out).height == 4
    bad = server.cli("sql", "SELECT * FROM nowhere", check=False)
    assert bad.returncode != 0 and "nowhere" in bad.stderr


def test_tarn_ingest_loads_files_once_and_quarantines_bad_rows(server, schema, tmp_path):
    """`tarn ingest` sends each file to the server once per table, whoever sends it; bad rows go
    to the quarantine table with their reasons; a member without rights on the schema is
    refused before anything is read."""
    landing = tmp_path / "landing"
    landing.mkdir()
    rows = ["id,amount,country,paid_at"] + [f"{i},{i * 1.5},FR,2026-11-24 08:00:{i % 60:02d}" for i in range(1, 1001)]
    (landing / "day1.csv").write_text("\n".join(rows) + "\n")
    table = f"dev.{schema}.events"
    first = server.cli("ingest", str(landing), "--table", table)
    assert "created table" in first.stdout and "1000" in first.stdout
    files = call(server, "GET", f"/api/2.0/tarn/tables/{table}/ingested-files").json()["files"]
    assert [(f["source"], f["rows_written"], f["ingested_by"]) for f in files] == [
        (str(landing / "day1.csv"), 1000, "admin")
    ]
    assert files[0]["size"] == (landing / "day1.csv").stat().st_size

    (landing / "day2.csv").write_text("id,amount,country,paid_at\n1001,2.5,DE,2026-11-25 08:00:00\n1002,oops,DE,2026-11-25 09:00:00\n1003,1.0\n")
    (landing / "notes.txt").write_text("not data")
    second = server.cli("ingest", str(landing), "--table", table)
    assert "1 files ingested before were skipped" in second.stdout
    assert f"2 bad rows are in {table}_quarantine" in second.stdout

    info = call(server, "GET", f"{UC}/tables/{table}").json()
    assert [c["type_name"] for c in info["columns"]] == ["LONG", "DOUBLE", "STRING", "TIMESTAMP"]
    frame = pl.read_delta(local_path(info))
    assert frame.height == 1001 and frame["id"].max() == 1001
    quarantine = call(server, "GET", f"{UC}/tables/{table}_quarantine").json()
    bad = pl.read_delta(local_path(quarantine)).sort("line")
    assert bad["line"].to_list() == [3, 4]
    assert "cannot read 'oops' as double" in bad["reason"][0]
    assert "expected 4 fields, found 2" in bad["reason"][1]
    assert bad["source"][0].endswith("day2.csv")
    # The same rows through SQL.
    assert rows_of(run_sql(server, f"SELECT count(*) FROM {table}")) == [["1001"]]
    # The same file sent straight to the API is skipped without being read. A member of dev
    # without MODIFY on the table is refused, as outside its workspace (where it may not create
    # tables), and nothing changes.
    again = call(
        server, "POST", f"/api/2.0/tarn/tables/{table}/ingest",
        params={"source": str(landing / "day1.csv")}, data=b"not even csv",
    )
    assert again.status_code == 200 and again.json() == {"table": table, "created": False, "skipped": True}
    member = server.create_user(f"ingest-{schema}", "long-password-1")
    (landing / "day3.csv").write_text("id,amount,country,paid_at\n2000,1.0,FR,2026-11-26 08:00:00\n")
    refused = server.cli("ingest", str(landing / "day3.csv"), "--table", table, token=member, check=False)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, refused.stderr
    refused = server.cli("ingest", str(landing / "day3.csv"), "--table", "prod.default.other", token=member, check=False)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, refused.stderr
    assert call(server, "GET", f"{UC}/tables/prod.default.other", workspace="prod").status_code == 404
    assert rows_of(run_sql(server, f"SELECT count(*) FROM {table}")) == [["1001"]]
    bad_format = call(
        server, "POST", f"/api/2.0/tarn/tables/{table}/ingest", params={"source": "/x/data.txt"}, data=b"x"
    )
    assert bad_format.status_code == 400 and "format" in bad_format.json()["message"]
    # A file that is not what it says is named as the client named it, never by where the
    # server staged it; no table is made of it.
    not_parquet = call(
        server, "POST", f"/api/2.0/tarn/tables/dev.{schema}.broken/ingest",
        params={"source": "/landing/broken.parquet"}, data=b"PAR1 but not really",
    )
    message = not_parquet.json()["message"]
    assert not_parquet.status_code == 400 and "/landing/broken.parquet" in message and "tarn-ingest" not in message
    assert call(server, "GET", f"{UC}/tables/dev.{schema}.broken").status_code == 404


def test_concurrent_writers_both_land_and_a_killed_writer_leaves_the_table_readable(server, schema, tmp_path):
    base = [tarn_bin(), "ingest"]
    env = server.cli_env()
    table = f"dev.{schema}.clicks"
    header = "id,page\n"
    seed = tmp_path / "seed.csv"
    seed.write_text(header + "0,home\n")
    subprocess.run([*base, str(seed), "--table", table], check=True, capture_output=True, env=env)

    # Two processes append to the same table at once: optimistic concurrency lets both land.
    sources = []
    for writer in range(2):
        path = tmp_path / f"writer{writer}.csv"
        path.write_text(header + "".join(f"{writer * 100000 + i},page{i % 7}\n" for i in range(1, 20001)))
        sources.append(path)
    processes = [
        subprocess.Popen([*base, str(path), "--table", table], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for path in sources
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr.decode()
    assert rows_of(run_sql(server, f"SELECT count(*) FROM {table}")) == [["40001"]]
    info = call(server, "GET", f"{UC}/tables/{table}").json()
    assert deltalake.DeltaTable(local_path(info)).version() == 3

    # A writer killed mid-way: the table stays readable at a whole version.
    big = tmp_path / "big.csv"
    big.write_text(header + "".join(f"{i},p\n" for i in range(1_000_000, 1_600_000)))
    killed = subprocess.Popen([*base, str(big), "--table", table], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(0.3)
    killed.kill()
    killed.wait()
    count = int(rows_of(run_sql(server, f"SELECT count(*) FROM {table}"))[0][0])
    assert count in (40001, 640001)
    assert deltalake.DeltaTable(local_path(info)).to_pyarrow_table().num_rows == count
    # Files a dead writer left behind are not part of any version; vacuum takes them away.
    dry = call(server, "POST", f"/api/2.0/tarn/tables/{table}/vacuum", json={"dry_run": True})
    assert dry.status_code == 200, dry.text


def test_tarn_tables_create_write_and_merge_from_files(server, schema, tmp_path):
    def tables(*args, ok=True):
        done = server.cli("tables", *args, check=False)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done.stdout + done.stderr

    table = f"dev.{schema}.scores"
    created = tables("create", table, "--columns", "id bigint, score double, team string", "--partition-by", "team", "--property", "delta.enableChangeDataFeed=true")
    assert f"created table {table}" in created
    info = call(server, "GET", f"{UC}/tables/{table}").json()
    assert [c.get("partition_index") for c in info["columns"]] == [None, None, 0]
    (tmp_path / "day1.csv").write_text("id,score,team\n1,0.5,red\n2,0.7,blue\n")
    assert "wrote 2 rows: version 1" in tables("write", table, str(tmp_path / "day1.csv"))
    pl.DataFrame({"id": [2, 3], "score": [0.9, 0.1], "team": ["blue", "red"]}).write_parquet(tmp_path / "fix.parquet")
    merged = tables("merge", table, str(tmp_path / "fix.parquet"), "--keys", "id")
    assert "1 inserted, 1 updated" in merged and "version 2" in merged
    frame = pl.read_delta(local_path(info)).sort("id")
    assert frame["score"].to_list() == [0.5, 0.9, 0.1]
    # A file with a row that does not fit is refused whole; the table stays as it was.
    (tmp_path / "bad.csv").write_text("id,score,team\n4,0.2,red\n5,oops,red\n")
    refused = tables("write", table, str(tmp_path / "bad.csv"), ok=False)
    assert "1 row(s)" in refused and "line 3" in refused and "oops" in refused
    assert pl.read_delta(local_path(info)).height == 3
    assert "wrote 2 rows: version 3" in tables("write", table, str(tmp_path / "day1.csv"), "--mode", "overwrite")
    assert pl.read_delta(local_path(info)).height == 2
    # The writes are in the table's lineage as the token's principal's, like the API's own.
    graph = call(server, "GET", "/api/2.0/tarn/lineage", params={"table_name": table}).json()
    assert [(w["operation"], w["actor"]) for w in graph["recent_writes"]] == [("OVERWRITE", "admin"), ("MERGE", "admin"), ("APPEND", "admin")]
