"""`tarn worker`: tasks run on a worker process that shares only the metadata store with the
server (its own data directory standing for another machine), their clients talk to the server,
their logs reach the server's API and CLI through the store, and a worker killed mid-task is
noticed within its lease and the task retried on another worker."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk.service import jobs

from conftest import start_tarn
from test_job_runs import WAIT, alive, python_task, script, task_of, tarn_cli, wait_for, workspace

LEASE_SECONDS = 2


@pytest.fixture
def cluster(tmp_path):
    """A server that runs no tasks itself (`--jobs-slots 0`), and a way to start workers on
    its store."""
    database_url = os.environ.get("TARN_TEST_DATABASE_URL")
    if database_url:
        database_url = database_url.rsplit("/", 1)[0] + "/tarn_compat_workers"
    data_dir = str(tmp_path / "server")
    server, stop = start_tarn(extra_args=["--jobs-slots", "0"], data_dir=data_dir, database_url=database_url)
    store_url = database_url or f"sqlite://{data_dir}/tarn.db"
    workers = []

    def start_worker(name):
        folder = tmp_path / name
        folder.mkdir()
        log = open(folder / "worker.log", "w")
        binary = os.environ.get("TARN_BIN", "target/debug/tarn")
        process = subprocess.Popen(
            [
                binary, "worker", "--data-dir", str(folder), "--database-url", store_url,
                "--server-url", server.base, "--name", name, "--jobs-python", sys.executable,
                "--jobs-lease-seconds", str(LEASE_SECONDS),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, TARN_LOG="info"),
        )
        workers.append(process)
        return process, folder

    server.data_dir = data_dir
    server.database_url = database_url
    try:
        yield server, start_worker
    finally:
        for process in workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        stop()


def test_a_worker_runs_tasks_as_the_run_and_its_logs_reach_the_server(cluster, unique, tmp_path):
    server, start_worker = cluster
    _, worker_folder = start_worker("worker-a")
    chatty = script(
        tmp_path,
        "chatty.py",
        """
        import os, sys, mlflow
        mlflow.set_experiment(sys.argv[1])
        with mlflow.start_run():
            mlflow.log_param("where", "worker")
        line = "x" * 99 + "\\n"
        for _ in range(60_000):  # 6 MB: more than get-output returns
            sys.stdout.write(line)
        print("values at", os.environ["TARN_TASK_VALUES"])
        print("the end", flush=True)
        """,
    )
    w = workspace(server)
    experiment = unique("worker")
    job_id = w.jobs.create(name=unique("on-a-worker"), tasks=[python_task("chatty", chatty, [experiment])]).job_id
    run = w.jobs.run_now(job_id).result(timeout=timedelta(seconds=WAIT))
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    task_run_id = task_of(run, "chatty").run_id

    # It ran in the worker's folder, not the server's, as the job's owner.
    assert not (Path(server.data_dir) / "jobs" / str(run.run_id)).exists()
    assert (worker_folder / "jobs" / str(run.run_id) / str(task_run_id) / "output.log").exists()
    experiment_id = w.experiments.get_by_name(experiment).experiment.experiment_id
    logged = list(w.experiments.search_runs(experiment_ids=[experiment_id]))
    assert [[(p.key, p.value) for p in r.data.params] for r in logged] == [[("where", "worker")]]
    assert logged[0].info.user_id == "admin", "as the job's owner"

    # The server's API and CLI read the log the worker shipped.
    output = w.jobs.get_run_output(task_run_id)
    assert output.logs.endswith("the end\n")
    assert output.logs_truncated is True
    assert len(output.logs.encode()) == 5 * 1024 * 1024
    # The CLI prints what the API returns, its end, and says the beginning is left out.
    printed = tarn_cli(server, "logs", str(task_run_id))
    assert printed == output.logs
    assert f"\nvalues at {worker_folder}/jobs/" in printed
    assert "beginning is left out" in printed.stderr


def start_stuck_run(server, unique, tmp_path, name):
    """Runs a one-task job (one retry) whose first attempt hangs and whose second prints where
    it ran; returns the client, the run id and the hanging process's id once it started."""
    pids = tmp_path / "pid"
    tried = tmp_path / "tried"
    stuck = script(
        tmp_path,
        "stuck.py",
        f"""
        import os, time
        if not os.path.exists({str(tried)!r}):
            open({str(tried)!r}, "w").write("once")
            open({str(pids)!r}, "w").write(str(os.getpid()))
            time.sleep(300)
        print("second try on", os.environ["TARN_TASK_VALUES"])
        """,
    )
    w = workspace(server)
    job_id = w.jobs.create(
        name=unique(name),
        tasks=[python_task("stuck", stuck, max_retries=1, min_retry_interval_millis=0)],
    ).job_id
    run_id = w.jobs.run_now(job_id).run_id
    deadline = time.time() + WAIT
    while not pids.exists() or not pids.read_text():
        assert time.time() < deadline, "the task never started on the worker"
        time.sleep(0.05)
    return w, run_id, int(pids.read_text())


def first_attempt(w, run_id):
    history = w.jobs.get_run(run_id, include_history=True)
    return [t for t in history.tasks if t.task_key == "stuck" and t.attempt_number == 0][0]


def test_a_killed_worker_is_noticed_and_its_task_retried_on_another(cluster, unique, tmp_path):
    server, start_worker = cluster
    first, _ = start_worker("worker-a")
    w, run_id, pid = start_stuck_run(server, unique, tmp_path, "worker-dies")
    # The machine goes away: the worker and the task with it.
    first.kill()
    first.wait()
    os.killpg(pid, signal.SIGKILL)
    _, second_folder = start_worker("worker-b")
    run = wait_for(w, run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert task_of(run, "stuck").attempt_number == 1
    gone = first_attempt(w, run_id)
    assert "stopped answering" in gone.state.state_message
    assert "worker-a" in gone.state.state_message
    assert f"second try on {second_folder}" in w.jobs.get_run_output(task_of(run, "stuck").run_id).logs
    assert not alive(pid)


def test_a_stopped_worker_ends_its_tasks_and_they_are_retried_elsewhere(cluster, unique, tmp_path):
    """SIGTERM: the worker stops its task's process group and records the task failed, so the
    retry starts at once on another worker rather than beside an orphaned process."""
    server, start_worker = cluster
    first, _ = start_worker("worker-a")
    w, run_id, pid = start_stuck_run(server, unique, tmp_path, "worker-stops")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert not alive(pid), "the task's process ended with the worker"
    stopped = first_attempt(w, run_id)
    assert stopped.state.result_state == jobs.RunResultState.FAILED
    assert "stopped while it ran" in stopped.state.state_message
    _, second_folder = start_worker("worker-b")
    run = wait_for(w, run_id, lambda r: r.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert f"second try on {second_folder}" in w.jobs.get_run_output(task_of(run, "stuck").run_id).logs


def test_a_worker_refuses_a_bad_server_url(tmp_path):
    binary = os.environ.get("TARN_BIN", "target/debug/tarn")
    for url in ["file:///etc/passwd", "not a url", "http://host/?x=1"]:
        done = subprocess.run(
            [binary, "worker", "--data-dir", str(tmp_path), "--server-url", url],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, RUST_BACKTRACE="0"),
        )
        assert done.returncode != 0
        assert "--server-url" in done.stderr, done.stderr
        assert not (tmp_path / "tarn.db").exists(), "nothing is opened"
