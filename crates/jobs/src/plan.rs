//! What the runner decides for one run at one moment, as a pure function of the run as read,
//! its settings, how many other runs of its job hold a slot, and the time: start or queue or
//! skip the run; make tasks ready, skip them, evaluate conditions, schedule retries, give up on
//! a task whose executor stopped answering; run a for_each task's iterations, `concurrency` at
//! a time; stop the run on cancel or timeout; end it with its result. The runner writes what
//! changed; the tests drive it with an injected clock.

use std::collections::HashMap;

use serde_json::Value;
use tarn_core::jobs::{JobRun, LifeCycle, ResultState, RunState, TaskRun};

use crate::dag::{self, Decision, Finished, RunIf};
use crate::references;
use crate::settings::{JobSettings, TaskSettings};

/// What changed in a run, for the runner to write.
#[derive(Debug, Default, PartialEq)]
pub struct Decisions {
    /// Stored task runs changed in place (indexes into `run.tasks`), each with the life cycle
    /// it had when read: the write happens only if it still has it.
    pub changed: Vec<(usize, LifeCycle)>,
    /// New attempts (retries), pushed to `run.tasks` with id 0, to insert.
    pub added: Vec<usize>,
    pub run_changed: bool,
    /// The run's running tasks are to be stopped (a job timeout): the executors are told
    /// through the run's cancel request.
    pub stop_running: bool,
    /// Task runs made ready for an executor.
    pub ready: usize,
    /// The earliest time something falls due (a retry's wait, the job's timeout).
    pub wake_at: Option<i64>,
}

impl Decisions {
    fn wake(&mut self, at: i64) {
        self.wake_at = Some(self.wake_at.map_or(at, |earliest| earliest.min(at)));
    }
}

/// Whether a run of a job waits for a slot when the job is at `max_concurrent_runs`
/// (`queue.enabled`; on unless the job turns it off, as in Jobs API 2.2).
fn queues(settings: &JobSettings) -> bool {
    settings.queue.as_ref().is_none_or(|queue| queue.enabled)
}

/// Advances `run` at `now`. `running_of_job` counts the job's other runs that hold a slot.
pub fn advance(
    run: &mut JobRun,
    settings: &JobSettings,
    running_of_job: usize,
    now: i64,
) -> Decisions {
    let mut decisions = Decisions::default();
    match run.state.life_cycle {
        LifeCycle::Queued | LifeCycle::Pending => {
            if !start(run, settings, running_of_job, now, &mut decisions) {
                return decisions;
            }
        }
        LifeCycle::Running | LifeCycle::Terminating => {}
        _ => return decisions,
    }
    let stop = stop_reason(run, settings, now, &mut decisions);
    let tasks: HashMap<&str, &TaskSettings> = settings
        .tasks
        .iter()
        .map(|task| (task.key(), task))
        .collect();
    let graph = Graph::of(run, &tasks);
    // Decisions cascade (a skip skips what depends on it): go round until nothing moves.
    loop {
        let mut moved = false;
        for key in &graph.keys {
            let Some(task) = tasks.get(key.as_str()) else {
                continue;
            };
            moved |= step(run, &graph, &tasks, key, task, stop, now, &mut decisions);
        }
        if !moved {
            break;
        }
    }
    finish(run, &graph, &tasks, stop, now, &mut decisions);
    decisions
}

/// Starts a queued or pending run when a slot is free; otherwise queues it or, when the job
/// does not queue, skips it. Whether it started.
fn start(
    run: &mut JobRun,
    settings: &JobSettings,
    running_of_job: usize,
    now: i64,
    decisions: &mut Decisions,
) -> bool {
    if run.cancel_requested {
        end_unstarted(
            run,
            ResultState::Canceled,
            "The run was cancelled before it started.",
        );
        mark_all_changed(run, decisions);
        decisions.run_changed = true;
        return false;
    }
    let limit = settings.max_concurrent_runs.unwrap_or(1).max(1) as usize;
    if run.job_id.is_none() || running_of_job < limit {
        run.state = RunState::new(LifeCycle::Running);
        // A repaired run keeps its first start; its repair's start is in its history.
        if run.start_time == 0 {
            run.start_time = now;
        }
        decisions.run_changed = true;
        return true;
    }
    if queues(settings) {
        if run.state.life_cycle != LifeCycle::Queued {
            run.state = RunState::new(LifeCycle::Queued);
            run.state.message = format!(
                "Queued: the job already has {running_of_job} active run(s), its limit of \
                 concurrent runs"
            );
            decisions.run_changed = true;
        }
        return false;
    }
    end_unstarted(
        run,
        ResultState::MaximumConcurrentRunsReached,
        &format!(
            "Skipping this run because the limit of {limit} maximum concurrent runs has been \
             reached."
        ),
    );
    mark_all_changed(run, decisions);
    decisions.run_changed = true;
    false
}

fn end_unstarted(run: &mut JobRun, result: ResultState, message: &str) {
    let life_cycle = if result == ResultState::Canceled {
        LifeCycle::Terminated
    } else {
        LifeCycle::Skipped
    };
    run.state = RunState::ended(life_cycle, result, message);
    for task in &mut run.tasks {
        task.state = RunState::ended(LifeCycle::Skipped, result, message);
    }
}

fn mark_all_changed(run: &JobRun, decisions: &mut Decisions) {
    // Tasks of a run not yet started are all blocked.
    decisions.changed = (0..run.tasks.len())
        .map(|index| (index, LifeCycle::Blocked))
        .collect();
}

/// Why the run is to stop, if it is: its timeout passed, or it was cancelled.
fn stop_reason(
    run: &mut JobRun,
    settings: &JobSettings,
    now: i64,
    decisions: &mut Decisions,
) -> Option<ResultState> {
    let timeout = settings.timeout_seconds.unwrap_or(0);
    if timeout > 0 {
        let deadline = run
            .attempt_start()
            .saturating_add(timeout.saturating_mul(1000));
        if now >= deadline {
            return Some(ResultState::TimedOut);
        }
        decisions.wake(deadline);
    }
    run.cancel_requested.then_some(ResultState::Canceled)
}

