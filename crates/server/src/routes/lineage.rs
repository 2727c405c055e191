//! Lineage: tarn's graph around a table (`/api/2.0/tarn/lineage`), and Databricks' table
//! lineage shape (`/api/2.0/lineage-tracking/table-lineage`) for tools that speak it.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::Error;
use tarn_core::caller::Caller;
use tarn_core::lineage::{Direction, NodeKind};
use tarn_lake::lineage::{self, GraphNode, LineageGraph};

use super::mounted::Mounted;
use crate::error::ApiResult;
use crate::extract::{Req, de};
use crate::state::AppState;

type JsonResult = ApiResult<Json<Value>>;

pub fn routes() -> Mounted {
    Mounted::new().route("/", get(graph))
}

pub fn table_lineage_routes() -> Mounted {
    Mounted::new().route("/table-lineage", get(table_lineage))
}

#[derive(Deserialize)]
struct GraphArgs {
    table_name: Option<String>,
    direction: Option<String>,
    #[serde(default, deserialize_with = "de::opt_i64")]
    depth: Option<i64>,
}

fn directions_of(text: Option<&str>) -> Result<Vec<Direction>, Error> {
    match text.unwrap_or("both").to_ascii_lowercase().as_str() {
        "both" => Ok(vec![Direction::Upstream, Direction::Downstream]),
        "upstream" => Ok(vec![Direction::Upstream]),
        "downstream" => Ok(vec![Direction::Downstream]),
        other => Err(Error::invalid(format!(
            "Invalid direction '{other}': expected upstream, downstream or both"
        ))),
    }
}

fn depth_of(depth: Option<i64>) -> Result<usize, Error> {
    match depth {
        None => Ok(1),
        Some(d) if (1..=lineage::MAX_DEPTH as i64).contains(&d) => Ok(d as usize),
        Some(d) => Err(Error::invalid(format!(
            "Invalid depth {d}: expected 1 to {}",
            lineage::MAX_DEPTH
        ))),
    }
}

fn table_name(name: Option<String>) -> Result<String, Error> {
    name.filter(|n| !n.is_empty())
        .ok_or_else(|| Error::invalid("Missing value for required parameter 'table_name'."))
}

/// The lineage graph around a table: nodes, edges with the newest write's details, and the
/// table's own recent writes.
async fn graph(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<GraphArgs>,
) -> JsonResult {
    let graph = lineage::lineage_graph(
        state.store.as_ref(),
        &ctx,
        &table_name(args.table_name)?,
        &directions_of(args.direction.as_deref())?,
        depth_of(args.depth)?,
    )
    .await?;
    Ok(Json(json!(graph)))
}

#[derive(Deserialize)]
struct TableLineageArgs {
    table_name: Option<String>,
}

/// One neighbour as Databricks' table lineage lists it.
fn neighbour(node: &GraphNode, timestamp: i64) -> Value {
    let at = tarn_lake::format_timestamp(timestamp);
    match (node.kind, &node.name) {
        (NodeKind::ModelVersion, Some(name)) => {
            let parts: Vec<&str> = name.splitn(3, '/').collect();
            json!({ "modelVersionInfo": {
                "model_name": parts.get(1),
                "version": parts.get(2),
                "has_permission": true,
                "lineage_timestamp": at,
            }})
        }
        (NodeKind::ServingEndpoint, Some(name)) => json!({
            "servingEndpointInfo": {
                "name": name.split_once('/').map_or(name.as_str(), |(_, endpoint)| endpoint),
                "has_permission": true,
                "lineage_timestamp": at,
            }
        }),
        (NodeKind::File, Some(path)) => json!({
            "fileInfo": { "path": path, "has_permission": true, "lineage_timestamp": at }
        }),
        (_, Some(name)) => {
            let parts: Vec<&str> = name.splitn(3, '.').collect();
            json!({ "tableInfo": {
                "name": parts.get(2),
                "catalog_name": parts.first(),
                "schema_name": parts.get(1),
                "table_type": node.table_type,
                "has_permission": true,
                "lineage_timestamp": at,
            }})
        }
        (_, None) => json!({
            "tableInfo": { "has_permission": false, "lineage_timestamp": at }
        }),
    }
}

fn neighbours(graph: &LineageGraph, direction: Direction) -> Vec<Value> {
    graph
        .edges_of(&graph.root, direction)
        .filter_map(|edge| {
            let other = match direction {
                Direction::Upstream => &edge.source,
                Direction::Downstream => &edge.target,
            };
            graph
                .node(other)
                .map(|node| neighbour(node, edge.last_timestamp))
        })
        .collect()
}

/// `GET /api/2.0/lineage-tracking/table-lineage`: a table's direct upstreams and downstreams.
async fn table_lineage(
    State(state): State<AppState>,
    ctx: Caller,
    Req(args): Req<TableLineageArgs>,
) -> JsonResult {
    let graph = lineage::lineage_graph(
        state.store.as_ref(),
        &ctx,
        &table_name(args.table_name)?,
        &[Direction::Upstream, Direction::Downstream],
        1,
    )
    .await?;
    Ok(Json(json!({
        "upstreams": neighbours(&graph, Direction::Upstream),
        "downstreams": neighbours(&graph, Direction::Downstream),
    })))
}
