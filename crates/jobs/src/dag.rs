//! What a job's graph decides, as Databricks decides it: whether a task runs once its
//! dependencies are done (`run_if`), how an If/else condition evaluates, and what a whole run's
//! result is from its tasks'.

use tarn_core::{Error, Result};

pub use tarn_core::jobs::ResultState;

/// How a task that depends on a task ending so sees it.
fn seen_downstream(state: ResultState) -> Upstream {
    match state {
        ResultState::Success | ResultState::SuccessWithFailures => Upstream::Succeeded,
        ResultState::Excluded | ResultState::Disabled => Upstream::Excluded,
        ResultState::Failed
        | ResultState::TimedOut
        | ResultState::UpstreamFailed
        | ResultState::MaximumConcurrentRunsReached => Upstream::Failed,
        ResultState::Canceled | ResultState::UpstreamCanceled => Upstream::Canceled,
    }
}

/// A dependency's end as its dependants weigh it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    Succeeded,
    /// Skipped (a branch not taken, a disabled task): counts as a success, unless every
    /// dependency was skipped, and then the dependant is skipped too.
    Excluded,
    Failed,
    Canceled,
}

/// A task's `run_if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunIf {
    AllSuccess,
    AllDone,
    NoneFailed,
    AtLeastOneSuccess,
    AllFailed,
    AtLeastOneFailed,
}

impl RunIf {
    pub const ALL: [RunIf; 6] = [
        Self::AllSuccess,
        Self::AllDone,
        Self::NoneFailed,
        Self::AtLeastOneSuccess,
        Self::AllFailed,
        Self::AtLeastOneFailed,
    ];

    /// `ALL_SUCCESS` when the task does not say.
    pub fn parse(text: Option<&str>) -> Option<Self> {
        Some(match text.unwrap_or("ALL_SUCCESS") {
            "ALL_SUCCESS" => Self::AllSuccess,
            "ALL_DONE" => Self::AllDone,
            "NONE_FAILED" => Self::NoneFailed,
            "AT_LEAST_ONE_SUCCESS" => Self::AtLeastOneSuccess,
            "ALL_FAILED" => Self::AllFailed,
            "AT_LEAST_ONE_FAILED" => Self::AtLeastOneFailed,
            _ => return None,
        })
    }

    /// Handles failures: when its condition is not met the task is excluded, not failed.
    fn handles_failures(self) -> bool {
        matches!(self, Self::AllFailed | Self::AtLeastOneFailed)
    }
}

/// A finished dependency of a task: how it ended and, for an If/else condition task, which
/// outcome it took and which one the dependant waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub state: ResultState,
    /// For a condition task: the outcome it evaluated to.
    pub outcome: Option<bool>,
    /// The `depends_on.outcome` the dependant gave: the branch it belongs to.
    pub branch: Option<bool>,
}

impl Finished {
    pub fn ended(state: ResultState) -> Self {
        Self {
            state,
            outcome: None,
            branch: None,
        }
    }

    fn weighed(self) -> Upstream {
        match (self.branch, self.outcome) {
            // On the branch not taken.
            (Some(branch), Some(outcome))
                if self.state == ResultState::Success && branch != outcome =>
            {
                Upstream::Excluded
            }
            _ => seen_downstream(self.state),
        }
    }
}

/// What happens to a task once every dependency is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Run,
    /// Ends without running, in this state.
    Skip(ResultState),
}

/// Databricks' rules: a task runs when its `run_if` holds over its dependencies; when it does
/// not, a failure-handling task is EXCLUDED and any other is UPSTREAM_FAILED (or
/// UPSTREAM_CANCELED when a cancellation is what stopped it). A task whose dependencies were
/// all skipped is skipped too, whatever its `run_if`.
pub fn decide(run_if: RunIf, dependencies: &[Finished]) -> Decision {
    if dependencies.is_empty() {
        return Decision::Run;
    }
    let weighed: Vec<Upstream> = dependencies.iter().map(|d| d.weighed()).collect();
    if weighed.iter().all(|u| *u == Upstream::Excluded) {
        return Decision::Skip(ResultState::Excluded);
    }
    let count = |wanted: &[Upstream]| weighed.iter().filter(|u| wanted.contains(u)).count();
    let succeeded = count(&[Upstream::Succeeded, Upstream::Excluded]);
    let failed = count(&[Upstream::Failed]);
    let canceled = count(&[Upstream::Canceled]);
    let holds = match run_if {
        RunIf::AllSuccess => succeeded == weighed.len(),
        RunIf::AllDone => true,
        RunIf::NoneFailed => failed == 0 && canceled == 0,
        RunIf::AtLeastOneSuccess => succeeded > 0,
        // A cancellation reaches the tasks that clean up after failures.
        RunIf::AllFailed => failed + canceled == weighed.len(),
        RunIf::AtLeastOneFailed => failed + canceled > 0,
    };
    if holds {
        Decision::Run
    } else if run_if.handles_failures() {
        Decision::Skip(ResultState::Excluded)
    } else if failed > 0 {
        Decision::Skip(ResultState::UpstreamFailed)
    } else {
        Decision::Skip(ResultState::UpstreamCanceled)
    }
}