/// The run's tasks and who depends on whom, as far as the run holds them (`only` leaves
/// some out; dependencies on those are ignored).
struct Graph {
    /// Task keys in the order the settings list them.
    keys: Vec<String>,
    /// Keys some task of the run depends on.
    depended_on: std::collections::HashSet<String>,
}

impl Graph {
    fn of(run: &JobRun, tasks: &HashMap<&str, &TaskSettings>) -> Self {
        let mut keys: Vec<String> = Vec::new();
        for task in &run.tasks {
            if !keys.contains(&task.task_key) {
                keys.push(task.task_key.clone());
            }
        }
        let depended_on = keys
            .iter()
            .filter_map(|key| tasks.get(key.as_str()))
            .flat_map(|task| task.depends_on.iter())
            .map(|dependency| dependency.task_key.clone())
            .filter(|key| keys.contains(key))
            .collect();
        Self { keys, depended_on }
    }

    fn is_leaf(&self, key: &str) -> bool {
        !self.depended_on.contains(key)
    }
}

/// The index of the latest attempt of `key` in `run.tasks`: its last (retries and repairs
/// are added after what they follow); a for_each task's iterations are not attempts of it.
fn latest(run: &JobRun, key: &str) -> Option<usize> {
    run.tasks
        .iter()
        .rposition(|task| task.task_key == key && task.iteration.is_none())
}

/// Whether an ended attempt gets another: a failure (or a timeout, with `retry_on_timeout`)
/// while retries are left (`max_retries` -1 retries for ever).
fn retries(task: &TaskRun, settings: &TaskSettings) -> bool {
    let retried = match (task.state.life_cycle, task.state.result) {
        (LifeCycle::Terminated | LifeCycle::InternalError, Some(ResultState::Failed)) => true,
        (LifeCycle::Terminated, Some(ResultState::TimedOut)) => {
            settings.retry_on_timeout.unwrap_or(false)
        }
        _ => false,
    };
    let max_retries = settings.max_retries.unwrap_or(0);
    retried && (max_retries < 0 || task.attempt_number < max_retries)
}

/// One task's next step, if it has one; whether it moved.
#[allow(clippy::too_many_arguments)]
fn step(
    run: &mut JobRun,
    graph: &Graph,
    tasks: &HashMap<&str, &TaskSettings>,
    key: &str,
    settings: &TaskSettings,
    stop: Option<ResultState>,
    now: i64,
    decisions: &mut Decisions,
) -> bool {
    let Some(index) = latest(run, key) else {
        return false;
    };
    let was = run.tasks[index].state.life_cycle;
    let mut outcome = None;
    let next = match was {
        LifeCycle::Blocked | LifeCycle::Pending | LifeCycle::WaitingForRetry if stop.is_some() => {
            let reason = stop.unwrap_or(ResultState::Canceled);
            Some(RunState::ended(
                LifeCycle::Skipped,
                reason,
                "The run was stopped before this task ran.",
            ))
        }
        LifeCycle::Blocked => unblock(run, graph, tasks, settings).map(|(state, evaluated)| {
            outcome = evaluated;
            state
        }),
        LifeCycle::WaitingForRetry => {
            let not_before = run.tasks[index].not_before;
            if now >= not_before {
                Some(RunState::new(LifeCycle::Pending))
            } else {
                decisions.wake(not_before);
                None
            }
        }
        LifeCycle::Running if settings.for_each_task.is_some() => {
            return iterate(run, index, settings, stop, now, decisions);
        }
        LifeCycle::Running if run.tasks[index].lease_until < now => {
            Some(executor_gone(&run.tasks[index]))
        }
        LifeCycle::Terminated | LifeCycle::Skipped | LifeCycle::InternalError
            if stop.is_none() && retries(&run.tasks[index], settings) =>
        {
            retry(run, index, settings, decisions);
            return true;
        }
        _ => None,
    };
    let Some(mut next) = next else {
        return false;
    };
    if next.life_cycle == LifeCycle::Pending
        && let Some(for_each) = &settings.for_each_task
    {
        // No process of its own: it starts its iterations.
        if run.tasks[index].run_id == 0 {
            // Inserted first, so its iterations can name it.
            decisions.wake(now);
            return false;
        }
        next = expand(run, index, for_each, now, decisions);
    }
    if was == LifeCycle::Blocked && next.life_cycle == LifeCycle::Terminated {
        // A condition evaluated on the spot.
        run.tasks[index].start_time = now;
    }
    if outcome.is_some() {
        run.tasks[index].outcome = outcome;
    }
    apply(run, index, was, next, now, decisions);
    true
}

/// The end of a task run whose executor let its claim lapse: failed, and retried as its
/// settings say.
fn executor_gone(task: &TaskRun) -> RunState {
    RunState::ended(
        LifeCycle::InternalError,
        ResultState::Failed,
        format!(
            "The executor running this task ({}) stopped answering.",
            task.worker.as_deref().unwrap_or("unknown")
        ),
    )
}

/// Gives the task run at `index` its next state and notes the change for the runner.
fn apply(
    run: &mut JobRun,
    index: usize,
    was: LifeCycle,
    next: RunState,
    now: i64,
    decisions: &mut Decisions,
) {
    let task = &mut run.tasks[index];
    if next.life_cycle == LifeCycle::Pending {
        decisions.ready += 1;
    }
    if next.life_cycle == LifeCycle::Running && task.start_time == 0 {
        task.start_time = now;
    }
    if next.life_cycle.is_terminal() && task.end_time == 0 {
        task.end_time = now;
        if task.start_time == 0 {
            task.start_time = now;
        }
    }
    task.state = next;
    if task.run_id == 0 {
        // An attempt added this round: inserted as it now is.
    } else if !decisions
        .changed
        .iter()
        .any(|(changed, _)| *changed == index)
    {
        decisions.changed.push((index, was));
    }
}

