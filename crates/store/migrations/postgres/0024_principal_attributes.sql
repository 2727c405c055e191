-- What SCIM clients keep on a principal beyond its name (display name, emails, name parts,
-- external id, entitlements, roles), as JSON, returned exactly as given; and when it was
-- deleted (SCIM's DELETE: deactivated, out of every group and workspace, its tokens revoked;
-- its name stays taken, and activating it brings it back). Keep in step with the
-- other dialect's 0026_principal_attributes.sql.
ALTER TABLE principals ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
ALTER TABLE principals ADD COLUMN deleted_at BIGINT;
