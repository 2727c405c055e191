//! `tarn experiments ...` and `tarn runs ...`: MLflow tracking from the command line, through
//! the server's MLflow REST API (what `mlflow experiments` and `mlflow runs` offer, with runs'
//! metrics as columns and a metric's history as a chart).

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, text};

#[derive(Subcommand)]
pub enum ExperimentsCommand {
    /// List experiments: id, name, lifecycle stage, last update.
    List {
        /// ACTIVE_ONLY, DELETED_ONLY or ALL.
        #[arg(long, default_value = "ACTIVE_ONLY")]
        view: String,
        /// An MLflow search filter: `name LIKE 'fraud%'`, `tags.team = 'risk'`.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Create an experiment; prints its id.
    Create {
        name: String,
        #[arg(long)]
        artifact_location: Option<String>,
    },
    /// Rename an experiment.
    Rename { experiment_id: String, name: String },
    /// Delete an experiment (restorable until garbage-collected).
    Delete { experiment_id: String },
    /// Restore a deleted experiment.
    Restore { experiment_id: String },
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// List an experiment's runs with their metrics, best first when ordered.
    List {
        /// The experiment's id or name.
        #[arg(long)]
        experiment: String,
        /// An MLflow search filter: `metrics.rmse < 0.5 and params.model = 'tree'`.
        #[arg(long)]
        filter: Option<String>,
        /// Orderings, e.g. `metrics.rmse ASC` (repeat for more).
        #[arg(long)]
        order_by: Vec<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// A run's info, parameters, latest metrics and tags.
    Show { run_id: String },
    /// A metric's history: every step as a row and the values as a chart.
    Metric { run_id: String, key: String },
    /// Delete a run.
    Delete { run_id: String },
    /// Restore a deleted run.
    Restore { run_id: String },
}

const MLFLOW: &str = "/api/2.0/mlflow";

fn time(millis: &Value) -> String {
    millis
        .as_i64()
        .or_else(|| millis.as_str().and_then(|s| s.parse().ok()))
        .map_or_else(String::new, tarn_lake::format_timestamp)
}

/// Every page of a search, up to `max` items of `field`.
async fn search_all(
    client: &Client,
    path: &str,
    mut body: Value,
    field: &str,
    max: usize,
) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    loop {
        body["max_results"] = json!((max - items.len()).clamp(1, 1000));
        let page = client.post(&format!("{MLFLOW}/{path}"), &body).await?;
        items.extend(page[field].as_array().cloned().unwrap_or_default());
        match page["next_page_token"].as_str() {
            Some(token) if !token.is_empty() && items.len() < max => {
                body["page_token"] = json!(token)
            }
            _ => break,
        }
    }
    items.truncate(max);
    Ok(items)
}

pub async fn experiments(client: &Client, command: ExperimentsCommand) -> Result<()> {
    match command {
        ExperimentsCommand::List { view, filter } => {
            let body = json!({"view_type": view, "filter": filter});
            let found = search_all(
                client,
                "experiments/search",
                body,
                "experiments",
                usize::MAX,
            )
            .await?;
            println!("{:<8} {:<40} {:<10} LAST UPDATE", "ID", "NAME", "STAGE");
            for e in found {
                println!(
                    "{:<8} {:<40} {:<10} {}",
                    text(&e["experiment_id"]),
                    text(&e["name"]),
                    text(&e["lifecycle_stage"]),
                    time(&e["last_update_time"])
                );
            }
        }
        ExperimentsCommand::Create {
            name,
            artifact_location,
        } => {
            let created = client
                .post(
                    &format!("{MLFLOW}/experiments/create"),
                    &json!({"name": name, "artifact_location": artifact_location}),
                )
                .await?;
            println!("{}", text(&created["experiment_id"]));
        }
        ExperimentsCommand::Rename {
            experiment_id,
            name,
        } => {
            client
                .post(
                    &format!("{MLFLOW}/experiments/update"),
                    &json!({"experiment_id": experiment_id, "new_name": name}),
                )
                .await?;
            println!("experiment {experiment_id} is now {name}");
        }
        ExperimentsCommand::Delete { experiment_id } => {
            client
                .post(
                    &format!("{MLFLOW}/experiments/delete"),
                    &json!({"experiment_id": experiment_id}),
                )
                .await?;
            println!("deleted experiment {experiment_id}");
        }
        ExperimentsCommand::Restore { experiment_id } => {
            client
                .post(
                    &format!("{MLFLOW}/experiments/restore"),
                    &json!({"experiment_id": experiment_id}),
                )
                .await?;
            println!("restored experiment {experiment_id}");
        }
    }
    Ok(())
}

/// The id of the experiment named by id or by name.
async fn experiment_id(client: &Client, id_or_name: &str) -> Result<String> {
    if !id_or_name.is_empty() && id_or_name.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(id_or_name.to_string());
    }
    let found = client
        .get(
            &format!("{MLFLOW}/experiments/get-by-name"),
            &[("experiment_name", id_or_name.to_string())],
        )
        .await?;
    Ok(text(&found["experiment"]["experiment_id"]))
}

/// A key's value among a run's `[{key, value}]` list.
fn entries(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let value = match &entry["value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (text(&entry["key"]), value)
        })
        .collect()
}

