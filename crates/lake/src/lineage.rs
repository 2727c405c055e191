//! Lineage of the lakehouse: writes record what they read (SQL, ingestion, the table API), and
//! the graph around a table is walked for a caller, who sees the tables they may read and a
//! masked node for the others, as Unity Catalog shows lineage.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tarn_core::catalog::{self, Privilege};
use tarn_core::lineage::{Direction, LineageEdge, LineageWrite, Node, NodeKind};
use tarn_core::store::MetaStore;
use tarn_core::{ErrorCode, Result};

use crate::access::{Securable, authorize, reach_catalog};
use tarn_core::caller::Caller;

/// How far a walk may go from its table.
pub const MAX_DEPTH: usize = 10;
/// How many of the table's own writes the graph lists.
const RECENT_WRITES: u64 = 10;

/// One node as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphNode {
    /// `table:<full name>`, `file:<path>`, or `masked:<n>` for a table the caller may not read.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `MANAGED`, `EXTERNAL` or `VIEW` for tables that exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_type: Option<String>,
    /// False for a table dropped since (shown to admins only).
    pub exists: bool,
    pub masked: bool,
}

/// An edge between two nodes of the graph, by their ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphEdge {
    pub source: String,
    pub target: String,
    pub writes: i64,
    pub last_operation: String,
    pub last_actor: String,
    pub last_timestamp: i64,
    pub source_version: Option<i64>,
    pub target_version: Option<i64>,
}

/// The lineage around one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineageGraph {
    pub root: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// The root's newest writes, those that read nothing (uploads) included; the statement
    /// only for the caller's own writes (or to admins).
    pub recent_writes: Vec<LineageWrite>,
}

impl LineageGraph {
    pub fn node(&self, id: &str) -> Option<&GraphNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The edges into (upstream) or out of (downstream) the node `id`.
    pub fn edges_of<'a>(
        &'a self,
        id: &'a str,
        direction: Direction,
    ) -> impl Iterator<Item = &'a GraphEdge> + 'a {
        self.edges.iter().filter(move |e| match direction {
            Direction::Upstream => e.target == id,
            Direction::Downstream => e.source == id,
        })
    }
}

fn node_id(node: &Node) -> String {
    format!("{}:{}", node.kind.as_str(), node.name)
}

/// Walks the graph, deciding once per node what the caller may see of it.
struct Walk<'a> {
    store: &'a dyn MetaStore,
    caller: &'a Caller,
    seen: HashMap<Node, GraphNode>,
    order: Vec<Node>,
    edges: Vec<GraphEdge>,
    edge_keys: HashSet<(String, String)>,
}

