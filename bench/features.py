#!/usr/bin/env python3
"""Feature store benchmark, side by side in one run on the same generated data
(`shared/reference/features-monitoring.md` §3: 100k keys x 50 daily timestamps x 10 float
features = 5M feature rows, 1M label rows, lookback 3 days):

  training-set  tarn's point-in-time training set (POST /api/2.0/tarn/training-sets, rows
                back as Arrow) versus DuckDB's ASOF LEFT JOIN on the same rows as Parquet,
                each timed end to end with its peak memory (tarn: the server's peak resident
                set during the request; DuckDB: its process's)
  publish       the latest values of every key to tarn's SQLite online store versus
                `feast materialize` to Feast's SQLite online store
  lookup        online lookups of 1 and 100 keys over HTTP (one keep-alive connection, the
                same client code for both), p50 / p99, versus Feast's HTTP feature server
                (`feast serve`, its /get-online-features); Feast's get_online_features in
                process is shown too

Feast (get_historical_features with its file offline store, materialize, online lookups) runs
from a venv of its own (--feast-venv, default ~/.cache/tarn/feast-venv; --install-feast makes
it with feast==0.67.0), through bench/feast_side.py on the same Parquet files; without one, its
columns are left out.

    python bench/features.py                        # the full size
    python bench/features.py --keys 2000 --labels 20000   # smoke test

The results are checked against each other (row count, matched rows, the sum of a feature)
before any time is reported. Runs under the test venv and uses `cargo build --profile quick`
unless --tarn-bin is given.
"""

import argparse
import json
import os
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keepalive import KeepAliveClient  # noqa: E402
from lakehouse import TarnServer, ensure_venv, tarn_binary, timed  # noqa: E402

DAY_US = 86_400_000_000
START_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
FEATURES = [f"f{i}" for i in range(10)]

DUCKDB_JOIN = """
import json, resource, sys, time
import duckdb
features, labels, lookback_days = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
con = duckdb.connect()
con.execute("SET threads = 2")
columns = ", ".join(f"CASE WHEN l.event_ts - f.ts <= INTERVAL {lookback_days} DAY THEN f.{c} END AS {c}" for c in [f"f{i}" for i in range(10)])
result = con.execute(f'''
    SELECT l.customer_id, l.event_ts, l.label, {columns}
    FROM read_parquet('{labels}') l ASOF LEFT JOIN read_parquet('{features}') f
      ON l.customer_id = f.customer_id AND l.event_ts >= f.ts
''').to_arrow_table()
elapsed = time.perf_counter() - started
print(json.dumps({
    "seconds": elapsed,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rows": result.num_rows,
    "matched": result.num_rows - result.column("f0").null_count,
    "sum_f0": float(result.column("f0").to_pandas().sum()),
}))
"""


