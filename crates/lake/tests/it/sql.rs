//! SQL over the catalog: queries with three-part names, writes through CTAS, INSERT,
//! DELETE and views, time travel, and what is refused.

use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::PrincipalKind;
use tarn_core::caller::Caller;
use tarn_core::catalog::{NewSchema, PermissionsChange, Privilege, SecurableType, TableType};
use tarn_core::store::MetaStore;
use tarn_lake::arrow::array::{Array, Int64Array};
use tarn_lake::arrow::compute::cast;
use tarn_lake::arrow::datatypes::DataType;
use tarn_lake::catalog::{ManagedTable, location_of};
use tarn_lake::{Lake, SqlOutput, SqlScope, WriteMode};

use crate::{column, payments};

pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) store: Arc<dyn MetaStore>,
    pub(crate) lake: Lake,
    pub(crate) owner: Caller,
    pub(crate) member: Caller,
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
        for workspace in ["dev", "prod"] {
            store
                .ensure_workspace(workspace, "tester")
                .await
                .expect("workspace");
        }
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
        let member = callers.pop().expect("bob");
        let owner = callers.pop().expect("alice");
        for (catalog, schema) in [("dev", "bronze"), ("dev", "silver"), ("prod", "bronze")] {
            store
                .create_schema(
                    &NewSchema {
                        catalog: catalog.into(),
                        name: schema.into(),
                        comment: String::new(),
                        properties: Default::default(),
                    },
                    &owner.actor(),
                )
                .await
                .expect("schema");
        }
        let fixture = Self {
            _dir: dir,
            store,
            lake,
            owner,
            member,
        };
        for catalog in ["dev", "prod"] {
            let table = fixture
                .lake
                .create_managed(
                    fixture.store.as_ref(),
                    &fixture.owner.actor(),
                    ManagedTable {
                        catalog: catalog.into(),
                        schema: "bronze".into(),
                        name: "payments".into(),
                        columns: vec![column("id", "bigint"), column("amount", "double")],
                        ..ManagedTable::default()
                    },
                )
                .await
                .expect("table");
            fixture
                .lake
                .write(
                    &location_of(&table).expect("location"),
                    &table.full_name,
                    vec![payments(&[1, 2, 3], &[10.0, 20.0, 30.0])],
                    WriteMode::Append,
                    false,
                )
                .await
                .expect("rows");
        }
        fixture
    }

    pub(crate) async fn grant(
        &self,
        securable_type: SecurableType,
        securable: &str,
        who: &str,
        privileges: &[Privilege],
    ) {
        self.store
            .update_catalog_grants(
                securable.split('.').next().expect("catalog"),
                securable_type,
                securable,
                &[PermissionsChange {
                    principal: who.into(),
                    add: privileges.to_vec(),
                    remove: Vec::new(),
                }],
                &self.owner.actor(),
            )
            .await
            .expect("grant");
    }

    async fn sql(&self, caller: &Caller, statement: &str) -> tarn_core::Result<SqlOutput> {
        self.lake
            .sql(self.store.as_ref(), caller, statement, &SqlScope::default())
            .await
    }

    pub(crate) async fn ok(&self, statement: &str) -> SqlOutput {
        self.sql(&self.owner, statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
    }

    pub(crate) async fn refused(&self, caller: &Caller, statement: &str) -> tarn_core::Error {
        match self.sql(caller, statement).await {
            Ok(_) => panic!("{statement} should have been refused"),
            Err(err) => err,
        }
    }
}

