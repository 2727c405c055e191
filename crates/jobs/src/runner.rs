//! The runner: reads every active run, lets `plan` decide its next steps, and writes them.
//! It is woken when a run is made, cancelled or a task ends, and looks again each second and
//! when a retry or a timeout falls due. Executors run the tasks it makes ready.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tarn_core::Result;
use tarn_core::events::{Change, JobRunChange};
use tarn_core::jobs::{JobRun, LifeCycle, ResultState, RunState};
use tarn_core::store::MetaStore;
use tokio::sync::watch;

use crate::plan;
use crate::runs::Wakeup;
use crate::settings::JobSettings;
use crate::triggers::Triggers;

/// The longest the runner sleeps without being woken: how late a lost executor's lease or a
/// queue left behind by another server is noticed, at worst.
const TICK: Duration = Duration::from_secs(1);
/// The lease that makes one runner decide for all runs, whichever servers (or `tarn jobs run`)
/// share the store, and how long it holds unrenewed: how soon another takes over from one
/// that died.
pub const RUNNER_LEASE: &str = "job-runner";
const LEASE_TERM: i64 = 10_000;

/// What one pass found.
#[derive(Debug, Default)]
pub struct Pass {
    /// Task runs made ready for executors.
    pub ready: usize,
    /// The earliest time something falls due.
    pub wake_at: Option<i64>,
    /// A decision met a change made meanwhile (an executor's claim or end): look again now.
    pub again: bool,
}

/// Advances every active run once at `now`.
pub async fn pass(store: &dyn MetaStore, now: i64) -> Result<Pass> {
    let mut runs = store.active_job_runs().await?;
    let mut holding: HashMap<i64, usize> = HashMap::new();
    for run in &runs {
        if let (Some(job_id), LifeCycle::Running | LifeCycle::Terminating) =
            (run.job_id, run.state.life_cycle)
        {
            *holding.entry(job_id).or_default() += 1;
        }
    }
    let mut outcome = Pass::default();
    for run in &mut runs {
        let before = run.state.life_cycle;
        let held_before = matches!(before, LifeCycle::Running | LifeCycle::Terminating);
        let settings = match JobSettings::read(&run.settings) {
            Ok(settings) => settings,
            Err(err) => {
                // Settings stored before a check that now refuses them: the run cannot go on.
                run.state =
                    RunState::ended(LifeCycle::InternalError, ResultState::Failed, err.message);
                run.end_time = now;
                store
                    .update_job_run(run, notification(run, LifeCycle::Running).as_ref())
                    .await?;
                continue;
            }
        };
        let others = run
            .job_id
            .and_then(|job_id| holding.get(&job_id).copied())
            .unwrap_or(0)
            .saturating_sub(usize::from(held_before));
        let decisions = plan::advance(run, &settings, others, now);
        let holds_now = matches!(
            run.state.life_cycle,
            LifeCycle::Running | LifeCycle::Terminating
        );
        if let Some(job_id) = run.job_id
            && held_before != holds_now
        {
            let count = holding.entry(job_id).or_default();
            *count = if holds_now {
                *count + 1
            } else {
                count.saturating_sub(1)
            };
        }
        outcome.again |= !write(store, run, before, &decisions).await?;
        outcome.ready += decisions.ready;
        if let Some(at) = decisions.wake_at {
            outcome.wake_at = Some(outcome.wake_at.map_or(at, |earliest| earliest.min(at)));
        }
    }
    Ok(outcome)
}

/// Writes a run's decisions; false when one met a change made meanwhile.
async fn write(
    store: &dyn MetaStore,
    run: &JobRun,
    before: LifeCycle,
    decisions: &plan::Decisions,
) -> Result<bool> {
    let mut all_written = true;
    for index in &decisions.added {
        store.insert_task_run(&run.tasks[*index]).await?;
    }
    // One transaction for the pass's decisions on this run: a fan-out readies its tasks at once.
    let changes: Vec<_> = decisions
        .changed
        .iter()
        .map(|(index, was)| (&run.tasks[*index], *was))
        .collect();
    if !changes.is_empty() {
        let written = store.update_task_runs(&changes, None).await?;
        all_written &= written.iter().all(|written| *written);
    }
    if decisions.stop_running {
        store
            .request_job_run_cancel(&run.workspace, Some(run.run_id), None)
            .await?;
    }
    // A run ends only once its tasks' ends are written.
    if decisions.run_changed && (all_written || !run.state.life_cycle.is_terminal()) {
        store
            .update_job_run(run, notification(run, before).as_ref())
            .await?;
    }
    Ok(all_written)
}

