//! Backend-independent behaviour of the metadata store.

use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::{ObjectType, PermissionLevel, PrincipalKind};
use tarn_core::entities::{
    Dataset, DatasetInput, KeyValue, LifecycleStage, LogBatch, LoggedModelStatus, Metric,
    ModelOutput, NewLoggedModel, NewRun, RunStatus, RunUpdate, ViewType,
};
use tarn_core::events::{ACCOUNT, Change, EventQuery};
use tarn_core::search::{Comparator, Comparison, Entity, OrderBy, Value};
use tarn_core::store::{
    MetaStore, NewToken, ReadableBy, SearchExperiments, SearchLoggedModels, SearchRuns,
};

type Store = Arc<dyn MetaStore>;

pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

pub(crate) fn metric(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp,
        step,
        dataset_name: None,
        dataset_digest: None,
        model_id: None,
        run_id: None,
    }
}

fn cmp(entity: Entity, key: &str, comparator: Comparator, value: Value) -> Comparison {
    Comparison {
        entity,
        key: key.into(),
        comparator,
        value,
    }
}

fn s(text: &str) -> Value {
    Value::Str(text.into())
}

fn actor() -> tarn_core::registry::Actor {
    tarn_core::registry::Actor {
        id: 1,
        name: "admin".into(),
    }
}

async fn grant(store: &Store, experiment_id: &str, principal: &str, level: PermissionLevel) {
    store
        .update_grants(
            "dev",
            ObjectType::Experiment,
            experiment_id,
            &[(principal.into(), level)],
            &actor(),
        )
        .await
        .expect("grant");
}

