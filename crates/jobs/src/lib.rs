//! Jobs: multi-task workflows in the shape of Databricks Jobs API 2.2. Settings are checked
//! before anything is stored (`settings`, `references`); schedules are Quartz cron expressions
//! in a time zone (`cron`); what a run's graph decides (`run_if`, If/else conditions, the run's
//! result) is in `dag`; creating, reading, changing and deleting jobs with their permission
//! checks in `manage`.

pub mod cron;
pub mod dag;
pub mod manage;
pub mod references;
pub mod settings;
