//! Running jobs, called alike by the HTTP API and the CLI: run-now and one-time runs, reading
//! runs and their output, cancelling, repairing and deleting them, each with its permission check (CAN_VIEW
//! to read, CAN_MANAGE_RUN to run and cancel; a one-time run is its submitter's and the
//! admins'). Making a run stores it with every task blocked and wakes the runner, which takes
//! it from there.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value};
use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::jobs::{
    Job, JobRun, LifeCycle, RepairAttempt, RepairKind, ResultState, RunFilter, RunState, TaskRun,
    trigger,
};
use tarn_core::store::{MetaStore, Page};
use tarn_core::{Error, Result};
use tokio::sync::Notify;

use crate::manage;
use crate::settings::{JobSettings, checked};

/// The most runs one list page holds (Databricks' limit).
pub const MAX_LIST_LIMIT: u64 = 25;

/// Wakes the runner when a run is made or asked to stop, so it does not wait for its tick.
#[derive(Debug, Default, Clone)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// What `jobs/run-now` may send besides the job's id.
#[derive(Debug, Clone, Default)]
pub struct RunNow {
    /// Values for the job's parameters; the others keep their defaults.
    pub job_parameters: Map<String, Value>,
    /// Only these tasks run (`only`); empty for all.
    pub only: Vec<String>,
    pub idempotency_token: Option<String>,
    /// The legacy per-task-type parameters (`python_params`, `notebook_params`,
    /// `python_named_params`), kept as sent and applied by the executor.
    pub overriding: Map<String, Value>,
}

/// Starts a run of a job the caller may run (CAN_MANAGE_RUN); its tasks act as the job's
/// `run_as`. The same idempotency token gives the same run.
pub async fn run_now(
    store: &dyn MetaStore,
    wakeup: &Wakeup,
    caller: &Caller,
    job_id: i64,
    request: RunNow,
) -> Result<JobRun> {
    let job = manage::job_for(store, caller, job_id, PermissionLevel::CanManageRun).await?;
    let settings = JobSettings::read(&job.settings)?;
    let known: BTreeSet<&str> = settings.tasks.iter().map(|task| task.key()).collect();
    if let Some(unknown) = request
        .only
        .iter()
        .find(|key| !known.contains(key.as_str()))
    {
        return Err(Error::invalid(format!(
            "only: '{unknown}' is not a task of job {job_id}"
        )));
    }
    let parameters = job_parameters(&settings, request.job_parameters.clone())?;
    let mut overriding = request.overriding;
    if !request.job_parameters.is_empty() {
        overriding.insert(
            "job_parameters".into(),
            Value::Object(request.job_parameters),
        );
    }
    let mut run = job_run(&job, &settings, &request.only, trigger::ONE_TIME);
    run.creator_user_name = caller.principal.name.clone();
    run.job_parameters = Value::Object(parameters);
    run.overriding_parameters = Value::Object(overriding);
    run.idempotency_token = request.idempotency_token.filter(|token| !token.is_empty());
    let run = store.create_job_run(&run).await?;
    wakeup.wake();
    Ok(run)
}

/// A run a job's schedule, trigger or another job's run_job_task starts (`kind`, one of
/// `trigger::*`): made by the job's owner, with its parameters' defaults overridden by `given`.
pub async fn triggered(
    store: &dyn MetaStore,
    wakeup: &Wakeup,
    job: &Job,
    kind: &str,
    given: Map<String, Value>,
) -> Result<JobRun> {
    let settings = JobSettings::read(&job.settings)?;
    let mut run = job_run(job, &settings, &[], kind);
    run.job_parameters = Value::Object(job_parameters(&settings, given)?);
    let run = store.create_job_run(&run).await?;
    wakeup.wake();
    Ok(run)
}

/// A new run of `job`, every task (or those of `only`) blocked, made by the job's owner with
/// no parameters yet.
fn job_run(job: &Job, settings: &JobSettings, only: &[String], kind: &str) -> JobRun {
    JobRun {
        run_id: 0,
        workspace: job.workspace.clone(),
        job_id: Some(job.job_id),
        run_name: job.name().to_string(),
        run_type: "JOB_RUN".into(),
        trigger: kind.to_string(),
        creator_user_name: job.creator_user_name.clone(),
        run_as_user_name: job.run_as_user_name.clone(),
        settings: job.settings.clone(),
        job_parameters: Value::Object(Map::new()),
        overriding_parameters: Value::Object(Map::new()),
        state: RunState::new(LifeCycle::Pending),
        cancel_requested: false,
        created_time: tarn_core::ids::now_millis(),
        start_time: 0,
        end_time: 0,
        idempotency_token: None,
        repair_history: Vec::new(),
        tasks: settings
            .tasks
            .iter()
            .filter(|task| only.is_empty() || only.iter().any(|key| key == task.key()))
            .map(|task| TaskRun::blocked(task.key(), 0))
            .collect(),
    }
}

