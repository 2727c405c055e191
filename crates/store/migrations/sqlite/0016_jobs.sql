-- Jobs (Databricks Jobs API 2.2): the settings as sent, in JSON, with the name copied out for
-- the list's name filter. Ids are never reused (AUTOINCREMENT), as Databricks never reuses a
-- job id. Keep in step with the other dialect's 0014_jobs.sql.
CREATE TABLE jobs (
    job_id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    name TEXT NOT NULL,
    creator TEXT NOT NULL,
    run_as TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    last_updated_time BIGINT NOT NULL
);
CREATE INDEX jobs_by_name ON jobs (workspace, lower(name));