/// Adds the next attempt of the ended task run at `index` (an iteration stays the same
/// iteration), waiting out `min_retry_interval_millis`.
fn retry(run: &mut JobRun, index: usize, settings: &TaskSettings, decisions: &mut Decisions) {
    let ended = &run.tasks[index];
    let mut retry = TaskRun::blocked(&ended.task_key, ended.attempt_number + 1);
    retry.job_run_id = run.run_id;
    retry.iteration = ended.iteration.clone();
    retry.state = RunState::new(LifeCycle::WaitingForRetry);
    retry.not_before = ended
        .end_time
        .max(ended.start_time)
        .saturating_add(settings.min_retry_interval_millis.unwrap_or(0).max(0));
    run.tasks.push(retry);
    decisions.added.push(run.tasks.len() - 1);
}

/// A for_each task run's start: its inputs resolved (a JSON array, or a reference to one),
/// one iteration added per input, and it RUNNING until they end; ended at once when the inputs
/// are not an array or are empty.
fn expand(
    run: &mut JobRun,
    index: usize,
    for_each: &crate::settings::ForEachTask,
    now: i64,
    decisions: &mut Decisions,
) -> RunState {
    let parent = run.tasks[index].clone();
    let text = references::resolve(&for_each.inputs, &|path: &[&str]| {
        lookup(run, Some(&parent), path)
    });
    let inputs = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(inputs)) => inputs,
        _ => {
            return RunState::ended(
                LifeCycle::Terminated,
                ResultState::Failed,
                format!("for_each_task.inputs must be a JSON array, not {text:?}"),
            );
        }
    };
    if inputs.is_empty() {
        return RunState::ended(LifeCycle::Terminated, ResultState::Success, "");
    }
    for (position, input) in inputs.iter().enumerate() {
        run.tasks.push(TaskRun::iteration_of(
            &parent,
            position as i64,
            text_of(input),
        ));
        decisions.added.push(run.tasks.len() - 1);
    }
    decisions.wake(now);
    RunState::new(LifeCycle::Running)
}

/// A running for_each task: readies waiting iterations up to its `concurrency`, retries or
/// gives up on them as the nested task's settings say, and ends once they all have: SUCCESS
/// when every one succeeded. Whether anything moved.
fn iterate(
    run: &mut JobRun,
    parent: usize,
    settings: &TaskSettings,
    stop: Option<ResultState>,
    now: i64,
    decisions: &mut Decisions,
) -> bool {
    let Some(for_each) = &settings.for_each_task else {
        return false;
    };
    let nested = &for_each.task;
    let concurrency = for_each.concurrency.unwrap_or(1).max(1) as usize;
    let parent_id = run.tasks[parent].run_id;
    let latest: Vec<usize> = {
        let mut by_input = std::collections::BTreeMap::new();
        for (index, task) in run.tasks.iter().enumerate() {
            if let Some(iteration) = &task.iteration
                && iteration.parent_run_id == parent_id
            {
                by_input.insert(iteration.index, index);
            }
        }
        by_input.into_values().collect()
    };
    let mut active = latest
        .iter()
        .filter(|index| {
            matches!(
                run.tasks[**index].state.life_cycle,
                LifeCycle::Pending | LifeCycle::Running
            )
        })
        .count();
    let mut moved = false;
    let mut settled = true;
    for &index in &latest {
        let task = &run.tasks[index];
        let was = task.state.life_cycle;
        let next = match was {
            LifeCycle::Blocked | LifeCycle::Pending | LifeCycle::WaitingForRetry
                if stop.is_some() =>
            {
                Some(RunState::ended(
                    LifeCycle::Skipped,
                    stop.unwrap_or(ResultState::Canceled),
                    "The run was stopped before this iteration ran.",
                ))
            }
            LifeCycle::Blocked if active < concurrency => Some(RunState::new(LifeCycle::Pending)),
            LifeCycle::WaitingForRetry if task.not_before > now => {
                decisions.wake(task.not_before);
                None
            }
            LifeCycle::WaitingForRetry if active < concurrency => {
                Some(RunState::new(LifeCycle::Pending))
            }
            LifeCycle::Running if task.lease_until < now => Some(executor_gone(task)),
            LifeCycle::Terminated | LifeCycle::Skipped | LifeCycle::InternalError
                if stop.is_none() && retries(task, nested) =>
            {
                retry(run, index, nested, decisions);
                moved = true;
                settled = false;
                continue;
            }
            _ => None,
        };
        if let Some(next) = next {
            if next.life_cycle == LifeCycle::Pending {
                active += 1;
            }
            apply(run, index, was, next, now, decisions);
            moved = true;
        }
        settled &= run.tasks[index].state.life_cycle.is_terminal();
    }
    if !settled {
        return moved;
    }
    let failed = latest
        .iter()
        .filter(|index| run.tasks[**index].state.result != Some(ResultState::Success))
        .count();
    let next = match (stop, failed) {
        (Some(reason), _) => RunState::ended(LifeCycle::Terminated, reason, "The run was stopped."),
        (None, 0) => RunState::ended(LifeCycle::Terminated, ResultState::Success, ""),
        (None, failed) => RunState::ended(
            LifeCycle::Terminated,
            ResultState::Failed,
            format!("{failed} of {} iterations failed.", latest.len()),
        ),
    };
    apply(run, parent, LifeCycle::Running, next, now, decisions);
    true
}

