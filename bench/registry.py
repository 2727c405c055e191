#!/usr/bin/env python3
"""Registry benchmark: the same load against `mlflow server` (4 workers, and 1 worker) and
`tarn server`, one server at a time, in one run. Prints a table with ratios.

    python bench/registry.py            # full run
    python bench/registry.py --quick    # smoke test

Phases (each client works on its own registered model, so clients do not queue on one row):
  create      model-versions/create from a run's 3-file model folder, 8 clients -> versions/s
              (tarn also copies the files into registry storage and checksums them; MLflow
              records the source only)
  transition  model-versions/transition-stage, alternating Staging/Production, 8 clients
  create-1, transition-1
              the same from one client, one request at a time: the latency of a write with
              no queue before it (under 8 closed-loop clients a server that serves some
              clients while others wait shows a low median and a long p99)
  alias       registered-models/alias (get by alias), 8 clients
  search      model-versions/search over N versions: name LIKE + tag filter, order_by,
              100 per page, sequential -> p50/p99
"""

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking  # noqa: E402  (shared server start-up, client processes and percentiles)

SEARCH_FILTER = "name LIKE 'bench-search-1%' AND tags.quality = 'good'"
SEARCH_ORDER = ["last_updated_timestamp DESC"]
MODEL_FILES = {"MLmodel": b"flavors:\n  python_function: {}\n", "model.pkl": bytes(range(256)) * 400, "requirements.txt": b"scikit-learn==1.9.1\n"}


def upload_model_folder(server, session, experiment_id):
    """A finished run with a 3-file model folder; returns its run id."""
    run_id = server.create_run(session, experiment_id)
    for name, data in MODEL_FILES.items():
        url = f"{server.base}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/model/{name}"
        session.put(url, data=data, timeout=60).raise_for_status()
    return run_id


def create_model(connection, name):
    status, data = connection.post("registered-models/create", {"name": name})
    if status != 200:
        raise RuntimeError(f"registered-models/create answered {status}: {data[:200]}")


