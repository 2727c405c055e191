//! Ingestion of CSV, JSON lines and Parquet: inferred or existing schemas, each file once,
//! bad rows quarantined with their reason, grants checked.

use tarn_core::ErrorCode;
use tarn_core::catalog::{PermissionsChange, Privilege, SecurableType};
use tarn_lake::catalog::location_of;
use tarn_lake::ingest::{IngestSpec, Progress, SourceFormat};
use tarn_lake::{At, ipc};

use crate::payments;
use crate::sql::Fixture;

fn spec(table: &str, sources: &[&std::path::Path]) -> IngestSpec {
    IngestSpec {
        table: table.into(),
        sources: sources.iter().map(|p| p.to_path_buf()).collect(),
        format: None,
        columns: None,
    }
}

fn quiet(_: Progress) {}

async fn count(f: &Fixture, table: &str) -> i64 {
    let output = f.ok(&format!("SELECT count(*) FROM {table}")).await;
    crate::sql::longs(&output)[0]
}

#[tokio::test]
async fn csv_files_are_ingested_once_with_bad_rows_quarantined() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("day1.csv"),
        "id,amount,country,paid_at\n\
         1,10.5,FR,2026-11-24 08:00:00\n\
         2,20,DE,2026-11-24 09:00:00\n\
         3,30,FR\n\
         4,40,,2026-11-24T10:00:00Z\n",
    )
    .expect("csv");
    let report = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &spec("dev.bronze.events", &[dir.path()]),
            &quiet,
        )
        .await
        .expect("ingest");
    assert!(report.created);
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].rows_written, 3);
    assert_eq!(report.files[0].rows_quarantined, 1);
    assert_eq!(
        report.quarantine_table.as_deref(),
        Some("dev.bronze.events_quarantine")
    );
    let table = f
        .store
        .get_table("dev", "bronze", "events")
        .await
        .expect("table");
    let types: Vec<&str> = table.columns.iter().map(|c| c.type_text.as_str()).collect();
    assert_eq!(types, ["long", "double", "string", "timestamp"]);
    assert_eq!(count(&f, "bronze.events").await, 3);
    let reasons = f
        .ok("SELECT line, reason FROM bronze.events_quarantine ORDER BY line")
        .await;
    assert_eq!(crate::sql::longs(&reasons), [4]);
    let text = tarn_lake::arrow::util::pretty::pretty_format_batches(&reasons.batches)
        .expect("format")
        .to_string();
    assert!(text.contains("expected 4 fields, found 3"), "{text}");

    // Again: nothing new. A new file in the folder: only it.
    let again = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &spec("dev.bronze.events", &[dir.path()]),
            &quiet,
        )
        .await
        .expect("again");
    assert!(again.files.is_empty());
    assert_eq!(again.skipped.len(), 1);
    std::fs::write(
        dir.path().join("day2.csv"),
        "id,amount,country,paid_at\n5,50,IT,2026-11-25 08:00:00\n6,x,IT,nope\n",
    )
    .expect("csv");
    let planned = std::sync::Mutex::new(Vec::new());
    let record = |event: Progress| {
        if let Progress::Planned { files, .. } = event {
            planned.lock().expect("lock").push(files);
        }
    };
    let next = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &spec("dev.bronze.events", &[dir.path()]),
            &record,
        )
        .await
        .expect("next");
    assert_eq!(planned.into_inner().expect("lock"), [1]);
    assert_eq!(next.files.len(), 1);
    assert!(next.files[0].source.ends_with("day2.csv"));
    assert_eq!(next.files[0].rows_quarantined, 1);
    assert_eq!(count(&f, "bronze.events").await, 4);
    let bad = f
        .ok("SELECT reason, record FROM bronze.events_quarantine WHERE line = 3")
        .await;
    let text = tarn_lake::arrow::util::pretty::pretty_format_batches(&bad.batches)
        .expect("format")
        .to_string();
    assert!(
        text.contains("column 'amount': cannot read 'x' as double"),
        "{text}"
    );
    assert!(text.contains("\"country\":\"IT\""), "{text}");
}