/// A blocked task's fate once every dependency has settled: skipped (disabled, or its
/// `run_if` does not hold), evaluated on the spot (a condition, with its outcome), or ready.
fn unblock(
    run: &JobRun,
    graph: &Graph,
    tasks: &HashMap<&str, &TaskSettings>,
    settings: &TaskSettings,
) -> Option<(RunState, Option<String>)> {
    if settings.disabled.unwrap_or(false) {
        let state = RunState::ended(
            LifeCycle::Skipped,
            ResultState::Disabled,
            "This task is disabled.",
        );
        return Some((state, None));
    }
    let mut finished = Vec::new();
    for dependency in &settings.depends_on {
        if !graph.keys.contains(&dependency.task_key) {
            continue;
        }
        let upstream = &run.tasks[latest(run, &dependency.task_key)?];
        let settled = upstream.state.life_cycle.is_terminal()
            && tasks
                .get(dependency.task_key.as_str())
                .is_none_or(|upstream_settings| !retries(upstream, upstream_settings));
        if !settled {
            return None;
        }
        finished.push(Finished {
            state: upstream.state.result.unwrap_or(ResultState::Failed),
            outcome: upstream.outcome.as_deref().and_then(parse_outcome),
            branch: dependency.outcome.as_deref().and_then(parse_outcome),
        });
    }
    let run_if = RunIf::parse(settings.run_if.as_deref()).unwrap_or(RunIf::AllSuccess);
    Some(match dag::decide(run_if, &finished) {
        Decision::Skip(state) => {
            let why = match state {
                ResultState::UpstreamFailed => "An upstream task failed.",
                ResultState::UpstreamCanceled => "An upstream task was cancelled.",
                _ => "Excluded: its condition or run_if did not hold.",
            };
            (RunState::ended(LifeCycle::Skipped, state, why), None)
        }
        Decision::Run => match &settings.condition_task {
            Some(condition) => evaluate(run, condition),
            None => (RunState::new(LifeCycle::Pending), None),
        },
    })
}

