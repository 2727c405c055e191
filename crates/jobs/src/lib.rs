//! Jobs: multi-task workflows in the shape of Databricks Jobs API 2.2. Settings are checked
//! before anything is stored (`settings`, `references`); schedules are Quartz cron expressions
//! in a time zone (`cron`); what a run's graph decides (`run_if`, If/else conditions, the run's
//! result) is in `dag`, and what the runner does with a run at a moment in `plan`; creating,
//! reading, changing and deleting jobs with their permission checks in `manage`, running them
//! in `runs`. `runner` advances the runs and `executor` runs their tasks' processes; `triggers`
//! starts runs by schedule and by what the event stream reports.

pub mod cron;
pub mod dag;
pub mod executor;
pub mod logs;
pub mod manage;
pub mod plan;
pub mod references;
pub mod runner;
pub mod runs;
pub mod settings;
pub mod triggers;
pub mod workspace_files;
