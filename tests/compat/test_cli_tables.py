"""`tarn tables`, `tarn sql` and `tarn lineage` as clients of a running server: what they print
is what the API holds, a member's token is refused exactly what the API refuses (the server's
message shown, a non-zero exit), and a refused or bad command changes nothing."""

import json
import uuid

import polars as pl
import pytest

from test_lakehouse import UC, call, payments, payments_table, read_back, schema, write  # noqa: F401 (schema is a fixture)

DATA = "/api/2.0/tarn/tables"


def refused(done, *words):
    """A command the server refused: non-zero exit, its message (and code) on stderr."""
    assert done.returncode != 0, done.stdout
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def version_of(server, full_name):
    return call(server, "GET", f"{DATA}/{full_name}/history", params={"max_results": 1}).json()["history"][0]["version"]


def tags_of(server, securable_type, full_name):
    return call(server, "GET", f"{UC}/tags/{securable_type}/{full_name}").json()["tags"]


@pytest.fixture
def member(server):
    name = f"cli-member-{uuid.uuid4().hex[:6]}"
    return name, server.create_user(name, "long-password-cli")


def test_tables_commands_show_what_the_api_holds(server, tmp_path):
    schema_name = f"cli_{uuid.uuid4().hex[:8]}"
    created = server.cli("tables", "create-schema", f"dev.{schema_name}", "--comment", "from the cli")
    assert created.stdout.strip() == f"created schema dev.{schema_name}"
    assert call(server, "GET", f"{UC}/schemas/dev.{schema_name}").json()["comment"] == "from the cli"
    listed = server.cli("tables", "schemas").stdout.splitlines()
    assert listed[0].split() == ["SCHEMA", "OWNER", "COMMENT"]
    assert [f"dev.{schema_name}", "admin", "from", "the", "cli"] in [line.split() for line in listed]

    table = f"dev.{schema_name}.scores"
    made = server.cli(
        "tables", "create", table, "--columns", "id bigint, score double, team string",
        "--partition-by", "team", "--comment", "team scores", "--property", "delta.enableChangeDataFeed=true",
    )
    info = call(server, "GET", f"{UC}/tables/{table}").json()
    assert made.stdout.strip() == f"created table {table} at {info['storage_location']}"
    assert info["comment"] == "team scores" and info["properties"]["delta.enableChangeDataFeed"] == "true"
    rows = [line.split() for line in server.cli("tables", "list", f"dev.{schema_name}").stdout.splitlines()]
    assert rows == [["TABLE", "TYPE", "COLUMNS", "OWNER", "COMMENT"], [table, "MANAGED", "3", "admin", "team", "scores"]]

    (tmp_path / "scores.csv").write_text("team,id,score\nred,1,0.5\nblue,2,0.7\nred,3,0.9\n")
    assert server.cli("tables", "write", table, str(tmp_path / "scores.csv")).stdout.strip() == "wrote 3 rows: version 1"
    assert sorted(read_back(server, table).column("id").to_pylist()) == [1, 2, 3]
    head = server.cli("tables", "head", table, "--limit", "2").stdout
    assert "| id | score | team |" in head and len([line for line in head.splitlines() if line.startswith("| ")]) == 3

    tagged = server.cli("tables", "tag", table, "tier=bronze", "pii=none")
    assert tagged.stdout.strip() == f"{table}: pii=none, tier=bronze"
    assert server.cli("tables", "tag", table, "--unset", "pii").stdout.strip() == f"{table}: tier=bronze"
    assert tags_of(server, "table", table) == {"tier": "bronze"}
    assert server.cli("tables", "tag", f"dev.{schema_name}", "team=cli").stdout.strip() == f"dev.{schema_name}: team=cli"
    assert tags_of(server, "schema", f"dev.{schema_name}") == {"team": "cli"}

    assert server.cli("tables", "delete", table, "--where", "id = 2").stdout.strip() == "deleted 1 rows: version 2"
    assert sorted(read_back(server, table).column("id").to_pylist()) == [1, 3]
    # Time travel and the change feed come from the server's data API.
    assert "| 2  |" in server.cli("tables", "head", table, "--version", "1").stdout
    changes = server.cli("tables", "changes", table, "--from", "2").stdout
    assert "delete" in changes and "| 2 " in changes and "| 1 " not in changes

    shown = server.cli("tables", "show", table).stdout
    assert shown.splitlines()[0] == f"{table} (MANAGED, owner admin)"
    assert f"location: {info['storage_location']}" in shown and "tags:     tier=bronze" in shown
    assert ["team", "string", "true", "0"] in [line.split() for line in shown.splitlines()]
    history = call(server, "GET", f"{DATA}/{table}/history", params={"max_results": 10}).json()["history"]
    commit_lines = [line.split()[0] for line in shown.split("BY\n", 1)[1].splitlines()]
    assert commit_lines == [str(c["version"]) for c in history] == ["2", "1", "0"]

    optimized = server.cli("tables", "optimize", table).stdout
    assert optimized.startswith("compacted ") and optimized.strip().endswith(f"version {version_of(server, table)}")
    vacuumed = server.cli("tables", "vacuum", table, "--dry-run").stdout
    assert vacuumed.splitlines()[-1].startswith("would delete ")


