#!/usr/bin/env python3
"""Jobs benchmark: tarn's job runner against Apache Airflow 3 and Prefect 3, one system at a
time on this machine, in one run. Prints a table with ratios.

    python3 bench/jobs.py --tarn-bin target/quick/tarn            # full run
    python3 bench/jobs.py --tarn-bin target/quick/tarn --quick    # smoke test, small counts
    python3 bench/jobs.py --skip-tarn                             # competitors only

Benchmarks (the same three on every system; every task appends "name start end" to a file,
`start` being time.time() taken by the task's very first statement, so times come from the
tasks themselves and not from how often a client polls a server):

  fan-out   one root task, W middle tasks depending on it (W=98), one final task depending on
            all of them: 100 trivial Python tasks. Figure: from just before the trigger call to
            the end of the last task (median of --fanout-repeats, each after --settle seconds of
            rest), and to the moment the server recorded the run as finished. Beside tarn's
            line, a floor: the same 100 task processes started by this script with no server
            (root, the middle ones 8 at a time, final), what the interpreters alone cost here.
  latency   a one-task job, triggered one run at a time: from just before the trigger call to
            the first statement of the task's code. p50 / p99 over --latency-runs runs for
            tarn, --competitor-latency-runs for the competitors (they take 1-2 s a run; with
            20 runs the p99 is the slowest run).
  queue     N runs of a one-task job triggered at once, at most 8 running (the rest queued):
            completed runs per second, N / (end of the last task - first trigger), and the
            peak resident memory of the system's whole process tree (server, scheduler,
            workers, task processes) sampled every 100 ms. N = --queue-runs (1,000) for tarn,
            --competitor-queue-runs (100) for the competitors: a rate, so the counts compare.

Each system on its defaults unless said here, with the same concurrency: 8 tasks at once.

  tarn      `tarn server --jobs-slots 8` (SQLite store), jobs created and run over the Jobs
            API 2.2 (`jobs/create`, `jobs/run-now`, `runs/get`); every task a
            `spark_python_task`, i.e. its own Python process. The interpreter (--jobs-python)
            is a bare venv made for the run (nothing installed, no .pth files): trivial tasks
            need nothing, and the competitors' tasks likewise run from venvs. Queue: the job has
            `max_concurrent_runs: 8` and `queue: {enabled: true}`, so 992 of the 1,000 runs wait
            in QUEUED.
  airflow   `airflow standalone` (api-server, scheduler, dag-processor, triggerer; SQLite, which
            standalone runs with the LocalExecutor), `[core] parallelism = 8`, DAGs with `@task`
            Python functions (each task instance runs in a process of its own forked by the
            executor's supervisor), triggered over the REST API (POST
            /api/v2/dags/{id}/dagRuns). Queue: the DAG's `max_active_runs=8`, so runs past 8
            wait in `queued`. `[core] simple_auth_manager_all_admins = True` so that the
            client needs no login; the execution API URL is pointed at the chosen port. Its
            API answers `500 Database error` now and then under load (SQLite's lock held past
            its 5 s timeout); such calls are retried every 50 ms (a failed trigger makes no
            run) and counted.
            Latency is also given for `dag.test()` called in a warm Python process (what
            `airflow dags test` does, minus the CLI's 5 s of imports): no scheduler, the task
            runs in the calling process.
  prefect   `prefect server start` (SQLite) and the flows served with `prefect.serve(...,
            limit=8)` (a runner that polls the server for scheduled runs and starts each flow
            run in a subprocess), triggered over the REST API (POST
            /api/deployments/{id}/create_flow_run). The runner's poll interval is lowered from
            its default 10 s to 1 s (PREFECT_RUNNER_POLL_FREQUENCY, whole seconds): with the
            default, a run waits 5 s on average before anything starts. Tasks are `@task`
            functions, the fan-out's submitted to the default thread-pool task runner: all 100
            run as threads of the one flow-run process, no process per task (cheaper than what
            tarn and Airflow do; it favours Prefect). Latency and fan-out are also given for the
            flow called directly in a warm Python process (the server only records it): no
            scheduling, no subprocess. Prefect's server answers some calls with 503 under load
            on SQLite; the client retries them as Prefect's own client does, but every 50 ms
            instead of its 2**n s backoff, and counts them.

While a run goes, the client reads the tasks' file and asks the server for the run's state only
every 5 s (to notice a failure): polling a busy Prefect server makes it answer 503 and slows
the runs being measured.

Competitors come from their own venvs (bench/setup-orchestrators.sh, pinned versions; made on
first use unless --no-install). Nothing is asserted about wall-clock figures; the goals of the
issue (fan-out 10x faster than the faster competitor, latency p50 under 50 ms) are printed as
met or not. Results also go to --out as JSON.
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

try:
    import requests
except ImportError:  # run it with any Python that has requests, e.g. the test venv
    sys.exit("bench/jobs.py needs the requests package (python3 -m pip install requests)")

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tarn"
SETUP = Path(__file__).resolve().parent / "setup-orchestrators.sh"

# The task every tarn run executes: a script, so each task is a Python process as in a
# Databricks spark_python_task. Its first statement takes the time the latency is measured to.
TASK_SCRIPT = """\
import time; STARTED = time.time()  # the first statement: when the task's own code began
import sys
name, out = sys.argv[1], sys.argv[2]
print("task", name)
with open(out, "a") as f:  # one short O_APPEND write: lines of concurrent tasks never mix
    f.write(f"{name} {STARTED:.6f} {time.time():.6f}\\n")