/// A whole run's result from its tasks': SUCCESS when every task succeeded or was skipped;
/// SUCCESS_WITH_FAILURES when some task failed but every leaf (a task nothing depends on)
/// succeeded; otherwise the leaves' failure (CANCELED when a leaf was canceled and none
/// failed, TIMEDOUT likewise).
pub fn run_result(tasks: &[(ResultState, bool)]) -> ResultState {
    let succeeded = |state: ResultState| {
        matches!(
            seen_downstream(state),
            Upstream::Succeeded | Upstream::Excluded
        )
    };
    if tasks.iter().all(|(state, _)| succeeded(*state)) {
        return ResultState::Success;
    }
    let leaves: Vec<ResultState> = tasks
        .iter()
        .filter(|(_, leaf)| *leaf)
        .map(|(state, _)| *state)
        .collect();
    if leaves.iter().all(|state| succeeded(*state)) {
        return ResultState::SuccessWithFailures;
    }
    let failed = |wanted: ResultState| leaves.contains(&wanted);
    if failed(ResultState::Failed) || failed(ResultState::UpstreamFailed) {
        ResultState::Failed
    } else if failed(ResultState::TimedOut) {
        ResultState::TimedOut
    } else if failed(ResultState::Canceled) || failed(ResultState::UpstreamCanceled) {
        ResultState::Canceled
    } else {
        ResultState::Failed
    }
}