def test_tarn_sql_formats_empty_results_statements_and_workspaces(server, schema, tmp_path):
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    assert write(server, full_name, payments([1, 2, 3], [10.0, 20.0, None], ["FR", "DE", "FR"])).status_code == 200

    lines = server.cli("sql", "--format", "json", f"SELECT id, amount FROM {schema}.payments ORDER BY id").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [{"id": 1, "amount": 10.0}, {"id": 2, "amount": 20.0}, {"id": 3}]
    empty = server.cli("sql", f"SELECT id, country FROM {schema}.payments WHERE id > 100").stdout
    assert "| id | country |" in empty and "(0 rows)" in empty
    assert server.cli("sql", "--format", "csv", f"SELECT country FROM {schema}.payments WHERE id > 100").stdout.split() == ["country"]
    # Results of any size come whole, through the statement's result files.
    many = server.cli("sql", "--format", "csv", "SELECT value FROM generate_series(1, 30000) ORDER BY value").stdout.split()
    assert len(many) == 30001 and many[-1] == "30000"

    inserted = server.cli("sql", f"INSERT INTO {full_name} VALUES (4, 40.0, 'IT')").stdout
    assert "num_affected_rows" in inserted and "| 1 " in inserted
    assert read_back(server, full_name).num_rows == 4
    assert server.cli("sql", f"CREATE VIEW {schema}.french AS SELECT id FROM {schema}.payments WHERE country = 'FR'").stdout.strip() == "OK"
    out = tmp_path / "french.parquet"
    written = server.cli("sql", "--format", "parquet", "--output", str(out), f"SELECT * FROM {schema}.french ORDER BY id")
    assert "2 rows written to" in written.stderr
    assert pl.read_parquet(out)["id"].to_list() == [1, 3]

    # Unqualified names resolve in --workspace's catalog, and in --schema.
    staging_schema = f"cli_{uuid.uuid4().hex[:8]}"
    server.cli("tables", "create-schema", f"staging.{staging_schema}")
    server.cli("tables", "create", f"staging.{staging_schema}.t", "--columns", "id bigint")
    server.cli("sql", "--workspace", "staging", "--schema", staging_schema, "INSERT INTO t VALUES (7)")
    counted = server.cli("sql", "--format", "csv", "--schema", staging_schema, "SELECT count(*) AS n FROM t", workspace="staging")
    assert counted.stdout.split() == ["n", "1"]
    missing = server.cli("sql", "--schema", staging_schema, "SELECT count(*) FROM t", check=False)
    refused(missing, "t")

    parquet_to_terminal = server.cli("sql", "--format", "parquet", "SELECT 1", check=False)
    refused(parquet_to_terminal, "--output")


