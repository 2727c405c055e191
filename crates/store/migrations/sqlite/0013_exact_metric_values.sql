-- Metric values keep the sign of zero. A column declared REAL stores a double that is a whole
-- number as an integer, so -0.0 came back as 0.0; a column without a declared type stores a
-- double as it is and compares it as a number all the same. (PostgreSQL's DOUBLE PRECISION
-- keeps -0.0.) The tables are rebuilt with the same rows, indexes and trigger.
CREATE TABLE metrics_exact (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value NOT NULL,
    is_nan BOOLEAN NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    model_id TEXT,
    dataset_name TEXT,
    dataset_digest TEXT
);
INSERT INTO metrics_exact (run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest)
    SELECT run_uuid, key, value, is_nan, timestamp, step, model_id, dataset_name, dataset_digest FROM metrics;
DROP TABLE metrics;
ALTER TABLE metrics_exact RENAME TO metrics;
CREATE UNIQUE INDEX metrics_point ON metrics(run_uuid, step, key, timestamp, value, is_nan);
CREATE INDEX metrics_by_model ON metrics(model_id) WHERE model_id IS NOT NULL;

CREATE TABLE latest_metrics_exact (
    run_uuid TEXT NOT NULL REFERENCES runs(run_uuid),
    key TEXT NOT NULL,
    value NOT NULL,
    is_nan BOOLEAN NOT NULL,
    timestamp INTEGER NOT NULL,
    step INTEGER NOT NULL,
    PRIMARY KEY (run_uuid, key)
);
INSERT INTO latest_metrics_exact (run_uuid, key, value, is_nan, timestamp, step)
    SELECT run_uuid, key, value, is_nan, timestamp, step FROM latest_metrics;
DROP TABLE latest_metrics;
ALTER TABLE latest_metrics_exact RENAME TO latest_metrics;

-- As in 0005 (the trigger went with the old table).
CREATE TRIGGER metrics_keep_latest AFTER INSERT ON metrics
BEGIN
    INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step)
    VALUES (NEW.run_uuid, NEW.key, NEW.value, NEW.is_nan, NEW.timestamp, NEW.step)
    ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan,
        timestamp = excluded.timestamp, step = excluded.step
    WHERE excluded.step > latest_metrics.step
       OR (excluded.step = latest_metrics.step AND excluded.timestamp > latest_metrics.timestamp)
       OR (excluded.step = latest_metrics.step AND excluded.timestamp = latest_metrics.timestamp
           AND (excluded.is_nan AND NOT latest_metrics.is_nan
                OR (excluded.is_nan = latest_metrics.is_nan AND excluded.value > latest_metrics.value)));
END;
