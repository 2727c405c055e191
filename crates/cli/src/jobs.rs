//! `tarn jobs ...`: jobs from the command line through the server's Jobs API (`/api/2.2/jobs`),
//! as the token's principal. `run` and `repair` follow the run the server runs, task by task,
//! until it ends; `logs` prints what `runs/get-output` returns of a task run's log.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};
use tarn_core::jobs::{LifeCycle, ResultState, name_in};

use crate::client::Client;
use crate::models::time;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Create a job from a JSON file of Databricks job settings; prints its id. The job is the
    /// token's principal's (it runs as them unless the settings' `run_as` says otherwise).
    Create {
        /// The settings, as `jobs/create` takes them.
        file: std::path::PathBuf,
    },
    /// List the workspace's jobs: id, name, tasks, schedule, owner.
    List {
        /// Only jobs of this name (case does not matter).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a job's settings as JSON.
    Get { job_id: i64 },
    /// Delete a job.
    Delete { job_id: i64 },
    /// Run a job now and follow its tasks live until it ends. Exits non-zero unless the run
    /// succeeds.
    Run {
        job_id: i64,
        /// A job parameter's value, `NAME=VALUE`; repeat for more.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Run only this task; repeat for more.
        #[arg(long)]
        only: Vec<String>,
        /// Start the run and return.
        #[arg(long)]
        no_wait: bool,
    },
    /// Rerun tasks of an ended run inside it (the failed ones by default) and follow it.
    Repair {
        run_id: i64,
        /// Rerun this task; repeat for more (default: every task that did not succeed).
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Also rerun the tasks that depend on those rerun.
        #[arg(long)]
        dependents: bool,
    },
    /// List runs, newest first: id, job, state, result, trigger, start, duration.
    Runs {
        /// Only this job's runs.
        #[arg(long)]
        job_id: Option<i64>,
        /// Only runs not yet ended.
        #[arg(long)]
        active: bool,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print a task run's log (standard output and error; its end when it is long);
    /// `--follow` keeps printing while it runs. A run of one task may be named by its own id.
    Logs {
        run_id: i64,
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a run: tasks not started are skipped, running ones ended with their processes.
    Cancel { run_id: i64 },
}

/// The Jobs API, as the Databricks SDK calls it.
const JOBS: &str = "/api/2.2/jobs";
/// The most jobs `jobs/list` answers at once.
const JOBS_PAGE: usize = 100;
/// The most runs `jobs/runs/list` answers at once.
const RUNS_PAGE: usize = 25;

pub async fn run(client: &Client, command: JobsCommand) -> Result<()> {
    match command {
        JobsCommand::Create { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let settings: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            if !settings.is_object() {
                bail!("{} must hold a JSON object of job settings", file.display());
            }
            let created = client.post(&format!("{JOBS}/create"), &settings).await?;
            println!(
                "created job {} ({})",
                integer(&created, "job_id"),
                name_in(&settings)
            );
        }
        JobsCommand::List { name } => {
            println!(
                "{:<10} {:<32} {:>5}  {:<28} {:<16} CREATED",
                "JOB ID", "NAME", "TASKS", "SCHEDULE", "RUN AS"
            );
            let mut query = vec![
                ("limit", JOBS_PAGE.to_string()),
                ("expand_tasks", "true".to_string()),
            ];
            query.extend(name.map(|name| ("name", name)));
            for job in list_jobs(client, query).await? {
                print_job_line(&job);
            }
        }
        JobsCommand::Get { job_id } => {
            let job = client
                .get(&format!("{JOBS}/get"), &[("job_id", job_id.to_string())])
                .await?;
            println!("{}", serde_json::to_string_pretty(&job["settings"])?);
        }
        JobsCommand::Delete { job_id } => {
            client
                .post(&format!("{JOBS}/delete"), &json!({ "job_id": job_id }))
                .await?;
            println!("deleted job {job_id}");
        }
        JobsCommand::Run {
            job_id,
            params,
            only,
            no_wait,
        } => {
            let mut job_parameters = Map::new();
            for param in params {
                let (name, value) = param
                    .split_once('=')
                    .with_context(|| format!("--param takes NAME=VALUE, not '{param}'"))?;
                job_parameters.insert(name.to_string(), Value::String(value.to_string()));
            }
            let body = json!({ "job_id": job_id, "job_parameters": job_parameters, "only": only });
            let started = client.post(&format!("{JOBS}/run-now"), &body).await?;
            let run_id = integer(&started, "run_id");
            let run = get_run(client, run_id).await?;
            println!("run {run_id} of job {job_id} ({})", text(&run, "run_name"));
            if !no_wait {
                follow_and_summarize(client, run_id).await?;
            }
        }
        JobsCommand::Repair {
            run_id,
            tasks,
            dependents,
        } => {
            let run = get_run(client, run_id).await?;
            let body = json!({
                "run_id": run_id,
                "rerun_all_failed_tasks": tasks.is_empty(),
                "rerun_tasks": tasks,
                "rerun_dependent_tasks": dependents,
                "latest_repair_id": latest_repair_id(&run),
            });
            let repaired = client.post(&format!("{JOBS}/runs/repair"), &body).await?;
            println!("repair {} of run {run_id}", integer(&repaired, "repair_id"));
            follow_and_summarize(client, run_id).await?;
        }
        JobsCommand::Runs {
            job_id,
            active,
            limit,
        } => {
            println!(
                "{:<10} {:<8} {:<28} {:<12} {:<22} {:<10} {:<19} DURATION",
                "RUN ID", "JOB", "NAME", "STATE", "RESULT", "TRIGGER", "STARTED"
            );
            let mut query = vec![("active_only", active.to_string())];
            query.extend(job_id.map(|id| ("job_id", id.to_string())));
            let mut shown = 0;
            let mut page_token: Option<String> = None;
            while shown < limit {
                let mut page_query = query.clone();
                page_query.push(("limit", (limit - shown).min(RUNS_PAGE).to_string()));
                page_query.extend(page_token.take().map(|token| ("page_token", token)));
                let page = client
                    .get(&format!("{JOBS}/runs/list"), &page_query)
                    .await?;
                for run in items(&page, "runs").iter().take(limit - shown) {
                    print_run_line(run);
                    shown += 1;
                }
                match page.get("next_page_token").and_then(Value::as_str) {
                    Some(token) => page_token = Some(token.to_string()),
                    None => break,
                }
            }
        }
        JobsCommand::Logs { run_id, follow } => print_log(client, run_id, follow).await?,
        JobsCommand::Cancel { run_id } => {
            client
                .post(&format!("{JOBS}/runs/cancel"), &json!({ "run_id": run_id }))
                .await?;
            println!("asked run {run_id} to stop");
        }
    }
    Ok(())
}

/// Every job `jobs/list` answers with `query`, page after page.
async fn list_jobs(client: &Client, query: Vec<(&str, String)>) -> Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.extend(page_token.take().map(|token| ("page_token", token)));
        let page = client.get(&format!("{JOBS}/list"), &page_query).await?;
        all.extend(items(&page, "jobs").iter().cloned());
        match page.get("next_page_token").and_then(Value::as_str) {
            Some(token) => page_token = Some(token.to_string()),
            None => return Ok(all),
        }
    }
}