impl Walk<'_> {
    async fn visit(&mut self, node: &Node) -> Result<GraphNode> {
        if let Some(known) = self.seen.get(node) {
            return Ok(known.clone());
        }
        let visible = |table_type: Option<String>, exists: bool| GraphNode {
            id: node_id(node),
            kind: node.kind,
            name: Some(node.name.clone()),
            table_type,
            exists,
            masked: false,
        };
        let masked = || GraphNode {
            id: format!("masked:{}", self.seen.len() + 1),
            kind: node.kind,
            name: None,
            table_type: None,
            exists: true,
            masked: true,
        };
        let shown = match node.kind {
            NodeKind::File => visible(None, true),
            // Models and endpoints are per workspace: another workspace's are masked.
            NodeKind::ModelVersion | NodeKind::ServingEndpoint
                if self.caller.principal.is_admin
                    || node.name.split('/').next() == Some(self.caller.workspace.as_str()) =>
            {
                visible(None, true)
            }
            NodeKind::ModelVersion | NodeKind::ServingEndpoint => masked(),
            NodeKind::Table => match self.table_visibility(&node.name).await? {
                Some(Some(table_type)) => visible(Some(table_type), true),
                Some(None) => visible(None, false),
                None => masked(),
            },
        };
        self.seen.insert(node.clone(), shown.clone());
        self.order.push(node.clone());
        Ok(shown)
    }

    /// `Some(Some(type))` for a table the caller may read, `Some(None)` for a dropped one
    /// an admin asks about, `None` for one to mask.
    async fn table_visibility(&self, full_name: &str) -> Result<Option<Option<String>>> {
        let Ok((catalog, schema, name)) = catalog::parse_table_name(full_name) else {
            return Ok(None);
        };
        if reach_catalog(self.store, self.caller, &catalog, false)
            .await
            .is_err()
        {
            return Ok(None);
        }
        match self.store.get_table(&catalog, &schema, &name).await {
            Ok(table) => {
                let readable = authorize(
                    self.store,
                    self.caller,
                    &Securable::table(&table),
                    Privilege::Select,
                )
                .await;
                match readable {
                    Ok(()) => Ok(Some(Some(table.table_type.as_str().to_string()))),
                    Err(err) if err.hides_object() => Ok(None),
                    Err(err) => Err(err),
                }
            }
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {
                Ok(self.caller.principal.is_admin.then_some(None))
            }
            Err(err) => Err(err),
        }
    }

    fn add_edge(&mut self, edge: &LineageEdge, source: &GraphNode, target: &GraphNode) {
        if self
            .edge_keys
            .insert((source.id.clone(), target.id.clone()))
        {
            self.edges.push(GraphEdge {
                source: source.id.clone(),
                target: target.id.clone(),
                writes: edge.writes,
                last_operation: edge.last_operation.clone(),
                last_actor: edge.last_actor.clone(),
                last_timestamp: edge.last_timestamp,
                source_version: edge.source_version,
                target_version: edge.target_version,
            });
        }
    }
}

/// The lineage of `table` (a full name) up to `depth` steps each way asked for. The caller
/// must be able to read the table; neighbours it may not read are masked and not walked past.
pub async fn lineage_graph(
    store: &dyn MetaStore,
    caller: &Caller,
    table: &str,
    directions: &[Direction],
    depth: usize,
) -> Result<LineageGraph> {
    let (catalog, schema, name) = catalog::parse_table_name(table)?;
    reach_catalog(store, caller, &catalog, false).await?;
    let info = store.get_table(&catalog, &schema, &name).await?;
    authorize(store, caller, &Securable::table(&info), Privilege::Select).await?;
    let root = Node::table(info.full_name.clone());
    let mut walk = Walk {
        store,
        caller,
        seen: HashMap::new(),
        order: Vec::new(),
        edges: Vec::new(),
        edge_keys: HashSet::new(),
    };
    let root_shown = walk.visit(&root).await?;
    for &direction in directions {
        let mut walked: HashSet<Node> = HashSet::from([root.clone()]);
        let mut frontier = vec![root.clone()];
        for _ in 0..depth.clamp(1, MAX_DEPTH) {
            let mut next = Vec::new();
            for node in &frontier {
                let here = walk.visit(node).await?;
                for edge in store.lineage_edges(node, direction).await? {
                    let other = match direction {
                        Direction::Upstream => &edge.source,
                        Direction::Downstream => &edge.target,
                    };
                    let there = walk.visit(other).await?;
                    match direction {
                        Direction::Upstream => walk.add_edge(&edge, &there, &here),
                        Direction::Downstream => walk.add_edge(&edge, &here, &there),
                    }
                    if !there.masked && walked.insert(other.clone()) {
                        next.push(other.clone());
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
    }
    let Walk {
        seen, order, edges, ..
    } = walk;
    // A statement names every table it read, masked ones too: like query history, its text
    // is for the one who ran it and for admins.
    let mut recent_writes = store.lineage_writes(&root, RECENT_WRITES).await?;
    for write in &mut recent_writes {
        if !caller.principal.is_admin && write.actor != caller.principal.name {
            write.statement = None;
        }
    }
    Ok(LineageGraph {
        root: root_shown.id,
        nodes: order
            .iter()
            .filter_map(|node| seen.get(node).cloned())
            .collect(),
        edges,
        recent_writes,
    })
}
