-- The model registry and the event log (audit trail and outbox). Keep in step with
-- ../postgres/0002_registry.sql.
CREATE TABLE registered_models (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    owner_id INTEGER,
    user_id TEXT,
    creation_timestamp INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    -- Version numbers are never reused, even after a version is deleted.
    next_version INTEGER NOT NULL DEFAULT 1,
    UNIQUE (workspace, name)
);
CREATE INDEX registered_models_by_updated ON registered_models(workspace, last_updated_timestamp);

CREATE TABLE registered_model_tags (
    model_id TEXT NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, key)
);

CREATE TABLE model_versions (
    model_id TEXT NOT NULL REFERENCES registered_models(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    creation_timestamp INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    user_id TEXT,
    current_stage TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    run_id TEXT,
    run_link TEXT,
    logged_model_id TEXT,
    status TEXT NOT NULL,
    status_message TEXT,
    storage_location TEXT NOT NULL,
    checksum TEXT NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE INDEX model_versions_by_stage ON model_versions(model_id, current_stage, version);
CREATE INDEX model_versions_by_run ON model_versions(run_id);

CREATE TABLE model_version_tags (
    model_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, version, key),
    FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version) ON DELETE CASCADE
);

CREATE TABLE registered_model_aliases (
    model_id TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (model_id, alias),
    FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version) ON DELETE CASCADE
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    actor TEXT NOT NULL,
    entity TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_by_workspace ON events(workspace, id);
CREATE INDEX events_by_object ON events(object, id);
