"""`tarn jobs` as a client of the Jobs API: what it lists and shows is what the API holds, a run
started from it is the server's (followed, cancelled, its log read live), a member is refused
exactly what the API refuses it with the server's reason, and a refused or bad command changes
nothing."""

import json
import os
import queue
import subprocess
import threading

from databricks.sdk.service import jobs

from conftest import tarn_bin
from test_cli import bare_env, refused
from test_job_runs import WAIT, python_task, script, task_of, wait_for, workspace


def job_lines(printed):
    """The rows of `tarn jobs list` or `tarn jobs runs`, split into fields, by their id."""
    return {int(line.split()[0]): line.split() for line in printed.splitlines()[1:]}


def run_ids(server, job_id):
    listed = server.admin("GET", "/api/2.2/jobs/runs/list", params={"job_id": job_id})
    return [run["run_id"] for run in listed.get("runs", [])]


def hello_job(server, unique, tmp_path):
    hello = script(tmp_path, "hello.py", "print('hello from the task')\n")
    name = unique("hello")
    return workspace(server).jobs.create(name=name, tasks=[python_task("say", hello)]).job_id, name


def test_list_and_get_show_what_the_api_holds(server, unique):
    w = workspace(server)
    name = unique("listed")
    job_id = w.jobs.create(
        name=name,
        tasks=[python_task("a", "/jobs/a.py"), python_task("b", "/jobs/b.py", depends_on=["a"])],
        schedule=jobs.CronSchedule(quartz_cron_expression="0 0 6 * * ?", timezone_id="UTC"),
    ).job_id
    printed = server.cli("jobs", "list", "--name", name).stdout
    assert printed.splitlines()[0].split() == ["JOB", "ID", "NAME", "TASKS", "SCHEDULE", "RUN", "AS", "CREATED"]
    rows = job_lines(printed)
    assert list(rows) == [job_id]
    assert rows[job_id][:3] == [str(job_id), name, "2"]
    assert "0 0 6 * * ?" in printed and "(paused)" not in printed and "admin" in rows[job_id]
    shown = json.loads(server.cli("jobs", "get", str(job_id)).stdout)
    assert shown == server.admin("GET", "/api/2.2/jobs/get", params={"job_id": job_id})["settings"]


def test_the_global_workspace_flag_picks_where_jobs_are_made(server, unique, tmp_path):
    name = unique("staged")
    (tmp_path / "job.json").write_text(json.dumps({"name": name, "tasks": [{"task_key": "a", "spark_python_task": {"python_file": "/a.py"}}]}))
    created = server.cli("jobs", "create", str(tmp_path / "job.json"), workspace="staging").stdout
    job_id = int(created.split()[2])
    assert created.strip() == f"created job {job_id} ({name})"
    staged = server.admin("GET", "/api/2.2/jobs/get", workspace="staging", params={"job_id": job_id})
    assert staged["settings"]["name"] == name
    assert job_id in job_lines(server.cli("jobs", "list", "--name", name, workspace="staging").stdout)
    assert job_id not in job_lines(server.cli("jobs", "list", "--name", name).stdout)
    refused(server.cli("jobs", "get", str(job_id), check=False), "RESOURCE_DOES_NOT_EXIST")


def test_a_member_is_refused_what_the_api_refuses_and_nothing_changes(server, unique, tmp_path):
    job_id, name = hello_job(server, unique, tmp_path)
    run = workspace(server).jobs.run_now(job_id).result()
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    member = unique("member")
    token = server.create_user(member, "long-password-1")

    # The admin's job is not the member's to see, run, delete; nor its run to read or stop.
    assert job_id not in job_lines(server.cli("jobs", "list", token=token).stdout)
    assert run.run_id not in job_lines(server.cli("jobs", "runs", token=token).stdout)
    for command in (
        ["get", str(job_id)],
        ["run", str(job_id)],
        ["delete", str(job_id)],
        ["logs", str(task_of(run, "say").run_id)],
        ["cancel", str(run.run_id)],
        ["repair", str(run.run_id), "--task", "say"],
    ):
        done = server.cli("jobs", *command, token=token, check=False)
        refused(done, "PERMISSION_DENIED")
        assert done.stdout == "", "nothing done is claimed"
    assert server.admin("GET", "/api/2.2/jobs/get", params={"job_id": job_id})["settings"]["name"] == name
    assert run_ids(server, job_id) == [run.run_id], "no run started, none repaired"
    after = workspace(server).jobs.get_run(run.run_id)
    assert after.state.result_state == jobs.RunResultState.SUCCESS and len(after.tasks) == 1

    # Its own job it makes, runs and reads, as itself.
    hello = script(tmp_path, "mine.py", "print('mine')\n")
    (tmp_path / "mine.json").write_text(json.dumps({"name": unique("mine"), "tasks": [{"task_key": "mine", "spark_python_task": {"python_file": hello}}]}))
    mine = int(server.cli("jobs", "create", str(tmp_path / "mine.json"), token=token).stdout.split()[2])
    assert server.admin("GET", "/api/2.2/jobs/get", params={"job_id": mine})["creator_user_name"] == member
    ran = server.cli("jobs", "run", str(mine), token=token).stdout
    own_run = int(ran.split()[1])
    assert f"run {own_run} SUCCESS" in ran
    assert server.cli("jobs", "logs", str(own_run), token=token).stdout == "mine\n"
    assert own_run in job_lines(server.cli("jobs", "runs", token=token).stdout)


