-- Feature tables: a catalog table's keys and provenance, gone with the table. Training sets:
-- each built set's spec with every table pinned to the version it read, so it can be built
-- again. Keep in step with the other dialect's 0010_features.sql.
CREATE TABLE feature_tables (
    table_id TEXT PRIMARY KEY REFERENCES catalog_tables(id) ON DELETE CASCADE,
    primary_keys TEXT NOT NULL,
    timestamp_key TEXT,
    description TEXT NOT NULL DEFAULT '',
    source_tables TEXT NOT NULL DEFAULT '[]',
    pipeline TEXT NOT NULL DEFAULT '{}',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE training_sets (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    spec TEXT NOT NULL,
    tables_read TEXT NOT NULL,
    num_rows BIGINT NOT NULL,
    output_table TEXT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX training_sets_by_workspace ON training_sets (workspace, created_at);
