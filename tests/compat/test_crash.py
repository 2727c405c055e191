"""Crash safety: `kill -9` at random moments while clients write, many times, on the suite's
backend (SQLite, or PostgreSQL with TARN_TEST_DATABASE_URL). Six clients write at once: metric
and param batches, model versions (each a copy of the model's files), table appends through the
data API and SQL (and new tables), feature writes each followed by a publish, scored requests
logged to an inference table, and job runs. After every restart: each write the server
acknowledged is there, exactly; nothing is half made (a version without all its files, a table
in the catalog its log does not back, a publish recorded but not written, a request logged
twice); and, at the end, every interrupted job run has ended.

TARN_CRASH_KILLS sets the number of kills (default 6); the counts are printed (`pytest -s`)."""

import os
import random
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import deltalake
import mlflow
import pyarrow as pa
import requests
from mlflow.entities import Metric, Param

from conftest import start_tarn
from test_features import ARROW, create_feature_table
from test_inference_monitoring import FEATURES, train_and_register
from test_job_runs import script, workspace
from test_lakehouse import UC, arrow_body, call, local_path

KILLS = int(os.environ.get("TARN_CRASH_KILLS", "6"))
KEYS = 8
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


@dataclass
class Ledger:
    """What one client tried and what the server acknowledged."""

    tried: set = field(default_factory=set)
    acked: set = field(default_factory=set)
    failures: int = 0
    errors: list = field(default_factory=list)

    def attempt(self, key, write):
        self.tried.add(key)
        try:
            write()
        except (requests.RequestException, mlflow.exceptions.MlflowException, OSError, AssertionError) as error:
            self.failures += 1
            self.errors.append(str(error)[:300])
            time.sleep(0.05)  # the server may be restarting: do not spin
            return False
        self.acked.add(key)
        return True


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Crashing:
    """One server restarted on the same data dir, database, port and admin token."""

    def __init__(self, tmp_path):
        url = os.environ.get("TARN_TEST_DATABASE_URL")
        self.database_url = f"{url}_crash" if url else None
        self.data_dir = str(tmp_path / "data")
        self.port = _free_port()
        self.token = "tarn_crash_" + secrets.token_hex(16)
        self.server, self._stop = self._start(fresh=True)

    def _start(self, fresh):
        return start_tarn(
            extra_args=["--table-watch-interval-ms", "200"],
            database_url=self.database_url,
            data_dir=self.data_dir,
            fresh_database=fresh,
            port=self.port,
            admin_token=self.token,
        )

    def kill_and_restart(self):
        self.server.process.kill()
        self.server.process.wait()
        self.server, self._stop = self._start(fresh=False)

    def stop(self):
        self._stop()


def _status(response):
    assert response.status_code == 200, response.text
    return response


def test_kill_9_under_load_loses_no_acknowledged_write_and_leaves_nothing_half_made(tmp_path, monkeypatch):
    crashing = Crashing(tmp_path)
    try:
        _run(crashing, tmp_path, monkeypatch)
    finally:
        crashing.stop()


