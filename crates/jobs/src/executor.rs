//! The executor: claims task runs the runner made ready, runs each in its own process group as
//! the run's principal, with its output captured in one log, and records how it ended. The
//! claim is a lease in the store, renewed while the task runs; a cancelled run's processes are
//! ended (the whole group) at the next renewal; an executor that stops renewing loses its
//! tasks to the runner, which fails or retries them. `tarn server` runs one; `tarn worker`
//! processes on other machines are more of the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tarn_core::jobs::{JobRun, LifeCycle, ResultState, RunState, TaskRun};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tokio::sync::{oneshot, watch};

use crate::logs::{self, task_folder};
use crate::plan;
use crate::references;
use crate::runs::{self, Wakeup};
use crate::settings::{JobSettings, TaskSettings};

/// The most of a log's end searched for the error a failed task ended with.
const ERROR_SEARCH: u64 = 64 * 1024;
/// How long a process asked to stop may take before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often an idle executor looks for work it was not woken for (another server's runs).
const IDLE_LOOK: Duration = Duration::from_millis(500);

const DBUTILS: &str = include_str!("../python/tarn_dbutils.py");
const NOTEBOOK_RUNNER: &str = include_str!("../python/tarn_notebook.py");
const WHEEL_RUNNER: &str = include_str!("../python/tarn_wheel.py");
const SQL_RUNNER: &str = include_str!("../python/tarn_sql.py");
/// How often a run_job_task looks at the run it started.
const CHILD_RUN_LOOK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// This executor's name in the store: who holds a claim.
    pub worker: String,
    /// Tasks run at once.
    pub slots: usize,
    /// The interpreter of Python tasks.
    pub python: PathBuf,
    /// The server tasks' clients talk to (`MLFLOW_TRACKING_URI`, `DATABRICKS_HOST`).
    pub server_url: String,
    /// Where each task run gets its folder: its log, its values, its result.
    pub folder: PathBuf,
    /// How long a claim holds without renewal; renewed every third of it.
    pub lease: Duration,
    /// Whether tasks' logs are shipped into the store as they are written: an executor on
    /// another machine than the servers (`tarn worker`) does, so they can read them.
    pub ship_logs: bool,
}

/// Task runs this executor runs, by task run id: how to ask each to stop, and whether it holds
/// one of the slots (a run_job_task waiting for its run holds none).
type Running = Arc<Mutex<HashMap<i64, (oneshot::Sender<ResultState>, bool)>>>;

pub struct Executor {
    store: Arc<dyn MetaStore>,
    config: ExecutorConfig,
    /// Woken when the runner made tasks ready.
    ready: Wakeup,
    /// Wakes the runner when a task ends.
    runner: Wakeup,
    running: Running,
    /// Claimed tasks not yet recorded as ended.
    in_flight: AtomicUsize,
    /// The server's cache of verified credentials: a task's token is forgotten there as it
    /// is revoked.
    auth_cache: Arc<tarn_identity::AuthCache>,
    /// Held while an environment is installed: tasks asking for the same one wait for it.
    building: tokio::sync::Mutex<()>,
}

impl Executor {
    pub fn new(
        store: Arc<dyn MetaStore>,
        config: ExecutorConfig,
        ready: Wakeup,
        runner: Wakeup,
        auth_cache: Arc<tarn_identity::AuthCache>,
    ) -> Self {
        Self {
            store,
            config,
            ready,
            runner,
            running: Arc::default(),
            in_flight: AtomicUsize::new(0),
            auth_cache,
            building: tokio::sync::Mutex::new(()),
        }
    }

