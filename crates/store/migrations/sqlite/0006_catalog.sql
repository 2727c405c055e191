-- The lakehouse catalog: schemas and tables of each workspace's catalog. Columns and properties
-- are JSON text: they are read and written whole with their table. Keep in step with the other
-- dialect's 0006_catalog.sql.
CREATE TABLE catalog_schemas (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    name TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    properties TEXT NOT NULL DEFAULT '{}',
    owner TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (workspace, name)
);

CREATE TABLE catalog_tables (
    id TEXT PRIMARY KEY,
    schema_id TEXT NOT NULL REFERENCES catalog_schemas(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    table_type TEXT NOT NULL,
    data_source_format TEXT NOT NULL DEFAULT 'DELTA',
    columns TEXT NOT NULL,
    -- NULL for views, which have a definition instead of data.
    storage_location TEXT UNIQUE,
    view_definition TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    properties TEXT NOT NULL DEFAULT '{}',
    owner TEXT NOT NULL,
    owner_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (schema_id, name)
);

-- Privileges on catalogs, schemas and tables (Unity Catalog's names), by full name; a grant
-- holds for the securable and everything inside it. Dropping an object drops its grants.
CREATE TABLE catalog_grants (
    securable TEXT NOT NULL,
    securable_type TEXT NOT NULL,
    principal_id BIGINT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
    privilege TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (securable, principal_id, privilege)
);

-- A workspace that may read another workspace's catalog (never write to it).
CREATE TABLE catalog_bindings (
    catalog TEXT NOT NULL REFERENCES workspaces(name),
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (catalog, workspace)
);
