-- Tags on catalogs, schemas and tables: key/value pairs as Unity Catalog's, by full name like
-- grants, removed with their securable. Keep in step with the other dialect's file.
CREATE TABLE catalog_tags (
    securable TEXT NOT NULL,
    securable_type TEXT NOT NULL,
    tag_key TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (securable, tag_key)
);
CREATE INDEX catalog_tags_by_key ON catalog_tags (tag_key, tag_value);
