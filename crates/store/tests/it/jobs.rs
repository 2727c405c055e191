//! Backend-independent behaviour of the jobs store.

use std::sync::Arc;

use serde_json::json;
use tarn_core::ErrorCode;
use tarn_core::auth::{ObjectType, PermissionLevel, PrincipalKind};
use tarn_core::events::{Change, EventQuery};
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
