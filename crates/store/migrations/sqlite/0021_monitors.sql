-- Table monitors (Lakehouse Monitoring's shape): one per monitored table, its settings as sent
-- (JSON), and the refreshes that compute its metrics tables. Keep in step with the other
-- dialect's 0019_monitors.sql.
CREATE TABLE table_monitors (
    table_id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    workspace TEXT NOT NULL REFERENCES workspaces (name),
    settings TEXT NOT NULL,
    status TEXT NOT NULL,
    monitor_version BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    latest_failure TEXT
);
CREATE TABLE monitor_refreshes (
    refresh_id INTEGER PRIMARY KEY AUTOINCREMENT,
    table_id TEXT NOT NULL REFERENCES table_monitors (table_id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    start_time_ms BIGINT NOT NULL,
    end_time_ms BIGINT,
    message TEXT,
    -- What a successful refresh read: the next one recomputes only what changed since.
    source_version BIGINT,
    baseline_version BIGINT,
    monitor_version BIGINT
);
CREATE INDEX monitor_refreshes_by_table ON monitor_refreshes (table_id, refresh_id);