    /// Claims and runs tasks until `stopped`; then stops what still runs here.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        if let Err(err) = self.prepare().await {
            tracing::error!(error = %err.report(), "the job executor cannot start");
            return;
        }
        let renewing = tokio::spawn(self.clone().renew_claims(stopped.clone()));
        loop {
            self.claim_what_is_ready().await;
            tokio::select! {
                _ = self.ready.woken() => {}
                _ = tokio::time::sleep(IDLE_LOOK) => {}
                _ = stopped.changed() => break,
            }
        }
        self.stop_running().await;
        renewing.abort();
    }

    /// Ends what runs here as the executor stops: each task's process group is stopped and the
    /// task recorded failed, so the runner retries it as its settings say at once, instead of
    /// the task running on unwatched until its claim lapses.
    async fn stop_running(&self) {
        let stops: Vec<oneshot::Sender<ResultState>> = self
            .running
            .lock()
            .map(|mut running| running.drain().map(|(_, (stop, _))| stop).collect())
            .unwrap_or_default();
        if stops.is_empty() && self.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        tracing::info!(tasks = stops.len(), "stopping the tasks running here");
        for stop in stops {
            let _ = stop.send(ResultState::Failed);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE + Duration::from_secs(5);
        while self.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes the Python helpers and ends what a previous life of this executor left claimed:
    /// its processes cannot be followed any more, so they are killed and their tasks failed
    /// (the runner retries them as their settings say).
    async fn prepare(&self) -> Result<()> {
        let helpers = self.helpers_folder();
        std::fs::create_dir_all(&helpers)
            .map_err(|err| Error::internal_from("cannot create the jobs folder", err))?;
        for (name, text) in [
            ("tarn_dbutils.py", DBUTILS),
            ("tarn_notebook.py", NOTEBOOK_RUNNER),
            ("tarn_wheel.py", WHEEL_RUNNER),
            ("tarn_sql.py", SQL_RUNNER),
        ] {
            std::fs::write(helpers.join(name), text)
                .map_err(|err| Error::internal_from("cannot write the task helpers", err))?;
        }
        for run in self.store.active_job_runs().await? {
            for task in &run.tasks {
                if task.state.life_cycle != LifeCycle::Running
                    || task.worker.as_deref() != Some(self.config.worker.as_str())
                {
                    continue;
                }
                if let Some(group) = task.process_group {
                    kill_group(group, nix::sys::signal::Signal::SIGKILL);
                }
                let mut ended = task.clone();
                ended.state = RunState::ended(
                    LifeCycle::InternalError,
                    ResultState::Failed,
                    "The executor running this task restarted while it ran.",
                );
                ended.end_time = tarn_core::ids::now_millis();
                ended.process_group = None;
                self.store
                    .update_task_run(&ended, LifeCycle::Running, Some(&self.config.worker))
                    .await?;
                tracing::warn!(
                    run_id = run.run_id,
                    task = %task.task_key,
                    "a task left running by this executor's previous start was ended"
                );
            }
        }
        self.runner.wake();
        Ok(())
    }

    fn helpers_folder(&self) -> PathBuf {
        self.config.folder.join("python")
    }

    async fn claim_what_is_ready(self: &Arc<Self>) {
        loop {
            let busy = self
                .running
                .lock()
                .map(|running| running.len())
                .unwrap_or(0);
            if busy >= self.config.slots {
                return;
            }
            let now = tarn_core::ids::now_millis();
            let lease_until = now + self.config.lease.as_millis() as i64;
            let claimed = match self
                .store
                .claim_task_run(&self.config.worker, now, lease_until)
                .await
            {
                Ok(Some(claimed)) => claimed,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot claim a task run");
                    return;
                }
            };
            let (stop, stopped) = oneshot::channel();
            if let Ok(mut running) = self.running.lock() {
                running.insert(claimed.1.run_id, (stop, true));
            }
            let executor = self.clone();
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (workspace, task) = claimed;
                let task_run_id = task.run_id;
                executor.execute(&workspace, task, stopped).await;
                if let Ok(mut running) = executor.running.lock() {
                    running.remove(&task_run_id);
                }
                executor.in_flight.fetch_sub(1, Ordering::SeqCst);
                // A slot is free.
                executor.ready.wake();
            });
        }
    }

    /// Renews this executor's claims every third of the lease, and stops the tasks whose
    /// runs were cancelled.
    async fn renew_claims(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let every =
            (self.config.lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => return,
            }
            let lease_until = tarn_core::ids::now_millis() + self.config.lease.as_millis() as i64;
            match self
                .store
                .renew_task_runs(&self.config.worker, lease_until)
                .await
            {
                Ok(cancelled) => {
                    if let Ok(mut running) = self.running.lock() {
                        for task_run_id in cancelled {
                            if let Some((stop, _)) = running.remove(&task_run_id) {
                                let _ = stop.send(ResultState::Canceled);
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err.report(), "cannot renew task claims"),
            }
        }
    }

    /// Runs one claimed task to its end and records the end.
    async fn execute(
        &self,
        workspace: &str,
        mut task: TaskRun,
        stop: oneshot::Receiver<ResultState>,
    ) {
        let shipping = self.config.ship_logs.then(|| {
            let (done, shipped) = oneshot::channel();
            let store = self.store.clone();
            let path = logs::log_path(&self.config.folder, &task);
            let task_run_id = task.run_id;
            let shipping = tokio::spawn(async move {
                logs::ship(store.as_ref(), task_run_id, &path, shipped).await;
            });
            (done, shipping)
        });
        let ended = self.run_process(workspace, &mut task, stop).await;
        // The whole log is shipped before the end is recorded: whoever sees the end reads it all.
        if let Some((done, shipping)) = shipping {
            let _ = done.send(());
            let _ = shipping.await;
        }
        let (state, output) = match ended {
            Ok(ended) => ended,
            Err(err) => {
                tracing::warn!(task_run_id = task.run_id, error = %err.report(), "a task could not run");
                let output = tarn_core::jobs::TaskOutput {
                    error: Some(err.message.clone()),
                    ..Default::default()
                };
                (
                    RunState::ended(LifeCycle::InternalError, ResultState::Failed, err.message),
                    output,
                )
            }
        };
        task.state = state;
        task.output = output;
        task.end_time = tarn_core::ids::now_millis();
        task.process_group = None;
        match self
            .store
            .update_task_run(&task, LifeCycle::Running, Some(&self.config.worker))
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                task_run_id = task.run_id,
                "a task ended after its claim was given up; its end is not recorded"
            ),
            Err(err) => tracing::warn!(error = %err.report(), "cannot record a task's end"),
        }
        self.runner.wake();
    }

    async fn run_process(
        &self,
        workspace: &str,
        task: &mut TaskRun,
        mut stop: oneshot::Receiver<ResultState>,
    ) -> Result<(RunState, tarn_core::jobs::TaskOutput)> {
        let run = self.store.get_job_run(workspace, task.job_run_id).await?;
        let settings = JobSettings::read(&run.settings)?;
        let task_settings = settings
            .tasks
            .iter()
            .find(|candidate| candidate.key() == task.task_key)
            .ok_or_else(|| Error::internal(format!("The run has no task '{}'", task.task_key)))?;
        // An iteration of a for_each task runs its nested task.
        let task_settings = match (&task.iteration, &task_settings.for_each_task) {
            (Some(_), Some(for_each)) => &for_each.task,
            _ => task_settings,
        };
        let folder = task_folder(&self.config.folder, task);
        std::fs::create_dir_all(&folder)
            .map_err(|err| Error::internal_from("cannot create the task's folder", err))?;
        let files = TaskFiles::in_folder(&folder);
        if let Some(child) = &task_settings.run_job_task {
            self.release_slot(task.run_id);
            return self
                .run_child_job(&run, task, child, &files, &mut stop)
                .await;
        }
        write_json(&files.upstream, &upstream_values(&run, task))?;
        let source = self.workspace_source(&run, task_settings, &folder).await?;
        let mut command = self.command(&run, task, task_settings, &files, source)?;
        let packages = requirements(&settings, task_settings);
        if !packages.is_empty() {
            command.packages = Some(self.environment(&packages, &files.log).await?);
        }
        write_json(&files.widgets, &Value::Object(command.widgets.clone()))?;
        let lifetime = token_lifetime(&settings, task_settings);
        let (token, secret) = tarn_identity::issue_token(
            self.store.as_ref(),
            &run.run_as_user_name,
            &format!("job run {} task {}", run.run_id, task.task_key),
            Some(lifetime),
            // A task's token reaches its run's workspace only.
            Some(&run.workspace),
            "jobs",
        )
        .await?;
        let ended = self
            .spawn_and_wait(
                &run,
                task,
                task_settings,
                command,
                &files,
                &secret,
                &mut stop,
            )
            .await;
        if let Err(err) = self.store.revoke_token(&token.token_id, "jobs").await {
            tracing::warn!(error = %err.report(), "cannot revoke a finished task's token");
        }
        self.auth_cache.forget_token(&secret);
        let (state, mut output) = ended?;
        task.values = match std::fs::read_to_string(&files.values) {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Object(Map::new())),
            Err(_) => Value::Object(Map::new()),
        };
        output.result = std::fs::read_to_string(&files.result).ok();
        Ok((state, output))
    }

    /// A folder with `packages` installed (`pip install --target`), made once per distinct
    /// list and interpreter and reused; pip's output goes to the task's log.
    async fn environment(&self, packages: &[String], log: &Path) -> Result<PathBuf> {
        use sha2::Digest;
        let mut sorted = packages.to_vec();
        sorted.sort();
        let mut digest = sha2::Sha256::new();
        digest.update(self.config.python.display().to_string());
        for package in &sorted {
            digest.update([0]);
            digest.update(package);
        }
        let name = hex::encode(digest.finalize());
        let folder = self.config.folder.join("environments").join(&name[..16]);
        let _building = self.building.lock().await;
        if folder.join(".ready").exists() {
            return Ok(folder);
        }
        let partial = folder.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let (output, output_again) = open_log(log)?;
        let status = tokio::process::Command::new(&self.config.python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--target",
            ])
            .arg(&partial)
            .args(&sorted)
            .stdin(Stdio::null())
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(output_again))
            .status()
            .await
            .map_err(|err| Error::internal_from("cannot start pip", err))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(Error::invalid(format!(
                "Installing the task's environment ({}) failed; pip's output is in the task's log",
                sorted.join(", ")
            )));
        }
        std::fs::write(partial.join(".ready"), sorted.join("\n"))
            .map_err(|err| Error::internal_from("cannot mark the environment ready", err))?;
        std::fs::rename(&partial, &folder)
            .map_err(|err| Error::internal_from("cannot keep the environment", err))?;
        Ok(folder)
    }

    /// Gives back a task's slot: it waits without a process.
    fn release_slot(&self, task_run_id: i64) {
        if let Ok(mut running) = self.running.lock()
            && let Some((_, slot)) = running.get_mut(&task_run_id)
        {
            *slot = false;
        }
        self.ready.wake();
    }

    /// A run_job_task: starts a run of the job it names (which the run's principal must be
    /// allowed to run), as that job's own principal, and ends as that run ends; cancelling the
    /// task cancels that run.
    async fn run_child_job(
        &self,
        run: &JobRun,
        task: &TaskRun,
        child: &crate::settings::RunJobTask,
        files: &TaskFiles,
        stop: &mut oneshot::Receiver<ResultState>,
    ) -> Result<(RunState, tarn_core::jobs::TaskOutput)> {
        let job_id = child
            .job_id
            .ok_or_else(|| Error::invalid("run_job_task.job_id is required"))?;
        let job = self.store.get_job(&run.workspace, job_id).await?;
        let principal = self.store.active_principal(&run.run_as_user_name).await?;
        tarn_identity::require(
            self.store.as_ref(),
            &run.workspace,
            &principal,
            tarn_core::auth::ObjectType::Job,
            &job_id.to_string(),
            tarn_core::auth::PermissionLevel::CanManageRun,
        )
        .await?;
        let lookup = |path: &[&str]| plan::lookup(run, Some(task), path);
        let parameters: Map<String, Value> = child
            .job_parameters
            .iter()
            .map(|(name, value)| {
                let text = references::resolve(&text_of(value), &lookup);
                (name.clone(), Value::String(text))
            })
            .collect();
        let started = runs::triggered(
            self.store.as_ref(),
            &self.runner,
            &job,
            tarn_core::jobs::trigger::RUN_JOB_TASK,
            parameters,
        )
        .await?;
        let note = format!(
            "started run {} of job {job_id} ({})\n",
            started.run_id,
            job.name()
        );
        std::fs::write(&files.log, &note)
            .map_err(|err| Error::internal_from("cannot write the task's log", err))?;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHILD_RUN_LOOK) => {}
                reason = &mut *stop => {
                    self.store
                        .request_job_run_cancel(&run.workspace, Some(started.run_id), None)
                        .await?;
                    self.runner.wake();
                    let reason = reason.unwrap_or(ResultState::Canceled);
                    return Ok((
                        RunState::ended(LifeCycle::Terminated, reason, stopped_because(reason)),
                        Default::default(),
                    ));
                }
            }
            let child = self
                .store
                .get_job_run(&run.workspace, started.run_id)
                .await?;
            if !child.state.life_cycle.is_terminal() {
                continue;
            }
            let result = child.state.result.unwrap_or(ResultState::Failed);
            if matches!(
                result,
                ResultState::Success | ResultState::SuccessWithFailures
            ) {
                return Ok((
                    RunState::ended(LifeCycle::Terminated, ResultState::Success, ""),
                    Default::default(),
                ));
            }
            let message = format!(
                "Run {} of job {job_id} ended {}: {}",
                child.run_id,
                result.as_str(),
                child.state.message
            );
            let output = tarn_core::jobs::TaskOutput {
                error: Some(message.clone()),
                ..Default::default()
            };
            return Ok((
                RunState::ended(LifeCycle::Terminated, ResultState::Failed, message),
                output,
            ));
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn spawn_and_wait(
        &self,
        run: &JobRun,
        task: &mut TaskRun,
        task_settings: &TaskSettings,
        command: Command,
        files: &TaskFiles,
        secret: &str,
        stop: &mut oneshot::Receiver<ResultState>,
    ) -> Result<(RunState, tarn_core::jobs::TaskOutput)> {
        // Appended to: installing the task's environment may have written to it first.
        let (log, log_again) = open_log(&files.log)?;
        let url = workspace_url(&self.config.server_url, &run.workspace);
        let mut process = tokio::process::Command::new(&command.program);
        process
            .args(&command.args)
            .current_dir(&command.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_again))
            .env(
                "PYTHONPATH",
                python_path(&self.helpers_folder(), command.packages.as_deref()),
            )
            .env("PYTHONUNBUFFERED", "1")
            .env("MLFLOW_TRACKING_URI", &url)
            .env("MLFLOW_TRACKING_TOKEN", secret)
            .env("DATABRICKS_HOST", &url)
            .env("DATABRICKS_TOKEN", secret)
            .env("TARN_HOST", &self.config.server_url)
            .env("TARN_TOKEN", secret)
            .env("TARN_WORKSPACE", &run.workspace)
            .env("TARN_RUN_ID", run.run_id.to_string())
            .env("TARN_TASK_KEY", &task.task_key)
            .env("TARN_TASK_RUN_ID", task.run_id.to_string())
            .env("TARN_TASK_VALUES", &files.values)
            .env("TARN_UPSTREAM_VALUES", &files.upstream)
            .env("TARN_TASK_RESULT", &files.result)
            .env("TARN_WIDGETS", &files.widgets)
            .env_remove("DATABRICKS_CONFIG_PROFILE")
            .env_remove("DATABRICKS_CLIENT_ID")
            .env_remove("DATABRICKS_CLIENT_SECRET");
        if let Some(job_id) = run.job_id {
            process.env("TARN_JOB_ID", job_id.to_string());
        }
        let mut child = process.spawn().map_err(|err| {
            Error::invalid(format!("cannot start {}: {err}", command.program.display()))
        })?;
        let group = child.id().map(i64::from);
        task.process_group = group;
        if !self
            .store
            .update_task_run(task, LifeCycle::Running, Some(&self.config.worker))
            .await?
        {
            // The claim was given up meanwhile (the runner judged this executor gone).
            if let Some(group) = group {
                kill_group(group, nix::sys::signal::Signal::SIGKILL);
            }
            return Err(Error::internal("the task's claim was lost as it started"));
        }
        let timeout = task_settings.timeout_seconds.filter(|seconds| *seconds > 0);
        let deadline = async {
            match timeout {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds as u64)).await,
                None => std::future::pending().await,
            }
        };
        let status = tokio::select! {
            status = child.wait() => Some(status),
            _ = deadline => None,
            reason = &mut *stop => {
                let reason = reason.unwrap_or(ResultState::Canceled);
                stop_group(&mut child, group).await;
                return Ok((RunState::ended(LifeCycle::Terminated, reason, stopped_because(reason)), Default::default()));
            }
        };
        let Some(status) = status else {
            stop_group(&mut child, group).await;
            let seconds = timeout.unwrap_or_default();
            let message = format!("The task timed out after {seconds} seconds.");
            let output = tarn_core::jobs::TaskOutput {
                error: Some(message.clone()),
                ..Default::default()
            };
            return Ok((
                RunState::ended(LifeCycle::Terminated, ResultState::TimedOut, message),
                output,
            ));
        };
        // What the task left running in its group ends with it.
        if let Some(group) = group {
            kill_group(group, nix::sys::signal::Signal::SIGKILL);
        }
        let status = status.map_err(|err| Error::internal_from("cannot wait for the task", err))?;
        if status.success() {
            return Ok((
                RunState::ended(LifeCycle::Terminated, ResultState::Success, ""),
                Default::default(),
            ));
        }
        let (tail, _) = logs::local_tail(&files.log, ERROR_SEARCH)?;
        let output = failure_output(&tail, status);
        let message = output.error.clone().unwrap_or_default();
        Ok((
            RunState::ended(LifeCycle::Terminated, ResultState::Failed, message),
            output,
        ))
    }

    /// The task's file (`python_file`, `notebook_path`, `sql_task.file.path`) written out from
    /// the workspace's files into the task's folder, when the workspace holds it.
    async fn workspace_source(
        &self,
        run: &JobRun,
        settings: &TaskSettings,
        folder: &Path,
    ) -> Result<Option<PathBuf>> {
        let kind = settings.task_type().unwrap_or("none");
        let pointer = match kind {
            "spark_python_task" => "/python_file",
            "notebook_task" => "/notebook_path",
            "sql_task" => "/file/path",
            _ => return Ok(None),
        };
        let Some(given) = settings
            .rest
            .get(kind)
            .and_then(|spec| spec.pointer(pointer))
            .and_then(Value::as_str)
        else {
            return Ok(None);
        };
        crate::workspace_files::materialize(
            self.store.as_ref(),
            &run.workspace,
            &run.run_as_user_name,
            given,
            &folder.join("workspace"),
        )
        .await
    }

    /// The command a task runs: its program, arguments, folder and widget values; `source`
    /// is its file when the workspace holds it.
    fn command(
        &self,
        run: &JobRun,
        task: &TaskRun,
        settings: &TaskSettings,
        files: &TaskFiles,
        source: Option<PathBuf>,
    ) -> Result<Command> {
        let source_or = |given: Option<&str>, field: &str| match &source {
            Some(path) => Ok(path.clone()),
            None => local_file(given, field),
        };
        let lookup = |path: &[&str]| plan::lookup(run, Some(task), path);
        let resolve = |text: &str| references::resolve(text, &lookup);
        let overriding = &run.overriding_parameters;
        let python = self.config.python.clone();
        let job_widgets: Map<String, Value> = match &run.job_parameters {
            Value::Object(values) => values.clone(),
            _ => Map::new(),
        };
        let kind = settings.task_type().unwrap_or("none");
        let spec = settings.rest.get(kind).cloned().unwrap_or(Value::Null);
        match kind {
            "spark_python_task" => {
                let file = source_or(
                    spec.get("python_file").and_then(Value::as_str),
                    "python_file",
                )?;
                let parameters = match overriding.get("python_params") {
                    Some(Value::Array(given)) => given.clone(),
                    _ => spec
                        .get("parameters")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                };
                let mut args = vec![file.display().to_string()];
                args.extend(parameters.iter().map(|value| resolve(&text_of(value))));
                Ok(Command::new(python, args, &file, job_widgets, files))
            }
            "python_wheel_task" => {
                let package = spec
                    .get("package_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let entry = spec
                    .get("entry_point")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut args = vec![
                    self.helpers_folder()
                        .join("tarn_wheel.py")
                        .display()
                        .to_string(),
                    package.to_string(),
                    entry.to_string(),
                ];
                let named = match overriding.get("python_named_params") {
                    Some(Value::Object(given)) => Some(given.clone()),
                    _ => spec
                        .get("named_parameters")
                        .and_then(Value::as_object)
                        .cloned(),
                };
                // Job parameters are pushed down to a wheel taking keyword arguments, over
                // its own of the same name (Databricks' job parameter pushdown).
                let named = named.map(|mut named| {
                    named.extend(job_widgets.clone());
                    named
                });
                match named {
                    Some(named) => args.extend(
                        named
                            .iter()
                            .map(|(name, value)| format!("--{name}={}", resolve(&text_of(value)))),
                    ),
                    None => {
                        let parameters = match overriding.get("python_params") {
                            Some(Value::Array(given)) => given.clone(),
                            _ => spec
                                .get("parameters")
                                .and_then(Value::as_array)
                                .cloned()
                                .unwrap_or_default(),
                        };
                        args.extend(parameters.iter().map(|value| resolve(&text_of(value))));
                    }
                }
                let dir = files.folder.clone();
                Ok(Command {
                    program: python,
                    args,
                    dir,
                    widgets: job_widgets,
                    packages: None,
                })
            }
            "notebook_task" => {
                let file = source_or(
                    spec.get("notebook_path").and_then(Value::as_str),
                    "notebook_path",
                )?;
                let file = if file.exists() || file.extension().is_some() {
                    file
                } else {
                    file.with_extension("py")
                };
                // Widgets: the job's parameters, the task's base parameters, the run's
                // notebook_params, each over the one before.
                let mut widgets = job_widgets;
                for source in [
                    spec.get("base_parameters"),
                    overriding.get("notebook_params"),
                ]
                .into_iter()
                .flatten()
                {
                    if let Value::Object(values) = source {
                        for (name, value) in values {
                            widgets.insert(name.clone(), Value::String(resolve(&text_of(value))));
                        }
                    }
                }
                let args = vec![
                    self.helpers_folder()
                        .join("tarn_notebook.py")
                        .display()
                        .to_string(),
                    file.display().to_string(),
                ];
                Ok(Command::new(python, args, &file, widgets, files))
            }
            "sql_task" => {
                if spec.get("file").is_none() {
                    return Err(Error::invalid(format!(
                        "Task '{}': sql_task runs a file of statements (sql_task.file.path); \
                         saved queries, dashboards and alerts are not in tarn",
                        task.task_key
                    )));
                }
                let file = source_or(
                    spec.pointer("/file/path").and_then(Value::as_str),
                    "sql_task.file.path",
                )?;
                let parameters: Map<String, Value> = spec
                    .get("parameters")
                    .and_then(Value::as_object)
                    .map(|given| {
                        given
                            .iter()
                            .map(|(name, value)| {
                                (name.clone(), Value::String(resolve(&text_of(value))))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let args = vec![
                    self.helpers_folder()
                        .join("tarn_sql.py")
                        .display()
                        .to_string(),
                    file.display().to_string(),
                    Value::Object(parameters).to_string(),
                ];
                Ok(Command::new(python, args, &file, job_widgets, files))
            }
            other => Err(Error::invalid(format!(
                "Task '{}': {other} is not run by this version of tarn",
                task.task_key
            ))),
        }
    }
}

/// What a task runs.
struct Command {
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    widgets: Map<String, Value>,
    /// The folder its environment's packages are installed in, if it has one.
    packages: Option<PathBuf>,
}

impl Command {
    /// A command run in the folder of the file it runs (where a script's relative paths
    /// point), or in the task's own.
    fn new(
        program: PathBuf,
        args: Vec<String>,
        file: &Path,
        widgets: Map<String, Value>,
        files: &TaskFiles,
    ) -> Self {
        let dir = file
            .parent()
            .filter(|parent| parent.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| files.folder.clone());
        Self {
            program,
            args,
            dir,
            widgets,
            packages: None,
        }
    }
}

/// The files a task's process shares with its executor.
struct TaskFiles {
    folder: PathBuf,
    log: PathBuf,
    values: PathBuf,
    upstream: PathBuf,
    result: PathBuf,
    widgets: PathBuf,
}

impl TaskFiles {
    fn in_folder(folder: &Path) -> Self {
        Self {
            folder: folder.to_path_buf(),
            log: folder.join("output.log"),
            values: folder.join("values.json"),
            upstream: folder.join("upstream.json"),
            result: folder.join("result.txt"),
            widgets: folder.join("widgets.json"),
        }
    }
}

/// A task's log opened for appending, twice: its process's standard output and error.
fn open_log(path: &Path) -> Result<(std::fs::File, std::fs::File)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|err| Error::internal_from("cannot open the task's log", err))?;
    let again = log
        .try_clone()
        .map_err(|err| Error::internal_from("cannot share the task's log", err))?;
    Ok((log, again))
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    std::fs::write(path, value.to_string())
        .map_err(|err| Error::internal_from("cannot write a task file", err))
}

/// The values every other task of the run set, by task key (`taskValues.get`).
fn upstream_values(run: &JobRun, task: &TaskRun) -> Value {
    Value::Object(
        run.latest_attempts()
            .into_iter()
            .filter(|other| other.task_key != task.task_key)
            .map(|other| (other.task_key.clone(), other.values.clone()))
            .collect(),
    )
}

/// A file a task names: an absolute path on this machine (`file:` allowed).
/// A task's file given as a path on the machine that runs it (the workspace did not hold it).
fn local_file(given: Option<&str>, field: &str) -> Result<PathBuf> {
    let given = given
        .filter(|text| !text.is_empty())
        .ok_or_else(|| Error::invalid(format!("{field} is required")))?;
    let path = PathBuf::from(given.strip_prefix("file:").unwrap_or(given));
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "{field} '{given}' must be a workspace path or an absolute path on the machine \
             that runs the task"
        )));
    }
    Ok(path)
}

