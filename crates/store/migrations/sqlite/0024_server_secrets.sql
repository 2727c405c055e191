-- Secrets every server on one store shares, made by the first that needs one: the key that
-- signs links (the parts of multipart uploads, SQL result files), so a link one replica made
-- is honoured by another. Keep in step with the other dialect's 0022_server_secrets.sql.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
