//! Backend-independent behaviour of the lakehouse catalog's metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::PrincipalKind;
use tarn_core::catalog::{
    ColumnInfo, IngestedFile, NewSchema, NewTable, OutsideCommit, PermissionsChange, Privilege,
    PrivilegeAssignment, SecurableType, TableType, WatchedTable,
};
use tarn_core::events::{Change, EventQuery};
use tarn_core::lineage::{NewLineage, Node, SourceRead};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;

type Store = Arc<dyn MetaStore>;

async fn setup(store: &Store) -> Actor {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let owner = store
        .create_principal("alice", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    Actor {
        id: owner.id,
        name: owner.name,
    }
}

fn schema(catalog: &str, name: &str) -> NewSchema {
    NewSchema {
        catalog: catalog.into(),
        name: name.into(),
        comment: "raw events".into(),
        properties: BTreeMap::from([("layer".to_string(), "bronze".to_string())]),
    }
}

fn column(name: &str, type_name: &str, position: i64) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        type_name: type_name.into(),
        type_text: type_name.to_ascii_lowercase(),
        type_json: format!(
            r#"{{"name":"{name}","type":"{}","nullable":true,"metadata":{{}}}}"#,
            type_name.to_ascii_lowercase()
        ),
        position,
        nullable: true,
        comment: String::new(),
        partition_index: None,
    }
}

fn table(schema: &str, name: &str, location: &str) -> NewTable {
    NewTable {
        table_id: format!("id-{name}"),
        catalog: "dev".into(),
        schema: schema.into(),
        name: name.into(),
        table_type: TableType::Managed,
        columns: vec![column("id", "LONG", 0), column("amount", "DOUBLE", 1)],
        storage_location: location.into(),
        view_definition: String::new(),
        comment: "payments".into(),
        properties: BTreeMap::new(),
    }
}

