"""The `tarn` CLI as a client: the server and token from flags, the environment or a profile
file, commands acting as the token's principal with the API's checks, and `tarn admin` on the
data directory when no server or admin can help."""

import json
import os
import subprocess

import mlflow
import requests

import serving_models
from conftest import tarn_bin
from test_serving import register_directory, split_payload


def refused(done, *fragments):
    """The command failed, naming the server's reason."""
    assert done.returncode != 0, done.stdout
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def bare_env(**extra):
    """The environment with no tarn or Databricks settings, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TARN_", "DATABRICKS_"))}
    env.update(extra)
    return env


def run_tarn(*args, env, input=None):
    return subprocess.run([tarn_bin(), *args], capture_output=True, text=True, env=env, input=input, timeout=120)


def test_without_a_server_a_client_command_says_what_to_set(tmp_path):
    done = run_tarn("models", "list", env=bare_env(HOME=str(tmp_path)))
    refused(done, "TARN_HOST", "tarn configure")
    done = run_tarn("runs", "list", "--experiment", "0", env=bare_env(HOME=str(tmp_path), TARN_HOST="not a url", TARN_TOKEN="x"))
    refused(done, "must be a URL")


def test_a_forged_token_gets_the_servers_answer(server):
    refused(server.cli("experiments", "list", token="dapi" + "0" * 32, check=False), "UNAUTHENTICATED")


def test_configure_writes_a_profile_that_commands_then_use(server, unique, tmp_path):
    home = tmp_path / "home"
    env = bare_env(HOME=str(home))
    done = run_tarn("configure", "--host", server.url("staging"), "--profile", "stg", env=env, input=server.admin_token + "\n")
    assert done.returncode == 0, done.stderr
    tarnrc = home / ".tarnrc"
    assert oct(tarnrc.stat().st_mode & 0o777) == "0o600"
    assert "[stg]" in tarnrc.read_text() and server.admin_token in tarnrc.read_text()
    name = unique("profiled")
    done = run_tarn("experiments", "create", name, "--profile", "stg", env=env)
    assert done.returncode == 0, done.stderr
    # The host named staging, so the experiment is there and not in dev.
    staging = requests.get(f"{server.url('staging')}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=30)
    assert staging.status_code == 200 and staging.json()["experiment"]["experiment_id"] == done.stdout.strip()
    dev = requests.get(f"{server.url()}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}, headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=30)
    assert dev.status_code == 404
    # A bad token is refused before anything is written.
    done = run_tarn("configure", "--host", server.base, "--token", "dapi-wrong", "--profile", "bad", env=env)
    refused(done, "UNAUTHENTICATED")
    assert "[bad]" not in tarnrc.read_text()
    # A profile that does not exist is an error, not a silent fallback.
    refused(run_tarn("experiments", "list", "--profile", "nope", env=env), "no profile [nope]")


def test_a_databrickscfg_profile_works_when_there_is_no_tarnrc(server, unique, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".databrickscfg").write_text(f"[DEFAULT]\nhost = {server.url('prod')}\ntoken = {server.admin_token}\n")
    env = bare_env(HOME=str(home))
    name = unique("from-databrickscfg")
    created = run_tarn("experiments", "create", name, env=env)
    assert created.returncode == 0, created.stderr
    listed = run_tarn("experiments", "list", "--workspace", "prod", env=env)
    assert listed.stdout.splitlines()[0].split() == ["ID", "NAME", "STAGE", "LAST", "UPDATE"]
    assert name in listed.stdout
    # --workspace beats the workspace the host names.
    assert name not in run_tarn("experiments", "list", "--workspace", "staging", env=env).stdout


def test_a_member_can_do_only_what_the_api_lets_it(server, unique):
    name = unique("member")
    token = server.create_user(name, "long-password-1")
    # Identity changes are an admin's: refused with the server's reason, nothing made.
    new_user = unique("nobody")
    refused(server.cli("users", "create", new_user, "--password", "long-password-2", token=token, check=False), "PERMISSION_DENIED")
    listed = server.cli("users", "list").stdout
    assert new_user not in listed and name in listed
    refused(server.cli("tokens", "create", "admin", token=token, check=False), "PERMISSION_DENIED")
    refused(server.cli("workspaces", "add-member", "prod", name, token=token, check=False))
    # Its own tokens it may make, list and revoke.
    secret = server.cli("tokens", "create", "--comment", "from the cli", "--only-workspace", "dev", token=token).stdout.strip()
    mine = server.cli("tokens", "list", token=token).stdout
    assert "from the cli" in mine and name in mine
    me = requests.get(server.url("dev") + "/api/2.0/tarn/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert me.status_code == 200 and me.json()["name"] == name
    # Limited to dev: refused in staging even though the member could be added there.
    server.cli("workspaces", "add-member", "staging", name)
    refused(server.cli("experiments", "list", token=secret, workspace="staging", check=False), "PERMISSION_DENIED")
    token_id = [line.split()[0] for line in mine.splitlines() if "from the cli" in line][0]
    server.cli("tokens", "revoke", token_id, token=token)
    refused(server.cli("experiments", "list", token=secret, check=False), "UNAUTHENTICATED")
    # Everyone's tokens are an admin's to list.
    refused(server.cli("tokens", "list", "--all", token=token, check=False), "PERMISSION_DENIED")


def test_permissions_granted_by_the_cli_are_the_apis(server, client, unique):
    owner = unique("owner")
    reader = unique("reader")
    owner_token = server.create_user(owner, "long-password-1")
    reader_token = server.create_user(reader, "long-password-2")
    experiment_id = server.cli("experiments", "create", unique("granted"), token=owner_token).stdout.strip()
    # The reader cannot see it, nor grant itself anything on it.
    refused(server.cli("permissions", "grant", "--experiment", experiment_id, "--principal", reader, "--level", "CAN_MANAGE", token=reader_token, check=False), "PERMISSION_DENIED")
    server.cli("permissions", "grant", "--experiment", experiment_id, "--principal", reader, "--level", "CAN_READ", token=owner_token)
    acl = server.admin("GET", f"/api/2.0/permissions/experiments/{experiment_id}")["access_control_list"]
    assert {"user_name": reader, "all_permissions": [{"permission_level": "CAN_READ", "inherited": False}]} in acl
    shown = server.cli("permissions", "show", "--experiment", experiment_id, token=reader_token).stdout
    assert any(line.split() == [reader, "user", "CAN_READ"] for line in shown.splitlines())
    # A level the object does not have is the server's 400, and changes nothing.
    refused(server.cli("permissions", "grant", "--experiment", experiment_id, "--principal", reader, "--level", "CAN_FLY", token=owner_token, check=False), "INVALID_PARAMETER_VALUE", "CAN_FLY")
    assert server.admin("GET", f"/api/2.0/permissions/experiments/{experiment_id}")["access_control_list"] == acl
    # The reader reads but does not delete.
    assert experiment_id in server.cli("experiments", "list", token=reader_token).stdout
    refused(server.cli("experiments", "delete", experiment_id, token=reader_token, check=False), "PERMISSION_DENIED")


def test_groups_and_users_through_scim(server, unique):
    group = unique("cli-group")
    user = unique("grouped")
    server.cli("groups", "create", group)
    server.cli("users", "create", user, "--password", "long-password-3")
    server.cli("groups", "add-member", group, user)
    members = server.cli("groups", "members", group).stdout
    assert any(line.split()[:2] == [user, "user"] for line in members.splitlines()[1:])
    server.cli("groups", "remove-member", group, user)
    assert user not in server.cli("groups", "members", group).stdout
    # A password set through the CLI signs in; deactivation stops it.
    server.cli("users", "set-password", user, "--password", "another-long-password")
    server.cli("workspaces", "add-member", "dev", user)
    assert user in server.cli("workspaces", "members", "dev").stdout
    signed_in = requests.get(server.url() + "/api/2.0/tarn/me", auth=(user, "another-long-password"), timeout=30)
    assert signed_in.status_code == 200 and signed_in.json()["name"] == user
    server.cli("users", "deactivate", user)
    assert requests.get(server.url() + "/api/2.0/tarn/me", auth=(user, "another-long-password"), timeout=30).status_code == 401
    refused(server.cli("users", "deactivate", unique("ghost"), check=False), "no user or service principal")


def test_runs_list_shows_metrics_as_columns_and_a_metric_as_a_chart(server, client, unique):
    name = unique("cli-runs")
    experiment_id = mlflow.create_experiment(name)
    run_ids = []
    for rmse in (0.5, 0.25, 0.75):
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_param("rmse_goal", rmse)
            for step, value in enumerate([rmse * 4, rmse * 2, rmse]):
                mlflow.log_metric("rmse", value, step=step)
            run_ids.append(run.info.run_id)
    listed = server.cli("runs", "list", "--experiment", name, "--order-by", "metrics.rmse ASC").stdout.splitlines()
    assert listed[0].split()[-1] == "rmse"
    assert [line.split()[0] for line in listed[1:]] == [run_ids[1], run_ids[0], run_ids[2]]
    assert [line.split()[-1] for line in listed[1:]] == ["0.25", "0.5", "0.75"]
    filtered = server.cli("runs", "list", "--experiment", experiment_id, "--filter", "metrics.rmse < 0.6").stdout
    assert run_ids[2] not in filtered and run_ids[0] in filtered
    history = server.cli("runs", "metric", run_ids[0], "rmse").stdout.splitlines()
    assert [line.split()[:2] for line in history[1:4]] == [["0", "2.0"], ["1", "1.0"], ["2", "0.5"]]
    assert history[-1] == "rmse: █▃▁"
    shown = server.cli("runs", "show", run_ids[0]).stdout
    assert "FINISHED" in shown and "rmse_goal" in shown
    server.cli("runs", "delete", run_ids[0])
    assert run_ids[0] not in server.cli("runs", "list", "--experiment", name).stdout
    refused(server.cli("runs", "show", "no-such-run", check=False), "RESOURCE_DOES_NOT_EXIST")


def test_an_endpoint_made_and_queried_from_the_cli(server, client, unique, tmp_path):
    trained = serving_models.build("logistic_binary", str(tmp_path))
    model = register_directory(client, unique, trained)
    endpoint = unique("cli-endpoint")
    server.cli("endpoints", "create", endpoint, "--model", model, "--version", "1")
    listed = server.cli("endpoints", "list").stdout
    assert any(line.split()[0] == endpoint and f"{model}@1" in line for line in listed.splitlines())
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(split_payload(trained.rows.iloc[:5])))
    # The endpoint loads in the background; query until it answers.
    for _ in range(300):
        done = server.cli("endpoints", "query", endpoint, "--input", str(payload), check=False)
        if done.returncode == 0:
            break
    assert done.returncode == 0, done.stderr
    predictions = json.loads(done.stdout)["predictions"]
    direct = requests.post(f"{server.url()}/serving-endpoints/{endpoint}/invocations", json=split_payload(trained.rows.iloc[:5]), headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=60)
    assert predictions == direct.json()["predictions"]
    # From standard input too; a payload that is not JSON is refused before it is sent.
    assert json.loads(server.cli("endpoints", "query", endpoint, input=payload.read_text()).stdout)["predictions"] == predictions
    refused(server.cli("endpoints", "query", endpoint, input="{not json", check=False), "not JSON")
    # A member without CAN_QUERY is refused.
    member_token = server.create_user(unique("outsider"), "long-password-1")
    refused(server.cli("endpoints", "query", endpoint, "--input", str(payload), token=member_token, check=False), "PERMISSION_DENIED")
    server.cli("endpoints", "delete", endpoint)
    assert endpoint not in server.cli("endpoints", "list").stdout


def test_admin_commands_work_on_the_data_directory_without_a_server(tmp_path):
    data_dir = tmp_path / "offline"
    env = bare_env(HOME=str(tmp_path))
    done = run_tarn("admin", "users", "create", "root-user", "--admin", "--password", "long-password-9", "--data-dir", str(data_dir), env=env)
    assert done.returncode == 0, done.stderr
    done = run_tarn("admin", "tokens", "create", "root-user", "--comment", "recovery", "--data-dir", str(data_dir), env=env)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    listed = run_tarn("admin", "tokens", "list", "--data-dir", str(data_dir), env=env).stdout
    assert "recovery" in listed and "root-user" in listed
    # A token needs its principal offline: there is no caller.
    refused(run_tarn("admin", "tokens", "create", "--data-dir", str(data_dir), env=env), "name the principal")
    # The token made offline is the admin's on the server started on that directory.
    from conftest import start_tarn

    started, stop = start_tarn(data_dir=str(data_dir))
    try:
        me = requests.get(started.url() + "/api/2.0/tarn/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
        assert me.status_code == 200 and me.json() == {"name": "root-user", "kind": "user", "is_admin": True, "workspace": "dev"}
        assert "root-user" in started.cli("users", "list", token=secret).stdout
    finally:
        stop()