def test_lineage_command_shows_the_api_graph(server, schema):
    payments_table(server, schema)
    assert write(server, f"dev.{schema}.payments", payments([1], [1.0], ["FR"])).status_code == 200
    copy = f"dev.{schema}.copy"
    server.cli("sql", f"CREATE TABLE {copy} AS SELECT * FROM {schema}.payments")
    api = call(server, "GET", "/api/2.0/tarn/lineage", params={"table_name": copy, "depth": 3}).json()
    assert json.loads(server.cli("lineage", copy, "--format", "json").stdout) == api
    tree = server.cli("lineage", copy).stdout
    assert tree.startswith(f"{copy}\n") and f"└── dev.{schema}.payments" in tree
    assert "CREATE TABLE AS SELECT by admin" in tree


def test_members_are_refused_what_the_api_refuses(server, schema, member, tmp_path):
    member_name, token = member
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    assert write(server, full_name, payments([1, 2], [1.0, 2.0], ["FR", "DE"])).status_code == 200
    before = version_of(server, full_name)

    # Members see the table's entry; its rows and history take SELECT.
    shown = server.cli("tables", "show", full_name, token=token)
    assert "history not shown" in shown.stdout and f"SELECT on table {full_name}" in shown.stdout
    refused(server.cli("tables", "head", full_name, token=token, check=False), f"SELECT on table {full_name}", "PERMISSION_DENIED")
    refused(server.cli("sql", f"SELECT count(*) FROM {full_name}", token=token, check=False), "SELECT", "PERMISSION_DENIED")
    refused(server.cli("lineage", full_name, token=token, check=False), "PERMISSION_DENIED")

    # Writes take MODIFY, tags ownership: each refused, nothing changed.
    (tmp_path / "more.csv").write_text("id,amount,country\n9,9.0,IT\n")
    refused(server.cli("tables", "write", full_name, str(tmp_path / "more.csv"), token=token, check=False), "MODIFY", "PERMISSION_DENIED")
    refused(server.cli("tables", "merge", full_name, str(tmp_path / "more.csv"), "--keys", "id", token=token, check=False), "MODIFY")
    refused(server.cli("tables", "delete", full_name, "--where", "id = 1", token=token, check=False), "MODIFY")
    refused(server.cli("tables", "optimize", full_name, token=token, check=False), "PERMISSION_DENIED")
    refused(server.cli("tables", "vacuum", full_name, token=token, check=False), "PERMISSION_DENIED")
    refused(server.cli("sql", f"DELETE FROM {full_name}", token=token, check=False), "PERMISSION_DENIED")
    refused(server.cli("tables", "tag", full_name, "tier=gold", token=token, check=False), "PERMISSION_DENIED")
    assert version_of(server, full_name) == before
    assert read_back(server, full_name).num_rows == 2
    assert tags_of(server, "table", full_name) == {}

    # Once granted SELECT, the same commands read.
    call(server, "PATCH", f"{UC}/permissions/table/{full_name}", json={"changes": [{"principal": member_name, "add": ["SELECT"]}]})
    assert "| 1  |" in server.cli("tables", "head", full_name, token=token).stdout
    assert "history not shown" not in server.cli("tables", "show", full_name, token=token).stdout
    assert server.cli("sql", "--format", "csv", f"SELECT count(*) AS n FROM {full_name}", token=token).stdout.split() == ["n", "2"]

    # A member's own schema is theirs to fill through the CLI.
    own = f"sandbox_{uuid.uuid4().hex[:6]}"
    server.cli("tables", "create-schema", f"dev.{own}", token=token)
    server.cli("tables", "create", f"dev.{own}.mine", "--columns", "id bigint, amount double, country string", token=token)
    assert "wrote 1 rows" in server.cli("tables", "write", f"dev.{own}.mine", str(tmp_path / "more.csv"), token=token).stdout
    assert call(server, "GET", f"{UC}/tables/dev.{own}.mine").json()["owner"] == member_name

    # prod's catalog is bound read-only to dev: a member of dev alone reads it with grants, and
    # writes to it are refused.
    prod_schema = f"gold_{uuid.uuid4().hex[:6]}"
    prod_table = f"prod.{prod_schema}.scores"
    server.cli("tables", "create-schema", f"prod.{prod_schema}")
    server.cli("tables", "create", prod_table, "--columns", "id bigint, amount double, country string")
    assert "wrote 1 rows" in server.cli("tables", "write", prod_table, str(tmp_path / "more.csv")).stdout
    refused(server.cli("tables", "head", prod_table, token=token, check=False), "USE_CATALOG")
    for securable_type, securable, privilege in [("catalog", "prod", "USE_CATALOG"), ("schema", f"prod.{prod_schema}", "USE_SCHEMA"), ("table", prod_table, "SELECT")]:
        granted = call(server, "PATCH", f"{UC}/permissions/{securable_type}/{securable}", workspace="prod", json={"changes": [{"principal": member_name, "add": [privilege]}]})
        assert granted.status_code == 200, granted.text
    assert "| 9  |" in server.cli("tables", "head", prod_table, token=token).stdout
    assert prod_table in server.cli("tables", "list", f"prod.{prod_schema}", token=token).stdout
    assert f"prod.{prod_schema}" in server.cli("tables", "schemas", "--catalog", "prod", token=token).stdout
    refused(server.cli("tables", "write", prod_table, str(tmp_path / "more.csv"), token=token, check=False), "PERMISSION_DENIED")
    assert read_back(server, prod_table, workspace="prod").num_rows == 1

    # A user of staging alone does not reach dev's catalog.
    outsider = server.create_user(f"cli-outsider-{uuid.uuid4().hex[:6]}", "long-password-out", workspaces=("staging",))
    refused(server.cli("tables", "list", f"dev.{schema}", token=outsider, check=False))
    refused(server.cli("tables", "schemas", token=outsider, check=False))
    refused(server.cli("tables", "create", f"dev.{schema}.theirs", "--columns", "id bigint", token=outsider, check=False))
    assert call(server, "GET", f"{UC}/tables/dev.{schema}.theirs").status_code == 404


