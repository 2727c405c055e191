-- Files ingested into a table, so that ingesting a folder again takes only new files. Keep in
-- step with the other dialect's 0007_ingested_files.sql.
CREATE TABLE ingested_files (
    table_id TEXT NOT NULL REFERENCES catalog_tables(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    size BIGINT NOT NULL,
    rows_written BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    table_version BIGINT NOT NULL,
    ingested_at BIGINT NOT NULL,
    ingested_by TEXT NOT NULL,
    PRIMARY KEY (table_id, source)
);
