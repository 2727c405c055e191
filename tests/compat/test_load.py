"""Two replicas under a mixed load (tracking, model versions, online lookups, scoring, SQL,
artifact uploads; each client round-robin over both), one replica killed with `kill -9` half way
and restarted: requests to the other replica all succeed, the killed one fails only requests in
flight or sent while it was down, every acknowledged write is there afterwards through either
replica, and the surviving replica's memory stays flat. The replicas share the database
(PostgreSQL with TARN_TEST_DATABASE_URL, else one SQLite file), the lake and artifact roots and
the online store (Redis on PostgreSQL, else one SQLite file).

TARN_LOAD_SECONDS sets the length (default 40; the soak in bench/README.md runs 600); the
figures are printed (`pytest -s`)."""

import os
import secrets
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import mlflow
import pyarrow as pa
import requests
from mlflow.entities import Metric

from conftest import start_tarn
from test_crash import _free_port
from test_features import ARROW, create_feature_table
from test_inference_monitoring import FEATURES, train_and_register
from test_lakehouse import UC, arrow_body, call

SECONDS = float(os.environ.get("TARN_LOAD_SECONDS", "40"))
KEYS = 1000
REDIS_DB = 12


@dataclass
class Outcome:
    replica: int
    kind: str
    started: float
    ended: float
    ok: bool
    error: str = ""


@dataclass
class Record:
    outcomes: list = field(default_factory=list)
    acked: dict = field(default_factory=lambda: {"metrics": set(), "versions": set(), "rows": set(), "artifacts": set()})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome, kind=None, key=None):
        with self.lock:
            self.outcomes.append(outcome)
            if outcome.ok and kind:
                self.acked[kind].add(key)


class Replicas:
    def __init__(self, tmp_path):
        url = os.environ.get("TARN_TEST_DATABASE_URL")
        shared = tmp_path / "shared"
        shared.mkdir()
        self.database_url = f"{url}_load" if url else None
        roots = ["--lake-root", str(shared / "lake"), "--artifact-root", str(shared / "artifacts")]
        if url:
            subprocess.run(["redis-cli", "-n", str(REDIS_DB), "flushdb"], check=True, capture_output=True)
            roots += ["--online-store", f"redis://127.0.0.1:6379/{REDIS_DB}"]
        else:
            roots += ["--database-url", f"sqlite://{shared / 'tarn.db'}", "--online-store", f"sqlite://{shared / 'online.db'}"]
        self.args = roots
        self.token = "tarn_load_" + secrets.token_hex(16)
        self.dirs = [str(tmp_path / f"replica-{i}") for i in range(2)]
        self.ports = [_free_port(), _free_port()]
        self.servers = [None, None]
        self.stops = [None, None]

    def start(self, i, fresh=False):
        self.servers[i], self.stops[i] = start_tarn(
            extra_args=self.args,
            database_url=self.database_url,
            data_dir=self.dirs[i],
            fresh_database=fresh,
            port=self.ports[i],
            admin_token=self.token,
        )

    def stop_all(self):
        for i in (1, 0):
            if self.stops[i]:
                self.stops[i](drop_database=i == 0)
        if self.database_url:
            subprocess.run(["redis-cli", "-n", str(REDIS_DB), "flushdb"], capture_output=True)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_two_replicas_under_load_one_killed_lose_nothing(tmp_path, monkeypatch):
    replicas = Replicas(tmp_path)
    try:
        _run(replicas, monkeypatch)
    finally:
        replicas.stop_all()


