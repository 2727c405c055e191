//! `tarn jobs ...`: jobs from the command line, on the metadata store directly (like the other
//! admin commands), through the same use cases and checks as the Jobs API.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::Value;
use tarn_core::caller::Caller;
use tarn_core::jobs::Job;
use tarn_core::store::MetaStore;
use tarn_jobs::manage;

use crate::local::cli_caller;
use crate::models::time;

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
}

pub async fn run(store: &dyn MetaStore, command: JobsCommand) -> Result<()> {
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
    }
    Ok(())
}

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
