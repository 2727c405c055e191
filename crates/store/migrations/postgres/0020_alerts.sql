-- Alerts (Databricks SQL alerts v2's shape): a query over tables (monitors' metrics tables,
-- typically) judged against a threshold, its settings as sent (JSON), its state, and every
-- evaluation as its history. Keep in step with the other dialect's 0022_alerts.sql.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces (name),
    display_name TEXT NOT NULL,
    settings TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    last_evaluated_at BIGINT,
    state_changed_at BIGINT,
    last_notified_at BIGINT
);
CREATE INDEX alerts_by_workspace ON alerts (workspace, display_name);
CREATE TABLE alert_evaluations (
    evaluation_id BIGSERIAL PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    evaluated_at BIGINT NOT NULL,
    reason TEXT NOT NULL,
    state TEXT NOT NULL,
    value TEXT,
    threshold TEXT,
    message TEXT,
    notified BOOLEAN NOT NULL
);
CREATE INDEX alert_evaluations_by_alert ON alert_evaluations (alert_id, evaluation_id);
