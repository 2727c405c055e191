"""A lake root on an S3-compatible object store (moto's server standing in for S3): managed
tables written, read, merged, time-travelled and queried through tarn, read by the `deltalake`
package straight from the bucket, concurrent writers both landing, and dropped tables' objects
removed."""

import concurrent.futures
import uuid

import deltalake
import pyarrow as pa
import pytest
import requests

from conftest import start_tarn
from test_lakehouse import UC, arrow_body, call, payments, read_back, rows, write
from test_s3_artifacts import aws_env, s3_endpoint  # noqa: F401 (s3_endpoint is a fixture)

BUCKET = "tarn-lake"


@pytest.fixture(scope="module")
def s3_lake(s3_endpoint):  # noqa: F811
    assert requests.put(f"{s3_endpoint}/{BUCKET}", timeout=10).status_code == 200
    started, stop = start_tarn(extra_args=["--lake-root", f"s3://{BUCKET}/warehouse"], extra_env=aws_env(s3_endpoint))
    try:
        yield started
    finally:
        stop()


def storage_options(endpoint):
    """The same, as the deltalake package takes it."""
    return {**aws_env(endpoint), "AWS_ENDPOINT_URL": endpoint}


def objects(endpoint, prefix):
    listing = requests.get(f"{endpoint}/{BUCKET}?list-type=2&prefix={prefix}", timeout=10).text
    return listing.count("<Key>")


def test_managed_tables_live_in_the_bucket(s3_lake, s3_endpoint):  # noqa: F811
    schema = f"s3_{uuid.uuid4().hex[:8]}"
    assert call(s3_lake, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
    created = call(
        s3_lake,
        "POST",
        f"{UC}/tables",
        json={
            "name": "payments", "catalog_name": "dev", "schema_name": schema, "table_type": "MANAGED",
            "columns": [
                {"name": "id", "type_text": "bigint", "type_name": "LONG", "position": 0},
                {"name": "amount", "type_text": "double", "type_name": "DOUBLE", "position": 1},
                {"name": "country", "type_text": "string", "type_name": "STRING", "position": 2},
            ],
        },
    )
    assert created.status_code == 200, created.text
    location = created.json()["storage_location"]
    assert location.startswith(f"s3://{BUCKET}/warehouse/dev/{schema}/payments-")
    full_name = f"dev.{schema}.payments"
    assert write(s3_lake, full_name, payments([1, 2], [10.0, 20.0], ["FR", "DE"])).json()["version"] == 1

    # Two writers at once: both commits land, one after the other (conditional puts on S3).
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        versions = sorted(pool.map(lambda i: write(s3_lake, full_name, payments([i], [1.0], ["IT"])).json()["version"], [3, 4]))
    assert versions == [2, 3]
    merged = call(
        s3_lake, "POST", f"/api/2.0/tarn/tables/{full_name}/merge", params={"keys": "id"},
        data=arrow_body(payments([1, 5], [11.0, 50.0], ["FR", "NL"])),
        headers={"Content-Type": "application/vnd.apache.arrow.stream"},
    )
    assert merged.status_code == 200, merged.text
    assert [r["id"] for r in rows(read_back(s3_lake, full_name))] == [1, 2, 3, 4, 5]
    assert [r["amount"] for r in rows(read_back(s3_lake, full_name, version=1))] == [10.0, 20.0]

    # The deltalake package reads the same table from the bucket.
    theirs = deltalake.DeltaTable(location, storage_options=storage_options(s3_endpoint))
    assert theirs.version() == 4
    assert sorted(theirs.to_pyarrow_table().column("id").to_pylist()) == [1, 2, 3, 4, 5]

    # SQL over it, writing a new managed table into the bucket too.
    answer = call(s3_lake, "POST", "/api/2.0/sql/statements", json={"statement": f"CREATE TABLE {schema}.totals AS SELECT country, sum(amount) AS total FROM {schema}.payments GROUP BY country"}).json()
    assert answer["status"]["state"] == "SUCCEEDED", answer
    totals = call(s3_lake, "POST", "/api/2.0/sql/statements", json={"statement": f"SELECT total FROM {schema}.totals WHERE country = 'FR'"}).json()
    assert totals["result"]["data_array"] == [["11.0"]]

    # Dropping a managed table removes its objects.
    prefix = location.removeprefix(f"s3://{BUCKET}/")
    assert objects(s3_endpoint, prefix) > 0
    assert call(s3_lake, "DELETE", f"{UC}/tables/{full_name}").status_code == 200
    assert objects(s3_endpoint, prefix) == 0


def test_external_tables_on_s3_and_bad_locations(s3_lake, s3_endpoint):  # noqa: F811
    schema = f"s3x_{uuid.uuid4().hex[:8]}"
    assert call(s3_lake, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
    outside = f"s3://{BUCKET}/landing/clicks-{uuid.uuid4().hex[:6]}"
    deltalake.write_deltalake(outside, pa.table({"n": pa.array([1, 2, 3], pa.int64())}), storage_options=storage_options(s3_endpoint))
    registered = call(s3_lake, "POST", f"{UC}/tables", json={"name": "clicks", "catalog_name": "dev", "schema_name": schema, "table_type": "EXTERNAL", "storage_location": outside})
    assert registered.status_code == 200, registered.text
    assert sorted(read_back(s3_lake, f"dev.{schema}.clicks").column("n").to_pylist()) == [1, 2, 3]
    inside = call(s3_lake, "POST", f"{UC}/tables", json={"name": "inside", "catalog_name": "dev", "schema_name": schema, "table_type": "EXTERNAL", "storage_location": f"s3://{BUCKET}/warehouse/x"})
    assert inside.status_code == 400 and "lake root" in inside.json()["message"]
    other = call(s3_lake, "POST", f"{UC}/tables", json={"name": "gcs", "catalog_name": "dev", "schema_name": schema, "table_type": "EXTERNAL", "storage_location": "gs://bucket/t"})
    assert other.status_code == 400 and other.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Dropping an external table leaves its objects.
    assert call(s3_lake, "DELETE", f"{UC}/tables/dev.{schema}.clicks").status_code == 200
    assert deltalake.DeltaTable(outside, storage_options=storage_options(s3_endpoint)).version() == 0