async fn setup(store: &Store) -> i64 {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    store
        .create_principal("owner", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner")
        .id
}

/// A run in a new experiment of `dev`, the first one after `setup`.
async fn run_in_new_experiment(store: &Store) -> String {
    let owner = setup(store).await;
    store
        .create_experiment("dev", "e", None, &[], owner)
        .await
        .expect("create");
    new_run(store, "1", "r", 1).await
}

async fn new_run(store: &Store, experiment_id: &str, name: &str, start_time: i64) -> String {
    let run = NewRun {
        experiment_id: experiment_id.into(),
        user_id: "owner".into(),
        run_name: name.into(),
        start_time,
        tags: vec![],
    };
    store
        .create_run("dev", &run)
        .await
        .expect("create run")
        .info
        .run_id
}

fn search_runs(experiment_id: i64, filter: Vec<Comparison>) -> SearchRuns {
    SearchRuns {
        experiment_ids: vec![experiment_id],
        filter,
        order_by: vec![],
        view_type: ViewType::ActiveOnly,
        max_results: 1000,
        offset: 0,
    }
}

async fn run_names(store: &Store, query: &SearchRuns) -> Vec<String> {
    store
        .search_runs("dev", query)
        .await
        .expect("search")
        .items
        .into_iter()
        .map(|r| r.info.run_name)
        .collect()
}

pub async fn workspaces_start_with_a_default_experiment(store: Store) {
    assert!(
        store
            .ensure_workspace("dev", "tester")
            .await
            .expect("create")
    );
    assert!(
        !store
            .ensure_workspace("dev", "tester")
            .await
            .expect("again")
    );
    let default = store
        .get_experiment("dev", 0)
        .await
        .expect("default experiment");
    assert_eq!(
        (default.name.as_str(), default.artifact_location.as_str()),
        ("Default", "mlflow-artifacts:/0")
    );
    assert_eq!(
        store.list_workspaces().await.expect("list"),
        vec!["dev".to_string()]
    );
    assert!(store.workspace_exists("dev").await.expect("exists"));
    assert!(!store.workspace_exists("nope").await.expect("exists"));
}

pub async fn experiments_lifecycle(store: Store) {
    let owner = setup(&store).await;
    let id = store
        .create_experiment("dev", "churn", None, &[kv("team", "a")], owner)
        .await
        .expect("create");
    assert_eq!(id, "1");
    let duplicate = store
        .create_experiment("dev", "churn", None, &[], owner)
        .await
        .expect_err("duplicate");
    assert_eq!(duplicate.code, ErrorCode::ResourceAlreadyExists);
    // Another workspace has its own names and ids.
    assert_eq!(
        store
            .create_experiment("prod", "churn", None, &[], owner)
            .await
            .expect("prod"),
        "1"
    );

    let experiment = store.get_experiment("dev", 1).await.expect("get");
    assert_eq!(experiment.tags, vec![kv("team", "a")]);
    assert_eq!(experiment.artifact_location, "mlflow-artifacts:/1");
    assert_eq!(experiment.owner_id, Some(owner));
    assert_eq!(
        store
            .granted_levels("dev", ObjectType::Experiment, "1", &[owner])
            .await
            .expect("acl"),
        vec![PermissionLevel::CanManage]
    );

    store
        .rename_experiment("dev", 1, "churn-v2")
        .await
        .expect("rename");
    assert_eq!(
        store
            .get_experiment_by_name("dev", "churn-v2")
            .await
            .expect("by name")
            .experiment_id,
        "1"
    );
    assert_eq!(
        store
            .get_experiment_by_name("dev", "churn")
            .await
            .expect_err("old name")
            .code,
        ErrorCode::ResourceDoesNotExist
    );

    store
        .set_experiment_tag("dev", 1, &kv("team", "b"))
        .await
        .expect("tag");
    store
        .set_experiment_tag("dev", 1, &kv("stage", "x"))
        .await
        .expect("tag");
    store
        .delete_experiment_tag("dev", 1, "stage")
        .await
        .expect("delete tag");
    assert_eq!(
        store.get_experiment("dev", 1).await.expect("get").tags,
        vec![kv("team", "b")]
    );
    assert_eq!(
        store
            .delete_experiment_tag("dev", 1, "stage")
            .await
            .expect_err("gone")
            .code,
        ErrorCode::ResourceDoesNotExist
    );

    let run_id = new_run(&store, "1", "r", 1).await;
    store.delete_experiment("dev", 1).await.expect("delete");
    assert_eq!(
        store
            .get_experiment("dev", 1)
            .await
            .expect("get")
            .lifecycle_stage,
        LifecycleStage::Deleted
    );
    assert_eq!(
        store
            .get_run("dev", &run_id)
            .await
            .expect("run")
            .info
            .lifecycle_stage,
        LifecycleStage::Deleted
    );
    assert_eq!(
        store
            .delete_experiment("dev", 0)
            .await
            .expect_err("default")
            .code,
        ErrorCode::InvalidParameterValue
    );
    assert!(
        store.experiment_exists("dev", 1).await.expect("exists"),
        "deleted experiments still exist"
    );
    let in_deleted = NewRun {
        experiment_id: "1".into(),
        user_id: "owner".into(),
        run_name: "x".into(),
        start_time: 1,
        tags: vec![],
    };
    assert_eq!(
        store
            .create_run("dev", &in_deleted)
            .await
            .expect_err("deleted")
            .code,
        ErrorCode::InvalidParameterValue
    );
    let in_missing = NewRun {
        experiment_id: "42".into(),
        ..in_deleted
    };
    assert_eq!(
        store
            .create_run("dev", &in_missing)
            .await
            .expect_err("missing")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert!(!store.experiment_exists("dev", 99).await.expect("exists"));
    assert!(!store.experiment_exists("staging", 1).await.expect("exists"));
    store.restore_experiment("dev", 1).await.expect("restore");
    assert_eq!(
        store
            .get_run("dev", &run_id)
            .await
            .expect("run")
            .info
            .lifecycle_stage,
        LifecycleStage::Active
    );
    assert_eq!(
        store
            .get_experiment("prod", 7)
            .await
            .expect_err("missing")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
}

fn experiment_query(
    filter: Vec<Comparison>,
    order_by: Vec<OrderBy>,
    max_results: u64,
    offset: u64,
) -> SearchExperiments {
    SearchExperiments {
        filter,
        order_by,
        view_type: ViewType::ActiveOnly,
        max_results,
        offset,
        readable_by: None,
    }
}

pub async fn experiment_search_filters_orders_and_pages(store: Store) {
    let owner = setup(&store).await;
    for (name, team) in [
        ("alpha", "x"),
        ("Beta", "y"),
        ("gamma", "x"),
        ("delta", "y"),
    ] {
        store
            .create_experiment("dev", name, None, &[kv("team", team)], owner)
            .await
            .expect("create");
    }
    let by_name = OrderBy {
        entity: Entity::Attribute,
        key: "name".into(),
        ascending: true,
    };
    let names = |page: tarn_core::store::Page<tarn_core::entities::Experiment>| {
        page.items.into_iter().map(|e| e.name).collect::<Vec<_>>()
    };
    let all = store
        .search_experiments(
            "dev",
            &experiment_query(vec![], vec![by_name.clone()], 100, 0),
        )
        .await
        .expect("all");
    // Binary order: upper case first, as MLflow's SQLite store orders.
    assert_eq!(
        names(all),
        vec!["Beta", "Default", "alpha", "delta", "gamma"]
    );

    let like = vec![cmp(Entity::Attribute, "name", Comparator::Like, s("%a"))];
    assert_eq!(
        names(
            store
                .search_experiments(
                    "dev",
                    &experiment_query(like, vec![by_name.clone()], 100, 0)
                )
                .await
                .expect("like")
        ),
        vec!["Beta", "alpha", "delta", "gamma"]
    );
    let case = vec![cmp(Entity::Attribute, "name", Comparator::Like, s("beta"))];
    assert!(
        store
            .search_experiments("dev", &experiment_query(case, vec![], 100, 0))
            .await
            .expect("case")
            .items
            .is_empty()
    );
    let ilike = vec![cmp(Entity::Attribute, "name", Comparator::ILike, s("BETA"))];
    assert_eq!(
        names(
            store
                .search_experiments("dev", &experiment_query(ilike, vec![], 100, 0))
                .await
                .expect("ilike")
        ),
        vec!["Beta"]
    );
    let tagged = vec![cmp(Entity::Tag, "team", Comparator::Eq, s("x"))];
    assert_eq!(
        names(
            store
                .search_experiments(
                    "dev",
                    &experiment_query(tagged, vec![by_name.clone()], 100, 0)
                )
                .await
                .expect("tag")
        ),
        vec!["alpha", "gamma"]
    );
    let ids = vec![cmp(
        Entity::Attribute,
        "experiment_id",
        Comparator::In,
        Value::List(vec!["1".into(), "3".into()]),
    )];
    assert_eq!(
        names(
            store
                .search_experiments("dev", &experiment_query(ids, vec![by_name.clone()], 100, 0))
                .await
                .expect("in")
        ),
        vec!["alpha", "gamma"]
    );

    let first = store
        .search_experiments(
            "dev",
            &experiment_query(vec![], vec![by_name.clone()], 2, 0),
        )
        .await
        .expect("page 1");
    assert_eq!(first.next_offset, Some(2));
    let third = store
        .search_experiments(
            "dev",
            &experiment_query(vec![], vec![by_name.clone()], 2, 4),
        )
        .await
        .expect("page 3");
    assert_eq!(
        (names(third.clone()), third.next_offset),
        (vec!["gamma".to_string()], None)
    );

    store.delete_experiment("dev", 2).await.expect("delete");
    let mut deleted_only = experiment_query(vec![], vec![], 100, 0);
    deleted_only.view_type = ViewType::DeletedOnly;
    assert_eq!(
        names(
            store
                .search_experiments("dev", &deleted_only)
                .await
                .expect("deleted")
        ),
        vec!["Beta"]
    );
}

pub async fn experiment_search_respects_read_grants(store: Store) {
    let owner = setup(&store).await;
    let reader = store
        .create_principal("reader", PrincipalKind::User, false, None, "tester")
        .await
        .expect("reader")
        .id;
    let group = store
        .create_principal("analysts", PrincipalKind::Group, false, None, "tester")
        .await
        .expect("group")
        .id;
    for name in ["a", "b", "c"] {
        store
            .create_experiment("dev", name, None, &[], owner)
            .await
            .expect("create");
    }
    grant(&store, "2", "reader", PermissionLevel::CanRead).await;
    grant(&store, "3", "analysts", PermissionLevel::CanEdit).await;
    let mut query = experiment_query(
        vec![],
        vec![OrderBy {
            entity: Entity::Attribute,
            key: "name".into(),
            ascending: true,
        }],
        100,
        0,
    );
    query.readable_by = Some(ReadableBy {
        grantee_ids: vec![reader],
    });
    let visible: Vec<String> = store
        .search_experiments("dev", &query)
        .await
        .expect("search")
        .items
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(visible, vec!["b"]);
    query.readable_by = Some(ReadableBy {
        grantee_ids: vec![reader, group],
    });
    let visible: Vec<String> = store
        .search_experiments("dev", &query)
        .await
        .expect("search")
        .items
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(visible, vec!["b", "c"]);
}

pub async fn runs_log_and_read_back(store: Store) {
    let owner = setup(&store).await;
    store
        .create_experiment("dev", "e", None, &[], owner)
        .await
        .expect("create");
    let run = store
        .create_run(
            "dev",
            &NewRun {
                experiment_id: "1".into(),
                user_id: "owner".into(),
                run_name: "first".into(),
                start_time: 5,
                tags: vec![kv("t", "1")],
            },
        )
        .await
        .expect("run");
    assert_eq!(run.info.run_id.len(), 32);
    assert_eq!(
        run.info.artifact_uri,
        format!("mlflow-artifacts:/1/{}/artifacts", run.info.run_id)
    );
    assert_eq!(run.info.status, RunStatus::Running);
    assert!(run.data.tags.contains(&kv("mlflow.runName", "first")));
    let run_id = run.info.run_id;

    let batch = LogBatch {
        metrics: vec![
            metric("acc", 0.5, 10, 0),
            metric("acc", 0.75, 11, 1),
            metric("loss", f64::NAN, 10, 0),
            metric("big", f64::INFINITY, 10, 0),
        ],
        params: vec![kv("lr", "0.1"), kv("depth", "3")],
        tags: vec![kv("mlflow.runName", "renamed"), kv("t", "2")],
    };
    store.log_batch("dev", &run_id, &batch).await.expect("log");
    let update = RunUpdate {
        status: Some(RunStatus::Finished),
        end_time: Some(99),
        run_name: None,
    };
    let updated = store
        .update_run("dev", &run_id, &update)
        .await
        .expect("update");
    assert_eq!(
        (updated.status, updated.end_time, updated.run_name.as_str()),
        (RunStatus::Finished, Some(99), "renamed")
    );

    let run = store.get_run("dev", &run_id).await.expect("get");
    let acc = run
        .data
        .metrics
        .iter()
        .find(|m| m.key == "acc")
        .expect("acc");
    assert_eq!((acc.value, acc.step, acc.timestamp), (0.75, 1, 11));
    assert!(
        run.data
            .metrics
            .iter()
            .find(|m| m.key == "loss")
            .expect("loss")
            .value
            .is_nan()
    );
    assert_eq!(
        run.data
            .metrics
            .iter()
            .find(|m| m.key == "big")
            .expect("big")
            .value,
        f64::MAX
    );
    assert_eq!(run.data.params, vec![kv("depth", "3"), kv("lr", "0.1")]);
    assert!(run.data.tags.contains(&kv("t", "2")));
    assert_eq!(
        store.run_tag("dev", &run_id, "t").await.expect("one tag"),
        Some("2".to_string())
    );

    let dataset = DatasetInput {
        tags: vec![kv("mlflow.data.context", "training")],
        dataset: Dataset {
            name: "iris".into(),
            digest: "abc".into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: None,
            profile: None,
        },
    };
    store
        .log_inputs(
            "dev",
            &run_id,
            std::slice::from_ref(&dataset),
            &["m-1".into()],
        )
        .await
        .expect("inputs");
    store
        .log_outputs(
            "dev",
            &run_id,
            &[ModelOutput {
                model_id: "m-2".into(),
                step: 3,
            }],
        )
        .await
        .expect("outputs");
    let run = store.get_run("dev", &run_id).await.expect("get");
    assert_eq!(run.inputs.dataset_inputs, vec![dataset]);
    assert_eq!(run.inputs.model_inputs[0].model_id, "m-1");
    assert_eq!(
        run.outputs.model_outputs,
        vec![ModelOutput {
            model_id: "m-2".into(),
            step: 3
        }]
    );

    store
        .delete_run_tag("dev", &run_id, "t")
        .await
        .expect("delete tag");
    assert_eq!(
        store
            .delete_run_tag("dev", &run_id, "t")
            .await
            .expect_err("again")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        store.run_tag("dev", &run_id, "t").await.expect("no tag"),
        None
    );
    // Runs are workspace-scoped.
    assert_eq!(
        store
            .run_tag("prod", &run_id, "t")
            .await
            .expect_err("other workspace")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        store
            .get_run("prod", &run_id)
            .await
            .expect_err("other workspace")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
}

pub async fn params_are_immutable_and_a_failed_batch_writes_nothing(store: Store) {
    let run_id = run_in_new_experiment(&store).await;
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                params: vec![kv("lr", "0.1")],
                ..Default::default()
            },
        )
        .await
        .expect("log");
    // The same value again is fine.
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                params: vec![kv("lr", "0.1")],
                ..Default::default()
            },
        )
        .await
        .expect("same");
    let bad = LogBatch {
        metrics: vec![metric("m", 1.0, 1, 0)],
        params: vec![kv("lr", "0.2")],
        tags: vec![kv("x", "y")],
    };
    let err = store
        .log_batch("dev", &run_id, &bad)
        .await
        .expect_err("changed param");
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);
    assert!(
        err.message.contains("Changing param values is not allowed"),
        "{}",
        err.message
    );
    let run = store.get_run("dev", &run_id).await.expect("get");
    assert!(run.data.metrics.is_empty());
    assert!(!run.data.tags.iter().any(|t| t.key == "x"));
    assert_eq!(run.data.params, vec![kv("lr", "0.1")]);
}

