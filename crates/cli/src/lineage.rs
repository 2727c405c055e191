//! `tarn lineage TABLE`: where a table's data came from and where it went, as a tree (or the
//! graph as JSON), read from the metadata store with admin rights like the other local
//! commands.

use anyhow::Result;
use clap::{Args, ValueEnum};
use tarn_core::lineage::{Direction, NodeKind};
use tarn_core::store::MetaStore;
use tarn_lake::lineage::{GraphEdge, LineageGraph, lineage_graph};

use crate::local::cli_caller;

#[derive(Clone, Copy, ValueEnum)]
pub enum Walk {
    Upstream,
    Downstream,
    Both,
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

pub async fn run(store: &dyn MetaStore, args: LineageArgs) -> Result<()> {
    let workspace = args.table.split('.').next().unwrap_or_default().to_string();
    let directions = match args.direction {
        Walk::Upstream => vec![Direction::Upstream],
        Walk::Downstream => vec![Direction::Downstream],
        Walk::Both => vec![Direction::Upstream, Direction::Downstream],
    };
    let graph = lineage_graph(
        store,
        &cli_caller(workspace),
        &args.table,
        &directions,
        args.depth,
    )
    .await?;
    match args.format {
        LineageFormat::Json => println!("{}", serde_json::to_string_pretty(&graph)?),
        LineageFormat::Tree => print!("{}", render_tree(&graph, &directions)),
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

/// The graph as a tree per direction, then the table's own recent writes.
pub fn render_tree(graph: &LineageGraph, directions: &[Direction]) -> String {
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
    use tarn_lake::lineage::GraphNode;

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
        let tree = render_tree(&graph, &[Direction::Upstream]);
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
