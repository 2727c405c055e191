//! The lineage graph's SQL. A write and its reads go in one transaction; edges are reads grouped by
//! (source, target), with the details of the newest write.

use super::*;

pub(super) fn row_node(
    row: &db::DbRow,
    kind: &str,
    name: &str,
) -> std::result::Result<Node, sqlx::Error> {
    let text: String = row.try_get(kind)?;
    let kind = NodeKind::parse(&text).map_err(|err| sqlx::Error::ColumnDecode {
        index: kind.to_string(),
        source: Box::new(err),
    })?;
    Ok(Node {
        kind,
        name: row.try_get(name)?,
    })
}

pub(super) fn row_edge(row: &db::DbRow) -> std::result::Result<LineageEdge, sqlx::Error> {
    Ok(LineageEdge {
        source: row_node(row, "source_kind", "source_name")?,
        target: row_node(row, "target_kind", "target_name")?,
        writes: row.try_get("writes")?,
        last_write_id: row.try_get("last_write")?,
        last_operation: row.try_get("operation")?,
        last_actor: row.try_get("actor")?,
        last_timestamp: row.try_get("created_at")?,
        source_version: row.try_get("source_version")?,
        target_version: row.try_get("target_version")?,
    })
}

/// The edges at a node: the reads matching `$where` grouped by (source, target), each with the
/// details of its newest write.
macro_rules! edges_query {
    ($where:literal) => {
        concat!(
            "WITH edges AS ( \
               SELECT r.source_kind, r.source_name, w.target_kind, w.target_name, \
                      COUNT(*) AS writes, MAX(w.id) AS last_write \
               FROM lineage_writes w JOIN lineage_reads r ON r.write_id = w.id \
               WHERE ",
            $where,
            " GROUP BY r.source_kind, r.source_name, w.target_kind, w.target_name) \
             SELECT e.*, w.operation, w.actor, w.created_at, w.target_version, r.source_version \
             FROM edges e \
             JOIN lineage_writes w ON w.id = e.last_write \
             JOIN lineage_reads r ON r.write_id = e.last_write \
                  AND r.source_kind = e.source_kind AND r.source_name = e.source_name \
             ORDER BY e.source_kind, e.source_name, e.target_kind, e.target_name"
        )
    };
}

#[async_trait]
impl LineageStore for Store {
    async fn record_lineage(&self, write: &NewLineage) -> Result<i64> {
        let mut tx = self.begin().await?;
        let id: i64 = db::query_scalar(
            "INSERT INTO lineage_writes (target_kind, target_name, target_version, operation, \
             actor, statement, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(write.target.kind.as_str())
        .bind(&write.target.name)
        .bind(write.target_version)
        .bind(&write.operation)
        .bind(&write.actor)
        .bind(&write.statement)
        .bind(write.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let sources = distinct_sources(&write.sources);
        if !sources.is_empty() {
            let mut insert = Builder::new(
                "INSERT INTO lineage_reads (write_id, source_kind, source_name, source_version) ",
            );
            insert.push_values(&sources, |mut row, read| {
                row.push_bind(id)
                    .push_bind(read.node.kind.as_str())
                    .push_bind(&read.node.name)
                    .push_bind(read.version);
            });
            insert.build().execute(&mut *tx).await.map_err(db_error)?;
        }
        if let (NodeKind::Table, Some(version)) = (write.target.kind, write.target_version) {
            let full_name = &write.target.name;
            let catalog = full_name.split('.').next().unwrap_or_default();
            let change = Change::TableCommitted {
                full_name: full_name.clone(),
                version,
                operation: write.operation.clone(),
                sources: sources
                    .iter()
                    .filter(|read| read.node.kind == NodeKind::Table)
                    .map(|read| read.node.name.clone())
                    .collect(),
                outside: false,
            };
            insert_event(&mut tx, catalog, &write.actor, write.created_at, &change).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(id)
    }

    async fn lineage_edges(&self, node: &Node, direction: Direction) -> Result<Vec<LineageEdge>> {
        let sql = match direction {
            Direction::Upstream => edges_query!("w.target_kind = $1 AND w.target_name = $2"),
            Direction::Downstream => edges_query!("r.source_kind = $1 AND r.source_name = $2"),
        };
        let rows = db::query(sql)
            .bind(node.kind.as_str())
            .bind(&node.name)
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(row_edge)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn lineage_writes(&self, node: &Node, limit: u64) -> Result<Vec<LineageWrite>> {
        let rows = db::query(
            "SELECT * FROM lineage_writes WHERE target_kind = $1 AND target_name = $2 \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(node.kind.as_str())
        .bind(&node.name)
        .bind(limit.min(i64::MAX as u64) as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                Ok(LineageWrite {
                    id: row.try_get("id")?,
                    target: row_node(row, "target_kind", "target_name")?,
                    target_version: row.try_get("target_version")?,
                    operation: row.try_get("operation")?,
                    actor: row.try_get("actor")?,
                    statement: row.try_get("statement")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db_error)
    }
}