pub async fn schemas_and_tables_lifecycle(store: Store) {
    let alice = setup(&store).await;
    let created = store
        .create_schema(&schema("dev", "bronze"), &alice)
        .await
        .expect("schema");
    assert_eq!(created.full_name, "dev.bronze");
    assert_eq!(created.owner, "alice");
    assert_eq!(created.properties["layer"], "bronze");
    let again = store
        .create_schema(&schema("dev", "bronze"), &alice)
        .await
        .expect_err("duplicate");
    assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
    // The same name in another catalog is another schema.
    store
        .create_schema(&schema("prod", "bronze"), &alice)
        .await
        .expect("prod schema");
    let missing = store
        .create_schema(&schema("nope", "bronze"), &alice)
        .await
        .expect_err("no catalog");
    assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);

    let payments = store
        .create_table(
            &table("bronze", "payments", "file:///lake/dev/bronze/payments"),
            &alice,
        )
        .await
        .expect("table");
    assert_eq!(payments.full_name, "dev.bronze.payments");
    assert_eq!(payments.table_type, TableType::Managed);
    assert_eq!(payments.columns.len(), 2);
    assert_eq!(payments.data_source_format, "DELTA");
    let duplicate = store
        .create_table(
            &table("bronze", "payments", "file:///lake/elsewhere"),
            &alice,
        )
        .await
        .expect_err("duplicate name");
    assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
    let same_place = store
        .create_table(
            &table("bronze", "refunds", "file:///lake/dev/bronze/payments"),
            &alice,
        )
        .await
        .expect_err("one table per location");
    assert_eq!(same_place.code, ErrorCode::ResourceAlreadyExists);
    // A restore into another lake root moves the tables under the old one, and only those.
    assert_eq!(
        store
            .relocate_tables("s3://other/", "file:///restored/")
            .await
            .expect("nothing there"),
        0
    );
    assert_eq!(
        store
            .relocate_tables("file:///lake/", "file:///restored/lake/")
            .await
            .expect("relocate"),
        1
    );
    assert_eq!(
        store
            .get_table("dev", "bronze", "payments")
            .await
            .expect("moved")
            .storage_location,
        "file:///restored/lake/dev/bronze/payments"
    );
    store
        .relocate_tables("file:///restored/lake/", "file:///lake/")
        .await
        .expect("back");
    let no_schema = store
        .create_table(&table("silver", "x", "file:///lake/x"), &alice)
        .await
        .expect_err("no schema");
    assert_eq!(no_schema.code, ErrorCode::ResourceDoesNotExist);

    for name in ["b", "a", "c"] {
        store
            .create_table(
                &table("bronze", name, &format!("file:///lake/{name}")),
                &alice,
            )
            .await
            .expect("table");
    }
    let first = store
        .list_tables("dev", "bronze", 2, 0)
        .await
        .expect("list");
    let names: Vec<_> = first.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let rest = store
        .list_tables("dev", "bronze", 10, first.next_offset.expect("more"))
        .await
        .expect("list");
    let names: Vec<_> = rest.items.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["c", "payments"]);
    assert!(rest.next_offset.is_none());
    assert!(
        store
            .list_tables("prod", "bronze", 10, 0)
            .await
            .expect("prod")
            .items
            .is_empty()
    );

    // A schema change keeps the comments of the columns that stay.
    let mut commented = payments.columns.clone();
    commented[1].comment = "in euros".into();
    store
        .set_table_columns("dev", "bronze", "payments", &commented, &alice)
        .await
        .expect("comment");
    let mut evolved = payments.columns.clone();
    evolved.push(column("currency", "STRING", 2));
    let updated = store
        .set_table_columns("dev", "bronze", "payments", &evolved, &alice)
        .await
        .expect("evolve");
    assert_eq!(updated.columns.len(), 3);
    assert_eq!(updated.columns[1].comment, "in euros");

    let not_empty = store
        .delete_schema("dev", "bronze", false, &alice)
        .await
        .expect_err("not empty");
    assert_eq!(not_empty.code, ErrorCode::InvalidParameterValue);
    let dropped = store
        .delete_table("dev", "bronze", "a", &alice)
        .await
        .expect("drop");
    assert_eq!(dropped.storage_location, "file:///lake/a");
    let gone = store
        .get_table("dev", "bronze", "a")
        .await
        .expect_err("gone");
    assert_eq!(gone.code, ErrorCode::ResourceDoesNotExist);
    let with_tables = store
        .delete_schema("dev", "bronze", true, &alice)
        .await
        .expect("force");
    assert_eq!(with_tables.len(), 3);
    assert!(store.get_schema("dev", "bronze").await.is_err());
    assert!(store.get_schema("prod", "bronze").await.is_ok());

    let events = store
        .events(&EventQuery {
            after_id: 0,
            workspace: Some("dev".into()),
            entity: Some("table".into()),
            object: None,
            actor: None,
            limit: 100,
        })
        .await
        .expect("events");
    let actions: Vec<_> = events
        .iter()
        .map(|e| e.change.store().expect("stored").action)
        .collect();
    assert_eq!(
        actions,
        [
            "created",
            "created",
            "created",
            "created",
            "schema_changed",
            "schema_changed",
            "deleted"
        ]
    );
}

pub async fn schema_updates_change_only_what_is_given(store: Store) {
    let alice = setup(&store).await;
    store
        .create_schema(&schema("dev", "silver"), &alice)
        .await
        .expect("schema");
    let updated = store
        .update_schema("dev", "silver", Some("cleaned"), None, &alice)
        .await
        .expect("update");
    assert_eq!(updated.comment, "cleaned");
    assert_eq!(updated.properties["layer"], "bronze");
    let props = BTreeMap::from([("owner_team".to_string(), "risk".to_string())]);
    let updated = store
        .update_schema("dev", "silver", None, Some(&props), &alice)
        .await
        .expect("update");
    assert_eq!(updated.comment, "cleaned");
    assert_eq!(updated.properties, props);
    let missing = store
        .update_schema("dev", "gold", Some("x"), None, &alice)
        .await
        .expect_err("missing");
    assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);
    let hostile = store
        .create_schema(&schema("dev", "x'; DROP TABLE catalog_schemas; --"), &alice)
        .await;
    // The store takes names as values; validation of their shape is the caller's.
    assert!(hostile.is_ok());
    assert_eq!(
        store
            .list_schemas("dev", 10, 0)
            .await
            .expect("list")
            .items
            .len(),
        2
    );
}

