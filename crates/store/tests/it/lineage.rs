//! Backend-independent behaviour of the lineage graph.

use std::sync::Arc;

use tarn_core::lineage::{Direction, NewLineage, Node, SourceRead};
use tarn_core::store::MetaStore;

type Store = Arc<dyn MetaStore>;

fn write(target: &str, version: i64, sources: &[(Node, Option<i64>)], at: i64) -> NewLineage {
    NewLineage {
        target: Node::table(target),
        target_version: Some(version),
        sources: sources
            .iter()
            .map(|(node, version)| SourceRead {
                node: node.clone(),
                version: *version,
            })
            .collect(),
        operation: "INSERT INTO".into(),
        actor: format!("user{at}"),
        statement: Some(format!("INSERT INTO {target} ...")),
        created_at: at,
    }
}

pub async fn edges_group_writes_and_keep_the_newest_details(store: Store) {
    let file = Node::file("/landing/orders.csv");
    let bronze = Node::table("dev.bronze.orders");
    let customers = Node::table("prod.ref.customers");
    // Ingest, then two writes of silver from bronze (+ customers once), one reading bronze
    // twice at different versions.
    store
        .record_lineage(&NewLineage {
            operation: "INGEST".into(),
            statement: None,
            ..write("dev.bronze.orders", 1, &[(file.clone(), None)], 1)
        })
        .await
        .expect("ingest");
    store
        .record_lineage(&write(
            "dev.silver.orders",
            0,
            &[(bronze.clone(), Some(1)), (customers.clone(), Some(7))],
            2,
        ))
        .await
        .expect("first");
    let newest = store
        .record_lineage(&write(
            "dev.silver.orders",
            1,
            &[(bronze.clone(), Some(1)), (bronze.clone(), Some(2))],
            3,
        ))
        .await
        .expect("second");
    // A write that read nothing (an upload) is recorded too.
    store
        .record_lineage(&write("dev.silver.orders", 2, &[], 4))
        .await
        .expect("upload");

    let silver = Node::table("dev.silver.orders");
    let upstream = store
        .lineage_edges(&silver, Direction::Upstream)
        .await
        .expect("upstream");
    let sources: Vec<(&str, i64)> = upstream
        .iter()
        .map(|e| (e.source.name.as_str(), e.writes))
        .collect();
    assert_eq!(
        sources,
        [("dev.bronze.orders", 2), ("prod.ref.customers", 1)]
    );
    let from_bronze = &upstream[0];
    assert_eq!(from_bronze.last_write_id, newest);
    assert_eq!(
        from_bronze.source_version,
        Some(2),
        "the newest version read"
    );
    assert_eq!(from_bronze.target_version, Some(1));
    assert_eq!(from_bronze.last_actor, "user3");
    assert_eq!(from_bronze.last_timestamp, 3);
    assert_eq!(from_bronze.target, silver);
    assert_eq!(upstream[1].source_version, Some(7));

    let downstream = store
        .lineage_edges(&file, Direction::Downstream)
        .await
        .expect("downstream");
    assert_eq!(downstream.len(), 1);
    assert_eq!(downstream[0].target, bronze);
    assert_eq!(downstream[0].last_operation, "INGEST");
    assert_eq!(downstream[0].source_version, None);
    let from_bronze = store
        .lineage_edges(&bronze, Direction::Downstream)
        .await
        .expect("bronze downstream");
    assert_eq!(from_bronze.len(), 1);
    assert_eq!(from_bronze[0].target, silver);
    assert_eq!(from_bronze[0].writes, 2);
    assert!(
        store
            .lineage_edges(&Node::table("dev.none.here"), Direction::Upstream)
            .await
            .expect("none")
            .is_empty()
    );

    let writes = store.lineage_writes(&silver, 2).await.expect("writes");
    let versions: Vec<Option<i64>> = writes.iter().map(|w| w.target_version).collect();
    assert_eq!(versions, [Some(2), Some(1)], "newest first, limited");
    assert_eq!(writes[1].id, newest);
    assert_eq!(
        writes[1].statement.as_deref(),
        Some("INSERT INTO dev.silver.orders ...")
    );
}
