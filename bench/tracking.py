#!/usr/bin/env python3
"""Tracking benchmark: the same load against `mlflow server` (4 workers, and 1 worker) and
`tarn server`, one server at a time on this machine, in one run. Prints a table with ratios.

    python bench/tracking.py            # full run (about 10 minutes)
    python bench/tracking.py --quick    # smoke test

Phases:
  batch   log-batch of 100 metrics, 8 client threads        -> metric points/s
  metric  single log-metric, 8 client threads                -> requests/s, p50/p99
  run     create run + log-batch(10 params) + end, 8 threads -> runs/s
  search  runs/search over N runs, filter + order_by, sequential -> p50/p99
"""

import argparse
import json
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

import requests

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


def run_threads(server, threads, duration, max_requests, setup, step):
    """Runs `step(session, state)` in `threads` threads for `duration` s; returns latencies and errors."""
    latencies, errors, units = [], [0], [0]
    lock = threading.Lock()
    stop_at = [0.0]
    budget = [max_requests]
    ready = threading.Barrier(threads + 1)

    def worker():
        session = server.session()
        state = setup(session)
        ready.wait()
        local_latencies, local_units, local_errors = [], 0, 0
        while time.time() < stop_at[0]:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            started = time.perf_counter()
            ok, done = step(session, state)
            local_latencies.append(time.perf_counter() - started)
            if ok:
                local_units += done
            else:
                local_errors += 1
        with lock:
            latencies.extend(local_latencies)
            units[0] += local_units
            errors[0] += local_errors

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    ready.wait()
    started = time.time()
    stop_at[0] = started + duration
    for w in workers:
        w.join()
    elapsed = time.time() - started
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "units_per_s": units[0] / elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def phase_batch(server, args):
    session = server.session()
    experiment_id = server.create_experiment(session, f"bench-batch-{uuid.uuid4().hex[:8]}")

    def setup(s):
        return {"run_id": server.create_run(s, experiment_id), "step": 0}

    def step(s, state):
        state["step"] += 1
        now = int(time.time() * 1000)
        metrics = [{"key": f"m{i}", "value": random.random(), "timestamp": now, "step": state["step"]} for i in range(100)]
        response = server.call(s, "POST", "runs/log-batch", {"run_id": state["run_id"], "metrics": metrics})
        return response.status_code == 200, 100

    return run_threads(server, args.threads, args.duration, args.max_requests, setup, step)


def phase_metric(server, args):
    session = server.session()
    experiment_id = server.create_experiment(session, f"bench-metric-{uuid.uuid4().hex[:8]}")

    def setup(s):
        return {"run_id": server.create_run(s, experiment_id), "step": 0}

    def step(s, state):
        state["step"] += 1
        body = {"run_id": state["run_id"], "key": "loss", "value": random.random(), "timestamp": int(time.time() * 1000), "step": state["step"]}
        return server.call(s, "POST", "runs/log-metric", body).status_code == 200, 1

    return run_threads(server, args.threads, args.duration, args.max_requests, setup, step)


def phase_run(server, args):
    session = server.session()
    experiment_id = server.create_experiment(session, f"bench-run-{uuid.uuid4().hex[:8]}")

    def step(s, _):
        created = server.call(s, "POST", "runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
        if created.status_code != 200:
            return False, 0
        run_id = created.json()["run"]["info"]["run_id"]
        params = [{"key": f"p{i}", "value": str(i)} for i in range(10)]
        if server.call(s, "POST", "runs/log-batch", {"run_id": run_id, "params": params}).status_code != 200:
            return False, 0
        ended = server.call(s, "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
        return ended.status_code == 200, 1

    return run_threads(server, args.threads, args.duration, args.max_requests, lambda s: None, step)


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
    session = server.session()
    body = {"experiment_ids": [experiment_id], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "max_results": 100}
    first = server.call(session, "POST", "runs/search", body)
    first.raise_for_status()
    returned = len(first.json().get("runs", []))
    latencies, errors = [], 0
    deadline = time.time() + args.duration
    while time.time() < deadline and len(latencies) < args.max_requests:
        started = time.perf_counter()
        ok = server.call(session, "POST", "runs/search", body).status_code == 200
        latencies.append(time.perf_counter() - started)
        errors += 0 if ok else 1
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
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--search-runs", type=int, default=10_000)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--only", default="tarn,mlflow-4w,mlflow-1w")
    parser.add_argument("--phases", default="batch,metric,run,search")
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
                        result = {"batch": phase_batch, "metric": phase_metric, "run": phase_run}[phase](server, args)
                    results[server.name][phase] = result
                    print(f"   {phase:<7} {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}", flush=True)
                results[server.name]["peak_rss_mib"] = server.peak_rss_kib / 1024
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results, phases, args)


UNITS = {"batch": "metric points/s", "metric": "requests/s", "run": "runs/s", "search": "searches/s"}


def print_table(results, phases, args):
    mlflows = [name for name in results if name.startswith("mlflow")]
    print()
    print(f"Tracking benchmark: {args.threads} client threads, {args.duration:g} s per phase, search over {args.search_runs} runs")
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