def create_version(connection, name, run_id):
    status, data = connection.post("model-versions/create", {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    return status, data


def phase_create(server, args, run_id, clients=None):
    prefix = f"create-{time.time_ns()}"

    def setup(connection):
        name = f"{prefix}-{os.getpid()}"
        create_model(connection, name)
        return name

    def step(connection, name):
        status, _ = create_version(connection, name, run_id)
        return status == 200, 1

    return tracking.run_workers(server, clients or args.threads, args.duration, args.max_requests, setup, step)


def phase_transition(server, args, run_id, clients=None):
    prefix = f"transition-{time.time_ns()}"

    def setup(connection):
        name = f"{prefix}-{os.getpid()}"
        create_model(connection, name)
        create_version(connection, name, run_id)
        return {"name": name, "next": 0}

    def step(connection, state):
        stage = ("Staging", "Production")[state["next"] % 2]
        state["next"] += 1
        status, _ = connection.post("model-versions/transition-stage", {"name": state["name"], "version": "1", "stage": stage, "archive_existing_versions": False})
        return status == 200, 1

    return tracking.run_workers(server, clients or args.threads, args.duration, args.max_requests, setup, step)


def phase_alias(server, args, run_id):
    prefix = f"alias-{time.time_ns()}"

    def setup(connection):
        name = f"{prefix}-{os.getpid()}"
        create_model(connection, name)
        create_version(connection, name, run_id)
        status, data = connection.post("registered-models/alias", {"name": name, "alias": "champion", "version": "1"})
        if status != 200:
            raise RuntimeError(f"set alias answered {status}: {data[:200]}")
        return name

    def step(connection, name):
        status, _ = connection.get("registered-models/alias", {"name": name, "alias": "champion"})
        return status == 200, 1

    return tracking.run_workers(server, args.threads, args.duration, args.max_requests, setup, step)


def search_layout(count):
    """(model name, version, quality tag) for `count` versions: 100 versions per model."""
    for i in range(count):
        yield f"bench-search-{i // 100}", i % 100 + 1, "good" if i % 3 == 0 else "bad"


def fill_tarn(server, run_id, count, threads=8):
    rows = list(search_layout(count))
    models = sorted({name for name, _, _ in rows})
    by_model = {name: [r for r in rows if r[0] == name] for name in models}
    chunks = [models[i::threads] for i in range(threads)]

    def work(chunk):
        session = server.session()
        for name in chunk:
            server.call(session, "POST", "registered-models/create", {"name": name}).raise_for_status()
            for _, version, quality in by_model[name]:
                response = server.call(session, "POST", "model-versions/create", {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id, "tags": [{"key": "quality", "value": quality}]})
                response.raise_for_status()

    workers = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def fill_mlflow_sqlite(db_path, run_id, count):
    """Writes the versions straight into MLflow's SQLite database, in the rows its
    SqlAlchemyStore writes (filling 10,000 over REST takes several minutes per server)."""
    connection = sqlite3.connect(db_path)
    columns = {table: {row[1] for row in connection.execute(f"PRAGMA table_info({table})")} for table in ("registered_models", "model_versions", "model_version_tags")}

    def insert(table, values):
        if "workspace" in columns[table]:
            values = dict(values, workspace="default")
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(values.values())

    now = int(time.time() * 1000)
    rows = list(search_layout(count))
    with connection:
        for name in sorted({r[0] for r in rows}):
            connection.execute(*insert("registered_models", {"name": name, "creation_time": now, "last_updated_time": now, "description": ""}))
        for i, (name, version, quality) in enumerate(rows):
            connection.execute(*insert("model_versions", {
                "name": name, "version": version, "creation_time": now + i, "last_updated_time": now + i, "description": "",
                "user_id": "bench", "current_stage": "None", "source": f"runs:/{run_id}/model", "run_id": run_id,
                "status": "READY", "status_message": None, "run_link": "", "storage_location": f"runs:/{run_id}/model",
            }))
            connection.execute(*insert("model_version_tags", {"key": "quality", "value": quality, "name": name, "version": version}))
    connection.close()


def phase_search(server, args):
    connection = tracking.Connection(server)
    body = {"filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "max_results": 100}
    status, data = connection.get("model-versions/search", body)
    assert status == 200, data
    returned = len(json.loads(data).get("model_versions", []))
    latencies, errors = [], 0
    deadline = time.time() + args.duration
    while time.time() < deadline and len(latencies) < args.max_requests:
        started = time.perf_counter()
        status, _ = connection.get("model-versions/search", body)
        latencies.append(time.perf_counter() - started)
        errors += 0 if status == 200 else 1
    return {
        "requests": len(latencies),
        "errors": errors,
        "units_per_s": len(latencies) / max(sum(latencies), 1e-9),
        "p50_ms": tracking.percentile(latencies, 50) * 1000,
        "p99_ms": tracking.percentile(latencies, 99) * 1000,
        "versions_returned": returned,
    }


UNITS = {"create": "versions/s", "create-1": "versions/s (1 client)", "transition": "transitions/s", "transition-1": "transitions/s (1 client)", "alias": "lookups/s", "search": "searches/s"}
PHASES = {
    "create": phase_create,
    "create-1": lambda server, args, run_id: phase_create(server, args, run_id, clients=1),
    "transition": phase_transition,
    "transition-1": lambda server, args, run_id: phase_transition(server, args, run_id, clients=1),
    "alias": phase_alias,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--search-versions", type=int, default=10_000)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--only", default="tarn,mlflow-4w,mlflow-1w")
    parser.add_argument("--phases", default="create,create-1,transition,transition-1,alias,search")
    parser.add_argument("--tarn-bin")
    parser.add_argument("--venv")
    parser.add_argument("--out", default="bench-registry.json")
    parser.add_argument("--quick", action="store_true", help="3 s phases, 1000 search versions")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.search_versions = 3, 1000
    args.only = args.only.split(",")
    phases = args.phases.split(",")

    workdir = Path(tempfile.mkdtemp(prefix="tarn-bench-registry-"))
    results = {}
    try:
        for server in tracking.make_servers(args, workdir):
            print(f"== {server.name}: starting", flush=True)
            server.start()
            try:
                session = server.session()
                experiment_id = server.create_experiment(session, "bench-registry")
                run_id = upload_model_folder(server, session, experiment_id)
                results[server.name] = {}
                if "search" in phases:
                    started = time.time()
                    if server.name == "tarn":
                        fill_tarn(server, run_id, args.search_versions)
                    else:
                        fill_mlflow_sqlite(server.db_path, run_id, args.search_versions)
                    print(f"   {args.search_versions} search versions in place after {time.time() - started:.1f} s", flush=True)
                for phase in phases:
                    if phase == "search":
                        result = phase_search(server, args)
                    else:
                        result = PHASES[phase](server, args, run_id)
                    results[server.name][phase] = result
                    print(f"   {phase:<10} {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()})}", flush=True)
                results[server.name]["peak_rss_mib"] = server.peak_rss_kib / 1024
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    Path(args.out).write_text(json.dumps(results, indent=2))
    tracking.UNITS.update(UNITS)
    print_table(results, phases, args)


def print_table(results, phases, args):
    title = f"Registry benchmark: {args.threads} concurrent clients, {args.duration:g} s per phase, search over {args.search_versions} versions"
    tracking.print_table(results, phases, args, title)


if __name__ == "__main__":
    sys.exit(main())