#[tokio::test]
async fn json_lines_and_parquet_go_into_existing_tables() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("more.jsonl");
    std::fs::write(
        &json,
        "{\"id\": 10, \"amount\": 1.5}\n\
         {\"id\": \"eleven\", \"amount\": 2}\n\
         not json\n\
         {\"id\": 12, \"amount\": 3, \"extra\": true}\n\
         [1, 2]\n\
         \n\
         {\"id\": 13}\n",
    )
    .expect("json");
    let report = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &spec("dev.bronze.payments", &[&json]),
            &quiet,
        )
        .await
        .expect("json");
    assert!(!report.created);
    assert_eq!(report.files[0].rows_written, 2);
    assert_eq!(report.files[0].rows_quarantined, 4);
    assert_eq!(count(&f, "bronze.payments").await, 5);

    let batch = payments(&[20, 21], &[20.0, 21.0]);
    let parquet = dir.path().join("batch.parquet");
    std::fs::write(
        &parquet,
        ipc::encode_parquet(&batch.schema(), &[batch]).expect("parquet"),
    )
    .expect("write");
    let report = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &IngestSpec {
                format: Some(SourceFormat::Parquet),
                ..spec("dev.bronze.payments", &[&parquet])
            },
            &quiet,
        )
        .await
        .expect("parquet");
    assert_eq!(report.files[0].rows_written, 2);
    assert_eq!(count(&f, "bronze.payments").await, 7);
    let table = f
        .store
        .get_table("dev", "bronze", "payments")
        .await
        .expect("table");
    let (_, rows) = f
        .lake
        .read(&location_of(&table).expect("location"), "t", At::Latest)
        .await
        .expect("read");
    assert_eq!(
        crate::ids(&rows),
        [1, 2, 3, 10, 12, 13, 20, 21]
            .into_iter()
            .filter(|id| *id != 12)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn ingestion_checks_grants_like_sql() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("p.csv");
    std::fs::write(&csv, "id,amount\n7,7.0\n").expect("csv");
    let denied = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.member,
            &spec("dev.bronze.payments", &[&csv]),
            &quiet,
        )
        .await
        .expect_err("no MODIFY");
    assert_eq!(denied.code, ErrorCode::PermissionDenied);
    assert!(denied.message.contains("MODIFY"), "{}", denied.message);
    f.store
        .update_catalog_grants(
            "dev",
            SecurableType::Table,
            "dev.bronze.payments",
            &[PermissionsChange {
                principal: "bob".into(),
                add: vec![Privilege::Modify],
                remove: vec![],
            }],
            &f.owner.actor(),
        )
        .await
        .expect("grant");
    f.lake
        .ingest(
            f.store.as_ref(),
            &f.member,
            &spec("dev.bronze.payments", &[&csv]),
            &quiet,
        )
        .await
        .expect("granted");
    // A new table in the member's own catalog needs no grant; prod is read-only from dev.
    f.lake
        .ingest(
            f.store.as_ref(),
            &f.member,
            &spec("dev.silver.mine", &[&csv]),
            &quiet,
        )
        .await
        .expect("create");
    f.store
        .set_catalog_binding("prod", "dev", true, &f.owner.actor())
        .await
        .expect("bind");
    let mut admin = f.owner.clone();
    admin.principal.is_admin = true;
    let read_only = f
        .lake
        .ingest(
            f.store.as_ref(),
            &admin,
            &spec("prod.bronze.payments", &[&csv]),
            &quiet,
        )
        .await
        .expect_err("read-only");
    assert!(
        read_only.message.contains("read-only"),
        "{}",
        read_only.message
    );
    let missing = f
        .lake
        .ingest(
            f.store.as_ref(),
            &f.owner,
            &spec("dev.bronze.payments", &[&dir.path().join("nope.csv")]),
            &quiet,
        )
        .await
        .expect_err("missing file");
    assert_eq!(missing.code, ErrorCode::InvalidParameterValue);
}