def generate(workdir, keys, days, labels, seed=42):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(keys, dtype=np.int64), days)
    offsets = rng.integers(0, DAY_US, keys)  # each key at its own time of day, no ties
    ts = START_US + np.tile(np.arange(days, dtype=np.int64) * DAY_US, keys) + np.repeat(offsets, days)
    columns = {"customer_id": pa.array(ids), "ts": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    for name in FEATURES:
        columns[name] = pa.array(rng.random(len(ids), dtype=np.float32))
    features = pa.table(columns)
    label_ids = rng.integers(0, keys, labels)
    label_ts = rng.integers(START_US - 5 * DAY_US, START_US + (days + 5) * DAY_US, labels)
    label_table = pa.table({
        "customer_id": pa.array(label_ids),
        "event_ts": pa.array(label_ts, pa.timestamp("us", tz="UTC")),
        "label": pa.array(rng.random(labels) < 0.3),
    })
    pq.write_table(features, workdir / "features.parquet")
    pq.write_table(label_table, workdir / "labels.parquet")
    return features, label_table


def arrow_body(table):
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def upload(server, full_name, table, chunk=500_000, feature_keys=None):
    """Creates the table (a feature table when keys are given) from the first chunk and
    appends the rest."""
    arrow = {"Content-Type": "application/vnd.apache.arrow.stream"}
    first = table.slice(0, chunk)
    if feature_keys:
        response = server.session.post(f"{server.base}/api/2.0/tarn/feature-tables", params={"name": full_name, **feature_keys}, data=arrow_body(first), headers=arrow, timeout=600)
    else:
        catalog, schema, name = full_name.split(".")
        types = {"int64": "bigint", "timestamp[us, tz=UTC]": "timestamp", "bool": "boolean", "float": "float"}
        columns = [{"name": f.name, "type_text": types[str(f.type)]} for f in table.schema]
        server.session.post(f"{server.base}/api/2.1/unity-catalog/tables", json={"name": name, "catalog_name": catalog, "schema_name": schema, "columns": columns}).raise_for_status()
        response = server.session.post(f"{server.base}/api/2.0/tarn/tables/{full_name}/data", data=arrow_body(first), headers=arrow, timeout=600)
    response.raise_for_status()
    for start in range(chunk, table.num_rows, chunk):
        part = table.slice(start, chunk)
        server.session.post(f"{server.base}/api/2.0/tarn/tables/{full_name}/data", data=arrow_body(part), headers=arrow, timeout=600).raise_for_status()


def run_feast(args, workdir):
    """Feast's figures on the same files, or None without a Feast venv."""
    python = Path(args.feast_venv) / "bin" / "python"
    if args.install_feast and not python.exists():
        subprocess.run([sys.executable, "-m", "venv", args.feast_venv], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "feast==0.67.0"], check=True)
    if not python.exists():
        print(f"  no Feast venv at {args.feast_venv}: Feast left out (--install-feast makes one)", flush=True)
        return None
    side = str(Path(__file__).resolve().parent / "feast_side.py")

    def phase(*extra):
        out = subprocess.run([str(python), side, str(workdir), *map(str, extra)], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    print("  Feast: get_historical_features...", flush=True)
    historical = phase("historical", args.lookback_days)
    print(f"    {historical['seconds']:.1f}s, {historical['peak_mib']:.0f} MiB, {historical['rows']:,} rows", flush=True)
    materialize = phase("materialize")
    print(f"  Feast: materialize {materialize['seconds']:.1f}s", flush=True)
    online = phase("online", args.keys, args.lookups)
    print("  Feast: feast serve...", flush=True)
    served = feast_server_lookups(args, workdir)
    return {"historical": historical, "materialize": materialize, "online": online, "served": served}


def time_lookups(port, path, headers, make_body, check, calls, warmup=20):
    """p50 and p99 of POST `path` over one keep-alive connection; the request is made and the
    JSON answer read outside the timed part."""
    client = KeepAliveClient("127.0.0.1", port)
    samples = []
    for call in range(calls + warmup):
        request = client.request("POST", path, headers, json.dumps(make_body()).encode())
        started = time.perf_counter()
        status, data = client.exchange(request)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"{path}: {status} {data[:300]!r}")
        check(json.loads(data))
        if call >= warmup:
            samples.append(elapsed)
    client.close()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def feast_server_lookups(args, workdir):
    """Feast's own HTTP feature server on the materialized repo, timed like tarn."""
    import random

    feast = Path(args.feast_venv) / "bin" / "feast"
    port = free_port()
    process = subprocess.Popen(
        [str(feast), "-c", str(workdir / "feast_repo"), "serve", "-h", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ, FEAST_USAGE="False"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("feast serve did not start")
        rng = random.Random(1)
        features = [f"customer_features:f{i}" for i in range(10)]

        def check(body):
            statuses = [r["statuses"] for r in body["results"][1:]]
            if any(s != "PRESENT" for column in statuses for s in column):
                raise RuntimeError("Feast's server did not find a materialized key")

        result = {}
        for batch in (1, 100):
            result[batch] = time_lookups(
                port, "/get-online-features", {"Content-Type": "application/json"},
                lambda: {"features": features, "entities": {"customer_id": [rng.randrange(args.keys) for _ in range(batch)]}},
                check, args.lookups,
            )
        return result
    finally:
        process.terminate()
        process.wait(timeout=30)


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid):
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def main():
    ensure_venv()
    import pyarrow as pa
    import pyarrow.ipc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=50)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--lookback-days", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=300, help="timed lookup calls per batch size")
    parser.add_argument("--tarn-bin")
    parser.add_argument("--feast-venv", default=str(Path.home() / ".cache" / "tarn" / "feast-venv"))
    parser.add_argument("--install-feast", action="store_true")
    parser.add_argument("--workdir", help="keep data here instead of a temporary folder")
    args = parser.parse_args()
    binary = tarn_binary(args)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tarn-bench-features-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating {args.keys * args.days:,} feature rows and {args.labels:,} labels...", flush=True)
        features, labels = generate(workdir, args.keys, args.days, args.labels)
        server = TarnServer(binary, workdir / "tarn")
        try:
            server.session.post(f"{server.base}/api/2.1/unity-catalog/schemas", json={"name": "bench", "catalog_name": "dev"}).raise_for_status()
            load_time, _ = timed(lambda: (
                upload(server, "dev.bench.customer_features", features, feature_keys={"primary_keys": "customer_id", "timestamp_keys": "ts"}),
                upload(server, "dev.bench.labels", labels),
            ))
            print(f"  loaded into tarn in {load_time:.1f}s", flush=True)
            spec = {
                "label": {"table": "dev.bench.labels"},
                "feature_lookups": [{
                    "table_name": "dev.bench.customer_features",
                    "timestamp_lookup_key": "event_ts",
                    "lookback_window": f"{args.lookback_days}d",
                }],
            }

            def tarn_training_set():
                response = server.session.post(f"{server.base}/api/2.0/tarn/training-sets", json=spec, timeout=1200)
                response.raise_for_status()
                return pa.ipc.open_stream(response.content).read_all()

            tarn_runs = []
            for _ in range(args.repeat):
                reset_peak_rss(server.process.pid)
                seconds, result = timed(tarn_training_set)
                tarn_runs.append((seconds, peak_rss_mib(server.process.pid)))
            ours = {
                "rows": result.num_rows,
                "matched": result.num_rows - result.column("f0").null_count,
                "sum_f0": float(result.column("f0").to_pandas().sum()),
            }
            del result

            def publish():
                response = server.session.post(f"{server.base}/api/2.0/tarn/feature-tables/dev.bench.customer_features/publish", json={"mode": "full"}, timeout=1200)
                response.raise_for_status()
                return response.json()

            publish_time, published = timed(publish)
            if published["keys_written"] != args.keys:
                raise RuntimeError(f"published {published}")
            print(f"  publish: {publish_time:.2f}s for {args.keys:,} keys", flush=True)
            # The publish answers once its rows are committed; copying its WAL back into the
            # online store's database follows in the background. Lookups are timed in the
            # steady state after it, as Feast's are after `feast materialize` has finished.
            time.sleep(1)
            import random

            rng = random.Random(1)

            def check(body):
                if any(r["status"] != "PRESENT" for r in body["results"]):
                    raise RuntimeError("a published key was not found")

            latencies = {}
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"}
            for batch in (1, 100):
                latencies[batch] = time_lookups(
                    server.port, "/api/2.0/tarn/online/lookup", headers,
                    lambda: {"table_name": "dev.bench.customer_features", "keys": [{"customer_id": rng.randrange(args.keys)} for _ in range(batch)]},
                    check, args.lookups,
                )
                print(f"  lookup {batch}: p50 {latencies[batch][0] * 1000:.2f} ms, p99 {latencies[batch][1] * 1000:.2f} ms", flush=True)
        finally:
            server.stop()

        duck_runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", DUCKDB_JOIN, str(workdir / "features.parquet"), str(workdir / "labels.parquet"), str(args.lookback_days)],
                check=True, capture_output=True, text=True,
            )
            duck_runs.append(json.loads(out.stdout))
        theirs = duck_runs[-1]
        feast = run_feast(args, workdir)
        if ours["rows"] != theirs["rows"] or ours["matched"] != theirs["matched"] or abs(ours["sum_f0"] - theirs["sum_f0"]) > 1e-3 * max(1.0, abs(theirs["sum_f0"])):
            raise RuntimeError(f"tarn {ours} and DuckDB {theirs} disagree")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    tarn_time = statistics.median(s for s, _ in tarn_runs)
    tarn_peak = max(m for _, m in tarn_runs)
    duck_time = statistics.median(r["seconds"] for r in duck_runs)
    duck_peak = max(r["peak_mib"] for r in duck_runs)
    work = f"{args.labels:,} labels x {args.keys * args.days:,} rows"
    rows = [
        ("training-set", work, f"{tarn_time:.2f} s", "DuckDB ASOF JOIN", f"{duck_time:.2f} s", duck_time / tarn_time),
        ("  peak memory", "", f"{tarn_peak:.0f} MiB", "DuckDB", f"{duck_peak:.0f} MiB", None),
    ]
    if feast:
        h = feast["historical"]
        rows.append(("training-set", work, f"{tarn_time:.2f} s", f"Feast file store ({h['rows']:,} rows)", f"{h['seconds']:.2f} s", h["seconds"] / tarn_time))
        rows.append(("  peak memory", "", f"{tarn_peak:.0f} MiB", "Feast", f"{h['peak_mib']:.0f} MiB", None))
    materialized = feast["materialize"]["seconds"] if feast else None
    rows.append(("publish", f"latest of {args.keys:,} keys, SQLite", f"{publish_time:.2f} s", "feast materialize" if feast else "", f"{materialized:.2f} s" if feast else "", materialized / publish_time if feast else None))
    for batch, (p50, p99) in latencies.items():
        for i, label in ((0, "p50"), (1, "p99")):
            mine = (p50, p99)[i]
            served = feast["served"][batch][i] if feast else None
            rows.append((f"lookup {batch}", f"{label}, HTTP", f"{mine * 1000:.2f} ms", "feast serve (HTTP)" if feast else "", f"{served * 1000:.2f} ms" if feast else "", served / mine if feast else None))
            if feast:
                inproc = feast["online"][str(batch)][i]
                rows.append((f"lookup {batch}", f"{label}, HTTP", f"{mine * 1000:.2f} ms", "get_online_features (in process)", f"{inproc * 1000:.2f} ms", inproc / mine))
    print()
    print(f"{'phase':<14} {'work':<36} {'tarn':>11}   {'competitor':<34} {'theirs':>11} {'ratio':>8}")
    for phase, what, mine, competitor, theirs, ratio in rows:
        shown = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"{phase:<14} {what:<36} {mine:>11}   {competitor:<34} {theirs:>11} {shown:>8}")
    print(f"matched rows: {ours['matched']:,} of {ours['rows']:,} (tarn and DuckDB agree)")
    print("ratio = competitor / tarn (above 1: tarn is faster); tarn's times include HTTP and Arrow decoding in the client")


if __name__ == "__main__":
    main()