"""

# Airflow's DAGs, the same three shapes; the task is the same code as a @task function.
AIRFLOW_DAGS = """\
import time
from airflow.sdk import DAG, task

OUT = {out!r}


@task
def step(name, out):
    started = time.time()  # the first statement: when the task's own code began
    print("task", name)
    with open(out, "a") as f:
        f.write(f"{{name}} {{started:.6f}} {{time.time():.6f}}\\n")


def make(dag_id, out, width=None, max_active_runs=1):
    # max_active_tasks above the width, so that only [core] parallelism (8) limits the fan-out
    with DAG(dag_id, schedule=None, catchup=False, max_active_runs=max_active_runs, max_active_tasks=256) as dag:
        if width is None:
            step.override(task_id="one")("one", out)
        else:
            root = step.override(task_id="root")("root", out)
            middle = [step.override(task_id=f"m{{i:02d}}")(f"m{{i:02d}}", out) for i in range(width)]
            final = step.override(task_id="final")("final", out)
            root >> middle >> final
    return dag


bench_fanout = make("bench_fanout", OUT + "/fanout.txt", width={width})
bench_one = make("bench_one", OUT + "/latency.txt")
bench_queue = make("bench_queue", OUT + "/queue.txt", max_active_runs={concurrency})
"""

# dag.test() in a warm process: the DAG file imported, one unmeasured call, then `count`.
AIRFLOW_DAG_TEST = """\
import importlib.util, json, os, sys, time
path, dag_id, out, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spec = importlib.util.spec_from_file_location("bench_dags", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = getattr(module, dag_id)
latencies = []
for i in range(count + 1):
    if os.path.exists(out):
        os.remove(out)
    started = time.time()
    run = dag.test()
    if str(getattr(run.state, "value", run.state)) != "success":
        raise SystemExit(f"dag.test() ended {run.state}")
    if i:  # the first call serializes the DAG into the database: a warm-up
        latencies.append(float(open(out).read().split()[1]) - started)
print(json.dumps(latencies))
"""

PREFECT_FLOWS = """\
import sys, time
from prefect import flow, serve, task


@task
def step(name: str, out: str):
    started = time.time()  # the first statement: when the task's own code began
    print("task", name)
    with open(out, "a") as f:
        f.write(f"{name} {started:.6f} {time.time():.6f}\\n")


@flow
def one(out: str):
    step("one", out)


@flow
def fanout(out: str, width: int):
    root = step.submit("root", out)
    middle = [step.submit(f"m{i:02d}", out, wait_for=[root]) for i in range(width)]
    step.submit("final", out, wait_for=middle).result()


if __name__ == "__main__":
    serve(one.to_deployment(name="one"), fanout.to_deployment(name="fanout"),
          one.to_deployment(name="queue"), limit=int(sys.argv[1]))
"""

# The flows called directly in a warm process (the server records them, nothing schedules them).
PREFECT_DIRECT = """\
import json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[1])))
from flows import fanout, one
out, count, width, repeats, settle = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])

def records():
    return [line.split() for line in open(out)]

latencies, fanouts = [], []
for i in range(count + 1):
    if os.path.exists(out):
        os.remove(out)
    started = time.time()
    one(out)
    if i:  # the first call is a warm-up
        latencies.append(float(records()[0][1]) - started)
for _ in range(repeats):
    time.sleep(settle)  # as between the served fan-outs
    if os.path.exists(out):
        os.remove(out)
    started = time.time()
    fanout(out, width)
    lines = records()
    assert len(lines) == width + 2, len(lines)
    fanouts.append(max(float(line[2]) for line in lines) - started)
print(json.dumps({"latencies": latencies, "fanouts": fanouts}))
"""


# ---------------------------------------------------------------- processes and measurement

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def parents():
    """{pid: parent pid} of every process on the machine."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    table[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(roots):
    """The pids of `roots` and of every process below them (by parent pid: a task that starts
    its own session or process group is still counted)."""
    table = parents()
    children = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, []))
    return found


class TreeSampler:
    """Peak resident memory of the process trees under some root pids, sampled every 100 ms;
    `reset()` starts a new window."""

    def __init__(self):
        self.roots, self.peak_kib, self._running = [], 0, True
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while self._running:
            if self.roots:
                self.peak_kib = max(self.peak_kib, sum(rss_kib(pid) for pid in descendants(self.roots)))
            time.sleep(0.1)

    def reset(self):
        self.peak_kib = 0

    def close(self):
        self._running = False


