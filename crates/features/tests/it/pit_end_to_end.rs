//! Feature tables and training sets on real Delta tables: the point-in-time rules case by
//! case (exact times, windows, corrections, unknown keys, null values, duplicate labels),
//! pinned versions, refusals, permissions and on-demand features.

use std::collections::BTreeMap;
use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::PrincipalKind;
use tarn_core::caller::Caller;
use tarn_core::catalog::NewSchema;
use tarn_core::features::{FeatureLookup, LabelSource, OnDemandFeature, TrainingSetSpec};
use tarn_core::lineage::Direction;
use tarn_core::store::MetaStore;
use tarn_features::tables::{FeatureRows, NewFeatureTable};
use tarn_features::{tables, training};
use tarn_lake::arrow::array::{
    Array, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tarn_lake::catalog::{ManagedTable, location_of};
use tarn_lake::{Lake, WriteMode, columns_of_arrow};

pub(crate) const DAY: i64 = 86_400_000_000;

pub(crate) struct Fixture {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) store: Arc<dyn MetaStore>,
    pub(crate) lake: Lake,
    pub(crate) alice: Caller,
    pub(crate) bob: Caller,
}

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    )
}

fn times(days: &[Option<i64>]) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from(days.iter().map(|d| d.map(|d| d * DAY)).collect::<Vec<_>>())
        .with_timezone("UTC")
}

