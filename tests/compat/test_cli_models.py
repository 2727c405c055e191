"""`tarn models ...` as a client of the server: what it prints is what the registry API holds,
and it acts as its token's principal, refused exactly what the API refuses, with the server's
message, changing nothing."""

import mlflow
import requests

from test_cli import refused
from test_registry import _log_and_register
from test_webhooks import receiver, settled_deliveries  # noqa: F401 (receiver is a fixture)


def api(server, token, method, path, **args):
    """The API as `token`'s principal in dev: GET arguments in the query, others as JSON."""
    url = f"{server.base}/api/2.0/{path}"
    headers = {"Authorization": f"Bearer {token}"}
    if method == "GET":
        return requests.get(url, params=args, headers=headers, timeout=30)
    return requests.request(method, url, json=args, headers=headers, timeout=30)


def model_id(server, name):
    answer = api(server, server.admin_token, "GET", "mlflow/databricks/registered-models/get", name=name)
    assert answer.status_code == 200, answer.text
    return answer.json()["registered_model_databricks"]["id"]


def grant_model(server, name, user, level):
    granted = api(
        server, server.admin_token, "PATCH", f"permissions/registered-models/{model_id(server, name)}",
        access_control_list=[{"user_name": user, "permission_level": level}],
    )
    assert granted.status_code == 200, granted.text


def refused_as_the_api(server, done, token, method, path, **args):
    """The command failed with the message and code the API gives the same request."""
    answer = api(server, token, method, path, **args)
    assert answer.status_code >= 400, answer.text
    refused(done, answer.json()["message"], answer.json()["error_code"])


def alias_missing(server, name, alias):
    """Whether the model has no such alias (MLflow answers INVALID_PARAMETER_VALUE)."""
    answer = api(server, server.admin_token, "GET", "mlflow/registered-models/alias", name=name, alias=alias)
    return answer.status_code == 400 and f"alias {alias} not found" in answer.json()["message"]


def stage_of(client, name, version):
    return client.get_model_version(name, version).current_stage


def table(done):
    """The rows of a printed table, split on whitespace, without its header."""
    return [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]


