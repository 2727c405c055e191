//! Lineage: which writes read what. Every write through tarn records its target (and the
//! version it committed), the sources it read (and their versions) and who ran it. Tables
//! (feature tables among them), views, ingested files and model versions (from the tables
//! their training set read) are nodes; jobs join the same graph with their issue.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a lineage node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeKind {
    /// A table or view, by full name `catalog.schema.table`.
    Table,
    /// A file read by ingestion, by absolute path.
    File,
    /// A registered model's version, as `workspace/model name/version`.
    ModelVersion,
    /// A serving endpoint, as `workspace/endpoint name`.
    ServingEndpoint,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::File => "file",
            Self::ModelVersion => "model_version",
            Self::ServingEndpoint => "serving_endpoint",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "file" => Ok(Self::File),
            "model_version" => Ok(Self::ModelVersion),
            "serving_endpoint" => Ok(Self::ServingEndpoint),
            other => Err(Error::invalid(format!(
                "Invalid lineage node type '{other}': expected TABLE, FILE, MODEL_VERSION or SERVING_ENDPOINT"
            ))),
        }
    }
}

/// One node of the lineage graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub name: String,
}

impl Node {
    pub fn table(full_name: impl Into<String>) -> Self {
        Self {
            kind: NodeKind::Table,
            name: full_name.into(),
        }
    }

    pub fn file(path: impl Into<String>) -> Self {
        Self {
            kind: NodeKind::File,
            name: path.into(),
        }
    }

    pub fn model_version(workspace: &str, model: &str, version: i64) -> Self {
        Self {
            kind: NodeKind::ModelVersion,
            name: format!("{workspace}/{model}/{version}"),
        }
    }

    pub fn serving_endpoint(workspace: &str, endpoint: &str) -> Self {
        Self {
            kind: NodeKind::ServingEndpoint,
            name: format!("{workspace}/{endpoint}"),
        }
    }
}

/// A source a write read, at the version it read (none for views and files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRead {
    pub node: Node,
    pub version: Option<i64>,
}

/// One write to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLineage {
    pub target: Node,
    /// The version the write committed (none for views).
    pub target_version: Option<i64>,
    pub sources: Vec<SourceRead>,
    /// What the write was: `CREATE TABLE AS SELECT`, `INSERT INTO`, `INGEST`, `MERGE`, ...
    pub operation: String,
    /// The principal who ran it, by name.
    pub actor: String,
    /// The SQL statement, for writes made by one.
    pub statement: Option<String>,
    pub created_at: i64,
}

impl NewLineage {
    /// A write of `target` at `target_version` by `actor`, now, that read nothing yet.
    pub fn new(
        target: Node,
        target_version: Option<i64>,
        operation: impl Into<String>,
        actor: impl Into<String>,
    ) -> Self {
        Self {
            target,
            target_version,
            sources: Vec::new(),
            operation: operation.into(),
            actor: actor.into(),
            statement: None,
            created_at: crate::ids::now_millis(),
        }
    }

    pub fn reading(mut self, sources: Vec<SourceRead>) -> Self {
        self.sources = sources;
        self
    }
}

/// A recorded write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageWrite {
    pub id: i64,
    pub target: Node,
    pub target_version: Option<i64>,
    pub operation: String,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    pub created_at: i64,
}

/// Source fed target through one or more writes; the details are those of the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageEdge {
    pub source: Node,
    pub target: Node,
    /// How many writes read `source` into `target`.
    pub writes: i64,
    pub last_write_id: i64,
    pub last_operation: String,
    pub last_actor: String,
    pub last_timestamp: i64,
    /// The version of the source the newest write read.
    pub source_version: Option<i64>,
    /// The version of the target the newest write committed.
    pub target_version: Option<i64>,
}

/// Which way to walk from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards what the node was made from.
    Upstream,
    /// Towards what was made from the node.
    Downstream,
}

/// Keeps one read per source, the newest version where a statement read a table twice (a
/// self-join across versions), in the order first seen.
pub fn distinct_sources(sources: &[SourceRead]) -> Vec<SourceRead> {
    let mut kept: Vec<SourceRead> = Vec::with_capacity(sources.len());
    for read in sources {
        match kept.iter_mut().find(|k| k.node == read.node) {
            Some(existing) => existing.version = existing.version.max(read.version),
            None => kept.push(read.clone()),
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_sources_keep_the_newest_version() {
        let read = |name: &str, version| SourceRead {
            node: Node::table(name),
            version,
        };
        let sources = [read("a", Some(1)), read("b", None), read("a", Some(3))];
        assert_eq!(
            distinct_sources(&sources),
            vec![read("a", Some(3)), read("b", None)]
        );
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [NodeKind::Table, NodeKind::File] {
            assert_eq!(NodeKind::parse(kind.as_str()).ok(), Some(kind));
        }
        assert!(NodeKind::parse("job").is_err());
    }
}
