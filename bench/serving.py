#!/usr/bin/env python3
"""Serving benchmark, side by side in one run: the same ONNX models (logistic regression, a
random forest of 100 trees, gradient boosting of 100 trees; binary, 20 features, exported with
skl2onnx and saved with mlflow.onnx) served three ways:

  endpoint     a serving endpoint of `tarn server` (registered with the stock mlflow client),
               bearer-token auth, every request logged to its inference table
  tarn-serve   `tarn serve MODEL_DIR`, the standalone scoring server
  mlflow       `mlflow models serve` (onnxruntime behind MLflow's pyfunc scoring server,
               --env-manager local, 2 workers)

  single-row   closed loop of 1-row requests at a fixed concurrency: throughput, p50, p99
  batch-1000   1000-row requests: throughput in rows per second, p50, p99
  batch job    10 million rows (a Delta table made from generated Parquet) scored into a
               predictions table by `tarn score`, against the same rows scored by the MLflow
               way without Spark: mlflow.pyfunc.load_model(...).predict over pandas chunks
               read from the Parquet file, results written to Parquet; rows per second, end to
               end (read, score, write)

Both servers are loaded by the same Rust load generator (crates/cli/examples/loadgen.rs) and
their predictions are compared on the same rows before anything is timed.

    python bench/serving.py                   # 10 s per measurement
    python bench/serving.py --seconds 2 --batch-rows 200000      # smoke test

Runs under the test venv and uses `cargo build --profile quick` unless --tarn-bin is given.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))
sys.path.insert(0, str(ROOT / "bench"))
from lakehouse import ensure_venv, tarn_binary  # noqa: E402

ensure_venv()
import requests  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class Served:
    def __init__(self, command, port, env=None, health="/ping"):
        self.log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        wait_until_up(self.base + health, self.process)

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


def build_models(directory):
    import serving_models
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    makers = [
        serving_models.classifier("logistic_regression", lambda: LogisticRegression(max_iter=500)),
        serving_models.classifier("random_forest", lambda: RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)),
        serving_models.classifier("gradient_boosting", lambda: GradientBoostingClassifier(n_estimators=100, random_state=0)),
    ]
    return [build(directory) for _, build in makers]


def loadgen_binary(args):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not args.tarn_bin:
        subprocess.run(["cargo", "build", "--profile", "quick", "-p", "tarn-cli", "--example", "loadgen"], cwd=ROOT, check=True)
    return str(target / "quick" / "examples" / "loadgen")


def load(loadgen, url, body, concurrency, seconds, token=None):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    command = [loadgen, url, f.name, str(concurrency), str(seconds)] + ([token] if token else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def split_body(rows):
    return {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}


def same_predictions(a, b):
    import numpy as np

    left, right = a.json()["predictions"], b.json()["predictions"]
    assert len(left) == len(right)
    for x, y in zip(left, right):
        label_key, probability_key = list(x)
        assert x[label_key] == y[label_key], (x, y)
        # Both answer MLflow's ZipMap form, {label: probability}.
        assert list(x[probability_key]) == list(y[probability_key]), (x, y)
        np.testing.assert_allclose(list(x[probability_key].values()), list(y[probability_key].values()), rtol=1e-5, atol=1e-5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarn-bin")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=10_000_000, help="rows of the batch scoring job (0: skip)")
    parser.add_argument("--batch-only", action="store_true", help="only the batch scoring job")
    args = parser.parse_args()

    tarn = tarn_binary(args)
    loadgen = loadgen_binary(args)
    workdir = tempfile.mkdtemp(prefix="tarn-bench-serving-")
    print("training and exporting the models...", flush=True)
    models = build_models(workdir)

    token = "tarn_bench_" + os.urandom(8).hex()
    server_port = free_port()
    server = Served(
        [tarn, "server", "--data-dir", os.path.join(workdir, "tarn-data"), "--port", str(server_port)],
        server_port,
        env=dict(os.environ, TARN_ADMIN_TOKEN=token, TARN_LOG="warn"),
        health="/health",
    )
    data_dir = os.path.join(workdir, "tarn-data")
    try:
        endpoints = {trained.name: deploy(server.base, token, trained) for trained in models}
        results = [] if args.batch_only else compare(models, endpoints, token, tarn, loadgen, args)
        jobs = batch_jobs(models, tarn, data_dir, workdir, args.batch_rows, server.base, token) if args.batch_rows else []
    finally:
        server.stop()
    if results:
        report(results, args)
    for model, tarn_seconds, mlflow_seconds in jobs:
        print(
            f"{model:<20} batch job {args.batch_rows:,} rows: tarn score {args.batch_rows / tarn_seconds:,.0f} rows/s ({tarn_seconds:.1f} s), "
            f"mlflow pyfunc {args.batch_rows / mlflow_seconds:,.0f} rows/s ({mlflow_seconds:.1f} s): {mlflow_seconds / tarn_seconds:.1f}x"
        )


MLFLOW_BATCH = """
import sys, time
import mlflow.pyfunc, pyarrow.parquet as pq, pyarrow as pa
model_dir, source, target = sys.argv[1:4]
started = time.perf_counter()
model = mlflow.pyfunc.load_model(model_dir)
writer = None
for batch in pq.ParquetFile(source).iter_batches(batch_size=100_000):
    frame = batch.to_pandas()
    predicted = model.predict(frame.drop(columns=["id"]))
    out = pa.table({"id": frame["id"], "label": predicted.iloc[:, 0]})
    writer = writer or pq.ParquetWriter(target, out.schema)
    writer.write_table(out)