/// The first column of the result as integers, in result order.
pub(crate) fn longs(output: &SqlOutput) -> Vec<i64> {
    output
        .batches
        .iter()
        .flat_map(|batch| {
            let column = cast(batch.column(0), &DataType::Int64).expect("cast");
            let column = column
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64")
                .clone();
            (0..column.len())
                .map(move |i| column.value(i))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn queries_name_tables_in_three_two_or_one_parts() {
    let f = Fixture::new().await;
    let all = f.ok("SELECT id FROM dev.bronze.payments ORDER BY id").await;
    assert_eq!(longs(&all), [1, 2, 3]);
    let two = f
        .ok("SELECT count(*) FROM bronze.payments WHERE amount > 15")
        .await;
    assert_eq!(longs(&two), [2]);
    let scoped = f
        .lake
        .sql(
            f.store.as_ref(),
            &f.owner,
            "SELECT sum(id) FROM payments",
            &SqlScope {
                catalog: None,
                schema: Some("bronze".into()),
                ..SqlScope::default()
            },
        )
        .await
        .expect("scoped");
    assert_eq!(longs(&scoped), [6]);
    let joined = f
        .ok(
            "WITH big AS (SELECT id FROM dev.bronze.payments WHERE amount >= 20) \
             SELECT p.id FROM dev.bronze.payments p JOIN big ON p.id = big.id ORDER BY p.id",
        )
        .await;
    assert_eq!(longs(&joined), [2, 3]);
    let missing = f.refused(&f.owner, "SELECT * FROM dev.bronze.nope").await;
    assert_eq!(missing.code, ErrorCode::ResourceDoesNotExist);
    assert!(
        missing.message.contains("dev.bronze.nope"),
        "{}",
        missing.message
    );
    // Members read what they are granted; another workspace's catalog is out of reach.
    let ungranted = f
        .refused(&f.member, "SELECT count(*) FROM bronze.payments")
        .await;
    assert_eq!(ungranted.code, ErrorCode::PermissionDenied);
    assert!(
        ungranted
            .message
            .contains("SELECT on table dev.bronze.payments"),
        "{}",
        ungranted.message
    );
    f.grant(
        SecurableType::Schema,
        "dev.bronze",
        "bob",
        &[Privilege::Select],
    )
    .await;
    assert_eq!(
        longs(
            &f.sql(&f.member, "SELECT count(*) FROM bronze.payments")
                .await
                .expect("member")
        ),
        [3]
    );
    let other = f
        .refused(&f.owner, "SELECT * FROM prod.bronze.payments")
        .await;
    assert_eq!(other.code, ErrorCode::PermissionDenied);
    let hidden = f
        .refused(
            &f.owner,
            "SELECT id FROM dev.bronze.payments UNION ALL SELECT id FROM (SELECT id FROM prod.bronze.payments)",
        )
        .await;
    assert_eq!(hidden.code, ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn ctas_insert_delete_and_time_travel_write_delta_tables() {
    let f = Fixture::new().await;
    let created = f
        .ok("CREATE TABLE silver.big_payments AS SELECT id, amount * 2 AS doubled FROM bronze.payments WHERE amount > 15")
        .await;
    assert_eq!(longs(&created), [2]);
    let table = f
        .store
        .get_table("dev", "silver", "big_payments")
        .await
        .expect("registered");
    assert_eq!(table.table_type, TableType::Managed);
    assert_eq!(table.owner, "alice");
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "doubled"]);
    assert!(f.lake.contains(&location_of(&table).expect("location")));

    let inserted = f
        .ok("INSERT INTO silver.big_payments VALUES (7, 70.0), (8, 80.0)")
        .await;
    assert_eq!(longs(&inserted), [2]);
    let from_select = f
        .ok("INSERT INTO silver.big_payments SELECT id + 100, amount FROM bronze.payments")
        .await;
    assert_eq!(longs(&from_select), [3]);
    let deleted = f
        .ok("DELETE FROM silver.big_payments WHERE id > 100 AND doubled < 25")
        .await;
    assert_eq!(longs(&deleted), [2]);
    let now = f.ok("SELECT id FROM silver.big_payments ORDER BY id").await;
    assert_eq!(longs(&now), [2, 3, 7, 8, 103]);

    let at_create = f
        .ok("SELECT id FROM silver.big_payments VERSION AS OF 0 ORDER BY id")
        .await;
    assert_eq!(longs(&at_create), [2, 3]);
    let history = f
        .lake
        .history(&location_of(&table).expect("location"), "t", 10)
        .await
        .expect("history");
    let second = history
        .iter()
        .find(|c| c.version == 1)
        .and_then(|c| c.info.timestamp)
        .expect("version 1");
    let travelled = f
        .ok(&format!(
            "SELECT count(*) FROM silver.big_payments TIMESTAMP AS OF '{second}' AS old"
        ))
        .await;
    assert_eq!(longs(&travelled), [4]);
    let both = f
        .ok("SELECT (SELECT count(*) FROM silver.big_payments VERSION AS OF 0) + (SELECT count(*) FROM silver.big_payments)")
        .await;
    assert_eq!(longs(&both), [7]);

    let overwritten = f
        .ok("INSERT OVERWRITE silver.big_payments SELECT 1, 1.0")
        .await;
    assert_eq!(longs(&overwritten), [1]);
    assert_eq!(
        longs(&f.ok("SELECT id FROM silver.big_payments").await),
        [1]
    );
    let replaced = f
        .ok("CREATE OR REPLACE TABLE silver.big_payments AS SELECT 'x' AS label")
        .await;
    assert_eq!(longs(&replaced), [1]);
    let table = f
        .store
        .get_table("dev", "silver", "big_payments")
        .await
        .expect("table");
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["label"]);
    let again = f
        .refused(
            &f.owner,
            "CREATE TABLE silver.big_payments AS SELECT 1 AS a",
        )
        .await;
    assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
    f.ok("CREATE TABLE IF NOT EXISTS silver.big_payments AS SELECT 1 AS a")
        .await;

    // Others' tables are read-only to members.
    for statement in [
        "INSERT INTO silver.big_payments VALUES ('y')",
        "DELETE FROM silver.big_payments",
        "DROP TABLE silver.big_payments",
        "CREATE OR REPLACE TABLE silver.big_payments AS SELECT 1 AS a",
    ] {
        let denied = f.refused(&f.member, statement).await;
        assert_eq!(denied.code, ErrorCode::PermissionDenied, "{statement}");
    }
    let location = location_of(&table).expect("location");
    f.ok("DROP TABLE silver.big_payments").await;
    assert!(!location.to_file_path().expect("path").exists());
    f.ok("DROP TABLE IF EXISTS silver.big_payments").await;
}

#[tokio::test]
async fn views_are_stored_queries_over_qualified_tables() {
    let f = Fixture::new().await;
    f.ok("CREATE VIEW silver.big AS SELECT id, amount FROM bronze.payments WHERE amount > 15")
        .await;
    let view = f
        .store
        .get_table("dev", "silver", "big")
        .await
        .expect("view");
    assert_eq!(view.table_type, TableType::View);
    assert!(
        view.view_definition.contains("dev.bronze.\"payments\""),
        "{}",
        view.view_definition
    );
    let names: Vec<&str> = view.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "amount"]);
    assert_eq!(
        longs(&f.ok("SELECT id FROM dev.silver.big ORDER BY id").await),
        [2, 3]
    );
    f.ok("CREATE VIEW silver.biggest AS SELECT max(id) FROM silver.big")
        .await;
    f.grant(SecurableType::Catalog, "dev", "bob", &[Privilege::Select])
        .await;
    // Queried with another default schema, the view still means dev.bronze.payments.
    let nested = f
        .lake
        .sql(
            f.store.as_ref(),
            &f.member,
            "SELECT * FROM biggest",
            &SqlScope {
                catalog: None,
                schema: Some("silver".into()),
                ..SqlScope::default()
            },
        )
        .await
        .expect("nested");
    assert_eq!(longs(&nested), [3]);
    let write = f
        .refused(&f.owner, "INSERT INTO silver.big VALUES (9, 9.0)")
        .await;
    assert_eq!(write.code, ErrorCode::InvalidParameterValue);
    let wrong_drop = f.refused(&f.owner, "DROP TABLE silver.big").await;
    assert!(
        wrong_drop.message.contains("DROP VIEW"),
        "{}",
        wrong_drop.message
    );
    f.ok("DROP VIEW silver.biggest").await;
    assert!(f.store.get_table("dev", "silver", "biggest").await.is_err());
}

