//! `tarn jobs ...`: jobs from the command line, on the metadata store directly (like the other
//! admin commands), through the same use cases and checks as the Jobs API. `run` follows the
//! run live; when no server runs the store's jobs, it starts one in-process for the run.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use tarn_core::auth::PermissionLevel;
use tarn_core::caller::Caller;
use tarn_core::jobs::{Job, JobRun, LifeCycle, ResultState, RunFilter, TaskRun};
use tarn_core::store::MetaStore;
use tarn_jobs::{logs, manage, runs};

use crate::local::cli_caller;
use crate::models::time;
use crate::server::{ServerArgs, StoreArgs};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Create a job from a JSON file of Databricks job settings; prints its id.
    Create {
        /// The settings, as `jobs/create` takes them.
        file: std::path::PathBuf,
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// The user or service principal that owns the job (and runs it unless `run_as` says
        /// otherwise).
        #[arg(long, default_value = "admin")]
        owner: String,
    },
    /// List the workspace's jobs: id, name, tasks, schedule, owner.
    List {
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// Only jobs of this name (case does not matter).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a job's settings as JSON.
    Get {
        job_id: i64,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Delete a job.
    Delete {
        job_id: i64,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Run a job now and follow its tasks live until it ends (a server running the store's
    /// jobs runs it; without one, this command runs it in-process). Exits non-zero unless the
    /// run succeeds.
    Run {
        job_id: i64,
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// A job parameter's value, `NAME=VALUE`; repeat for more.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Run only this task; repeat for more.
        #[arg(long)]
        only: Vec<String>,
        /// Start the run and return (needs a server running the store's jobs).
        #[arg(long)]
        no_wait: bool,
        /// The interpreter of Python tasks when this command runs the job itself.
        #[arg(long, env = "TARN_JOBS_PYTHON", default_value = "python3")]
        python: std::path::PathBuf,
    },
    /// Rerun tasks of an ended run inside it (the failed ones by default) and follow it.
    Repair {
        run_id: i64,
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// Rerun this task; repeat for more (default: every task that did not succeed).
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Also rerun the tasks that depend on those rerun.
        #[arg(long)]
        dependents: bool,
        /// The interpreter of Python tasks when this command runs the repair itself.
        #[arg(long, env = "TARN_JOBS_PYTHON", default_value = "python3")]
        python: std::path::PathBuf,
    },
    /// List runs, newest first: id, job, state, result, trigger, start, duration.
    Runs {
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// Only this job's runs.
        #[arg(long)]
        job_id: Option<i64>,
        /// Only runs not yet ended.
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a task run's log (standard output and error); `--follow` keeps printing while it
    /// runs. A run of one task may be named by its own id.
    Logs {
        run_id: i64,
        #[arg(long, default_value = "dev")]
        workspace: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a run: tasks not started are skipped, running ones ended with their processes.
    Cancel {
        run_id: i64,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
}

pub async fn run(store_args: &StoreArgs, command: JobsCommand) -> Result<()> {
    let opened = store_args.open().await?;
    let store = opened.as_ref();
    match command {
        JobsCommand::Create {
            file,
            workspace,
            owner,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let settings: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let principal = store
                .active_principal(&owner)
                .await
                .with_context(|| format!("no active principal '{owner}' to own the job"))?;
            let caller = Caller::new(workspace, principal);
            let job = manage::create(store, &caller, settings).await?;
            println!("created job {} ({})", job.job_id, job.name());
        }
        JobsCommand::List { workspace, name } => {
            let caller = cli_caller(workspace);
            println!(
                "{:<10} {:<32} {:>5}  {:<28} {:<16} CREATED",
                "JOB ID", "NAME", "TASKS", "SCHEDULE", "RUN AS"
            );
            let mut offset = 0;
            loop {
                let page = manage::list(
                    store,
                    &caller,
                    name.as_deref(),
                    offset,
                    manage::MAX_LIST_LIMIT,
                )
                .await?;
                for job in &page.items {
                    print_job_line(job);
                }
                match page.next_offset {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
        JobsCommand::Get { job_id, workspace } => {
            let caller = cli_caller(workspace);
            let job = manage::job_for(
                store,
                &caller,
                job_id,
                tarn_core::auth::PermissionLevel::CanView,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&job.settings)?);
        }
        JobsCommand::Delete { job_id, workspace } => {
            manage::delete(store, &cli_caller(workspace), job_id).await?;
            println!("deleted job {job_id}");
        }
        JobsCommand::Run {
            job_id,
            workspace,
            params,
            only,
            no_wait,
            python,
        } => {
            let caller = cli_caller(workspace);
            let mut job_parameters = Map::new();
            for param in params {
                let (name, value) = param
                    .split_once('=')
                    .with_context(|| format!("--param takes NAME=VALUE, not '{param}'"))?;
                job_parameters.insert(name.to_string(), Value::String(value.to_string()));
            }
            let request = runs::RunNow {
                job_parameters,
                only,
                ..Default::default()
            };
            let start = |wakeup: runs::Wakeup| async move {
                let run = runs::run_now(store, &wakeup, &caller, job_id, request).await?;
                println!("run {} of job {job_id} ({})", run.run_id, run.run_name);
                Ok(run)
            };
            start_and_follow(store_args, store, python, no_wait, start).await?;
        }
        JobsCommand::Repair {
            run_id,
            workspace,
            tasks,
            dependents,
            python,
        } => {
            let caller = cli_caller(workspace);
            let latest = runs::run_for(store, &caller, run_id, PermissionLevel::CanView)
                .await?
                .latest_repair_id();
            let request = runs::Repair {
                rerun_all_failed_tasks: tasks.is_empty(),
                rerun_tasks: tasks,
                rerun_dependent_tasks: dependents,
                latest_repair_id: latest,
                ..Default::default()
            };
            let start = |wakeup: runs::Wakeup| async move {
                let run = runs::repair(store, &wakeup, &caller, run_id, request).await?;
                println!(
                    "repair {} of run {run_id}",
                    run.latest_repair_id().unwrap_or_default()
                );
                Ok(run)
            };
            start_and_follow(store_args, store, python, false, start).await?;
        }
        JobsCommand::Runs {
            workspace,
            job_id,
            active,
            limit,
        } => {
            let caller = cli_caller(workspace);
            let filter = RunFilter {
                job_id,
                active_only: active,
                ..Default::default()
            };
            println!(
                "{:<10} {:<8} {:<28} {:<12} {:<22} {:<10} {:<19} DURATION",
                "RUN ID", "JOB", "NAME", "STATE", "RESULT", "TRIGGER", "STARTED"
            );
            let mut offset = 0;
            let mut shown = 0;
            while shown < limit {
                let page = runs::list(store, &caller, &filter, false, offset, runs::MAX_LIST_LIMIT)
                    .await?;
                for run in page.items.iter().take(limit - shown) {
                    print_run_line(run);
                    shown += 1;
                }
                match page.next_offset {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
        JobsCommand::Logs {
            run_id,
            workspace,
            follow,
        } => {
            let caller = cli_caller(workspace);
            print_log(store, &store_args.jobs_folder(), &caller, run_id, follow).await?;
        }
        JobsCommand::Cancel { run_id, workspace } => {
            let caller = cli_caller(workspace);
            runs::cancel(store, &runs::Wakeup::default(), &caller, run_id).await?;
            println!("asked run {run_id} to stop");
        }
    }
    Ok(())
}

/// Starts a run (or a repair) with `start` and follows it to its end; without a server
/// running the store's jobs, runs it in-process, and takes it over in-process if the server
/// that ran it goes away. Fails unless the run succeeds.
async fn start_and_follow<Start, Started>(
    store_args: &StoreArgs,
    store: &dyn MetaStore,
    python: std::path::PathBuf,
    no_wait: bool,
    start: Start,
) -> Result<()>
where
    Start: FnOnce(runs::Wakeup) -> Started,
    Started: std::future::Future<Output = tarn_core::Result<JobRun>>,
{
    let served = server_running(store).await?;
    if no_wait && !served {
        bail!("no server runs this store's jobs: start `tarn server`, or run without --no-wait");
    }
    let mut embedded = if served {
        None
    } else {
        Some(Embedded::start(store_args, python.clone()).await?)
    };
    let wakeup = embedded
        .as_ref()
        .map(|embedded| embedded.state.jobs.runner.clone())
        .unwrap_or_default();
    let caller = cli_caller(String::new());
    let followed: Result<Option<JobRun>> = async {
        let run = start(wakeup).await?;
        if no_wait {
            return Ok(None);
        }
        let caller = Caller::new(run.workspace.clone(), caller.principal.clone());
        loop {
            match follow(store, &caller, run.run_id, embedded.is_none()).await? {
                Followed::Ended(ended) => return Ok(Some(*ended)),
                Followed::Unattended => {
                    eprintln!(
                        "no server runs this store's jobs any more: running the rest of run {} here",
                        run.run_id
                    );
                    embedded = Some(Embedded::start(store_args, python.clone()).await?);
                }
            }
        }
    }
    .await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    let Some(ended) = followed? else {
        return Ok(());
    };
    print_summary(&ended);
    if !matches!(
        ended.state.result,
        Some(ResultState::Success | ResultState::SuccessWithFailures)
    ) {
        bail!(
            "run {} ended {}",
            ended.run_id,
            ended
                .state
                .result
                .map_or("without a result", ResultState::as_str)
        );
    }
    Ok(())
}

/// Follows a run that a server in this process runs until it ends.
pub(crate) async fn follow_to_end(
    store: &dyn MetaStore,
    caller: &Caller,
    run_id: i64,
) -> Result<JobRun> {
    match follow(store, caller, run_id, false).await? {
        Followed::Ended(ended) => Ok(*ended),
        Followed::Unattended => bail!("run {run_id} has nobody to run it"),
    }
}

/// Whether a server holds the job runner's lease: it runs what this command starts.
async fn server_running(store: &dyn MetaStore) -> Result<bool> {
    let holder = store.lease_holder(tarn_jobs::runner::RUNNER_LEASE).await?;
    Ok(holder.is_some_and(|(_, until)| until > tarn_core::ids::now_millis()))
}

/// A server started in-process on a free loopback port to run one job run: its runner and
/// executor, and the API its tasks' clients talk to.
struct Embedded {
    state: tarn_server::AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Embedded {
    async fn start(store: &StoreArgs, python: std::path::PathBuf) -> Result<Self> {
        let mut args = ServerArgs::defaults();
        args.store = store.clone();
        args.port = 0;
        args.jobs.python = python;
        let (state, listener, _) = crate::server::start_server(&args).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(tarn_server::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            state,
            stop,
            served,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.served.await;
    }
}

/// How often a followed run is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// How following a run ended.
enum Followed {
    Ended(Box<JobRun>),
    /// The run is not over and no server holds the runner's lease: nobody will end it.
    Unattended,
}

/// Follows a run until it ends (or, when `watch_runner`, until no server runs the store's
/// jobs): a line per task that changes on a terminal, a line per change otherwise.
async fn follow(
    store: &dyn MetaStore,
    caller: &Caller,
    run_id: i64,
    watch_runner: bool,
) -> Result<Followed> {
    let live = std::io::stdout().is_terminal();
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}")?;
    let mut shown: Vec<(String, ProgressBar, String)> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let run = runs::run_for(store, caller, run_id, PermissionLevel::CanView).await?;
        for task in run.latest_attempts() {
            let mut status = task_status(task);
            let iterations = run.iterations_of(task.run_id);
            if !iterations.is_empty() {
                let done = iterations
                    .iter()
                    .filter(|iteration| iteration.state.life_cycle.is_terminal())
                    .count();
                status.push_str(&format!(" ({done}/{} iterations)", iterations.len()));
            }
            let position = shown.iter().position(|(key, _, _)| *key == task.task_key);
            let index = match position {
                Some(index) => index,
                None => {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(task.task_key.clone());
                    shown.push((task.task_key.clone(), bar, String::new()));
                    shown.len() - 1
                }
            };
            let (key, bar, last) = &mut shown[index];
            let state = status.split(' ').next().unwrap_or_default().to_string();
            if live {
                bar.set_message(status.clone());
                bar.tick();
            } else if *last != state {
                println!(
                    "[{:>6.1}s] {key:<24} {status}",
                    started.elapsed().as_secs_f64()
                );
            }
            *last = state;
            if task.state.life_cycle.is_terminal() && live {
                bar.finish();
            }
        }
        if run.state.life_cycle.is_terminal() {
            for (_, bar, _) in &shown {
                bar.finish();
            }
            return Ok(Followed::Ended(Box::new(run)));
        }
        if watch_runner && !server_running(store).await? {
            return Ok(Followed::Unattended);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// A task's state as a line shows it: `RUNNING 3.2s`, `SUCCESS 1.0s`, `EXCLUDED`.
fn task_status(task: &TaskRun) -> String {
    let attempt = if task.attempt_number > 0 {
        format!(" (retry {})", task.attempt_number)
    } else {
        String::new()
    };
    let seconds = |end: i64| (end - task.start_time) as f64 / 1000.0;
    match (task.state.life_cycle, task.state.result) {
        (LifeCycle::Running, _) => format!(
            "RUNNING {:.1}s{attempt}",
            seconds(tarn_core::ids::now_millis())
        ),
        (_, Some(result)) if task.start_time > 0 && task.end_time > task.start_time => {
            format!(
                "{} {:.1}s{attempt}",
                result.as_str(),
                seconds(task.end_time)
            )
        }
        (_, Some(result)) => format!("{}{attempt}", result.as_str()),
        (life_cycle, None) => format!("{}{attempt}", life_cycle.as_str()),
    }
}

fn print_summary(run: &JobRun) {
    println!();
    println!(
        "{:<12} {:<24} {:<8} {:<22} DURATION",
        "TASK RUN", "TASK", "ATTEMPT", "RESULT"
    );
    for task in run.latest_attempts() {
        let duration = if task.end_time > task.start_time && task.start_time > 0 {
            format!("{:.1}s", (task.end_time - task.start_time) as f64 / 1000.0)
        } else {
            "-".to_string()
        };
        println!(
            "{:<12} {:<24} {:<8} {:<22} {duration}",
            task.run_id,
            task.task_key,
            task.attempt_number,
            task.state.result.map_or("-", ResultState::as_str),
        );
    }
    let result = run.state.result.map_or("-", ResultState::as_str);
    println!(
        "\nrun {} {result} in {:.1}s{}",
        run.run_id,
        (run.end_time - run.start_time).max(0) as f64 / 1000.0,
        if run.state.message.is_empty() {
            String::new()
        } else {
            format!(": {}", run.state.message)
        }
    );
    for task in run.latest_attempts() {
        if matches!(
            task.state.result,
            Some(ResultState::Failed | ResultState::TimedOut)
        ) {
            println!(
                "  logs of {}: tarn jobs logs {}",
                task.task_key, task.run_id
            );
        }
    }
}

fn print_run_line(run: &JobRun) {
    let duration = if run.start_time > 0 {
        let end = if run.end_time > 0 {
            run.end_time
        } else {
            tarn_core::ids::now_millis()
        };
        format!("{:.1}s", (end - run.start_time) as f64 / 1000.0)
    } else {
        "-".to_string()
    };
    println!(
        "{:<10} {:<8} {:<28} {:<12} {:<22} {:<10} {:<19} {duration}",
        run.run_id,
        run.job_id.map_or("-".to_string(), |id| id.to_string()),
        run.run_name,
        run.state.life_cycle.as_str(),
        run.state.result.map_or("-", ResultState::as_str),
        run.trigger,
        time(if run.start_time > 0 {
            run.start_time
        } else {
            run.created_time
        }),
    );
}

/// Prints a task run's log; when following, what it writes next until it ends.
async fn print_log(
    store: &dyn MetaStore,
    folder: &std::path::Path,
    caller: &Caller,
    run_id: i64,
    follow: bool,
) -> Result<()> {
    use std::io::Write;
    let (_, task) = runs::output_of(store, caller, run_id).await?;
    let mut printed = 0u64;
    let mut out = std::io::stdout();
    loop {
        // Read the end state first: what the task wrote before it ended is in the log then.
        let ended = !follow || {
            let (_, now) = runs::output_of(store, caller, run_id).await?;
            now.state.life_cycle.is_terminal()
        };
        loop {
            let (fresh, _) = logs::read(store, folder, &task, printed, LOG_PIECE).await?;
            if fresh.is_empty() {
                break;
            }
            printed += fresh.len() as u64;
            out.write_all(&fresh)?;
        }
        out.flush()?;
        if ended {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// How much of a log `tarn jobs logs` reads at once.
const LOG_PIECE: u64 = 1024 * 1024;

fn print_job_line(job: &Job) {
    let tasks = job
        .settings
        .get("tasks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let schedule = job.settings.get("schedule").map_or("-".to_string(), |s| {
        let cron = s
            .get("quartz_cron_expression")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let paused = s.get("pause_status").and_then(Value::as_str) == Some("PAUSED");
        format!("{cron}{}", if paused { " (paused)" } else { "" })
    });
    println!(
        "{:<10} {:<32} {:>5}  {:<28} {:<16} {}",
        job.job_id,
        job.name(),
        tasks,
        schedule,
        job.run_as_user_name,
        time(job.created_time)
    );
}