/// A parameter as a command line takes it.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The URL a task's clients use: the server's, under the workspace's prefix unless it is the
/// default one.
fn workspace_url(server_url: &str, workspace: &str) -> String {
    let base = server_url.trim_end_matches('/');
    if workspace == tarn_core::caller::DEFAULT_WORKSPACE {
        base.to_string()
    } else {
        format!("{base}/ws/{workspace}")
    }
}

/// The helpers first, then the task's environment, then whatever the server was given.
fn python_path(helpers: &Path, packages: Option<&Path>) -> String {
    let mut parts = vec![helpers.display().to_string()];
    if let Some(packages) = packages {
        parts.push(packages.display().to_string());
    }
    if let Ok(existing) = std::env::var("PYTHONPATH")
        && !existing.is_empty()
    {
        parts.push(existing);
    }
    parts.join(":")
}

/// The packages a task asks for: its environment's dependencies, then its `libraries`
/// (`pypi.package`, `whl`).
fn requirements(job: &JobSettings, task: &TaskSettings) -> Vec<String> {
    let mut packages: Vec<String> = task
        .environment_key
        .as_ref()
        .and_then(|key| {
            job.environments
                .iter()
                .find(|environment| environment.environment_key == *key)
        })
        .map(|environment| environment.spec.dependencies.clone())
        .unwrap_or_default();
    if let Some(Value::Array(libraries)) = task.rest.get("libraries") {
        for library in libraries {
            let package = library
                .pointer("/pypi/package")
                .or_else(|| library.get("whl"))
                .and_then(Value::as_str);
            if let Some(package) = package {
                packages.push(package.to_string());
            }
        }
    }
    packages
}

