//! Table monitors in the shape of Databricks Lakehouse Monitoring: a monitored Delta table's
//! rows grouped by time window, model and slice, profiled (`<table>_profile_metrics`) and
//! compared with the previous window and a baseline (`<table>_drift_metrics`) with Evidently's
//! drift definitions and scipy's tests, so the numbers match what users compute by hand.
//!
//! - `drift`, `kolmogorov`, `metrics`: the statistics, pure functions over values;
//! - `windows`: time windows by granularity;
//! - `compute`: grouping a source's rows and computing every metric, on all cores;
//! - `custom`: the monitor's custom metrics (aggregate, derived, drift SQL) for the same groups;
//! - `tables`: the metrics tables' rows and Arrow shape;
//! - `refresh`: reading the sources through SQL and writing the metrics tables;
//! - `kept`: the last window's summaries kept between refreshes, for incremental ones;
//! - `schedule`: refreshes started by their Quartz schedules, one server at a time;
//! - `manage`: the API's use cases with their permission checks;
//! - `overview`: the metrics over time, for the CLI and the charts;
//! - `charts`: SVG charts of them and the HTML report;
//! - `alerts`: conditions on the metrics evaluated after refreshes and on schedules.

pub mod alerts;
pub mod charts;
pub mod compute;
pub mod custom;
pub mod drift;
pub mod kept;
pub mod kolmogorov;
pub mod manage;
pub mod metrics;
pub mod overview;
pub mod refresh;
pub mod schedule;
pub mod tables;
pub mod windows;
