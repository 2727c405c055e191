-- The process running a monitor refresh notes it is alive: a refresh whose process stopped
-- (its server crashed) is found by its silence and failed, instead of blocking the monitor's
-- next refresh for ever. Keep in step with the other dialect's 0023_refresh_heartbeats.sql.
ALTER TABLE monitor_refreshes ADD COLUMN heartbeat_at BIGINT;