#[tokio::test]
async fn statements_outside_the_lakehouse_are_refused() {
    let f = Fixture::new().await;
    for statement in [
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT 1; SELECT 2",
        "",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM dev.bronze.\"payments@v0\"",
        "SELECT * FROM dev.bronze.payments VERSION AS OF 'x'",
        "SELECT * FROM dev.bronze.payments VERSION AS OF 99",
        "SELECT * FROM \"../../etc\".bronze.payments",
        "CREATE TABLE silver.\"a;b\" AS SELECT 1",
        "SELEC 1",
    ] {
        let refused = f.refused(&f.owner, statement).await;
        assert!(
            matches!(
                refused.code,
                ErrorCode::InvalidParameterValue | ErrorCode::ResourceDoesNotExist
            ),
            "{statement}: {refused:?}"
        );
    }
    // Nothing was created by any of them.
    let silver = f
        .store
        .list_tables("dev", "silver", 100, 0)
        .await
        .expect("list");
    assert!(silver.items.is_empty());
}

#[tokio::test]
async fn grants_and_bindings_decide_what_sql_may_touch() {
    let f = Fixture::new().await;
    // MODIFY lets a member write someone else's table, SELECT alone does not.
    f.grant(
        SecurableType::Table,
        "dev.bronze.payments",
        "bob",
        &[Privilege::Select],
    )
    .await;
    let denied = f
        .refused(&f.member, "INSERT INTO bronze.payments VALUES (9, 9.0)")
        .await;
    assert!(denied.message.contains("MODIFY"), "{}", denied.message);
    f.grant(
        SecurableType::Table,
        "dev.bronze.payments",
        "bob",
        &[Privilege::Modify],
    )
    .await;
    f.sql(&f.member, "INSERT INTO bronze.payments VALUES (9, 9.0)")
        .await
        .expect("granted insert");
    // CREATE_TABLE comes with membership in the workspace's own catalog.
    f.sql(
        &f.member,
        "CREATE TABLE silver.mine AS SELECT id FROM bronze.payments",
    )
    .await
    .expect("member creates");
    assert_eq!(
        f.store
            .get_table("dev", "silver", "mine")
            .await
            .expect("mine")
            .owner,
        "bob"
    );

    // prod's catalog: unreachable until bound, then readable with grants, never writable.
    let unbound = f
        .refused(&f.owner, "SELECT * FROM prod.bronze.payments")
        .await;
    assert!(unbound.message.contains("not bound"), "{}", unbound.message);
    f.store
        .set_catalog_binding("prod", "dev", true, &f.owner.actor())
        .await
        .expect("bind");
    let no_use = f
        .refused(&f.member, "SELECT * FROM prod.bronze.payments")
        .await;
    assert!(
        no_use
            .message
            .contains("USE_CATALOG on table prod.bronze.payments"),
        "{}",
        no_use.message
    );
    f.grant(
        SecurableType::Catalog,
        "prod",
        "bob",
        &[
            Privilege::UseCatalog,
            Privilege::UseSchema,
            Privilege::Select,
            Privilege::Modify,
        ],
    )
    .await;
    let read = f
        .sql(&f.member, "SELECT count(*) FROM prod.bronze.payments")
        .await
        .expect("bound read");
    assert_eq!(longs(&read), [3]);
    let mut admin = f.owner.clone();
    admin.principal.is_admin = true;
    for statement in [
        "INSERT INTO prod.bronze.payments VALUES (9, 9.0)",
        "DELETE FROM prod.bronze.payments",
        "CREATE TABLE prod.bronze.copy AS SELECT 1 AS a",
        "DROP TABLE prod.bronze.payments",
    ] {
        for caller in [&f.member, &admin] {
            let refused = f.refused(caller, statement).await;
            assert_eq!(refused.code, ErrorCode::PermissionDenied, "{statement}");
            assert!(
                refused.message.contains("read-only"),
                "{statement}: {}",
                refused.message
            );
        }
    }
    // Copying prod data into dev is the way: read there, write here.
    f.sql(
        &f.member,
        "CREATE TABLE silver.prod_copy AS SELECT * FROM prod.bronze.payments",
    )
    .await
    .expect("copy");
    let revoked = f
        .store
        .update_catalog_grants(
            "prod",
            SecurableType::Catalog,
            "prod",
            &[PermissionsChange {
                principal: "bob".into(),
                add: Vec::new(),
                remove: vec![Privilege::Select],
            }],
            &f.owner.actor(),
        )
        .await
        .expect("revoke");
    assert_eq!(
        revoked[0].privileges,
        [
            Privilege::UseCatalog,
            Privilege::UseSchema,
            Privilege::Modify
        ]
    );
    let gone = f
        .refused(&f.member, "SELECT count(*) FROM prod.bronze.payments")
        .await;
    assert!(gone.message.contains("SELECT"), "{}", gone.message);
}

