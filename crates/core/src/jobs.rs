//! Jobs as the store keeps them: the settings as the client sent them (checked by tarn-jobs,
//! Databricks' defaults filled in), who created the job and as whom its tasks run.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: i64,
    pub workspace: String,
    pub creator_user_name: String,
    /// The principal the job's tasks act as: the creator unless `run_as` names another.
    pub run_as_user_name: String,
    /// `JobSettings` as sent.
    pub settings: Value,
    /// Milliseconds since the epoch.
    pub created_time: i64,
}

impl Job {
    pub fn name(&self) -> &str {
        name_in(&self.settings)
    }
}

/// A job's name from its settings (`Untitled` when they have none, as Databricks names it).
pub fn name_in(settings: &Value) -> &str {
    settings
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("Untitled")
}

/// Where a run or a task run is in its life (`life_cycle_state`), as Databricks reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifeCycle {
    /// Waiting for one of the job's concurrent-run slots (`queue.enabled`).
    Queued,
    /// A run about to start; a task run ready for an executor to claim.
    Pending,
    /// A task run waiting for its dependencies.
    Blocked,
    /// A task run waiting out `min_retry_interval_millis` before its next attempt.
    WaitingForRetry,
    Running,
    Terminating,
    Terminated,
    /// Ended without running: a run past `max_concurrent_runs`, a task a dependency or a
    /// condition kept from running.
    Skipped,
    InternalError,
}

impl LifeCycle {
    pub const ALL: [LifeCycle; 9] = [
        Self::Queued,
        Self::Pending,
        Self::Blocked,
        Self::WaitingForRetry,
        Self::Running,
        Self::Terminating,
        Self::Terminated,
        Self::Skipped,
        Self::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Pending => "PENDING",
            Self::Blocked => "BLOCKED",
            Self::WaitingForRetry => "WAITING_FOR_RETRY",
            Self::Running => "RUNNING",
            Self::Terminating => "TERMINATING",
            Self::Terminated => "TERMINATED",
            Self::Skipped => "SKIPPED",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// Whether nothing more happens to it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Terminated | Self::Skipped | Self::InternalError)
    }

    /// The newer `status.state` Databricks reports beside `life_cycle_state`.
    pub fn status(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Pending => "PENDING",
            Self::Blocked => "BLOCKED",
            Self::WaitingForRetry => "WAITING",
            Self::Running => "RUNNING",
            Self::Terminating => "TERMINATING",
            Self::Terminated | Self::Skipped | Self::InternalError => "TERMINATED",
        }
    }
}

/// How a run or a task run ended (`result_state`), as Databricks reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultState {
    Success,
    Failed,
    TimedOut,
    Canceled,
    /// Skipped by a condition, or by a `run_if` that handles failures when nothing failed.
    Excluded,
    UpstreamFailed,
    UpstreamCanceled,
    Disabled,
    /// A run whose leaf tasks succeeded while some other task failed.
    SuccessWithFailures,
    MaximumConcurrentRunsReached,
}

impl ResultState {
    pub const ALL: [ResultState; 10] = [
        Self::Success,
        Self::Failed,
        Self::TimedOut,
        Self::Canceled,
        Self::Excluded,
        Self::UpstreamFailed,
        Self::UpstreamCanceled,
        Self::Disabled,
        Self::SuccessWithFailures,
        Self::MaximumConcurrentRunsReached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMEDOUT",
            Self::Canceled => "CANCELED",
            Self::Excluded => "EXCLUDED",
            Self::UpstreamFailed => "UPSTREAM_FAILED",
            Self::UpstreamCanceled => "UPSTREAM_CANCELED",
            Self::Disabled => "DISABLED",
            Self::SuccessWithFailures => "SUCCESS_WITH_FAILURES",
            Self::MaximumConcurrentRunsReached => "MAXIMUM_CONCURRENT_RUNS_REACHED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// `status.termination_details`: its code and type, from Databricks' codes.
    pub fn termination(self) -> (&'static str, &'static str) {
        match self {
            Self::Success => ("SUCCESS", "SUCCESS"),
            Self::SuccessWithFailures => ("SUCCESS_WITH_FAILURES", "SUCCESS"),
            Self::Failed => ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
            // Databricks: "canceled by the platform, e.g. the maximum duration was exceeded".
            Self::TimedOut => ("CANCELED", "CLIENT_ERROR"),
            Self::Canceled => ("USER_CANCELED", "SUCCESS"),
            Self::Excluded | Self::UpstreamCanceled => ("SKIPPED", "SUCCESS"),
            Self::UpstreamFailed => ("SKIPPED", "CLIENT_ERROR"),
            Self::Disabled => ("DISABLED", "SUCCESS"),
            Self::MaximumConcurrentRunsReached => ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR"),
        }
    }
}

/// A run's or a task run's state (`state` in the API).
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub life_cycle: LifeCycle,
    /// Set once it ends.
    pub result: Option<ResultState>,
    pub message: String,
    /// Ended by a cancellation or a timeout.
    pub user_cancelled_or_timedout: bool,
}