/// The event a run's change makes, if it started or ended: what webhooks subscribed to
/// `job_run.*` and those the job's `webhook_notifications` name are told. The job's
/// `email_notifications` go to the server's log (tarn sends no mail).
fn notification(run: &JobRun, before: LifeCycle) -> Option<Change> {
    let now = run.state.life_cycle;
    let (kind, hook) = if now.is_terminal() && !before.is_terminal() {
        match run.state.result {
            Some(ResultState::Success | ResultState::SuccessWithFailures) => {
                ("succeeded", "on_success")
            }
            _ => ("failed", "on_failure"),
        }
    } else if now == LifeCycle::Running && matches!(before, LifeCycle::Pending | LifeCycle::Queued)
    {
        ("started", "on_start")
    } else {
        return None;
    };
    let listed = |field: &str, key: &str| -> Vec<String> {
        run.settings
            .pointer(&format!("/{field}/{hook}"))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| match item {
                        Value::String(text) => Some(text.clone()),
                        other => other.get(key).and_then(Value::as_str).map(str::to_string),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let emails = listed("email_notifications", "");
    if !emails.is_empty() {
        tracing::info!(
            run_id = run.run_id,
            job_id = run.job_id,
            recipients = %emails.join(", "),
            "job run {kind}: e-mail notification (tarn sends no mail; logged instead)"
        );
    }
    let change = JobRunChange {
        job_id: run.job_id,
        run_id: run.run_id,
        run_name: run.run_name.clone(),
        trigger: run.trigger.clone(),
        run_as: run.run_as_user_name.clone(),
        result_state: run.state.result.map(|result| result.as_str().to_string()),
        state_message: run.state.message.clone(),
        notify: listed("webhook_notifications", "id"),
    };
    Some(match kind {
        "started" => Change::JobRunStarted(change),
        "succeeded" => Change::JobRunSucceeded(change),
        _ => Change::JobRunFailed(change),
    })
}

/// Runs passes until `stopped`: when woken, when something falls due, and every tick, while
/// `holder` holds the runner's lease; each pass first lets schedules and triggers start the
/// runs that are due.
pub async fn run(
    store: Arc<dyn MetaStore>,
    holder: String,
    wakeup: Wakeup,
    ready: Wakeup,
    mut stopped: watch::Receiver<bool>,
) {
    let mut held_until = 0;
    let mut triggers = Triggers::default();
    loop {
        let now = tarn_core::ids::now_millis();
        let mut sleep = TICK;
        if now + LEASE_TERM / 2 >= held_until {
            held_until = match store
                .hold_lease(RUNNER_LEASE, &holder, now, now + LEASE_TERM)
                .await
            {
                Ok(true) => now + LEASE_TERM,
                Ok(false) => 0,
                Err(err) => {
                    tracing::warn!(error = %err.report(), "cannot renew the job runner's lease");
                    0
                }
            };
        }
        let passed = if held_until > now {
            if let Err(err) = triggers.tick(store.as_ref(), &wakeup, now).await {
                tracing::warn!(error = %err.report(), "cannot fire job triggers");
                // Read everything again next time rather than go on from a partial view.
                triggers = Triggers::default();
            }
            pass(store.as_ref(), now).await
        } else {
            // Another process fires the triggers meanwhile: start from the store when back.
            triggers = Triggers::default();
            Ok(Pass::default())
        };
        match passed {
            Ok(outcome) => {
                if outcome.ready > 0 {
                    ready.wake();
                }
                if outcome.again {
                    sleep = Duration::ZERO;
                } else if let Some(at) = outcome.wake_at {
                    let due = Duration::from_millis(at.saturating_sub(now).max(0) as u64);
                    sleep = sleep.min(due);
                }
            }
            Err(err) => tracing::warn!(error = %err.report(), "the job runner's pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wakeup.woken() => {}
            _ = stopped.changed() => break,
        }
    }
    // Let another runner take over at once rather than when the lease lapses.
    if held_until > 0 {
        let now = tarn_core::ids::now_millis();
        if let Err(err) = store.hold_lease(RUNNER_LEASE, &holder, now, 0).await {
            tracing::warn!(error = %err.report(), "cannot hand back the job runner's lease");
        }
    }
}