def _run(crashing, tmp_path, monkeypatch):
    server = crashing.server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.base)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    mlflow.set_tracking_uri(server.base)
    client = mlflow.MlflowClient(server.base)
    schema = f"crash_{uuid.uuid4().hex[:8]}"
    _status(call(server, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}))

    # What the clients write to.
    model_name = f"crash-{uuid.uuid4().hex[:6]}"
    train_and_register(client, model_name)
    source = client.get_model_version(model_name, "1")
    source_files = _version_files(server, client, model_name, "1")
    run_id = client.create_run(client.create_experiment(f"crash-{uuid.uuid4().hex[:6]}")).info.run_id
    table = f"dev.{schema}.events"
    _status(call(server, "POST", f"{UC}/tables", json={"name": "events", "catalog_name": "dev", "schema_name": schema, "columns": [{"name": "id", "type_text": "bigint"}, {"name": "way", "type_text": "string"}]}))
    features = f"dev.{schema}.spend"
    create_feature_table(server, features, _feature_rows(range(KEYS), 0), primary_keys="k", timestamp_keys="ts")
    _status(call(server, "POST", f"/api/2.0/tarn/feature-tables/{features}/publish", json={}))
    endpoint = f"crash-{uuid.uuid4().hex[:6]}"
    capture = {"catalog_name": "dev", "schema_name": schema, "table_name_prefix": "scored"}
    _status(call(server, "POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {"served_entities": [{"entity_name": model_name, "entity_version": "1"}], "auto_capture_config": capture}}))
    _wait_ready(server, endpoint)
    task = script(tmp_path, "short.py", "import time\ntime.sleep(0.3)\nprint('done')\n")
    job_id = workspace(server).jobs.create(name=f"crash-{uuid.uuid4().hex[:6]}", tasks=[_python_task(task)]).job_id

    ledgers = {name: Ledger() for name in ["tracking", "registry", "tables", "created", "features", "scoring", "jobs"]}
    ledgers["registry"].acked.add(1)
    published = {k: 0 for k in range(KEYS)}
    counter = iter(range(1, 10**9))
    checked_versions = {"1"}

    def clients(stop):
        now = lambda: crashing.server  # noqa: E731 -- the live server, restarted between rounds

        def tracking():
            while not stop.is_set():
                i = next(counter)
                ledgers["tracking"].attempt(i, lambda: mlflow.MlflowClient(now().base).log_batch(run_id, metrics=[Metric("loss", i / 10, 1_700_000_000_000 + i, i)], params=[Param(f"p{i}", f"v{i}-é")]))

        def registry():
            while not stop.is_set():
                box = {}
                key = next(counter)

                def create():
                    box["version"] = mlflow.MlflowClient(now().base).create_model_version(model_name, source.source, run_id=source.run_id).version

                if ledgers["registry"].attempt(key, create):
                    ledgers["registry"].acked.discard(key)
                    ledgers["registry"].acked.add(int(box["version"]))

        def tables():
            while not stop.is_set():
                i = next(counter)
                if i % 7 == 0:
                    name = f"t{i}"
                    ledgers["created"].attempt(name, lambda: _create_table(now(), schema, name, i))
                elif i % 2:
                    ledgers["tables"].attempt(i, lambda: _status(call(now(), "POST", f"/api/2.0/tarn/tables/{table}/data", data=arrow_body(pa.table({"id": pa.array([i], pa.int64()), "way": ["api"]})), headers=ARROW)))
                else:
                    ledgers["tables"].attempt(i, lambda: _sql_insert(now(), table, i))

        def feature_publishes():
            while not stop.is_set():
                i = next(counter)
                key = i % KEYS

                def write_and_publish():
                    _status(call(now(), "POST", f"/api/2.0/tarn/feature-tables/{features}/data", data=arrow_body(_feature_rows([key], i)), headers=ARROW))
                    _status(call(now(), "POST", f"/api/2.0/tarn/feature-tables/{features}/publish", json={}))

                if ledgers["features"].attempt(i, write_and_publish):
                    published[key] = max(published[key], i)

        def scoring():
            while not stop.is_set():
                i = next(counter)
                row = {f: float(i % 13) / 7 for f in FEATURES}
                ledgers["scoring"].attempt(f"c{i}", lambda: _status(call(now(), "POST", f"/serving-endpoints/{endpoint}/invocations", json={"dataframe_records": [row], "client_request_id": f"c{i}"})))

        def jobs():
            while not stop.is_set():
                box = {}

                def run_now():
                    box["run"] = _status(call(now(), "POST", "/api/2.2/jobs/run-now", json={"job_id": job_id})).json()["run_id"]

                key = next(counter)
                if ledgers["jobs"].attempt(key, run_now):
                    ledgers["jobs"].acked.discard(key)
                    ledgers["jobs"].acked.add(box["run"])
                time.sleep(0.2)

        return [tracking, registry, tables, feature_publishes, scoring, jobs]

    rng = random.Random(int(os.environ.get("TARN_CRASH_SEED", "0")) or None)
    for round_ in range(KILLS):
        stop = threading.Event()
        threads = [threading.Thread(target=work, daemon=True) for work in clients(stop)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(1.0, 3.0))
        crashing.kill_and_restart()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a client hung"
        server = crashing.server
        _wait_ready(server, endpoint)
        _check_tracking(server, run_id, ledgers["tracking"])
        _check_registry(server, client_for(server), model_name, source_files, ledgers["registry"], checked_versions)
        _check_tables(server, schema, table, ledgers["tables"], ledgers["created"])
        _check_features(server, features, published)
        _check_scoring(server, f"dev.{schema}.scored_payload", ledgers["scoring"])
        for name, l in ledgers.items():
            if os.environ.get("TARN_CRASH_DEBUG"):
                print(name, l.errors[-5:])
        print(f"round {round_ + 1}/{KILLS}: " + ", ".join(f"{name} {len(l.acked)} acked/{len(l.tried)} tried" for name, l in ledgers.items()))

    _check_job_runs(crashing.server, job_id, ledgers["jobs"])
    checked = sum(len(l.acked) for l in ledgers.values())
    failed = sum(l.failures for l in ledgers.values())
    print(f"{KILLS} kills; {checked} acknowledged writes checked, 0 lost; {failed} requests refused or cut off by the kills")
    assert all(l.acked for l in ledgers.values()), {name: len(l.acked) for name, l in ledgers.items()}


def client_for(server):
    return mlflow.MlflowClient(server.base)


def _python_task(file):
    from test_job_runs import python_task

    return python_task("main", file)


def _feature_rows(keys, i):
    keys = list(keys)
    return pa.table({
        "k": pa.array(keys, pa.int64()),
        "ts": pa.array([START_US + i * 1_000_000] * len(keys), pa.timestamp("us", tz="UTC")),
        "v": pa.array([i] * len(keys), pa.int64()),
    })


def _create_table(server, schema, name, i):
    _status(call(server, "POST", f"{UC}/tables", json={"name": name, "catalog_name": "dev", "schema_name": schema, "columns": [{"name": "id", "type_text": "bigint"}]}))
    _status(call(server, "POST", f"/api/2.0/tarn/tables/dev.{schema}.{name}/data", data=arrow_body(pa.table({"id": pa.array([i], pa.int64())})), headers=ARROW))


def _sql_insert(server, table, i):
    answer = _status(call(server, "POST", "/api/2.0/sql/statements", json={"statement": f"INSERT INTO {table} VALUES ({i}, 'sql')", "warehouse_id": "any", "wait_timeout": "30s"})).json()
    assert answer["status"]["state"] == "SUCCEEDED", answer


def _wait_ready(server, endpoint, timeout=60):
    deadline = time.time() + timeout
    while True:
        state = _status(call(server, "GET", f"/api/2.0/serving-endpoints/{endpoint}")).json()["state"]
        if state.get("ready") == "READY" and state.get("config_update") in (None, "NOT_UPDATING"):
            return
        assert time.time() < deadline, state
        time.sleep(0.2)


def _check_tracking(server, run_id, ledger):
    client = client_for(server)
    history = {m.step: m.value for m in client.get_metric_history(run_id, "loss")}
    assert ledger.acked <= set(history), f"lost metric steps {sorted(ledger.acked - set(history))[:10]}"
    assert set(history) <= ledger.tried
    assert all(history[step] == step / 10 for step in history)
    params = client.get_run(run_id).data.params
    assert {f"p{i}" for i in ledger.acked} <= set(params)
    assert all(params[f"p{i}"] == f"v{i}-é" for i in ledger.acked)


def _artifacts(server, path):
    listed = _status(call(server, "GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": path})).json().get("files", [])
    files = {}
    for entry in listed:
        inside = f"{path}/{entry['path'].rsplit('/', 1)[-1]}"
        if entry["is_dir"]:
            files.update({f"{entry['path'].rsplit('/', 1)[-1]}/{k}": v for k, v in _artifacts(server, inside).items()})
        else:
            files[entry["path"].rsplit("/", 1)[-1]] = _status(call(server, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{inside}")).content
    return files


def _version_files(server, client, name, version):
    return _artifacts(server, client.get_model_version_download_uri(name, version).split("mlflow-artifacts:/", 1)[1])


def _check_registry(server, client, name, source_files, ledger, checked):
    versions = {v.version: v for v in client.search_model_versions(f"name='{name}'", max_results=10_000)}
    assert {str(v) for v in ledger.acked} <= set(versions), "an acknowledged version is missing"
    for number, version in versions.items():
        assert version.status == "READY", (number, version.status)
        if number not in checked:
            # Every version has every file of its source, byte for byte.
            assert _version_files(server, client, name, number) == source_files, f"version {number} is half made"
            checked.add(number)


def _delta_rows(server, full_name):
    info = _status(call(server, "GET", f"{UC}/tables/{full_name}")).json()
    return deltalake.DeltaTable(local_path(info)).to_pyarrow_table().to_pylist()


def _check_tables(server, schema, table, appended, created):
    ids = [row["id"] for row in _delta_rows(server, table)]
    assert len(ids) == len(set(ids)), "a row was written twice"
    assert appended.acked <= set(ids), f"lost rows {sorted(appended.acked - set(ids))[:10]}"
    assert set(ids) <= appended.tried
    # tarn's SQL reads what the log holds.
    answer = _status(call(server, "POST", "/api/2.0/sql/statements", json={"statement": f"SELECT count(*) FROM {table}", "warehouse_id": "any", "wait_timeout": "30s"})).json()
    assert answer["result"]["data_array"] == [[str(len(ids))]], answer
    listed = {t["name"] for t in _status(call(server, "GET", f"{UC}/tables", params={"catalog_name": "dev", "schema_name": schema, "max_results": 1000})).json().get("tables", [])}
    assert created.acked <= listed, f"lost tables {sorted(created.acked - listed)}"
    for name in listed - {"events", "spend"} - {t for t in listed if t.startswith("scored_")}:
        # Each table the catalog lists is readable; the ones acknowledged hold their row.
        read = call(server, "GET", f"/api/2.0/tarn/tables/dev.{schema}.{name}/data")
        assert read.status_code == 200, (name, read.text)
        got = pa.ipc.open_stream(read.content).read_all().column("id").to_pylist()
        if name in created.acked:
            assert got == [int(name[1:])], (name, got)
        else:
            assert got in ([], [int(name[1:])]), (name, got)


def _check_features(server, name, published):
    online = _status(call(server, "GET", f"/api/2.0/tarn/feature-tables/{name}")).json()["online"]
    version = online["published_version"]
    info = _status(call(server, "GET", f"{UC}/tables/{name}")).json()
    # What the online store serves is the table as of the version it says it published.
    rows = deltalake.DeltaTable(local_path(info), version=version).to_pyarrow_table().to_pylist()
    latest = {}
    for row in rows:
        if row["k"] not in latest or row["ts"] > latest[row["k"]]["ts"]:
            latest[row["k"]] = row
    found = _status(call(server, "POST", "/api/2.0/tarn/online/lookup", json={"table_name": name, "keys": [{"k": k} for k in range(KEYS)]})).json()["results"]
    for k, result in enumerate(found):
        assert result["status"] == "PRESENT", result
        assert result["values"]["v"] == latest[k]["v"], (k, result, latest[k], version)
        # An acknowledged publish is never undone.
        assert result["values"]["v"] >= published[k], (k, result, published[k])


def _check_scoring(server, payload, ledger):
    deadline = time.time() + 30
    while True:
        exists = call(server, "GET", f"{UC}/tables/{payload}")
        logged = [row["client_request_id"] for row in _delta_rows(server, payload)] if exists.status_code == 200 else []
        assert len(logged) == len(set(logged)), "a request was logged twice"
        assert set(logged) <= ledger.tried
        if ledger.acked <= set(logged):
            return
        assert time.time() < deadline, f"acknowledged requests not logged: {sorted(ledger.acked - set(logged))[:10]}"
        time.sleep(0.5)


def _check_job_runs(server, job_id, ledger):
    w = workspace(server)
    acked = set(ledger.acked)
    deadline = time.time() + 120
    while True:
        runs = {r.run_id: r for r in w.jobs.list_runs(job_id=job_id)}
        assert acked <= set(runs), f"lost runs {sorted(acked - set(runs))[:10]}"
        open_runs = [r.run_id for r in runs.values() if r.state.life_cycle_state.value not in TERMINAL]
        if not open_runs:
            break
        assert time.time() < deadline, f"interrupted runs never ended: {open_runs[:10]}"
        time.sleep(0.5)
    ended = [r.state.result_state.value if r.state.result_state else r.state.life_cycle_state.value for r in runs.values()]
    print(f"job runs: {len(runs)}, ended {dict((s, ended.count(s)) for s in set(ended))}")
