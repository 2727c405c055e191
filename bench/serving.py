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

Both servers are loaded by the same Rust load generator (crates/cli/examples/loadgen.rs) and
their predictions are compared on the same rows before anything is timed.

    python bench/serving.py                   # 10 s per measurement
    python bench/serving.py --seconds 2       # smoke test

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
        np.testing.assert_allclose(x[probability_key], y[probability_key], rtol=1e-5, atol=1e-5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarn-bin")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-concurrency", type=int, default=2)
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
    try:
        endpoints = {trained.name: deploy(server.base, token, trained) for trained in models}
        results = compare(models, endpoints, token, tarn, loadgen, args)
    finally:
        server.stop()
    report(results, args)


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