class Service:
    """A process started in its own session, stopped (with everything it started) on stop()
    or when the benchmark exits, also on failure or Ctrl-C."""

    live = []

    def __init__(self, name, command, env, cwd, log_path):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        Service.live.append(self)

    @property
    def pid(self):
        return self.process.pid

    def check_alive(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}:\n{tail(self.log_path)}")

    def stop(self, grace=30):
        if self not in Service.live:
            return
        Service.live.remove(self)
        tree = descendants([self.pid])  # before the parent goes: its children get reparented
        signal_all(tree, self.pid, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline and alive(tree):
            self.process.poll()
            time.sleep(0.1)
        signal_all(alive(tree), self.pid, signal.SIGKILL)
        self.process.poll()
        self.log.close()

    @classmethod
    def stop_all(cls):
        for service in reversed(list(cls.live)):
            service.stop(grace=10)


def signal_all(pids, pgid, sig):
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def alive(pids):
    """The pids that still run (zombies do not count)."""
    running = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    running.add(pid)
        except OSError:
            pass
    return running


def tail(path, lines=20):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_records(path):
    """[(name, start, end)] the tasks wrote to `path`."""
    try:
        with open(path) as f:
            return [(p[0], float(p[1]), float(p[2])) for p in (line.split() for line in f) if len(p) == 3]
    except FileNotFoundError:
        return []


def wait_records(path, count, timeout, check=None, poll=0.005, check_every=5):
    """Waits until `count` tasks recorded themselves in `path`; `check()` (a look at the
    server for a failed run) is called every `check_every` seconds: rarely, because calls to a
    busy server slow it (Prefect's answers 503 to reads while its SQLite is busy writing)."""
    deadline, next_check = time.time() + timeout, time.time() + check_every
    while True:
        records = read_records(path)
        if len(records) >= count:
            return records
        now = time.time()
        if now > deadline:
            raise RuntimeError(f"{len(records)} of {count} task records in {path} after {timeout} s")
        if check and now >= next_check:
            check()
            next_check = now + check_every
        time.sleep(poll)


def clear(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def iso_seconds(value):
    """An ISO 8601 time as the competitors' APIs give it, in epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_http(url, timeout, service, ok=lambda r: r.status_code == 200, session=None):
    session = session or requests
    deadline = time.time() + timeout
    while time.time() < deadline:
        service.check_alive()
        try:
            response = session.get(url, timeout=5)
            if ok(response):
                return response
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{service.name}: {url} not ready after {timeout} s; see {service.log_path}:\n{tail(service.log_path)}")


# ---------------------------------------------------------------- systems
#
# Each system: start(), stop(), trigger(kind) -> handle, state(handle) -> (finished, ok,
# end_seconds or None), trigger_queue(n) -> handles, succeeded(handles) -> count, and
# `record_files` (kind -> path its tasks append to). kind is "fanout", "one" or "queue".

class Tarn:
    name = "tarn"

    def __init__(self, args, workdir, sampler):
        self.args, self.workdir, self.sampler = args, workdir / "tarn", sampler
        self.workdir.mkdir()
        self.token = "bench_" + os.urandom(16).hex()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.record_files = {kind: str(self.workdir / f"{kind}.txt") for kind in ("fanout", "one", "queue")}
        self.job_ids = {}

    def start(self):
        binary = self.args.tarn_bin
        help_text = subprocess.run([binary, "server", "--help"], capture_output=True, text=True).stdout
        if "--jobs-python" not in help_text:
            raise RuntimeError(f"{binary} has no job runner (`tarn server --help` shows no --jobs-python)")
        python = self.python = self.args.jobs_python or bare_venv_python(self.workdir / "task-venv")
        script = self.script = self.workdir / "task.py"
        script.write_text(TASK_SCRIPT)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, TARN_ADMIN_TOKEN=self.token, TARN_LOG="warn")
        self.server = Service("tarn", [binary, "server", "--data-dir", str(self.workdir / "data"), "--host", "127.0.0.1", "--port", str(port),
                                       "--jobs-python", str(python), "--jobs-slots", str(self.args.slots)], env, self.workdir, self.workdir / "server.log")
        wait_http(self.base + "/health", 60, self.server)
        self.sampler.roots = [self.server.pid]

        def task(key, out, depends=()):
            return {"task_key": key, "depends_on": [{"task_key": d} for d in depends],
                    "spark_python_task": {"python_file": str(script), "parameters": [key, out]}}

        width = self.args.fanout_width
        middle = [f"m{i:02d}" for i in range(width)]
        fanout = [task("root", self.record_files["fanout"])]
        fanout += [task(key, self.record_files["fanout"], ["root"]) for key in middle]
        fanout.append(task("final", self.record_files["fanout"], middle))
        self.job_ids["fanout"] = self.create({"name": "bench-fanout", "max_concurrent_runs": 1, "tasks": fanout})
        self.job_ids["one"] = self.create({"name": "bench-one", "max_concurrent_runs": 1, "tasks": [task("one", self.record_files["one"])]})
        self.job_ids["queue"] = self.create({"name": "bench-queue", "max_concurrent_runs": self.args.queue_concurrency, "queue": {"enabled": True},
                                             "tasks": [task("one", self.record_files["queue"])]})

    def create(self, settings):
        return self.call("POST", "jobs/create", settings)["job_id"]

    def call(self, method, path, body):
        url = f"{self.base}/api/2.2/{path}"
        response = self.session.post(url, json=body, timeout=60) if method == "POST" else self.session.get(url, params=body, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"tarn {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def trigger(self, kind):
        return self.call("POST", "jobs/run-now", {"job_id": self.job_ids[kind]})["run_id"]

    def trigger_queue(self, count):
        return [self.trigger("queue") for _ in range(count)]

    def state(self, run_id):
        run = self.call("GET", "jobs/runs/get", {"run_id": run_id})
        life = run["state"]["life_cycle_state"]
        finished = life in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
        ok = finished and run["state"].get("result_state") == "SUCCESS"
        return finished, ok, (run.get("end_time") or 0) / 1000 or None, run

    def succeeded(self, run_ids):
        return sum(1 for run_id in run_ids if self.state(run_id)[1])

    def extra(self):
        """The server process's own peak resident memory (VmHWM), besides the tree's."""
        return {"server_vmhwm_mib": vm_hwm_mib(self.server.pid)}

    def stop(self):
        self.server.stop()


def bare_venv_python(path):
    """A venv with nothing installed: a plain interpreter that starts without site-packages."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def vm_hwm_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class Airflow:
    name = "airflow"

    def __init__(self, args, workdir, sampler):
        self.args, self.home, self.sampler = args, workdir / "airflow", sampler
        self.home.mkdir()
        self.venv = Path(args.airflow_venv)
        self.session = requests.Session()
        self.dag_ids = {"fanout": "bench_fanout", "one": "bench_one", "queue": "bench_queue"}
        self.record_files = {kind: str(self.home / f"{name}.txt") for kind, name in (("fanout", "fanout"), ("one", "latency"), ("queue", "queue"))}
        self.dag_file = self.home / "dags" / "bench_dags.py"
        self.retries_500 = 0

    def env(self):
        bin_dir = str(self.venv / "bin")
        return dict(
            os.environ,
            PATH=bin_dir + os.pathsep + os.environ["PATH"],  # standalone starts `airflow ...` subcommands by name
            VIRTUAL_ENV=str(self.venv),
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.home / "dags"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__PARALLELISM=str(self.args.slots),
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
        )

    def start(self):
        (self.home / "dags").mkdir()
        self.dag_file.write_text(AIRFLOW_DAGS.format(out=str(self.home), width=self.args.fanout_width, concurrency=self.args.queue_concurrency))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api/v2"
        self.server = Service("airflow standalone", [str(self.venv / "bin" / "airflow"), "standalone"], self.env(), self.home, self.home / "standalone.log")
        self.sampler.roots = [self.server.pid]
        for dag_id in self.dag_ids.values():  # the dag-processor has parsed the file
            wait_http(f"{self.base}/dags/{dag_id}", 300, self.server, session=self.session)

        def healthy(response):
            body = response.json() if response.status_code == 200 else {}
            return all(body.get(part, {}).get("status") == "healthy" for part in ("scheduler", "dag_processor", "triggerer"))

        wait_http(f"{self.base}/monitor/health", 120, self.server, ok=healthy, session=self.session)

    def call(self, method, url, **kwargs):
        """A request, retried when the API server answers 500 "Database error": on SQLite a
        write meets the scheduler's lock now and then (a failed trigger creates no run)."""
        for attempt in range(600):
            response = self.session.request(method, url, timeout=60, **kwargs)
            if response.status_code != 500 or "Database error" not in response.text:
                break
            self.retries_500 += 1
            time.sleep(0.05)
        if response.status_code != 200:
            raise RuntimeError(f"airflow {method} {url}: {response.status_code} {response.text[:500]}")
        return response.json()

    def trigger(self, kind):
        run = self.call("POST", f"{self.base}/dags/{self.dag_ids[kind]}/dagRuns", json={"logical_date": None})
        return (self.dag_ids[kind], run["dag_run_id"])

    def trigger_queue(self, count):
        return [self.trigger("queue") for _ in range(count)]

    def state(self, handle):
        dag_id, run_id = handle
        run = self.call("GET", f"{self.base}/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        finished = run["state"] in ("success", "failed")
        end = iso_seconds(run["end_date"]) if finished and run.get("end_date") else None
        return finished, run["state"] == "success", end, run

    def succeeded(self, handles):
        runs = self.call("GET", f"{self.base}/dags/bench_queue/dagRuns", params={"state": "success", "limit": 1})
        return runs["total_entries"]  # the queue DAG runs only in this benchmark

    def extra(self):
        return {"retries_500": self.retries_500}

    def stop(self):
        self.server.stop()

    def in_process_latency(self, count):
        """dag.test() of the one-task DAG in a warm process, after the standalone stopped (its
        scheduler would otherwise share the SQLite database and the cores)."""
        script = self.home / "dag_test.py"
        script.write_text(AIRFLOW_DAG_TEST)
        env = dict(self.env(), AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")
        out = subprocess.run([str(self.venv / "bin" / "python"), str(script), str(self.dag_file), "bench_one", self.record_files["one"], str(count)],
                             env=env, cwd=self.home, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"airflow dag.test(): {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


class Prefect:
    name = "prefect"

    def __init__(self, args, workdir, sampler):
        self.args, self.home, self.sampler = args, workdir / "prefect", sampler
        self.home.mkdir()
        self.venv = Path(args.prefect_venv)
        self.session = requests.Session()
        self.record_files = {kind: str(self.home / f"{kind}.txt") for kind in ("fanout", "one", "queue")}
        self.retries_503 = 0

    def env(self):
        return dict(
            os.environ,
            PATH=str(self.venv / "bin") + os.pathsep + os.environ["PATH"],
            VIRTUAL_ENV=str(self.venv),
            PREFECT_HOME=str(self.home / "home"),
            PREFECT_API_URL=self.base,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_RUNNER_POLL_FREQUENCY="1",  # whole seconds; the default is 10
        )

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}/api"
        self.flows = self.home / "flows.py"
        self.flows.write_text(PREFECT_FLOWS)
        prefect = str(self.venv / "bin" / "prefect")
        self.server = Service("prefect server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], self.env(), self.home, self.home / "server.log")
        self.sampler.roots = [self.server.pid]
        wait_http(self.base + "/health", 180, self.server, session=self.session)
        self.runner = Service("prefect serve", [str(self.venv / "bin" / "python"), str(self.flows), str(self.args.queue_concurrency)], self.env(), self.home, self.home / "serve.log")
        self.sampler.roots = [self.server.pid, self.runner.pid]
        deadline = time.time() + 180
        while True:
            self.runner.check_alive()
            deployments = self.post("/deployments/filter", {})
            if len(deployments) >= 3:
                break
            if time.time() > deadline:
                raise RuntimeError(f"prefect serve registered {len(deployments)} of 3 deployments; see {self.runner.log_path}")
            time.sleep(0.5)
        self.deployments = {d["name"]: d["id"] for d in deployments}

    def post(self, path, body):
        """POST, retried on 503 as Prefect's own client does (its SQLite store times out under
        load and says so with a 503), but every 50 ms rather than with its backoff of seconds,
        so that the figure is the server's and not a client's wait."""
        for attempt in range(600):
            response = self.session.post(self.base + path, json=body, timeout=60)
            if response.status_code != 503:
                break
            self.retries_503 += 1
            time.sleep(0.05)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"prefect POST {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def trigger(self, kind):
        parameters = {"out": self.record_files[kind]}
        if kind == "fanout":
            parameters["width"] = self.args.fanout_width
        return self.post(f"/deployments/{self.deployments[kind]}/create_flow_run", {"parameters": parameters})["id"]

    def trigger_queue(self, count):
        return [self.trigger("queue") for _ in range(count)]

    def state(self, flow_run_id):
        for attempt in range(120):
            response = self.session.get(f"{self.base}/flow_runs/{flow_run_id}", timeout=60)
            if response.status_code != 503:
                break
            self.retries_503 += 1
            time.sleep(0.5)  # a state read is off the measured path: leave the server be
        response.raise_for_status()
        run = response.json()
        kind = run["state"]["type"]
        finished = kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
        end = iso_seconds(run["end_time"]) if finished and run.get("end_time") else None
        return finished, kind == "COMPLETED", end, run

    def succeeded(self, flow_run_ids):
        body = {"flow_runs": {"id": {"any_": list(flow_run_ids)}, "state": {"type": {"any_": ["COMPLETED"]}}}}
        return self.post("/flow_runs/count", body)

    def extra(self):
        return {"retries_503": self.retries_503}

    def stop(self):
        self.runner.stop()
        self.server.stop()

    def in_process(self, count, width, repeats, settle):
        """The flows called directly in a warm process, with the server up to record them."""
        script = self.home / "direct.py"
        script.write_text(PREFECT_DIRECT)
        env = dict(self.env(), PREFECT_LOGGING_LEVEL="WARNING")
        time.sleep(settle)
        out = subprocess.run([str(self.venv / "bin" / "python"), str(script), str(self.flows), str(self.home / "direct.txt"), str(count), str(width), str(repeats), str(settle)],
                             env=env, cwd=self.home, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"prefect direct calls: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- benchmarks

def wait_finished(system, handle, timeout=600, poll=0.02):
    deadline = time.time() + timeout
    while True:
        finished, ok, end, run = system.state(handle)
        if finished:
            if not ok:
                raise RuntimeError(f"{system.name}: run {handle} did not succeed: {json.dumps(run)[:1500]}")
            return end
        if time.time() > deadline:
            raise RuntimeError(f"{system.name}: run {handle} not finished after {timeout} s")
        time.sleep(poll)


def failure_check(system, handle):
    def check():
        finished, ok, _, run = system.state(handle)
        if finished and not ok:
            raise RuntimeError(f"{system.name}: run {handle} failed: {json.dumps(run)[:1500]}")
    return check


def bench_fanout(system, args, repeats):
    """Trigger to the last task's end, and to the run's recorded end, per repeat."""
    path, tasks = system.record_files["fanout"], args.fanout_width + 2
    last_ends, run_ends = [], []
    for repeat in range(repeats):
        # Each repeat starts on a system gone idle: Prefect's server, for one, digests the
        # previous run's hundred task runs for seconds after it ended (and answers 503 meanwhile).
        time.sleep(args.settle)
        clear(path)
        started = time.time()
        handle = system.trigger("fanout")
        records = wait_records(path, tasks, timeout=1800, check=failure_check(system, handle), poll=0.01)
        end = wait_finished(system, handle, timeout=600, poll=0.05)
        last_ends.append(max(r[2] for r in records) - started)
        run_ends.append(end - started if end else float("nan"))
        print(f"   fan-out {repeat + 1}/{repeats}: last task ended {last_ends[-1]:.3f} s after the trigger, run recorded finished at {run_ends[-1]:.3f} s", flush=True)
    return {"repeats": repeats, "tasks": tasks, "last_task_end_s": last_ends, "run_end_s": run_ends,
            "median_s": statistics.median(last_ends), "median_run_end_s": statistics.median(run_ends)}


def process_floor(python, script, width, slots, repeats):
    """The fan-out's 100 task processes started by this script itself, with no server: the root,
    then the middle tasks `slots` at a time, then the final one. What starting the
    interpreters costs on this machine, the floor under any process-per-task runner."""
    times = []
    for _ in range(repeats):
        out = str(Path(script).with_name("floor.txt"))
        clear(out)

        def start(name):
            return subprocess.Popen([str(python), str(script), name, out], stdout=subprocess.DEVNULL)

        started = time.time()
        start("root").wait()
        pending, running = [f"m{i:02d}" for i in range(width)], []
        while pending or running:
            while pending and len(running) < slots:
                running.append(start(pending.pop()))
            running = [p for p in running if p.poll() is None]
            time.sleep(0.0005)
        start("final").wait()
        records = read_records(out)
        assert len(records) == width + 2, len(records)
        times.append(max(r[2] for r in records) - started)
    return {"repeats": repeats, "last_task_end_s": times, "median_s": statistics.median(times)}


def bench_latency(system, count):
    """Trigger to the first statement of the task, one run at a time."""
    path, latencies = system.record_files["one"], []
    for i in range(count):
        clear(path)
        started = time.time()
        handle = system.trigger("one")
        records = wait_records(path, 1, timeout=600, check=failure_check(system, handle), poll=0.002)
        latencies.append(records[0][1] - started)
        wait_finished(system, handle, poll=0.05)  # runs never overlap
        if (i + 1) % max(1, count // 5) == 0:
            print(f"   latency {i + 1}/{count}: p50 so far {percentile(latencies, 50) * 1000:.1f} ms", flush=True)
    return latency_summary(latencies)


def latency_summary(latencies):
    return {"runs": len(latencies), "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "min_ms": min(latencies) * 1000, "max_ms": max(latencies) * 1000, "latencies_ms": [round(x * 1000, 2) for x in latencies]}


def bench_queue(system, count, sampler):
    """`count` runs triggered at once; completed runs per second and peak memory."""
    path = system.record_files["queue"]
    clear(path)
    sampler.reset()
    started = time.time()
    handles = system.trigger_queue(count)
    submitted = time.time() - started
    print(f"   queue: {count} runs triggered in {submitted:.2f} s", flush=True)
    check_first, check_last = failure_check(system, handles[0]), failure_check(system, handles[-1])
    records = wait_records(path, count, timeout=max(600, count * 5), check=lambda: (check_first(), check_last()), poll=0.05)
    elapsed = max(r[2] for r in records) - started
    peak = sampler.peak_kib / 1024
    for handle in (handles[0], handles[-1]):
        wait_finished(system, handle, poll=0.05)
    time.sleep(1)  # the last runs' states are written a moment after their task ends
    ok = system.succeeded(handles)
    print(f"   queue: {count} runs done in {elapsed:.2f} s ({count / elapsed:.1f} runs/s), {ok} succeeded, peak RSS {peak:.0f} MiB", flush=True)
    return {"runs": count, "succeeded": ok, "trigger_s": submitted, "elapsed_s": elapsed, "runs_per_s": count / elapsed, "peak_rss_mib": peak}


def run_system(system, args, sampler, counts):
    print(f"== {system.name}: starting", flush=True)
    started = time.time()
    system.start()
    print(f"   ready after {time.time() - started:.1f} s", flush=True)
    result = {"counts": counts}
    try:
        # One unmeasured run first: the first run of a freshly started system pays for caches
        # and imports (Airflow's first took 3 s against 1.1 s for the next).
        clear(system.record_files["one"])
        wait_finished(system, system.trigger("one"), timeout=600)
        if "fanout" in args.phases:
            result["fanout"] = bench_fanout(system, args, counts["fanout_repeats"])
            if isinstance(system, Tarn):
                result["floor"] = process_floor(system.python, system.script, args.fanout_width, args.slots, counts["fanout_repeats"])
                print(f"   floor: the same task processes started with no server, {result['floor']['median_s']:.3f} s", flush=True)
        if "latency" in args.phases:
            result["latency"] = bench_latency(system, counts["latency_runs"])
        if "queue" in args.phases:
            result["queue"] = bench_queue(system, counts["queue_runs"], sampler)
        if isinstance(system, Prefect) and args.in_process:
            print("   prefect: flows called in process...", flush=True)
            direct = system.in_process(counts["latency_runs"], args.fanout_width, counts["fanout_repeats"], args.settle)
            result["in_process"] = {"latency": latency_summary(direct["latencies"]), "fanout_s": direct["fanouts"],
                                    "fanout_median_s": statistics.median(direct["fanouts"])}
        result.update(system.extra())
    finally:
        system.stop()
    if isinstance(system, Airflow) and args.in_process and "latency" in args.phases:
        print("   airflow: dag.test() in process...", flush=True)
        result["in_process"] = {"latency": latency_summary(system.in_process_latency(counts["latency_runs"]))}
    return result


# ---------------------------------------------------------------- table

def fmt(value, digits=1):
    if value is None or value != value:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(theirs, ours, higher_is_better=False):
    """How many times better tarn is: their time / tarn's, or tarn's rate / theirs."""
    if theirs is None or ours is None or not theirs or not ours or theirs != theirs or ours != ours:
        return "-"
    value = ours / theirs if higher_is_better else theirs / ours
    return f"{value:.1f}x"


def get(results, system, *path):
    value = results.get(system)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def print_table(results, args):
    systems = ["tarn", "airflow", "prefect"]
    rows = []  # (benchmark, measure, {system: (cell, number)}, higher_is_better)

    def line(benchmark, measure, path, digits=1, higher=False, spread=None):
        """`spread`: the path of the repeats' values, shown as (min-max) after the median."""
        cells, texts = {}, {}
        for system in systems:
            cells[system] = get(results, system, *path)
            texts[system] = fmt(cells[system], digits)
            values = get(results, system, *spread) if spread else None
            if values and len(values) > 1:
                texts[system] += f" ({fmt(min(values), digits)}-{fmt(max(values), digits)})"
        rows.append((benchmark, measure, cells, texts, higher))

    counts = {s: get(results, s, "counts") or {} for s in systems}
    tasks = args.fanout_width + 2
    line(f"fan-out {tasks} tasks", "trigger -> last task ends, s, median (range)", ("fanout", "median_s"), digits=2, spread=("fanout", "last_task_end_s"))
    line(f"fan-out {tasks} tasks", "trigger -> run recorded finished, s, median", ("fanout", "median_run_end_s"), digits=2)
    line(f"fan-out {tasks} tasks", "flow called in process (Prefect), s, median (range)", ("in_process", "fanout_median_s"), digits=2, spread=("in_process", "fanout_s"))
    line(f"fan-out {tasks} tasks", "floor: tarn's task processes started with no server, s", ("floor", "median_s"), digits=2, spread=("floor", "last_task_end_s"))
    line("latency", "trigger -> task code starts, p50 ms", ("latency", "p50_ms"))
    line("latency", "trigger -> task code starts, p99 ms", ("latency", "p99_ms"))
    line("latency", "in process (dag.test() / flow call), p50 ms", ("in_process", "latency", "p50_ms"))
    line("latency", "in process (dag.test() / flow call), p99 ms", ("in_process", "latency", "p99_ms"))
    line("queued runs", f"runs/s, {args.queue_concurrency} at once", ("queue", "runs_per_s"), higher=True)
    line("queued runs", "peak RSS of the process tree, MiB", ("queue", "peak_rss_mib"), digits=0)

    header = "| benchmark | measure | tarn | airflow | prefect | airflow vs tarn | prefect vs tarn |"
    print()
    print(header)
    print("|---|---|---|---|---|---|---|")
    for benchmark, measure, cells, texts, higher in rows:
        if all(v is None for v in cells.values()):
            continue
        # the in-process lines compare with tarn's triggered figure (tarn has no in-process mode)
        ours = cells["tarn"]
        if "in process" in measure:
            base = ("fanout", "median_s") if "fan-out" in benchmark else ("latency", "p50_ms" if "p50" in measure else "p99_ms")
            ours = get(results, "tarn", *base)
        row = [benchmark, measure] + [texts[s] for s in systems]
        if measure.startswith("floor"):  # a reference for tarn's own line, nobody's result
            row += ["-", "-"]
        else:
            row += [ratio(cells[s], ours, higher) for s in ("airflow", "prefect")]
        print("| " + " | ".join(row) + " |")
    print()
    print("Ratios say how many times better tarn is on the line (their time / tarn's; for runs/s")
    print("tarn's / theirs; for memory their MiB / tarn's); in-process lines compare with tarn's")
    print("triggered run, which has a server, a scheduler and a process per task in it.")
    notes = []
    for system in systems:
        c = counts[system]
        done = results.get(system) or {}
        parts = [text for phase, text in (("fanout", f"fan-out x{c.get('fanout_repeats')}"), ("latency", f"latency {c.get('latency_runs')} runs"),
                                          ("queue", f"{c.get('queue_runs')} queued runs")) if phase in done]
        if parts:
            notes.append(f"{system}: " + ", ".join(parts))
    print("Counts: " + "; ".join(notes) + ".")
    if any("latency" in (results.get(s) or {}) and counts[s]["latency_runs"] < 100 for s in systems):
        print("With fewer than 100 runs a p99 is the slowest run.")
    retries = get(results, "airflow", "retries_500")
    if retries:
        print(f"Airflow's API server answered 500 (database error) {retries} times; those calls were retried.")
    retries = get(results, "prefect", "retries_503")
    if retries:
        print(f"Prefect's server answered 503 {retries} times; those calls were retried.")
    hwm = get(results, "tarn", "server_vmhwm_mib")
    if hwm:
        print(f"tarn's server process alone peaked at {hwm:.0f} MiB (VmHWM over the whole run).")

    # The goals, reported, never asserted.
    ours = get(results, "tarn", "fanout", "median_s")
    theirs = [v for v in (get(results, s, "fanout", "median_s") for s in ("airflow", "prefect")) if v]
    if ours and theirs:
        size = "" if args.fanout_width == 98 else f" (measured on {args.fanout_width + 2} tasks; the goal is for 100)"
        print(f"Goal, fan-out at least 10x faster than the faster competitor: {min(theirs) / ours:.1f}x, {'met' if min(theirs) / ours >= 10 else 'not met'}{size}.")
    p50 = get(results, "tarn", "latency", "p50_ms")
    if p50:
        print(f"Goal, latency p50 under 50 ms: {p50:.1f} ms, {'met' if p50 < 50 else 'not met'}.")


# ---------------------------------------------------------------- main

def ensure_venv(name, path, install):
    if (Path(path) / "bin" / "python").exists():
        return True
    if not install:
        print(f"  no {name} venv at {path}: {name} left out (bench/setup-orchestrators.sh makes it)", flush=True)
        return False
    print(f"  making the {name} venv ({SETUP.name})...", flush=True)
    subprocess.run([str(SETUP), name], check=True, stdout=subprocess.DEVNULL)
    return True


def version_of(venv, package):
    out = subprocess.run([str(Path(venv) / "bin" / "python"), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"], capture_output=True, text=True)
    return out.stdout.strip() or None


def tarn_binary(args):
    if args.tarn_bin:
        return args.tarn_bin
    print("building tarn (cargo build --profile quick)...", flush=True)
    subprocess.run(["cargo", "build", "--profile", "quick", "-p", "tarn-cli"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "quick" / "tarn")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarn-bin", help="the tarn binary (default: cargo build --profile quick)")
    parser.add_argument("--jobs-python", help="tarn's --jobs-python (default: a bare venv made for the run)")
    parser.add_argument("--quick", action="store_true", help="small counts: a 20-task fan-out once, 20/5 latency runs, 50/10 queued runs")
    parser.add_argument("--skip-tarn", action="store_true")
    parser.add_argument("--skip-airflow", action="store_true")
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--no-in-process", dest="in_process", action="store_false", help="leave out dag.test() and Prefect's direct flow calls")
    parser.add_argument("--phases", default="fanout,latency,queue")
    parser.add_argument("--slots", type=int, default=8, help="tasks at once on every system (tarn --jobs-slots, Airflow parallelism)")
    parser.add_argument("--queue-concurrency", type=int, default=8, help="runs at once in the queue benchmark (the rest wait queued)")
    parser.add_argument("--fanout-width", type=int, default=98, help="middle tasks of the fan-out (plus root and final)")
    parser.add_argument("--fanout-repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3, help="seconds of rest before each fan-out run")
    parser.add_argument("--competitor-fanout-repeats", type=int, default=3)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--competitor-latency-runs", type=int, default=20)
    parser.add_argument("--queue-runs", type=int, default=1000)
    parser.add_argument("--competitor-queue-runs", type=int, default=100)
    parser.add_argument("--airflow-venv", default=str(CACHE / "airflow-venv"))
    parser.add_argument("--prefect-venv", default=str(CACHE / "prefect-venv"))
    parser.add_argument("--no-install", dest="install", action="store_false", help="do not make missing competitor venvs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    parser.add_argument("--out", default="bench-jobs.json")
    args = parser.parse_args()
    if args.quick:
        args.fanout_width, args.fanout_repeats, args.competitor_fanout_repeats = 18, 1, 1
        args.latency_runs, args.competitor_latency_runs = 20, 5
        args.queue_runs, args.competitor_queue_runs = 50, 10
    args.phases = args.phases.split(",")

    # Stop every started process on any way out: an error, Ctrl-C, SIGTERM or SIGHUP. SIGINT
    # is set explicitly: a shell starts background jobs with it ignored, and Python then leaves
    # it so.
    atexit.register(Service.stop_all)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _: sys.exit(128 + number))

    systems = []
    if not args.skip_tarn:
        args.tarn_bin = tarn_binary(args)
        systems.append(Tarn)
    if not args.skip_airflow and ensure_venv("airflow", args.airflow_venv, args.install):
        systems.append(Airflow)
    if not args.skip_prefect and ensure_venv("prefect", args.prefect_venv, args.install):
        systems.append(Prefect)
    versions = {}
    if Airflow in systems:
        versions["airflow"] = version_of(args.airflow_venv, "apache-airflow")
    if Prefect in systems:
        versions["prefect"] = version_of(args.prefect_venv, "prefect")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "no competitors", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="tarn-bench-jobs-"))
    sampler = TreeSampler()
    results = {"versions": versions, "machine_cores": os.cpu_count()}
    try:
        for cls in systems:
            ours = cls is Tarn
            counts = {
                "fanout_repeats": args.fanout_repeats if ours else args.competitor_fanout_repeats,
                "latency_runs": args.latency_runs if ours else args.competitor_latency_runs,
                "queue_runs": args.queue_runs if ours else args.competitor_queue_runs,
            }
            system = cls(args, workdir, sampler)
            try:
                results[system.name] = run_system(system, args, sampler, counts)
            finally:
                sampler.roots = []
            Path(args.out).write_text(json.dumps(results, indent=2))  # what is done so far survives a later failure
    finally:
        sampler.close()
        Service.stop_all()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    Path(args.out).write_text(json.dumps(results, indent=2))
    print_table(results, args)


if __name__ == "__main__":
    main()