impl RunState {
    /// `status.termination_details` once ended: its code and type.
    pub fn termination(&self) -> Option<(&'static str, &'static str)> {
        if self.life_cycle == LifeCycle::InternalError {
            return Some(("INTERNAL_ERROR", "INTERNAL_ERROR"));
        }
        self.result.map(ResultState::termination)
    }

    pub fn new(life_cycle: LifeCycle) -> Self {
        Self {
            life_cycle,
            result: None,
            message: String::new(),
            user_cancelled_or_timedout: false,
        }
    }

    pub fn ended(life_cycle: LifeCycle, result: ResultState, message: impl Into<String>) -> Self {
        Self {
            life_cycle,
            result: Some(result),
            message: message.into(),
            user_cancelled_or_timedout: matches!(
                result,
                ResultState::Canceled | ResultState::TimedOut
            ),
        }
    }
}

/// What started a run (`trigger`).
pub mod trigger {
    pub const ONE_TIME: &str = "ONE_TIME";
    pub const PERIODIC: &str = "PERIODIC";
    pub const RETRY: &str = "RETRY";
    pub const RUN_JOB_TASK: &str = "RUN_JOB_TASK";
    pub const FILE_ARRIVAL: &str = "FILE_ARRIVAL";
    pub const TABLE: &str = "TABLE";
    pub const MODEL: &str = "MODEL";
    /// tarn's: an alert changed to TRIGGERED.
    pub const ALERT: &str = "ALERT";
}

/// A job's run, or a one-time run (`runs/submit`), with its task runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Task runs share this id space: `runs/get-output` takes either.
    pub run_id: i64,
    pub workspace: String,
    /// `None` for a one-time run.
    pub job_id: Option<i64>,
    pub run_name: String,
    /// JOB_RUN, SUBMIT_RUN or WORKFLOW_RUN.
    pub run_type: String,
    /// One of `trigger::*`.
    pub trigger: String,
    pub creator_user_name: String,
    /// The principal the tasks act as.
    pub run_as_user_name: String,
    /// The job's settings when the run was made: what it runs, whatever later changes.
    pub settings: serde_json::Value,
    /// Every job parameter's value for this run: the defaults with the run's overrides.
    pub job_parameters: serde_json::Value,
    /// What the run-now request sent (`job_parameters`, `python_params`, ...).
    pub overriding_parameters: serde_json::Value,
    pub state: RunState,
    pub cancel_requested: bool,
    /// Milliseconds since the epoch: made, started (0 until then), ended (0 until then).
    pub created_time: i64,
    pub start_time: i64,
    pub end_time: i64,
    pub idempotency_token: Option<String>,
    /// The run as it first went and each repair since (`repair_history`); empty until the
    /// first repair.
    pub repair_history: Vec<RepairAttempt>,
    /// Every attempt of every task, in id order.
    pub tasks: Vec<TaskRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RepairKind {
    Original,
    Repair,
}

/// One attempt of a run in its repair history: the original run or a repair, with the task
/// runs it made and, once the next repair began, how it had ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RepairAttempt {
    #[serde(rename = "type")]
    pub kind: RepairKind,
    /// The repair's id (`repair_id`); the run's own for the original.
    pub id: i64,
    pub start_time: i64,
    /// 0 while it is the run's current attempt.
    pub end_time: i64,
    /// How it ended (`life_cycle_state`, `result_state`); absent while current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub life_cycle_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_state: Option<String>,
    pub task_run_ids: Vec<i64>,
}