/// Feature rows: (customer, day, spend, visits).
pub(crate) fn spend_rows(rows: &[(i64, i64, Option<f64>, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, true),
            ts_field("ts"),
            Field::new("spend", DataType::Float64, true),
            Field::new("visits", DataType::Int64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(times(&rows.iter().map(|r| Some(r.1)).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch")
}

/// Label rows: (customer, day, label).
fn label_rows(rows: &[(Option<i64>, Option<i64>, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("cust", DataType::Int64, true),
            ts_field("event_ts"),
            Field::new("label", DataType::Float64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(times(&rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch")
}

impl Fixture {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tarn_store::open(&format!(
            "sqlite://{}",
            dir.path().join("tarn.db").display()
        ))
        .await
        .expect("store");
        let lake = Lake::open(dir.path().join("lake").to_str().expect("path")).expect("lake");
        store
            .ensure_workspace("dev", "tester")
            .await
            .expect("workspace");
        let mut callers = Vec::new();
        for name in ["alice", "bob"] {
            let principal = store
                .create_principal(name, PrincipalKind::User, false, None, "tester")
                .await
                .expect("user");
            callers.push(Caller::new(
                "dev",
                tarn_core::auth::Principal {
                    id: principal.id,
                    name: principal.name,
                    kind: principal.kind,
                    is_admin: false,
                    group_ids: Vec::new(),
                    only_workspace: None,
                },
            ));
        }
        let bob = callers.pop().expect("bob");
        let alice = callers.pop().expect("alice");
        store
            .create_schema(
                &NewSchema {
                    catalog: "dev".into(),
                    name: "features".into(),
                    comment: String::new(),
                    properties: Default::default(),
                },
                &alice.actor(),
            )
            .await
            .expect("schema");
        Self {
            _dir: dir,
            store,
            lake,
            alice,
            bob,
        }
    }

    pub(crate) async fn spend_table(&self) {
        tables::create(
            &self.lake,
            self.store.as_ref(),
            &self.alice,
            NewFeatureTable {
                name: "dev.features.spend".into(),
                primary_keys: vec!["customer_id".into(), "ts".into()],
                timestamp_key: Some("ts".into()),
                description: "Daily spend".into(),
                ..Default::default()
            },
            FeatureRows::Data(vec![spend_rows(&[
                (1, 1, Some(1.0), 10),
                (1, 3, Some(3.0), 30),
                (2, 2, None, 5),
                (1, 5, Some(5.0), 50),
            ])]),
        )
        .await
        .expect("feature table");
    }

    async fn labels(&self, rows: &[(Option<i64>, Option<i64>, f64)]) {
        let batch = label_rows(rows);
        let table = self
            .lake
            .create_managed(
                self.store.as_ref(),
                &self.alice.actor(),
                ManagedTable {
                    catalog: "dev".into(),
                    schema: "features".into(),
                    name: "labels".into(),
                    columns: columns_of_arrow(&batch.schema()).expect("columns"),
                    ..Default::default()
                },
            )
            .await
            .expect("labels");
        self.lake
            .write(
                &location_of(&table).expect("location"),
                &table.full_name,
                vec![batch],
                WriteMode::Append,
                false,
            )
            .await
            .expect("write labels");
    }
}

fn lookup() -> FeatureLookup {
    FeatureLookup {
        table_name: "dev.features.spend".into(),
        lookup_key: vec!["cust".into()],
        timestamp_lookup_key: Some("event_ts".into()),
        rename_outputs: BTreeMap::from([("spend".into(), "spend_now".into())]),
        default_values: BTreeMap::from([("visits".into(), serde_json::json!(0))]),
        ..Default::default()
    }
}

fn spec(lookups: Vec<FeatureLookup>) -> TrainingSetSpec {
    TrainingSetSpec {
        label: LabelSource {
            table: Some("dev.features.labels".into()),
            ..Default::default()
        },
        feature_lookups: lookups,
        ..Default::default()
    }
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("{name}"));
    let column = column.as_any().downcast_ref::<Float64Array>().expect("f64");
    column.iter().collect()
}

fn ints(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let column = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("{name}"));
    let column = column.as_any().downcast_ref::<Int64Array>().expect("i64");
    column.iter().collect()
}

#[tokio::test]
async fn each_label_row_gets_the_latest_feature_row_at_its_time() {
    let f = Fixture::new().await;
    f.spend_table().await;
    // A late correction of customer 1 on day 3 replaces the value in a new version.
    let merged = tables::write(
        &f.lake,
        f.store.as_ref(),
        &f.alice,
        "dev.features.spend",
        vec![spend_rows(&[(1, 3, Some(30.0), 33)])],
    )
    .await
    .expect("correction");
    assert_eq!((merged.num_updated_rows, merged.num_inserted_rows), (1, 0));
    f.labels(&[
        (Some(1), Some(0), 0.0),  // before the customer's first row
        (Some(1), Some(3), 1.0),  // exactly at a feature time: that row counts
        (Some(1), Some(3), 2.0),  // a duplicate label row stays a row of its own
        (Some(1), Some(4), 3.0),  // between rows: the earlier one
        (Some(2), Some(2), 4.0),  // the matched row's null stays null
        (Some(3), Some(4), 5.0),  // a key the table lacks
        (None, Some(4), 6.0),     // a null key matches nothing
        (Some(1), None, 7.0),     // nor does a null time
        (Some(1), Some(30), 8.0), // long after the last row, no window
    ])
    .await;
    let built = training::create(
        &f.lake,
        f.store.as_ref(),
        &f.alice,
        spec(vec![lookup()]),
        None,
    )
    .await
    .expect("training set");
    let batch = &built.batch;
    assert_eq!(batch.num_rows(), 9, "one row per label row, in order");
    assert_eq!(
        floats(batch, "label"),
        (0..9).map(|i| Some(i as f64)).collect::<Vec<_>>()
    );
    assert_eq!(
        floats(batch, "spend_now"),
        [
            None,
            Some(30.0),
            Some(30.0),
            Some(30.0),
            None,
            None,
            None,
            None,
            Some(5.0)
        ]
    );
    assert_eq!(
        ints(batch, "visits"),
        [
            Some(0),
            Some(33),
            Some(33),
            Some(33),
            Some(5),
            Some(0),
            Some(0),
            Some(0),
            Some(50)
        ],
        "defaults only where nothing matched"
    );
    let set = &built.training_set;
    assert_eq!(set.num_rows, 9);
    let read: Vec<(&str, u64)> = set
        .tables_read
        .iter()
        .map(|t| (t.name.as_str(), t.version))
        .collect();
    assert_eq!(
        read,
        [("dev.features.labels", 1), ("dev.features.spend", 2)]
    );
    assert_eq!(set.spec.feature_lookups[0].version, Some(2));

    // With a window of 3 days, day 30 finds nothing; day 4 still finds day 3.
    let mut windowed = lookup();
    windowed.lookback_window = Some("3d".into());
    windowed.feature_names = Some(vec!["spend".into()]);
    windowed.default_values.clear();
    let (batch, _, _) = training::build(&f.lake, f.store.as_ref(), &f.alice, spec(vec![windowed]))
        .await
        .expect("windowed");
    assert_eq!(
        floats(&batch, "spend_now"),
        [
            None,
            Some(30.0),
            Some(30.0),
            Some(30.0),
            None,
            None,
            None,
            None,
            None
        ]
    );
    assert!(
        batch.column_by_name("visits").is_none(),
        "only the features asked for"
    );

    // Another correction: a rebuild of the recorded set still reads version 2.
    tables::write(
        &f.lake,
        f.store.as_ref(),
        &f.alice,
        "dev.features.spend",
        vec![spend_rows(&[(1, 3, Some(300.0), 333)])],
    )
    .await
    .expect("second correction");
    let (again, recorded) =
        training::rebuild(&f.lake, f.store.as_ref(), &f.alice, &set.training_set_id)
            .await
            .expect("rebuild");
    assert_eq!(recorded.training_set_id, set.training_set_id);
    assert_eq!(again, built.batch);
    let (fresh, _, _) = training::build(&f.lake, f.store.as_ref(), &f.alice, spec(vec![lookup()]))
        .await
        .expect("fresh");
    assert_eq!(floats(&fresh, "spend_now")[1], Some(300.0));
}

#[tokio::test]
async fn duplicate_rows_bad_lookups_and_strangers_are_refused() {
    let f = Fixture::new().await;
    f.spend_table().await;
    f.labels(&[(Some(1), Some(3), 1.0)]).await;
    let err = tables::write(
        &f.lake,
        f.store.as_ref(),
        &f.alice,
        "dev.features.spend",
        vec![spend_rows(&[(7, 3, Some(1.0), 1), (7, 3, Some(2.0), 2)])],
    )
    .await
    .expect_err("refused");
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);
    assert!(
        err.message.contains("more than one row for customer_id=7"),
        "{}",
        err.message
    );
    let (table, _) = tarn_features::tables::feature_table_for(
        f.store.as_ref(),
        &f.alice,
        "dev.features.spend",
        tarn_core::catalog::Privilege::Select,
    )
    .await
    .expect("feature table");
    assert_eq!(table.primary_keys, ["customer_id"]);
    assert_eq!(table.timestamp_key.as_deref(), Some("ts"));

    let cases: Vec<(FeatureLookup, &str)> = vec![
        (
            FeatureLookup {
                timestamp_lookup_key: None,
                ..lookup()
            },
            "needs timestamp_lookup_key",
        ),
        (
            FeatureLookup {
                feature_names: Some(vec!["nope".into()]),
                ..lookup()
            },
            "Feature 'nope' is not a column",
        ),
        (
            FeatureLookup {
                lookup_key: vec!["missing".into()],
                ..lookup()
            },
            "no column 'missing'",
        ),
        (
            FeatureLookup {
                table_name: "dev.features.labels".into(),
                ..lookup()
            },
            "is not a feature table",
        ),
    ];
    for (bad, expected) in cases {
        let err = training::build(&f.lake, f.store.as_ref(), &f.alice, spec(vec![bad]))
            .await
            .expect_err("refused");
        assert!(
            err.message.contains(expected),
            "{expected}: {}",
            err.message
        );
    }
    // Two lookups of one table clash on their column names unless renamed.
    let err = training::build(
        &f.lake,
        f.store.as_ref(),
        &f.alice,
        spec(vec![lookup(), lookup()]),
    )
    .await
    .expect_err("refused");
    assert!(
        err.message.contains("would appear twice"),
        "{}",
        err.message
    );

    // Bob has no SELECT on alice's tables.
    let err = training::build(&f.lake, f.store.as_ref(), &f.bob, spec(vec![lookup()]))
        .await
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn on_demand_features_and_output_tables_with_lineage() {
    let f = Fixture::new().await;
    f.spend_table().await;
    f.labels(&[(Some(1), Some(4), 1.0), (Some(9), Some(4), 0.0)])
        .await;
    let mut with_extras = spec(vec![lookup()]);
    with_extras.on_demand_features = vec![OnDemandFeature {
        name: "spend_per_visit".into(),
        expression: "spend_now / visits".into(),
    }];
    with_extras.exclude_columns = vec!["cust".into()];
    let built = training::create(
        &f.lake,
        f.store.as_ref(),
        &f.alice,
        with_extras,
        Some("dev.features.train_v1"),
    )
    .await
    .expect("training set");
    assert_eq!(floats(&built.batch, "spend_per_visit"), [Some(0.1), None]);
    assert!(built.batch.column_by_name("cust").is_none());
    let output = built
        .training_set
        .output_table
        .clone()
        .expect("output table");
    assert_eq!(output.name, "dev.features.train_v1");
    let table = f
        .store
        .get_table("dev", "features", "train_v1")
        .await
        .expect("table");
    let (_, batches, _) = f
        .lake
        .read_columns(
            &location_of(&table).expect("location"),
            &table.full_name,
            tarn_lake::At::Latest,
            None,
        )
        .await
        .expect("read");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let edges = f
        .store
        .lineage_edges(
            &tarn_core::lineage::Node::table("dev.features.train_v1"),
            Direction::Upstream,
        )
        .await
        .expect("lineage");
    let sources: Vec<&str> = edges.iter().map(|e| e.source.name.as_str()).collect();
    assert_eq!(sources, ["dev.features.labels", "dev.features.spend"]);
    let recorded = f
        .store
        .get_training_set("dev", &built.training_set.training_set_id)
        .await
        .expect("recorded");
    assert_eq!(recorded.output_table, Some(output));
}
