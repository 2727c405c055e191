//! Optimize compacts small files; vacuum deletes only what the retention allows.

use tarn_core::ErrorCode;
use tarn_lake::{At, Lake, VacuumSpec, WriteMode};

use crate::{ids, new_table, payments};

fn data_files(location: &url::Url) -> usize {
    std::fs::read_dir(location.to_file_path().expect("path"))
        .expect("list")
        .filter(|entry| {
            entry
                .as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|e| e == "parquet")
        })
        .count()
}

#[tokio::test]
async fn optimize_compacts_and_vacuum_respects_the_retention_guard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::open(dir.path().to_str().expect("path")).expect("lake");
    let location = new_table(&lake).await;
    for id in 1..=5 {
        lake.write(
            &location,
            "t",
            vec![payments(&[id], &[id as f64])],
            WriteMode::Append,
            false,
        )
        .await
        .expect("append");
    }
    assert_eq!(data_files(&location), 5);

    let optimized = lake
        .optimize(&location, "t", None, Vec::new())
        .await
        .expect("optimize");
    assert_eq!(optimized.version, 6);
    assert_eq!(optimized.num_files_removed, 5);
    assert_eq!(optimized.num_files_added, 1);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [1, 2, 3, 4, 5]);
    let zordered = lake
        .optimize(&location, "t", None, vec!["nope".into()])
        .await
        .expect_err("unknown z-order column");
    assert_eq!(zordered.code, ErrorCode::InvalidParameterValue);

    // The removed files stay for the table's retention (7 days): vacuum keeps them.
    let kept = lake
        .vacuum(&location, "t", &VacuumSpec::default())
        .await
        .expect("vacuum");
    assert!(kept.files_deleted.is_empty(), "{:?}", kept.files_deleted);
    let guarded = lake
        .vacuum(
            &location,
            "dev.bronze.payments",
            &VacuumSpec {
                retention_hours: Some(0),
                ..VacuumSpec::default()
            },
        )
        .await
        .expect_err("below the retention");
    assert_eq!(guarded.code, ErrorCode::InvalidParameterValue);
    assert!(guarded.message.contains("168 hours"), "{}", guarded.message);
    assert_eq!(data_files(&location), 6);

    let dry = lake
        .vacuum(
            &location,
            "t",
            &VacuumSpec {
                retention_hours: Some(0),
                dry_run: true,
                skip_retention_check: true,
            },
        )
        .await
        .expect("dry run");
    assert_eq!(dry.files_deleted.len(), 5);
    assert_eq!(data_files(&location), 6, "a dry run deletes nothing");
    let done = lake
        .vacuum(
            &location,
            "t",
            &VacuumSpec {
                retention_hours: Some(0),
                dry_run: false,
                skip_retention_check: true,
            },
        )
        .await
        .expect("vacuum");
    assert_eq!(done.files_deleted.len(), 5);
    assert_eq!(data_files(&location), 1);
    let (_, batches) = lake.read(&location, "t", At::Latest).await.expect("read");
    assert_eq!(ids(&batches), [1, 2, 3, 4, 5]);
    // Old versions lost their files: reading one says which table.
    let old = lake
        .read(&location, "dev.bronze.payments", At::Version(2))
        .await
        .expect_err("vacuumed away");
    assert!(
        old.message.contains("dev.bronze.payments"),
        "{}",
        old.message
    );
}
