//! The lakehouse catalog: each workspace owns a catalog of its name, holding schemas, holding
//! tables, addressed `catalog.schema.table`. The shapes follow open-source Unity Catalog's REST
//! API so that other engines and tools can discover tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest schema or table name.
pub const MAX_NAME_LEN: usize = 255;
/// Longest comment on a schema, table or column.
pub const MAX_COMMENT_LEN: usize = 4096;

/// A catalog, one per workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogInfo {
    pub name: String,
    pub comment: String,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub schema_id: String,
    pub catalog_name: String,
    pub name: String,
    pub full_name: String,
    pub comment: String,
    pub properties: BTreeMap<String, String>,
    pub owner: String,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub updated_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableType {
    /// Data under the lake root, owned by tarn: dropping the table deletes it.
    Managed,
    /// A Delta table at a location of the user's; dropping the table leaves the data.
    External,
    /// A stored query over other tables (`CREATE VIEW`); it holds no data.
    View,
}

impl TableType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "MANAGED",
            Self::External => "EXTERNAL",
            Self::View => "VIEW",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "MANAGED" => Ok(Self::Managed),
            "EXTERNAL" => Ok(Self::External),
            "VIEW" => Ok(Self::View),
            other => Err(Error::invalid(format!(
                "Invalid table_type '{other}': expected MANAGED, EXTERNAL or VIEW"
            ))),
        }
    }
}

/// A column as Unity Catalog describes it: `type_name` is the catalog's type family (`INT`,
/// `STRING`, `TIMESTAMP`, ...), `type_text` the SQL spelling, `type_json` the Delta field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(default)]
    pub type_name: String,
    #[serde(default)]
    pub type_text: String,
    #[serde(default)]
    pub type_json: String,
    #[serde(default)]
    pub position: i64,
    #[serde(default = "nullable_by_default")]
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_index: Option<i64>,
}

impl ColumnInfo {
    /// A nullable column of a SQL type (`bigint`, `decimal(10,2)`), the rest filled in by
    /// the lake when the table is made.
    pub fn new(name: impl Into<String>, type_text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            type_name: String::new(),
            type_text: type_text.into(),
            type_json: String::new(),
            position: 0,
            nullable: true,
            comment: String::new(),
            partition_index: None,
        }
    }
}

fn nullable_by_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub table_id: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub full_name: String,
    pub table_type: TableType,
    pub data_source_format: String,
    pub columns: Vec<ColumnInfo>,
    /// Empty for views.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_location: String,
    /// The query of a view (empty for tables).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub view_definition: String,
    pub comment: String,
    pub properties: BTreeMap<String, String>,
    pub owner: String,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub updated_by: String,
}

/// What creating a schema takes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchema {
    pub catalog: String,
    pub name: String,
    pub comment: String,
    pub properties: BTreeMap<String, String>,
}

/// What registering a table takes; the lake has created or checked the Delta table already.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTable {
    pub table_id: String,
    pub catalog: String,
    pub schema: String,
    pub name: String,
    pub table_type: TableType,
    pub columns: Vec<ColumnInfo>,
    /// Empty for views.
    pub storage_location: String,
    /// The query of a view (empty for tables).
    pub view_definition: String,
    pub comment: String,
    pub properties: BTreeMap<String, String>,
}

/// What a grant is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurableType {
    Catalog,
    Schema,
    Table,
}

impl SecurableType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Schema => "schema",
            Self::Table => "table",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "catalog" => Ok(Self::Catalog),
            "schema" => Ok(Self::Schema),
            "table" | "view" => Ok(Self::Table),
            other => Err(Error::invalid(format!(
                "Invalid securable type '{other}': expected catalog, schema or table"
            ))),
        }
    }

    /// Checks a full name of this type and returns it normalised.
    pub fn normalize(self, full_name: &str) -> Result<String> {
        Ok(match self {
            Self::Catalog => normalize_name("catalog", full_name)?,
            Self::Schema => {
                let (catalog, schema) = parse_schema_name(full_name)?;
                format!("{catalog}.{schema}")
            }
            Self::Table => {
                let (catalog, schema, table) = parse_table_name(full_name)?;
                format!("{catalog}.{schema}.{table}")
            }
        })
    }
}

/// Unity Catalog's privileges, as far as tarn's lakehouse has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Privilege {
    UseCatalog,
    UseSchema,
    Select,
    Modify,
    CreateSchema,
    CreateTable,
    /// Managing what hangs off a securable (a table's monitor) without owning it.
    Manage,
    AllPrivileges,
}

impl Privilege {
    pub const ALL: [Self; 8] = [
        Self::UseCatalog,
        Self::UseSchema,
        Self::Select,
        Self::Modify,
        Self::CreateSchema,
        Self::CreateTable,
        Self::Manage,
        Self::AllPrivileges,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UseCatalog => "USE_CATALOG",
            Self::UseSchema => "USE_SCHEMA",
            Self::Select => "SELECT",
            Self::Modify => "MODIFY",
            Self::CreateSchema => "CREATE_SCHEMA",
            Self::CreateTable => "CREATE_TABLE",
            Self::Manage => "MANAGE",
            Self::AllPrivileges => "ALL_PRIVILEGES",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        let wanted = value.trim().to_ascii_uppercase().replace(' ', "_");
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid privilege '{value}': expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }

    /// Whether the privilege changes data or the catalog (refused on read-only bindings).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Modify
                | Self::CreateSchema
                | Self::CreateTable
                | Self::Manage
                | Self::AllPrivileges
        )
    }

    /// Whether the privilege can be granted on a securable of this type: a privilege on a
    /// container holds for everything inside it.
    pub fn applies_to(self, securable: SecurableType) -> bool {
        match self {
            Self::UseCatalog | Self::CreateSchema => securable == SecurableType::Catalog,
            Self::UseSchema | Self::CreateTable => securable != SecurableType::Table,
            Self::Select | Self::Modify | Self::Manage | Self::AllPrivileges => true,
        }
    }
}

