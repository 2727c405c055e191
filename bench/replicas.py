#!/usr/bin/env python3
"""Replica scaling benchmark: the same load through 1, 2 and 3 `tarn server` replicas sharing
one PostgreSQL database, one lake and artifact root and one Redis online store, and through
`mlflow server --workers 1, 2, 3` on PostgreSQL, one configuration at a time on this machine.
Prints a table with ratios, and each side's scaling against its 1-replica (1-worker) figure.

    python bench/replicas.py            # full run (about 6 minutes)
    python bench/replicas.py --quick    # smoke test (3 s phases, 10,000 keys; about 1.5 minutes)

Phases (every phase with --clients closed-loop client processes, each on one keep-alive
connection of bench/keepalive.py; client i talks to replica i % replicas, round robin, so no
load balancer sits in front):
  batch   runs/log-batch of 100 metrics, each client on a run of its own -> metric points/s, p50/p99
  lookup  POST /api/2.0/tarn/online/lookup of 100 random keys of a published feature table
          (tarn only: MLflow has no online store)                       -> lookups/s, p50/p99

Every configuration starts from nothing: a fresh database (created and dropped with psql), a
fresh lake and artifact root, the Redis database flushed before and after. The replicas share
the admin token (TARN_ADMIN_TOKEN) and each has its own --data-dir.

MLflow's server runs from the test venv (--venv, default from scripts/ensure-venv.sh) on
PostgreSQL when psycopg2 imports there (or from --psycopg2-dir, which --install-psycopg2 fills
with `pip install --target`), otherwise on SQLite as bench/tracking.py runs it; the table says
which.

The clients, the servers, PostgreSQL and Redis all share this machine's cores: with 2 cores, a
replica (or worker) past the second adds processes but no CPU, so the scaling lines show how
much a replica costs and that the load spreads, not what more machines would add.
"""

import argparse
import json
import multiprocessing
import os
import random
import shutil
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_venv(given):
    if given:
        return Path(given)
    return Path(subprocess.run([str(ROOT / "scripts" / "ensure-venv.sh")], check=True, capture_output=True, text=True).stdout.strip())


def ensure_packages(venv):
    """Re-runs this script under the venv's Python when pyarrow or requests is missing."""
    try:
        import pyarrow  # noqa: F401
        import requests  # noqa: F401
    except ImportError:
        python = venv / "bin" / "python"
        if Path(sys.prefix).resolve() == venv.resolve():
            raise
        os.execv(str(python), [str(python), str(Path(sys.argv[0]).resolve()), *sys.argv[1:]])


from keepalive import KeepAliveClient  # noqa: E402

FEATURES = [f"f{i}" for i in range(10)]
TABLE = "dev.bench.customer_features"


# ---------------------------------------------------------------------------------------------
# Measuring CPU