/// An If/else condition: `EQUAL_TO` and `NOT_EQUAL` compare the operands as text (so
/// `12.0 == 12` is false); the others compare them as numbers, and text that is not a
/// number fails the task.
pub fn condition(op: &str, left: &str, right: &str) -> Result<bool> {
    let number = |text: &str| {
        text.trim().parse::<f64>().map_err(|_| {
            Error::invalid(format!(
                "condition_task {op}: '{text}' is not a number (EQUAL_TO and NOT_EQUAL compare text)"
            ))
        })
    };
    Ok(match op {
        "EQUAL_TO" => left == right,
        "NOT_EQUAL" => left != right,
        "GREATER_THAN" => number(left)? > number(right)?,
        "GREATER_THAN_OR_EQUAL" => number(left)? >= number(right)?,
        "LESS_THAN" => number(left)? < number(right)?,
        "LESS_THAN_OR_EQUAL" => number(left)? <= number(right)?,
        other => {
            return Err(Error::invalid(format!(
                "Unknown condition_task op '{other}'"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResultState::*;

    const ENDS: [ResultState; 8] = [
        Success,
        Failed,
        TimedOut,
        Canceled,
        Excluded,
        UpstreamFailed,
        UpstreamCanceled,
        Disabled,
    ];

    fn decide_over(run_if: RunIf, states: &[ResultState]) -> Decision {
        let finished: Vec<Finished> = states.iter().map(|s| Finished::ended(*s)).collect();
        decide(run_if, &finished)
    }

    /// Every run_if against every way one dependency can end, and against pairs.
    #[test]
    fn every_run_if_against_every_upstream_end() {
        use Decision::{Run, Skip};
        let expected = |run_if: RunIf, state: ResultState| -> Decision {
            let skipped = matches!(state, Excluded | Disabled);
            let failed = matches!(state, Failed | TimedOut | UpstreamFailed);
            let canceled = matches!(state, Canceled | UpstreamCanceled);
            if skipped {
                return Skip(Excluded);
            }
            match run_if {
                RunIf::AllDone => Run,
                RunIf::AllSuccess | RunIf::NoneFailed | RunIf::AtLeastOneSuccess => {
                    if failed {
                        Skip(UpstreamFailed)
                    } else if canceled {
                        Skip(UpstreamCanceled)
                    } else {
                        Run
                    }
                }
                RunIf::AllFailed | RunIf::AtLeastOneFailed => {
                    if failed || canceled {
                        Run
                    } else {
                        Skip(Excluded)
                    }
                }
            }
        };
        for run_if in RunIf::ALL {
            for state in ENDS {
                assert_eq!(
                    decide_over(run_if, &[state]),
                    expected(run_if, state),
                    "{run_if:?} after {state:?}"
                );
            }
        }
        // Two dependencies: one succeeded, one failed.
        let mixed = [Success, Failed];
        assert_eq!(decide_over(RunIf::AllSuccess, &mixed), Skip(UpstreamFailed));
        assert_eq!(decide_over(RunIf::AtLeastOneSuccess, &mixed), Run);
        assert_eq!(decide_over(RunIf::NoneFailed, &mixed), Skip(UpstreamFailed));
        assert_eq!(decide_over(RunIf::AllDone, &mixed), Run);
        assert_eq!(decide_over(RunIf::AtLeastOneFailed, &mixed), Run);
        assert_eq!(decide_over(RunIf::AllFailed, &mixed), Skip(Excluded));
        // A skipped dependency beside a success counts as a success.
        assert_eq!(decide_over(RunIf::AllSuccess, &[Success, Excluded]), Run);
        assert_eq!(decide_over(RunIf::NoneFailed, &[Excluded, Success]), Run);
        assert_eq!(
            decide_over(RunIf::AllFailed, &[Failed, Excluded]),
            Skip(Excluded)
        );
        // Every dependency skipped: skipped whatever the run_if.
        for run_if in RunIf::ALL {
            assert_eq!(decide_over(run_if, &[Excluded, Disabled]), Skip(Excluded));
        }
        assert_eq!(decide_over(RunIf::AllSuccess, &[]), Run, "a root task runs");
    }

    #[test]
    fn a_condition_runs_one_branch_and_excludes_the_other() {
        let took = |outcome: bool, branch: bool| Finished {
            state: Success,
            outcome: Some(outcome),
            branch: Some(branch),
        };
        assert_eq!(
            decide(RunIf::AllSuccess, &[took(true, true)]),
            Decision::Run
        );
        assert_eq!(
            decide(RunIf::AllSuccess, &[took(true, false)]),
            Decision::Skip(Excluded)
        );
        assert_eq!(
            decide(RunIf::AllDone, &[took(false, true)]),
            Decision::Skip(Excluded),
            "a branch not taken is skipped even under ALL_DONE"
        );
        // A join after both branches runs: one side ran, the other was excluded.
        assert_eq!(
            decide(
                RunIf::AllSuccess,
                &[Finished::ended(Success), Finished::ended(Excluded)]
            ),
            Decision::Run
        );
    }

    #[test]
    fn a_run_succeeds_fails_or_succeeds_with_failures_by_its_leaves() {
        assert_eq!(run_result(&[(Success, false), (Excluded, true)]), Success);
        assert_eq!(
            run_result(&[(Failed, false), (Success, true)]),
            SuccessWithFailures,
            "a failure handled by a leaf that succeeded"
        );
        assert_eq!(run_result(&[(Success, false), (Failed, true)]), Failed);
        assert_eq!(
            run_result(&[(Failed, false), (UpstreamFailed, true)]),
            Failed
        );
        assert_eq!(run_result(&[(Success, false), (TimedOut, true)]), TimedOut);
        assert_eq!(
            run_result(&[(Canceled, false), (UpstreamCanceled, true)]),
            Canceled
        );
    }

    #[test]
    fn conditions_compare_text_for_equality_and_numbers_for_order() {
        assert!(!condition("EQUAL_TO", "12.0", "12").expect("text"));
        assert!(condition("NOT_EQUAL", "12.0", "12").expect("text"));
        assert!(condition("GREATER_THAN_OR_EQUAL", "12.0", "12").expect("numbers"));
        assert!(!condition("GREATER_THAN", "10.0", "12").expect("numbers"));
        assert!(condition("LESS_THAN", "0.5", "0.75").expect("numbers"));
        assert!(condition("LESS_THAN_OR_EQUAL", "-1", "-1").expect("numbers"));
        let err = condition("GREATER_THAN", "high", "1").expect_err("not a number");
        assert!(
            err.message.contains("'high' is not a number"),
            "{}",
            err.message
        );
    }
}