/// The items of a list page (the API leaves the field out when there are none).
fn items<'a>(page: &'a Value, field: &str) -> &'a [Value] {
    page.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn integer(value: &Value, field: &str) -> i64 {
    value.get(field).and_then(Value::as_i64).unwrap_or_default()
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}

async fn get_run(client: &Client, run_id: i64) -> Result<Value> {
    client
        .get(
            &format!("{JOBS}/runs/get"),
            &[("run_id", run_id.to_string())],
        )
        .await
}

/// The repair a `runs/repair` must name as the latest it saw: the newest in the run's history.
fn latest_repair_id(run: &Value) -> Option<i64> {
    items(run, "repair_history")
        .iter()
        .rev()
        .find(|attempt| text(attempt, "type") == "REPAIR")
        .and_then(|attempt| attempt.get("id").and_then(Value::as_i64))
}

/// A run's or a task run's life cycle state.
fn life_cycle(run: &Value) -> Result<LifeCycle> {
    let state = text(&run["state"], "life_cycle_state");
    LifeCycle::parse(state)
        .with_context(|| format!("the server answered an unknown state '{state}'"))
}

/// How a run or a task run ended; None while it has not.
fn result_state(run: &Value) -> Option<ResultState> {
    ResultState::parse(text(&run["state"], "result_state"))
}