def section(text, header):
    """The rows of the table whose header starts with `header`, up to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_list_show_transition_alias_and_audit_print_what_the_api_holds(server, client, unique):
    mlflow.set_experiment(unique())
    name = unique("cli-model")
    _log_and_register(name, 1)
    _log_and_register(name, 2)

    moved = server.cli("models", "transition", name, "1", "production", "--archive-existing")
    assert moved.stdout == f"{name} version 1 is now in Production\n"
    assert stage_of(client, name, "1") == "Production"
    aliased = server.cli("models", "alias", name, "champion", "2")
    assert aliased.stdout == f"{name}@champion -> version 2\n"
    assert client.get_model_version_by_alias(name, "champion").version == "2"

    listed = server.cli("models", "list", "--filter", f"name = '{name}'")
    assert listed.stdout.splitlines()[0].split()[:2] == ["NAME", "LATEST"]
    [row] = table(listed)
    model = client.get_registered_model(name)
    latest = {f"{v.current_stage}:{v.version}" for v in model.latest_versions}
    assert latest == {"Production:1", "None:2"}
    assert row[0] == name and set(row[1:3]) == latest and row[3] == "champion->2"
    # The global --workspace flag: staging holds no such model.
    assert table(server.cli("models", "list", "--filter", f"name = '{name}'", "--workspace", "staging")) == []

    shown = server.cli("models", "show", name).stdout
    assert shown.splitlines()[0] == f"{name}  (id {model_id(server, name)})"
    assert "  your level: CAN_MANAGE" in shown
    rows = {row[0]: row for row in section(shown, "VERSION ")}
    versions = api(server, server.admin_token, "GET", "mlflow/model-versions/search", filter=f"name = '{name}'").json()["model_versions"]
    assert sorted(rows) == sorted(v["version"] for v in versions) == ["1", "2"]
    for version in versions:
        row = rows[version["version"]]
        assert row[1:6] == [version["current_stage"], version["status"], version["run_id"], version["model_id"], version["user_id"]]
    assert rows["2"][-1] == "champion"
    assert "Activity:" in shown and "model_version_stage" in shown and "model_version_alias" in shown

    events = api(server, server.admin_token, "GET", "tarn/audit", object=name).json()["events"]
    printed = table(server.cli("models", "audit", "--object", name))
    assert [r[0] for r in printed] == [str(e["id"]) for e in events]
    assert [(r[3], r[4], r[5]) for r in printed] == [(e["actor"], e["entity"], e["action"]) for e in events]
    assert ("model_version_stage", "transitioned") in [(e["entity"], e["action"]) for e in events]
    assert [r[0] for r in section(shown, "ID ")] == [str(e["id"]) for e in events]
    assert len(table(server.cli("models", "audit", "--object", name, "--limit", "2"))) == 2

    removed = server.cli("models", "alias", name, "champion", "--delete")
    assert removed.stdout == f"removed {name}@champion\n"
    assert alias_missing(server, name, "champion")


def test_a_reader_requests_and_views_but_is_refused_what_the_api_refuses(server, client, unique):
    mlflow.set_experiment(unique())
    name = unique("cli-reviewed")
    _log_and_register(name, 1)
    _log_and_register(name, 2)
    reader = unique("cli-reader")
    token = server.create_user(reader, "reader-password-1")
    grant_model(server, name, reader, "CAN_READ")

    # Moving a version needs more than reading: refused, and the version stays where it was.
    done = server.cli("models", "transition", name, "2", "Staging", token=token, check=False)
    refused_as_the_api(server, done, token, "POST", "mlflow/model-versions/transition-stage", name=name, version="2", stage="Staging")
    assert "PERMISSION_DENIED" in done.stderr and done.stdout == ""
    assert stage_of(client, name, "2") == "None"
    done = server.cli("models", "alias", name, "mine", "2", token=token, check=False)
    refused_as_the_api(server, done, token, "POST", "mlflow/registered-models/alias", name=name, alias="mine", version="2")
    assert alias_missing(server, name, "mine")

    # A reader may request; approving needs the transition's level.
    requested = server.cli("models", "request", name, "2", "staging", "--comment", "better AUC", token=token)
    assert requested.stdout == f"requested moving {name} version 2 to Staging\n"
    open_requests = api(server, token, "GET", "mlflow/transition-requests/list", name=name, version="2").json()["requests"]
    assert [(r["to_stage"], r["user_id"], r["comment"]) for r in open_requests] == [("Staging", reader, "better AUC")]
    shown = server.cli("models", "show", name, token=token).stdout
    assert "  your level: CAN_READ" in shown
    assert f"  open request: version 2 -> Staging by {reader} (better AUC)" in shown
    # The audit trail is for admins; a reader sees the versions' histories instead.
    assert "the audit trail is for admins" in shown and "REQUESTED_TRANSITION" in shown
    done = server.cli("models", "approve", name, "2", "Staging", token=token, check=False)
    refused_as_the_api(server, done, token, "POST", "mlflow/transition-requests/approve", name=name, version="2", stage="Staging", archive_existing_versions=False)
    assert stage_of(client, name, "2") == "None"
    assert len(api(server, token, "GET", "mlflow/transition-requests/list", name=name, version="2").json()["requests"]) == 1

    rejected = server.cli("models", "reject", name, "2", "Staging", "--comment", "not yet")
    assert rejected.stdout == f"rejected the requests to move {name} version 2 to Staging\n"
    assert api(server, token, "GET", "mlflow/transition-requests/list", name=name, version="2").json()["requests"] == []
    assert stage_of(client, name, "2") == "None"
    server.cli("models", "request", name, "2", "Staging", token=token)
    approved = server.cli("models", "approve", name, "2", "Staging", "--comment", "ok")
    assert approved.stdout == f"approved: {name} version 2 is now in Staging\n"
    assert stage_of(client, name, "2") == "Staging"

    # Admin-only reads.
    done = server.cli("models", "audit", "--object", name, token=token, check=False)
    refused_as_the_api(server, done, token, "GET", "tarn/audit", object=name)
    done = server.cli("models", "webhooks", "deliveries", token=token, check=False)
    refused_as_the_api(server, done, token, "GET", "tarn/webhooks/deliveries")
    done = server.cli("models", "webhooks", "list", token=token, check=False)
    refused_as_the_api(server, done, token, "GET", "mlflow/webhooks")

    # Bad input: the server's reason, nothing changed.
    done = server.cli("models", "transition", name, "2", "Limbo", check=False)
    refused_as_the_api(server, done, server.admin_token, "POST", "mlflow/model-versions/transition-stage", name=name, version="2", stage="Limbo")
    assert stage_of(client, name, "2") == "Staging"
    refused(server.cli("models", "transition", name, "9", "Production", check=False), "RESOURCE_DOES_NOT_EXIST")
    refused(server.cli("models", "show", unique("no-such-model"), check=False), "RESOURCE_DOES_NOT_EXIST")
    refused(server.cli("models", "alias", name, "champion", check=False), "--delete")
    assert alias_missing(server, name, "champion")


def test_webhooks_list_create_delete_and_deliveries_through_the_api(server, client, unique, receiver):
    name = unique("cli-hooked")
    client.create_registered_model(name)
    created = server.cli(
        "models", "webhooks", "create", f"{receiver.url}/mlflow", "--event", "registered_model_tag.set",
        "--secret", "s3cret", "--description", "from the CLI",
    )
    mlflow_id = created.stdout.split()[-1]
    assert created.stdout == f"created webhook {mlflow_id}\n"
    hook = api(server, server.admin_token, "GET", f"mlflow/webhooks/{mlflow_id}").json()["webhook"]
    # An unnamed MLflow webhook is named after its destination's host.
    assert (hook["name"], hook["url"], hook["description"]) == ("127.0.0.1", f"{receiver.url}/mlflow", "from the CLI")
    assert hook["events"] == [{"entity": "REGISTERED_MODEL_TAG", "action": "SET"}]
    created = server.cli(
        "models", "webhooks", "create", f"{receiver.url}/databricks", "--format", "databricks",
        "--event", "MODEL_VERSION_CREATED", "--event", "COMMENT_CREATED", "--model", name,
    )
    databricks_id = created.stdout.split()[-1]

    rows = {r[0]: r for r in table(server.cli("models", "webhooks", "list"))}
    assert rows[mlflow_id] == [mlflow_id, "mlflow", "ACTIVE", f"{receiver.url}/mlflow", "-", "registered_model_tag.set"]
    assert rows[databricks_id] == [databricks_id, "databricks", "ACTIVE", f"{receiver.url}/databricks", name, "MODEL_VERSION_CREATED,COMMENT_CREATED"]
    listed = {w["webhook_id"] for w in api(server, server.admin_token, "GET", "mlflow/webhooks", max_results=1000).json()["webhooks"]}
    listed |= {w["id"] for w in api(server, server.admin_token, "GET", "mlflow/registry-webhooks/list", max_results=1000).json()["webhooks"]}
    assert set(rows) == listed

    client.set_registered_model_tag(name, "team", "risk")
    receiver.wait_for(lambda seen: any(r["path"] == "/mlflow" for r in seen))
    log = settled_deliveries(server, webhook_id=mlflow_id)
    printed = table(server.cli("models", "webhooks", "deliveries", "--webhook", mlflow_id))
    assert [r[:6] for r in printed] == [
        [d["delivery_id"], mlflow_id, d["event_name"], d["status"], str(d["attempts"]), str(d["last_status_code"])] for d in log
    ]
    assert table(server.cli("models", "webhooks", "deliveries", "--webhook", mlflow_id, "--status", "failed")) == []
    done = server.cli("models", "webhooks", "deliveries", "--status", "lost", check=False)
    refused_as_the_api(server, done, server.admin_token, "GET", "tarn/webhooks/deliveries", status="lost")

    # A model's manager handles its webhooks, and only those.
    manager = unique("cli-manager")
    token = server.create_user(manager, "manager-password-1")
    grant_model(server, name, manager, "CAN_MANAGE")
    mine = table(server.cli("models", "webhooks", "list", "--model", name, token=token))
    assert [r[0] for r in mine] == [databricks_id]
    done = server.cli("models", "webhooks", "create", receiver.url, "--event", "model_version.created", token=token, check=False)
    refused_as_the_api(server, done, token, "POST", "mlflow/webhooks", name="x", url=receiver.url, events=[{"entity": "model_version", "action": "created"}])
    done = server.cli("models", "webhooks", "create", receiver.url, "--format", "databricks", "--event", "MODEL_VERSION_CREATED", token=token, check=False)
    refused_as_the_api(server, done, token, "POST", "mlflow/registry-webhooks/create", events=["MODEL_VERSION_CREATED"], http_url_spec={"url": receiver.url})
    done = server.cli("models", "webhooks", "delete", mlflow_id, token=token, check=False)
    refused(done, "PERMISSION_DENIED")
    assert api(server, server.admin_token, "GET", f"mlflow/webhooks/{mlflow_id}").status_code == 200
    deleted = server.cli("models", "webhooks", "delete", databricks_id, token=token)
    assert deleted.stdout == f"deleted webhook {databricks_id}\n"
    assert api(server, token, "GET", "mlflow/registry-webhooks/list", model_name=name).json().get("webhooks", []) == []

    # Bad input changes nothing.
    before = table(server.cli("models", "webhooks", "list"))
    refused(server.cli("models", "webhooks", "create", receiver.url, "--event", "model_version.exploded", check=False), "INVALID_PARAMETER_VALUE", "model_version/exploded")
    refused(server.cli("models", "webhooks", "create", receiver.url, "--event", "MODEL_GONE", "--format", "databricks", check=False), "MODEL_GONE")
    refused(server.cli("models", "webhooks", "create", receiver.url, "--event", "model_version.created", "--model", name, check=False), "databricks format only")
    refused(server.cli("models", "webhooks", "create", receiver.url, "--event", "MODEL_VERSION_CREATED", "--format", "databricks", "--name", "x", check=False), "--description")
    refused(server.cli("models", "webhooks", "create", receiver.url, "--event", "x", "--format", "zapier", check=False), "unknown format")
    refused(server.cli("models", "webhooks", "delete", "0" * 32, check=False), "RESOURCE_DOES_NOT_EXIST")
    assert table(server.cli("models", "webhooks", "list")) == before

    server.cli("models", "webhooks", "delete", mlflow_id)
    assert api(server, server.admin_token, "GET", f"mlflow/webhooks/{mlflow_id}").status_code == 404