/// A task's token lives as long as the task may (its timeout, or the job's), with a margin;
/// a day when neither limits it. It is revoked when the task ends.
fn token_lifetime(job: &JobSettings, task: &TaskSettings) -> i64 {
    let limit = task
        .timeout_seconds
        .filter(|seconds| *seconds > 0)
        .or(job.timeout_seconds.filter(|seconds| *seconds > 0));
    match limit {
        Some(seconds) => seconds.saturating_add(300),
        None => 24 * 3600,
    }
}

/// The error a failed process ended with: the last Python traceback in its log, else its exit.
fn failure_output(tail: &str, status: std::process::ExitStatus) -> tarn_core::jobs::TaskOutput {
    use std::os::unix::process::ExitStatusExt;
    let exit = match (status.code(), status.signal()) {
        (Some(code), _) => format!("The task's process exited with code {code}"),
        (None, Some(signal)) => format!("The task's process was ended by signal {signal}"),
        _ => "The task's process failed".to_string(),
    };
    match tail.rfind("Traceback (most recent call last):") {
        Some(start) => {
            let trace = tail[start..].trim_end().to_string();
            let error = trace
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or(&exit)
                .to_string();
            tarn_core::jobs::TaskOutput {
                result: None,
                error: Some(error),
                error_trace: Some(trace),
            }
        }
        // No traceback: the last thing it said, if anything, is the likeliest reason.
        None => tarn_core::jobs::TaskOutput {
            result: None,
            error: Some(
                match tail.lines().rev().find(|line| !line.trim().is_empty()) {
                    Some(last) => format!("{exit}: {}", last.trim()),
                    None => exit,
                },
            ),
            error_trace: None,
        },
    }
}