/// One grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogGrant {
    pub securable: String,
    pub principal_id: i64,
    pub privilege: Privilege,
}

/// Who holds which privileges on a securable (Unity Catalog's `privilege_assignments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivilegeAssignment {
    pub principal: String,
    pub privileges: Vec<Privilege>,
}

/// A change to one principal's privileges on a securable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PermissionsChange {
    pub principal: String,
    #[serde(default)]
    pub add: Vec<Privilege>,
    #[serde(default)]
    pub remove: Vec<Privilege>,
}

/// A table whose Delta log the commit watcher follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedTable {
    pub table_id: String,
    pub full_name: String,
    pub storage_location: String,
    /// The last version of the log accounted for; none before the first scan.
    pub watched_version: Option<i64>,
}

/// A commit another Delta writer made to a table, as the table's log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideCommit {
    pub version: i64,
    /// `WRITE`, `MERGE`, `DELETE`, ... (the commit's `operation`).
    pub operation: String,
    /// Who wrote it: the commit's `engineInfo` or `clientVersion`.
    pub writer: String,
    /// When, in milliseconds (the commit's `timestamp`).
    pub timestamp: i64,
}

/// A file ingested into a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestedFile {
    pub table_id: String,
    /// The file's absolute path.
    pub source: String,
    pub size: i64,
    pub rows_written: i64,
    pub rows_quarantined: i64,
    pub table_version: i64,
    pub ingested_at: i64,
    pub ingested_by: String,
}

/// Most tags one securable carries, and the longest key and value (Unity Catalog's limits).
pub const MAX_TAGS: usize = 50;
const MAX_TAG_KEY: usize = 255;
const MAX_TAG_VALUE: usize = 1000;

/// Checks a tag change: keys non-empty and printable, lengths within Unity Catalog's limits.
pub fn validate_tags(set: &BTreeMap<String, String>, unset: &[String]) -> Result<()> {
    for key in set.keys().chain(unset) {
        if key.trim().is_empty() || key.len() > MAX_TAG_KEY || key.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "Invalid tag key '{}': 1 to {MAX_TAG_KEY} printable characters",
                key.chars().take(40).collect::<String>()
            )));
        }
    }
    if let Some((key, _)) = set
        .iter()
        .find(|(_, v)| v.len() > MAX_TAG_VALUE || v.chars().any(char::is_control))
    {
        return Err(Error::invalid(format!(
            "Invalid value of tag '{key}': at most {MAX_TAG_VALUE} printable characters"
        )));
    }
    if let Some(key) = unset.iter().find(|k| set.contains_key(*k)) {
        return Err(Error::invalid(format!("Tag '{key}' is both set and unset")));
    }
    Ok(())
}

/// Catalog, schema and table names: letters, digits and underscores, stored lower-case (as
/// Unity Catalog does, names are case-insensitive).
pub fn normalize_name(kind: &str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::invalid(format!(
            "Missing value for required parameter '{kind}'"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{kind} '{}...' is longer than {MAX_NAME_LEN} characters",
            &name[..32.min(name.len())]
        )));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::invalid(format!(
            "Invalid {kind} '{name}': use letters, digits and underscores"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

pub fn validate_comment(comment: &str) -> Result<()> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(Error::invalid(format!(
            "A comment may hold at most {MAX_COMMENT_LEN} characters"
        )));
    }
    Ok(())
}

/// Splits `catalog.schema` into its normalized parts.
pub fn parse_schema_name(full_name: &str) -> Result<(String, String)> {
    match full_name.split('.').collect::<Vec<_>>().as_slice() {
        [catalog, schema] => Ok((
            normalize_name("catalog_name", catalog)?,
            normalize_name("schema_name", schema)?,
        )),
        _ => Err(Error::invalid(format!(
            "Invalid schema name '{full_name}': expected catalog.schema"
        ))),
    }
}

/// Splits `catalog.schema.table` into its normalized parts.
pub fn parse_table_name(full_name: &str) -> Result<(String, String, String)> {
    match full_name.split('.').collect::<Vec<_>>().as_slice() {
        [catalog, schema, table] => Ok((
            normalize_name("catalog_name", catalog)?,
            normalize_name("schema_name", schema)?,
            normalize_name("name", table)?,
        )),
        _ => Err(Error::invalid(format!(
            "Invalid table name '{full_name}': expected catalog.schema.table"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        let set = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(validate_tags(&set("pii", "email"), &["old".into()]).is_ok());
        assert!(validate_tags(&set("", "x"), &[]).is_err());
        assert!(validate_tags(&set("a\nb", "x"), &[]).is_err());
        assert!(validate_tags(&set("k", &"v".repeat(1001)), &[]).is_err());
        assert!(validate_tags(&set(&"k".repeat(256), "v"), &[]).is_err());
        assert!(validate_tags(&set("k", "v"), &["k".into()]).is_err());
    }

    #[test]
    fn names_are_case_insensitive_and_plain() {
        assert_eq!(normalize_name("name", "Bronze_2").expect("ok"), "bronze_2");
        for bad in ["", "a.b", "a b", "../x", "a;drop", "é"] {
            assert!(normalize_name("name", bad).is_err(), "{bad}");
        }
        assert!(normalize_name("name", &"x".repeat(256)).is_err());
        assert_eq!(
            parse_table_name("Dev.Bronze.Events").expect("ok"),
            ("dev".into(), "bronze".into(), "events".into())
        );
        assert!(parse_table_name("dev.bronze").is_err());
        assert!(parse_schema_name("dev.bronze.x").is_err());
    }
}