def _run(replicas, monkeypatch):
    replicas.start(0, fresh=True)
    first = replicas.servers[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first.base)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", first.admin_token)
    mlflow.set_tracking_uri(first.base)
    client = mlflow.MlflowClient(first.base)
    model = f"load-{uuid.uuid4().hex[:6]}"
    train_and_register(client, model)
    source = client.get_model_version(model, "1")
    experiment = client.create_experiment(f"load-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment).info.run_id
    schema = f"load_{uuid.uuid4().hex[:8]}"
    assert call(first, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
    table = f"dev.{schema}.events"
    assert call(first, "POST", f"{UC}/tables", json={"name": "events", "catalog_name": "dev", "schema_name": schema, "columns": [{"name": "id", "type_text": "bigint"}]}).status_code == 200
    features = f"dev.{schema}.spend"
    create_feature_table(first, features, pa.table({"k": pa.array(range(KEYS), pa.int64()), "v": pa.array([float(k) for k in range(KEYS)])}), primary_keys="k")
    assert call(first, "POST", f"/api/2.0/tarn/feature-tables/{features}/publish", json={}).status_code == 200
    endpoint = f"load-{uuid.uuid4().hex[:6]}"
    created = call(first, "POST", "/api/2.0/serving-endpoints", json={"name": endpoint, "config": {"served_entities": [{"entity_name": model, "entity_version": "1"}]}})
    assert created.status_code == 200, created.text
    # The second replica serves every endpoint from its first request.
    replicas.start(1)

    record = Record()
    stop = threading.Event()
    counter = iter(range(1, 10**9))
    headers = {"Authorization": f"Bearer {replicas.token}"}

    def client_loop(kind, op):
        turn = 0
        while not stop.is_set():
            target = turn % 2
            turn += 1
            i = next(counter)
            started = time.time()
            base = f"http://127.0.0.1:{replicas.ports[target]}"
            try:
                acked = op(base, i)
                record.add(Outcome(target, kind, started, time.time(), True), *(acked or (None, None)))
            except (requests.RequestException, mlflow.exceptions.MlflowException, AssertionError, OSError) as error:
                record.add(Outcome(target, kind, started, time.time(), False, str(error)[:200]))
                time.sleep(0.05)

    def ok(response):
        assert response.status_code == 200, response.text
        return response

    def tracking(base, i):
        mlflow.MlflowClient(base).log_batch(run_id, metrics=[Metric(f"m{j}", i + j / 10, 1_700_000_000_000 + i, i) for j in range(10)])
        return "metrics", i

    def registry(base, i):
        version = mlflow.MlflowClient(base).create_model_version(model, source.source, run_id=source.run_id).version
        return "versions", version

    def lookups(base, i):
        keys = [{"k": (i * 7 + j) % KEYS} for j in range(10)]
        found = ok(requests.post(f"{base}/api/2.0/tarn/online/lookup", headers=headers, json={"table_name": features, "keys": keys}, timeout=30)).json()["results"]
        assert [r["status"] for r in found] == ["PRESENT"] * 10, found
        assert [r["values"]["v"] for r in found] == [float(k["k"]) for k in keys]

    def scoring(base, i):
        row = {f: float(i % 11) / 5 for f in FEATURES}
        ok(requests.post(f"{base}/serving-endpoints/{endpoint}/invocations", headers=headers, json={"dataframe_records": [row]}, timeout=30))

    def sql(base, i):
        if i % 2:
            answer = ok(requests.post(f"{base}/api/2.0/sql/statements", headers=headers, json={"statement": f"INSERT INTO {table} VALUES ({i})", "warehouse_id": "any", "wait_timeout": "30s"}, timeout=40)).json()
            assert answer["status"]["state"] == "SUCCEEDED", answer
            return "rows", i
        answer = ok(requests.post(f"{base}/api/2.0/sql/statements", headers=headers, json={"statement": f"SELECT count(*) FROM {table}", "warehouse_id": "any", "wait_timeout": "30s"}, timeout=40)).json()
        assert answer["status"]["state"] == "SUCCEEDED", answer

    def artifacts(base, i):
        ok(requests.put(f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/load/{i}.txt", headers=headers, data=f"artifact {i} ✓".encode(), timeout=30))
        return "artifacts", i

    threads = [threading.Thread(target=client_loop, args=(kind, op), daemon=True) for kind, op in [
        ("tracking", tracking), ("registry", registry), ("lookups", lookups),
        ("scoring", scoring), ("sql", sql), ("artifacts", artifacts),
    ]]
    survivor = replicas.servers[0].process.pid
    memory = []
    began = time.time()
    for thread in threads:
        thread.start()
    while time.time() - began < SECONDS / 2:
        memory.append(rss_mib(survivor))
        time.sleep(1)
    killed_at = time.time()
    replicas.servers[1].process.kill()
    replicas.servers[1].process.wait()
    replicas.stops[1] = None
    replicas.start(1)
    ready_at = time.time()
    while time.time() - began < SECONDS:
        memory.append(rss_mib(survivor))
        time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a client hung"

    outcomes = record.outcomes
    on_survivor = [o for o in outcomes if o.replica == 0]
    failed_on_survivor = [o for o in on_survivor if not o.ok]
    assert not failed_on_survivor, failed_on_survivor[:5]
    failed = [o for o in outcomes if o.replica == 1 and not o.ok]
    # The killed replica failed only what was in flight when it died or sent while it was down.
    outside = [o for o in failed if o.ended < killed_at or o.started > ready_at]
    assert not outside, outside[:5]

    # Every acknowledged write, through either replica.
    for port in replicas.ports:
        base = f"http://127.0.0.1:{port}"
        reader = mlflow.MlflowClient(base)
        steps = {m.step for m in reader.get_metric_history(run_id, "m0")}
        assert record.acked["metrics"] <= steps, sorted(record.acked["metrics"] - steps)[:10]
        versions, page_token = {}, None
        while True:
            page = reader.search_model_versions(f"name='{model}'", max_results=10_000, page_token=page_token)
            versions.update({v.version: v.status for v in page})
            page_token = page.token
            if not page_token:
                break
        assert record.acked["versions"] <= set(versions)
        assert set(versions.values()) == {"READY"}
        answer = ok(requests.post(f"{base}/api/2.0/sql/statements", headers=headers, json={"statement": f"SELECT id FROM {table}", "warehouse_id": "any", "wait_timeout": "30s", "row_limit": 1_000_000}, timeout=40)).json()
        ids = [int(row[0]) for row in answer["result"].get("data_array", [])]
        assert len(ids) == len(set(ids))
        assert record.acked["rows"] <= set(ids), sorted(record.acked["rows"] - set(ids))[:10]
        for i in sorted(record.acked["artifacts"])[:: max(1, len(record.acked["artifacts"]) // 50)]:
            got = requests.get(f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/load/{i}.txt", headers=headers, timeout=30)
            assert got.status_code == 200 and got.content == f"artifact {i} ✓".encode(), (i, got.status_code)

    warm = memory[len(memory) // 4]
    kinds = sorted({o.kind for o in outcomes})
    print(f"{SECONDS:.0f} s, {len(outcomes)} requests; " + ", ".join(f"{k} {sum(o.ok for o in outcomes if o.kind == k)}" for k in kinds))
    print(f"killed replica: {len(failed)} failed (in flight or sent in the {ready_at - killed_at:.1f} s it was down); survivor: 0 failed")
    print("acknowledged and found: " + ", ".join(f"{k} {len(v)}" for k, v in record.acked.items()))
    print(f"survivor RSS MiB: warm {warm:.0f}, last {memory[-1]:.0f}, peak {max(memory):.0f}")
    assert all(sum(o.ok for o in outcomes if o.kind == k) > 0 for k in kinds)
    # Memory flat: after warming up, the survivor grows by less than half again.
    assert memory[-1] < warm * 1.5 + 64, memory