/// Reads keep a table's snapshot between statements: a commit made by another process (here
/// a second `Lake` on the same root) is seen by the next statement, schema changes included;
/// a partitioned table, whose partition values live in the Delta log, reads right too; a data
/// file or a log deleted under the cache is reported, naming the table.
#[tokio::test]
async fn reads_see_commits_from_other_writers_and_partition_values() {
    let fixture = Fixture::new().await;
    let total = "SELECT CAST(sum(amount) AS BIGINT), count(*) FROM dev.bronze.payments";
    let first = fixture.ok(total).await;
    assert_eq!(longs(&first), vec![60]);

    let root = fixture.lake.root().to_file_path().expect("local root");
    let other = Lake::open(root.to_str().expect("path")).expect("second lake");
    let table = fixture
        .store
        .get_table("dev", "bronze", "payments")
        .await
        .expect("table");
    let location = location_of(&table).expect("location");
    other
        .write(
            &location,
            &table.full_name,
            vec![payments(&[4], &[40.0])],
            WriteMode::Append,
            false,
        )
        .await
        .expect("append elsewhere");
    assert_eq!(longs(&fixture.ok(total).await), vec![100]);
    let pinned = fixture
        .ok("SELECT CAST(sum(amount) AS BIGINT) FROM dev.bronze.payments VERSION AS OF 1")
        .await;
    assert_eq!(longs(&pinned), vec![60]);

    fixture
        .ok("INSERT INTO dev.bronze.payments VALUES (5, 50.0), (6, 60.0)")
        .await;
    let filtered = fixture
        .ok("SELECT id FROM dev.bronze.payments WHERE amount > 35 ORDER BY id")
        .await;
    assert_eq!(longs(&filtered), vec![4, 5, 6]);

    let mut country = column("country", "string");
    country.partition_index = Some(0);
    let sales = fixture
        .lake
        .create_managed(
            fixture.store.as_ref(),
            &fixture.owner.actor(),
            ManagedTable {
                catalog: "dev".into(),
                schema: "silver".into(),
                name: "sales".into(),
                columns: vec![column("id", "bigint"), country],
                ..ManagedTable::default()
            },
        )
        .await
        .expect("partitioned table");
    fixture
        .ok("INSERT INTO dev.silver.sales VALUES (1, 'FR'), (2, 'DE'), (3, 'FR')")
        .await;
    let folders: Vec<String> = std::fs::read_dir(
        location_of(&sales)
            .expect("location")
            .to_file_path()
            .expect("path"),
    )
    .expect("list")
    .map(|entry| {
        entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned()
    })
    .collect();
    assert!(
        folders.iter().any(|name| name == "country=FR"),
        "{folders:?}"
    );
    let french = fixture
        .ok("SELECT id FROM dev.silver.sales WHERE country = 'FR' ORDER BY id")
        .await;
    assert_eq!(longs(&french), vec![1, 3]);

    // A data file gone from under the log: an error, not fewer rows.
    let data_file = std::fs::read_dir(location.to_file_path().expect("path"))
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|ext| ext == "parquet"))
        .expect("a data file");
    let kept = std::fs::read(&data_file).expect("read data file");
    std::fs::remove_file(&data_file).expect("remove data file");
    let missing = fixture.refused(&fixture.owner, total).await;
    assert_eq!(missing.code, ErrorCode::InternalError);
    assert!(
        missing.message.contains("not found") && missing.message.contains("dev.bronze.payments"),
        "{}",
        missing.message
    );
    std::fs::write(&data_file, kept).expect("restore data file");

    // A log deleted after its snapshot was cached: an error naming the table, not old rows.
    std::fs::remove_dir_all(location.to_file_path().expect("path").join("_delta_log"))
        .expect("remove log");
    let broken = fixture.refused(&fixture.owner, total).await;
    assert!(
        broken.message.contains("dev.bronze.payments") && broken.message.contains("no Delta log"),
        "{}",
        broken.message
    );
}