pub async fn views_hold_a_definition_and_no_location(store: Store) {
    let alice = setup(&store).await;
    store
        .create_schema(&schema("dev", "gold"), &alice)
        .await
        .expect("schema");
    for name in ["big_payments", "small_payments"] {
        let view = NewTable {
            table_type: TableType::View,
            storage_location: String::new(),
            view_definition: format!("SELECT * FROM dev.bronze.payments -- {name}"),
            ..table("gold", name, "")
        };
        let created = store.create_table(&view, &alice).await.expect("view");
        assert_eq!(created.table_type, TableType::View);
        assert_eq!(created.storage_location, "");
    }
    let view = store
        .get_table("dev", "gold", "small_payments")
        .await
        .expect("get");
    assert_eq!(
        view.view_definition,
        "SELECT * FROM dev.bronze.payments -- small_payments"
    );
    let json = serde_json::to_value(&view).expect("json");
    assert!(json.get("storage_location").is_none(), "{json}");
    assert_eq!(json["table_type"], "VIEW");
}

pub async fn grants_and_bindings_follow_their_objects(store: Store) {
    let alice = setup(&store).await;
    let bob = store
        .create_principal("bob", PrincipalKind::User, false, None, "tester")
        .await
        .expect("bob");
    store
        .create_schema(&schema("dev", "bronze"), &alice)
        .await
        .expect("schema");
    store
        .create_table(&table("bronze", "payments", "file:///lake/p"), &alice)
        .await
        .expect("table");
    let change = |add: Vec<Privilege>, remove: Vec<Privilege>| PermissionsChange {
        principal: "bob".into(),
        add,
        remove,
    };
    let granted = store
        .update_catalog_grants(
            "dev",
            SecurableType::Table,
            "dev.bronze.payments",
            &[change(
                vec![Privilege::Select, Privilege::Modify, Privilege::Select],
                vec![],
            )],
            &alice,
        )
        .await
        .expect("grant");
    assert_eq!(
        granted,
        [PrivilegeAssignment {
            principal: "bob".into(),
            privileges: vec![Privilege::Select, Privilege::Modify],
        }]
    );
    store
        .update_catalog_grants(
            "dev",
            SecurableType::Schema,
            "dev.bronze",
            &[change(vec![Privilege::UseSchema], vec![])],
            &alice,
        )
        .await
        .expect("schema grant");
    let on_lineage = store
        .catalog_grants_on(&[
            "dev".into(),
            "dev.bronze".into(),
            "dev.bronze.payments".into(),
        ])
        .await
        .expect("grants");
    assert_eq!(on_lineage.len(), 3);
    assert!(on_lineage.iter().all(|g| g.principal_id == bob.id));
    let revoked = store
        .update_catalog_grants(
            "dev",
            SecurableType::Table,
            "dev.bronze.payments",
            &[change(vec![], vec![Privilege::Modify])],
            &alice,
        )
        .await
        .expect("revoke");
    assert_eq!(revoked[0].privileges, [Privilege::Select]);
    let unknown = store
        .update_catalog_grants(
            "dev",
            SecurableType::Table,
            "dev.bronze.payments",
            &[PermissionsChange {
                principal: "nobody".into(),
                add: vec![Privilege::Select],
                remove: vec![],
            }],
            &alice,
        )
        .await
        .expect_err("unknown principal");
    assert_eq!(unknown.code, ErrorCode::ResourceDoesNotExist);

    // Dropping an object drops its grants, and a schema's drop those inside it; a schema
    // whose name extends another's keeps its own.
    store
        .create_schema(&schema("dev", "bronze_2"), &alice)
        .await
        .expect("schema");
    store
        .update_catalog_grants(
            "dev",
            SecurableType::Schema,
            "dev.bronze_2",
            &[change(vec![Privilege::UseSchema], vec![])],
            &alice,
        )
        .await
        .expect("grant");
    store
        .delete_schema("dev", "bronze", true, &alice)
        .await
        .expect("drop");
    let left = store
        .catalog_grants_on(&[
            "dev.bronze".into(),
            "dev.bronze.payments".into(),
            "dev.bronze_2".into(),
        ])
        .await
        .expect("grants");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].securable, "dev.bronze_2");

    assert!(
        store
            .catalog_bindings("prod")
            .await
            .expect("none")
            .is_empty()
    );
    store
        .set_catalog_binding("prod", "dev", true, &alice)
        .await
        .expect("bind");
    store
        .set_catalog_binding("prod", "dev", true, &alice)
        .await
        .expect("bind twice");
    assert_eq!(store.catalog_bindings("prod").await.expect("one"), ["dev"]);
    assert!(
        store
            .set_catalog_binding("prod", "prod", true, &alice)
            .await
            .is_err()
    );
    assert!(
        store
            .set_catalog_binding("prod", "nowhere", true, &alice)
            .await
            .is_err()
    );
    store
        .set_catalog_binding("prod", "dev", false, &alice)
        .await
        .expect("unbind");
    assert!(
        store
            .catalog_bindings("prod")
            .await
            .expect("none")
            .is_empty()
    );
}

