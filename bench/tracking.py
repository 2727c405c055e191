#!/usr/bin/env python3
"""Tracking benchmark: the same load against `mlflow server` (4 workers, and 1 worker) and
`tarn server`, one server at a time on this machine, in one run. Prints a table with ratios.

    python bench/tracking.py            # full run (about 10 minutes)
    python bench/tracking.py --quick    # smoke test

Phases:
  batch   log-batch of 100 metrics, 8 concurrent clients        -> metric points/s
  metric  single log-metric, 8 concurrent clients                -> requests/s, p50/p99
  latency single log-metric, 1 client, one request at a time     -> p50/p99
  run     create run + log-batch(10 params) + end, 8 clients     -> runs/s
  search  runs/search over N runs, filter + order_by, sequential -> p50/p99
"""

import argparse
import json
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keepalive import KeepAliveClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEARCH_FILTER = "metrics.acc > 0.5 and params.model = 'rf'"
SEARCH_ORDER = ["metrics.acc DESC"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def tree_rss_kib(pgid):
    """Resident memory of every process in the process group, in KiB."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total


class Server:
    def __init__(self, name, command, env, base, token, workdir):
        self.name, self.command, self.env, self.base, self.token, self.workdir = name, command, env, base, token, workdir
        self.process = None
        self.peak_rss_kib = 0
        self._sampling = False

    def start(self, timeout=180):
        self.log = open(self.workdir / f"{self.name.replace(' ', '_')}.log", "w")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log.name}")
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{self.name} did not start in {timeout} s")
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while self._sampling:
            self.peak_rss_kib = max(self.peak_rss_kib, tree_rss_kib(self.process.pid))
            time.sleep(0.25)

    def stop(self):
        self._sampling = False
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def session(self):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def call(self, session, method, path, body):
        url = f"{self.base}/api/2.0/mlflow/{path}"
        if method == "GET":
            response = session.get(url, params=body, timeout=120)
        else:
            response = session.post(url, json=body, timeout=120)
        return response

    def create_experiment(self, session, name):
        response = self.call(session, "POST", "experiments/create", {"name": name})
        response.raise_for_status()
        return response.json()["experiment_id"]

    def create_run(self, session, experiment_id):
        response = self.call(session, "POST", "runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
        response.raise_for_status()
        return response.json()["run"]["info"]["run_id"]


class Connection:
    """The benchmark's client: MLflow's REST API over one keep-alive connection."""

    def __init__(self, server):
        host, port = server.base.removeprefix("http://").split(":")
        self.client = KeepAliveClient(host, int(port))
        self.headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}

    def post(self, path, body):
        return self.client.exchange(KeepAliveClient.request("POST", f"/api/2.0/mlflow/{path}", self.headers, json.dumps(body).encode()))

    def get(self, path, query):
        return self.client.exchange(KeepAliveClient.request("GET", f"/api/2.0/mlflow/{path}?{urlencode(query, doseq=True)}", self.headers))


def run_workers(server, workers, duration, max_requests, setup, step):
    """Runs `step(connection, state)` in `workers` client processes for `duration` s."""
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(workers + 1)
    start_at = context.Value("d", 0.0)
    results = context.Queue()
    per_worker = max(1, max_requests // workers)

    def worker():
        connection = Connection(server)
        state = setup(connection)
        ready.wait()
        stop_at = start_at.value + duration
        latencies, units, errors = [], 0, 0
        while time.time() < stop_at and len(latencies) < per_worker:
            started = time.perf_counter()
            ok, done = step(connection, state)
            latencies.append(time.perf_counter() - started)
            units += done if ok else 0
            errors += 0 if ok else 1
        results.put((latencies, units, errors))

    processes = [context.Process(target=worker) for _ in range(workers)]
    for process in processes:
        process.start()
    start_at.value = time.time() + 0.2
    ready.wait()
    collected = [results.get(timeout=duration + 120) for _ in processes]
    for process in processes:
        process.join()
    elapsed = duration
    latencies = [l for c in collected for l in c[0]]
    return {
        "requests": len(latencies),
        "errors": sum(c[2] for c in collected),
        "units_per_s": sum(c[1] for c in collected) / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def new_run(connection, experiment_id):
    status, data = connection.post("runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
    if status != 200:
        raise RuntimeError(f"runs/create answered {status}: {data[:200]}")
    return json.loads(data)["run"]["info"]["run_id"]


def phase_batch(server, args):
    session = server.session()
    experiment_id = server.create_experiment(session, f"bench-batch-{uuid.uuid4().hex[:8]}")

    def setup(connection):
        return {"run_id": new_run(connection, experiment_id), "step": 0}

    def step(connection, state):
        state["step"] += 1
        now = int(time.time() * 1000)
        metrics = [{"key": f"m{i}", "value": random.random(), "timestamp": now, "step": state["step"]} for i in range(100)]
        status, _ = connection.post("runs/log-batch", {"run_id": state["run_id"], "metrics": metrics})
        return status == 200, 100

    return run_workers(server, args.threads, args.duration, args.max_requests, setup, step)


def log_metric_load(server, args, clients, name):
    """`runs/log-metric` from `clients` closed-loop clients, each on a run of its own."""
    session = server.session()
    experiment_id = server.create_experiment(session, f"bench-{name}-{uuid.uuid4().hex[:8]}")

    def setup(connection):
        return {"run_id": new_run(connection, experiment_id), "step": 0}

    def step(connection, state):
        state["step"] += 1
        body = {"run_id": state["run_id"], "key": "loss", "value": random.random(), "timestamp": int(time.time() * 1000), "step": state["step"]}
        return connection.post("runs/log-metric", body)[0] == 200, 1

    return run_workers(server, clients, args.duration, args.max_requests, setup, step)


def phase_metric(server, args):
    return log_metric_load(server, args, args.threads, "metric")


def phase_latency(server, args):
    """One client, one request at a time: the latency of a write with no queue before it."""
    return log_metric_load(server, args, 1, "latency")


def phase_run(server, args):
    session = server.session()
    experiment_id = server.create_experiment(session, f"bench-run-{uuid.uuid4().hex[:8]}")

    def step(connection, _):
        status, data = connection.post("runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
        if status != 200:
            return False, 0
        run_id = json.loads(data)["run"]["info"]["run_id"]
        params = [{"key": f"p{i}", "value": str(i)} for i in range(10)]
        if connection.post("runs/log-batch", {"run_id": run_id, "params": params})[0] != 200:
            return False, 0
        ended = connection.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
        return ended[0] == 200, 1

    return run_workers(server, args.threads, args.duration, args.max_requests, lambda connection: None, step)


def search_rows(count, seed=42):
    rng = random.Random(seed)
    for i in range(count):
        yield {
            "acc": rng.random(),
            "model": rng.choice(["rf", "lr", "gb"]),
            "params": {f"p{j}": str(rng.randint(0, 100)) for j in range(9)},
            "team": rng.choice(["a", "b", "c"]),
            "start": 1_700_000_000_000 + i,
        }


def fill_over_rest(server, experiment_id, count, threads=8):
    rows = list(search_rows(count))
    chunks = [rows[i::threads] for i in range(threads)]

    def work(chunk):
        s = server.session()
        for row in chunk:
            created = server.call(s, "POST", "runs/create", {"experiment_id": experiment_id, "start_time": row["start"], "tags": [{"key": "team", "value": row["team"]}]})
            run_id = created.json()["run"]["info"]["run_id"]
            params = [{"key": "model", "value": row["model"]}] + [{"key": k, "value": v} for k, v in row["params"].items()]
            server.call(s, "POST", "runs/log-batch", {"run_id": run_id, "params": params, "metrics": [{"key": "acc", "value": row["acc"], "timestamp": row["start"], "step": 0}]})
            server.call(s, "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": row["start"] + 1000})

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def fill_mlflow_sqlite(db_path, experiment_id, count):
    """Writes the runs straight into MLflow's SQLite database, in the shapes SqlAlchemyStore writes."""
    connection = sqlite3.connect(db_path)
    runs, tags, params, metrics = [], [], [], []
    for row in search_rows(count):
        run_id = uuid.uuid4().hex
        runs.append((run_id, f"run-{row['start']}", "LOCAL", "", "", "bench", "FINISHED", row["start"], row["start"] + 1000, None, "", "active", f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts", int(experiment_id)))
        tags += [("team", row["team"], run_id), ("mlflow.runName", f"run-{row['start']}", run_id)]
        params += [("model", row["model"], run_id)] + [(k, v, run_id) for k, v in row["params"].items()]
        metrics.append(("acc", row["acc"], row["start"], 0, 0, run_id))
    with connection:
        connection.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            runs,
        )
        connection.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
        connection.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
        connection.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", metrics)
        connection.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)", metrics)
    connection.close()


def phase_search(server, args, experiment_id):
    connection = Connection(server)
    body = {"experiment_ids": [experiment_id], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "max_results": 100}
    status, data = connection.post("runs/search", body)
    assert status == 200, data
    returned = len(json.loads(data).get("runs", []))
    latencies, errors = [], 0
    deadline = time.time() + args.duration
    while time.time() < deadline and len(latencies) < args.max_requests:
        started = time.perf_counter()
        status, _ = connection.post("runs/search", body)
        latencies.append(time.perf_counter() - started)
        errors += 0 if status == 200 else 1
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / max(sum(latencies), 1e-9),
        "units_per_s": len(latencies) / max(sum(latencies), 1e-9),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "runs_returned": returned,
    }


