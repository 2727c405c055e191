-- Webhooks and their deliveries. Deliveries are made from the events table by the fan-out,
-- which advances its cursor in the same transaction: at-least-once, surviving restarts.
-- Keep in step with ../postgres/0004_webhooks.sql.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    flavor TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL,
    secret TEXT,
    authorization_header TEXT,
    enable_ssl_verification INTEGER NOT NULL DEFAULT 1,
    model_name TEXT,
    events TEXT NOT NULL,
    status TEXT NOT NULL,
    -- Events up to this id happened before the webhook existed.
    start_event_id INTEGER NOT NULL,
    creation_timestamp INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL
);
CREATE INDEX webhooks_by_workspace ON webhooks(workspace, creation_timestamp);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL,
    event_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    last_latency_ms INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, id);

CREATE TABLE outbox_cursors (
    consumer TEXT PRIMARY KEY,
    last_event_id INTEGER NOT NULL
);
