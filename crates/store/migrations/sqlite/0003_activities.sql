-- A model version's activity history (Databricks' shapes): applied, requested, approved,
-- rejected, cancelled and system transitions, and comments. A transition request is its
-- REQUESTED_TRANSITION row while request_status is 'open'. Keep in step with
-- ../postgres/0003_activities.sql.
CREATE TABLE model_version_activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    activity_type TEXT NOT NULL,
    from_stage TEXT,
    to_stage TEXT,
    user_id TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    system_comment TEXT NOT NULL DEFAULT '',
    request_status TEXT,
    creation_timestamp INTEGER NOT NULL,
    last_updated_timestamp INTEGER NOT NULL,
    FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version) ON DELETE CASCADE
);
CREATE INDEX model_version_activities_by_version ON model_version_activities(model_id, version, id);