pub async fn latest_metric_follows_step_then_timestamp(store: Store) {
    let run_id = run_in_new_experiment(&store).await;
    for m in [
        metric("m", 5.0, 100, 2),
        metric("m", 9.0, 200, 1),
        metric("m", 7.0, 50, 2),
        metric("m", 6.0, 150, 2),
    ] {
        store
            .log_batch(
                "dev",
                &run_id,
                &LogBatch {
                    metrics: vec![m],
                    ..Default::default()
                },
            )
            .await
            .expect("log");
    }
    let run = store.get_run("dev", &run_id).await.expect("get");
    let latest = &run.data.metrics[0];
    assert_eq!((latest.value, latest.step, latest.timestamp), (6.0, 2, 150));

    // In one batch: a tie on step and timestamp goes to the larger value, NaN above numbers;
    // a point logged twice is accepted and changes nothing.
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                metrics: vec![
                    metric("m", 1.0, 150, 2),
                    metric("n", 3.0, 10, 0),
                    metric("n", 4.0, 10, 0),
                    metric("n", 2.0, 10, 0),
                    metric("m", 6.0, 150, 2),
                ],
                ..Default::default()
            },
        )
        .await
        .expect("log ties");
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                metrics: vec![metric("m", f64::NAN, 150, 2), metric("m", 6.0, 150, 2)],
                ..Default::default()
            },
        )
        .await
        .expect("log NaN");
    let run = store.get_run("dev", &run_id).await.expect("get");
    let mut latest: Vec<_> = run
        .data
        .metrics
        .iter()
        .map(|m| (m.key.clone(), m.value, m.step, m.timestamp))
        .collect();
    latest.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(latest[1], ("n".to_string(), 4.0, 0, 10));
    assert_eq!(
        (latest[0].0.as_str(), latest[0].2, latest[0].3),
        ("m", 2, 150)
    );
    assert!(latest[0].1.is_nan(), "NaN wins a tie: {latest:?}");
    let history = store
        .metric_history("dev", &run_id, "m", 0, 100)
        .await
        .expect("history");
    assert_eq!(history.items.len(), 6, "the repeated point is stored once");
}

