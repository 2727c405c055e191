"""Webhooks against a real HTTP receiver: both signature schemes checked byte for byte on the
raw bodies received, retries, the delivery log, the test endpoints, the SSRF guard, and a
restart while deliveries are pending."""

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import deltalake
import mlflow
import pyarrow as pa
import pytest
import requests
from mlflow.exceptions import MlflowException

from conftest import start_tarn
from test_registry import _log_and_register


class Receiver:
    """Records every POST (headers and raw body); answers `status` (503 makes tarn retry)."""

    def __init__(self):
        self.received = []
        self.status = 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": receiver.status})
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"busy")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def wait_for(self, predicate, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                seen = list(self.received)
            if predicate(seen):
                return seen
            time.sleep(0.1)
        raise AssertionError(f"receiver did not get what was expected; got {[(r['path'], r['body'][:120]) for r in seen]}")

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def mlflow_signature(secret, delivery_id, timestamp, body):
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def admin_api(server, method, path, workspace="dev", **body):
    prefix = "" if workspace == "dev" else f"/ws/{workspace}"
    url = f"{server.base}{prefix}/api/2.0/{path}"
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    if method in ("GET", "DELETE"):
        return requests.request(method, url, params=body, headers=headers, timeout=30)
    return requests.request(method, url, json=body, headers=headers, timeout=30)


def delivery_log(server, recorded, **filters):
    """The delivery log once `recorded(log)` holds (or after 10 s): a receiver has each request
    a moment before tarn records the answer."""
    deadline = time.time() + 10
    while True:
        log = admin_api(server, "GET", "tarn/webhooks/deliveries", **filters).json()["deliveries"]
        if recorded(log) or time.time() > deadline:
            return log
        time.sleep(0.05)


def settled_deliveries(server, **filters):
    """The delivery log once nothing in it is pending."""
    return delivery_log(server, lambda log: all(d["status"] != "pending" for d in log), **filters)


def test_both_formats_signed_byte_for_byte(server, client, unique, receiver):
    mlflow.set_experiment(unique())
    name = unique("hooked")
    client.create_registered_model(name)
    hook = client.create_webhook(
        name=unique("mlflow-hook"),
        url=f"{receiver.url}/mlflow",
        events=["model_version.created", "model_version_alias.created", "model_version_tag.set"],
        secret="mlflow-secret",
    )
    databricks = admin_api(
        server, "POST", "mlflow/registry-webhooks/create",
        model_name=name,
        events=["MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE", "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "TRANSITION_REQUEST_CREATED", "COMMENT_CREATED"],
        http_url_spec={"url": f"{receiver.url}/databricks", "secret": "databricks-secret", "authorization": "Bearer receiver-token"},
    )
    assert databricks.status_code == 200, databricks.text
    databricks_id = databricks.json()["webhook"]["id"]
    assert "secret" not in json.dumps(databricks.json())

    _log_and_register(name)
    client.set_registered_model_alias(name, "champion", "1")
    client.set_model_version_tag(name, "1", "validated", "yes")
    client.transition_model_version_stage(name, "1", "Production")
    assert admin_api(server, "POST", "mlflow/transition-requests/create", name=name, version="1", stage="Archived", comment="retire?").status_code == 200
    assert admin_api(server, "POST", "mlflow/comments/create", name=name, version="1", comment="nice").status_code == 200

    seen = receiver.wait_for(lambda r: sum(x["path"] == "/mlflow" for x in r) >= 3 and sum(x["path"] == "/databricks" for x in r) >= 5)

    mlflow_hits = [r for r in seen if r["path"] == "/mlflow"]
    assert sorted((json.loads(r["body"])["entity"], json.loads(r["body"])["action"]) for r in mlflow_hits) == [
        ("model_version", "created"), ("model_version_alias", "created"), ("model_version_tag", "set")]
    for hit in mlflow_hits:
        headers = hit["headers"]
        assert headers["content-type"] == "application/json"
        expected = mlflow_signature("mlflow-secret", headers["x-mlflow-delivery-id"], headers["x-mlflow-timestamp"], hit["body"])
        assert headers["x-mlflow-signature"] == expected
        assert abs(int(headers["x-mlflow-timestamp"]) - time.time()) < 120
        payload = json.loads(hit["body"])
        assert payload["data"]["name"] == name and payload["timestamp"].endswith("+00:00")
    created = next(json.loads(r["body"]) for r in mlflow_hits if json.loads(r["body"])["entity"] == "model_version")
    assert created["data"]["version"] == "1"

    databricks_hits = [r for r in seen if r["path"] == "/databricks"]
    events = sorted(json.loads(r["body"])["event"] for r in databricks_hits)
    assert events == ["COMMENT_CREATED", "MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE", "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION", "TRANSITION_REQUEST_CREATED"]
    for hit in databricks_hits:
        expected = hmac.new(b"databricks-secret", hit["body"], hashlib.sha256).hexdigest()
        assert hit["headers"]["x-databricks-signature"] == expected
        assert hit["headers"]["authorization"] == "Bearer receiver-token"
        payload = json.loads(hit["body"])
        assert (payload["webhook_id"], payload["model_name"]) == (databricks_id, name)
        assert isinstance(payload["event_timestamp"], int) and payload["text"]
    moved = next(json.loads(r["body"]) for r in databricks_hits if json.loads(r["body"])["event"] == "MODEL_VERSION_TRANSITIONED_TO_PRODUCTION")
    assert (moved["version"], moved["from_stage"], moved["to_stage"]) == ("1", "None", "Production")

    log = settled_deliveries(server, webhook_id=hook.webhook_id)
    assert len(log) == 3 and all(d["status"] == "succeeded" and d["attempts"] == 1 and d["last_status_code"] == 200 for d in log)
    assert {d["delivery_id"] for d in log} == {r["headers"]["x-mlflow-delivery-id"] for r in mlflow_hits}

    # The test calls report the receiver's status only: its body is not echoed to the caller.
    result = client.test_webhook(hook.webhook_id)
    assert result.success and result.response_status == 200 and not result.response_body
    tested = admin_api(server, "POST", "mlflow/registry-webhooks/test", id=databricks_id, event="COMMENT_CREATED")
    assert tested.json() == {"webhook": {"status_code": 200}}
    listed = admin_api(server, "GET", "mlflow/registry-webhooks/list", model_name=name).json()["webhooks"]
    assert [w["id"] for w in listed] == [databricks_id]
    assert hook.webhook_id in [w.webhook_id for w in client.list_webhooks()]
    audit = admin_api(server, "GET", "tarn/audit", entity="webhook").json()["events"]
    assert {e["object"] for e in audit} >= {hook.webhook_id, databricks_id}
    client.delete_webhook(hook.webhook_id)
    with pytest.raises(MlflowException):
        client.get_webhook(hook.webhook_id)


def test_bad_webhook_input_and_permissions(server, as_user, unique, receiver):
    client = as_user(token=server.admin_token)
    for bad in (
        dict(name="x", url="ftp://example.com/x", events=[{"entity": "MODEL_VERSION", "action": "CREATED"}]),
        dict(name="x", url=receiver.url, events=[{"entity": "RUN", "action": "CREATED"}]),
        dict(name="x", url=receiver.url, events=[]),
        dict(name="", url=receiver.url, events=[{"entity": "MODEL_VERSION", "action": "CREATED"}]),
    ):
        answer = admin_api(server, "POST", "mlflow/webhooks", **bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    bad_event = admin_api(server, "POST", "mlflow/registry-webhooks/create", events=["MODEL_DELETED"], http_url_spec={"url": receiver.url})
    assert bad_event.status_code == 400
    # Only admins manage MLflow webhooks; model webhooks need CAN_MANAGE on the model.
    token = server.create_user("hook-user", "hook-user-pass-1")
    user = as_user(token=token)
    with pytest.raises(MlflowException) as error:
        user.create_webhook(name="mine", url=receiver.url, events=["model_version.created"])
    assert error.value.error_code == "PERMISSION_DENIED"
    name = unique("theirs")
    as_user(token=server.admin_token).create_registered_model(name)
    denied = requests.post(
        f"{server.base}/api/2.0/mlflow/registry-webhooks/create",
        json={"model_name": name, "events": ["MODEL_VERSION_CREATED"], "http_url_spec": {"url": receiver.url}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert denied.status_code == 403
    del client


def test_private_destinations_refused_without_the_flag(receiver):
    started, stop = start_tarn()
    try:
        private = admin_api(started, "POST", "mlflow/webhooks", name="x", url=receiver.url, events=[{"entity": "MODEL_VERSION", "action": "CREATED"}])
        assert private.status_code == 400
        assert "private or local address" in private.json()["message"]
        metadata = admin_api(started, "POST", "mlflow/registry-webhooks/create", events=["MODEL_VERSION_CREATED"], http_url_spec={"url": "http://169.254.169.254/latest"})
        assert metadata.status_code == 400
        # Loopback and private addresses written inside IPv6 ones, and reserved IPv4 ranges.
        for host in ("[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[fec0::1]", "198.18.0.1", "240.0.0.1", "192.0.0.8", "2130706433"):
            refused = admin_api(started, "POST", "mlflow/webhooks", name="x", url=f"http://{host}/hook", events=[{"entity": "MODEL_VERSION", "action": "CREATED"}])
            assert refused.status_code == 400, (host, refused.text)
            assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        public = admin_api(started, "POST", "mlflow/webhooks", name="x", url="https://93.184.216.34/hook", events=[{"entity": "MODEL_VERSION", "action": "CREATED"}])
        assert public.status_code == 200, public.text
    finally:
        stop()


def test_pending_deliveries_survive_a_restart(receiver, tmp_path):
    """The receiver is down (503) while events happen; tarn retries, is restarted, and once the
    receiver is back every event arrives, each under the delivery id it was first sent with."""
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    if database_url:
        database_url = database_url + "_restart"
    token = "tarn_restart_" + os.urandom(8).hex()
    args = dict(
        extra_args=["--webhooks-allow-private"],
        extra_env={"TARN_WEBHOOK_RETRY_BASE_MS": "200"},
        database_url=database_url,
        data_dir=str(tmp_path / "data"),
        admin_token=token,
    )
    receiver.status = 503
    started, stop = start_tarn(**args)
    names = [f"restart-{i}" for i in range(5)]
    try:
        hook = admin_api(started, "POST", "mlflow/webhooks", name="r", url=receiver.url, events=[{"entity": "REGISTERED_MODEL", "action": "CREATED"}], secret="s")
        assert hook.status_code == 200, hook.text
        for name in names:
            assert admin_api(started, "POST", "mlflow/registered-models/create", name=name).status_code == 200
        receiver.wait_for(lambda r: len({x["headers"]["x-mlflow-delivery-id"] for x in r}) == 5)
        def failed_once(log):
            return len(log) == 5 and all(d["last_status_code"] == 503 for d in log)

        pending = delivery_log(started, failed_once, status="pending")
        assert failed_once(pending), pending
    finally:
        stop(drop_database=False)
    failed_ids = {r["headers"]["x-mlflow-delivery-id"] for r in receiver.received}

    receiver.status = 200
    restarted, stop_again = start_tarn(**args, fresh_database=False)
    try:
        seen = receiver.wait_for(lambda r: len({x["headers"]["x-mlflow-delivery-id"] for x in r if x["status"] == 200}) == 5)
        delivered = [r for r in seen if r["status"] == 200]
        assert {json.loads(r["body"])["data"]["name"] for r in delivered} == set(names)
        assert {r["headers"]["x-mlflow-delivery-id"] for r in delivered} == failed_ids
        for r in delivered:
            assert r["headers"]["x-mlflow-signature"] == mlflow_signature("s", r["headers"]["x-mlflow-delivery-id"], r["headers"]["x-mlflow-timestamp"], r["body"])
        log = settled_deliveries(restarted)
        assert len(log) == 5
        assert all(d["status"] == "succeeded" and d["attempts"] >= 2 for d in log), log
    finally:
        stop_again()


def test_table_commits_reach_webhooks_from_tarn_and_from_other_delta_writers(server, unique, receiver):
    """A webhook on `table.committed` hears tarn's writes (with what they read) and the commits
    the `deltalake` package makes straight to the table's storage, which tarn finds in the log."""
    from test_lakehouse import UC, call, local_path, payments_table, write

    schema = unique("commits").replace("-", "_")
    assert call(server, "POST", f"{UC}/schemas", json={"name": schema, "catalog_name": "dev"}).status_code == 200
    info = payments_table(server, schema)
    full_name = info["full_name"]
    hook = admin_api(
        server, "POST", "mlflow/webhooks",
        name=unique("tables"), url=f"{receiver.url}/tables",
        events=[{"entity": "TABLE", "action": "COMMITTED"}], secret="table-secret",
    )
    assert hook.status_code == 200, hook.text

    first = pa.table({"id": pa.array([1], pa.int64()), "amount": [10.0], "country": ["FR"]})
    assert write(server, full_name, first).status_code == 200
    deltalake.write_deltalake(
        local_path(info),
        pa.table({"id": pa.array([2], pa.int64()), "amount": [20.0], "country": ["DE"]}),
        mode="append",
        partition_by=["country"],
    )

    def commits(seen):
        bodies = [json.loads(r["body"]) for r in seen if r["path"] == "/tables"]
        return [b for b in bodies if b["data"]["full_name"] == full_name]

    seen = commits(receiver.wait_for(lambda r: len(commits(r)) >= 2))
    assert [(b["entity"], b["action"]) for b in seen] == [("table", "committed")] * 2
    by_version = sorted((b["data"]["version"], b["data"]["outside"], b["data"]["operation"]) for b in seen)
    assert by_version == [(1, False, "APPEND"), (2, True, "WRITE")], by_version
    # Each commit once: a later scan of the log finds nothing new.
    time.sleep(1)
    with receiver.lock:
        assert len(commits(receiver.received)) == 2
    # The audit trail has both, with the other writer named.
    trail = admin_api(server, "GET", "tarn/audit", entity="table", object=full_name).json()["events"]
    committed = [e for e in trail if e["action"] == "committed"]
    assert [e["data"]["outside"] for e in committed] == [False, True]
    assert committed[1]["actor"].startswith("delta-rs"), committed[1]
