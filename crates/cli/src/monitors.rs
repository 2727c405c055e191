//! `tarn monitors ...`: table monitors through a server's API, as the token's principal:
//! create from a settings file, refresh and wait for the refresh to end, show the latest window
//! per column, write an HTML report, list the alerts on the metrics.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_core::alerts::AlertSettings;
use tarn_core::monitors::{Monitor, MonitorSettings, MonitorStatus, Refresh, RefreshState};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::format_timestamp;
use tarn_monitor::charts;
use tarn_monitor::overview::{self, DriftPoint, Overview};

use crate::client::Client;
use crate::features::in_table_workspace;

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
    },
    /// Refresh a monitor's metrics tables now, and wait for the refresh to end.
    Refresh {
        /// `catalog.schema.table`
        table: String,
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
    },
    /// List the workspace's alerts: state, the value last compared against its threshold, the
    /// values over the latest evaluations, and when the state last changed.
    Alerts {
        /// Evaluate every alert now, on the server, before listing them.
        #[arg(long)]
        evaluate: bool,
    },
    /// Show a monitor's latest window per column: rows, nulls, mean with its trend, and drift
    /// against the previous window and the baseline.
    Show {
        /// `catalog.schema.table`
        table: String,
        /// The granularity to show (the monitor's first by default).
        #[arg(long)]
        granularity: Option<String>,
    },
}

/// How often `refresh` asks how the refresh is doing.
const REFRESH_POLL: Duration = Duration::from_millis(500);

fn monitor_path(table: &str) -> String {
    format!("/api/2.1/unity-catalog/tables/{table}/monitor")
}