pub async fn runs(client: &Client, command: RunsCommand) -> Result<()> {
    match command {
        RunsCommand::List {
            experiment,
            filter,
            order_by,
            max,
        } => {
            let id = experiment_id(client, &experiment).await?;
            let body = json!({"experiment_ids": [id], "filter": filter, "order_by": order_by});
            let found = search_all(client, "runs/search", body, "runs", max).await?;
            print_runs(&found);
        }
        RunsCommand::Show { run_id } => {
            let run = client
                .get(&format!("{MLFLOW}/runs/get"), &[("run_id", run_id)])
                .await?;
            let info = &run["run"]["info"];
            let data = &run["run"]["data"];
            println!("run         {}", text(&info["run_id"]));
            println!("name        {}", text(&info["run_name"]));
            println!("experiment  {}", text(&info["experiment_id"]));
            println!("status      {}", text(&info["status"]));
            println!("started     {}", time(&info["start_time"]));
            println!("ended       {}", time(&info["end_time"]));
            println!("artifacts   {}", text(&info["artifact_uri"]));
            for (title, field) in [
                ("params", "params"),
                ("metrics", "metrics"),
                ("tags", "tags"),
            ] {
                let mut listed = entries(&data[field]);
                if listed.is_empty() {
                    continue;
                }
                listed.sort();
                println!("{title}:");
                let width = listed.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (key, value) in listed {
                    println!("  {key:<width$}  {value}");
                }
            }
        }
        RunsCommand::Metric { run_id, key } => {
            let mut points = Vec::new();
            let mut page_token: Option<String> = None;
            loop {
                let mut query = vec![("run_id", run_id.clone()), ("metric_key", key.clone())];
                if let Some(token) = &page_token {
                    query.push(("page_token", token.clone()));
                }
                let page = client
                    .get(&format!("{MLFLOW}/metrics/get-history"), &query)
                    .await?;
                points.extend(page["metrics"].as_array().cloned().unwrap_or_default());
                match page["next_page_token"].as_str() {
                    Some(token) if !token.is_empty() => page_token = Some(token.to_string()),
                    _ => break,
                }
            }
            if points.is_empty() {
                bail!("run {run_id} has no metric {key}");
            }
            println!("{:>8} {:>16}  TIME", "STEP", "VALUE");
            let mut values = Vec::new();
            for point in &points {
                let value = point["value"]
                    .as_f64()
                    .context("a metric without a value")?;
                values.push(value);
                // The value as the server wrote it: exact, and `2.0` not `2`.
                println!(
                    "{:>8} {:>16}  {}",
                    point["step"].as_i64().unwrap_or(0),
                    point["value"].to_string(),
                    time(&point["timestamp"])
                );
            }
            println!("{key}: {}", sparkline(&values));
        }
        RunsCommand::Delete { run_id } => {
            client
                .post(&format!("{MLFLOW}/runs/delete"), &json!({"run_id": run_id}))
                .await?;
            println!("deleted run {run_id}");
        }
        RunsCommand::Restore { run_id } => {
            client
                .post(
                    &format!("{MLFLOW}/runs/restore"),
                    &json!({"run_id": run_id}),
                )
                .await?;
            println!("restored run {run_id}");
        }
    }
    Ok(())
}

/// Runs as rows, with every metric any of them has as a column.
fn print_runs(runs: &[Value]) {
    let mut metric_keys: Vec<String> = runs
        .iter()
        .flat_map(|r| entries(&r["data"]["metrics"]))
        .map(|(k, _)| k)
        .collect();
    metric_keys.sort();
    metric_keys.dedup();
    let mut header = format!(
        "{:<32} {:<24} {:<9} {:<24}",
        "RUN ID", "NAME", "STATUS", "STARTED"
    );
    for key in &metric_keys {
        header.push_str(&format!(" {key:>12}"));
    }
    println!("{header}");
    for run in runs {
        let info = &run["info"];
        let metrics = entries(&run["data"]["metrics"]);
        let mut line = format!(
            "{:<32} {:<24} {:<9} {:<24}",
            text(&info["run_id"]),
            text(&info["run_name"]),
            text(&info["status"]),
            time(&info["start_time"])
        );
        for key in &metric_keys {
            let value = metrics
                .iter()
                .find(|(k, _)| k == key)
                .map_or("", |(_, v)| v.as_str());
            line.push_str(&format!(" {value:>12}"));
        }
        println!("{line}");
    }
}

/// Values as a line of block characters, lowest to highest; NaN and infinities as spaces.
fn sparkline(values: &[f64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    values
        .iter()
        .map(|v| {
            if !v.is_finite() {
                return ' ';
            }
            let position = if high > low {
                (v - low) / (high - low)
            } else {
                0.5
            };
            // position is within 0..=1, so the index is within the eight blocks.
            BLOCKS[((position * 7.0).round() as usize).min(7)]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::sparkline;

    #[test]
    fn a_sparkline_spans_lowest_to_highest() {
        assert_eq!(sparkline(&[1.0, 2.0, 3.0, 8.0]), "▁▂▃█");
        assert_eq!(sparkline(&[5.0, 5.0]), "▅▅");
        assert_eq!(sparkline(&[0.0, f64::NAN, 1.0]), "▁ █");
        assert_eq!(sparkline(&[]), "");
    }
}
