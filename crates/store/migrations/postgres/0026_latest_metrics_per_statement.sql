-- latest_metrics follows metrics once per INSERT instead of once per point: the statement's new
-- points (a transition table) are reduced to each (run, key)'s latest and upserted together. A
-- log-batch of 100 points ran 100 upserts through the row trigger, which made PostgreSQL, not
-- tarn, the bound on tracking throughput. Same order as before: highest step, then timestamp,
-- then value (NaN above numbers).
CREATE FUNCTION metrics_keep_latest_of_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO latest_metrics AS l (run_uuid, key, value, is_nan, timestamp, step)
    SELECT DISTINCT ON (run_uuid, key) run_uuid, key, value, is_nan, timestamp, step
    FROM new_points
    ORDER BY run_uuid, key, step DESC, timestamp DESC, is_nan DESC, value DESC
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
DROP TRIGGER metrics_keep_latest ON metrics;
DROP FUNCTION metrics_keep_latest();
CREATE TRIGGER metrics_keep_latest AFTER INSERT ON metrics
    REFERENCING NEW TABLE AS new_points
    FOR EACH STATEMENT EXECUTE FUNCTION metrics_keep_latest_of_statement();