pub async fn ingested_files_are_recorded_once_and_go_with_their_table(store: Store) {
    let alice = setup(&store).await;
    store
        .create_schema(&schema("dev", "bronze"), &alice)
        .await
        .expect("schema");
    let table = store
        .create_table(&table("bronze", "events", "file:///lake/e"), &alice)
        .await
        .expect("table");
    let file = |source: &str, at: i64| IngestedFile {
        table_id: table.table_id.clone(),
        source: source.into(),
        size: 100,
        rows_written: 10,
        rows_quarantined: 1,
        table_version: 1,
        ingested_at: at,
        ingested_by: "alice".into(),
    };
    store
        .record_ingested_file(&file("/landing/b.csv", 2))
        .await
        .expect("b");
    store
        .record_ingested_file(&file("/landing/a.csv", 1))
        .await
        .expect("a");
    let again = store
        .record_ingested_file(&file("/landing/a.csv", 3))
        .await
        .expect_err("twice");
    assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
    let files = store.ingested_files(&table.table_id).await.expect("files");
    let sources: Vec<&str> = files.iter().map(|f| f.source.as_str()).collect();
    assert_eq!(sources, ["/landing/a.csv", "/landing/b.csv"]);
    assert_eq!(files[0], file("/landing/a.csv", 1));
    store
        .delete_table("dev", "bronze", "events", &alice)
        .await
        .expect("drop");
    assert!(
        store
            .ingested_files(&table.table_id)
            .await
            .expect("none")
            .is_empty()
    );
}

pub async fn tags_are_set_unset_limited_and_go_with_their_table(store: Store) {
    let alice = setup(&store).await;
    store
        .create_schema(&schema("dev", "bronze"), &alice)
        .await
        .expect("schema");
    store
        .create_table(&table("bronze", "events", "file:///lake/e"), &alice)
        .await
        .expect("table");
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let name = "dev.bronze.events";
    let set = store
        .update_catalog_tags(
            "dev",
            SecurableType::Table,
            name,
            &tags(&[("pii", "email"), ("tier", "bronze")]),
            &[],
            &alice,
        )
        .await
        .expect("set");
    assert_eq!(set, tags(&[("pii", "email"), ("tier", "bronze")]));
    let changed = store
        .update_catalog_tags(
            "dev",
            SecurableType::Table,
            name,
            &tags(&[("tier", "silver")]),
            &["pii".to_string(), "absent".to_string()],
            &alice,
        )
        .await
        .expect("change");
    assert_eq!(changed, tags(&[("tier", "silver")]));
    // Past the limit nothing changes.
    let many: BTreeMap<String, String> = (0..tarn_core::catalog::MAX_TAGS)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let refused = store
        .update_catalog_tags("dev", SecurableType::Table, name, &many, &[], &alice)
        .await
        .expect_err("too many");
    assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
    assert_eq!(
        store.catalog_tags(name).await.expect("tags"),
        tags(&[("tier", "silver")])
    );
    store
        .update_catalog_tags(
            "dev",
            SecurableType::Schema,
            "dev.bronze",
            &tags(&[("owner_team", "data")]),
            &[],
            &alice,
        )
        .await
        .expect("schema tags");
    store
        .delete_table("dev", "bronze", "events", &alice)
        .await
        .expect("drop");
    assert!(store.catalog_tags(name).await.expect("gone").is_empty());
    store
        .delete_schema("dev", "bronze", true, &alice)
        .await
        .expect("drop schema");
    assert!(
        store
            .catalog_tags("dev.bronze")
            .await
            .expect("gone")
            .is_empty()
    );
}