writer.close()
print(time.perf_counter() - started)
"""


def batch_jobs(models, tarn, data_dir, workdir, rows, base, token):
    """The same generated rows scored by `tarn score` (table in, predictions table out) and by
    MLflow's pyfunc over pandas chunks (Parquet in, Parquet out)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = os.path.join(workdir, "batch.parquet")
    print(f"generating {rows:,} rows...", flush=True)
    writer = None
    rng = np.random.default_rng(1)
    for start in range(0, rows, 1_000_000):
        count = min(1_000_000, rows - start)
        columns = {"id": np.arange(start, start + count, dtype=np.int64)}
        columns.update({f"f{i}": rng.normal(size=count) for i in range(20)})
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(source, table.schema)
        writer.write_table(table)
    writer.close()
    env = dict(os.environ, TARN_LOG="warn")
    created = requests.post(
        f"{base}/api/2.1/unity-catalog/schemas",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "bench", "catalog_name": "dev"},
        timeout=60,
    )
    assert created.status_code == 200, created.text
    subprocess.run([tarn, "ingest", source, "--table", "dev.bench.batch_rows", "--data-dir", data_dir], check=True, env=env, capture_output=True)
    results = []
    for trained in models:
        print(f"{trained.name}: batch job...", flush=True)
        started = time.perf_counter()
        subprocess.run(
            [tarn, "score", "--data-dir", data_dir, "--model", f"models:/{trained.name}/1", "--table", "dev.bench.batch_rows",
             "--output", f"dev.bench.scored_{trained.name}", "--keep", "id"],
            check=True, env=env,
        )
        tarn_seconds = time.perf_counter() - started
        started = time.perf_counter()
        target = os.path.join(workdir, f"scored_{trained.name}.parquet")
        subprocess.run([sys.executable, "-c", MLFLOW_BATCH, trained.path, source, target], check=True, capture_output=True)
        mlflow_seconds = time.perf_counter() - started
        assert pq.ParquetFile(target).metadata.num_rows == rows
        results.append((trained.name, tarn_seconds, mlflow_seconds))
    return results


