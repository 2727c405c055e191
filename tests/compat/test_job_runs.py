"""Running jobs through the Databricks SDK, as a user does: run-now and wait, read the run and
each task's output, a condition's branches, task values and references, retries, timeouts,
cancelling a process tree, concurrency limits, one-time runs, permissions, a server killed
mid-run. Tasks are real Python processes that talk back to tarn with the stock clients."""

import os
from datetime import timedelta
import signal
import subprocess
import textwrap
import time

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service import compute, jobs

from conftest import start_tarn

WAIT = 120  # seconds a run may take before a test gives up on it


def workspace(server, token=None):
    return WorkspaceClient(host=server.base, token=token or server.admin_token)


def script(folder, name, body):
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def python_task(key, file, parameters=(), depends_on=(), **fields):
    return jobs.Task(
        task_key=key,
        spark_python_task=jobs.SparkPythonTask(python_file=file, parameters=list(parameters)),
        depends_on=[jobs.TaskDependency(task_key=k) for k in depends_on],
        **fields,
    )


def wait_for(w, run_id, until, timeout=WAIT):
    deadline = time.time() + timeout
    while True:
        run = w.jobs.get_run(run_id)
        if until(run):
            return run
        assert time.time() < deadline, f"run {run_id} stayed {run.state}"
        time.sleep(0.1)


def task_of(run, key):
    return next(t for t in run.tasks if t.task_key == key)


def test_a_pipeline_runs_with_values_references_a_condition_and_outputs(server, unique, tmp_path):
    w = workspace(server)
    ingest = script(
        tmp_path,
        "ingest.py",
        """
        import sys
        from databricks.sdk import WorkspaceClient
        from tarn_dbutils import dbutils

        rows = int(sys.argv[sys.argv.index("--rows") + 1])
        day = sys.argv[sys.argv.index("--day") + 1]
        # The task acts as the job's principal through the SDK, configured by its environment.
        job = WorkspaceClient().jobs.get(int(sys.argv[sys.argv.index("--job") + 1]))
        print(f"ingested rows={rows} day={day} for job {job.settings.name}")
        dbutils.jobs.taskValues.set("rows", rows)
        """,
    )
    notebook = tmp_path / "train.py"
    notebook.write_text(
        textwrap.dedent(
            """\
            # Databricks notebook source
            # MAGIC %md
            # MAGIC # Training

            # COMMAND ----------

            import mlflow
            rows = dbutils.jobs.taskValues.get("ingest", "rows")
            model = dbutils.widgets.get("model")

            # COMMAND ----------

            mlflow.set_experiment("/jobs/" + dbutils.widgets.get("experiment"))
            with mlflow.start_run() as run:
                mlflow.log_param("model", model)
                mlflow.log_metric("auc", 0.91)
            dbutils.jobs.taskValues.set("auc", 0.91)
            dbutils.jobs.taskValues.set("mlflow_run", run.info.run_id)
            dbutils.notebook.exit(f"trained {model} on {rows} rows")

            # COMMAND ----------

            raise RuntimeError("never reached: the notebook exited")
            """
        )
    )
    register = script(tmp_path, "register.py", "import sys; print('registering', ' '.join(sys.argv[1:]))\n")
    name = unique("pipeline")
    experiment = unique("exp")
    job_id = w.jobs.create(
        name=name,
        parameters=[jobs.JobParameterDefinition(name="day", default="2026-01-01")],
        tasks=[
            python_task("ingest", ingest, ["--rows", "1000", "--day", "{{job.parameters.day}}", "--job", "{{job.id}}"]),
            jobs.Task(
                task_key="train",
                depends_on=[jobs.TaskDependency(task_key="ingest")],
                notebook_task=jobs.NotebookTask(
                    notebook_path=str(notebook), base_parameters={"model": "rf", "experiment": experiment}
                ),
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
                spark_python_task=jobs.SparkPythonTask(
                    python_file=register,
                    parameters=["{{tasks.train.values.mlflow_run}}", "rows={{tasks.ingest.values.rows}}", "{{job.run_id}}"],
                ),
            ),
            jobs.Task(
                task_key="alert",
                depends_on=[jobs.TaskDependency(task_key="good_enough", outcome="false")],
                spark_python_task=jobs.SparkPythonTask(python_file=register),
            ),
        ],
    ).job_id

    run = w.jobs.run_now(job_id, job_parameters={"day": "2026-12-06"}).result(timeout=timedelta(seconds=WAIT))
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED, run.state
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert run.status.state == jobs.RunLifecycleStateV2State.TERMINATED
    assert run.status.termination_details.code == jobs.TerminationCodeCode.SUCCESS
    assert run.job_id == job_id and run.run_name == name
    assert run.trigger == jobs.TriggerType.ONE_TIME
    assert run.run_type == jobs.RunType.JOB_RUN
    assert run.start_time > 0 and run.end_time >= run.start_time
    assert {p.name: p.value for p in run.job_parameters} == {"day": "2026-12-06"}
    states = {t.task_key: t.state.result_state for t in run.tasks}
    assert states == {
        "ingest": jobs.RunResultState.SUCCESS,
        "train": jobs.RunResultState.SUCCESS,
        "good_enough": jobs.RunResultState.SUCCESS,
        "register": jobs.RunResultState.SUCCESS,
        "alert": jobs.RunResultState.EXCLUDED,
    }
    assert task_of(run, "good_enough").condition_task.outcome == "true"

    ingest_output = w.jobs.get_run_output(task_of(run, "ingest").run_id)
    assert f"ingested rows=1000 day=2026-12-06 for job {name}" in ingest_output.logs
    train_output = w.jobs.get_run_output(task_of(run, "train").run_id)
    assert train_output.notebook_output.result == "trained rf on 1000 rows"
    register_output = w.jobs.get_run_output(task_of(run, "register").run_id)
    mlflow_run_id = register_output.logs.split()[1]
    assert register_output.logs.strip().endswith(f"rows=1000 {run.run_id}")

    # The notebook's MLflow run is in tarn, logged as the job's principal.
    found = server.admin("GET", "/api/2.0/mlflow/runs/get", params={"run_id": mlflow_run_id})["run"]
    assert found["data"]["params"] == [{"key": "model", "value": "rf"}]

    # A run of several tasks has no single output.
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        w.jobs.get_run_output(run.run_id)
    listed = list(w.jobs.list_runs(job_id=job_id, expand_tasks=True))
    assert [r.run_id for r in listed] == [run.run_id]
    assert len(listed[0].tasks) == 5