def venv_python(args):
    if args.venv:
        return Path(args.venv) / "bin" / "python"
    venv = subprocess.run([str(ROOT / "scripts" / "ensure-venv.sh")], check=True, capture_output=True, text=True).stdout.strip()
    return Path(venv) / "bin" / "python"


def tarn_binary(args):
    if args.tarn_bin:
        return args.tarn_bin
    print("building tarn (cargo build --profile quick)...", flush=True)
    subprocess.run(["cargo", "build", "--profile", "quick", "-p", "tarn-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "quick" / "tarn")


def make_servers(args, workdir):
    token = "bench_" + secrets.token_hex(16)
    servers = []
    python = venv_python(args)
    if "tarn" in args.only:
        port = free_port()
        env = dict(os.environ, TARN_ADMIN_TOKEN=token, TARN_LOG="warn")
        servers.append(Server("tarn", [tarn_binary(args), "server", "--data-dir", str(workdir / "tarn"), "--host", "127.0.0.1", "--port", str(port)], env, f"http://127.0.0.1:{port}", token, workdir))
    for workers in (4, 1):
        label = f"mlflow-{workers}w"
        if label not in args.only:
            continue
        port = free_port()
        data = workdir / label
        data.mkdir()
        env = dict(os.environ, PATH=f"{python.parent}:{os.environ['PATH']}")
        command = [str(python.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{data}/mlflow.db", "--artifacts-destination", str(data / "art"), "--host", "127.0.0.1", "--port", str(port)]
        if workers == 1:
            command += ["--workers", "1"]
        server = Server(label, command, env, f"http://127.0.0.1:{port}", token, workdir)
        server.db_path = data / "mlflow.db"
        servers.append(server)
    return servers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients (processes, so the GIL does not cap the load)")
    parser.add_argument("--search-runs", type=int, default=10_000)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--only", default="tarn,mlflow-4w,mlflow-1w")
    parser.add_argument("--phases", default="batch,metric,latency,run,search")
    parser.add_argument("--tarn-bin")
    parser.add_argument("--venv")
    parser.add_argument("--out", default="bench-tracking.json")
    parser.add_argument("--quick", action="store_true", help="3 s phases, 1000 search runs")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.search_runs = 3, 1000
    args.only = args.only.split(",")
    phases = args.phases.split(",")

    workdir = Path(tempfile.mkdtemp(prefix="tarn-bench-"))
    results = {}
    try:
        for server in make_servers(args, workdir):
            print(f"== {server.name}: starting", flush=True)
            server.start()
            try:
                session = server.session()
                results[server.name] = {}
                if "search" in phases:
                    experiment_id = server.create_experiment(session, "bench-search")
                    started = time.time()
                    if server.name == "tarn":
                        fill_over_rest(server, experiment_id, args.search_runs)
                    else:
                        fill_mlflow_sqlite(server.db_path, experiment_id, args.search_runs)
                    print(f"   {args.search_runs} search runs in place after {time.time() - started:.1f} s", flush=True)
                for phase in phases:
                    if phase == "search":
                        result = phase_search(server, args, experiment_id)
                    else:
                        result = {"batch": phase_batch, "metric": phase_metric, "latency": phase_latency, "run": phase_run}[phase](server, args)
                    results[server.name][phase] = result
                    print(f"   {phase:<7} {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}", flush=True)
                results[server.name]["peak_rss_mib"] = server.peak_rss_kib / 1024
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results, phases, args)


UNITS = {"batch": "metric points/s", "metric": "requests/s", "latency": "requests/s (1 client)", "run": "runs/s", "search": "searches/s"}


def print_table(results, phases, args, title=None):
    mlflows = [name for name in results if name.startswith("mlflow")]
    print()
    print(title or f"Tracking benchmark: {args.threads} concurrent clients, {args.duration:g} s per phase, search over {args.search_runs} runs")
    print()
    print("| phase | measure | " + " | ".join(results) + " | tarn / best MLflow |")
    print("|---|---|" + "---|" * len(results) + "---|")
    for phase in phases:
        rows = [("units_per_s", UNITS[phase], True), ("p50_ms", "p50 ms", False), ("p99_ms", "p99 ms", False)]
        if phase == "search":
            rows = rows[1:]
        for key, label, higher_is_better in rows:
            cells, values = [], {}
            for name, result in results.items():
                value = result.get(phase, {}).get(key)
                errors = result.get(phase, {}).get("errors", 0)
                values[name] = value
                cells.append("-" if value is None else f"{value:,.1f}" + (f" ({errors} errors!)" if errors else ""))
            ratio = "-"
            if "tarn" in values and mlflows and values["tarn"]:
                candidates = [values[m] for m in mlflows if values.get(m)]
                if candidates:
                    best = max(candidates) if higher_is_better else min(candidates)
                    ratio = f"{(values['tarn'] / best) if higher_is_better else (best / values['tarn']):,.1f}x"
            print(f"| {phase} | {label} | " + " | ".join(cells) + f" | {ratio} |")
    print("| memory | peak RSS MiB (process tree) | " + " | ".join(f"{r.get('peak_rss_mib', 0):,.0f}" for r in results.values()) + " | |")


if __name__ == "__main__":
    sys.exit(main())
