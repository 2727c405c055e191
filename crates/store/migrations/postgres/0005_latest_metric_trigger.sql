-- latest_metrics follows metrics inside the INSERT that logs a point, as on SQLite. MLflow's
-- "latest": highest step, then timestamp, then value (NaN above numbers). Keep in step with
-- ../sqlite/0005_latest_metric_trigger.sql.
CREATE FUNCTION metrics_keep_latest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO latest_metrics AS l (run_uuid, key, value, is_nan, timestamp, step)
    VALUES (NEW.run_uuid, NEW.key, NEW.value, NEW.is_nan, NEW.timestamp, NEW.step)
    ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan,
        timestamp = excluded.timestamp, step = excluded.step
    WHERE excluded.step > l.step
       OR (excluded.step = l.step AND excluded.timestamp > l.timestamp)
       OR (excluded.step = l.step AND excluded.timestamp = l.timestamp
           AND (excluded.is_nan AND NOT l.is_nan
                OR (excluded.is_nan = l.is_nan AND excluded.value > l.value)));
    RETURN NULL;
END
$$;
CREATE TRIGGER metrics_keep_latest AFTER INSERT ON metrics
    FOR EACH ROW EXECUTE FUNCTION metrics_keep_latest();