def test_a_failing_task_is_retried_then_reports_its_error(server, unique, tmp_path):
    w = workspace(server)
    attempts = tmp_path / "attempts"
    failing = script(
        tmp_path,
        "failing.py",
        f"""
        with open({str(attempts)!r}, "a") as f:
            f.write("x")
        raise ValueError("bad rows: 3 of 10 had no label")
        """,
    )
    job_id = w.jobs.create(
        name=unique("flaky"),
        tasks=[
            python_task("load", failing, max_retries=1, min_retry_interval_millis=200),
            python_task("after", failing, depends_on=["load"]),
            python_task("cleanup", script(tmp_path, "ok.py", "print('cleaned')\n"), depends_on=["load"],
                        run_if=jobs.RunIf.AT_LEAST_ONE_FAILED),
        ],
    ).job_id
    run_id = w.jobs.run_now(job_id).run_id
    run = wait_for(w, run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "Task load failed with message: ValueError: bad rows: 3 of 10 had no label" in run.state.state_message
    assert attempts.read_text() == "xx", "one try and one retry"
    load = task_of(run, "load")
    assert load.attempt_number == 1
    assert task_of(run, "after").state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    assert task_of(run, "cleanup").state.result_state == jobs.RunResultState.SUCCESS
    history = w.jobs.get_run(run_id, include_history=True)
    assert sorted(t.attempt_number for t in history.tasks if t.task_key == "load") == [0, 1]
    output = w.jobs.get_run_output(load.run_id)
    assert output.error == "ValueError: bad rows: 3 of 10 had no label"
    assert output.error_trace.startswith("Traceback (most recent call last):")
    assert 'failing.py", line 4' in output.error_trace


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its entry.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_cancel_ends_the_whole_process_tree(server, unique, tmp_path):
    w = workspace(server)
    pids = tmp_path / "pids"
    sleeper = script(
        tmp_path,
        "sleeper.py",
        f"""
        import os, subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}")
        print("started", flush=True)
        time.sleep(300)
        """,
    )
    job_id = w.jobs.create(name=unique("sleepy"), tasks=[python_task("sleep", sleeper), python_task("next", sleeper, depends_on=["sleep"])]).job_id
    run_id = w.jobs.run_now(job_id).run_id
    deadline = time.time() + WAIT
    while not pids.exists() or not pids.read_text():
        assert time.time() < deadline
        time.sleep(0.05)
    running = w.jobs.get_run(run_id)
    assert running.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING
    assert task_of(running, "next").state.life_cycle_state == jobs.RunLifeCycleState.BLOCKED
    # Logs are readable while the task runs.
    assert "started" in w.jobs.get_run_output(task_of(running, "sleep").run_id).logs
    w.jobs.cancel_run(run_id).result(timeout=timedelta(seconds=WAIT))
    run = w.jobs.get_run(run_id)
    assert run.state.result_state == jobs.RunResultState.CANCELED
    assert run.state.user_cancelled_or_timedout
    assert task_of(run, "sleep").state.result_state == jobs.RunResultState.CANCELED
    assert task_of(run, "next").state.result_state == jobs.RunResultState.CANCELED
    for pid in map(int, pids.read_text().split()):
        deadline = time.time() + 10
        while alive(pid):
            assert time.time() < deadline, f"process {pid} outlived its cancelled task"
            time.sleep(0.05)


def test_timeouts_end_a_task_and_a_run(server, unique, tmp_path):
    w = workspace(server)
    sleeper = script(tmp_path, "sleep.py", "import time; time.sleep(60)\n")
    task_timeout = w.jobs.create(name=unique("t"), tasks=[python_task("slow", sleeper, timeout_seconds=1)]).job_id
    run = wait_for(w, w.jobs.run_now(task_timeout).run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert run.state.result_state == jobs.RunResultState.TIMEDOUT
    assert task_of(run, "slow").state.result_state == jobs.RunResultState.TIMEDOUT
    job_timeout = w.jobs.create(name=unique("t"), timeout_seconds=1, tasks=[python_task("slow", sleeper)]).job_id
    run = wait_for(w, w.jobs.run_now(job_timeout).run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert run.state.result_state == jobs.RunResultState.TIMEDOUT
    assert run.end_time - run.start_time < 30_000


def test_concurrent_runs_queue_or_are_skipped(server, unique, tmp_path):
    w = workspace(server)
    gate = tmp_path / "gate"
    waiter = script(
        tmp_path,
        "wait.py",
        f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
        """,
    )
    skipping = w.jobs.create(
        name=unique("one"), max_concurrent_runs=1, queue=jobs.QueueSettings(enabled=False), tasks=[python_task("w", waiter)]
    ).job_id
    first = w.jobs.run_now(skipping).run_id
    second = w.jobs.run_now(skipping).run_id
    skipped = wait_for(w, second, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED)
    assert skipped.state.result_state == jobs.RunResultState.MAXIMUM_CONCURRENT_RUNS_REACHED
    assert "limit of 1 maximum concurrent runs" in skipped.state.state_message

    queueing = w.jobs.create(name=unique("queued"), max_concurrent_runs=1, tasks=[python_task("w", waiter)]).job_id
    held = w.jobs.run_now(queueing).run_id
    wait_for(w, held, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING)
    queued = w.jobs.run_now(queueing).run_id
    assert wait_for(w, queued, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.QUEUED).status.state == (
        jobs.RunLifecycleStateV2State.QUEUED
    )
    active = [r.run_id for r in w.jobs.list_runs(job_id=queueing, active_only=True)]
    assert active == [queued, held], "newest first"
    gate.write_text("open")
    for run_id in (first, held, queued):
        run = wait_for(w, run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
        assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert [r.run_id for r in w.jobs.list_runs(job_id=queueing, completed_only=True)] == [queued, held]


def test_one_time_runs_idempotency_and_only(server, unique, tmp_path):
    w = workspace(server)
    hello = script(tmp_path, "hello.py", "import sys; print('hello', *sys.argv[1:])\n")
    submitted = w.jobs.submit(
        run_name=unique("once"), tasks=[jobs.SubmitTask(task_key="hi", spark_python_task=jobs.SparkPythonTask(python_file=hello, parameters=["{{job.run_id}}"]))]
    ).result(timeout=timedelta(seconds=WAIT))
    assert submitted.state.result_state == jobs.RunResultState.SUCCESS
    assert submitted.run_type == jobs.RunType.SUBMIT_RUN
    # A run of one task answers get-output by its own id too.
    assert w.jobs.get_run_output(submitted.run_id).logs.strip() == f"hello {submitted.run_id}"

    job_id = w.jobs.create(name=unique("only"), tasks=[python_task("a", hello), python_task("b", hello, depends_on=["a"])]).job_id
    token = unique("token")
    first = w.jobs.run_now(job_id, idempotency_token=token, only=["b"]).run_id
    assert w.jobs.run_now(job_id, idempotency_token=token).run_id == first, "the same token, the same run"
    run = wait_for(w, first, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert [t.task_key for t in run.tasks] == ["b"]
    assert run.state.result_state == jobs.RunResultState.SUCCESS


def test_bad_requests_are_refused_and_run_nothing(server, unique, tmp_path):
    w = workspace(server)
    hello = script(tmp_path, "hello.py", "print('hello')\n")
    job_id = w.jobs.create(
        name=unique("strict"), parameters=[jobs.JobParameterDefinition(name="day", default="x")], tasks=[python_task("a", hello)]
    ).job_id
    with pytest.raises(NotFound):
        w.jobs.run_now(987654321)
    with pytest.raises(InvalidParameterValue, match="no parameter 'month'"):
        w.jobs.run_now(job_id, job_parameters={"month": "12"})
    with pytest.raises(InvalidParameterValue, match="'z' is not a task"):
        w.jobs.run_now(job_id, only=["z"])
    with pytest.raises(NotFound):
        w.jobs.get_run(987654321)
    assert list(w.jobs.list_runs(job_id=job_id)) == []
    relative = w.jobs.create(name=unique("relative"), tasks=[python_task("a", "scripts/hello.py")]).job_id
    run = wait_for(w, w.jobs.run_now(relative).run_id, lambda r: r.state.life_cycle_state.value in ("TERMINATED", "INTERNAL_ERROR"))
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "must be a workspace path or an absolute path" in task_of(run, "a").state.state_message


def test_run_permissions_follow_the_job(server, unique, tmp_path):
    w = workspace(server)
    token_file = tmp_path / "token"
    hello = script(
        tmp_path,
        "who.py",
        f"""
        import os, requests
        me = requests.get(os.environ["TARN_HOST"] + "/api/2.0/tarn/me",
                          headers={{"Authorization": "Bearer " + os.environ["DATABRICKS_TOKEN"]}}).json()
        open({str(token_file)!r}, "w").write(os.environ["DATABRICKS_TOKEN"])
        print("acting as", me["name"])
        """,
    )
    viewer_name = unique("viewer")
    viewer = workspace(server, server.create_user(viewer_name, "pw-123456789"))
    job_id = w.jobs.create(name=unique("guarded"), tasks=[python_task("a", hello)]).job_id
    run_id = w.jobs.run_now(job_id).run_id
    with pytest.raises(PermissionDenied):
        viewer.jobs.get_run(run_id)
    with pytest.raises(PermissionDenied):
        viewer.jobs.run_now(job_id)
    assert run_id not in {r.run_id for r in viewer.jobs.list_runs()}
    w.jobs.update_permissions(
        str(job_id),
        access_control_list=[jobs.JobAccessControlRequest(user_name=viewer_name, permission_level=jobs.JobPermissionLevel.CAN_VIEW)],
    )
    assert viewer.jobs.get_run(run_id).run_id == run_id
    with pytest.raises(PermissionDenied):
        viewer.jobs.cancel_run(run_id)
    w.jobs.update_permissions(
        str(job_id),
        access_control_list=[jobs.JobAccessControlRequest(user_name=viewer_name, permission_level=jobs.JobPermissionLevel.CAN_MANAGE_RUN)],
    )
    mine = viewer.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
    assert mine.state.result_state == jobs.RunResultState.SUCCESS
    assert mine.creator_user_name == viewer_name
    logs = viewer.jobs.get_run_output(mine.tasks[0].run_id).logs
    assert logs.strip() == "acting as admin", "tasks act as the job's run_as, not as who started them"
    # The task's token ended with the task.
    revoked = requests.get(server.base + "/api/2.0/tarn/me", headers={"Authorization": "Bearer " + token_file.read_text()})
    assert revoked.status_code == 401, revoked.text


def test_megabytes_of_logs_are_kept_and_their_end_returned(server, unique, tmp_path):
    w = workspace(server)
    chatty = script(
        tmp_path,
        "chatty.py",
        """
        import sys
        line = "x" * 99 + "\\n"
        for i in range(80_000):
            sys.stdout.write(line)
        print("the end")
        """,
    )
    job_id = w.jobs.create(name=unique("chatty"), tasks=[python_task("talk", chatty)]).job_id
    run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
    output = w.jobs.get_run_output(task_of(run, "talk").run_id)
    assert output.logs_truncated
    assert output.logs.endswith("the end\n")
    assert 5 * 1024 * 1024 - 200 <= len(output.logs) <= 5 * 1024 * 1024


def test_a_run_interrupted_by_a_killed_server_is_ended_on_restart(tmp_path, unique):
    data_dir = str(tmp_path / "data")
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    if database_url:
        database_url = database_url.rsplit("/", 1)[0] + "/tarn_compat_restart"
    started, stop = start_tarn(data_dir=data_dir, database_url=database_url)
    port = int(started.base.rsplit(":", 1)[1])
    pids = tmp_path / "pid"
    sleeper = script(
        tmp_path,
        "sleeper.py",
        f"""
        import os, time
        open({str(pids)!r}, "w").write(str(os.getpid()))
        time.sleep(300)
        """,
    )
    w = workspace(started)
    job_id = w.jobs.create(name=unique("interrupted"), tasks=[python_task("sleep", sleeper)]).job_id
    run_id = w.jobs.run_now(job_id).run_id
    deadline = time.time() + WAIT
    while not pids.exists() or not pids.read_text():
        assert time.time() < deadline
        time.sleep(0.05)
    pid = int(pids.read_text())
    server_pid = int(subprocess.check_output(["pgrep", "-f", f"tarn server .*--port {port}"]).split()[0])
    os.kill(server_pid, signal.SIGKILL)
    time.sleep(0.5)
    restarted, stop_again = start_tarn(
        data_dir=data_dir, database_url=database_url, fresh_database=False, port=port, admin_token=started.admin_token
    )
    try:
        w = workspace(restarted)
        run = wait_for(w, run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED, timeout=30)
        assert run.state.result_state == jobs.RunResultState.FAILED
        assert "restarted while it ran" in task_of(run, "sleep").state.state_message
        deadline = time.time() + 10
        while alive(pid):
            assert time.time() < deadline, "the orphaned task process was not ended"
            time.sleep(0.05)
    finally:
        stop_again()
        stop(drop_database=False)


def tarn_cli(server, *args, ok=True, token=None):
    """Runs `tarn jobs ARGS` against `server` (as the admin unless `token` is given)."""
    done = server.cli("jobs", *args, token=token, check=False, timeout=WAIT, env={"RUST_BACKTRACE": "0"})
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return CliOutput(done.stdout, done.stderr)


class CliOutput(str):
    """What a command printed on stdout, with its stderr beside it for failure messages."""

    def __new__(cls, stdout, stderr):
        printed = super().__new__(cls, stdout)
        printed.stderr = stderr
        return printed


def job_file(tmp_path, hello, failing):
    settings = {
        "name": "cli run",
        "parameters": [{"name": "day", "default": "x"}],
        "tasks": [
            {"task_key": "first", "spark_python_task": {"python_file": hello, "parameters": ["{{job.parameters.day}}"]}},
            {"task_key": "second", "depends_on": [{"task_key": "first"}], "spark_python_task": {"python_file": hello}},
            {"task_key": "broken", "depends_on": [{"task_key": "first"}], "spark_python_task": {"python_file": failing}},
        ],
    }
    path = tmp_path / "job.json"
    path.write_text(__import__("json").dumps(settings))
    return str(path)


def test_tarn_jobs_run_follows_a_run_the_server_runs(server, tmp_path):
    """`tarn jobs run` starts the run on the server and follows it to its end."""
    hello = script(tmp_path, "hello.py", "import sys; print('hello', *sys.argv[1:])\n")
    failing = script(tmp_path, "failing.py", "raise SystemExit('no luck')\n")
    created = tarn_cli(server, "create", job_file(tmp_path, hello, failing))
    job_id = int(created.split()[2])
    out = tarn_cli(server, "run", str(job_id), "--param", "day=monday", ok=False)
    run_id = int(out.split()[1])
    assert "first" in out and "SUCCESS" in out and "FAILED" in out
    assert f"run {run_id} FAILED" in out and "Task broken failed" in out
    assert f"run {run_id} ended FAILED" in out.stderr
    run = workspace(server).jobs.get_run(run_id)
    assert run.state.result_state == jobs.RunResultState.FAILED
    first = task_of(run, "first").run_id
    assert f"logs of broken: tarn jobs logs {task_of(run, 'broken').run_id}" in out
    assert tarn_cli(server, "logs", str(first)) == "hello monday\n"
    assert str(run_id) in tarn_cli(server, "runs", "--job-id", str(job_id))


def test_tarn_jobs_repair_reruns_what_failed_and_run_only_runs_some_tasks(server, tmp_path):
    """The tasks' own clients talk to the server; a repair from the CLI reruns the failed task
    inside the same run, and `--only` runs just the tasks named."""
    hello = script(
        tmp_path,
        "hello.py",
        """
        import sys, mlflow
        mlflow.set_experiment("cli-run")
        with mlflow.start_run():
            mlflow.log_param("day", sys.argv[1] if len(sys.argv) > 1 else "-")
        print("hello", *sys.argv[1:])
        """,
    )
    fixed = tmp_path / "fixed"
    failing = script(
        tmp_path, "failing.py", f"import os\nif not os.path.exists({str(fixed)!r}):\n    raise SystemExit('no luck')\n"
    )
    created = tarn_cli(server, "create", job_file(tmp_path, hello, failing))
    job_id = int(created.split()[2])
    out = tarn_cli(server, "run", str(job_id), "--param", "day=friday", ok=False)
    assert "Task broken failed" in out, out + out.stderr
    run_id = int(out.split()[1])
    fixed.write_text("yes")
    out = tarn_cli(server, "repair", str(run_id))
    assert out.startswith("repair ") and f"of run {run_id}" in out.splitlines()[0]
    assert f"run {run_id} SUCCESS" in out, out + out.stderr
    run = workspace(server).jobs.get_run(run_id)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert task_of(run, "first").attempt_number == 0, "what succeeded was not rerun"
    runs = tarn_cli(server, "runs", "--job-id", str(job_id))
    assert "SUCCESS" in runs and "cli run" in runs, "repaired"
    out = tarn_cli(server, "run", str(job_id), "--only", "second")
    assert "SUCCESS" in out
    only = workspace(server).jobs.get_run(int(out.split()[1]))
    assert [t.task_key for t in only.tasks] == ["second"]


def test_repair_reruns_what_failed_inside_the_same_run(server, unique, tmp_path):
    w = workspace(server)
    counts = tmp_path / "counts"
    counts.mkdir()
    fixed = tmp_path / "fixed"
    counting = script(
        tmp_path,
        "counting.py",
        f"""
        import os, sys
        key = sys.argv[1]
        with open(os.path.join({str(counts)!r}, key), "a") as f:
            f.write("x")
        if key == "transform" and not os.path.exists({str(fixed)!r}):
            raise RuntimeError("the input is not fixed yet")
        """,
    )
    job_id = w.jobs.create(
        name=unique("repairable"),
        tasks=[
            python_task("extract", counting, ["extract"]),
            python_task("transform", counting, ["transform"], depends_on=["extract"]),
            python_task("load", counting, ["load"], depends_on=["transform"]),
            python_task("report", counting, ["report"], depends_on=["extract"]),
        ],
    ).job_id
    run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert task_of(run, "load").state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    with pytest.raises(InvalidParameterValue, match="latest_repair_id"):
        w.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True, latest_repair_id=12345)

    fixed.write_text("yes")
    repaired = w.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True).result(timeout=timedelta(seconds=WAIT))
    assert repaired.run_id == run.run_id
    assert repaired.state.result_state == jobs.RunResultState.SUCCESS
    ran = {path.name: path.read_text() for path in counts.iterdir()}
    assert ran == {"extract": "x", "report": "x", "transform": "xx", "load": "x"}, "only what failed ran again"
    assert task_of(repaired, "transform").run_id != task_of(run, "transform").run_id
    assert task_of(repaired, "extract").run_id == task_of(run, "extract").run_id
    history = repaired.repair_history
    assert [h.type for h in history] == [jobs.RepairHistoryItemType.ORIGINAL, jobs.RepairHistoryItemType.REPAIR]
    assert history[0].state.result_state == jobs.RunResultState.FAILED
    assert set(history[1].task_run_ids) == {task_of(repaired, "transform").run_id, task_of(repaired, "load").run_id}

    # A second repair names the first; rerun_dependent_tasks reruns what depends on the task.
    again = w.jobs.repair_run(
        run.run_id, rerun_tasks=["extract"], rerun_dependent_tasks=True, latest_repair_id=history[1].id
    ).result(timeout=timedelta(seconds=WAIT))
    assert again.state.result_state == jobs.RunResultState.SUCCESS
    assert {path.name: path.read_text() for path in counts.iterdir()} == {
        "extract": "xx", "report": "xx", "transform": "xxx", "load": "xx"
    }
    assert len(again.repair_history) == 3
    with pytest.raises(InvalidParameterValue, match="'nope' is not a task"):
        w.jobs.repair_run(run.run_id, rerun_tasks=["nope"], latest_repair_id=again.repair_history[2].id)


def runs_of(server, job_id):
    """Every run of a job as the API lists it (raw JSON: a MODEL trigger is newer than the SDK)."""
    listed = server.admin("GET", "/api/2.2/jobs/runs/list", params={"job_id": job_id, "limit": 25})
    return listed.get("runs", [])


def wait_for_runs(server, job_id, count, timeout=WAIT):
    deadline = time.time() + timeout
    while len(runs := runs_of(server, job_id)) < count:
        assert time.time() < deadline, f"job {job_id} has {len(runs)} runs, not {count}"
        time.sleep(0.1)
    return runs


def test_schedules_and_triggers_start_runs_from_the_clock_and_the_event_stream(server, client, unique, tmp_path):
    import mlflow
    import pyarrow as pa
    from test_lakehouse import payments_table, write
    from test_registry import _log_and_register

    w = workspace(server)
    hello = script(tmp_path, "hello.py", "print('triggered')\n")

    # A Quartz schedule firing every second; paused, it stops.
    every_second = w.jobs.create(
        name=unique("cron"),
        schedule=jobs.CronSchedule(quartz_cron_expression="* * * * * ?", timezone_id="Europe/Amsterdam"),
        max_concurrent_runs=5,
        tasks=[python_task("a", hello)],
    ).job_id
    fired = wait_for_runs(server, every_second, 2)
    assert {run["trigger"] for run in fired} == {"PERIODIC"}
    assert fired[0]["creator_user_name"] == "admin"
    w.jobs.update(
        every_second,
        new_settings=jobs.JobSettings(
            schedule=jobs.CronSchedule(
                quartz_cron_expression="* * * * * ?", timezone_id="Europe/Amsterdam", pause_status=jobs.PauseStatus.PAUSED
            )
        ),
    )
    time.sleep(1.5)
    settled = len(runs_of(server, every_second))
    time.sleep(2.5)
    assert len(runs_of(server, every_second)) == settled, "a paused schedule fires no more"

    # Commits to a watched table start a run, whoever writes them.
    schema = unique("trig").replace("-", "_")
    server.admin("POST", "/api/2.1/unity-catalog/schemas", json={"name": schema, "catalog_name": "dev"})
    payments_table(server, schema)
    table = f"dev.{schema}.payments"
    on_table = w.jobs.create(
        name=unique("on table"),
        trigger=jobs.TriggerSettings(
            table_update=jobs.TableUpdateTriggerConfiguration(table_names=[table], condition=jobs.Condition.ANY_UPDATED)
        ),
        tasks=[python_task("a", hello)],
    ).job_id
    time.sleep(1.5)
    assert runs_of(server, on_table) == [], "nothing committed since the job was made"
    write(server, table, pa.table({"id": pa.array([1], pa.int64()), "amount": [2.0], "country": ["NL"]}))
    assert wait_for_runs(server, on_table, 1)[0]["trigger"] == "TABLE"

    # Setting the watched alias of the watched model starts a run.
    model = unique("churn")
    on_model = w.jobs.create(
        name=unique("on model"),
        trigger=jobs.TriggerSettings(
            model=jobs.ModelTriggerConfiguration(
                condition=jobs.ModelTriggerConfigurationCondition.MODEL_ALIAS_SET, securable_name=model, aliases=["champion"]
            )
        ),
        tasks=[python_task("a", hello)],
    ).job_id
    mlflow.set_experiment(unique())
    _log_and_register(model)
    client.set_registered_model_alias(model, "challenger", "1")
    time.sleep(1.5)
    assert runs_of(server, on_model) == [], "another alias"
    client.set_registered_model_alias(model, "champion", "1")
    run = wait_for_runs(server, on_model, 1)[0]
    assert run["trigger"] == "MODEL"
    done = wait_for(w, run["run_id"], lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert done.state.result_state == jobs.RunResultState.SUCCESS

    # New files in a watched directory start a run; the files already there do not.
    landing = tmp_path / "landing"
    (landing / "day1").mkdir(parents=True)
    (landing / "day1" / "old.csv").write_text("a,b\n")
    on_files = w.jobs.create(
        name=unique("on files"),
        trigger=jobs.TriggerSettings(file_arrival=jobs.FileArrivalTriggerConfiguration(url=f"file://{landing}/")),
        tasks=[python_task("a", hello)],
    ).job_id
    time.sleep(5)  # more than two listings of the directory
    assert runs_of(server, on_files) == [], "files there before the trigger"
    (landing / "day2").mkdir()
    (landing / "day2" / "new.csv").write_text("c,d\n")
    assert wait_for_runs(server, on_files, 1)[0]["trigger"] == "FILE_ARRIVAL"
    for url in ["s3://bucket/landing/", "file:///landing/../etc", "relative/dir"]:
        with pytest.raises(InvalidParameterValue):
            w.jobs.create(
                name=unique("bad files"),
                trigger=jobs.TriggerSettings(file_arrival=jobs.FileArrivalTriggerConfiguration(url=url)),
                tasks=[python_task("a", hello)],
            )


def test_sql_tasks_and_run_job_tasks(server, unique, tmp_path):
    w = workspace(server)
    schema = unique("jobsql").replace("-", "_")
    server.admin("POST", "/api/2.1/unity-catalog/schemas", json={"name": schema, "catalog_name": "dev"})
    statements = tmp_path / "refresh.sql"
    statements.write_text(
        textwrap.dedent(
            f"""
            -- a comment; with a semicolon
            CREATE TABLE dev.{schema}.daily AS SELECT 1 AS day, 'a;b' AS note;
            INSERT INTO dev.{schema}.daily VALUES ({{{{day}}}}, 'c');
            SELECT count(*) AS days FROM dev.{schema}.daily
            """
        )
    )
    refresh = w.jobs.create(
        name=unique("refresh"),
        parameters=[jobs.JobParameterDefinition(name="day", default="1")],
        tasks=[
            jobs.Task(
                task_key="sql",
                sql_task=jobs.SqlTask(
                    file=jobs.SqlTaskFile(path=str(statements)), parameters={"day": "{{job.parameters.day}}"}, warehouse_id="local"
                ),
            )
        ],
    ).job_id
    parent = w.jobs.create(
        name=unique("parent"),
        tasks=[jobs.Task(task_key="child", run_job_task=jobs.RunJobTask(job_id=refresh, job_parameters={"day": "2"}))],
    ).job_id
    run = w.jobs.run_now(parent).result(timeout=timedelta(seconds=WAIT))
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    children = list(w.jobs.list_runs(job_id=refresh))
    assert len(children) == 1 and children[0].trigger == jobs.TriggerType.RUN_JOB_TASK
    child = w.jobs.get_run(children[0].run_id)
    assert {p.name: p.value for p in child.job_parameters} == {"day": "2"}
    logs = w.jobs.get_run_output(child.tasks[0].run_id).logs
    assert "days\n2\n(1 row)" in logs, logs
    rows = server.admin("POST", "/api/2.0/sql/statements", json={"statement": f"SELECT day, note FROM dev.{schema}.daily ORDER BY day"})
    assert rows["result"]["data_array"] == [["1", "a;b"], ["2", "c"]]

    # A failing statement fails the task, and the run that started it.
    broken = tmp_path / "broken.sql"
    broken.write_text("SELECT * FROM dev.nowhere.nothing")
    w.jobs.reset(
        refresh,
        new_settings=jobs.JobSettings(
            name="refresh",
            parameters=[jobs.JobParameterDefinition(name="day", default="1")],
            tasks=[jobs.Task(task_key="sql", sql_task=jobs.SqlTask(file=jobs.SqlTaskFile(path=str(broken)), warehouse_id="local"))],
        ),
    )
    failed = w.jobs.run_now(parent).result(timeout=timedelta(seconds=WAIT))
    assert failed.state.result_state == jobs.RunResultState.FAILED
    assert "ended FAILED" in failed.state.state_message, failed.state
    child_logs = w.jobs.get_run_output(w.jobs.get_run(list(w.jobs.list_runs(job_id=refresh))[0].run_id).tasks[0].run_id)
    assert "SQL statement failed" in child_logs.logs and "nowhere" in child_logs.logs


def test_environments_install_a_tasks_packages_once(server, unique, tmp_path):
    """A job's `environments` spec is installed for the tasks that name it, once, and reused."""
    w = workspace(server)
    uses = script(tmp_path, "uses.py", "import tomli_w, sys; print(tomli_w.dumps({'ok': True}).strip(), sys.argv[1])\n")
    job_id = w.jobs.create(
        name=unique("env"),
        environments=[jobs.JobEnvironment(environment_key="toml", spec=compute.Environment(client="1", dependencies=["tomli-w==1.2.0"]))],
        tasks=[
            python_task("one", uses, ["one"], environment_key="toml"),
            python_task("two", uses, ["two"], environment_key="toml", depends_on=["one"]),
            python_task("bare", uses, ["bare"]),
        ],
    ).job_id
    run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=300))
    states = {t.task_key: t.state.result_state for t in run.tasks}
    assert states == {"one": jobs.RunResultState.SUCCESS, "two": jobs.RunResultState.SUCCESS, "bare": jobs.RunResultState.FAILED}
    first = w.jobs.get_run_output(task_of(run, "one").run_id).logs
    assert "Successfully installed tomli-w-1.2.0" in first and "ok = true one" in first
    second = w.jobs.get_run_output(task_of(run, "two").run_id).logs
    assert "Successfully installed" not in second and "ok = true two" in second, "built once, reused"
    assert "No module named 'tomli_w'" in w.jobs.get_run_output(task_of(run, "bare").run_id).error
    with pytest.raises(InvalidParameterValue, match="environment 'missing'"):
        w.jobs.create(name=unique("env"), tasks=[python_task("x", uses, environment_key="missing")])


def test_a_for_each_task_runs_its_nested_task_per_input(server, unique, tmp_path):
    """A for_each task takes its inputs from an upstream task's value, runs its nested task on
    each, `concurrency` at a time, retries a failed iteration, and shows its iterations."""
    w = workspace(server)
    marks = tmp_path / "marks"
    marks.mkdir()
    lister = script(
        tmp_path,
        "list.py",
        """
        from tarn_dbutils import dbutils
        dbutils.jobs.taskValues.set("regions", ["eu", "us", "ap", "sa"])
        """,
    )
    per_region = script(
        tmp_path,
        "region.py",
        f"""
        import os, sys, time
        region = sys.argv[1]
        mark = os.path.join({str(marks)!r}, region)
        # "us" fails its first try.
        if region == "us" and not os.path.exists(mark):
            open(mark, "w").write("tried")
            raise SystemExit("us is flaky")
        open(mark, "w").write("done")
        print("trained", region, "attempt", os.environ["TARN_TASK_RUN_ID"])
        """,
    )
    job_id = w.jobs.create(
        name=unique("for-each"),
        tasks=[
            python_task("list", lister),
            jobs.Task(
                task_key="per_region",
                depends_on=[jobs.TaskDependency(task_key="list")],
                for_each_task=jobs.ForEachTask(
                    inputs="{{tasks.list.values.regions}}",
                    concurrency=2,
                    task=python_task("train_region", per_region, ["{{input}}"], max_retries=1),
                ),
            ),
            python_task("report", lister, depends_on=["per_region"]),
        ],
    ).job_id
    run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
    assert run.state.result_state == jobs.RunResultState.SUCCESS, [(t.task_key, t.state) for t in run.tasks]
    assert [t.task_key for t in run.tasks] == ["list", "per_region", "report"], "iterations are not tasks"
    for_each = task_of(run, "per_region")
    stats = for_each.for_each_task.stats.task_run_stats
    assert (stats.total_iterations, stats.succeeded_iterations, stats.failed_iterations) == (4, 4, 0)
    detail = w.jobs.get_run(for_each.run_id)
    assert len(detail.iterations) == 4
    logs = {}
    for iteration in detail.iterations:
        assert iteration.state.result_state == jobs.RunResultState.SUCCESS
        logs[iteration.run_id] = w.jobs.get_run_output(iteration.run_id).logs
    assert sorted(line.split()[1] for line in logs.values()) == ["ap", "eu", "sa", "us"]
    us = next(i for i in detail.iterations if "trained us" in logs[i.run_id])
    assert us.attempt_number == 1, "retried once"
    assert sorted(os.listdir(marks)) == ["ap", "eu", "sa", "us"]

    # Inputs that are not an array fail the task, with a clear message.
    bad = w.jobs.create(
        name=unique("for-each-bad"),
        tasks=[
            jobs.Task(
                task_key="each",
                for_each_task=jobs.ForEachTask(inputs="not a list", task=python_task("x", per_region, ["{{input}}"])),
            )
        ],
    ).job_id
    run = w.jobs.run_now(bad).result(timeout=timedelta(seconds=WAIT))
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "must be a JSON array" in task_of(run, "each").state.state_message


def build_wheel(folder, name, version, files, entry_points):
    """A pure-Python wheel made by hand (a zip with its metadata and RECORD), as `pip wheel`
    would make it."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = dict(files)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: tarn-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = entry_points
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return str(wheel)


def test_a_wheel_task_runs_its_entry_point_with_job_parameters_pushed_down(server, unique, tmp_path):
    """A python_wheel_task runs the entry point of the wheel its libraries install; job
    parameters reach a wheel taking keyword arguments over its own of the same name."""
    w = workspace(server)
    package = "tarnpipe_" + unique("w").split("-")[1]
    wheel = build_wheel(
        tmp_path,
        package,
        "0.1",
        {f"{package}/__init__.py": "import sys\n\ndef main():\n    print('wheel args', sys.argv[1:])\n"},
        f"[console_scripts]\n{package}-run = {package}:main\n",
    )
    job_id = w.jobs.create(
        name=unique("wheel"),
        parameters=[jobs.JobParameterDefinition(name="day", default="sunday")],
        tasks=[
            jobs.Task(
                task_key="named",
                python_wheel_task=jobs.PythonWheelTask(
                    package_name=package,
                    entry_point=f"{package}-run",
                    named_parameters={"day": "from-task", "model": "rf-{{job.id}}"},
                ),
                libraries=[compute.Library(whl=wheel)],
            ),
            jobs.Task(
                task_key="positional",
                python_wheel_task=jobs.PythonWheelTask(package_name=package, entry_point="main", parameters=["a", "{{job.parameters.day}}"]),
                libraries=[compute.Library(whl=wheel)],
            ),
        ],
    ).job_id
    run = w.jobs.run_now(job_id, job_parameters={"day": "monday"}).result(timeout=timedelta(seconds=300))
    assert run.state.result_state == jobs.RunResultState.SUCCESS, [t.state for t in run.tasks]
    named = w.jobs.get_run_output(task_of(run, "named").run_id).logs
    assert f"wheel args ['--day=monday', '--model=rf-{job_id}']" in named
    positional = w.jobs.get_run_output(task_of(run, "positional").run_id).logs
    assert "wheel args ['a', 'monday']" in positional


def test_run_notifications_reach_webhooks_signed(server, unique, tmp_path):
    """A run's start and end are events: webhooks subscribed to job_run.* get them, and those a
    job's webhook_notifications name get the ones they are named for, signed like any other."""
    import json

    from test_webhooks import Receiver, admin_api, mlflow_signature

    receiver = Receiver()
    hooks = []
    try:
        subscribed = admin_api(
            server, "POST", "mlflow/webhooks", name=unique("all-runs"), url=f"{receiver.url}/all", secret="s3cret",
            events=[{"entity": "job_run", "action": "failed"}],
        ).json()["webhook"]
        hooks.append(subscribed["webhook_id"])
        named = admin_api(
            server, "POST", "mlflow/webhooks", name=unique("named"), url=f"{receiver.url}/named", secret="other",
            events=[{"entity": "registered_model", "action": "created"}],
        ).json()["webhook"]
        hooks.append(named["webhook_id"])
        w = workspace(server)
        failing = script(tmp_path, "failing.py", "raise SystemExit('broken')\n")
        job_id = w.jobs.create(
            name=unique("notified"),
            webhook_notifications=jobs.WebhookNotifications(
                on_start=[jobs.Webhook(id=named["webhook_id"])], on_failure=[jobs.Webhook(id=named["webhook_id"])]
            ),
            email_notifications=jobs.JobEmailNotifications(on_failure=["oncall@example.com"]),
            tasks=[python_task("a", failing)],
        ).job_id
        run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
        assert run.state.result_state == jobs.RunResultState.FAILED
        seen = receiver.wait_for(lambda got: len(got) >= 3)
        by_path = {}
        for request in seen:
            by_path.setdefault(request["path"], []).append(json.loads(request["body"]))
        # Deliveries go out concurrently: each once, in any order.
        assert sorted((b["entity"], b["action"]) for b in by_path["/named"]) == [("job_run", "failed"), ("job_run", "started")]
        failed = by_path["/all"][0]
        assert (failed["entity"], failed["action"]) == ("job_run", "failed")
        assert failed["data"]["run_id"] == run.run_id and failed["data"]["job_id"] == job_id
        assert failed["data"]["result_state"] == "FAILED" and "broken" in failed["data"]["state_message"]
        request = next(r for r in seen if r["path"] == "/all")
        headers = request["headers"]
        assert headers["x-mlflow-signature"] == mlflow_signature(
            "s3cret", headers["x-mlflow-delivery-id"], headers["x-mlflow-timestamp"], request["body"]
        )
    finally:
        # The stock client cannot list webhooks on tarn's own events: leave none behind.
        for hook in hooks:
            admin_api(server, "DELETE", f"mlflow/webhooks/{hook}")
        receiver.close()