pub async fn run(client: &Client, command: MonitorsCommand) -> Result<()> {
    match command {
        MonitorsCommand::Create { table, settings } => {
            let text = std::fs::read_to_string(&settings)
                .with_context(|| format!("cannot read {}", settings.display()))?;
            // Checked here so a typo is named before anything is sent; sent as written.
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", settings.display()))?;
            serde_json::from_value::<MonitorSettings>(body.clone())
                .with_context(|| format!("{} is not monitor settings", settings.display()))?;
            let client = in_table_workspace(client, &table);
            let info = client.post(&monitor_path(&table), &body).await?;
            let monitor = monitor_of(info)?;
            let (profile, drift) = monitor.metrics_tables();
            println!(
                "Created the monitor on {}: metrics go to {profile} and {drift}",
                monitor.table_name
            );
        }
        MonitorsCommand::Refresh { table } => {
            let client = in_table_workspace(client, &table);
            let ended = refresh(&client, &table).await?;
            match ended.state {
                RefreshState::Success => {
                    let seconds = (ended.end_time_ms.unwrap_or(ended.start_time_ms)
                        - ended.start_time_ms) as f64
                        / 1000.0;
                    println!(
                        "Refresh {} of {table} succeeded in {seconds:.2} s",
                        ended.refresh_id
                    );
                    print_overview(&overview_of(&client, &table, None).await?);
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
        } => {
            let client = in_table_workspace(client, &table);
            let overview = overview_of(&client, &table, granularity.as_deref()).await?;
            std::fs::write(&out, charts::report(&overview))
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("Wrote the report of {table} to {}", out.display());
        }
        MonitorsCommand::Show { table, granularity } => {
            let client = in_table_workspace(client, &table);
            print_overview(&overview_of(&client, &table, granularity.as_deref()).await?);
        }
        MonitorsCommand::Alerts { evaluate } => {
            if evaluate {
                for alert in list_alerts(client).await? {
                    let path = format!("/api/2.0/tarn/alerts/{}/evaluate", alert.id);
                    client.post(&path, &json!({})).await?;
                }
            }
            print_alerts(client, &list_alerts(client).await?).await?;
        }
    }
    Ok(())
}

/// Starts a refresh and waits for it to end, showing its state meanwhile.
async fn refresh(client: &Client, table: &str) -> Result<Refresh> {
    let path = format!("{}/refreshes", monitor_path(table));
    let started: Refresh = serde_json::from_value(client.post(&path, &json!({})).await?)
        .context("the server's refresh is not a refresh")?;
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    let mut current = started;
    while current.state.is_active() {
        spinner.set_message(format!(
            "refresh {} of the monitor on {table}: {}",
            current.refresh_id,
            current.state.as_str()
        ));
        tokio::time::sleep(REFRESH_POLL).await;
        let answer = client
            .get(&format!("{path}/{}", current.refresh_id), &[])
            .await?;
        current =
            serde_json::from_value(answer).context("the server's refresh is not a refresh")?;
    }
    spinner.finish_and_clear();
    Ok(current)
}

/// The monitor the API describes. The API leaves out what only the server uses (the table's
/// id, who created the monitor and when); nothing here reads those.
fn monitor_of(mut info: Value) -> Result<Monitor> {
    let text = |info: &Value, key: &str| info.get(key).and_then(Value::as_str).map(str::to_string);
    let table_name = text(&info, "table_name").context("the server's monitor has no table")?;
    let status = MonitorStatus::parse(&text(&info, "status").unwrap_or_default());
    let monitor_version = info
        .get("monitor_version")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let latest_failure = text(&info, "latest_monitor_failure_msg");
    if let Value::Object(fields) = &mut info {
        for shown_only in [
            "table_name",
            "status",
            "monitor_version",
            "profile_metrics_table_name",
            "drift_metrics_table_name",
        ] {
            fields.remove(shown_only);
        }
    }
    let settings: MonitorSettings =
        serde_json::from_value(info).context("the server's monitor has settings tarn lacks")?;
    Ok(Monitor {
        table_id: String::new(),
        table_name,
        workspace: String::new(),
        settings,
        status,
        monitor_version,
        created_by: String::new(),
        created_at: 0,
        updated_at: 0,
        latest_failure,
    })
}

/// The rows of a table, through the table data API (Arrow IPC).
async fn table_rows(client: &Client, table: &str) -> Result<Vec<RecordBatch>> {
    let request = client.request(Method::GET, &format!("/api/2.0/tarn/tables/{table}/data"));
    let bytes = client
        .send(request)
        .await?
        .bytes()
        .await
        .with_context(|| format!("the rows of {table} broke off"))?;
    let (_, batches) = tarn_lake::ipc::decode(&bytes)?;
    Ok(batches)
}

/// The monitor's whole-table metrics at `granularity`, from its metrics tables.
async fn overview_of(client: &Client, table: &str, granularity: Option<&str>) -> Result<Overview> {
    let monitor = monitor_of(client.get(&monitor_path(table), &[]).await?)?;
    let granularity = overview::granularity_of(&monitor, granularity)?;
    let (profile_name, drift_name) = monitor.metrics_tables();
    let profile = table_rows(client, &profile_name).await?;
    let drift = table_rows(client, &drift_name).await?;
    Ok(overview::from_metrics(
        monitor,
        granularity,
        &profile,
        &drift,
    )?)
}

/// An alert as the alerts API lists it.
#[derive(Deserialize)]
struct AlertInfo {
    id: String,
    #[serde(flatten)]
    settings: AlertSettings,
}

/// One evaluation in an alert's history.
#[derive(Deserialize)]
struct EvaluationInfo {
    evaluated_at: i64,
    state: String,
    value: Option<String>,
    threshold: Option<String>,
    message: Option<String>,
}

/// Every alert of the client's workspace, page by page.
async fn list_alerts(client: &Client) -> Result<Vec<AlertInfo>> {
    let mut alerts = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get("/api/2.0/alerts", &[("page_token", page_token.clone())])
            .await?;
        let listed: Vec<AlertInfo> =
            serde_json::from_value(page.get("alerts").cloned().unwrap_or(json!([])))
                .context("the server's alerts are not alerts")?;
        alerts.extend(listed);
        match page.get("next_page_token").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => page_token = next.to_string(),
            _ => return Ok(alerts),
        }
    }
}