def cpu_sample(pgids):
    """(machine busy ticks, machine total ticks, {pgid: ticks}, postgres+redis ticks)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    groups = {pgid: 0 for pgid in pgids}
    services = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            comm = head.split("(", 1)[1]
            stat = tail.split()
            ticks = int(stat[11]) + int(stat[12])
            pgid = int(stat[2])
        except (OSError, IndexError, ValueError):
            continue
        if pgid in groups:
            groups[pgid] += ticks
        elif comm.startswith(("postgres", "redis-server")):
            services += ticks
    return sum(fields) - idle, sum(fields), groups, services


def cpu_cores(before, after, elapsed):
    """Cores busy between two samples: the servers', PostgreSQL's and Redis', the machine's."""
    hz = os.sysconf("SC_CLK_TCK")
    servers = sum(after[2][g] - before[2].get(g, 0) for g in after[2]) / hz / elapsed
    services = (after[3] - before[3]) / hz / elapsed
    machine = (after[0] - before[0]) / max(1, after[1] - before[1]) * os.cpu_count()
    return {"servers_cores": servers, "postgres_redis_cores": services, "machine_cores": machine}


# ---------------------------------------------------------------------------------------------
# The load


def run_clients(targets, clients, duration, max_requests, setup, step, pgids):
    """Runs `step(client, state)` in `clients` processes for `duration` s; process i talks to
    targets[i % len(targets)] (a (host, port) pair) over one keep-alive connection."""
    from tracking import percentile

    context = multiprocessing.get_context("fork")
    ready, go = context.Barrier(clients + 1), context.Barrier(clients + 1)
    start_at = context.Value("d", 0.0)
    results = context.Queue()
    per_client = max(1, max_requests // clients)

    def worker(index):
        host, port = targets[index % len(targets)]
        client = KeepAliveClient(host, port)
        try:
            state = setup(client, index)
        except Exception as err:  # noqa: BLE001 - reported by the parent
            results.put(f"client {index} on port {port}: {err!r}")
            ready.abort()
            return
        ready.wait()
        go.wait()
        while time.time() < start_at.value:
            time.sleep(0.001)
        stop_at = start_at.value + duration
        latencies, units, errors = [], 0, 0
        while time.time() < stop_at and len(latencies) < per_client:
            started = time.perf_counter()
            ok, done = step(client, state)
            latencies.append(time.perf_counter() - started)
            units += done if ok else 0
            errors += 0 if ok else 1
        results.put((latencies, units, errors))

    processes = [context.Process(target=worker, args=(i,)) for i in range(clients)]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=300)
    except threading.BrokenBarrierError:
        for process in processes:
            process.kill()
        raise RuntimeError(results.get(timeout=5) if not results.empty() else "a client did not start") from None
    start_at.value = time.time() + 0.2
    go.wait()
    time.sleep(max(0.0, start_at.value - time.time()))
    before = cpu_sample(pgids)
    cpu_at = time.time()
    time.sleep(duration)
    cpu = cpu_cores(before, cpu_sample(pgids), time.time() - cpu_at)
    collected = [results.get(timeout=duration + 120) for _ in processes]
    for process in processes:
        process.join()
    latencies = [l for c in collected for l in c[0]]
    return {
        "requests": len(latencies),
        "errors": sum(c[2] for c in collected),
        "units_per_s": sum(c[1] for c in collected) / duration,
        "requests_per_s": len(latencies) / duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        **cpu,
    }


def mlflow_headers(token):
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def post(client, headers, path, body):
    return client.exchange(KeepAliveClient.request("POST", path, headers, json.dumps(body).encode()))


def phase_batch(targets, token, args, pgids):
    """runs/log-batch of 100 metrics from each client on a run of its own (as tracking.py)."""
    headers = mlflow_headers(token)
    host, port = targets[0]
    status, data = post(KeepAliveClient(host, port), headers, "/api/2.0/mlflow/experiments/create", {"name": f"bench-batch-{uuid.uuid4().hex[:8]}"})
    if status != 200:
        raise RuntimeError(f"experiments/create answered {status}: {data[:300]!r}")
    experiment_id = json.loads(data)["experiment_id"]

    def setup(client, _):
        status, data = post(client, headers, "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
        if status != 200:
            raise RuntimeError(f"runs/create answered {status}: {data[:300]!r}")
        return {"run_id": json.loads(data)["run"]["info"]["run_id"], "step": 0}

    def step(client, state):
        state["step"] += 1
        now = int(time.time() * 1000)
        metrics = [{"key": f"m{i}", "value": random.random(), "timestamp": now, "step": state["step"]} for i in range(100)]
        status, _ = post(client, headers, "/api/2.0/mlflow/runs/log-batch", {"run_id": state["run_id"], "metrics": metrics})
        return status == 200, 100

    return run_clients(targets, args.clients, args.duration, args.max_requests, setup, step, pgids)


def phase_lookup(targets, token, args, pgids):
    """100-key online lookups; each client cycles through 256 requests made beforehand with
    random keys of its own, so the clients spend their CPU on the exchange, not on JSON."""
    headers = mlflow_headers(token)
    present = b'"PRESENT"'

    def setup(client, index):
        rng = random.Random(index)
        requests_ = []
        for _ in range(256):
            body = {"table_name": TABLE, "keys": [{"customer_id": rng.randrange(args.keys)} for _ in range(args.lookup_keys)]}
            requests_.append(KeepAliveClient.request("POST", "/api/2.0/tarn/online/lookup", headers, json.dumps(body).encode()))
        status, data = client.exchange(requests_[0])
        found = data.count(present)
        if status != 200 or found != args.lookup_keys:
            raise RuntimeError(f"a lookup answered {status} with {found} of {args.lookup_keys} keys present: {data[:300]!r}")
        return {"requests": requests_, "next": 0}

    def step(client, state):
        state["next"] = (state["next"] + 1) % len(state["requests"])
        status, data = client.exchange(state["requests"][state["next"]])
        return status == 200 and data.count(present) == args.lookup_keys, 1

    return run_clients(targets, args.clients, args.duration, args.max_requests, setup, step, pgids)


# ---------------------------------------------------------------------------------------------
# PostgreSQL, Redis, the feature table


def psql(admin_url, sql):
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


def fresh_database(args, name):
    admin = f"{args.pg_url}/postgres"
    psql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(admin, f"CREATE DATABASE {name}")
    return f"{args.pg_url}/{name}"


def drop_database(args, name):
    try:
        psql(f"{args.pg_url}/postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except subprocess.CalledProcessError as err:
        print(f"   could not drop database {name}: {err.stderr.decode()[:200]}", flush=True)


def flush_redis(args):
    host, _, port = args.redis.removeprefix("redis://").rstrip("/").partition(":")
    subprocess.run(["redis-cli", "-h", host, "-p", port or "6379", "-n", str(args.redis_db), "FLUSHDB"], check=True, capture_output=True)


def arrow_body(table):
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def feature_rows(keys, seed=42):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    now_us = int(time.time() * 1_000_000)
    columns = {
        "customer_id": pa.array(np.arange(keys, dtype=np.int64)),
        "ts": pa.array(now_us - rng.integers(0, 86_400_000_000, keys), pa.timestamp("us", tz="UTC")),
    }
    for name in FEATURES:
        columns[name] = pa.array(rng.random(keys, dtype=np.float32))
    return pa.table(columns)


def publish_features(server, table, chunk=500_000):
    """Creates the feature table on one replica, appends the rest of the rows, publishes the
    latest value of every key to the online store."""
    session = server.session()
    base = server.base
    session.post(f"{base}/api/2.1/unity-catalog/schemas", json={"name": "bench", "catalog_name": "dev"}, timeout=60).raise_for_status()
    arrow = {"Content-Type": "application/vnd.apache.arrow.stream"}
    params = {"name": TABLE, "primary_keys": "customer_id", "timestamp_keys": "ts"}
    session.post(f"{base}/api/2.0/tarn/feature-tables", params=params, data=arrow_body(table.slice(0, chunk)), headers=arrow, timeout=600).raise_for_status()
    for start in range(chunk, table.num_rows, chunk):
        session.post(f"{base}/api/2.0/tarn/tables/{TABLE}/data", data=arrow_body(table.slice(start, chunk)), headers=arrow, timeout=600).raise_for_status()
    response = session.post(f"{base}/api/2.0/tarn/feature-tables/{TABLE}/publish", json={"mode": "full"}, timeout=1200)
    response.raise_for_status()
    published = response.json()
    if published.get("keys_written") != table.num_rows:
        raise RuntimeError(f"published {published}")
    return published


# ---------------------------------------------------------------------------------------------
# The configurations


def mlflow_backend(args, python):
    """('postgres', extra PYTHONPATH) when MLflow's venv can import psycopg2, else ('sqlite', why)."""
    if args.mlflow_backend == "sqlite":
        return "sqlite", None, "--mlflow-backend sqlite"
    if args.install_psycopg2 and not (Path(args.psycopg2_dir) / "psycopg2").exists():
        print(f"installing psycopg2-binary into {args.psycopg2_dir}...", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", args.psycopg2_dir, "psycopg2-binary"], check=True)
    for extra in (None, args.psycopg2_dir):
        if extra and not Path(extra).is_dir():
            continue
        env = dict(os.environ, PYTHONPATH=extra) if extra else dict(os.environ)
        if subprocess.run([str(python), "-c", "import psycopg2"], env=env, capture_output=True).returncode == 0:
            return "postgres", extra, None
    why = f"psycopg2 does not import in {python.parent.parent} (nor from {args.psycopg2_dir}; --install-psycopg2 puts it there)"
    if args.mlflow_backend == "postgres":
        raise RuntimeError(why)
    return "sqlite", None, why


def run_tarn(args, binary, replicas, workdir, token):
    from tracking import Server, free_port

    database = f"tarn_bench_replicas_{os.getpid()}"
    url = fresh_database(args, database)
    flush_redis(args)
    shared = workdir / f"tarn-{replicas}"
    (shared / "lake").mkdir(parents=True)
    (shared / "artifacts").mkdir()
    env = dict(os.environ, TARN_ADMIN_TOKEN=token, TARN_LOG="warn")
    servers = []
    result = {}
    try:
        for i in range(replicas):
            port = free_port()
            command = [
                binary, "server", "--host", "127.0.0.1", "--port", str(port),
                "--data-dir", str(shared / f"replica-{i}"), "--database-url", url,
                "--lake-root", str(shared / "lake"), "--artifact-root", str(shared / "artifacts"),
                "--online-store", f"{args.redis.rstrip('/')}/{args.redis_db}",
            ]
            server = Server(f"tarn-{replicas}r-{i}", command, env, f"http://127.0.0.1:{port}", token, workdir)
            start(server)
            servers.append(server)
            if i == 0 and "lookup" in args.phases:
                # On the first replica alone, so no other replica resolved the table before it
                # was published (a lookup trusts what it resolved for 5 s).
                started = time.time()
                publish_features(server, feature_rows(args.keys))
                result["publish_s"] = time.time() - started
                print(f"   {args.keys:,} keys published in {result['publish_s']:.1f} s", flush=True)
        targets = [("127.0.0.1", int(s.base.rsplit(":", 1)[1])) for s in servers]
        pgids = [s.process.pid for s in servers]
        if "lookup" in args.phases:
            time.sleep(1)
        for phase in args.phases:
            result[phase] = {"batch": phase_batch, "lookup": phase_lookup}[phase](targets, token, args, pgids)
            show(f"tarn {replicas} replica(s)", phase, result[phase])
        result["peak_rss_mib"] = sum(s.peak_rss_kib for s in servers) / 1024
    finally:
        for server in servers:
            server.stop()
        drop_database(args, database)
        flush_redis(args)
    return result


def run_mlflow(args, python, backend, pythonpath, workers, workdir, token):
    from tracking import Server, free_port

    data = workdir / f"mlflow-{workers}w"
    data.mkdir()
    database = f"mlflow_bench_replicas_{os.getpid()}"
    if backend == "postgres":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3: name the driver.
        store = fresh_database(args, database).replace("postgres://", "postgresql+psycopg2://", 1)
    else:
        store = f"sqlite:///{data}/mlflow.db"
    env = dict(os.environ, PATH=f"{python.parent}:{os.environ['PATH']}")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    port = free_port()
    command = [
        str(python.parent / "mlflow"), "server", "--backend-store-uri", store,
        "--artifacts-destination", str(data / "art"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
    ]
    server = Server(f"mlflow-{workers}w", command, env, f"http://127.0.0.1:{port}", token, workdir)
    result = {}
    try:
        start(server)
        result["batch"] = phase_batch([("127.0.0.1", port)], token, args, [server.process.pid])
        show(f"mlflow {workers} worker(s)", "batch", result["batch"])
        result["peak_rss_mib"] = server.peak_rss_kib / 1024
    finally:
        server.stop()
        if backend == "postgres":
            drop_database(args, database)
    return result


def start(server):
    """Starts a server; on failure prints the end of its log (the work folder goes away)."""
    try:
        server.start()
    except RuntimeError:
        server.stop()
        print(Path(server.log.name).read_text()[-3000:], file=sys.stderr, flush=True)
        raise


def show(who, phase, result):
    shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
    print(f"   {who}: {phase:<6} {json.dumps(shown)}", flush=True)


# ---------------------------------------------------------------------------------------------
# The table


def number(value):
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def ratio(value):
    return "-" if value is None else f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def print_table(results, args):
    tarn, mlflow = results.get("tarn", {}), results.get("mlflow", {})
    backend = results.get("mlflow_backend", "not run")
    cores = os.cpu_count()
    print()
    print(
        f"Replica scaling: {args.clients} client processes (round robin over the replicas), "
        f"{args.duration:g} s per phase; tarn on PostgreSQL + Redis, MLflow {'on ' if mlflow else ''}{backend}; "
        f"{cores} CPUs (os.cpu_count), shared by the clients, the servers, PostgreSQL and Redis"
    )
    if results.get("mlflow_backend_note"):
        print(f"MLflow ran on SQLite: {results['mlflow_backend_note']}")
    print()
    print(f"| phase | replicas / workers | measure | tarn | MLflow ({backend}) | tarn / MLflow | tarn vs 1 replica | MLflow vs 1 worker |")
    print("|---|---|---|---|---|---|---|---|")
    units = {"batch": "metric points/s", "lookup": f"lookups/s ({args.lookup_keys} keys)"}
    for phase in args.phases:
        base_t = tarn.get("1", {}).get(phase, {}).get("units_per_s")
        base_m = mlflow.get("1", {}).get(phase, {}).get("units_per_s")
        for n in args.replicas:
            t = tarn.get(str(n), {}).get(phase)
            m = mlflow.get(str(n), {}).get(phase)
            if not t and not m:
                continue

            def flag(r):
                return f" ({r['errors']} errors!)" if r and r.get("errors") else ""

            tv, mv = (t or {}).get("units_per_s"), (m or {}).get("units_per_s")
            print(
                f"| {phase} | {n} | {units[phase]} | {number(tv)}{flag(t)} | {number(mv)}{flag(m)} | "
                f"{ratio(tv / mv if tv and mv else None)} | {ratio(tv / base_t if tv and base_t else None)} | "
                f"{ratio(mv / base_m if mv and base_m else None)} |"
            )
            lat_t = f"{number(t['p50_ms'])} / {number(t['p99_ms'])}" if t else "-"
            lat_m = f"{number(m['p50_ms'])} / {number(m['p99_ms'])}" if m else "-"
            lat_r = f"{ratio(m['p50_ms'] / t['p50_ms'])} / {ratio(m['p99_ms'] / t['p99_ms'])}" if t and m else "-"
            print(f"| {phase} | {n} | p50 / p99 ms | {lat_t} | {lat_m} | {lat_r} | | |")

            def busy(r):
                return f"{r['servers_cores']:.2f} / {r['postgres_redis_cores']:.2f} / {r['machine_cores']:.2f}" if r else "-"

            print(f"| {phase} | {n} | cores busy: server(s) / PostgreSQL+Redis / machine | {busy(t)} | {busy(m)} | | | |")
    for n in args.replicas:
        t, m = tarn.get(str(n), {}), mlflow.get(str(n), {})
        if t or m:
            print(f"| memory | {n} | peak RSS MiB, all replicas / workers | {number(t.get('peak_rss_mib'))} | {number(m.get('peak_rss_mib'))} | | | |")
    print()
    print(
        f"tarn / MLflow: throughput tarn / MLflow, latency MLflow / tarn (above 1: tarn is better). "
        f"With {cores} cores every process shares them: past {cores} server processes a replica "
        f"adds no CPU, and the {args.clients} client processes take a large share."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=25, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--replicas", default="1,2,3", help="tarn replica counts, and MLflow --workers counts")
    parser.add_argument("--phases", default="batch,lookup")
    parser.add_argument("--only", default="tarn,mlflow")
    parser.add_argument("--keys", type=int, default=100_000, help="keys of the published feature table")
    parser.add_argument("--lookup-keys", type=int, default=100, help="keys per lookup")
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server (databases made and dropped under it)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=13, help="the Redis database used (flushed before and after)")
    parser.add_argument("--mlflow-backend", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--psycopg2-dir", default=str(Path.home() / ".cache" / "tarn" / "psycopg2"), help="a pip --target folder put on MLflow's PYTHONPATH when it holds psycopg2")
    parser.add_argument("--install-psycopg2", action="store_true", help="pip install psycopg2-binary into --psycopg2-dir first")
    parser.add_argument("--tarn-bin")
    parser.add_argument("--venv")
    parser.add_argument("--out", default="bench-replicas.json")
    parser.add_argument("--quick", action="store_true", help="3 s phases, 10,000 keys")
    args = parser.parse_args()
    venv = test_venv(args.venv)
    ensure_packages(venv)
    from tracking import tarn_binary

    if args.quick:
        args.duration, args.keys = 3, 10_000
    args.replicas = [int(n) for n in args.replicas.split(",")]
    args.phases = args.phases.split(",")
    only = args.only.split(",")
    python = venv / "bin" / "python"
    token = "bench_" + secrets.token_hex(16)
    results = {"cpu_count": os.cpu_count(), "clients": args.clients, "duration_s": args.duration, "tarn": {}, "mlflow": {}}
    print(f"{os.cpu_count()} CPUs; {args.clients} client processes; {args.duration:g} s phases", flush=True)
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="tarn-bench-replicas-"))
    try:
        if "tarn" in only:
            binary = tarn_binary(args)
            for n in args.replicas:
                print(f"== tarn, {n} replica(s) on one PostgreSQL database", flush=True)
                results["tarn"][str(n)] = run_tarn(args, binary, n, workdir, token)
        if "mlflow" in only and "batch" in args.phases:
            backend, pythonpath, why = mlflow_backend(args, python)
            results["mlflow_backend"] = "PostgreSQL" if backend == "postgres" else "SQLite"
            if why:
                results["mlflow_backend_note"] = why
                print(f"MLflow on SQLite: {why}", flush=True)
            for n in args.replicas:
                print(f"== mlflow server --workers {n} on {results['mlflow_backend']}", flush=True)
                results["mlflow"][str(n)] = run_mlflow(args, python, backend, pythonpath, n, workdir, token)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = time.time() - started
    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results, args)
    print(f"\n({results['elapsed_s']:.0f} s in all; results in {args.out})")


if __name__ == "__main__":
    sys.exit(main())