def test_bad_commands_are_refused_and_change_nothing(server, unique, tmp_path):
    job_id, _ = hello_job(server, unique, tmp_path)
    jobs_before = server.admin("GET", "/api/2.2/jobs/list", params={"limit": 100})
    (tmp_path / "broken.json").write_text("{not json")
    refused(server.cli("jobs", "create", str(tmp_path / "broken.json"), check=False), "is not JSON")
    (tmp_path / "list.json").write_text("[]")
    refused(server.cli("jobs", "create", str(tmp_path / "list.json"), check=False), "JSON object")
    (tmp_path / "no-task-type.json").write_text(json.dumps({"name": unique("bad"), "tasks": [{"task_key": "a"}]}))
    refused(server.cli("jobs", "create", str(tmp_path / "no-task-type.json"), check=False), "INVALID_PARAMETER_VALUE", "needs one task type")
    assert server.admin("GET", "/api/2.2/jobs/list", params={"limit": 100}) == jobs_before

    refused(server.cli("jobs", "run", str(job_id), "--param", "day", check=False), "NAME=VALUE")
    refused(server.cli("jobs", "run", str(job_id), "--only", "nosuch", check=False), "INVALID_PARAMETER_VALUE", "'nosuch' is not a task")
    assert run_ids(server, job_id) == []
    refused(server.cli("jobs", "cancel", "987654321", check=False), "RESOURCE_DOES_NOT_EXIST")


def test_a_run_started_without_waiting_is_followed_in_its_log_and_cancelled(server, unique, tmp_path):
    go_on = tmp_path / "go-on"
    sleeper = script(
        tmp_path,
        "sleeper.py",
        f"""
        import os, time
        print("working", flush=True)
        while not os.path.exists({str(go_on)!r}):
            time.sleep(0.05)
        print("still working", flush=True)
        time.sleep(300)
        """,
    )
    name = unique("long")
    job_id = workspace(server).jobs.create(name=name, tasks=[python_task("sleep", sleeper)]).job_id
    started = server.cli("jobs", "run", str(job_id), "--no-wait").stdout
    run_id = int(started.split()[1])
    assert started == f"run {run_id} of job {job_id} ({name})\n"
    row = job_lines(server.cli("jobs", "runs", "--job-id", str(job_id), "--active").stdout)[run_id]
    assert row[:3] == [str(run_id), str(job_id), name] and "ONE_TIME" in row

    # The log, followed by the run's own id (it has one task), as the task writes it.
    follower = subprocess.Popen(
        [tarn_bin(), "jobs", "logs", str(run_id), "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bare_env(TARN_HOST=server.base, TARN_TOKEN=server.admin_token, TARN_CONFIG_FILE=os.devnull),
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in follower.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=WAIT) == "working\n"
        go_on.write_text("yes")
        assert lines.get(timeout=WAIT) == "still working\n"
        assert server.cli("jobs", "cancel", str(run_id)).stdout == f"asked run {run_id} to stop\n"
        assert follower.wait(timeout=WAIT) == 0, follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
    run = wait_for(workspace(server), run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert run.state.result_state == jobs.RunResultState.CANCELED
    row = job_lines(server.cli("jobs", "runs", "--job-id", str(job_id)).stdout)[run_id]
    assert row[3:5] == ["TERMINATED", "CANCELED"]
    assert run_id not in job_lines(server.cli("jobs", "runs", "--job-id", str(job_id), "--active").stdout)


def test_runs_lists_what_the_api_lists_newest_first_up_to_the_limit(server, unique, tmp_path):
    job_id, _ = hello_job(server, unique, tmp_path)
    w = workspace(server)
    started = [w.jobs.run_now(job_id).result().run_id for _ in range(3)]
    listed = server.cli("jobs", "runs", "--job-id", str(job_id), "--limit", "2").stdout
    assert list(job_lines(listed)) == started[::-1][:2], "newest first, no more than asked"
    api = server.admin("GET", "/api/2.2/jobs/runs/list", params={"job_id": job_id})["runs"]
    rows = job_lines(server.cli("jobs", "runs", "--job-id", str(job_id)).stdout)
    assert list(rows) == [run["run_id"] for run in api]
    for run in api:
        assert rows[run["run_id"]][3:6] == [run["state"]["life_cycle_state"], run["state"]["result_state"], run["trigger"]]
