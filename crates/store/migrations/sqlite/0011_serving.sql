-- Serving endpoints: the config as given (normalized) in JSON, bumped config_version on each
-- update so serving replicas reload. Keep in step with the other dialect's 0011_serving.sql.
CREATE TABLE serving_endpoints (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    name TEXT NOT NULL,
    creator TEXT NOT NULL,
    config TEXT NOT NULL,
    config_version BIGINT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    creation_timestamp BIGINT NOT NULL,
    last_updated_timestamp BIGINT NOT NULL,
    UNIQUE (workspace, name)
);
