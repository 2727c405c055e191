-- Lineage: every write through tarn (SQL, the table API, ingestion) with who ran it, and what
-- it read. Nodes are named, not keyed by id, so the graph outlives a dropped table, as Unity
-- Catalog's does. Keep in step with the other dialect's 0008_lineage.sql.
CREATE TABLE lineage_writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target_kind TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_version BIGINT,
    operation TEXT NOT NULL,
    actor TEXT NOT NULL,
    statement TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX lineage_writes_by_target ON lineage_writes (target_kind, target_name, id);

-- One row per source a write read (the newest version where it read one twice).
CREATE TABLE lineage_reads (
    write_id BIGINT NOT NULL REFERENCES lineage_writes(id) ON DELETE CASCADE,
    source_kind TEXT NOT NULL,
    source_name TEXT NOT NULL,
    source_version BIGINT,
    PRIMARY KEY (write_id, source_kind, source_name)
);
CREATE INDEX lineage_reads_by_source ON lineage_reads (source_kind, source_name, write_id);