/// The job's parameters with their defaults, overridden by `given`; a name the job does not
/// declare is refused.
fn job_parameters(settings: &JobSettings, given: Map<String, Value>) -> Result<Map<String, Value>> {
    let mut values: Map<String, Value> = settings
        .parameters
        .iter()
        .map(|parameter| {
            (
                parameter.name.clone(),
                Value::String(parameter.default.clone().unwrap_or_default()),
            )
        })
        .collect();
    for (name, value) in given {
        if !values.contains_key(&name) {
            return Err(Error::invalid(format!(
                "job_parameters: the job has no parameter '{name}'"
            )));
        }
        let value = match value {
            Value::String(text) => Value::String(text),
            other => Value::String(other.to_string()),
        };
        values.insert(name, value);
    }
    Ok(values)
}

/// A one-time run of tasks given in the request (`runs/submit`), owned by the caller and run
/// as the caller. Its settings are checked as a job's are.
pub async fn submit(
    store: &dyn MetaStore,
    wakeup: &Wakeup,
    caller: &Caller,
    mut request: Map<String, Value>,
) -> Result<JobRun> {
    let idempotency_token = match request.remove("idempotency_token") {
        Some(Value::String(token)) if !token.is_empty() => Some(token),
        _ => None,
    };
    let run_name = match request.remove("run_name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => "Untitled".to_string(),
    };
    request.insert("name".into(), Value::String(run_name.clone()));
    let (settings, typed) = checked(Value::Object(request))?;
    let run = JobRun {
        run_id: 0,
        workspace: caller.workspace.clone(),
        job_id: None,
        run_name,
        run_type: "SUBMIT_RUN".into(),
        trigger: trigger::ONE_TIME.into(),
        creator_user_name: caller.principal.name.clone(),
        run_as_user_name: caller.principal.name.clone(),
        settings,
        job_parameters: Value::Object(job_parameters(&typed, Map::new())?),
        overriding_parameters: Value::Object(Map::new()),
        state: RunState::new(LifeCycle::Pending),
        cancel_requested: false,
        created_time: tarn_core::ids::now_millis(),
        start_time: 0,
        end_time: 0,
        idempotency_token,
        repair_history: Vec::new(),
        tasks: typed
            .tasks
            .iter()
            .map(|task| TaskRun::blocked(task.key(), 0))
            .collect(),
    };
    let run = store.create_job_run(&run).await?;
    wakeup.wake();
    Ok(run)
}

/// The run `run_id` (or the run holding the task run `run_id`), when the caller's level on
/// its job includes `level`.
pub async fn run_for(
    store: &dyn MetaStore,
    caller: &Caller,
    run_id: i64,
    level: PermissionLevel,
) -> Result<JobRun> {
    let run = store.get_job_run(&caller.workspace, run_id).await?;
    require_on_run(store, caller, &run, level).await?;
    Ok(run)
}

