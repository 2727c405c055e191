"""Fixtures: a live `tarn server` per test session, driven only through the stock mlflow client.

TARN_BIN names the binary (default target/debug/tarn). TARN_TEST_DATABASE_URL selects
PostgreSQL (a fresh database of that name is created and dropped); unset means SQLite.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
# A server error should fail a test at once, not after minutes of client retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def tarn_bin():
    """The tarn binary under test."""
    return os.environ.get("TARN_BIN", str(ROOT / "target" / "debug" / "tarn"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psql(admin_url, sql):
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)


class Server:
    def __init__(self, base, admin_token, data_dir, process=None):
        self.base = base
        self.admin_token = admin_token
        self.data_dir = data_dir
        # The `tarn server` process, for tests that kill it.
        self.process = process

    def url(self, workspace="dev"):
        return self.base if workspace == "dev" else f"{self.base}/ws/{workspace}"

    def admin(self, method, path, workspace="dev", **kwargs):
        response = requests.request(
            method,
            self.url(workspace) + path,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
            **kwargs,
        )
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def create_user(self, name, password, workspaces=("dev",)):
        """A user with a password, member of `workspaces`; returns a token for it."""
        self.admin("POST", "/api/2.0/tarn/users", json={"name": name, "password": password})
        for workspace in workspaces:
            self.admin("POST", "/api/2.0/tarn/workspace/members", workspace=workspace, json={"principal": name})
        issued = self.admin(
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            json={"principal": name, "lifetime_seconds": 3600, "comment": "compat tests"},
        )
        return issued["token_value"]

    def cli_env(self, token=None, workspace=None):
        """The environment of a `tarn` client command against this server as `token`'s principal
        (default the admin), with no profile file in reach."""
        command_env = {k: v for k, v in os.environ.items() if not k.startswith(("TARN_", "DATABRICKS_"))}
        command_env.update(
            TARN_HOST=self.base,
            TARN_TOKEN=token or self.admin_token,
            TARN_CONFIG_FILE=os.devnull,
            DATABRICKS_CONFIG_FILE=os.devnull,
        )
        if workspace:
            command_env["TARN_WORKSPACE"] = workspace
        return command_env

    def cli(self, *args, token=None, workspace=None, check=True, env=None, input=None, timeout=300):
        """Runs a `tarn` client command against this server (see `cli_env`); returns the finished
        process."""
        command_env = self.cli_env(token, workspace)
        command_env.update(env or {})
        done = subprocess.run(
            [tarn_bin(), *args], capture_output=True, text=True, env=command_env, input=input, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"tarn {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def grant(self, token, experiment_id, user, level, workspace="dev"):
        response = requests.patch(
            f"{self.url(workspace)}/api/2.0/permissions/experiments/{experiment_id}",
            headers={"Authorization": f"Bearer {token}"},
            json={"access_control_list": [{"user_name": user, "permission_level": level}]},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


def start_tarn(extra_args=(), extra_env=None, database_url=None, data_dir=None, fresh_database=True, port=None, admin_token=None):
    """Starts `tarn server` on a free port with a fresh data dir (or `data_dir`, to restart
    one); returns (Server, stop). Webhooks may reach the tests' local receivers."""
    binary = tarn_bin()
    data_dir = data_dir or tempfile.mkdtemp(prefix="tarn-compat-")
    port = port or _free_port()
    token = admin_token or "tarn_compat_" + secrets.token_hex(16)
    # Job tasks run with this interpreter: the one running the tests, which has mlflow and the SDK.
    command = [
        binary, "server", "--data-dir", data_dir, "--host", "127.0.0.1", "--port", str(port),
        "--jobs-python", sys.executable, *extra_args,
    ]
    admin_url = None
    if database_url:
        admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
        name = database_url.rsplit("/", 1)[1]
        if fresh_database:
            _psql(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            _psql(admin_url, f"CREATE DATABASE {name}")
        command += ["--database-url", database_url]
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    log_path = Path(data_dir) / "server.log"
    log = open(log_path, "a")
    env = dict(os.environ, TARN_ADMIN_TOKEN=token, TARN_LOG="warn,tarn::http=info")
    env.update(extra_env or {})
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    _wait_for(base + "/health", process, log_path)

    def stop(drop_database=True):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        if database_url and drop_database:
            _psql(admin_url, f"DROP DATABASE IF EXISTS {database_url.rsplit('/', 1)[1]} WITH (FORCE)")

    return Server(base, token, data_dir, process), stop


def _wait_for(url, process, log_path):
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise RuntimeError(f"{url} did not come up:\n{Path(log_path).read_text()[-4000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def server():
    started, stop = start_tarn(
        extra_args=["--webhooks-allow-private", "--table-watch-interval-ms", "200"],
        extra_env={"TARN_WEBHOOK_RETRY_BASE_MS": "100"},
        database_url=os.environ.get("TARN_TEST_DATABASE_URL"),
    )
    try:
        yield started
    finally:
        stop()


def _reset_client():
    while mlflow.active_run():
        mlflow.end_run()
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(var, None)


@pytest.fixture
def as_user(server, monkeypatch):
    """Points the client at a workspace with given credentials: as_user(token=..., workspace=...)."""

    def use(token=None, username=None, password=None, workspace="dev"):
        _reset_client()
        if token:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        if username:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        uri = server.url(workspace)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        return mlflow.MlflowClient(tracking_uri=uri)

    yield use
    _reset_client()


@pytest.fixture
def client(server, as_user):
    """An MlflowClient as the admin in workspace dev."""
    return as_user(token=server.admin_token)


@pytest.fixture
def unique():
    return lambda prefix="exp": f"{prefix}-{uuid.uuid4().hex[:10]}"
