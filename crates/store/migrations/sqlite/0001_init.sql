-- tarn metadata store, SQLite dialect. Keep in step with ../postgres/0001_init.sql.
CREATE TABLE workspaces (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    next_experiment_id INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE principals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    active BOOLEAN NOT NULL DEFAULT TRUE,
    password_hash TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES principals(id),
    member_id INTEGER NOT NULL REFERENCES principals(id),
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_by_member ON group_members(member_id);

CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    principal_id INTEGER NOT NULL REFERENCES principals(id),
    token_hash TEXT NOT NULL UNIQUE,
    comment TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE workspace_members (
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    principal_id INTEGER NOT NULL REFERENCES principals(id),
    PRIMARY KEY (workspace, principal_id)
);

CREATE TABLE acl (
    workspace TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    principal_id INTEGER NOT NULL REFERENCES principals(id),
    level TEXT NOT NULL,
    PRIMARY KEY (workspace, object_type, object_id, principal_id)
);

CREATE TABLE experiments (
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    experiment_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    last_update_time INTEGER NOT NULL,
    owner_id INTEGER,
    PRIMARY KEY (workspace, experiment_id),
    UNIQUE (workspace, name)
);

CREATE TABLE experiment_tags (
    workspace TEXT NOT NULL,
    experiment_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (workspace, experiment_id, key),
    FOREIGN KEY (workspace, experiment_id) REFERENCES experiments(workspace, experiment_id)
);

CREATE TABLE runs (
    run_uuid TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    experiment_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    lifecycle_stage TEXT NOT NULL,
    artifact_uri TEXT NOT NULL,
    deleted_time INTEGER,
    FOREIGN KEY (workspace, experiment_id) REFERENCES experiments(workspace, experiment_id)
);
CREATE INDEX runs_by_experiment ON runs(workspace, experiment_id, start_time);

CREATE TABLE metrics (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value REAL NOT NULL,
    is_nan BOOLEAN NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    model_id TEXT,
    dataset_name TEXT,
    dataset_digest TEXT
);
-- Step-major: a batch logs many keys at one step, so its rows land on a few adjacent pages
-- (key-major would touch one page per key); a key's history is a scan of its run.
CREATE UNIQUE INDEX metrics_point ON metrics(run_uuid, step, key, timestamp, value, is_nan);
CREATE INDEX metrics_by_model ON metrics(model_id) WHERE model_id IS NOT NULL;

CREATE TABLE latest_metrics (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value REAL NOT NULL,
    is_nan BOOLEAN NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, key)
);

CREATE TABLE params (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);

CREATE TABLE tags (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_uuid, key)
);

CREATE TABLE run_inputs (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source TEXT NOT NULL,
    schema TEXT,
    profile TEXT,
    context TEXT,
    tags_json TEXT NOT NULL,
    PRIMARY KEY (run_uuid, name, digest)
);

CREATE TABLE run_model_inputs (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    model_id TEXT NOT NULL,
    PRIMARY KEY (run_uuid, model_id)
);

CREATE TABLE run_model_outputs (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    model_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, model_id)
);

CREATE TABLE logged_models (
    model_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    experiment_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    creation_timestamp_ms INTEGER NOT NULL,
    last_updated_timestamp_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    lifecycle_stage TEXT NOT NULL,
    model_type TEXT,
    source_run_id TEXT,
    status_message TEXT,
    creator_id TEXT NOT NULL,
    FOREIGN KEY (workspace, experiment_id) REFERENCES experiments(workspace, experiment_id)
);
CREATE INDEX logged_models_by_experiment ON logged_models(workspace, experiment_id);

CREATE TABLE logged_model_tags (
    model_id TEXT NOT NULL REFERENCES logged_models(model_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE logged_model_params (
    model_id TEXT NOT NULL REFERENCES logged_models(model_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);
