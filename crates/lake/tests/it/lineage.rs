//! Lineage: SQL writes, ingestion and views record what they read and who ran them; the
//! graph is walked for a caller, who sees only what they may read.

use tarn_core::ErrorCode;
use tarn_core::caller::Caller;
use tarn_core::catalog::{Privilege, SecurableType};
use tarn_core::lineage::Direction;
use tarn_lake::ingest::IngestSpec;
use tarn_lake::lineage::{LineageGraph, lineage_graph};

use crate::sql::Fixture;

const BOTH: [Direction; 2] = [Direction::Upstream, Direction::Downstream];

async fn graph(f: &Fixture, caller: &Caller, table: &str, depth: usize) -> LineageGraph {
    lineage_graph(f.store.as_ref(), caller, table, &BOTH, depth)
        .await
        .unwrap_or_else(|e| panic!("lineage of {table}: {e:?}"))
}

/// The names of the nodes one step away from `id`.
fn neighbours(graph: &LineageGraph, id: &str, direction: Direction) -> Vec<String> {
    let mut names: Vec<String> = graph
        .edges_of(id, direction)
        .map(|edge| match direction {
            Direction::Upstream => edge.source.clone(),
            Direction::Downstream => edge.target.clone(),
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn sql_writes_record_the_tables_and_versions_they_read() {
    let f = Fixture::new().await;
    f.ok("CREATE TABLE dev.silver.big AS SELECT * FROM dev.bronze.payments WHERE amount > 15")
        .await;
    f.ok("INSERT INTO dev.bronze.payments VALUES (4, 40.0)")
        .await;
    f.ok(
        "INSERT INTO dev.silver.big SELECT * FROM dev.bronze.payments \
         WHERE id NOT IN (SELECT id FROM dev.silver.big)",
    )
    .await;
    f.ok("CREATE VIEW dev.silver.big_view AS SELECT id FROM silver.big")
        .await;
    f.ok("CREATE TABLE dev.silver.summary AS SELECT count(*) AS n FROM dev.silver.big_view")
        .await;
    f.ok("DELETE FROM dev.silver.big WHERE id = 2").await;

    let big = graph(&f, &f.owner, "dev.silver.big", 1).await;
    assert_eq!(big.root, "table:dev.silver.big");
    assert_eq!(
        neighbours(&big, &big.root, Direction::Upstream),
        ["table:dev.bronze.payments"],
        "no edge from a table to itself"
    );
    let edge = big
        .edges_of(&big.root, Direction::Upstream)
        .next()
        .expect("edge");
    assert_eq!(edge.writes, 2, "CTAS and INSERT read payments");
    assert_eq!(edge.last_operation, "INSERT INTO");
    assert_eq!(edge.last_actor, "alice");
    assert_eq!(edge.source_version, Some(2), "payments after its insert");
    assert_eq!(edge.target_version, Some(1), "big's second version");
    assert_eq!(
        neighbours(&big, &big.root, Direction::Downstream),
        ["table:dev.silver.big_view"]
    );
    // The DELETE read nothing but big itself: a write with no edge, still recorded.
    let operations: Vec<&str> = big
        .recent_writes
        .iter()
        .map(|w| w.operation.as_str())
        .collect();
    assert_eq!(
        operations,
        ["DELETE", "INSERT INTO", "CREATE TABLE AS SELECT"]
    );
    assert!(
        big.recent_writes[2]
            .statement
            .as_deref()
            .is_some_and(|s| s.starts_with("CREATE TABLE dev.silver.big AS SELECT")),
        "the statement is kept"
    );
    let view = big.node("table:dev.silver.big_view").expect("view node");
    assert_eq!(view.table_type.as_deref(), Some("VIEW"));

    // Three steps up from the summary: the view, the table under it, the bronze table.
    let summary = graph(&f, &f.owner, "dev.silver.summary", 3).await;
    assert_eq!(
        neighbours(&summary, "table:dev.silver.big_view", Direction::Upstream),
        ["table:dev.silver.big"]
    );
    assert_eq!(
        neighbours(&summary, "table:dev.silver.big", Direction::Upstream),
        ["table:dev.bronze.payments"]
    );
    let from_view = summary
        .edges_of(&summary.root, Direction::Upstream)
        .next()
        .expect("view edge");
    assert_eq!(from_view.source_version, None, "views have no versions");
    // One step only sees the view.
    let near = graph(&f, &f.owner, "dev.silver.summary", 1).await;
    assert_eq!(near.edges.len(), 1);

    // Downstream of bronze, two steps: big, then the view.
    let bronze = lineage_graph(
        f.store.as_ref(),
        &f.owner,
        "dev.bronze.payments",
        &[Direction::Downstream],
        2,
    )
    .await
    .expect("downstream");
    assert_eq!(
        neighbours(&bronze, "table:dev.silver.big", Direction::Downstream),
        ["table:dev.silver.big_view"]
    );
    assert!(neighbours(&bronze, &bronze.root, Direction::Upstream).is_empty());
}

#[tokio::test]
async fn time_travel_reads_record_the_version_read() {
    let f = Fixture::new().await;
    f.ok("INSERT INTO dev.bronze.payments VALUES (4, 40.0)")
        .await;
    f.ok("CREATE TABLE dev.silver.old AS SELECT * FROM dev.bronze.payments VERSION AS OF 1")
        .await;
    let old = graph(&f, &f.owner, "dev.silver.old", 1).await;
    let edge = old.edges.first().expect("edge");
    assert_eq!(edge.source, "table:dev.bronze.payments");
    assert_eq!(edge.source_version, Some(1));
    assert_eq!(edge.target_version, Some(0));
}

#[tokio::test]
async fn ingestion_links_files_to_the_table_and_its_quarantine() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("orders.csv");
    std::fs::write(&file, "id,amount\n1,10\n2,oops\n").expect("csv");
    f.lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &IngestSpec {
                table: "dev.bronze.orders".into(),
                sources: vec![file.clone()],
                format: None,
                columns: Some(vec![
                    crate::column("id", "bigint"),
                    crate::column("amount", "double"),
                ]),
            },
            &|_| {},
        )
        .await
        .expect("ingest");
    f.ok("CREATE TABLE dev.silver.orders AS SELECT * FROM dev.bronze.orders")
        .await;
    let silver = graph(&f, &f.owner, "dev.silver.orders", 2).await;
    let path = std::path::absolute(&file).expect("absolute");
    let file_id = format!("file:{}", path.display());
    assert_eq!(
        neighbours(&silver, "table:dev.bronze.orders", Direction::Upstream),
        vec![file_id.clone()]
    );
    let ingest = silver
        .edges_of("table:dev.bronze.orders", Direction::Upstream)
        .next()
        .expect("ingest edge");
    assert_eq!(ingest.last_operation, "INGEST");
    assert_eq!(ingest.target_version, Some(1));
    let node = silver.node(&file_id).expect("file node");
    assert_eq!(node.name.as_deref(), Some(path.to_str().expect("utf-8")));
    let quarantine = graph(&f, &f.owner, "dev.bronze.orders_quarantine", 1).await;
    assert_eq!(
        neighbours(&quarantine, &quarantine.root, Direction::Upstream),
        [file_id]
    );
}

#[tokio::test]
async fn callers_see_only_what_they_may_read() {
    let f = Fixture::new().await;
    f.ok("CREATE TABLE dev.silver.copy AS SELECT * FROM dev.bronze.payments")
        .await;
    // bob may read the copy but not the bronze table it came from.
    let refused = lineage_graph(f.store.as_ref(), &f.member, "dev.silver.copy", &BOTH, 1)
        .await
        .expect_err("no SELECT on the copy");
    assert_eq!(refused.code, ErrorCode::PermissionDenied);
    assert!(refused.message.contains("SELECT"), "{}", refused.message);
    f.grant(
        SecurableType::Table,
        "dev.silver.copy",
        "bob",
        &[Privilege::Select],
    )
    .await;
    let seen = graph(&f, &f.member, "dev.silver.copy", 3).await;
    let masked = seen
        .nodes
        .iter()
        .find(|n| n.masked)
        .expect("bronze is masked");
    assert_eq!(masked.name, None);
    assert!(masked.id.starts_with("masked:"));
    assert_eq!(
        neighbours(&seen, &seen.root, Direction::Upstream),
        vec![masked.id.clone()]
    );
    let json = serde_json::to_string(&seen).expect("json");
    assert!(
        !json.contains("bronze"),
        "not even in the statement: {json}"
    );
    assert_eq!(seen.recent_writes.len(), 1);
    assert_eq!(seen.recent_writes[0].actor, "alice");
    // With SELECT on bronze as well, it shows.
    f.grant(
        SecurableType::Schema,
        "dev.bronze",
        "bob",
        &[Privilege::Select],
    )
    .await;
    let seen = graph(&f, &f.member, "dev.silver.copy", 3).await;
    assert!(seen.node("table:dev.bronze.payments").is_some());

    // A dropped table is masked for members and shown as dropped to admins.
    f.ok("DROP TABLE dev.bronze.payments").await;
    let seen = graph(&f, &f.member, "dev.silver.copy", 1).await;
    assert!(seen.nodes.iter().any(|n| n.masked));
    let mut admin = f.member.clone();
    admin.principal.is_admin = true;
    let seen = graph(&f, &admin, "dev.silver.copy", 1).await;
    let dropped = seen.node("table:dev.bronze.payments").expect("dropped");
    assert!(!dropped.exists);

    let missing = lineage_graph(f.store.as_ref(), &f.owner, "dev.silver.nope", &BOTH, 1)
        .await
        .expect_err("missing");
    assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);
    let bad = lineage_graph(f.store.as_ref(), &f.owner, "not-a-name", &BOTH, 1)
        .await
        .expect_err("bad name");
    assert_eq!(bad.code, ErrorCode::InvalidParameterValue);
}
