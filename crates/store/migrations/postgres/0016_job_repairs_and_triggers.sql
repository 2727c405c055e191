-- A run's repair history (Jobs API runs/repair): the original attempt and each repair, as
-- JSON; and what each job's schedule and triggers have seen since they last fired. Keep in
-- step with the other dialect's 0018_job_repairs_and_triggers.sql.
ALTER TABLE job_runs ADD COLUMN repair_history TEXT;
CREATE TABLE job_trigger_states (
    job_id BIGINT PRIMARY KEY,
    state TEXT NOT NULL
);