async fn require_on_run(
    store: &dyn MetaStore,
    caller: &Caller,
    run: &JobRun,
    level: PermissionLevel,
) -> Result<()> {
    match run.job_id {
        Some(job_id) => {
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
        None if caller.principal.is_admin || run.creator_user_name == caller.principal.name => {
            Ok(())
        }
        None => Err(Error::permission_denied(format!(
            "Run {} is a one-time run of another user",
            run.run_id
        ))),
    }
}

/// Runs the caller may view, newest first: `limit` of them from `offset`, and where the next
/// page starts.
pub async fn list(
    store: &dyn MetaStore,
    caller: &Caller,
    filter: &RunFilter,
    with_tasks: bool,
    offset: u64,
    limit: u64,
) -> Result<Page<JobRun>> {
    if filter.active_only && filter.completed_only {
        return Err(Error::invalid(
            "active_only and completed_only cannot both be true",
        ));
    }
    if let Some(job_id) = filter.job_id {
        manage::job_for(store, caller, job_id, PermissionLevel::CanView).await?;
    }
    let limit = limit.clamp(1, MAX_LIST_LIMIT);
    manage::visible_page(
        offset,
        limit,
        |from| store.list_job_runs(&caller.workspace, filter, with_tasks, from, limit),
        |run: JobRun| async move {
            require_on_run(store, caller, &run, PermissionLevel::CanView)
                .await
                .map(|()| run)
        },
    )
    .await
}

/// Asks a run to stop (CAN_MANAGE_RUN): tasks not started are skipped, running ones ended.
/// Cancelling an ended run changes nothing.
pub async fn cancel(
    store: &dyn MetaStore,
    wakeup: &Wakeup,
    caller: &Caller,
    run_id: i64,
) -> Result<()> {
    let run = run_for(store, caller, run_id, PermissionLevel::CanManageRun).await?;
    store
        .request_job_run_cancel(&caller.workspace, Some(run.run_id), None)
        .await?;
    wakeup.wake();
    Ok(())
}

/// Asks every active run of a job to stop (CAN_MANAGE_RUN on the job).
pub async fn cancel_all(
    store: &dyn MetaStore,
    wakeup: &Wakeup,
    caller: &Caller,
    job_id: i64,
) -> Result<usize> {
    manage::job_for(store, caller, job_id, PermissionLevel::CanManageRun).await?;
    let asked = store
        .request_job_run_cancel(&caller.workspace, None, Some(job_id))
        .await?;
    wakeup.wake();
    Ok(asked.len())
}

/// Deletes an ended run (CAN_MANAGE_RUN).
pub async fn delete(store: &dyn MetaStore, caller: &Caller, run_id: i64) -> Result<()> {
    let run = run_for(store, caller, run_id, PermissionLevel::CanManageRun).await?;
    if run.run_id != run_id {
        return Err(Error::invalid(format!(
            "Run {run_id} is a task run; delete its run {} instead",
            run.run_id
        )));
    }
    store.delete_job_run(&caller.workspace, run_id).await
}

/// The task run `run_id` names for `runs/get-output`: a task run's id, or a run's with a
/// single task; with its run.
pub async fn output_of(
    store: &dyn MetaStore,
    caller: &Caller,
    run_id: i64,
) -> Result<(JobRun, TaskRun)> {
    let run = run_for(store, caller, run_id, PermissionLevel::CanView).await?;
    let task = if run.run_id == run_id {
        let latest = run.latest_attempts();
        match latest.as_slice() {
            [only] => (*only).clone(),
            _ => {
                return Err(Error::invalid(
                    "Retrieving the output of runs with multiple tasks is not supported. Please \
                     retrieve the output of each individual task run instead.",
                ));
            }
        }
    } else {
        run.tasks
            .iter()
            .find(|task| task.run_id == run_id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Run {run_id} does not exist.")))?
    };
    Ok((run, task))
}

/// What `runs/get-output` returns: the task run, its run, and the end of its log.
pub struct RunOutput {
    pub run: JobRun,
    pub task: TaskRun,
    pub logs: String,
    /// Whether earlier output was left out of `logs`.
    pub logs_truncated: bool,
}

/// The output of the task run `run_id` names (see [`output_of`]): the end of its log, read
/// where it ran (`folder` is this machine's jobs folder) or from what its worker shipped.
pub async fn output(
    store: &dyn MetaStore,
    folder: &std::path::Path,
    caller: &Caller,
    run_id: i64,
) -> Result<RunOutput> {
    let (run, task) = output_of(store, caller, run_id).await?;
    let (logs, logs_truncated) =
        crate::logs::tail(store, folder, &task, crate::logs::MAX_OUTPUT_LOG).await?;
    Ok(RunOutput {
        run,
        task,
        logs,
        logs_truncated,
    })
}

/// What `runs/repair` asks for.
#[derive(Debug, Clone, Default)]
pub struct Repair {
    pub rerun_tasks: Vec<String>,
    pub rerun_all_failed_tasks: bool,
    /// Also rerun every task that depends, directly or not, on one rerun.
    pub rerun_dependent_tasks: bool,
    /// The repair the caller saw last: refused if another came since.
    pub latest_repair_id: Option<i64>,
    /// New values for the job's parameters; the run's others stay.
    pub job_parameters: Map<String, Value>,
}

/// Reruns some tasks of an ended run (CAN_MANAGE_RUN) with the job's settings as they are now,
/// inside the same run: the others keep how they ended; the run ends again by all of them.
pub async fn repair(
    store: &dyn MetaStore,
    wakeup: &Wakeup,
    caller: &Caller,
    run_id: i64,
    request: Repair,
) -> Result<JobRun> {
    let mut run = run_for(store, caller, run_id, PermissionLevel::CanManageRun).await?;
    if run.run_id != run_id {
        return Err(Error::invalid(format!(
            "Run {run_id} is a task run; repair its run {} instead",
            run.run_id
        )));
    }
    if !run.state.life_cycle.is_terminal() {
        return Err(Error::invalid(format!(
            "Run {run_id} is still active; it can be repaired once it has ended"
        )));
    }
    if request.latest_repair_id != run.latest_repair_id() {
        return Err(Error::invalid(format!(
            "latest_repair_id {} is not the run's latest repair ({}); read the run again",
            request
                .latest_repair_id
                .map_or("none".into(), |id| id.to_string()),
            run.latest_repair_id()
                .map_or("none".into(), |id| id.to_string()),
        )));
    }
    if let Some(job_id) = run.job_id {
        run.settings = store.get_job(&caller.workspace, job_id).await?.settings;
    }
    let settings = JobSettings::read(&run.settings)?;
    let chosen = tasks_to_rerun(&run, &settings, &request)?;
    if !request.job_parameters.is_empty() {
        let mut values = match &run.job_parameters {
            Value::Object(values) => values.clone(),
            _ => Map::new(),
        };
        values.extend(job_parameters(&settings, request.job_parameters)?);
        run.job_parameters = Value::Object(values);
    }
    let now = tarn_core::ids::now_millis();
    close_current_attempt(&mut run);
    let rerun: Vec<TaskRun> = settings
        .tasks
        .iter()
        .filter(|task| chosen.contains(task.key()))
        .map(|task| TaskRun::blocked(task.key(), 0))
        .collect();
    let run = store.repair_job_run(&run, &rerun, now).await?;
    wakeup.wake();
    Ok(run)
}

/// The keys a repair reruns: those named, or every task that did not succeed; with their
/// dependants when asked.
fn tasks_to_rerun(
    run: &JobRun,
    settings: &JobSettings,
    request: &Repair,
) -> Result<BTreeSet<String>> {
    let known: BTreeSet<&str> = settings.tasks.iter().map(|task| task.key()).collect();
    let mut chosen: BTreeSet<String> = match (
        request.rerun_tasks.is_empty(),
        request.rerun_all_failed_tasks,
    ) {
        (false, false) => {
            if let Some(unknown) = request
                .rerun_tasks
                .iter()
                .find(|key| !known.contains(key.as_str()))
            {
                return Err(Error::invalid(format!(
                    "rerun_tasks: '{unknown}' is not a task of the job"
                )));
            }
            request.rerun_tasks.iter().cloned().collect()
        }
        (true, true) => run
            .latest_attempts()
            .into_iter()
            .filter(|task| {
                known.contains(task.task_key.as_str())
                    && !matches!(
                        task.state.result,
                        Some(
                            ResultState::Success
                                | ResultState::SuccessWithFailures
                                | ResultState::Excluded
                                | ResultState::Disabled
                        )
                    )
            })
            .map(|task| task.task_key.clone())
            .collect(),
        (false, true) => {
            return Err(Error::invalid(
                "rerun_tasks and rerun_all_failed_tasks cannot both be given",
            ));
        }
        (true, false) => {
            return Err(Error::invalid(
                "Name the tasks to rerun (rerun_tasks) or set rerun_all_failed_tasks",
            ));
        }
    };
    if request.rerun_dependent_tasks {
        loop {
            let before = chosen.len();
            for task in &settings.tasks {
                if task
                    .depends_on
                    .iter()
                    .any(|dependency| chosen.contains(&dependency.task_key))
                {
                    chosen.insert(task.key().to_string());
                }
            }
            if chosen.len() == before {
                break;
            }
        }
    }
    if chosen.is_empty() {
        return Err(Error::invalid(format!(
            "Run {} has no failed task to rerun",
            run.run_id
        )));
    }
    Ok(chosen)
}

/// Records how the run's current attempt (the original, or the last repair) ended, before a
/// repair starts the next.
fn close_current_attempt(run: &mut JobRun) {
    let ended = (
        run.end_time,
        Some(run.state.life_cycle.as_str().to_string()),
        run.state.result.map(|result| result.as_str().to_string()),
    );
    match run.repair_history.last_mut() {
        Some(current) => {
            (
                current.end_time,
                current.life_cycle_state,
                current.result_state,
            ) = ended
        }
        None => run.repair_history.push(RepairAttempt {
            kind: RepairKind::Original,
            id: run.run_id,
            start_time: run.start_time,
            end_time: ended.0,
            life_cycle_state: ended.1,
            result_state: ended.2,
            task_run_ids: run.tasks.iter().map(|task| task.run_id).collect(),
        }),
    }
}
