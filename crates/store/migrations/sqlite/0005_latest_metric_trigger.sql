-- latest_metrics follows metrics inside the INSERT that logs a point: one statement less per
-- logging call on the single writer. MLflow's "latest": highest step, then timestamp, then
-- value (NaN above numbers). Keep in step with ../postgres/0005_latest_metric_trigger.sql.
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
