"""Jobs through the Databricks SDK (`databricks-sdk`'s WorkspaceClient), driven as a user drives
it: create, get, list with its paging, reset, update, delete, permissions; bad settings refused
with nothing stored."""

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service import jobs


def workspace(server, token=None):
    return WorkspaceClient(host=server.base, token=token or server.admin_token)


def pipeline_tasks():
    return [
        jobs.Task(
            task_key="ingest",
            spark_python_task=jobs.SparkPythonTask(
                python_file="/jobs/ingest.py", parameters=["--day", "{{job.start_time.iso_date}}"]
            ),
        ),
        jobs.Task(
            task_key="train",
            depends_on=[jobs.TaskDependency(task_key="ingest")],
            notebook_task=jobs.NotebookTask(
                notebook_path="/jobs/train", base_parameters={"model": "rf", "day": "{{job.parameters.day}}"}
            ),
            max_retries=2,
            timeout_seconds=600,
        ),
        jobs.Task(
            task_key="good_enough",
            depends_on=[jobs.TaskDependency(task_key="train")],
            condition_task=jobs.ConditionTask(
                op=jobs.ConditionTaskOp.GREATER_THAN, left="{{tasks.train.values.auc}}", right="0.8"
            ),
        ),
        jobs.Task(
            task_key="register",
            depends_on=[jobs.TaskDependency(task_key="good_enough", outcome="true")],
            run_if=jobs.RunIf.ALL_SUCCESS,
            python_wheel_task=jobs.PythonWheelTask(package_name="pipeline", entry_point="register"),
        ),
    ]


def test_the_sdk_creates_reads_changes_and_deletes_a_job(server, unique):
    w = workspace(server)
    name = unique("train ✓")
    created = w.jobs.create(
        name=name,
        description="≥ 1e6 rows, nightly",
        tasks=pipeline_tasks(),
        parameters=[jobs.JobParameterDefinition(name="day", default="2026-12-06")],
        schedule=jobs.CronSchedule(
            quartz_cron_expression="0 30 2 * * ?", timezone_id="Europe/Amsterdam", pause_status=jobs.PauseStatus.PAUSED
        ),
        tags={"team": "ml"},
        max_concurrent_runs=2,
    )
    job = w.jobs.get(created.job_id)
    assert job.job_id == created.job_id
    assert job.creator_user_name == "admin"
    assert job.run_as_user_name == "admin"
    assert job.created_time > 0
    settings = job.settings
    assert settings.name == name
    assert settings.description == "≥ 1e6 rows, nightly"
    assert [t.task_key for t in settings.tasks] == ["ingest", "train", "good_enough", "register"]
    assert settings.tasks[0].spark_python_task.parameters == ["--day", "{{job.start_time.iso_date}}"]
    assert settings.tasks[1].notebook_task.base_parameters == {"model": "rf", "day": "{{job.parameters.day}}"}
    assert settings.tasks[1].max_retries == 2
    assert settings.tasks[2].condition_task.op == jobs.ConditionTaskOp.GREATER_THAN
    assert settings.tasks[3].depends_on[0].outcome == "true"
    assert settings.schedule.quartz_cron_expression == "0 30 2 * * ?"
    assert settings.schedule.pause_status == jobs.PauseStatus.PAUSED
    assert settings.parameters[0].default == "2026-12-06"
    assert settings.max_concurrent_runs == 2
    assert settings.timeout_seconds == 0, "Databricks' default is filled in"
    assert settings.tags == {"team": "ml"}

    # Update changes the named fields, merges tasks by key and removes what it is told to.
    w.jobs.update(
        created.job_id,
        new_settings=jobs.JobSettings(
            timeout_seconds=3600,
            tasks=[jobs.Task(task_key="train", notebook_task=jobs.NotebookTask(notebook_path="/jobs/train_v2"),
                             depends_on=[jobs.TaskDependency(task_key="ingest")])],
        ),
        fields_to_remove=["schedule", "tasks/register"],
    )
    updated = w.jobs.get(created.job_id).settings
    assert updated.timeout_seconds == 3600
    assert updated.schedule is None
    assert [t.task_key for t in updated.tasks] == ["ingest", "train", "good_enough"]
    assert updated.tasks[1].notebook_task.notebook_path == "/jobs/train_v2"
    assert updated.name == name, "what update does not name stays"

    # Reset replaces everything.
    w.jobs.reset(created.job_id, new_settings=jobs.JobSettings(name=name + " v2", tasks=pipeline_tasks()[:1]))
    reset = w.jobs.get(created.job_id).settings
    assert reset.name == name + " v2"
    assert [t.task_key for t in reset.tasks] == ["ingest"]
    assert reset.tags is None and reset.description is None

    w.jobs.delete(created.job_id)
    with pytest.raises(NotFound):
        w.jobs.get(created.job_id)
    with pytest.raises(NotFound):
        w.jobs.delete(created.job_id)


