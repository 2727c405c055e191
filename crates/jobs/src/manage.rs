//! Managing jobs, called alike by the HTTP API and (next) the CLI and bundles: each use case
//! checks the caller's level on the job (CAN_VIEW to read, CAN_MANAGE to change, delete),
//! checks settings before anything is stored, and stores the change with its event.

use serde_json::{Map, Value};
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::jobs::Job;
use tarn_core::store::{MetaStore, Page};
use tarn_core::{Error, Result};

use crate::settings::{JobSettings, checked};

/// The most jobs one list page holds (Databricks' limit).
pub const MAX_LIST_LIMIT: u64 = 100;

/// Creates a job owned by the caller from settings as sent.
pub async fn create(store: &dyn MetaStore, caller: &Caller, settings: Value) -> Result<Job> {
    let (settings, typed) = checked(settings)?;
    let run_as = run_as(store, caller, &typed).await?;
    store
        .create_job(
            &caller.workspace,
            &settings,
            &run_as,
            tarn_core::ids::now_millis(),
            &caller.actor(),
        )
        .await
}

/// The job `job_id` of the caller's workspace, when the caller's level on it includes `level`
/// (PERMISSION_DENIED otherwise, as Databricks answers).
pub async fn job_for(
    store: &dyn MetaStore,
    caller: &Caller,
    job_id: i64,
    level: PermissionLevel,
) -> Result<Job> {
    let job = store.get_job(&caller.workspace, job_id).await?;
    require_on(store, caller, job_id, level).await?;
    Ok(job)
}

async fn require_on(
    store: &dyn MetaStore,
    caller: &Caller,
    job_id: i64,
    level: PermissionLevel,
) -> Result<()> {
    tarn_identity::require(
        store,
        &caller.workspace,
        &caller.principal,
        ObjectType::Job,
        &job_id.to_string(),
        level,
    )
    .await
}

/// The jobs of the caller's workspace it may view, by id: `limit` of them from `offset`, and
/// where the next page starts.
pub async fn list(
    store: &dyn MetaStore,
    caller: &Caller,
    name: Option<&str>,
    offset: u64,
    limit: u64,
) -> Result<Page<Job>> {
    let limit = limit.clamp(1, MAX_LIST_LIMIT);
    visible_page(
        offset,
        limit,
        |from| store.list_jobs(&caller.workspace, name, from, limit),
        |job: Job| async move {
            require_on(store, caller, job.job_id, PermissionLevel::CanView)
                .await
                .map(|()| job)
        },
    )
    .await
}

/// `limit` items the caller may see, from `offset` of what `fetch` pages through, and where
/// the next page starts: items `visible` refuses as hidden are skipped (a refusal that is not
/// about visibility is the answer).
pub(crate) async fn visible_page<T, Fetched, Checked>(
    offset: u64,
    limit: u64,
    fetch: impl Fn(u64) -> Fetched,
    visible: impl Fn(T) -> Checked,
) -> Result<Page<T>>
where
    Fetched: std::future::Future<Output = Result<Page<T>>>,
    Checked: std::future::Future<Output = Result<T>>,
{
    let mut items = Vec::new();
    let mut from = offset;
    loop {
        let page = fetch(from).await?;
        for (index, item) in page.items.into_iter().enumerate() {
            if items.len() as u64 == limit {
                return Ok(Page {
                    items,
                    next_offset: Some(from + index as u64),
                });
            }
            match visible(item).await {
                Ok(item) => items.push(item),
                Err(err) if err.hides_object() => {}
                Err(err) => return Err(err),
            }
        }
        match page.next_offset {
            Some(next) if (items.len() as u64) < limit => from = next,
            next_offset => return Ok(Page { items, next_offset }),
        }
    }
}

/// Replaces every setting of a job the caller manages (`jobs/reset`).
pub async fn reset(
    store: &dyn MetaStore,
    caller: &Caller,
    job_id: i64,
    new_settings: Value,
) -> Result<Job> {
    job_for(store, caller, job_id, PermissionLevel::CanManage).await?;
    replace_settings(store, caller, job_id, new_settings).await
}

/// Changes some settings of a job the caller manages (`jobs/update`): top-level fields of
/// `new_settings` replace the job's, except `tasks` and `job_clusters`, which are merged by
/// their keys; `fields_to_remove` names top-level fields, or `tasks/<key>` and
/// `job_clusters/<key>`, to drop. The result is checked as a whole.
pub async fn update(
    store: &dyn MetaStore,
    caller: &Caller,
    job_id: i64,
    new_settings: Option<Value>,
    fields_to_remove: &[String],
) -> Result<Job> {
    let job = job_for(store, caller, job_id, PermissionLevel::CanManage).await?;
    let Value::Object(mut settings) = job.settings else {
        return Err(Error::internal(format!(
            "Job {job_id} has settings that are not an object"
        )));
    };
    for field in fields_to_remove {
        remove_field(&mut settings, field)?;
    }
    match new_settings {
        None | Some(Value::Null) => {}
        Some(Value::Object(changes)) => {
            for (field, value) in changes {
                match field.as_str() {
                    "tasks" => merge_keyed(&mut settings, "tasks", "task_key", value)?,
                    "job_clusters" => {
                        merge_keyed(&mut settings, "job_clusters", "job_cluster_key", value)?;
                    }
                    _ => {
                        settings.insert(field, value);
                    }
                }
            }
        }
        Some(_) => return Err(Error::invalid("new_settings must be a JSON object")),
    }
    replace_settings(store, caller, job_id, Value::Object(settings)).await
}