fn kill_group(group: i64, signal: nix::sys::signal::Signal) {
    let Ok(group) = i32::try_from(group) else {
        return;
    };
    // ESRCH: the group has already ended.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), signal);
}

/// Why a task was stopped, as its state says: its run was cancelled, or (a failure, retried as
/// the task's settings say) the executor running it stopped.
fn stopped_because(reason: ResultState) -> &'static str {
    match reason {
        ResultState::Canceled => "The run was cancelled.",
        _ => "The executor running this task stopped while it ran.",
    }
}

/// Asks the task's process group to end, and kills it if it has not after a grace period.
async fn stop_group(child: &mut tokio::process::Child, group: Option<i64>) {
    if let Some(group) = group {
        kill_group(group, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
    }
    if let Some(group) = group {
        kill_group(group, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_failure_is_read_from_its_traceback() {
        use std::os::unix::process::ExitStatusExt;
        let tail = "loading\nTraceback (most recent call last):\n  File \"t.py\", line 3, in <module>\n    raise ValueError(\"bad rows: 3\")\nValueError: bad rows: 3\n";
        let output = failure_output(tail, std::process::ExitStatus::from_raw(256));
        assert_eq!(output.error.as_deref(), Some("ValueError: bad rows: 3"));
        assert!(
            output
                .error_trace
                .as_deref()
                .is_some_and(|t| t.starts_with("Traceback"))
        );
        let output = failure_output("", std::process::ExitStatus::from_raw(9));
        assert_eq!(
            output.error.as_deref(),
            Some("The task's process was ended by signal 9")
        );
        let output = failure_output(
            "working\nbroken input\n\n",
            std::process::ExitStatus::from_raw(256),
        );
        assert_eq!(
            output.error.as_deref(),
            Some("The task's process exited with code 1: broken input")
        );
    }

    #[test]
    fn tasks_reach_their_workspace_under_its_prefix() {
        assert_eq!(
            workspace_url("http://127.0.0.1:5000/", "dev"),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            workspace_url("http://127.0.0.1:5000", "prod"),
            "http://127.0.0.1:5000/ws/prod"
        );
    }
}
