//! The lake against real Delta tables in a temporary folder.

use std::collections::BTreeMap;
use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::catalog::ColumnInfo;
use tarn_lake::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::{At, Lake, WriteMode, field_of, ipc};

mod changes;
mod commits;
mod ingest;
mod lineage;
mod maintenance;
mod properties;
mod sql;

pub(crate) fn column(name: &str, sql: &str) -> ColumnInfo {
    ColumnInfo::new(name, sql)
}

pub(crate) fn payments(ids: &[i64], amounts: &[f64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(Float64Array::from(amounts.to_vec())),
        ],
    )
    .expect("batch")
}

pub(crate) fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let column = b
                .column_by_name("id")
                .expect("id")
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64")
                .clone();
            (0..column.len()).map(move |i| column.value(i))
        })
        .collect();
    ids.sort_unstable();
    ids
}

pub(crate) async fn new_table(lake: &Lake) -> url::Url {
    table_with(lake, &[]).await
}

/// A `dev.bronze.payments` table (id, amount) with the given Delta properties.
pub(crate) async fn table_with(lake: &Lake, properties: &[(&str, &str)]) -> url::Url {
    let properties: BTreeMap<String, String> = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let location = lake
        .managed_location("dev", "bronze", "payments", "t1")
        .expect("location");
    let fields = vec![
        field_of(&column("id", "bigint")).expect("id"),
        field_of(&column("amount", "double")).expect("amount"),
    ];
    let columns = lake
        .create_table(
            &location,
            "dev.bronze.payments",
            fields,
            &[],
            "payments",
            &properties,
        )
        .await
        .expect("create");
    assert_eq!(columns.len(), 2);
    location
}

#[tokio::test]
async fn tables_are_created_written_read_and_travelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    assert!(lake.contains(&location));

    let first = lake
        .write(
            &location,
            "t",
            vec![payments(&[1, 2], &[10.0, 20.0])],
            WriteMode::Append,
            false,
        )
        .await
        .expect("append");
    assert_eq!((first.version, first.rows), (1, 2));
    lake.write(
        &location,
        "t",
        vec![payments(&[3], &[30.0])],
        WriteMode::Append,
        false,
    )
    .await
    .expect("append");
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [1, 2, 3]);
    let (_, at_one) = lake
        .read(&location, "t", At::Version(1))
        .await
        .expect("version 1");
    assert_eq!(ids(&at_one), [1, 2]);
    let missing = lake
        .read(&location, "t", At::Version(9))
        .await
        .expect_err("no version 9");
    assert_eq!(missing.code, ErrorCode::InvalidParameterValue);

    let overwritten = lake
        .write(
            &location,
            "t",
            vec![payments(&[7], &[70.0])],
            WriteMode::Overwrite,
            false,
        )
        .await
        .expect("overwrite");
    assert_eq!(overwritten.version, 3);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [7]);

    let history = lake.history(&location, "t", 10).await.expect("history");
    let versions: Vec<u64> = history.iter().map(|c| c.version).collect();
    assert_eq!(versions, [3, 2, 1, 0]);
    assert_eq!(history[0].info.operation.as_deref(), Some("WRITE"));
    assert_eq!(history[3].info.operation.as_deref(), Some("CREATE TABLE"));

    // Arrow IPC round trip of what was read.
    let (schema, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    let bytes = ipc::encode(&schema, &batches).expect("encode");
    let (decoded_schema, decoded) = ipc::decode(&bytes).expect("decode");
    assert_eq!(decoded_schema, schema);
    assert_eq!(ids(&decoded), [7]);
}

#[tokio::test]
async fn data_that_does_not_fit_is_refused_and_new_columns_need_consent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    let wider_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("currency", DataType::Utf8, true),
    ]));
    let wider = RecordBatch::try_new(
        wider_schema,
        vec![
            Arc::new(Int64Array::from(vec![5])),
            Arc::new(Float64Array::from(vec![5.0])),
            Arc::new(StringArray::from(vec!["EUR"])),
        ],
    )
    .expect("batch");
    let refused = lake
        .write(
            &location,
            "dev.bronze.payments",
            vec![wider.clone()],
            WriteMode::Append,
            false,
        )
        .await
        .expect_err("new column without merge");
    assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
    assert!(
        refused.message.contains("dev.bronze.payments"),
        "{}",
        refused.message
    );
    let evolved = lake
        .write(
            &location,
            "dev.bronze.payments",
            vec![wider],
            WriteMode::Append,
            true,
        )
        .await
        .expect("merge schema");
    let names: Vec<&str> = evolved.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "amount", "currency"]);
    assert_eq!(evolved.version, 1);

    let wrong_type = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
    let wrong = RecordBatch::try_new(wrong_type, vec![Arc::new(StringArray::from(vec!["x"]))])
        .expect("batch");
    let refused = lake
        .write(
            &location,
            "dev.bronze.payments",
            vec![wrong],
            WriteMode::Append,
            false,
        )
        .await
        .expect_err("wrong type");
    assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [5], "refused writes left nothing");
}

#[tokio::test]
async fn broken_tables_give_errors_naming_the_table() {
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
    let folder = location.to_file_path().expect("path");
    // A data file gone missing.
    for entry in std::fs::read_dir(&folder).expect("list") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::remove_file(path).expect("remove");
        }
    }
    let broken = lake
        .read(&location, "dev.bronze.payments", At::Latest)
        .await
        .expect_err("missing file");
    assert!(
        broken.message.contains("dev.bronze.payments"),
        "{}",
        broken.message
    );
    // No Delta log at all.
    std::fs::remove_dir_all(folder.join("_delta_log")).expect("remove log");
    let gone = lake
        .read(&location, "dev.bronze.payments", At::Latest)
        .await
        .expect_err("no log");
    assert!(
        gone.message.contains("dev.bronze.payments"),
        "{}",
        gone.message
    );
    assert!(gone.message.contains("no Delta log"), "{}", gone.message);

    let bad_create = lake
        .create_table(
            &lake
                .managed_location("dev", "bronze", "x", "t2")
                .expect("location"),
            "dev.bronze.x",
            vec![field_of(&column("id", "bigint")).expect("id")],
            &["nope".to_string()],
            "",
            &BTreeMap::new(),
        )
        .await
        .expect_err("unknown partition column");
    assert_eq!(bad_create.code, ErrorCode::InvalidParameterValue);
    lake.remove_managed(&location).await.expect("remove");
    assert!(!folder.exists());
    assert!(
        lake.remove_managed(&url::Url::parse("file:///etc/").expect("url"))
            .await
            .is_err()
    );
}
