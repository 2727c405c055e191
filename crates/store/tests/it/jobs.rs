//! Backend-independent behaviour of the jobs store.

use std::sync::Arc;

use serde_json::json;
use tarn_core::ErrorCode;
use tarn_core::auth::{ObjectType, PermissionLevel, PrincipalKind};
use tarn_core::events::{Change, EventQuery};
use tarn_core::jobs::{JobRun, LifeCycle, ResultState, RunFilter, RunState, TaskOutput, TaskRun};
use tarn_core::registry::Actor;
use tarn_core::store::MetaStore;

type Store = Arc<dyn MetaStore>;

pub async fn jobs_keep_their_settings_owner_and_events(store: Store) {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let owner = store
        .create_principal("owner", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    let actor = Actor {
        id: owner.id,
        name: owner.name.clone(),
    };
    // Every value comes back as sent: unicode, big integers, nesting, fields tarn does not read.
    let settings = json!({
        "name": "Nightly Training ✓",
        "tasks": [{"task_key": "train", "spark_python_task": {"python_file": "/x/train.py",
                   "parameters": ["--rows", "1e6"]}}],
        "max_concurrent_runs": 1,
        "job_clusters": [{"job_cluster_key": "c", "new_cluster": {"num_workers": 9007199254740993_i64}}],
    });
    let job = store
        .create_job("dev", &settings, "owner", 10, &actor)
        .await
        .expect("create");
    assert_eq!(job.settings, settings);
    assert_eq!(job.creator_user_name, "owner");
    assert_eq!(store.get_job("dev", job.job_id).await.expect("get"), job);
    assert_eq!(
        store
            .get_job("prod", job.job_id)
            .await
            .expect_err("another workspace's job")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        store
            .create_job("nowhere", &settings, "owner", 10, &actor)
            .await
            .expect_err("no such workspace")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        store
            .granted_levels("dev", ObjectType::Job, &job.job_id.to_string(), &[owner.id])
            .await
            .expect("levels"),
        vec![PermissionLevel::IsOwner],
        "the creator owns the job"
    );

    // Listing: by id, a page at a time, the name matched whatever its case.
    let mut ids = vec![job.job_id];
    for i in 0..4 {
        let other = store
            .create_job(
                "dev",
                &json!({"name": format!("job {i}")}),
                "owner",
                11,
                &actor,
            )
            .await
            .expect("more");
        ids.push(other.job_id);
    }
    let first = store.list_jobs("dev", None, 0, 3).await.expect("page 1");
    assert_eq!(
        first.items.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        ids[..3]
    );
    assert_eq!(first.next_offset, Some(3));
    let second = store.list_jobs("dev", None, 3, 3).await.expect("page 2");
    assert_eq!(
        second.items.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        ids[3..]
    );
    assert_eq!(second.next_offset, None);
    let named = store
        .list_jobs("dev", Some("nightly training ✓"), 0, 10)
        .await
        .expect("by name");
    assert_eq!(named.items.len(), 1);
    assert!(
        store
            .list_jobs("prod", None, 0, 10)
            .await
            .expect("prod")
            .items
            .is_empty()
    );

    let reset = json!({"name": "renamed", "tasks": []});
    let updated = store
        .replace_job_settings("dev", job.job_id, &reset, "robot", &actor)
        .await
        .expect("reset");
    assert_eq!(updated.settings, reset);
    assert_eq!(updated.run_as_user_name, "robot");
    assert_eq!(updated.created_time, 10);
    assert_eq!(
        store.get_job("dev", job.job_id).await.expect("get"),
        updated
    );
    assert_eq!(
        store
            .replace_job_settings("dev", 999_999, &reset, "robot", &actor)
            .await
            .expect_err("missing")
            .code,
        ErrorCode::ResourceDoesNotExist
    );

    store
        .delete_job("dev", job.job_id, &actor)
        .await
        .expect("delete");
    assert_eq!(
        store
            .get_job("dev", job.job_id)
            .await
            .expect_err("gone")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert!(
        store
            .granted_levels("dev", ObjectType::Job, &job.job_id.to_string(), &[owner.id])
            .await
            .expect("levels")
            .is_empty(),
        "grants go with the job"
    );
    // A new job never takes a deleted one's id.
    let next = store
        .create_job("dev", &json!({}), "owner", 12, &actor)
        .await
        .expect("after delete");
    assert!(next.job_id > *ids.iter().max().expect("ids"));

    let events = store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            object: Some(job.job_id.to_string()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("events");
    let kinds: Vec<&Change> = events.iter().map(|event| &event.change).collect();
    assert!(
        matches!(kinds.as_slice(), [Change::JobCreated(created), Change::JobUpdated(changed), Change::JobDeleted { job_id, name }]
            if created.settings == settings && changed.name == "renamed" && *job_id == job.job_id && name == "renamed"),
        "{kinds:?}"
    );
}

fn new_run(workspace: &str, job_id: i64, keys: &[&str], token: Option<&str>) -> JobRun {
    JobRun {
        run_id: 0,
        workspace: workspace.into(),
        job_id: Some(job_id),
        run_name: "nightly ✓".into(),
        run_type: "JOB_RUN".into(),
        trigger: "ONE_TIME".into(),
        creator_user_name: "owner".into(),
        run_as_user_name: "robot".into(),
        settings: json!({"tasks": keys.iter().map(|k| json!({"task_key": k})).collect::<Vec<_>>(),
                         "big": 9007199254740993_i64}),
        job_parameters: json!({"day": "2026-12-06"}),
        overriding_parameters: json!({"python_params": ["--x", "'; DROP TABLE job_runs; --"]}),
        state: RunState::new(LifeCycle::Pending),
        cancel_requested: false,
        created_time: 100,
        start_time: 0,
        end_time: 0,
        idempotency_token: token.map(str::to_string),
        repair_history: Vec::new(),
        tasks: keys.iter().map(|key| TaskRun::blocked(key, 0)).collect(),
    }
}

/// Runs keep what was sent; task runs share the runs' id space; claims go to one executor at
/// a time and only a claim's holder records its end; a stale decision changes nothing;
/// cancel requests reach the executor's renewals; shipped logs read back in order; ended runs
/// delete with their task runs and logs.
pub async fn job_runs_are_claimed_renewed_cancelled_and_kept(store: Store) {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let run = store
        .create_job_run(&new_run("dev", 7, &["a", "b"], Some("token-1")))
        .await
        .expect("create");
    assert!(run.run_id > 0);
    assert_eq!(run.tasks.len(), 2);
    assert!(
        run.tasks
            .iter()
            .all(|t| t.job_run_id == run.run_id && t.run_id > run.run_id)
    );
    let read = store.get_job_run("dev", run.run_id).await.expect("get");
    assert_eq!(read, run, "every value comes back as sent");
    assert_eq!(
        store
            .get_job_run("dev", run.tasks[1].run_id)
            .await
            .expect("by a task run's id")
            .run_id,
        run.run_id
    );
    assert_eq!(
        store
            .get_job_run("prod", run.run_id)
            .await
            .expect_err("another workspace's")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    let again = store
        .create_job_run(&new_run("dev", 7, &["a", "b"], Some("token-1")))
        .await
        .expect("same token");
    assert_eq!(
        again.run_id, run.run_id,
        "an idempotency token makes one run"
    );
    let other = store
        .create_job_run(&new_run("prod", 7, &["a", "b"], Some("token-1")))
        .await
        .expect("the token is per workspace");
    assert_ne!(other.run_id, run.run_id);

    // Nothing is ready: no claim.
    assert_eq!(
        store.claim_task_run("w1", 200, 1_000).await.expect("claim"),
        None
    );
    let mut started = run.clone();
    started.state = RunState::new(LifeCycle::Running);
    started.start_time = 150;
    store.update_job_run(&started, None).await.expect("start");
    let mut ready = run.tasks[0].clone();
    ready.state = RunState::new(LifeCycle::Pending);
    assert!(
        store
            .update_task_run(&ready, LifeCycle::Blocked, None)
            .await
            .expect("ready")
    );
    assert!(
        !store
            .update_task_run(&ready, LifeCycle::Blocked, None)
            .await
            .expect("stale"),
        "a decision on a stale read changes nothing"
    );
    let (workspace, claimed) = store
        .claim_task_run("w1", 200, 1_000)
        .await
        .expect("claim")
        .expect("one ready");
    assert_eq!(workspace, "dev");
    assert_eq!(claimed.run_id, ready.run_id);
    assert_eq!(claimed.state.life_cycle, LifeCycle::Running);
    assert_eq!(claimed.worker.as_deref(), Some("w1"));
    assert_eq!(claimed.start_time, 200);
    assert_eq!(
        store.claim_task_run("w2", 201, 1_000).await.expect("claim"),
        None,
        "claimed once"
    );

    assert_eq!(
        store.renew_task_runs("w1", 5_000).await.expect("renew"),
        Vec::<i64>::new()
    );
    let active = store.active_job_runs().await.expect("active");
    let seen = active
        .iter()
        .find(|r| r.run_id == run.run_id)
        .expect("active run");
    assert_eq!(seen.tasks[0].lease_until, 5_000);
    assert_eq!(seen.state.life_cycle, LifeCycle::Running);

    // Cancelling reaches the claim's renewals.
    let asked = store
        .request_job_run_cancel("dev", Some(run.run_id), None)
        .await
        .expect("cancel");
    assert_eq!(asked, vec![run.run_id]);
    assert_eq!(
        store.renew_task_runs("w1", 6_000).await.expect("renew"),
        vec![claimed.run_id]
    );
    assert!(
        store
            .get_job_run("dev", run.run_id)
            .await
            .expect("get")
            .cancel_requested
    );

    // Only the claim's holder records the end; the values and output come back.
    let mut ended = claimed.clone();
    ended.state = RunState::ended(LifeCycle::Terminated, ResultState::Canceled, "killed ✓");
    ended.end_time = 300;
    ended.values = json!({"auc": 0.91, "note": "ünïcode"});
    ended.output = TaskOutput {
        result: Some("done".into()),
        error: Some("ValueError: x".into()),
        error_trace: Some("Traceback ...".into()),
    };
    assert!(
        !store
            .update_task_run(&ended, LifeCycle::Running, Some("w2"))
            .await
            .expect("not w2's")
    );
    assert!(
        store
            .update_task_run(&ended, LifeCycle::Running, Some("w1"))
            .await
            .expect("w1's")
    );
    let retry = store
        .insert_task_run(&TaskRun {
            attempt_number: 1,
            job_run_id: run.run_id,
            ..TaskRun::blocked("a", 1)
        })
        .await
        .expect("retry");
    assert!(retry.run_id > run.tasks[1].run_id);
    let read = store.get_job_run("dev", run.run_id).await.expect("get");
    assert_eq!(read.tasks.len(), 3);
    assert_eq!(read.tasks[0], ended);
    assert_eq!(
        read.latest_attempts()
            .iter()
            .map(|t| t.run_id)
            .collect::<Vec<_>>(),
        vec![retry.run_id, run.tasks[1].run_id]
    );

    assert_eq!(
        store
            .delete_job_run("dev", run.run_id)
            .await
            .expect_err("active")
            .code,
        ErrorCode::InvalidParameterValue
    );
    let mut finished = read.clone();
    finished.state = RunState::ended(LifeCycle::Terminated, ResultState::Canceled, "");
    finished.end_time = 400;
    store.update_job_run(&finished, None).await.expect("finish");
    assert!(
        store
            .active_job_runs()
            .await
            .expect("active")
            .iter()
            .all(|r| r.run_id != run.run_id)
    );

    // Listing: newest first, by job, active or completed, a page at a time.
    let newer = store
        .create_job_run(&new_run("dev", 8, &["x"], None))
        .await
        .expect("newer");
    let all = store
        .list_job_runs("dev", &RunFilter::default(), false, 0, 10)
        .await
        .expect("list");
    assert_eq!(
        all.items.iter().map(|r| r.run_id).collect::<Vec<_>>(),
        vec![newer.run_id, run.run_id]
    );
    assert!(all.items.iter().all(|r| r.tasks.is_empty()));
    let active_only = RunFilter {
        active_only: true,
        ..Default::default()
    };
    let listed = store
        .list_job_runs("dev", &active_only, true, 0, 10)
        .await
        .expect("active");
    assert_eq!(
        listed.items.iter().map(|r| r.run_id).collect::<Vec<_>>(),
        vec![newer.run_id]
    );
    assert_eq!(listed.items[0].tasks.len(), 1);
    let of_job = RunFilter {
        job_id: Some(7),
        completed_only: true,
        ..Default::default()
    };
    let page = store
        .list_job_runs("dev", &of_job, false, 0, 1)
        .await
        .expect("of job 7");
    assert_eq!(
        page.items.iter().map(|r| r.run_id).collect::<Vec<_>>(),
        vec![run.run_id]
    );
    assert_eq!(page.next_offset, None);

    // A for_each task's iteration keeps which one it is, and is no attempt of the task.
    let parent = store
        .get_job_run("dev", run.run_id)
        .await
        .expect("get")
        .tasks[1]
        .clone();
    let iteration = store
        .insert_task_run(&TaskRun::iteration_of(
            &parent,
            2,
            r#"{"region": "eu"}"#.into(),
        ))
        .await
        .expect("iteration");
    let read = store.get_job_run("dev", run.run_id).await.expect("get");
    let stored = read
        .tasks
        .iter()
        .find(|task| task.run_id == iteration.run_id)
        .expect("stored");
    assert_eq!(stored.iteration, iteration.iteration);
    assert_eq!(
        stored
            .iteration
            .as_ref()
            .map(|it| (it.parent_run_id, it.index)),
        Some((parent.run_id, 2))
    );
    assert_eq!(read.iterations_of(parent.run_id), vec![stored]);
    assert!(
        read.latest_attempts()
            .iter()
            .all(|task| task.iteration.is_none())
    );

    // A worker's shipped log reads back in order, a piece shipped twice counted once.
    for (offset, piece) in [(0, "hello "), (6, "world\n"), (0, "hello ")] {
        store
            .append_task_log(retry.run_id, offset, piece.as_bytes())
            .await
            .expect("ship");
    }
    let read_log = |from, limit| {
        let store = store.clone();
        async move {
            let (bytes, length) = store
                .read_task_log(retry.run_id, from, limit)
                .await
                .expect("read log");
            (String::from_utf8(bytes).expect("text"), length)
        }
    };
    assert_eq!(read_log(0, 1 << 20).await, ("hello world\n".into(), 12));
    assert_eq!(read_log(3, 5).await, ("lo wo".into(), 12));
    assert_eq!(read_log(8, 100).await, ("rld\n".into(), 12));
    assert_eq!(read_log(12, 100).await, (String::new(), 12));
    assert_eq!(
        store
            .read_task_log(run.tasks[1].run_id, 0, 100)
            .await
            .expect("never shipped"),
        (Vec::new(), 0)
    );

    store
        .delete_job_run("dev", run.run_id)
        .await
        .expect("delete");
    assert_eq!(
        store
            .get_job_run("dev", retry.run_id)
            .await
            .expect_err("gone")
            .code,
        ErrorCode::ResourceDoesNotExist,
        "its task runs go with it"
    );
    assert_eq!(read_log(0, 100).await, (String::new(), 0), "and their logs");

    // One runner at a time: the lease is renewed by its holder and taken over once it lapses.
    assert!(
        store
            .hold_lease("job-runner", "a", 1_000, 2_000)
            .await
            .expect("take")
    );
    assert!(
        !store
            .hold_lease("job-runner", "b", 1_500, 2_500)
            .await
            .expect("held by a")
    );
    assert!(
        store
            .hold_lease("job-runner", "a", 1_900, 3_000)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .hold_lease("job-runner", "b", 2_999, 4_000)
            .await
            .expect("still a's")
    );
    assert!(
        store
            .hold_lease("job-runner", "b", 3_001, 4_000)
            .await
            .expect("lapsed")
    );
    assert!(
        !store
            .hold_lease("job-runner", "a", 3_002, 5_000)
            .await
            .expect("b's now")
    );
    assert!(
        store
            .hold_lease("scheduler", "a", 3_002, 5_000)
            .await
            .expect("another lease")
    );
    assert_eq!(
        store.lease_holder("job-runner").await.expect("holder"),
        Some(("b".to_string(), 4_000))
    );
    assert_eq!(store.lease_holder("nobody").await.expect("none"), None);

    // A secret the servers share: whichever server keeps one first, every server reads it.
    let (first, second) = tokio::join!(
        store.shared_secret("links", "key-of-a", 1),
        store.shared_secret("links", "key-of-b", 1)
    );
    let kept = first.expect("a's");
    assert!(kept == "key-of-a" || kept == "key-of-b", "{kept}");
    assert_eq!(second.expect("b's"), kept, "both servers read one key");
    assert_eq!(
        store
            .shared_secret("links", "key-of-c", 2)
            .await
            .expect("later"),
        kept
    );
    assert_eq!(
        store
            .shared_secret("other", "other-key", 2)
            .await
            .expect("another"),
        "other-key"
    );

    // The job triggers' outbox holds every event until acknowledged; a trigger state is kept
    // per job and goes with it.
    let pending = store
        .pending_events("job_triggers", 1000)
        .await
        .expect("pending");
    assert!(!pending.is_empty());
    assert!(pending.windows(2).all(|pair| pair[0].id < pair[1].id));
    let first = pending.first().expect("first").id;
    store
        .acknowledge_events("job_triggers", first)
        .await
        .expect("acknowledge");
    let rest = store
        .pending_events("job_triggers", 1000)
        .await
        .expect("rest");
    assert_eq!(rest.len(), pending.len() - 1);
    assert!(rest.iter().all(|event| event.id > first));
    let owner = store
        .create_principal("owner", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    let actor = Actor {
        id: owner.id,
        name: owner.name,
    };
    let job = store
        .create_job("dev", &json!({"name": "scheduled"}), "owner", 1, &actor)
        .await
        .expect("job");
    let state = json!({"last_fired": 9007199254740993_i64, "updated_tables": {"dev.a.b": 5}});
    store
        .save_trigger_state(job.job_id, &state)
        .await
        .expect("save");
    store
        .save_trigger_state(job.job_id, &state)
        .await
        .expect("save again");
    assert_eq!(
        store.trigger_states().await.expect("states"),
        vec![(job.job_id, state)]
    );
    store
        .delete_job("dev", job.job_id, &actor)
        .await
        .expect("delete");
    assert!(store.trigger_states().await.expect("states").is_empty());
}

/// Workspace files: a file makes its directories; existing paths are refused unless
/// overwritten; listings are per directory or recursive, in path order; a directory in use is
/// deleted only recursively; workspaces do not see each other's files.
pub async fn workspace_files_keep_a_tree_per_workspace(store: Store) {
    use tarn_core::files::ObjectType;
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let stored = store
        .put_workspace_file(
            "dev",
            "/Shared/proj/src/main.py",
            ObjectType::File,
            None,
            b"print('hi')\n",
            false,
        )
        .await
        .expect("put");
    assert_eq!(stored.path, "/Shared/proj/src/main.py");
    assert_eq!((stored.object_type, stored.size), (ObjectType::File, 12));
    assert_eq!(
        store
            .workspace_file_content("dev", "/Shared/proj/src/main.py")
            .await
            .expect("content"),
        b"print('hi')\n"
    );
    let again = store
        .put_workspace_file(
            "dev",
            "/Shared/proj/src/main.py",
            ObjectType::File,
            None,
            b"x",
            false,
        )
        .await
        .expect_err("exists");
    assert_eq!(again.code, ErrorCode::ResourceAlreadyExists);
    let overwritten = store
        .put_workspace_file(
            "dev",
            "/Shared/proj/src/main.py",
            ObjectType::Notebook,
            Some("PYTHON"),
            b"# Databricks notebook source\n",
            true,
        )
        .await
        .expect("overwrite");
    assert_eq!(overwritten.object_id, stored.object_id, "same object");
    assert_eq!(overwritten.language.as_deref(), Some("PYTHON"));
    store
        .put_workspace_file(
            "dev",
            "/Shared/proj/lib.py",
            ObjectType::File,
            None,
            b"",
            false,
        )
        .await
        .expect("empty file");
    let refused = store
        .put_workspace_file(
            "dev",
            "/Shared/proj/lib.py/inner.py",
            ObjectType::File,
            None,
            b"",
            false,
        )
        .await
        .expect_err("a file is no directory");
    assert_eq!(refused.code, ErrorCode::InvalidParameterValue);
    let refused = store
        .put_workspace_file("dev", "/Shared/proj", ObjectType::File, None, b"", true)
        .await
        .expect_err("a directory is no file");
    assert_eq!(refused.code, ErrorCode::ResourceAlreadyExists);
    store
        .make_workspace_dirs("dev", "/Shared/proj/empty")
        .await
        .expect("mkdirs");
    store
        .make_workspace_dirs("dev", "/Shared/proj/empty")
        .await
        .expect("mkdirs again is fine");

    let paths = |objects: Vec<tarn_core::files::WorkspaceObject>| {
        objects
            .into_iter()
            .map(|object| format!("{} {}", object.object_type.as_str(), object.path))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paths(
            store
                .list_workspace_objects("dev", "/Shared/proj", false)
                .await
                .expect("list")
        ),
        vec![
            "DIRECTORY /Shared/proj/empty",
            "FILE /Shared/proj/lib.py",
            "DIRECTORY /Shared/proj/src"
        ]
    );
    assert_eq!(
        paths(
            store
                .list_workspace_objects("dev", "/", true)
                .await
                .expect("all")
        ),
        vec![
            "DIRECTORY /Shared",
            "DIRECTORY /Shared/proj",
            "DIRECTORY /Shared/proj/empty",
            "FILE /Shared/proj/lib.py",
            "DIRECTORY /Shared/proj/src",
            "NOTEBOOK /Shared/proj/src/main.py"
        ]
    );
    assert!(
        store
            .list_workspace_objects("prod", "/", true)
            .await
            .expect("prod")
            .is_empty(),
        "another workspace's tree"
    );
    assert_eq!(
        store
            .list_workspace_objects("dev", "/Nowhere", false)
            .await
            .expect_err("missing")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        store
            .delete_workspace_object("dev", "/Shared/proj", false)
            .await
            .expect_err("not empty")
            .code,
        ErrorCode::InvalidParameterValue
    );
    store
        .delete_workspace_object("dev", "/Shared/proj/empty", false)
        .await
        .expect("an empty directory");
    store
        .delete_workspace_object("dev", "/Shared/proj", true)
        .await
        .expect("recursive");
    assert_eq!(
        paths(
            store
                .list_workspace_objects("dev", "/", true)
                .await
                .expect("left")
        ),
        vec!["DIRECTORY /Shared"]
    );
    assert!(
        store
            .workspace_object("dev", "/")
            .await
            .expect("root")
            .is_some_and(|root| root.object_type == ObjectType::Directory)
    );
}

/// Statements' state is shared: any server reads it, one server runs each, a cancel asked
/// through another reaches it, an ended statement stays ended, old ones are forgotten.
pub async fn statements_are_shared_by_the_servers(store: Store) {
    use tarn_core::store::StatementRecord;
    let running = |id: &str, server: &str, at: i64| StatementRecord {
        id: id.to_string(),
        workspace: "dev".to_string(),
        owner_id: 7,
        server: server.to_string(),
        state: "RUNNING".to_string(),
        outcome: None,
        cancel_requested: false,
        submitted_at: at,
        seen_at: at,
    };
    for (id, server, at) in [("s1", "a", 1_000), ("s2", "a", 1_000), ("s3", "b", 5_000)] {
        store
            .create_statement(&running(id, server, at))
            .await
            .expect("create");
    }
    assert_eq!(
        store.get_statement("s1").await.expect("get"),
        Some(running("s1", "a", 1_000))
    );
    assert_eq!(store.get_statement("nope").await.expect("get"), None);

    // A cancel asked through b marks a's statement; a sees it when it next says it runs.
    store.request_statement_cancel("s2").await.expect("cancel");
    assert_eq!(
        store.touch_statements("a", 2_000).await.expect("touch"),
        vec!["s2".to_string()]
    );
    let seen = store.get_statement("s1").await.expect("get").expect("s1");
    assert_eq!((seen.seen_at, seen.cancel_requested), (2_000, false));
    assert!(
        store
            .touch_statements("b", 2_000)
            .await
            .expect("b's")
            .is_empty()
    );

    // The first end wins; a cancel after it changes nothing.
    let rows = json!({"rows": {"chunks": [{"rows": 3, "bytes": 120}], "note": "ü \u{0}"}});
    assert!(
        store
            .end_statement("s1", "SUCCEEDED", &rows, 3_000)
            .await
            .expect("end")
    );
    assert!(
        !store
            .end_statement("s1", "CANCELED", &json!({}), 3_001)
            .await
            .expect("ended already")
    );
    store.request_statement_cancel("s1").await.expect("cancel");
    let ended = store.get_statement("s1").await.expect("get").expect("s1");
    assert_eq!(ended.state, "SUCCEEDED");
    assert_eq!(ended.outcome, Some(rows));
    assert!(!ended.cancel_requested);
    assert!(
        store
            .touch_statements("a", 4_000)
            .await
            .expect("touch")
            .contains(&"s2".to_string())
    );

    let mut forgotten = store.delete_statements_before(2_000).await.expect("forget");
    forgotten.sort();
    assert_eq!(forgotten, vec!["s1".to_string(), "s2".to_string()]);
    assert_eq!(store.get_statement("s1").await.expect("get"), None);
    assert!(store.get_statement("s3").await.expect("get").is_some());
}
