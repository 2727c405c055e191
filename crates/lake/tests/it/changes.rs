//! Merge, delete where, the change data feed and time travel by timestamp.

use tarn_core::ErrorCode;
use tarn_lake::arrow::array::{Array, Float64Array, StringArray};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::{At, Lake, MergeSpec, WriteMode};

use crate::{ids, new_table, payments, table_with};

fn amounts(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
    let mut rows = Vec::new();
    for batch in batches {
        let id = batch
            .column_by_name("id")
            .expect("id")
            .as_any()
            .downcast_ref::<tarn_lake::arrow::array::Int64Array>()
            .expect("int64");
        let amount = batch
            .column_by_name("amount")
            .expect("amount")
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("float64");
        for i in 0..batch.num_rows() {
            rows.push((id.value(i), amount.value(i)));
        }
    }
    rows.sort_by_key(|(id, _)| *id);
    rows
}

fn upsert_on_id() -> MergeSpec {
    MergeSpec {
        keys: vec!["id".into()],
        delete_unmatched: false,
    }
}

#[tokio::test]
async fn merge_updates_matching_rows_and_inserts_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    lake.write(
        &location,
        "t",
        vec![payments(&[1, 2, 3], &[10.0, 20.0, 30.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");

    let merged = lake
        .merge(
            &location,
            "t",
            vec![payments(&[2, 4], &[25.0, 40.0])],
            &upsert_on_id(),
        )
        .await
        .expect("merge");
    assert_eq!(merged.version, 2);
    assert_eq!(merged.num_source_rows, 2);
    assert_eq!(merged.num_updated_rows, 1);
    assert_eq!(merged.num_inserted_rows, 1);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(
        amounts(&batches),
        [(1, 10.0), (2, 25.0), (3, 30.0), (4, 40.0)]
    );

    // A full sync: rows the source lacks go.
    let synced = lake
        .merge(
            &location,
            "t",
            vec![payments(&[1, 4], &[11.0, 40.0])],
            &MergeSpec {
                keys: vec!["id".into()],
                delete_unmatched: true,
            },
        )
        .await
        .expect("sync");
    assert_eq!(synced.num_deleted_rows, 2);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(amounts(&batches), [(1, 11.0), (4, 40.0)]);

    for (spec, source, expected) in [
        (
            MergeSpec {
                keys: vec!["nope".into()],
                delete_unmatched: false,
            },
            payments(&[1], &[1.0]),
            "Merge key 'nope' is not a column",
        ),
        (
            MergeSpec {
                keys: vec![],
                delete_unmatched: false,
            },
            payments(&[1], &[1.0]),
            "needs at least one key",
        ),
    ] {
        let refused = lake
            .merge(&location, "dev.bronze.payments", vec![source], &spec)
            .await
            .expect_err("refused");
        assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
        assert!(refused.message.contains(expected), "{}", refused.message);
    }
    let extra_schema = std::sync::Arc::new(tarn_lake::arrow::datatypes::Schema::new(vec![
        tarn_lake::arrow::datatypes::Field::new(
            "id",
            tarn_lake::arrow::datatypes::DataType::Int64,
            true,
        ),
        tarn_lake::arrow::datatypes::Field::new(
            "note",
            tarn_lake::arrow::datatypes::DataType::Utf8,
            true,
        ),
    ]));
    let extra = RecordBatch::try_new(
        extra_schema,
        vec![
            std::sync::Arc::new(tarn_lake::arrow::array::Int64Array::from(vec![1])),
            std::sync::Arc::new(StringArray::from(vec!["x"])),
        ],
    )
    .expect("batch");
    let refused = lake
        .merge(
            &location,
            "dev.bronze.payments",
            vec![extra],
            &upsert_on_id(),
        )
        .await
        .expect_err("unknown column");
    assert!(refused.message.contains("note"), "{}", refused.message);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [1, 4], "refused merges changed nothing");
}

#[tokio::test]
async fn delete_where_removes_matching_rows_and_refuses_bad_predicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    lake.write(
        &location,
        "t",
        vec![payments(&[1, 2, 3, 4], &[10.0, 20.0, 30.0, 40.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");
    let deleted = lake
        .delete_where(&location, "t", "amount >= 20 AND id <> 4")
        .await
        .expect("delete");
    assert_eq!(deleted.version, 2);
    assert_eq!(deleted.num_deleted_rows, Some(2));
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [1, 4]);

    for predicate in [
        "",
        "no_such_column = 1",
        "id = 1; DROP TABLE x",
        "amount >>> 2",
    ] {
        let refused = lake
            .delete_where(&location, "dev.bronze.payments", predicate)
            .await
            .expect_err(predicate);
        assert_eq!(
            refused.code,
            ErrorCode::InvalidParameterValue,
            "{predicate}: {}",
            refused.message
        );
    }
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [1, 4]);
    let history = lake.history(&location, "t", 1).await.expect("history");
    assert_eq!(history[0].version, 2, "refused deletes committed nothing");
}

#[tokio::test]
async fn the_change_data_feed_shows_inserts_updates_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let plain = new_table(&lake).await;
    let refused = lake
        .changes(&plain, "dev.bronze.payments", 0, None)
        .await
        .expect_err("no feed");
    assert!(
        refused.message.contains("delta.enableChangeDataFeed"),
        "{}",
        refused.message
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = table_with(&lake, &[("delta.enableChangeDataFeed", "true")]).await;
    lake.write(
        &location,
        "t",
        vec![payments(&[1, 2], &[10.0, 20.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");
    lake.merge(
        &location,
        "t",
        vec![payments(&[2, 3], &[21.0, 30.0])],
        &upsert_on_id(),
    )
    .await
    .expect("merge");
    lake.delete_where(&location, "t", "id = 1")
        .await
        .expect("delete");

    let (_, batches) = lake.changes(&location, "t", 2, None).await.expect("feed");
    let mut changes: Vec<(i64, String, i64)> = Vec::new();
    for batch in &batches {
        let id = batch
            .column_by_name("id")
            .expect("id")
            .as_any()
            .downcast_ref::<tarn_lake::arrow::array::Int64Array>()
            .expect("int64")
            .clone();
        let kind = batch
            .column_by_name("_change_type")
            .expect("_change_type")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("utf8")
            .clone();
        let version = tarn_lake::arrow::compute::cast(
            batch
                .column_by_name("_commit_version")
                .expect("_commit_version"),
            &tarn_lake::arrow::datatypes::DataType::Int64,
        )
        .expect("cast");
        let version = version
            .as_any()
            .downcast_ref::<tarn_lake::arrow::array::Int64Array>()
            .expect("int64")
            .clone();
        for i in 0..batch.num_rows() {
            changes.push((version.value(i), kind.value(i).to_string(), id.value(i)));
        }
    }
    changes.sort();
    assert_eq!(
        changes,
        [
            (2, "insert".to_string(), 3),
            (2, "update_postimage".to_string(), 2),
            (2, "update_preimage".to_string(), 2),
            (3, "delete".to_string(), 1),
        ]
    );
    let (_, only_inserts) = lake.changes(&location, "t", 1, Some(1)).await.expect("v1");
    assert_eq!(ids(&only_inserts), [1, 2]);
    let future = lake
        .changes(&location, "dev.bronze.payments", 9, None)
        .await
        .expect_err("no version 9");
    assert_eq!(future.code, ErrorCode::InvalidParameterValue);
}

#[tokio::test]
async fn time_travel_by_timestamp_finds_the_version_current_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    lake.write(
        &location,
        "t",
        vec![payments(&[1], &[1.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");
    let history = lake.history(&location, "t", 10).await.expect("history");
    let first_write = history[0].info.timestamp.expect("timestamp");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    lake.write(
        &location,
        "t",
        vec![payments(&[2], &[2.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");

    let at = At::parse(None, Some(&first_write.to_string())).expect("millis");
    let (_, batches) = lake.read(&location, "t", at).await.expect("read");
    assert_eq!(ids(&batches), [1]);
    let rfc3339 = rfc3339(first_write + 5);
    let (_, batches) = lake
        .read(
            &location,
            "t",
            At::parse(None, Some(&rfc3339)).expect("rfc3339"),
        )
        .await
        .expect("read");
    assert_eq!(ids(&batches), [1]);
    let (_, batches) = lake
        .read(
            &location,
            "t",
            At::parse(None, Some("2999-01-01T00:00:00Z")).expect("future"),
        )
        .await
        .expect("read");
    assert_eq!(ids(&batches), [1, 2], "a later moment reads the latest");
    let before = lake
        .read(
            &location,
            "dev.bronze.payments",
            At::parse(None, Some("2001-01-01")).expect("date"),
        )
        .await
        .expect_err("before the table");
    assert_eq!(before.code, ErrorCode::InvalidParameterValue);
    assert!(
        before.message.contains("did not exist yet"),
        "{}",
        before.message
    );

    for (version, timestamp) in [
        (Some(1), Some("2026-01-01")),
        (Some(-1), None),
        (None, Some("yesterday")),
    ] {
        assert!(At::parse(version, timestamp).is_err());
    }
}

/// RFC 3339 for milliseconds since the epoch, via the parser's own round trip.
fn rfc3339(millis: i64) -> String {
    let at = tarn_lake::parse_timestamp(&millis.to_string()).expect("millis");
    at.to_rfc3339()
}

/// What a continuous job leans on: an update-only merge that records how far it read in the
/// same commit, a lookup by keys (cast to the keys' types), turning the change feed on for a
/// table made without it, and nothing written for no rows.
#[tokio::test]
async fn update_matching_records_progress_and_lookup_joins_on_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    lake.write(
        &location,
        "t",
        vec![payments(&[1, 2, 3], &[10.0, 20.0, 30.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");

    let updated = lake
        .update_matching(
            &location,
            "t",
            vec![payments(&[2, 9], &[25.0, 90.0])],
            &["id".to_string()],
            ("labels", 7),
        )
        .await
        .expect("update");
    assert_eq!(
        (updated.num_updated_rows, updated.num_inserted_rows),
        (1, 0)
    );
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(amounts(&batches), [(1, 10.0), (2, 25.0), (3, 30.0)]);
    assert_eq!(
        lake.recorded_version(&location, "t", "labels")
            .await
            .expect("recorded"),
        Some(7)
    );

    // Keys as strings find the table's integers.
    let keys = RecordBatch::try_new(
        std::sync::Arc::new(tarn_lake::arrow::datatypes::Schema::new(vec![
            tarn_lake::arrow::datatypes::Field::new(
                "id",
                tarn_lake::arrow::datatypes::DataType::Utf8,
                true,
            ),
        ])),
        vec![std::sync::Arc::new(StringArray::from(vec!["3", "4", "2"]))],
    )
    .expect("keys");
    let found = lake
        .lookup(&location, "t", keys, "amount")
        .await
        .expect("lookup");
    let mut pairs: Vec<(String, f64)> = Vec::new();
    for batch in &found {
        let id = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("id");
        let amount = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("amount");
        for i in 0..batch.num_rows() {
            pairs.push((id.value(i).to_string(), amount.value(i)));
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(pairs, [("2".to_string(), 25.0), ("3".to_string(), 30.0)]);

    let feed = lake
        .changes(&location, "t", 0, None)
        .await
        .expect_err("no feed");
    assert_eq!(feed.code, ErrorCode::InvalidParameterValue);
    lake.enable_change_feed(&location, "t")
        .await
        .expect("enable");
    lake.enable_change_feed(&location, "t")
        .await
        .expect("twice is once");
    lake.write(
        &location,
        "t",
        vec![payments(&[4], &[40.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");
    let (_, changes) = lake.changes(&location, "t", 4, None).await.expect("feed");
    assert_eq!(ids(&changes), [4]);

    let nothing = lake
        .write(&location, "t", Vec::new(), WriteMode::Append, false)
        .await
        .expect_err("no rows");
    assert!(nothing.message.contains("No rows"), "{}", nothing.message);
}
