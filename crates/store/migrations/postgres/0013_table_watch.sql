-- The last version of each table's Delta log that the commit watcher has accounted for: the
-- commits after it that tarn did not write itself become `table.committed` events. NULL until
-- the first scan, which takes the table's version then without announcing the history before it.
ALTER TABLE catalog_tables ADD COLUMN watched_version BIGINT;
