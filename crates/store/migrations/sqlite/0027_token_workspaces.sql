-- A token may be limited to one workspace: used in another it is refused, whoever holds it.
-- NULL: the token reaches every workspace its principal belongs to. Keep in step with the other
-- dialect's 0025_token_workspaces.sql.
ALTER TABLE tokens ADD COLUMN workspace TEXT;