fn parse_outcome(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// An If/else condition over the run's values: SUCCESS with its outcome, or FAILED when an
/// operand is not what its operator compares.
fn evaluate(
    run: &JobRun,
    condition: &crate::settings::ConditionTask,
) -> (RunState, Option<String>) {
    let lookup = |path: &[&str]| lookup(run, None, path);
    let left = references::resolve(&condition.left, &lookup);
    let right = references::resolve(&condition.right, &lookup);
    match dag::condition(&condition.op, &left, &right) {
        Ok(outcome) => (
            RunState::ended(LifeCycle::Terminated, ResultState::Success, ""),
            Some(outcome.to_string()),
        ),
        Err(err) => (
            RunState::ended(LifeCycle::Terminated, ResultState::Failed, err.message),
            None,
        ),
    }
}

/// Ends the run once every task has settled; otherwise marks it stopping when it is to stop.
fn finish(
    run: &mut JobRun,
    graph: &Graph,
    tasks: &HashMap<&str, &TaskSettings>,
    stop: Option<ResultState>,
    now: i64,
    decisions: &mut Decisions,
) {
    let latest: Vec<&TaskRun> = graph
        .keys
        .iter()
        .filter_map(|key| latest(run, key).map(|index| &run.tasks[index]))
        .collect();
    let settled = latest.iter().all(|task| {
        task.state.life_cycle.is_terminal()
            && (stop.is_some()
                || tasks
                    .get(task.task_key.as_str())
                    .is_none_or(|settings| !retries(task, settings)))
    });
    if !settled {
        if stop.is_some() && run.state.life_cycle == LifeCycle::Running {
            run.state = RunState::new(LifeCycle::Terminating);
            decisions.run_changed = true;
        }
        decisions.stop_running = stop == Some(ResultState::TimedOut) && !run.cancel_requested;
        return;
    }
    let result = stop.unwrap_or_else(|| {
        let ends: Vec<(ResultState, bool)> = latest
            .iter()
            .map(|task| {
                (
                    task.state.result.unwrap_or(ResultState::Failed),
                    graph.is_leaf(&task.task_key),
                )
            })
            .collect();
        dag::run_result(&ends)
    });
    let message = match result {
        ResultState::Success => String::new(),
        ResultState::Canceled => "The run was cancelled.".to_string(),
        ResultState::TimedOut => "The run timed out.".to_string(),
        _ => latest
            .iter()
            .find(|task| {
                matches!(
                    task.state.result,
                    Some(ResultState::Failed | ResultState::TimedOut)
                )
            })
            .map(|task| {
                let why = task
                    .output
                    .error
                    .clone()
                    .unwrap_or_else(|| task.state.message.clone());
                format!("Task {} failed with message: {why}", task.task_key)
            })
            .unwrap_or_default(),
    };
    run.state = RunState::ended(LifeCycle::Terminated, result, message);
    run.end_time = now;
    decisions.run_changed = true;
}

/// The value of a dynamic reference in `run`, for the task `task` when one is running;
/// `None` leaves the reference as written.
pub fn lookup(run: &JobRun, task: Option<&TaskRun>, path: &[&str]) -> Option<String> {
    let other = |key: &str| latest(run, key).map(|index| &run.tasks[index]);
    let job_id = || run.job_id.map(|id| id.to_string());
    match path {
        ["job", "id"] | ["job_id"] => job_id(),
        ["job", "run_id"] | ["run_id"] => Some(run.run_id.to_string()),
        ["job", "name"] => Some(run.run_name.clone()),
        ["job", "repair_count"] => Some("0".to_string()),
        ["job", "parameters", name] => run.job_parameters.get(*name).map(text_of),
        ["job", "start_time", field] => references::time_field(run.start_time, field),
        ["start_date"] => references::time_field(run.start_time, "iso_date"),
        ["start_time"] => Some(run.start_time.to_string()),
        ["job", "trigger", "type"] => Some(run.trigger.to_lowercase()),
        ["job", "trigger", "time", field] => references::time_field(run.created_time, field),
        ["task", "name"] | ["task_key"] => task.map(|task| task.task_key.clone()),
        ["task", "run_id"] => task.map(|task| task.run_id.to_string()),
        ["task", "execution_count"] => task.map(|task| (task.attempt_number + 1).to_string()),
        ["task_retry_count"] => task.map(|task| task.attempt_number.to_string()),
        ["parent_run_id"] => Some(run.run_id.to_string()),
        ["input", fields @ ..] => {
            let input = &task?.iteration.as_ref()?.input;
            if fields.is_empty() {
                return Some(input.clone());
            }
            let mut value: Value = serde_json::from_str(input).ok()?;
            for field in fields {
                value = value.get(*field)?.clone();
            }
            Some(text_of(&value))
        }
        ["tasks", key, "values", name] => other(key)
            .and_then(|task| task.values.get(*name))
            .map(text_of),
        ["tasks", key, "result_state"] => other(key)
            .and_then(|task| task.state.result)
            .map(|state| state.as_str().to_lowercase()),
        ["tasks", key, "run_id"] => other(key).map(|task| task.run_id.to_string()),
        ["tasks", key, "execution_count"] => {
            other(key).map(|task| (task.attempt_number + 1).to_string())
        }
        ["tasks", key, "error_code"] => other(key)
            .and_then(|task| task.state.result)
            .filter(|state| *state != ResultState::Success)
            .map(|state| state.termination().0.to_string()),
        _ => None,
    }
}

/// A value as a reference puts it into text: strings as they are, anything else as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_000_000;

    /// A run of `settings` as run-now makes it: every task blocked.
    fn run_of(settings: Value) -> (JobRun, JobSettings) {
        let typed = JobSettings::read(&settings).expect("settings");
        let tasks = typed
            .tasks
            .iter()
            .enumerate()
            .map(|(index, task)| {
                let mut run = TaskRun::blocked(task.key(), 0);
                run.run_id = 100 + index as i64;
                run.job_run_id = 1;
                run
            })
            .collect();
        let run = JobRun {
            run_id: 1,
            workspace: "dev".into(),
            job_id: Some(7),
            run_name: "job".into(),
            run_type: "JOB_RUN".into(),
            trigger: "ONE_TIME".into(),
            creator_user_name: "alice".into(),
            run_as_user_name: "alice".into(),
            settings,
            job_parameters: json!({"threshold": "0.5"}),
            overriding_parameters: json!({}),
            state: RunState::new(LifeCycle::Pending),
            cancel_requested: false,
            created_time: T0,
            start_time: 0,
            end_time: 0,
            idempotency_token: None,
            repair_history: Vec::new(),
            tasks,
        };
        (run, typed)
    }

    fn state_of(run: &JobRun, key: &str) -> (LifeCycle, Option<ResultState>) {
        let task = &run.tasks[latest(run, key).expect("task")];
        (task.state.life_cycle, task.state.result)
    }

    /// What an executor does: claims a ready task and ends it so.
    fn ends(run: &mut JobRun, key: &str, result: ResultState, at: i64) {
        let index = latest(run, key).expect("task");
        let task = &mut run.tasks[index];
        assert_eq!(task.state.life_cycle, LifeCycle::Pending, "{key} was ready");
        task.start_time = at;
        task.end_time = at;
        task.state = RunState::ended(LifeCycle::Terminated, result, "");
    }

    fn python(key: &str, depends_on: &[&str]) -> Value {
        json!({
            "task_key": key,
            "depends_on": depends_on.iter().map(|k| json!({"task_key": k})).collect::<Vec<_>>(),
            "spark_python_task": {"python_file": format!("{key}.py")},
        })
    }

    use LifeCycle::*;
    use ResultState::*;

    #[test]
    fn a_diamond_runs_in_order_and_succeeds() {
        let (mut run, settings) = run_of(json!({"tasks": [
            python("a", &[]), python("b", &["a"]), python("c", &["a"]), python("d", &["b", "c"]),
        ]}));
        let first = advance(&mut run, &settings, 0, T0);
        assert!(first.run_changed);
        assert_eq!(run.state.life_cycle, Running);
        assert_eq!(run.start_time, T0);
        assert_eq!(first.ready, 1);
        assert_eq!(first.changed, vec![(0, Blocked)]);
        assert_eq!(state_of(&run, "b"), (Blocked, None));
        ends(&mut run, "a", Success, T0 + 10);
        assert_eq!(advance(&mut run, &settings, 0, T0 + 11).ready, 2);
        ends(&mut run, "b", Success, T0 + 20);
        assert_eq!(
            advance(&mut run, &settings, 0, T0 + 21).ready,
            0,
            "d waits for c"
        );
        ends(&mut run, "c", Success, T0 + 30);
        assert_eq!(advance(&mut run, &settings, 0, T0 + 31).ready, 1);
        ends(&mut run, "d", Success, T0 + 40);
        let last = advance(&mut run, &settings, 0, T0 + 41);
        assert!(last.run_changed);
        assert_eq!(run.state.life_cycle, Terminated);
        assert_eq!(run.state.result, Some(Success));
        assert_eq!(run.end_time, T0 + 41);
    }

    #[test]
    fn a_failure_skips_what_depends_on_it_and_a_cleanup_task_runs() {
        let mut cleanup = python("cleanup", &["b"]);
        cleanup["run_if"] = json!("AT_LEAST_ONE_FAILED");
        let (mut run, settings) = run_of(json!({"tasks": [
            python("a", &[]), python("b", &["a"]), python("c", &["b"]), cleanup,
        ]}));
        advance(&mut run, &settings, 0, T0);
        ends(&mut run, "a", Failed, T0 + 5);
        let decisions = advance(&mut run, &settings, 0, T0 + 6);
        assert_eq!(state_of(&run, "b"), (Skipped, Some(UpstreamFailed)));
        assert_eq!(
            state_of(&run, "c"),
            (Skipped, Some(UpstreamFailed)),
            "cascades"
        );
        assert_eq!(state_of(&run, "cleanup"), (Pending, None));
        assert_eq!(decisions.ready, 1);
        ends(&mut run, "cleanup", Success, T0 + 7);
        advance(&mut run, &settings, 0, T0 + 8);
        // c is a leaf that did not succeed.
        assert_eq!(run.state.result, Some(Failed));
        assert!(
            run.state.message.starts_with("Task a failed"),
            "{}",
            run.state.message
        );
    }

    #[test]
    fn retries_wait_their_interval_and_stop_at_max_retries() {
        let mut task = python("flaky", &[]);
        task["max_retries"] = json!(2);
        task["min_retry_interval_millis"] = json!(1000);
        let (mut run, settings) = run_of(json!({"tasks": [task, python("after", &["flaky"])]}));
        advance(&mut run, &settings, 0, T0);
        ends(&mut run, "flaky", Failed, T0 + 100);
        let decisions = advance(&mut run, &settings, 0, T0 + 101);
        assert_eq!(decisions.added, vec![2]);
        assert_eq!(state_of(&run, "flaky"), (WaitingForRetry, None));
        assert_eq!(run.tasks[2].attempt_number, 1);
        assert_eq!(decisions.wake_at, Some(T0 + 1100));
        assert_eq!(
            state_of(&run, "after"),
            (Blocked, None),
            "waits for the retry"
        );
        run.tasks[2].run_id = 200;
        assert_eq!(advance(&mut run, &settings, 0, T0 + 1099).ready, 0);
        assert_eq!(advance(&mut run, &settings, 0, T0 + 1100).ready, 1);
        ends(&mut run, "flaky", Failed, T0 + 1200);
        advance(&mut run, &settings, 0, T0 + 1201);
        run.tasks[3].run_id = 201;
        assert_eq!(run.tasks[3].attempt_number, 2);
        advance(&mut run, &settings, 0, T0 + 2200);
        ends(&mut run, "flaky", Failed, T0 + 2300);
        let decisions = advance(&mut run, &settings, 0, T0 + 2301);
        assert!(decisions.added.is_empty(), "two retries, then no more");
        assert_eq!(state_of(&run, "after"), (Skipped, Some(UpstreamFailed)));
        assert_eq!(run.state.result, Some(Failed));
    }

    #[test]
    fn a_timeout_is_retried_only_with_retry_on_timeout() {
        for retry_on_timeout in [false, true] {
            let mut task = python("slow", &[]);
            task["max_retries"] = json!(1);
            task["retry_on_timeout"] = json!(retry_on_timeout);
            let (mut run, settings) = run_of(json!({"tasks": [task]}));
            advance(&mut run, &settings, 0, T0);
            ends(&mut run, "slow", TimedOut, T0 + 10);
            let decisions = advance(&mut run, &settings, 0, T0 + 11);
            assert_eq!(decisions.added.len(), usize::from(retry_on_timeout));
            if !retry_on_timeout {
                assert_eq!(run.state.result, Some(TimedOut));
            }
        }
    }

    #[test]
    fn concurrent_runs_queue_or_skip_past_the_limit() {
        let settings = json!({"max_concurrent_runs": 1, "tasks": [python("a", &[])]});
        let (mut queued, typed) = run_of(settings.clone());
        let decisions = advance(&mut queued, &typed, 1, T0);
        assert_eq!(queued.state.life_cycle, Queued);
        assert!(decisions.run_changed);
        assert!(
            !advance(&mut queued, &typed, 1, T0 + 1).run_changed,
            "still queued"
        );
        advance(&mut queued, &typed, 0, T0 + 2);
        assert_eq!(queued.state.life_cycle, Running, "a slot freed");

        let mut no_queue = settings;
        no_queue["queue"] = json!({"enabled": false});
        let (mut skipped, typed) = run_of(no_queue);
        advance(&mut skipped, &typed, 1, T0);
        assert_eq!(skipped.state.life_cycle, Skipped);
        assert_eq!(skipped.state.result, Some(MaximumConcurrentRunsReached));
        assert_eq!(
            state_of(&skipped, "a"),
            (Skipped, Some(MaximumConcurrentRunsReached))
        );
    }

    #[test]
    fn cancelling_skips_what_has_not_run_and_waits_for_what_runs() {
        let (mut run, settings) = run_of(json!({"tasks": [python("a", &[]), python("b", &["a"])]}));
        advance(&mut run, &settings, 0, T0);
        let index = latest(&run, "a").expect("a");
        run.tasks[index].state = RunState::new(Running);
        run.tasks[index].lease_until = T0 + 30_000;
        run.cancel_requested = true;
        advance(&mut run, &settings, 0, T0 + 1);
        assert_eq!(state_of(&run, "b"), (Skipped, Some(Canceled)));
        assert_eq!(run.state.life_cycle, Terminating);
        run.tasks[index].state = RunState::ended(Terminated, Canceled, "killed");
        advance(&mut run, &settings, 0, T0 + 2);
        assert_eq!(run.state.life_cycle, Terminated);
        assert_eq!(run.state.result, Some(Canceled));
        assert!(run.state.user_cancelled_or_timedout);
    }

    #[test]
    fn the_job_timeout_stops_the_run() {
        let (mut run, settings) = run_of(
            json!({"timeout_seconds": 60, "tasks": [python("a", &[]), python("b", &["a"])]}),
        );
        let decisions = advance(&mut run, &settings, 0, T0);
        assert_eq!(decisions.wake_at, Some(T0 + 60_000));
        let index = latest(&run, "a").expect("a");
        run.tasks[index].state = RunState::new(Running);
        run.tasks[index].lease_until = T0 + 90_000;
        let decisions = advance(&mut run, &settings, 0, T0 + 60_000);
        assert!(decisions.stop_running, "the executors are told");
        assert_eq!(state_of(&run, "b"), (Skipped, Some(TimedOut)));
        run.tasks[index].state = RunState::ended(Terminated, Canceled, "killed");
        advance(&mut run, &settings, 0, T0 + 60_001);
        assert_eq!(run.state.result, Some(TimedOut));
    }

    #[test]
    fn a_task_whose_executor_went_quiet_fails_and_is_retried() {
        let mut task = python("a", &[]);
        task["max_retries"] = json!(1);
        let (mut run, settings) = run_of(json!({"tasks": [task]}));
        advance(&mut run, &settings, 0, T0);
        run.tasks[0].state = RunState::new(Running);
        run.tasks[0].worker = Some("w1".into());
        run.tasks[0].lease_until = T0 + 1000;
        assert!(
            advance(&mut run, &settings, 0, T0 + 1000)
                .changed
                .is_empty()
        );
        let decisions = advance(&mut run, &settings, 0, T0 + 1001);
        assert_eq!(decisions.changed, vec![(0, Running)]);
        assert_eq!(run.tasks[0].state.life_cycle, InternalError);
        assert!(run.tasks[0].state.message.contains("w1"));
        assert_eq!(decisions.added, vec![1], "retried");
    }

    /// The runner's write of what it added: ids for the new task runs.
    fn insert_added(run: &mut JobRun, decisions: &Decisions) {
        for (next_id, index) in (500..).zip(&decisions.added) {
            run.tasks[*index].run_id = next_id + *index as i64;
        }
    }

    fn iterations(run: &JobRun) -> Vec<(i64, String, LifeCycle, i64)> {
        run.iterations_of(101)
            .into_iter()
            .map(|task| {
                let iteration = task.iteration.as_ref().expect("an iteration");
                (
                    iteration.index,
                    iteration.input.clone(),
                    task.state.life_cycle,
                    task.attempt_number,
                )
            })
            .collect()
    }

    fn end_iteration(run: &mut JobRun, input: i64, result: ResultState, at: i64) {
        let index = run
            .tasks
            .iter()
            .rposition(|task| task.iteration.as_ref().is_some_and(|it| it.index == input))
            .expect("iteration");
        let task = &mut run.tasks[index];
        assert_eq!(
            task.state.life_cycle, Pending,
            "iteration {input} was ready"
        );
        task.start_time = at;
        task.end_time = at;
        task.state = RunState::ended(Terminated, result, "");
    }

    #[test]
    fn a_for_each_task_runs_its_inputs_concurrency_at_a_time_and_retries_each() {
        let (mut run, settings) = run_of(json!({"tasks": [
            python("list", &[]),
            {"task_key": "each", "depends_on": [{"task_key": "list"}],
             "for_each_task": {"inputs": "{{tasks.list.values.regions}}", "concurrency": 2,
                "task": {"task_key": "each_region", "max_retries": 1,
                         "spark_python_task": {"python_file": "train.py", "parameters": ["{{input}}"]}}}},
            python("report", &["each"]),
        ]}));
        advance(&mut run, &settings, 0, T0);
        ends(&mut run, "list", Success, T0 + 10);
        run.tasks[0].values = json!({"regions": ["eu", {"name": "us"}, "ap"]});
        let decisions = advance(&mut run, &settings, 0, T0 + 11);
        assert_eq!(state_of(&run, "each"), (Running, None));
        assert_eq!(decisions.added.len(), 3, "one task run per input");
        assert_eq!(decisions.ready, 2, "two at a time");
        insert_added(&mut run, &decisions);
        assert_eq!(
            iterations(&run),
            vec![
                (0, "eu".into(), Pending, 0),
                (1, r#"{"name":"us"}"#.into(), Pending, 0),
                (2, "ap".into(), Blocked, 0)
            ]
        );
        let second = run.iterations_of(101)[1].clone();
        assert_eq!(
            lookup(&run, Some(&second), &["input", "name"]).as_deref(),
            Some("us")
        );

        end_iteration(&mut run, 0, Success, T0 + 20);
        end_iteration(&mut run, 1, Failed, T0 + 21);
        let decisions = advance(&mut run, &settings, 0, T0 + 22);
        insert_added(&mut run, &decisions);
        assert_eq!(
            iterations(&run),
            vec![
                (0, "eu".into(), Terminated, 0),
                (1, r#"{"name":"us"}"#.into(), Pending, 1),
                (2, "ap".into(), Pending, 0)
            ],
            "the failed one retried as the nested task says, the third started"
        );
        assert_eq!(state_of(&run, "each"), (Running, None));
        end_iteration(&mut run, 1, Success, T0 + 30);
        end_iteration(&mut run, 2, Failed, T0 + 31);
        let decisions = advance(&mut run, &settings, 0, T0 + 32);
        insert_added(&mut run, &decisions);
        end_iteration(&mut run, 2, Failed, T0 + 40);
        advance(&mut run, &settings, 0, T0 + 41);
        let each = &run.tasks[latest(&run, "each").expect("each")];
        assert_eq!(
            (each.state.life_cycle, each.state.result),
            (Terminated, Some(Failed))
        );
        assert_eq!(each.state.message, "1 of 3 iterations failed.");
        assert_eq!(state_of(&run, "report"), (Skipped, Some(UpstreamFailed)));
        assert_eq!(
            run.latest_attempts().len(),
            3,
            "iterations are not tasks of the run"
        );
    }

    #[test]
    fn a_for_each_task_with_no_inputs_succeeds_and_bad_inputs_fail_it() {
        let job = |inputs: &str| {
            run_of(json!({"tasks": [
                python("list", &[]),
                {"task_key": "each", "depends_on": [{"task_key": "list"}],
                 "for_each_task": {"inputs": inputs,
                    "task": {"task_key": "x", "spark_python_task": {"python_file": "x.py"}}}},
            ]}))
        };
        for (inputs, result) in [
            ("[]", Success),
            ("not json", Failed),
            (r#"{"a": 1}"#, Failed),
        ] {
            let (mut run, settings) = job(inputs);
            advance(&mut run, &settings, 0, T0);
            ends(&mut run, "list", Success, T0 + 1);
            let decisions = advance(&mut run, &settings, 0, T0 + 2);
            assert!(decisions.added.is_empty(), "{inputs}");
            assert_eq!(
                state_of(&run, "each"),
                (Terminated, Some(result)),
                "{inputs}"
            );
            assert_eq!(run.state.life_cycle, Terminated);
        }
    }

    #[test]
    fn cancelling_a_for_each_run_skips_the_iterations_not_started() {
        let (mut run, settings) = run_of(json!({"tasks": [
            {"task_key": "each", "for_each_task": {"inputs": "[1, 2, 3]",
                "task": {"task_key": "x", "spark_python_task": {"python_file": "x.py"}}}},
        ]}));
        let decisions = advance(&mut run, &settings, 0, T0);
        insert_added(&mut run, &decisions);
        assert_eq!(decisions.ready, 1, "one at a time by default");
        run.cancel_requested = true;
        let pending = run.iterations_of(100)[0].run_id;
        let index = run
            .tasks
            .iter()
            .position(|t| t.run_id == pending)
            .expect("first");
        run.tasks[index].state = RunState::new(Running);
        run.tasks[index].lease_until = T0 + 60_000;
        advance(&mut run, &settings, 0, T0 + 1);
        let states: Vec<LifeCycle> = run
            .iterations_of(100)
            .iter()
            .map(|t| t.state.life_cycle)
            .collect();
        assert_eq!(states, vec![Running, Skipped, Skipped]);
        assert_eq!(run.state.life_cycle, Terminating);
        run.tasks[index].state = RunState::ended(Terminated, Canceled, "");
        advance(&mut run, &settings, 0, T0 + 2);
        assert_eq!(state_of(&run, "each"), (Terminated, Some(Canceled)));
        assert_eq!(
            (run.state.life_cycle, run.state.result),
            (Terminated, Some(Canceled))
        );
    }

    #[test]
    fn conditions_read_task_values_and_pick_a_branch() {
        let (mut run, settings) = run_of(json!({"tasks": [
            python("train", &[]),
            {"task_key": "good_enough", "depends_on": [{"task_key": "train"}],
             "condition_task": {"op": "GREATER_THAN", "left": "{{tasks.train.values.auc}}",
                                "right": "{{job.parameters.threshold}}"}},
            {"task_key": "deploy", "depends_on": [{"task_key": "good_enough", "outcome": "true"}],
             "spark_python_task": {"python_file": "deploy.py"}},
            {"task_key": "alert", "depends_on": [{"task_key": "good_enough", "outcome": "false"}],
             "spark_python_task": {"python_file": "alert.py"}},
            {"task_key": "report", "depends_on": [{"task_key": "deploy"}, {"task_key": "alert"}],
             "run_if": "NONE_FAILED", "spark_python_task": {"python_file": "report.py"}},
        ]}));
        advance(&mut run, &settings, 0, T0);
        ends(&mut run, "train", Success, T0 + 10);
        run.tasks[0].values = json!({"auc": 0.91});
        let decisions = advance(&mut run, &settings, 0, T0 + 11);
        let condition = &run.tasks[latest(&run, "good_enough").expect("condition")];
        assert_eq!(condition.state.result, Some(Success));
        assert_eq!(condition.outcome.as_deref(), Some("true"));
        assert_eq!(condition.state.message, "");
        assert_eq!(state_of(&run, "deploy"), (Pending, None));
        assert_eq!(state_of(&run, "alert"), (Skipped, Some(Excluded)));
        assert_eq!(decisions.ready, 1);
        ends(&mut run, "deploy", Success, T0 + 20);
        advance(&mut run, &settings, 0, T0 + 21);
        assert_eq!(
            state_of(&run, "report"),
            (Pending, None),
            "one branch ran, one excluded"
        );
        ends(&mut run, "report", Success, T0 + 30);
        advance(&mut run, &settings, 0, T0 + 31);
        assert_eq!(run.state.result, Some(Success));
    }

    #[test]
    fn a_disabled_task_is_skipped_and_counts_as_done() {
        let mut off = python("off", &[]);
        off["disabled"] = json!(true);
        let (mut run, settings) =
            run_of(json!({"tasks": [off, python("a", &[]), python("b", &["off", "a"])]}));
        advance(&mut run, &settings, 0, T0);
        assert_eq!(state_of(&run, "off"), (Skipped, Some(Disabled)));
        ends(&mut run, "a", Success, T0 + 1);
        advance(&mut run, &settings, 0, T0 + 2);
        assert_eq!(state_of(&run, "b"), (Pending, None));
        ends(&mut run, "b", Success, T0 + 3);
        advance(&mut run, &settings, 0, T0 + 4);
        assert_eq!(run.state.result, Some(Success));
    }

    #[test]
    fn references_resolve_against_the_run() {
        let (mut run, _) = run_of(json!({"tasks": [python("a", &[])]}));
        run.start_time = 1_765_000_000_000;
        run.tasks[0].values = json!({"n": 3, "s": "x"});
        run.tasks[0].state = RunState::ended(Terminated, Success, "");
        let task = run.tasks[0].clone();
        let value = |path: &[&str]| lookup(&run, Some(&task), path);
        assert_eq!(value(&["job", "id"]).as_deref(), Some("7"));
        assert_eq!(
            value(&["job", "parameters", "threshold"]).as_deref(),
            Some("0.5")
        );
        assert_eq!(value(&["tasks", "a", "values", "n"]).as_deref(), Some("3"));
        assert_eq!(value(&["tasks", "a", "values", "s"]).as_deref(), Some("x"));
        assert_eq!(
            value(&["tasks", "a", "result_state"]).as_deref(),
            Some("success")
        );
        assert_eq!(value(&["task", "execution_count"]).as_deref(), Some("1"));
        assert_eq!(
            value(&["job", "start_time", "iso_date"]).as_deref(),
            Some("2025-12-06")
        );
        assert_eq!(value(&["tasks", "a", "values", "missing"]), None);
    }
}
