-- Version search checks a tag of every matching version. With the tags in their primary key's
-- B-tree (WITHOUT ROWID) the value is read where the key is found, not by a second lookup in
-- the table; the index on versions covers the search's own sort keys.
CREATE TABLE model_version_tags_clustered (
    model_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (model_id, version, key),
    FOREIGN KEY (model_id, version) REFERENCES model_versions(model_id, version) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO model_version_tags_clustered (model_id, version, key, value)
    SELECT model_id, version, key, value FROM model_version_tags;
DROP TABLE model_version_tags;
ALTER TABLE model_version_tags_clustered RENAME TO model_version_tags;
CREATE INDEX model_versions_by_model_updated
    ON model_versions(model_id, last_updated_timestamp, version);