/// Statements nested deeper than the limit are refused before anything parses them; at the
/// limit they plan and run on a test thread's 2 MiB stack, the size of a server worker's.
#[tokio::test]
async fn expression_depth_is_bounded_and_safe_at_the_limit() {
    let f = Fixture::new().await;
    let terms = tarn_lake::MAX_EXPRESSION_DEPTH;
    let at_limit = format!("SELECT {} AS n", vec!["1"; terms].join("+"));
    assert_eq!(longs(&f.ok(&at_limit).await), [terms as i64]);
    let columns = format!(
        "SELECT count(*) FROM dev.bronze.payments WHERE {}",
        vec!["amount > 0"; terms / 2].join(" AND ")
    );
    assert_eq!(longs(&f.ok(&columns).await), [3]);
    let ors = format!(
        "SELECT count(*) FROM dev.bronze.payments WHERE {}",
        (0..terms / 2)
            .map(|i| format!("id = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    assert_eq!(longs(&f.ok(&ors).await), [3]);
    for deep in [
        format!("SELECT {}", vec!["1"; terms + 2].join("+")),
        format!("SELECT {}", vec!["1"; 100_000].join("+")),
        format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)),
    ] {
        let err = f.refused(&f.owner, &deep).await;
        assert_eq!(err.code, ErrorCode::InvalidParameterValue);
        assert!(err.message.contains("nests too deeply"), "{}", err.message);
    }
}

/// A result past its byte limit is cut there and says so; a statement's operators hold no
/// more than its memory limit (a sort spills to disk) and the rows still come out right.
#[tokio::test]
async fn results_and_memory_are_bounded_per_statement() {
    let f = Fixture::new().await;
    let run = |statement: &'static str, limits: tarn_lake::SqlLimits| {
        let f = &f;
        async move {
            f.lake
                .sql(
                    f.store.as_ref(),
                    &f.owner,
                    statement,
                    &SqlScope {
                        limits,
                        ..SqlScope::default()
                    },
                )
                .await
        }
    };
    let capped = run(
        "SELECT value FROM generate_series(1, 10000000)",
        tarn_lake::SqlLimits {
            result_bytes: Some(1024 * 1024),
            ..Default::default()
        },
    )
    .await
    .expect("capped");
    assert!(capped.truncated);
    let held: usize = capped
        .batches
        .iter()
        .map(|b| b.get_array_memory_size())
        .sum();
    assert!(held <= 1024 * 1024, "{held}");
    assert!(capped.num_rows() > 10_000, "{}", capped.num_rows());
    let whole = run(
        "SELECT count(*) FROM generate_series(1, 1000)",
        tarn_lake::SqlLimits {
            result_bytes: Some(1024 * 1024),
            ..Default::default()
        },
    )
    .await
    .expect("whole");
    assert!(!whole.truncated);
    assert_eq!(longs(&whole), [1000]);

    let sorted = run(
        "SELECT value FROM generate_series(1, 3000000) ORDER BY value DESC LIMIT 3",
        tarn_lake::SqlLimits {
            memory: Some(16 * 1024 * 1024),
            ..Default::default()
        },
    )
    .await
    .expect("sorted within the limit");
    assert_eq!(longs(&sorted), [3_000_000, 2_999_999, 2_999_998]);
    let spilled = run(
        "SELECT value, count(*) FROM generate_series(1, 2000000) GROUP BY value ORDER BY value DESC LIMIT 2",
        tarn_lake::SqlLimits {
            memory: Some(8 * 1024 * 1024),
            ..Default::default()
        },
    )
    .await;
    match spilled {
        Ok(rows) => assert_eq!(longs(&rows), [2_000_000, 1_999_999]),
        Err(err) => assert!(
            err.message.contains("Resources exhausted") || err.message.contains("memory"),
            "{}",
            err.message
        ),
    }
}
