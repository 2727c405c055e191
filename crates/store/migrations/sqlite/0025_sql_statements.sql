-- SQL statements as every server on the store sees them: a poll, a result fetch or a cancel
-- routed to another replica than the one running the statement finds it here; its result's
-- chunks are files under the lake root. Keep in step with the other dialect's
-- 0023_sql_statements.sql.
CREATE TABLE sql_statements (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    server TEXT NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    submitted_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX sql_statements_by_server ON sql_statements (server, state);
CREATE INDEX sql_statements_by_age ON sql_statements (submitted_at);