def test_bad_commands_change_nothing(server, schema, tmp_path):
    payments_table(server, schema)
    full_name = f"dev.{schema}.payments"
    assert write(server, full_name, payments([1], [1.0], ["FR"])).status_code == 200
    before = version_of(server, full_name)

    (tmp_path / "bad.csv").write_text("id,amount,country\n2,2.0,DE\n3,oops,IT\n")
    refused(server.cli("tables", "write", full_name, str(tmp_path / "bad.csv"), check=False), "1 row(s)", "line 3", "oops")
    (tmp_path / "none.csv").write_text("id,amount,country\n")
    refused(server.cli("tables", "write", full_name, str(tmp_path / "none.csv"), "--mode", "overwrite", check=False), "No rows to write")
    (tmp_path / "extra.csv").write_text("id,amount,country,colour\n2,2.0,DE,red\n")
    refused(server.cli("tables", "write", full_name, str(tmp_path / "extra.csv"), check=False), "colour")
    refused(server.cli("tables", "merge", full_name, str(tmp_path / "bad.csv"), "--keys", "nope", check=False), "oops")
    refused(server.cli("tables", "delete", full_name, "--where", "no_such_column = 1", check=False), "no_such_column")
    refused(server.cli("tables", "tag", full_name, "k=v", "--unset", "k", check=False), "both set and unset", "INVALID_PARAMETER_VALUE")
    refused(server.cli("tables", "vacuum", full_name, "--retention-hours", "0", check=False), "retention")
    refused(server.cli("tables", "head", "no-dots", check=False), "catalog.schema.table")
    refused(server.cli("tables", "show", f"dev.{schema}.nope", check=False), "RESOURCE_DOES_NOT_EXIST")
    refused(server.cli("tables", "create", f"dev.{schema}.odd", "--columns", "id notatype", check=False), "notatype")
    refused(server.cli("sql", "SELECT * FROM nowhere.at_all", check=False), "nowhere")
    refused(server.cli("lineage", full_name, "--depth", "0", check=False), "depth", "INVALID_PARAMETER_VALUE")
    assert version_of(server, full_name) == before
    assert read_back(server, full_name).num_rows == 1
    assert tags_of(server, "table", full_name) == {}
    assert call(server, "GET", f"{UC}/tables/dev.{schema}.odd").status_code == 404