def deploy(base, token, trained):
    """Registers the model directory with the stock mlflow client and serves it on an endpoint."""
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(base)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(trained.path, "model")
    mlflow.register_model(f"runs:/{run.info.run_id}/model", trained.name)
    name = trained.name.replace("_", "-")
    created = requests.post(
        f"{base}/api/2.0/serving-endpoints",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": name, "config": {"served_entities": [{"entity_name": trained.name, "entity_version": "1"}]}},
        timeout=120,
    )
    assert created.status_code == 200, created.text
    return f"{base}/serving-endpoints/{name}/invocations"


def compare(models, endpoints, token, tarn, loadgen, args):
    import pandas as pd

    results = []
    for trained in models:
        single = split_body(trained.rows.head(1))
        batch_rows = pd.concat([trained.rows] * 5, ignore_index=True).head(1000)
        batch = split_body(batch_rows)
        tarn_port, mlflow_port = free_port(), free_port()
        servers = {
            "tarn": Served([tarn, "serve", trained.path, "--port", str(tarn_port)], tarn_port, env=dict(os.environ, TARN_LOG="warn")),
            "mlflow": Served(
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", trained.path, "--env-manager", "local", "-p", str(mlflow_port), "-w", "2"],
                mlflow_port,
                # MLflow starts uvicorn from PATH: the venv's.
                env=dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"),
            ),
        }
        targets = {
            "endpoint": (endpoints[trained.name], token),
            "tarn-serve": (servers["tarn"].base + "/invocations", None),
            "mlflow": (servers["mlflow"].base + "/invocations", None),
        }
        try:
            answers = {
                name: requests.post(
                    url,
                    json=split_body(trained.rows.head(50)),
                    headers={"Authorization": f"Bearer {auth}"} if auth else {},
                    timeout=60,
                )
                for name, (url, auth) in targets.items()
            }
            for name, answer in answers.items():
                assert answer.status_code == 200, f"{name}: {answer.text}"
            same_predictions(answers["tarn-serve"], answers["mlflow"])
            same_predictions(answers["endpoint"], answers["mlflow"])
            for name, (url, auth) in targets.items():
                print(f"{trained.name}: {name} single-row...", flush=True)
                one = load(loadgen, url, single, args.concurrency, args.seconds, auth)
                print(f"{trained.name}: {name} batch-1000...", flush=True)
                many = load(loadgen, url, batch, args.batch_concurrency, args.seconds, auth)
                results.append((trained.name, name, one, many))
        finally:
            for server in servers.values():
                server.stop()
    return results


def report(results, args):
    print()
    print(f"single-row: concurrency {args.concurrency}; batch: 1000 rows per request, concurrency {args.batch_concurrency}; {args.seconds:g} s each")
    header = f"{'model':<20} {'server':<10} {'1-row req/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}   {'batch rows/s':>13} {'p50 ms':>8} {'p99 ms':>8}"
    print(header)
    print("-" * len(header))
    by_model = {}
    for model, server, one, many in results:
        by_model.setdefault(model, {})[server] = (one, many)
        print(
            f"{model:<20} {server:<10} {one['throughput']:>12.0f} {one['p50_ms']:>8.2f} {one['p99_ms']:>8.2f} {one['errors'] + many['errors']:>6}"
            f"   {many['throughput'] * 1000:>13.0f} {many['p50_ms']:>8.2f} {many['p99_ms']:>8.2f}"
        )
    print()
    for model, sides in by_model.items():
        m1, mb = sides["mlflow"]
        for side in ("endpoint", "tarn-serve"):
            t1, tb = sides[side]
            print(
                f"{model:<20} {side:<10} vs mlflow: single-row throughput {t1['throughput'] / m1['throughput']:.1f}x, "
                f"p99 {m1['p99_ms'] / t1['p99_ms']:.1f}x lower; batch rows/s {tb['throughput'] / mb['throughput']:.1f}x"
            )


if __name__ == "__main__":
    main()
