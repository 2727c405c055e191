//! `tarn lineage TABLE`: where a table's data came from and where it went, as a tree (or the
//! graph as JSON), from the server's lineage API (`/api/2.0/tarn/lineage`) as the token's
//! principal: tables the caller may not read show masked.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use tarn_core::lineage::{Direction, NodeKind};

use crate::client::Client;

const LINEAGE: &str = "/api/2.0/tarn/lineage";

#[derive(Clone, Copy, ValueEnum)]
pub enum Walk {
    Upstream,
    Downstream,
    Both,
}

impl Walk {
    fn as_str(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
            Self::Both => "both",
        }
    }

    fn directions(self) -> Vec<Direction> {
        match self {
            Self::Upstream => vec![Direction::Upstream],
            Self::Downstream => vec![Direction::Downstream],
            Self::Both => vec![Direction::Upstream, Direction::Downstream],
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LineageFormat {
    Tree,
    Json,
}

#[derive(Args)]
pub struct LineageArgs {
    /// The table, as catalog.schema.table.
    pub table: String,
    #[arg(long, value_enum, default_value = "both")]
    pub direction: Walk,
    /// How many steps to walk each way.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    #[arg(long, value_enum, default_value = "tree")]
    pub format: LineageFormat,
}

/// One node of the graph, as the server shows it to the caller.
#[derive(Debug, Deserialize)]
struct GraphNode {
    id: String,
    #[serde(rename = "type")]
    kind: NodeKind,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    table_type: Option<String>,
    exists: bool,
    masked: bool,
}

/// An edge between two nodes, by their ids, with its newest write's details.
#[derive(Debug, Deserialize)]
struct GraphEdge {
    source: String,
    target: String,
    writes: i64,
    last_operation: String,
    last_actor: String,
    last_timestamp: i64,
    source_version: Option<i64>,
    target_version: Option<i64>,
}

/// One of the table's own recent writes.
#[derive(Debug, Deserialize)]
struct RecentWrite {
    target_version: Option<i64>,
    operation: String,
    actor: String,
    created_at: i64,
}

/// The lineage graph around one table, as `/api/2.0/tarn/lineage` answers.
#[derive(Debug, Deserialize)]
struct LineageGraph {
    root: String,
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
    recent_writes: Vec<RecentWrite>,
}

impl LineageGraph {
    fn node(&self, id: &str) -> Option<&GraphNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The edges into (upstream) or out of (downstream) the node `id`.
    fn edges_of<'a>(
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

pub async fn run(client: &Client, args: LineageArgs) -> Result<()> {
    let (catalog, _, _) = tarn_core::catalog::parse_table_name(&args.table)?;
    let query = [
        ("table_name", args.table.clone()),
        ("direction", args.direction.as_str().to_string()),
        ("depth", args.depth.to_string()),
    ];
    let (_, answer) = crate::tables::reading(client, &catalog, LINEAGE, &query).await?;
    match args.format {
        LineageFormat::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        LineageFormat::Tree => {
            let graph: LineageGraph =
                serde_json::from_value(answer).context("the server's lineage graph is not one")?;
            print!("{}", render(&graph, &args.direction.directions()));
        }
    }
    Ok(())
}

fn label(graph: &LineageGraph, id: &str) -> String {
    match graph.node(id) {
        Some(node) if node.masked => "(a table you may not read)".to_string(),
        Some(node) => {
            let name = node.name.clone().unwrap_or_default();
            match (node.kind, &node.table_type, node.exists) {
                (NodeKind::ModelVersion, _, _) => format!("model version {name}"),
                (NodeKind::File, _, _) => format!("file {name}"),
                (NodeKind::ServingEndpoint, _, _) => format!("serving endpoint {name}"),
                (_, _, false) => format!("{name} (dropped)"),
                (_, Some(kind), _) if kind == "VIEW" => format!("{name} (view)"),
                (_, _, _) => name,
            }
        }
        None => id.to_string(),
    }
}

fn version(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("v{v}"))
}

fn describe(edge: &GraphEdge) -> String {
    let times = if edge.writes == 1 {
        String::new()
    } else {
        format!(", {} writes", edge.writes)
    };
    format!(
        "{} -> {}  {} by {} at {}{times}",
        version(edge.source_version),
        version(edge.target_version),
        edge.last_operation,
        edge.last_actor,
        tarn_lake::format_timestamp(edge.last_timestamp),
    )
}

fn branch(
    graph: &LineageGraph,
    id: &str,
    direction: Direction,
    prefix: &str,
    path: &mut Vec<String>,
    out: &mut String,
) {
    let edges: Vec<&GraphEdge> = graph.edges_of(id, direction).collect();
    for (i, edge) in edges.iter().enumerate() {
        let last = i + 1 == edges.len();
        let other = match direction {
            Direction::Upstream => &edge.source,
            Direction::Downstream => &edge.target,
        };
        let cycle = path.contains(other);
        out.push_str(&format!(
            "{prefix}{} {}  [{}]{}\n",
            if last { "└──" } else { "├──" },
            label(graph, other),
            describe(edge),
            if cycle { " (cycle)" } else { "" }
        ));
        if !cycle {
            path.push(other.clone());
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            branch(graph, other, direction, &deeper, path, out);
            path.pop();
        }
    }
}

/// The tree of a graph walked in this process rather than asked of a server (the
/// quickstart's): the same tree as `tarn lineage` prints.
pub fn render_tree(graph: &tarn_lake::lineage::LineageGraph, directions: &[Direction]) -> String {
    match serde_json::to_value(graph).and_then(serde_json::from_value::<LineageGraph>) {
        Ok(graph) => render(&graph, directions),
        Err(err) => format!("(cannot show the lineage: {err})\n"),
    }
}

/// The graph as a tree per direction, then the table's own recent writes.
fn render(graph: &LineageGraph, directions: &[Direction]) -> String {
    let mut out = format!("{}\n", label(graph, &graph.root));
    for &direction in directions {
        let title = match direction {
            Direction::Upstream => "upstream (read by the writes of this table)",
            Direction::Downstream => "downstream (written from this table)",
        };
        out.push_str(&format!("\n{title}:\n"));
        let mut path = vec![graph.root.clone()];
        let before = out.len();
        branch(graph, &graph.root, direction, "", &mut path, &mut out);
        if out.len() == before {
            out.push_str("    (none)\n");
        }
    }
    if !graph.recent_writes.is_empty() {
        out.push_str("\nrecent writes:\n");
        for write in &graph.recent_writes {
            out.push_str(&format!(
                "    {:>6}  {:<34} by {} at {}\n",
                version(write.target_version),
                write.operation,
                write.actor,
                tarn_lake::format_timestamp(write.created_at)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, kind: NodeKind, masked: bool) -> GraphNode {
        GraphNode {
            id: id.to_string(),
            kind,
            name: (!masked).then(|| id.split_once(':').map_or(id, |(_, n)| n).to_string()),
            table_type: (kind == NodeKind::Table && !masked).then(|| "MANAGED".to_string()),
            exists: true,
            masked,
        }
    }

    fn edge(source: &str, target: &str, writes: i64) -> GraphEdge {
        GraphEdge {
            source: source.into(),
            target: target.into(),
            writes,
            last_operation: "INSERT INTO".into(),
            last_actor: "alice".into(),
            last_timestamp: 0,
            source_version: Some(2),
            target_version: Some(5),
        }
    }

    #[test]
    fn trees_show_each_branch_masked_nodes_and_cycles() {
        let graph = LineageGraph {
            root: "table:a.b.silver".into(),
            nodes: vec![
                node("table:a.b.silver", NodeKind::Table, false),
                node("table:a.b.bronze", NodeKind::Table, false),
                node("file:/landing/x.csv", NodeKind::File, false),
                node("masked:3", NodeKind::Table, true),
            ],
            edges: vec![
                edge("table:a.b.bronze", "table:a.b.silver", 3),
                edge("masked:3", "table:a.b.silver", 1),
                edge("file:/landing/x.csv", "table:a.b.bronze", 1),
                edge("table:a.b.silver", "table:a.b.bronze", 1),
            ],
            recent_writes: Vec::new(),
        };
        let tree = render(&graph, &[Direction::Upstream]);
        let lines: Vec<&str> = tree.lines().collect();
        assert_eq!(lines[0], "a.b.silver");
        assert!(lines[3].starts_with("├── a.b.bronze  [v2 -> v5  INSERT INTO by alice at 1970-01-01T00:00:00.000Z, 3 writes]"), "{tree}");
        assert!(
            lines[4].starts_with("│   ├── file /landing/x.csv"),
            "{tree}"
        );
        assert!(
            lines[5].starts_with("│   └── a.b.silver") && lines[5].ends_with("(cycle)"),
            "{tree}"
        );
        assert!(
            lines[6].starts_with("└── (a table you may not read)"),
            "{tree}"
        );
    }
}