impl JobRun {
    /// The latest attempt of each task (its last task run: retries and repairs come after
    /// what they follow), in the order the tasks were first made.
    pub fn latest_attempts(&self) -> Vec<&TaskRun> {
        let mut latest: Vec<&TaskRun> = Vec::new();
        for task in self.tasks.iter().filter(|task| task.iteration.is_none()) {
            match latest.iter_mut().find(|t| t.task_key == task.task_key) {
                Some(slot) => *slot = task,
                None => latest.push(task),
            }
        }
        latest
    }

    /// The latest attempt of each iteration of the for_each task run `parent_run_id`, in
    /// input order.
    pub fn iterations_of(&self, parent_run_id: i64) -> Vec<&TaskRun> {
        let mut latest: std::collections::BTreeMap<i64, &TaskRun> = Default::default();
        for task in &self.tasks {
            if let Some(iteration) = &task.iteration
                && iteration.parent_run_id == parent_run_id
            {
                latest.insert(iteration.index, task);
            }
        }
        latest.into_values().collect()
    }

    /// The id of the run's latest repair, if it was repaired.
    pub fn latest_repair_id(&self) -> Option<i64> {
        self.repair_history
            .iter()
            .rev()
            .find(|attempt| attempt.kind == RepairKind::Repair)
            .map(|attempt| attempt.id)
    }

    /// When the run's current attempt (the original, or its latest repair) started: its
    /// timeout counts from there.
    pub fn attempt_start(&self) -> i64 {
        self.repair_history
            .last()
            .filter(|attempt| attempt.kind == RepairKind::Repair)
            .map_or(self.start_time, |attempt| attempt.start_time)
    }
}

/// One attempt at one task of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    pub run_id: i64,
    pub job_run_id: i64,
    pub task_key: String,
    /// 0 for the first attempt, then 1, 2, ... for retries.
    pub attempt_number: i64,
    pub state: RunState,
    pub start_time: i64,
    pub end_time: i64,
    /// A retry waits until then (milliseconds since the epoch).
    pub not_before: i64,
    /// The executor running it, and until when its claim holds without a heartbeat.
    pub worker: Option<String>,
    pub lease_until: i64,
    /// The process group of its process, while it runs.
    pub process_group: Option<i64>,
    /// A condition task's outcome: "true" or "false".
    pub outcome: Option<String>,
    /// The task values it set (`dbutils.jobs.taskValues.set`), a JSON object.
    pub values: serde_json::Value,
    /// What `runs/get-output` shows besides the logs.
    pub output: TaskOutput,
    /// Set on an iteration of a for_each task: which one it is.
    pub iteration: Option<Iteration>,
}

/// One iteration of a for_each task run: the nested task run on one of its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iteration {
    /// The for_each task run it belongs to.
    pub parent_run_id: i64,
    /// Its place among the inputs, from 0.
    pub index: i64,
    /// Its input, as `{{input}}` gives it: a string as it is, anything else as JSON.
    pub input: String,
}

impl TaskRun {
    /// A task run made with its run, waiting for its dependencies.
    pub fn blocked(task_key: &str, attempt_number: i64) -> Self {
        Self {
            run_id: 0,
            job_run_id: 0,
            task_key: task_key.to_string(),
            attempt_number,
            state: RunState::new(LifeCycle::Blocked),
            start_time: 0,
            end_time: 0,
            not_before: 0,
            worker: None,
            lease_until: 0,
            process_group: None,
            outcome: None,
            values: serde_json::Value::Object(Default::default()),
            output: TaskOutput::default(),
            iteration: None,
        }
    }

    /// A for_each task run's iteration `index` on `input`, waiting for its turn.
    pub fn iteration_of(parent: &TaskRun, index: i64, input: String) -> Self {
        Self {
            job_run_id: parent.job_run_id,
            iteration: Some(Iteration {
                parent_run_id: parent.run_id,
                index,
                input,
            }),
            ..Self::blocked(&parent.task_key, 0)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskOutput {
    /// The value a notebook ended with (`dbutils.notebook.exit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_trace: Option<String>,
}

/// Which runs `runs/list` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub job_id: Option<i64>,
    pub active_only: bool,
    pub completed_only: bool,
    pub run_type: Option<String>,
    /// Started at or after / before, in milliseconds since the epoch.
    pub start_time_from: Option<i64>,
    pub start_time_to: Option<i64>,
}