pub async fn metric_history_pages_in_order(store: Store) {
    let run_id = run_in_new_experiment(&store).await;
    let metrics: Vec<Metric> = (0..1000)
        .rev()
        .map(|step| metric("loss", 1.0 / (step as f64 + 1.0), step, step))
        .collect();
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                metrics: metrics.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("log");
    // Exact duplicates are stored once.
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                metrics: metrics[..10].to_vec(),
                ..Default::default()
            },
        )
        .await
        .expect("again");
    let mut steps = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .metric_history("dev", &run_id, "loss", offset, 300)
            .await
            .expect("history");
        steps.extend(page.items.iter().map(|m| m.step));
        match page.next_offset {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(steps, (0..1000).collect::<Vec<_>>());
    assert_eq!(
        store
            .metric_history("dev", "nope", "loss", 0, 10)
            .await
            .expect_err("no run")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
}

pub async fn deleted_runs_refuse_logging(store: Store) {
    let owner = setup(&store).await;
    store
        .create_experiment("dev", "e", None, &[], owner)
        .await
        .expect("create");
    let run_id = new_run(&store, "1", "r", 1).await;
    store.delete_run("dev", &run_id).await.expect("delete");
    let err = store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                metrics: vec![metric("m", 1.0, 1, 0)],
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        err.expect_err("deleted").code,
        ErrorCode::InvalidParameterValue
    );
    assert!(run_names(&store, &search_runs(1, vec![])).await.is_empty());
    let mut deleted = search_runs(1, vec![]);
    deleted.view_type = ViewType::DeletedOnly;
    assert_eq!(run_names(&store, &deleted).await, vec!["r"]);
    let finish = RunUpdate {
        status: Some(RunStatus::Finished),
        ..Default::default()
    };
    assert_eq!(
        store
            .update_run("dev", &run_id, &finish)
            .await
            .expect_err("deleted")
            .code,
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(
        store
            .update_run("dev", "missing", &finish)
            .await
            .expect_err("missing")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    store.restore_run("dev", &run_id).await.expect("restore");
    assert_eq!(run_names(&store, &search_runs(1, vec![])).await, vec!["r"]);
    assert_eq!(
        store
            .delete_run("dev", "missing")
            .await
            .expect_err("missing")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
}

async fn seed_runs(store: &Store) {
    let owner = setup(store).await;
    store
        .create_experiment("dev", "e", None, &[], owner)
        .await
        .expect("create");
    let rows = [
        ("rf-1", 0.9, "rf", "Alpha", true),
        ("rf-2", 0.4, "rf", "alpha", false),
        ("lr-1", 0.7, "lr", "beta", true),
        ("gb-1", 0.95, "gb", "beta", false),
    ];
    for (i, (name, acc, model, team, finished)) in rows.into_iter().enumerate() {
        let run_id = new_run(store, "1", name, 1000 + i as i64).await;
        let batch = LogBatch {
            metrics: vec![metric("acc", acc, 1, 0)],
            params: vec![kv("model", model)],
            tags: vec![kv("team", team)],
        };
        store.log_batch("dev", &run_id, &batch).await.expect("log");
        if finished {
            store
                .update_run(
                    "dev",
                    &run_id,
                    &RunUpdate {
                        status: Some(RunStatus::Finished),
                        ..Default::default()
                    },
                )
                .await
                .expect("end");
        }
    }
    // A run with no metric, param or tag.
    new_run(store, "1", "empty", 2000).await;
}

pub async fn run_search_filters(store: Store) {
    seed_runs(&store).await;
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    let q = |filter| search_runs(1, filter);
    let metric_gt = vec![cmp(
        Entity::Metric,
        "acc",
        Comparator::Gt,
        Value::Number(0.5),
    )];
    assert_eq!(
        sorted(run_names(&store, &q(metric_gt)).await),
        vec!["gb-1", "lr-1", "rf-1"]
    );
    let combined = vec![
        cmp(Entity::Metric, "acc", Comparator::Gt, Value::Number(0.5)),
        cmp(Entity::Param, "model", Comparator::Eq, s("rf")),
    ];
    assert_eq!(run_names(&store, &q(combined)).await, vec!["rf-1"]);
    let like = vec![cmp(Entity::Tag, "team", Comparator::Like, s("a%"))];
    assert_eq!(run_names(&store, &q(like)).await, vec!["rf-2"]);
    let ilike = vec![cmp(Entity::Tag, "team", Comparator::ILike, s("a%"))];
    assert_eq!(
        sorted(run_names(&store, &q(ilike)).await),
        vec!["rf-1", "rf-2"]
    );
    let ne = vec![cmp(Entity::Param, "model", Comparator::Ne, s("rf"))];
    assert_eq!(
        sorted(run_names(&store, &q(ne)).await),
        vec!["gb-1", "lr-1"]
    );
    let status = vec![cmp(
        Entity::Attribute,
        "status",
        Comparator::Eq,
        s("FINISHED"),
    )];
    assert_eq!(
        sorted(run_names(&store, &q(status)).await),
        vec!["lr-1", "rf-1"]
    );
    let names_in = vec![cmp(
        Entity::Attribute,
        "run_name",
        Comparator::In,
        Value::List(vec!["lr-1".into(), "empty".into()]),
    )];
    assert_eq!(
        sorted(run_names(&store, &q(names_in)).await),
        vec!["empty", "lr-1"]
    );
    let not_in = vec![cmp(
        Entity::Attribute,
        "run_name",
        Comparator::NotIn,
        Value::List(vec!["lr-1".into(), "empty".into()]),
    )];
    assert_eq!(run_names(&store, &q(not_in)).await.len(), 3);
    let started = vec![cmp(
        Entity::Attribute,
        "start_time",
        Comparator::Ge,
        Value::Number(1002.0),
    )];
    assert_eq!(
        sorted(run_names(&store, &q(started)).await),
        vec!["empty", "gb-1", "lr-1"]
    );
    let missing = vec![cmp(Entity::Param, "model", Comparator::IsNull, Value::Null)];
    assert_eq!(run_names(&store, &q(missing)).await, vec!["empty"]);
    let present = vec![cmp(Entity::Tag, "team", Comparator::IsNotNull, Value::Null)];
    assert_eq!(run_names(&store, &q(present)).await.len(), 4);
}

pub async fn run_search_orders_and_pages_without_duplicates(store: Store) {
    seed_runs(&store).await;
    let mut query = search_runs(1, vec![]);
    query.order_by = vec![OrderBy {
        entity: Entity::Metric,
        key: "acc".into(),
        ascending: false,
    }];
    // Runs without the metric sort last.
    assert_eq!(
        run_names(&store, &query).await,
        vec!["gb-1", "rf-1", "lr-1", "rf-2", "empty"]
    );
    query.order_by = vec![OrderBy {
        entity: Entity::Metric,
        key: "acc".into(),
        ascending: true,
    }];
    assert_eq!(
        run_names(&store, &query).await,
        vec!["rf-2", "lr-1", "rf-1", "gb-1", "empty"]
    );
    query.order_by = vec![OrderBy {
        entity: Entity::Param,
        key: "model".into(),
        ascending: true,
    }];
    assert_eq!(
        run_names(&store, &query).await[..2].to_vec(),
        vec!["gb-1", "lr-1"]
    );
    // Default order: newest start first.
    query.order_by = vec![];
    assert_eq!(
        run_names(&store, &query).await,
        vec!["empty", "gb-1", "lr-1", "rf-2", "rf-1"]
    );

    query.order_by = vec![OrderBy {
        entity: Entity::Metric,
        key: "acc".into(),
        ascending: false,
    }];
    query.max_results = 2;
    let mut seen = Vec::new();
    loop {
        let page = store.search_runs("dev", &query).await.expect("page");
        seen.extend(page.items.into_iter().map(|r| r.info.run_name));
        match page.next_offset {
            Some(next) => query.offset = next,
            None => break,
        }
    }
    assert_eq!(seen, vec!["gb-1", "rf-1", "lr-1", "rf-2", "empty"]);
}

pub async fn hostile_values_are_plain_values(store: Store) {
    seed_runs(&store).await;
    for hostile in [
        "rf' OR '1'='1",
        "'; DROP TABLE runs; --",
        "%' UNION SELECT * FROM tokens --",
        "x\") OR 1=1 --",
    ] {
        let filter = vec![cmp(Entity::Param, "model", Comparator::Eq, s(hostile))];
        assert!(
            run_names(&store, &search_runs(1, filter)).await.is_empty(),
            "{hostile:?}"
        );
        let key = vec![cmp(
            Entity::Tag,
            hostile,
            Comparator::IsNotNull,
            Value::Null,
        )];
        assert!(
            run_names(&store, &search_runs(1, key)).await.is_empty(),
            "{hostile:?}"
        );
    }
    // NUL cannot be stored by PostgreSQL: both backends refuse it the same way.
    let nul = vec![cmp(Entity::Param, "model", Comparator::Eq, s("rf\0"))];
    assert_eq!(
        store
            .search_runs("dev", &search_runs(1, nul))
            .await
            .expect_err("nul")
            .code,
        ErrorCode::InvalidParameterValue
    );
    assert_eq!(run_names(&store, &search_runs(1, vec![])).await.len(), 5);
}

pub async fn logged_models_lifecycle(store: Store) {
    let owner = setup(&store).await;
    store
        .create_experiment("dev", "e", None, &[], owner)
        .await
        .expect("create");
    let run_id = new_run(&store, "1", "r", 1).await;
    let model = store
        .create_logged_model(
            "dev",
            &NewLoggedModel {
                experiment_id: "1".into(),
                name: "model".into(),
                model_type: Some("sklearn".into()),
                source_run_id: Some(run_id.clone()),
                creator_id: owner,
                params: vec![kv("alpha", "1")],
                tags: vec![kv("k", "v")],
            },
        )
        .await
        .expect("create");
    let id = model.info.model_id.clone();
    assert!(id.starts_with("m-") && id.len() == 34);
    assert_eq!(
        model.info.artifact_uri,
        format!("mlflow-artifacts:/1/models/{id}/artifacts")
    );
    assert_eq!(model.info.status, LoggedModelStatus::LoggedModelPending);
    let mut m = metric("acc", 0.9, 1, 0);
    m.model_id = Some(id.clone());
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                metrics: vec![m],
                ..Default::default()
            },
        )
        .await
        .expect("model metric");
    let ready = store
        .finalize_logged_model("dev", &id, LoggedModelStatus::LoggedModelReady)
        .await
        .expect("finalize");
    assert_eq!(ready.info.status, LoggedModelStatus::LoggedModelReady);
    assert_eq!(ready.data.metrics.len(), 1);
    assert_eq!(
        ready.data.metrics[0].run_id.as_deref(),
        Some(run_id.as_str())
    );
    store
        .set_logged_model_tags("dev", &id, &[kv("k", "w"), kv("x", "y")])
        .await
        .expect("tags");
    store
        .delete_logged_model_tag("dev", &id, "x")
        .await
        .expect("delete tag");
    assert_eq!(
        store
            .get_logged_model("dev", &id)
            .await
            .expect("get")
            .info
            .tags,
        vec![kv("k", "w")]
    );
    let query = SearchLoggedModels {
        experiment_ids: vec![1],
        filter: vec![cmp(
            Entity::Metric,
            "acc",
            Comparator::Gt,
            Value::Number(0.5),
        )],
        order_by: vec![],
        max_results: 10,
        offset: 0,
    };
    assert_eq!(
        store
            .search_logged_models("dev", &query)
            .await
            .expect("search")
            .items
            .len(),
        1
    );
    store.delete_logged_model("dev", &id).await.expect("delete");
    assert_eq!(
        store
            .get_logged_model("dev", &id)
            .await
            .expect_err("deleted")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
}

pub async fn principals_tokens_and_groups(store: Store) {
    setup(&store).await;
    let alice = store
        .create_principal("alice", PrincipalKind::User, false, Some("hash"), "tester")
        .await
        .expect("alice");
    assert_eq!(
        store
            .create_principal("alice", PrincipalKind::User, false, None, "tester")
            .await
            .expect_err("dup")
            .code,
        ErrorCode::ResourceAlreadyExists
    );
    store
        .create_principal("ml", PrincipalKind::Group, false, None, "tester")
        .await
        .expect("group");
    store
        .add_group_member("ml", "alice", "tester")
        .await
        .expect("member");
    assert_eq!(
        store
            .add_group_member("alice", "owner", "tester")
            .await
            .expect_err("not a group")
            .code,
        ErrorCode::InvalidParameterValue
    );

    let info = store
        .create_token(
            &NewToken {
                token_id: "t1",
                principal_name: "alice",
                token_hash: "h1",
                comment: "laptop",
                expires_at: None,
                workspace: None,
            },
            "tester",
        )
        .await
        .expect("token");
    let principal = store
        .principal_for_token("h1", 0)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!((principal.id, principal.name.as_str()), (alice.id, "alice"));
    assert_eq!(principal.group_ids.len(), 1);
    assert_eq!(principal.only_workspace, None);
    store
        .create_token(
            &NewToken {
                token_id: "t2",
                principal_name: "alice",
                token_hash: "h2",
                comment: "short",
                expires_at: Some(1_000),
                workspace: Some("prod"),
            },
            "tester",
        )
        .await
        .expect("token");
    // A token limited to one workspace says which.
    let limited = store
        .principal_for_token("h2", 0)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        (limited.id, limited.only_workspace.as_deref()),
        (alice.id, Some("prod"))
    );
    assert!(
        store
            .principal_for_token("h2", 999)
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(
        store
            .principal_for_token("h2", 1_000)
            .await
            .expect("lookup")
            .is_none(),
        "expired"
    );
    let listed = store.list_tokens(Some("alice")).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.token_id.as_str(), t.workspace.as_deref()))
            .collect::<Vec<_>>(),
        [("t1", None), ("t2", Some("prod"))]
    );
    store
        .revoke_token(&info.token_id, "tester")
        .await
        .expect("revoke");
    assert!(
        store
            .principal_for_token("h1", 0)
            .await
            .expect("lookup")
            .is_none(),
        "revoked"
    );
    assert_eq!(store.token_owner("t2").await.expect("owner"), alice.id);

    let (hash, login) = store
        .password_login("alice")
        .await
        .expect("login")
        .expect("user");
    assert_eq!((hash.as_str(), login.name.as_str()), ("hash", "alice"));
    let on_behalf = store.active_principal("alice").await.expect("active");
    assert_eq!(
        (on_behalf.id, on_behalf.group_ids.len()),
        (alice.id, 1),
        "with the groups whose grants it holds"
    );
    store
        .set_active("alice", false, "tester")
        .await
        .expect("deactivate");
    let err = store
        .active_principal("alice")
        .await
        .expect_err("deactivated");
    assert_eq!(err.code, ErrorCode::PermissionDenied, "{}", err.message);
    let err = store.active_principal("nobody").await.expect_err("unknown");
    assert_eq!(err.code, ErrorCode::ResourceDoesNotExist);
    assert!(
        store
            .password_login("alice")
            .await
            .expect("login")
            .is_none()
    );
    assert!(
        store
            .principal_for_token("h2", 0)
            .await
            .expect("lookup")
            .is_none(),
        "inactive"
    );
    assert!(
        store
            .password_login("ml")
            .await
            .expect("group login")
            .is_none()
    );

    // Every change to principals, memberships and tokens is in the account's trail, by whom,
    // and no token secret or hash is in it; refused and repeated changes are not.
    store
        .add_group_member("ml", "alice", "tester")
        .await
        .expect("already a member");
    store
        .set_active("alice", false, "tester")
        .await
        .expect("already inactive");
    let trail = store
        .events(&EventQuery {
            workspace: Some(ACCOUNT.into()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let alice_created = Change::PrincipalCreated {
        name: "alice".into(),
        kind: "user".into(),
    };
    let changes: Vec<Change> = trail
        .iter()
        .map(|e| e.change.clone())
        .skip_while(|change| *change != alice_created)
        .collect();
    assert_eq!(
        changes,
        [
            alice_created,
            Change::PrincipalCreated {
                name: "ml".into(),
                kind: "group".into()
            },
            Change::GroupMemberAdded {
                group: "ml".into(),
                member: "alice".into()
            },
            Change::TokenCreated {
                id: "t1".into(),
                principal: "alice".into(),
                expires_at: None
            },
            Change::TokenCreated {
                id: "t2".into(),
                principal: "alice".into(),
                expires_at: Some(1_000)
            },
            Change::TokenRevoked { id: "t1".into() },
            Change::PrincipalDeactivated {
                name: "alice".into()
            },
        ]
    );
    assert!(trail.iter().all(|e| e.actor == "tester"));
    assert_eq!(
        store.last_event_id().await.expect("last id"),
        trail.last().expect("events").id,
        "where a server starts following the stream"
    );
    let text = serde_json::to_string(&trail).expect("json");
    assert!(!text.contains("\"h1\"") && !text.contains("hash"), "{text}");

    // SCIM attributes come back as sent; a delete takes the principal out of its groups and
    // workspaces and revokes its tokens, and activating it brings it back.
    let attributes = serde_json::json!({"displayName": "Alice ü", "emails": [{"value": "a@x.io", "primary": true}], "n": 1.5});
    store
        .set_principal_attributes("alice", &attributes, "tester")
        .await
        .expect("attributes");
    let alice_now = store.get_principal("alice").await.expect("alice");
    assert_eq!(alice_now.attributes, attributes);
    assert_eq!(alice_now.deleted_at, None);
    assert_eq!(
        store
            .set_principal_attributes("nobody", &attributes, "tester")
            .await
            .expect_err("unknown")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    store
        .set_active("alice", true, "tester")
        .await
        .expect("active");
    store
        .add_group_member("ml", "alice", "tester")
        .await
        .expect("member again");
    store
        .add_workspace_member("dev", "alice", "tester")
        .await
        .expect("workspace member");
    store
        .create_token(
            &NewToken {
                token_id: "t3",
                principal_name: "alice",
                token_hash: "h3",
                comment: "scim",
                expires_at: None,
                workspace: None,
            },
            "tester",
        )
        .await
        .expect("token");
    let ml = store.get_principal("ml").await.expect("ml");
    assert!(
        store
            .group_memberships()
            .await
            .expect("memberships")
            .contains(&(ml.id, alice.id))
    );
    store
        .delete_principal("alice", "tester")
        .await
        .expect("delete");
    let deleted = store.get_principal("alice").await.expect("kept");
    assert!(deleted.deleted_at.is_some() && !deleted.active);
    assert!(
        !store
            .group_memberships()
            .await
            .expect("memberships")
            .iter()
            .any(|(_, member)| *member == alice.id)
    );
    assert!(
        !store
            .is_workspace_member("dev", &[alice.id])
            .await
            .expect("member?")
    );
    assert_eq!(
        store.principal_for_token("h3", 0).await.expect("token"),
        None
    );
    store
        .set_active("alice", true, "tester")
        .await
        .expect("back");
    let back = store.get_principal("alice").await.expect("back");
    assert!(back.active && back.deleted_at.is_none());
    assert_eq!(back.attributes, attributes);
    let identity = store
        .events(&EventQuery {
            workspace: None,
            after_id: 0,
            entity: Some("principal".into()),
            object: Some("alice".into()),
            actor: None,
            limit: 100,
        })
        .await
        .expect("events");
    assert!(identity.iter().any(
        |e| matches!(&e.change, Change::PrincipalUpdated { attributes: a, .. } if *a == attributes)
    ));
    assert!(identity.iter().any(|e| e.change
        == Change::PrincipalDeleted {
            name: "alice".into()
        }));
}

pub async fn workspace_membership_and_grants(store: Store) {
    let owner = setup(&store).await;
    let bob = store
        .create_principal("bob", PrincipalKind::User, false, None, "tester")
        .await
        .expect("bob")
        .id;
    let team = store
        .create_principal("team", PrincipalKind::Group, false, None, "tester")
        .await
        .expect("team")
        .id;
    store
        .add_group_member("team", "bob", "tester")
        .await
        .expect("member");
    assert!(
        !store
            .is_workspace_member("dev", &[bob, team])
            .await
            .expect("member?")
    );
    store
        .add_workspace_member("dev", "team", "tester")
        .await
        .expect("add group");
    assert!(
        store
            .is_workspace_member("dev", &[bob, team])
            .await
            .expect("via group")
    );
    assert!(
        !store
            .is_workspace_member("prod", &[bob, team])
            .await
            .expect("not prod")
    );
    assert_eq!(
        store
            .add_workspace_member("nope", "bob", "tester")
            .await
            .expect_err("no ws")
            .code,
        ErrorCode::ResourceDoesNotExist
    );

    store
        .create_experiment("dev", "e", None, &[], owner)
        .await
        .expect("create");
    grant(&store, "1", "bob", PermissionLevel::CanRead).await;
    grant(&store, "1", "bob", PermissionLevel::CanEdit).await;
    assert_eq!(
        store
            .granted_levels("dev", ObjectType::Experiment, "1", &[bob])
            .await
            .expect("levels"),
        vec![PermissionLevel::CanEdit]
    );
    let grants = store
        .object_grants("dev", ObjectType::Experiment, "1")
        .await
        .expect("grants");
    assert_eq!(
        grants
            .iter()
            .map(|g| g.principal_name.as_str())
            .collect::<Vec<_>>(),
        vec!["bob", "owner"]
    );
    store
        .replace_grants(
            "dev",
            ObjectType::Experiment,
            "1",
            &[("team".into(), PermissionLevel::CanRead)],
            &actor(),
        )
        .await
        .expect("replace");
    assert!(
        store
            .granted_levels("dev", ObjectType::Experiment, "1", &[bob])
            .await
            .expect("levels")
            .is_empty()
    );
    assert_eq!(
        store
            .granted_levels("dev", ObjectType::Experiment, "1", &[bob, team])
            .await
            .expect("levels"),
        vec![PermissionLevel::CanRead]
    );
    let unknown = store
        .update_grants(
            "dev",
            ObjectType::Experiment,
            "1",
            &[("ghost".into(), PermissionLevel::CanRead)],
            &actor(),
        )
        .await;
    assert_eq!(
        unknown.expect_err("ghost").code,
        ErrorCode::InvalidParameterValue
    );
    // A grant in one workspace says nothing about another.
    assert!(
        store
            .granted_levels("prod", ObjectType::Experiment, "1", &[team])
            .await
            .expect("levels")
            .is_empty()
    );
}

pub async fn concurrent_logging_to_one_run(store: Store) {
    let run_id = run_in_new_experiment(&store).await;
    let mut tasks = Vec::new();
    for writer in 0..8i64 {
        let store = store.clone();
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..25i64 {
                let batch = LogBatch {
                    metrics: vec![metric(
                        "m",
                        (writer * 100 + step) as f64,
                        step,
                        writer * 100 + step,
                    )],
                    ..Default::default()
                };
                store.log_batch("dev", &run_id, &batch).await.expect("log");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let history = store
        .metric_history("dev", &run_id, "m", 0, 1000)
        .await
        .expect("history");
    assert_eq!(history.items.len(), 200);
    let latest = store
        .get_run("dev", &run_id)
        .await
        .expect("run")
        .data
        .metrics[0]
        .clone();
    assert_eq!(latest.step, 724);
}

/// Requests go away mid-write (a client hangs up): whichever write held the writer, the ones
/// still waiting must be written and the writer must stay usable.
pub async fn writers_that_go_away_do_not_stall_the_others(store: Store) {
    let run_id = run_in_new_experiment(&store).await;
    let mut kept = Vec::new();
    for writer in 0..48i64 {
        let store = store.clone();
        let run_id = run_id.clone();
        let task = tokio::spawn(async move {
            let batch = LogBatch {
                metrics: vec![metric(&format!("m{writer}"), 1.0, writer, 0)],
                ..Default::default()
            };
            store.log_batch("dev", &run_id, &batch).await
        });
        if writer % 3 == 0 {
            task.abort();
        } else {
            kept.push(task);
        }
    }
    let kept_count = kept.len();
    for task in kept {
        tokio::time::timeout(std::time::Duration::from_secs(60), task)
            .await
            .expect("a waiting write was never written")
            .expect("task")
            .expect("log");
    }
    let last = LogBatch {
        metrics: vec![metric("last", 2.0, 0, 0)],
        ..Default::default()
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.log_batch("dev", &run_id, &last),
    )
    .await
    .expect("the writer stalled")
    .expect("log after the others");
    let metrics = store
        .get_run("dev", &run_id)
        .await
        .expect("run")
        .data
        .metrics;
    // Each kept write and the last one are there; an aborted one may have landed or not.
    assert!(
        metrics.len() > kept_count && metrics.len() <= 49,
        "{}",
        metrics.len()
    );
    assert!(metrics.iter().any(|m| m.key == "last"));
}

/// Writes that arrive together may share a transaction (SQLite's group commit): a refused one
/// must take back only what it wrote itself.
pub async fn a_refused_write_rolls_back_alone_among_concurrent_ones(store: Store) {
    let run_id = run_in_new_experiment(&store).await;
    store
        .log_batch(
            "dev",
            &run_id,
            &LogBatch {
                params: vec![kv("fixed", "a")],
                ..Default::default()
            },
        )
        .await
        .expect("fixed param");
    let mut tasks = Vec::new();
    for writer in 0..40 {
        let store = store.clone();
        let run_id = run_id.clone();
        tasks.push(tokio::spawn(async move {
            // Odd writers write a fresh param and a metric, then are refused for changing `fixed`.
            let refused = writer % 2 == 1;
            let mut params = vec![kv(&format!("p{writer}"), "v")];
            if refused {
                params.push(kv("fixed", "b"));
            }
            let batch = LogBatch {
                params,
                metrics: vec![metric(&format!("m{writer}"), 1.0, 1, 0)],
                ..Default::default()
            };
            let outcome = store.log_batch("dev", &run_id, &batch).await;
            (refused, outcome.is_err())
        }));
    }
    for task in tasks {
        let (refused, failed) = task.await.expect("task");
        assert_eq!(refused, failed);
    }
    let run = store.get_run("dev", &run_id).await.expect("run");
    let mut params: Vec<String> = run.data.params.iter().map(|p| p.key.clone()).collect();
    params.sort();
    let mut expected: Vec<String> = (0..40)
        .filter(|w| w % 2 == 0)
        .map(|w| format!("p{w}"))
        .chain(["fixed".to_string()])
        .collect();
    expected.sort();
    assert_eq!(params, expected);
    assert_eq!(run.data.metrics.len(), 20, "refused writers left no metric");
    assert!(
        run.data
            .params
            .iter()
            .any(|p| p.key == "fixed" && p.value == "a")
    );
}
