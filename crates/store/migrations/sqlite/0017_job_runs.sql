-- Runs of jobs and their task runs, in one table because they share one id space (Databricks'
-- runs/get-output takes a task run's id where runs/get takes a run's): a task run names its run
-- in job_run_id. Keep in step with the other dialect's 0015_job_runs.sql.
CREATE TABLE job_runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    job_run_id BIGINT REFERENCES job_runs(run_id) ON DELETE CASCADE,
    job_id BIGINT,
    task_key TEXT,
    attempt_number BIGINT NOT NULL DEFAULT 0,
    run_name TEXT NOT NULL DEFAULT '',
    run_type TEXT NOT NULL DEFAULT '',
    trigger_type TEXT NOT NULL DEFAULT '',
    creator TEXT NOT NULL DEFAULT '',
    run_as TEXT NOT NULL DEFAULT '',
    settings TEXT,
    job_parameters TEXT,
    overriding_parameters TEXT,
    idempotency_token TEXT,
    life_cycle TEXT NOT NULL,
    result_state TEXT,
    state_message TEXT NOT NULL DEFAULT '',
    user_cancelled_or_timedout BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_time BIGINT NOT NULL,
    start_time BIGINT NOT NULL DEFAULT 0,
    end_time BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    process_group BIGINT,
    outcome TEXT,
    task_values TEXT,
    output TEXT
);
CREATE INDEX job_runs_of_job ON job_runs (workspace, job_id, run_id) WHERE job_run_id IS NULL;
CREATE INDEX job_runs_tasks ON job_runs (job_run_id);
CREATE INDEX job_runs_by_state ON job_runs (life_cycle, run_id);
-- The runner reads the runs not yet ended on every pass: they stay few while history grows.
CREATE INDEX job_runs_active ON job_runs (run_id)
    WHERE job_run_id IS NULL AND life_cycle NOT IN ('TERMINATED', 'SKIPPED', 'INTERNAL_ERROR');
CREATE INDEX job_runs_by_worker ON job_runs (worker) WHERE worker IS NOT NULL;
CREATE UNIQUE INDEX job_runs_idempotency ON job_runs (workspace, idempotency_token)
    WHERE idempotency_token IS NOT NULL;

-- Work only one process may do at a time (the job runner): held until `until`, renewed by its
-- holder, taken over by another once it lapses.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until BIGINT NOT NULL
);