/// Evaluations shown as a sparkline per alert.
const ALERT_TREND: usize = 20;
/// Evaluations the history API answers with when not told how many: those looked through to
/// find when an alert's state last changed.
const STATE_HISTORY: usize = 100;

/// When the state of the newest evaluation began: the oldest of the evaluations (newest first)
/// in a row at that state, unless they go back to the first one at the state every alert
/// starts in.
fn state_since(history: &[EvaluationInfo]) -> Option<i64> {
    let latest = history.first()?;
    let run = history
        .iter()
        .take_while(|e| e.state == latest.state)
        .count();
    let began = &history[run - 1];
    let from_the_start = run == history.len() && history.len() < STATE_HISTORY;
    if from_the_start && began.state == "UNKNOWN" {
        return None;
    }
    Some(began.evaluated_at)
}

async fn print_alerts(client: &Client, listed: &[AlertInfo]) -> Result<()> {
    if listed.is_empty() {
        println!("No alerts in workspace {}", client.workspace());
        return Ok(());
    }
    println!(
        "{:<36} {:<28} {:<9} {:>12} {:<24} {:<24} {:<24} RECENT VALUES",
        "ID", "NAME", "STATE", "VALUE", "CONDITION", "EVALUATED", "STATE SINCE"
    );
    for alert in listed {
        let answer = client
            .get(&format!("/api/2.0/tarn/alerts/{}/history", alert.id), &[])
            .await?;
        let history: Vec<EvaluationInfo> =
            serde_json::from_value(answer.get("evaluations").cloned().unwrap_or(json!([])))
                .context("the server's alert history is not a list of evaluations")?;
        let trend: Vec<Option<f64>> = history
            .iter()
            .take(ALERT_TREND)
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
        let when = |at: Option<i64>| at.map_or("-".to_string(), format_timestamp);
        let value = latest
            .and_then(|e| e.value.clone())
            .or_else(|| latest.and_then(|e| e.message.clone()))
            .unwrap_or_else(|| "-".into());
        let state = evaluation
            .state
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "UNKNOWN".into());
        println!(
            "{:<36} {:<28} {:<9} {:>12} {:<24} {:<24} {:<24} {}",
            alert.id,
            truncate(&alert.settings.display_name, 28),
            state,
            truncate(&value, 12),
            truncate(
                &format!(
                    "{source} {} {threshold}",
                    operator(&evaluation.comparison_operator)
                ),
                24
            ),
            when(latest.map(|e| e.evaluated_at)),
            when(state_since(&history)),
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

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Values as a line of bars, lowest to highest; a gap for a window without a value.
fn sparkline(values: &[Option<f64>]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluations(newest_first: &[(&str, i64)]) -> Vec<EvaluationInfo> {
        newest_first
            .iter()
            .map(|(state, at)| EvaluationInfo {
                evaluated_at: *at,
                state: state.to_string(),
                value: None,
                threshold: None,
                message: None,
            })
            .collect()
    }

    #[test]
    fn a_state_began_at_the_oldest_evaluation_of_its_run() {
        assert_eq!(state_since(&evaluations(&[])), None);
        assert_eq!(state_since(&evaluations(&[("UNKNOWN", 5)])), None);
        let changed = [("TRIGGERED", 3), ("TRIGGERED", 2), ("OK", 1)];
        assert_eq!(state_since(&evaluations(&changed)), Some(2));
        assert_eq!(
            state_since(&evaluations(&[("OK", 2), ("UNKNOWN", 1)])),
            Some(2)
        );
        // UNKNOWN again after another state is a change.
        assert_eq!(
            state_since(&evaluations(&[("UNKNOWN", 2), ("OK", 1)])),
            Some(2)
        );
    }
}
