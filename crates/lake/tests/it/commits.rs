//! The commit watcher: commits another Delta writer makes to a table become `table.committed`
//! events; tarn's own commits are recorded by the writes that make them, once.

use deltalake::protocol::SaveMode;
use tarn_core::events::{Change, EventQuery};
use tarn_lake::commits::record_outside_commits;

use crate::payments;
use crate::sql::Fixture;

async fn committed(f: &Fixture) -> Vec<(i64, String, bool, String)> {
    f.store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            entity: Some("table".into()),
            object: Some("dev.bronze.payments".into()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .into_iter()
        .filter_map(|event| match event.change {
            Change::TableCommitted {
                version,
                operation,
                outside,
                ..
            } => Some((version, operation, outside, event.actor)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn another_writers_commits_become_events_and_tarns_own_are_not_repeated() {
    let f = Fixture::new().await;
    // The first scan takes the tables as they are.
    let first = record_outside_commits(f.store.as_ref())
        .await
        .expect("scan");
    assert!(first.tables >= 1);
    assert_eq!(first.outside_commits, 0);
    let before = committed(&f).await;

    f.ok("INSERT INTO dev.bronze.payments VALUES (4, 40.0)")
        .await;
    let after_insert = committed(&f).await;
    let (insert_version, operation, outside, actor) =
        after_insert.last().cloned().expect("the insert's event");
    assert_eq!(after_insert.len(), before.len() + 1);
    assert_eq!(
        (operation.as_str(), outside, actor.as_str()),
        ("INSERT INTO", false, "alice")
    );
    let scanned = record_outside_commits(f.store.as_ref())
        .await
        .expect("scan");
    assert_eq!(
        scanned.outside_commits, 0,
        "tarn's own commit is not repeated"
    );

    // Another writer appends twice, straight to the table's storage.
    let table = f
        .store
        .get_table("dev", "bronze", "payments")
        .await
        .expect("table");
    let location = url::Url::parse(&table.storage_location).expect("location");
    for id in [5, 6] {
        let outside_table = deltalake::open_table(location.clone()).await.expect("open");
        outside_table
            .write(vec![payments(&[id], &[id as f64])])
            .with_save_mode(SaveMode::Append)
            .await
            .expect("outside write");
    }
    let scanned = record_outside_commits(f.store.as_ref())
        .await
        .expect("scan");
    assert_eq!(scanned.outside_commits, 2);
    let events = committed(&f).await;
    let outside: Vec<_> = events
        .iter()
        .filter(|(_, _, outside, _)| *outside)
        .collect();
    assert_eq!(
        outside
            .iter()
            .map(|(version, operation, _, _)| (*version, operation.as_str()))
            .collect::<Vec<_>>(),
        [(insert_version + 1, "WRITE"), (insert_version + 2, "WRITE")]
    );
    assert!(
        outside
            .iter()
            .all(|(_, _, _, writer)| writer.starts_with("delta-rs")),
        "the writer is named: {outside:?}"
    );
    // Nothing new, nothing recorded twice.
    let again = record_outside_commits(f.store.as_ref())
        .await
        .expect("scan");
    assert_eq!(again.outside_commits, 0);
    assert_eq!(committed(&f).await.len(), events.len());
}
