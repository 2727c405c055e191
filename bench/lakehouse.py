#!/usr/bin/env python3
"""Lakehouse benchmark, side by side in one run on the same data:

  ingest   N CSV rows into a Delta table: `tarn ingest` (schema inferred, bad rows checked)
           versus polars' read_csv + write_delta
  groupby  GROUP BY over the N rows through tarn's SQL statement API (a live `tarn server`)
           versus DuckDB reading the same Parquet files in process
  filter   a selective filter (one user of 1M) over the N rows, same two sides
  merge    an upsert of M rows (half updates, half inserts) through tarn's merge API versus
           the deltalake package's merge on a copy of the same table

    python bench/lakehouse.py                 # 10 million rows, 1 million merged
    python bench/lakehouse.py --rows 200000   # smoke test

It runs under the test venv (polars, deltalake, duckdb from tests/compat/requirements.txt)
and uses `cargo build --profile quick` unless --tarn-bin is given. Query times are medians of
--repeat runs after one warm-up; tarn's include HTTP and JSON of the (small) results.
"""

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ensure_venv():
    """Re-runs the script that was started (this one, or one importing it) under the test venv
    when the packages are not importable."""
    try:
        import deltalake  # noqa: F401
        import duckdb  # noqa: F401
        import polars  # noqa: F401
    except ImportError:
        venv = subprocess.run([str(ROOT / "scripts" / "ensure-venv.sh")], check=True, capture_output=True, text=True).stdout.strip()
        python = Path(venv) / "bin" / "python"
        os.execv(str(python), [str(python), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])


def tarn_binary(args):
    if args.tarn_bin:
        return args.tarn_bin
    print("building tarn (cargo build --profile quick)...", flush=True)
    subprocess.run(["cargo", "build", "--profile", "quick", "-p", "tarn-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "quick" / "tarn")


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def make_csv(path, rows):
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(42)
    countries = np.array(["FR", "DE", "IT", "ES", "NL", "BE", "PL", "SE", "DK", "FI", "AT", "PT", "IE", "CZ", "GR", "HU", "RO", "BG", "HR", "SK"])
    frame = pl.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "user_id": rng.integers(0, 1_000_000, rows),
            "country": countries[rng.integers(0, len(countries), rows)],
            "amount": np.round(rng.random(rows) * 1000, 2),
            "paid_at": (np.datetime64("2026-01-01T00:00:00") + rng.integers(0, 300 * 86400, rows).astype("timedelta64[s]")).astype(str),
        }
    )
    frame.write_csv(path)
    return path.stat().st_size