/// Follows a run to its end, prints how its tasks ended, and fails unless the run succeeded.
async fn follow_and_summarize(client: &Client, run_id: i64) -> Result<()> {
    let ended = follow_run(client, run_id).await?;
    print_summary(&ended);
    let result = result_state(&ended);
    if !matches!(
        result,
        Some(ResultState::Success | ResultState::SuccessWithFailures)
    ) {
        bail!(
            "run {run_id} ended {}",
            result.map_or("without a result", ResultState::as_str)
        );
    }
    Ok(())
}

/// How often a followed run or log is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Follows run `run_id` until it ends, as `runs/get` shows it: a line per task that changes on
/// a terminal, a line per change of state otherwise. Returns the ended run.
pub(crate) async fn follow_run(client: &Client, run_id: i64) -> Result<Value> {
    let live = std::io::stdout().is_terminal();
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}")?;
    let mut shown: Vec<(String, ProgressBar, String)> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let run = get_run(client, run_id).await?;
        for task in items(&run, "tasks") {
            let key = text(task, "task_key");
            let status = task_status(task)?;
            let index = match shown.iter().position(|(shown_key, _, _)| shown_key == key) {
                Some(index) => index,
                None => {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(key.to_string());
                    shown.push((key.to_string(), bar, String::new()));
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
            if live && life_cycle(task)?.is_terminal() {
                bar.finish();
            }
        }
        if life_cycle(&run)?.is_terminal() {
            for (_, bar, _) in &shown {
                bar.finish();
            }
            return Ok(run);
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// Seconds from milliseconds, as the lines show them.
fn seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// A task's state as a line shows it: `RUNNING 3.2s`, `SUCCESS 1.0s`, `EXCLUDED`, with its
/// retry and, for a for_each task, how many iterations ended.
fn task_status(task: &Value) -> Result<String> {
    let attempt = match integer(task, "attempt_number") {
        0 => String::new(),
        retry => format!(" (retry {retry})"),
    };
    let ran = seconds(integer(task, "run_duration"));
    let (start, end) = (integer(task, "start_time"), integer(task, "end_time"));
    let mut status = match (life_cycle(task)?, result_state(task)) {
        (LifeCycle::Running, _) => format!("RUNNING {ran:.1}s{attempt}"),
        (_, Some(result)) if start > 0 && end > start => {
            format!("{} {ran:.1}s{attempt}", result.as_str())
        }
        (_, Some(result)) => format!("{}{attempt}", result.as_str()),
        (life_cycle, None) => format!("{}{attempt}", life_cycle.as_str()),
    };
    let stats = &task["for_each_task"]["stats"]["task_run_stats"];
    let total = integer(stats, "total_iterations");
    if total > 0 {
        let done = integer(stats, "completed_iterations");
        status.push_str(&format!(" ({done}/{total} iterations)"));
    }
    Ok(status)
}

/// A task's duration, `-` when it did not run.
fn task_duration(task: &Value) -> String {
    let (start, end) = (integer(task, "start_time"), integer(task, "end_time"));
    if start > 0 && end > start {
        format!("{:.1}s", seconds(end - start))
    } else {
        "-".to_string()
    }
}

fn print_summary(run: &Value) {
    let tasks = items(run, "tasks");
    println!();
    println!(
        "{:<12} {:<24} {:<8} {:<22} DURATION",
        "TASK RUN", "TASK", "ATTEMPT", "RESULT"
    );
    for task in tasks {
        println!(
            "{:<12} {:<24} {:<8} {:<22} {}",
            integer(task, "run_id"),
            text(task, "task_key"),
            integer(task, "attempt_number"),
            result_state(task).map_or("-", ResultState::as_str),
            task_duration(task),
        );
    }
    let message = text(&run["state"], "state_message");
    println!(
        "\nrun {} {} in {:.1}s{}",
        integer(run, "run_id"),
        result_state(run).map_or("-", ResultState::as_str),
        seconds(integer(run, "run_duration")),
        if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        }
    );
    for task in tasks {
        if matches!(
            result_state(task),
            Some(ResultState::Failed | ResultState::TimedOut)
        ) {
            println!(
                "  logs of {}: tarn jobs logs {}",
                text(task, "task_key"),
                integer(task, "run_id")
            );
        }
    }
}

fn print_run_line(run: &Value) {
    let ran = integer(run, "run_duration");
    let duration = if ran > 0 {
        format!("{:.1}s", seconds(ran))
    } else {
        "-".to_string()
    };
    println!(
        "{:<10} {:<8} {:<28} {:<12} {:<22} {:<10} {:<19} {duration}",
        integer(run, "run_id"),
        run.get("job_id")
            .and_then(Value::as_i64)
            .map_or("-".to_string(), |id| id.to_string()),
        text(run, "run_name"),
        text(&run["state"], "life_cycle_state"),
        result_state(run).map_or("-", ResultState::as_str),
        text(run, "trigger"),
        time(integer(run, "start_time")),
    );
}

/// Prints a task run's log as `runs/get-output` returns it; when following, what it writes
/// next until it ends.
async fn print_log(client: &Client, run_id: i64, follow: bool) -> Result<()> {
    let mut out = std::io::stdout();
    let mut printed = String::new();
    let mut first = true;
    loop {
        let output = client
            .get(
                &format!("{JOBS}/runs/get-output"),
                &[("run_id", run_id.to_string())],
            )
            .await?;
        // The server reads the task's state before its log: all it wrote before it ended is in
        // the log then.
        let ended = life_cycle(&output["metadata"])?.is_terminal();
        let logs = text(&output, "logs");
        if first && output["logs_truncated"].as_bool() == Some(true) {
            eprintln!("(the log's beginning is left out: the server returns its end)");
        }
        first = false;
        out.write_all(unprinted(&printed, logs).as_bytes())?;
        out.flush()?;
        if !follow || ended {
            return Ok(());
        }
        printed = logs.to_string();
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// How much of the end of what was printed marks where a longer log continues.
const LOG_ANCHOR: usize = 64 * 1024;

/// What of `log` (the end of a task's log, as the server returns it) follows what was already
/// printed, the log's earlier end.
fn unprinted<'a>(printed: &str, log: &'a str) -> &'a str {
    if let Some(rest) = log.strip_prefix(printed) {
        return rest;
    }
    // The log outgrew what the server returns, so its start moved: continue after the last
    // place the end of what was printed appears.
    let mut from = printed.len().saturating_sub(LOG_ANCHOR);
    while !printed.is_char_boundary(from) {
        from += 1;
    }
    let anchor = &printed[from..];
    match log.rfind(anchor) {
        Some(at) if !anchor.is_empty() => &log[at + anchor.len()..],
        _ => log,
    }
}

fn print_job_line(job: &Value) {
    let settings = &job["settings"];
    let tasks = items(settings, "tasks").len();
    let schedule = settings.get("schedule").map_or("-".to_string(), |s| {
        let cron = s
            .get("quartz_cron_expression")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let paused = text(s, "pause_status") == "PAUSED";
        format!("{cron}{}", if paused { " (paused)" } else { "" })
    });
    println!(
        "{:<10} {:<32} {:>5}  {:<28} {:<16} {}",
        integer(job, "job_id"),
        name_in(settings),
        tasks,
        schedule,
        text(job, "run_as_user_name"),
        time(integer(job, "created_time"))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_followed_log_prints_only_what_is_new() {
        assert_eq!(unprinted("", "a\nb\n"), "a\nb\n");
        assert_eq!(unprinted("a\n", "a\nb\n"), "b\n");
        assert_eq!(unprinted("a\nb\n", "a\nb\n"), "");
        // The server's window slid past the log's start: what follows the printed end is new.
        let printed: String = (0..20_000).map(|line| format!("{line}\n")).collect();
        let slid = format!("{}new\n", &printed[5_000..]);
        assert_eq!(unprinted(&printed, &slid), "new\n");
    }

    #[test]
    fn task_lines_show_state_retry_and_iterations() {
        let task = json!({
            "task_key": "t",
            "attempt_number": 1,
            "run_duration": 1500,
            "start_time": 1000,
            "end_time": 2500,
            "state": { "life_cycle_state": "TERMINATED", "result_state": "SUCCESS" },
            "for_each_task": { "stats": { "task_run_stats": {
                "total_iterations": 3, "completed_iterations": 2 } } },
        });
        assert_eq!(
            task_status(&task).expect("a known state"),
            "SUCCESS 1.5s (retry 1) (2/3 iterations)"
        );
        let blocked = json!({ "state": { "life_cycle_state": "BLOCKED" } });
        assert_eq!(task_status(&blocked).expect("a known state"), "BLOCKED");
        assert!(task_status(&json!({ "state": {} })).is_err());
    }
}