def test_the_sdk_lists_jobs_page_by_page_and_by_name(server, unique):
    w = workspace(server)
    prefix = unique("listed")
    ids = [w.jobs.create(name=f"{prefix}-{i}", tasks=pipeline_tasks()[:1]).job_id for i in range(5)]
    listed = [j for j in w.jobs.list(limit=2) if j.job_id in ids]
    assert [j.job_id for j in listed] == ids, "every page, oldest first"
    assert all(not j.settings.tasks for j in listed), "tasks only when expanded"
    expanded = [j for j in w.jobs.list(expand_tasks=True) if j.job_id in ids]
    assert [j.settings.tasks[0].task_key for j in expanded] == ["ingest"] * 5
    by_name = list(w.jobs.list(name=f"{prefix}-3".upper()))
    assert [j.job_id for j in by_name] == [ids[3]], "the name is matched whatever its case"
    first = requests.get(
        f"{server.base}/api/2.1/jobs/list",
        params={"limit": 2},
        headers={"Authorization": f"Bearer {server.admin_token}"},
        timeout=30,
    ).json()
    assert first["has_more"] is True and first["next_page_token"]
    for bad in ({"limit": 1000}, {"limit": -1}, {"page_token": "x"}, {"offset": -3}):
        answer = requests.get(
            f"{server.base}/api/2.2/jobs/list",
            params=bad,
            headers={"Authorization": f"Bearer {server.admin_token}"},
            timeout=30,
        )
        assert answer.status_code == 400, bad
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    "settings, reason",
    [
        ({"tasks": [{"task_key": "a", "spark_python_task": {"python_file": "a.py"}, "depends_on": [{"task_key": "b"}]},
                    {"task_key": "b", "spark_python_task": {"python_file": "b.py"}, "depends_on": [{"task_key": "a"}]}]},
         "cycle"),
        ({"tasks": [{"task_key": "a", "spark_python_task": {"python_file": "a.py"}, "notebook_task": {"notebook_path": "n"}}]},
         "more than one task type"),
        ({"tasks": [{"task_key": "a", "spark_python_task": {"python_file": "a.py"}, "depends_on": [{"task_key": "x"}]}]},
         "not a task of this job"),
        ({"schedule": {"quartz_cron_expression": "0 0 12 * * * *", "timezone_id": "UTC"}}, "Quartz"),
        ({"schedule": {"quartz_cron_expression": "0 0 12 * * ?", "timezone_id": "Mars/Base"}}, "timezone_id"),
        ({"tasks": [{"task_key": "a", "spark_python_task": {"python_file": "a.py", "parameters": ["{{job.parameters.nope}}"]}}]},
         "job parameter 'nope'"),
        ({"tasks": [{"task_key": "a'; DROP TABLE jobs; --", "spark_python_task": {"python_file": "a.py"}}]},
         "letters, digits"),
        ({"run_as": {"user_name": "nobody"}}, "admin"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_stored(server, unique, settings, reason):
    w = workspace(server)
    user_token = server.create_user(unique("maker"), "pw-123456789")
    before = {j.job_id for j in w.jobs.list()}
    answer = requests.post(
        f"{server.base}/api/2.2/jobs/create",
        json={"name": unique("bad"), **settings},
        headers={"Authorization": f"Bearer {user_token}"},
        timeout=30,
    )
    assert answer.status_code in (400, 403), answer.text
    assert answer.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "PERMISSION_DENIED")
    assert reason in answer.json()["message"], answer.json()["message"]
    assert {j.job_id for j in w.jobs.list()} == before


def test_the_sdk_raises_its_own_error_for_refused_settings(server):
    with pytest.raises(InvalidParameterValue, match="depends on itself"):
        workspace(server).jobs.create(
            name="cyclic",
            tasks=[
                jobs.Task(
                    task_key="a",
                    spark_python_task=jobs.SparkPythonTask(python_file="a.py"),
                    depends_on=[jobs.TaskDependency(task_key="a")],
                )
            ],
        )


def test_job_permissions_follow_the_databricks_levels(server, unique):
    w = workspace(server)
    viewer_name = unique("viewer")
    viewer = workspace(server, server.create_user(viewer_name, "pw-123456789"))
    job_id = w.jobs.create(name=unique("private"), tasks=pipeline_tasks()[:1]).job_id
    assert job_id not in {j.job_id for j in viewer.jobs.list()}
    with pytest.raises(PermissionDenied):
        viewer.jobs.get(job_id)

    levels = w.jobs.get_permissions(str(job_id))
    assert levels.object_type == "job"
    owners = [a for a in levels.access_control_list if a.user_name == "admin"]
    assert owners and owners[0].all_permissions[0].permission_level == jobs.JobPermissionLevel.IS_OWNER

    w.jobs.update_permissions(
        str(job_id),
        access_control_list=[
            jobs.JobAccessControlRequest(user_name=viewer_name, permission_level=jobs.JobPermissionLevel.CAN_VIEW)
        ],
    )
    assert viewer.jobs.get(job_id).job_id == job_id
    assert job_id in {j.job_id for j in viewer.jobs.list()}
    with pytest.raises(PermissionDenied):
        viewer.jobs.reset(job_id, new_settings=jobs.JobSettings(name="mine now"))
    with pytest.raises(PermissionDenied):
        viewer.jobs.delete(job_id)
    assert w.jobs.get(job_id).settings.name != "mine now"

    # A job keeps exactly one owner: a replaced list without one is refused and changes nothing.
    with pytest.raises(InvalidParameterValue, match="exactly one IS_OWNER"):
        w.jobs.set_permissions(
            str(job_id),
            access_control_list=[
                jobs.JobAccessControlRequest(user_name=viewer_name, permission_level=jobs.JobPermissionLevel.CAN_MANAGE)
            ],
        )
    assert viewer.jobs.get(job_id).job_id == job_id
    with pytest.raises(PermissionDenied):
        viewer.jobs.delete(job_id)


def test_tarn_jobs_creates_lists_shows_and_deletes_from_the_command_line(server, unique, tmp_path):
    """The CLI goes through the Jobs API as the token's principal: what it creates the SDK sees."""
    import json

    def tarn_jobs(*args, ok=True):
        done = server.cli("jobs", *args, check=False)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done.stdout + done.stderr

    name = unique("cli job")
    settings = {
        "name": name,
        "tasks": [{"task_key": "score", "spark_python_task": {"python_file": "/jobs/score.py"}}],
        "schedule": {"quartz_cron_expression": "0 0 6 ? * MON-FRI", "timezone_id": "UTC", "pause_status": "PAUSED"},
    }
    (tmp_path / "job.json").write_text(json.dumps(settings))
    created = tarn_jobs("create", str(tmp_path / "job.json"))
    job_id = int(created.split()[2])
    job = workspace(server).jobs.get(job_id)
    assert job.settings.name == name and job.creator_user_name == "admin"
    listed = tarn_jobs("list", "--name", name)
    assert str(job_id) in listed and "0 0 6 ? * MON-FRI (paused)" in listed
    assert json.loads(tarn_jobs("get", str(job_id)))["schedule"] == settings["schedule"]
    (tmp_path / "bad.json").write_text(json.dumps({"tasks": [{"task_key": "a"}]}))
    assert "needs one task type" in tarn_jobs("create", str(tmp_path / "bad.json"), ok=False)
    assert f"deleted job {job_id}" in tarn_jobs("delete", str(job_id))
    with pytest.raises(NotFound):
        workspace(server).jobs.get(job_id)
