"""The workspace files API through the Databricks SDK, as a user and a bundle deploy use it:
upload, download, list, status, mkdirs, delete; the bytes come back exactly; hostile paths and
other users' homes are refused; jobs run their tasks from the files (siblings importable)."""

import base64
import io
import os
import textwrap
from datetime import timedelta

import pytest
import requests
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

from test_job_runs import WAIT, python_task, task_of, wait_for, workspace


def test_upload_download_list_and_delete_keep_the_bytes(server, unique):
    w = workspace(server)
    root = f"/Workspace/Shared/{unique('files')}"
    data = bytes(range(256)) * 100 + "é€\n".encode()
    w.workspace.upload(f"{root}/data/blob.bin", io.BytesIO(data), format=ImportFormat.RAW)
    assert w.workspace.download(f"{root}/data/blob.bin").read() == data
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.upload(f"{root}/data/blob.bin", b"other", format=ImportFormat.RAW)
    w.workspace.upload(f"{root}/data/blob.bin", b"other", format=ImportFormat.RAW, overwrite=True)
    assert w.workspace.download(f"{root}/data/blob.bin").read() == b"other"

    # A .py with the notebook header becomes a notebook without its extension (format AUTO).
    notebook = b"# Databricks notebook source\nprint(1)\n"
    w.workspace.upload(f"{root}/nb.py", notebook, format=ImportFormat.AUTO)
    status = w.workspace.get_status(f"{root}/nb")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.PYTHON)
    exported = w.workspace.export(f"{root}/nb", format=ExportFormat.SOURCE)
    assert base64.b64decode(exported.content) == notebook
    w.workspace.mkdirs(f"{root}/empty")

    listed = {(o.path, o.object_type) for o in w.workspace.list(root)}
    plain = root.removeprefix("/Workspace")
    assert listed == {
        (f"{plain}/data", ObjectType.DIRECTORY),
        (f"{plain}/nb", ObjectType.NOTEBOOK),
        (f"{plain}/empty", ObjectType.DIRECTORY),
    }
    recursive = {o.path for o in w.workspace.list(root, recursive=True)}
    assert f"{plain}/data/blob.bin" in recursive
    assert w.workspace.get_status(f"{root}/data/blob.bin").size == len(b"other")

    with pytest.raises(DatabricksError) as refused:
        w.workspace.delete(root)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE" and "not empty" in str(refused.value)
    w.workspace.delete(root, recursive=True)
    with pytest.raises(NotFound):
        w.workspace.get_status(root)


def test_hostile_and_oversized_imports_are_refused_and_store_nothing(server, unique):
    w = workspace(server)
    for path in ["/Shared/../etc/passwd", "relative/x.py", "/Shared/./x", "/Shared/a\\..\\b"]:
        with pytest.raises(DatabricksError) as refused:
            w.workspace.upload(path, b"x", format=ImportFormat.RAW)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE", path
    root = f"/Shared/{unique('big')}"
    too_big = b"x" * (10 * 1024 * 1024 + 1)
    response = requests.post(
        f"{server.base}/api/2.0/workspace/import",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        json={"path": f"{root}/big.bin", "format": "RAW", "content": base64.b64encode(too_big).decode()},
        timeout=60,
    )
    assert response.status_code in (400, 413), response.text
    response = requests.post(
        f"{server.base}/api/2.0/workspace/import",
        headers={"Authorization": f"Bearer {server.admin_token}"},
        json={"path": f"{root}/x.bin", "format": "RAW", "content": "not base64!"},
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with pytest.raises(NotFound):
        w.workspace.get_status(root)


def test_a_users_home_is_theirs_and_the_admins(server, unique):
    name = unique("alice")
    token = server.create_user(name, "pw-" + name)
    alice = workspace(server, token)
    alice.workspace.upload(f"/Users/{name}/mine.py", b"print('mine')\n", format=ImportFormat.RAW)
    other = unique("bob")
    bob = workspace(server, server.create_user(other, "pw-" + other))
    with pytest.raises(PermissionDenied):
        bob.workspace.download(f"/Users/{name}/mine.py")
    with pytest.raises(PermissionDenied):
        bob.workspace.upload(f"/Users/{name}/theirs.py", b"x", format=ImportFormat.RAW)
    assert f"/Users/{name}" not in {o.path for o in bob.workspace.list("/Users")}
    assert workspace(server).workspace.download(f"/Users/{name}/mine.py").read() == b"print('mine')\n"


def test_tasks_run_workspace_files_with_their_siblings(server, unique):
    w = workspace(server)
    root = f"/Workspace/Shared/{unique('bundle')}/files"
    w.workspace.upload(f"{root}/src/helpers.py", b"GREETING = 'hello from a sibling'\n", format=ImportFormat.RAW)
    w.workspace.upload(
        f"{root}/src/main.py",
        textwrap.dedent(
            """\
            import sys
            from helpers import GREETING
            print(GREETING, *sys.argv[1:])
            """
        ).encode(),
        format=ImportFormat.RAW,
    )
    w.workspace.upload(
        f"{root}/src/report.py",
        b"# Databricks notebook source\nprint('notebook', dbutils.widgets.get('day'))\ndbutils.notebook.exit('reported')\n",
        format=ImportFormat.AUTO,
    )
    job_id = w.jobs.create(
        name=unique("from-workspace"),
        tasks=[
            python_task("main", f"{root}/src/main.py", ["{{job.id}}"]),
            jobs.Task(
                task_key="report",
                depends_on=[jobs.TaskDependency(task_key="main")],
                notebook_task=jobs.NotebookTask(notebook_path=f"{root}/src/report", base_parameters={"day": "monday"}),
            ),
        ],
    ).job_id
    run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
    assert run.state.result_state == jobs.RunResultState.SUCCESS, [t.state for t in run.tasks]
    main = w.jobs.get_run_output(task_of(run, "main").run_id)
    assert main.logs.strip() == f"hello from a sibling {job_id}"
    report = w.jobs.get_run_output(task_of(run, "report").run_id)
    assert report.notebook_output.result == "reported"
    assert "notebook monday" in report.logs


def test_a_task_cannot_run_another_users_home_file(server, unique):
    name = unique("carol")
    token = server.create_user(name, "pw-" + name)
    workspace(server).workspace.upload(f"/Users/admin/{name}-secret.py", b"print('secret')\n", format=ImportFormat.RAW)
    carol = workspace(server, token)
    job_id = carol.jobs.create(
        name=unique("snoop"), tasks=[python_task("snoop", f"/Users/admin/{name}-secret.py")]
    ).job_id
    run_id = carol.jobs.run_now(job_id).run_id
    run = wait_for(carol, run_id, lambda r: r.end_time)
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "cannot read" in task_of(run, "snoop").state.state_message