pub async fn feature_tables_and_training_sets_are_kept_and_searched(store: Store) {
    use tarn_core::features::{
        FeatureLookup, FeatureTable, LabelSource, Pipeline, TableVersion, TrainingSet,
        TrainingSetSpec,
    };
    let alice = setup(&store).await;
    store
        .create_schema(&schema("dev", "features"), &alice)
        .await
        .expect("schema");
    let mut spend = table("features", "customer_spend", "file:///lake/spend");
    spend.columns.push(column("lifetime_value", "DOUBLE", 2));
    let spend = store.create_table(&spend, &alice).await.expect("table");
    let other = store
        .create_table(&table("features", "orders", "file:///lake/orders"), &alice)
        .await
        .expect("table");
    let feature_table = |t: &tarn_core::catalog::TableInfo, description: &str| FeatureTable {
        table_id: t.table_id.clone(),
        full_name: t.full_name.clone(),
        primary_keys: vec!["id".into()],
        timestamp_key: Some("ts".into()),
        description: description.into(),
        source_tables: vec!["dev.silver.orders".into()],
        pipeline: Pipeline {
            job: Some("nightly".into()),
            run_id: None,
            commit: Some("abc123".into()),
        },
        created_by: "alice".into(),
        created_at: 5,
    };
    store
        .create_feature_table(
            &feature_table(&spend, "Spend per customer, 100% daily"),
            &alice,
        )
        .await
        .expect("feature table");
    let twice = store
        .create_feature_table(&feature_table(&spend, "again"), &alice)
        .await
        .expect_err("twice");
    assert_eq!(twice.code, ErrorCode::ResourceAlreadyExists);
    store
        .create_feature_table(&feature_table(&other, "Orders"), &alice)
        .await
        .expect("second feature table");
    let got = store
        .get_feature_table("dev", "features", "customer_spend")
        .await
        .expect("get");
    assert_eq!(got, feature_table(&spend, "Spend per customer, 100% daily"));

    let names = |page: tarn_core::store::Page<FeatureTable>| {
        page.items
            .into_iter()
            .map(|t| t.full_name)
            .collect::<Vec<_>>()
    };
    let dev = vec!["dev".to_string()];
    let all = store
        .search_feature_tables(&dev, "", 10, 0)
        .await
        .expect("all");
    assert_eq!(
        names(all),
        ["dev.features.customer_spend", "dev.features.orders"]
    );
    // By name, description or column, any case; wildcards in the text are plain text.
    for (text, expected) in [
        ("SPEND", vec!["dev.features.customer_spend"]),
        ("lifetime_v", vec!["dev.features.customer_spend"]),
        ("100%", vec!["dev.features.customer_spend"]),
        ("1_0%", vec![]),
        ("' OR 1=1 --", vec![]),
    ] {
        let found = store
            .search_feature_tables(&dev, text, 10, 0)
            .await
            .expect("search");
        assert_eq!(names(found), expected, "search {text}");
    }
    let first = store
        .search_feature_tables(&dev, "", 1, 0)
        .await
        .expect("page");
    assert_eq!(first.next_offset, Some(1));
    let prod_only = store
        .search_feature_tables(&["prod".to_string()], "", 10, 0)
        .await
        .expect("prod");
    assert!(prod_only.items.is_empty());

    // A dropped table is no feature table any more.
    store
        .delete_table("dev", "features", "orders", &alice)
        .await
        .expect("drop");
    let gone = store
        .get_feature_table("dev", "features", "orders")
        .await
        .expect_err("gone");
    assert_eq!(gone.code, ErrorCode::ResourceDoesNotExist);

    let set = TrainingSet {
        training_set_id: "ts1".into(),
        workspace: "dev".into(),
        spec: TrainingSetSpec {
            label: LabelSource {
                table: Some("dev.features.labels".into()),
                version: Some(3),
                ..Default::default()
            },
            feature_lookups: vec![FeatureLookup {
                table_name: "dev.features.customer_spend".into(),
                version: Some(7),
                default_values: BTreeMap::from([("lifetime_value".into(), serde_json::json!(0.5))]),
                ..Default::default()
            }],
            ..Default::default()
        },
        tables_read: vec![TableVersion {
            name: "dev.features.customer_spend".into(),
            version: 7,
        }],
        num_rows: 1000,
        output_table: Some(TableVersion {
            name: "dev.features.train".into(),
            version: 1,
        }),
        created_by: "alice".into(),
        created_at: 9,
    };
    store.record_training_set(&set).await.expect("record");
    assert_eq!(
        store.get_training_set("dev", "ts1").await.expect("get"),
        set
    );
    let elsewhere = store
        .get_training_set("prod", "ts1")
        .await
        .expect_err("other workspace");
    assert_eq!(elsewhere.code, ErrorCode::ResourceDoesNotExist);
}