class TarnServer:
    def __init__(self, binary, data_dir):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = "bench_" + secrets.token_hex(16)
        env = dict(os.environ, TARN_ADMIN_TOKEN=self.token, TARN_LOG=os.environ.get("TARN_LOG", "warn"))
        self.process = subprocess.Popen(
            [binary, "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ["TARN_BENCH_LOG"], "w") if os.environ.get("TARN_BENCH_LOG") else subprocess.DEVNULL,
        )
        import requests

        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                if self.session.get(f"{self.base}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("tarn server did not start")

    def sql(self, statement):
        response = self.session.post(f"{self.base}/api/2.0/sql/statements", json={"statement": statement, "wait_timeout": "50s"}, timeout=600)
        response.raise_for_status()
        body = response.json()
        if body["status"]["state"] != "SUCCEEDED":
            raise RuntimeError(f"{statement}: {body['status']}")
        return body["result"].get("data_array", [])

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def median_time(function, repeat):
    function()
    return statistics.median(timed(function)[0] for _ in range(repeat))


def main():
    ensure_venv()
    import deltalake
    import duckdb
    import polars as pl
    import pyarrow as pa
    import pyarrow.ipc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--merge-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tarn-bin")
    parser.add_argument("--workdir", help="keep data here instead of a temporary folder")
    args = parser.parse_args()
    binary = tarn_binary(args)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tarn-bench-lake-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        csv = workdir / "events.csv"
        print(f"generating {args.rows:,} rows...", flush=True)
        size = make_csv(csv, args.rows)
        print(f"  {size / 1e6:.0f} MB of CSV", flush=True)

        # Ingest, into the data dir of a running server (which made the workspaces).
        data_dir = workdir / "tarn"
        server = TarnServer(binary, data_dir)
        server.session.post(f"{server.base}/api/2.1/unity-catalog/schemas", json={"name": "bench", "catalog_name": "dev"}).raise_for_status()
        tarn_ingest, _ = timed(lambda: subprocess.run([binary, "ingest", str(csv), "--table", "dev.bench.events", "--data-dir", str(data_dir)], check=True, capture_output=True))
        polars_path = workdir / "polars-events"
        polars_ingest, _ = timed(lambda: pl.read_csv(csv, try_parse_dates=True).write_delta(str(polars_path)))
        results.append(("ingest", f"{args.rows:,} CSV rows", tarn_ingest, "polars write_delta", polars_ingest))
        print(f"  ingest: tarn {tarn_ingest:.2f}s, polars {polars_ingest:.2f}s", flush=True)

        try:
            table_dir = Path(server.session.get(f"{server.base}/api/2.1/unity-catalog/tables/dev.bench.events").json()["storage_location"].removeprefix("file://"))
            files = f"{table_dir}/*.parquet"
            queries = {
                "groupby": (
                    "SELECT country, count(*) AS n, avg(amount) AS mean, max(amount) AS top FROM {t} GROUP BY country ORDER BY country",
                ),
                "filter": ("SELECT count(*) AS n, sum(amount) AS total FROM {t} WHERE user_id = 4242",),
            }
            connection = duckdb.connect()
            for name, (query,) in queries.items():
                tarn_rows = server.sql(query.format(t="dev.bench.events"))
                duck_rows = connection.sql(query.format(t=f"read_parquet('{files}')")).fetchall()
                if len(tarn_rows) != len(duck_rows) or abs(float(tarn_rows[0][1]) - float(duck_rows[0][1])) > 1e-6 * max(1.0, abs(float(duck_rows[0][1]))):
                    raise RuntimeError(f"{name}: tarn {tarn_rows[:2]} and DuckDB {duck_rows[:2]} disagree")
                tarn_time = median_time(lambda: server.sql(query.format(t="dev.bench.events")), args.repeat)
                duck_time = median_time(lambda: connection.sql(query.format(t=f"read_parquet('{files}')")).fetchall(), args.repeat)
                results.append((name, f"{args.rows:,} rows", tarn_time, "DuckDB on the Parquet files", duck_time))
                print(f"  {name}: tarn {tarn_time * 1000:.0f} ms, DuckDB {duck_time * 1000:.0f} ms", flush=True)

            # Merge: half of the source updates existing ids, half inserts new ones.
            half = args.merge_rows // 2
            ids = list(range(0, half)) + list(range(args.rows, args.rows + half))
            source = pa.table(
                {
                    "id": pa.array(ids, pa.int64()),
                    "user_id": pa.array([i % 1_000_000 for i in ids], pa.int64()),
                    "country": pa.array(["FR"] * len(ids)),
                    "amount": pa.array([1.0] * len(ids), pa.float64()),
                    "paid_at": pa.array([None] * len(ids), pa.timestamp("us", tz="UTC")),
                }
            )
            theirs = workdir / "deltalake-merge"
            shutil.copytree(table_dir, theirs)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, source.schema) as writer:
                writer.write_table(source)
            body = sink.getvalue().to_pybytes()

            def tarn_merge():
                response = server.session.post(f"{server.base}/api/2.0/tarn/tables/dev.bench.events/merge", params={"keys": "id"}, data=body, timeout=600)
                response.raise_for_status()
                return response.json()

            tarn_time, merged = timed(tarn_merge)
            if merged["num_updated_rows"] != half or merged["num_inserted_rows"] != half:
                raise RuntimeError(f"unexpected merge result {merged}")

            def their_merge():
                table = deltalake.DeltaTable(str(theirs))
                return table.merge(source, "t.id = s.id", source_alias="s", target_alias="t").when_matched_update_all().when_not_matched_insert_all().execute()

            their_time, metrics = timed(their_merge)
            results.append(("merge", f"{args.merge_rows:,} rows into {args.rows:,}", tarn_time, "deltalake merge", their_time))
            print(f"  merge: tarn {tarn_time:.2f}s, deltalake {their_time:.2f}s ({metrics.get('num_target_rows_updated')} updated)", flush=True)
        finally:
            server.stop()
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'phase':<9} {'work':<28} {'tarn':>10} {'competitor':<28} {'theirs':>10} {'ratio':>7}")
    for phase, work, ours, competitor, theirs in results:
        unit = (lambda s: f"{s:.2f} s") if phase in ("ingest", "merge") else (lambda s: f"{s * 1000:.0f} ms")
        print(f"{phase:<9} {work:<28} {unit(ours):>10} {competitor:<28} {unit(theirs):>10} {theirs / ours:>6.2f}x")
    print("ratio = competitor time / tarn time (above 1: tarn is faster)")


if __name__ == "__main__":
    main()
