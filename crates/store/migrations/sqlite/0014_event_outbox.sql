-- Every event waits in the outbox of each consumer until that consumer has taken it. This
-- replaces a cursor over event ids: ids are taken at insert, but transactions commit in any
-- order, so on PostgreSQL a cursor past the highest visible id skipped a lower id that
-- committed later, and that event was never delivered. A row per event cannot be skipped.
CREATE TABLE event_outbox (
    consumer TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
INSERT INTO event_outbox (consumer, event_id)
    SELECT 'webhooks', id FROM events
    WHERE id > COALESCE((SELECT last_event_id FROM outbox_cursors WHERE consumer = 'webhooks'), 0);
DROP TABLE outbox_cursors;