/// A write recorded with its lineage is a `table.committed` event with its version and the
/// tables it read; the commit watcher's record of other writers' commits moves the table's
/// watched version once, so two watchers never record the same commits twice.
pub async fn table_commits_are_events_and_outside_commits_recorded_once(store: Store) {
    let actor = setup(&store).await;
    store
        .create_schema(&schema("dev", "bronze"), &actor)
        .await
        .expect("schema");
    store
        .create_table(&table("bronze", "orders", "file:///lake/orders"), &actor)
        .await
        .expect("table");
    let mut write = NewLineage::new(
        Node::table("dev.bronze.orders"),
        Some(3),
        "INSERT INTO",
        "alice",
    );
    write = write.reading(vec![
        SourceRead {
            node: Node::table("dev.bronze.raw"),
            version: Some(7),
        },
        SourceRead {
            node: Node::file("/landing/orders.csv"),
            version: None,
        },
    ]);
    store.record_lineage(&write).await.expect("lineage");

    let watched = store.watched_tables().await.expect("watched");
    let orders = watched
        .iter()
        .find(|t| t.full_name == "dev.bronze.orders")
        .cloned()
        .expect("orders is watched");
    assert_eq!(
        orders.watched_version,
        Some(-1),
        "a managed table's log is read from its first commit"
    );
    assert!(
        store
            .record_outside_commits(&orders, 3, &[])
            .await
            .expect("baseline")
    );
    let outside = OutsideCommit {
        version: 4,
        operation: "MERGE".into(),
        writer: "Apache-Spark/3.5.1 Delta-Lake/3.2.0".into(),
        timestamp: 1_795_572_827_587,
    };
    let seen = WatchedTable {
        watched_version: Some(3),
        ..orders.clone()
    };
    assert!(
        store
            .record_outside_commits(&seen, 4, std::slice::from_ref(&outside))
            .await
            .expect("record")
    );
    // A second watcher that read the same version before the first recorded finds it moved.
    assert!(
        !store
            .record_outside_commits(&seen, 4, std::slice::from_ref(&outside))
            .await
            .expect("second watcher")
    );
    let commits: Vec<_> = store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            object: Some("dev.bronze.orders".into()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| match e.change {
            Change::TableCommitted { .. } => Some((e.actor, e.timestamp, e.change)),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 2, "{commits:?}");
    assert_eq!(
        commits[0].2,
        Change::TableCommitted {
            full_name: "dev.bronze.orders".into(),
            version: 3,
            operation: "INSERT INTO".into(),
            sources: vec!["dev.bronze.raw".into()],
            outside: false,
        }
    );
    assert_eq!(commits[0].0, "alice");
    assert_eq!(
        commits[1],
        (
            outside.writer.clone(),
            outside.timestamp,
            Change::TableCommitted {
                full_name: "dev.bronze.orders".into(),
                version: 4,
                operation: "MERGE".into(),
                sources: Vec::new(),
                outside: true,
            }
        )
    );
    let after = store.watched_tables().await.expect("watched");
    assert_eq!(
        after
            .iter()
            .find(|t| t.full_name == "dev.bronze.orders")
            .and_then(|t| t.watched_version),
        Some(4)
    );
}