/// Checks a job's new settings as a whole and stores them.
async fn replace_settings(
    store: &dyn MetaStore,
    caller: &Caller,
    job_id: i64,
    new_settings: Value,
) -> Result<Job> {
    let (settings, typed) = checked(new_settings)?;
    let run_as = run_as(store, caller, &typed).await?;
    store
        .replace_job_settings(
            &caller.workspace,
            job_id,
            &settings,
            &run_as,
            &caller.actor(),
        )
        .await
}

/// Deletes a job the caller manages.
pub async fn delete(store: &dyn MetaStore, caller: &Caller, job_id: i64) -> Result<()> {
    job_for(store, caller, job_id, PermissionLevel::CanManage).await?;
    store
        .delete_job(&caller.workspace, job_id, &caller.actor())
        .await
}

/// The principal a job's tasks act as: the caller unless `run_as` names another, which only an
/// admin may do (the principal must exist).
async fn run_as(store: &dyn MetaStore, caller: &Caller, settings: &JobSettings) -> Result<String> {
    let Some(run_as) = &settings.run_as else {
        return Ok(caller.principal.name.clone());
    };
    let name = match (&run_as.user_name, &run_as.service_principal_name) {
        (Some(user), None) => user,
        (None, Some(service_principal)) => service_principal,
        _ => {
            return Err(Error::invalid(
                "run_as takes one of user_name and service_principal_name",
            ));
        }
    };
    if *name == caller.principal.name {
        return Ok(name.clone());
    }
    if !caller.principal.is_admin {
        return Err(Error::permission_denied(format!(
            "Only an admin may make a job run as '{name}'"
        )));
    }
    store.get_principal(name).await.map_err(|err| {
        if err.hides_object() {
            Error::invalid(format!("run_as names '{name}', who does not exist"))
        } else {
            err
        }
    })?;
    Ok(name.clone())
}

fn remove_field(settings: &mut Map<String, Value>, field: &str) -> Result<()> {
    let Some((list, key)) = field.split_once('/') else {
        settings.remove(field);
        return Ok(());
    };
    let key_field = match list {
        "tasks" => "task_key",
        "job_clusters" => "job_cluster_key",
        _ => {
            return Err(Error::invalid(format!(
                "fields_to_remove: '{field}' is neither a top-level field nor tasks/<key> or job_clusters/<key>"
            )));
        }
    };
    if let Some(Value::Array(items)) = settings.get_mut(list) {
        items.retain(|item| item.get(key_field).and_then(Value::as_str) != Some(key));
    }
    Ok(())
}

/// Items of `changes` replace the job's item of the same key, or are added after them.
fn merge_keyed(
    settings: &mut Map<String, Value>,
    list: &str,
    key_field: &str,
    changes: Value,
) -> Result<()> {
    let Value::Array(changes) = changes else {
        return Err(Error::invalid(format!(
            "new_settings.{list} must be a list"
        )));
    };
    let items = settings
        .entry(list)
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = items else {
        return Err(Error::invalid(format!("{list} must be a list")));
    };
    for change in changes {
        let key = change
            .get(key_field)
            .and_then(Value::as_str)
            .map(str::to_string);
        match key.and_then(|key| {
            items
                .iter()
                .position(|item| item.get(key_field).and_then(Value::as_str) == Some(&key))
        }) {
            Some(index) => items[index] = change,
            None => items.push(change),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn updates_merge_tasks_by_key_and_remove_named_fields() {
        let mut settings = json!({
            "name": "a",
            "timeout_seconds": 60,
            "tasks": [{"task_key": "x", "n": 1}, {"task_key": "y", "n": 2}],
        })
        .as_object()
        .cloned()
        .expect("object");
        merge_keyed(
            &mut settings,
            "tasks",
            "task_key",
            json!([{"task_key": "y", "n": 3}, {"task_key": "z", "n": 4}]),
        )
        .expect("merge");
        remove_field(&mut settings, "tasks/x").expect("remove a task");
        remove_field(&mut settings, "timeout_seconds").expect("remove a field");
        assert_eq!(
            Value::Object(settings.clone()),
            json!({"name": "a", "tasks": [{"task_key": "y", "n": 3}, {"task_key": "z", "n": 4}]})
        );
        assert!(remove_field(&mut settings, "schedule/x").is_err());
    }
}
