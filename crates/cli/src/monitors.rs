//! `tarn monitors ...`: table monitors from the command line, on the metadata store and the
//! lake directly (like `tarn tables`), through the same use cases and checks as the API:
//! create from a settings file, refresh in-process, show the latest window per column, list
//! the alerts on the metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use tarn_core::monitors::{MonitorSettings, RefreshState, RefreshTrigger};
use tarn_core::store::MetaStore;
use tarn_lake::Lake;
use tarn_lake::format_timestamp;
use tarn_monitor::overview::{self, DriftPoint, Overview};
use tarn_monitor::{alerts, charts, manage, refresh};

use crate::local::cli_caller;

#[derive(Subcommand)]
pub enum MonitorsCommand {
    /// Create a monitor on a table from a JSON file of settings, as the monitor API takes them
    /// (`inference_log`, `time_series` or `snapshot`, `output_schema_name`, ...).
    Create {
        /// `catalog.schema.table`
        table: String,
        /// The settings file.
        #[arg(long)]
        settings: PathBuf,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Refresh a monitor's metrics tables now, in this process.
    Refresh {
        /// `catalog.schema.table`
        table: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Write a self-contained HTML report of a monitor's metrics over time: charts of drift
    /// against its threshold, model quality, rows, means and nulls.
    Report {
        /// `catalog.schema.table`
        table: String,
        /// The HTML file to write.
        #[arg(long, default_value = "monitor-report.html")]
        out: PathBuf,
        /// The granularity to show (the monitor's first by default).
        #[arg(long)]
        granularity: Option<String>,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// List the workspace's alerts: state, the value last compared against its threshold, the
    /// values over the latest evaluations, and when the state last changed.
    Alerts {
        /// Evaluate every alert now, in this process, before listing them.
        #[arg(long)]
        evaluate: bool,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Show a monitor's latest window per column: rows, nulls, mean with its trend, and drift
    /// against the previous window and the baseline.
    Show {
        /// `catalog.schema.table`
        table: String,
        /// The granularity to show (the monitor's first by default).
        #[arg(long)]
        granularity: Option<String>,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
}

pub async fn run(
    store: Arc<dyn MetaStore>,
    lake: Arc<Lake>,
    command: MonitorsCommand,
) -> Result<()> {
    match command {
        MonitorsCommand::Create {
            table,
            settings,
            workspace,
        } => {
            let text = std::fs::read_to_string(&settings)
                .with_context(|| format!("cannot read {}", settings.display()))?;
            let settings: MonitorSettings = serde_json::from_str(&text)
                .with_context(|| format!("{} is not monitor settings", settings.display()))?;
            let caller = cli_caller(workspace);
            let monitor = manage::create(&lake, store.as_ref(), &caller, &table, settings).await?;
            let (profile, drift) = monitor.metrics_tables();
            println!(
                "Created the monitor on {}: metrics go to {profile} and {drift}",
                monitor.table_name
            );
        }
        MonitorsCommand::Refresh { table, workspace } => {
            let caller = cli_caller(workspace);
            let (monitor, queued) =
                manage::queue_refresh(store.as_ref(), &caller, &table, RefreshTrigger::Manual)
                    .await?;
            let table_id = monitor.table_id.clone();
            let spinner = ProgressBar::new_spinner();
            spinner.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            spinner.set_message(format!("refreshing the monitor on {table}"));
            spinner.enable_steady_tick(Duration::from_millis(120));
            refresh::execute(
                lake.clone(),
                store.clone(),
                caller.clone(),
                monitor,
                queued.clone(),
            )
            .await;
            spinner.finish_and_clear();
            let ended = store.get_refresh(&table_id, queued.refresh_id).await?;
            match ended.state {
                RefreshState::Success => {
                    let seconds = (ended.end_time_ms.unwrap_or(ended.start_time_ms)
                        - ended.start_time_ms) as f64
                        / 1000.0;
                    println!(
                        "Refresh {} of {table} succeeded in {seconds:.2} s",
                        ended.refresh_id
                    );
                    print_overview(
                        &overview::overview(&lake, store.as_ref(), &caller, &table, None).await?,
                    );
                }
                state => bail!(
                    "Refresh {} of {table} ended {}: {}",
                    ended.refresh_id,
                    state.as_str(),
                    ended.message.unwrap_or_default()
                ),
            }
        }
        MonitorsCommand::Report {
            table,
            out,
            granularity,
            workspace,
        } => {
            let overview = overview_of(&lake, &store, workspace, &table, granularity).await?;
            std::fs::write(&out, charts::report(&overview))
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("Wrote the report of {table} to {}", out.display());
        }
        MonitorsCommand::Show {
            table,
            granularity,
            workspace,
        } => {
            print_overview(&overview_of(&lake, &store, workspace, &table, granularity).await?);
        }
        MonitorsCommand::Alerts {
            evaluate,
            workspace,
        } => {
            let caller = cli_caller(workspace);
            if evaluate {
                for alert in alerts::list(store.as_ref(), &caller).await? {
                    alerts::evaluate_now(&lake, store.as_ref(), &caller, &alert.id).await?;
                }
            }
            print_alerts(store.as_ref(), &caller).await?;
        }
    }
    Ok(())
}

/// Evaluations shown as a sparkline per alert.
const ALERT_TREND: u64 = 20;

async fn print_alerts(store: &dyn MetaStore, caller: &tarn_core::caller::Caller) -> Result<()> {
    let listed = alerts::list(store, caller).await?;
    if listed.is_empty() {
        println!("No alerts in workspace {}", caller.workspace);
        return Ok(());
    }
    println!(
        "{:<36} {:<28} {:<9} {:>12} {:<24} {:<20} {:<20} RECENT VALUES",
        "ID", "NAME", "STATE", "VALUE", "CONDITION", "EVALUATED", "STATE SINCE"
    );
    for alert in listed {
        let history = store.list_evaluations(&alert.id, ALERT_TREND).await?;
        let trend: Vec<Option<f64>> = history
            .iter()
            .rev()
            .map(|e| e.value.as_deref().and_then(|v| v.parse().ok()))
            .collect();
        let latest = history.first();
        let evaluation = &alert.settings.evaluation;
        let source = match &evaluation.source.aggregation {
            Some(aggregation) => format!("{aggregation}({})", evaluation.source.name),
            None => evaluation.source.name.clone(),
        };
        let threshold = latest
            .and_then(|e| e.threshold.clone())
            .or_else(|| {
                let value = evaluation.threshold.as_ref()?.value.as_ref()?;
                value
                    .double_value
                    .map(|v| v.to_string())
                    .or_else(|| value.string_value.clone())
                    .or_else(|| value.bool_value.map(|b| b.to_string()))
            })
            .unwrap_or_default();
        let when = |at: Option<i64>| at.map_or("-".to_string(), |ms| format_timestamp(ms / 1000));
        let value = latest
            .and_then(|e| e.value.clone())
            .or_else(|| latest.and_then(|e| e.message.clone()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<36} {:<28} {:<9} {:>12} {:<24} {:<20} {:<20} {}",
            alert.id,
            truncate(&alert.settings.display_name, 28),
            alert.state.as_str(),
            truncate(&value, 12),
            truncate(
                &format!(
                    "{source} {} {threshold}",
                    operator(&evaluation.comparison_operator)
                ),
                24
            ),
            when(alert.last_evaluated_at),
            when(alert.state_changed_at),
            sparkline(&trend)
        );
    }
    Ok(())
}

fn operator(name: &str) -> &str {
    match name {
        "GREATER_THAN" => ">",
        "GREATER_THAN_OR_EQUAL" => ">=",
        "LESS_THAN" => "<",
        "LESS_THAN_OR_EQUAL" => "<=",
        "EQUAL" => "=",
        "NOT_EQUAL" => "!=",
        "IS_NULL" => "is null",
        "IS_NOT_NULL" => "is not null",
        other => other,
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

async fn overview_of(
    lake: &Lake,
    store: &Arc<dyn MetaStore>,
    workspace: String,
    table: &str,
    granularity: Option<String>,
) -> Result<Overview> {
    let caller = cli_caller(workspace);
    Ok(overview::overview(lake, store.as_ref(), &caller, table, granularity.as_deref()).await?)
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Values as a line of bars, lowest to highest; a gap for a window without a value.
pub fn sparkline(values: &[Option<f64>]) -> String {
    let known: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (low, high) = known
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    values
        .iter()
        .map(|value| match value {
            Some(v) if v.is_finite() => {
                let share = if high > low {
                    (v - low) / (high - low)
                } else {
                    0.5
                };
                BARS[((share * 7.0).round() as usize).min(7)]
            }
            _ => ' ',
        })
        .collect()
}

fn verdict(point: &Option<DriftPoint>) -> String {
    match point {
        Some(p) => format!(
            "{} {:.4}{}",
            p.test,
            p.score,
            if p.drifted { " DRIFT" } else { "" }
        ),
        None => "-".into(),
    }
}

fn print_overview(overview: &Overview) {
    let windows = overview.windows();
    let Some(latest) = windows.last().copied() else {
        println!(
            "{}: no metrics yet; run `tarn monitors refresh`",
            overview.monitor.table_name
        );
        return;
    };
    let when = match latest {
        Some(window) => format!(
            "window {} .. {}",
            format_timestamp(window.start / 1000),
            format_timestamp(window.end / 1000)
        ),
        None => "snapshot".into(),
    };
    let table_row = overview.columns.iter().find(|s| s.column == ":table");
    let rows = table_row
        .and_then(|s| s.points.get(&latest))
        .map(|p| p.count)
        .unwrap_or_default();
    println!(
        "{} · {} · {when} · {rows} rows · source version {}",
        overview.monitor.table_name,
        overview.granularity.as_deref().unwrap_or("snapshot"),
        overview.source_version.unwrap_or_default()
    );
    if let Some(share) = table_row
        .and_then(|s| s.points.get(&latest))
        .and_then(|p| p.share_drifted)
    {
        println!(
            "columns drifted against the baseline: {:.0}%",
            share * 100.0
        );
    }
    println!(
        "{:<20} {:<10} {:>7} {:>14}  {:<16} {:<26} {:<26}",
        "COLUMN", "TYPE", "NULLS", "MEAN", "MEAN OVER TIME", "VS PREVIOUS WINDOW", "VS BASELINE"
    );
    for series in overview.columns.iter().filter(|s| s.column != ":table") {
        let Some(point) = series.points.get(&latest) else {
            continue;
        };
        let trend: Vec<Option<f64>> = windows
            .iter()
            .map(|w| series.points.get(w).and_then(|p| p.avg))
            .collect();
        let trend: String = sparkline(&trend)
            .chars()
            .rev()
            .take(16)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        println!(
            "{:<20} {:<10} {:>6.1}% {:>14}  {:<16} {:<26} {:<26}",
            series.column,
            series.data_type,
            point.percent_null.unwrap_or_default(),
            point
                .avg
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into()),
            if point.avg.is_some() {
                trend
            } else {
                "-".into()
            },
            verdict(&point.consecutive),
            verdict(&point.baseline),
        );
    }
}
