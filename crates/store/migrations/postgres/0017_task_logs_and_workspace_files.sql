-- Task logs shipped by executors on other machines (`tarn worker`), in pieces as they are
-- written, so any server can read a task's output while it runs and after. Keep in step with
-- the other dialect's 0019_task_logs_and_workspace_files.sql.
CREATE TABLE job_task_logs (
    task_run_id BIGINT NOT NULL,
    start_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (task_run_id, start_offset)
);
-- Workspace files (workspace/import, what tasks' python_file and notebook_path name): every
-- server and worker reads the same tree.
CREATE TABLE workspace_files (
    object_id BIGSERIAL PRIMARY KEY,
    workspace TEXT NOT NULL,
    path TEXT NOT NULL,
    parent TEXT NOT NULL,
    object_type TEXT NOT NULL,
    language TEXT,
    content BYTEA,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    UNIQUE (workspace, path)
);
CREATE INDEX workspace_files_by_parent ON workspace_files (workspace, parent);
