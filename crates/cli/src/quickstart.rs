//! `tarn quickstart`: start tarn on embedded defaults and walk through the platform with a real,
//! small example: ingest a raw CSV file of sensor readings into a bronze table of `dev` (bad
//! rows quarantined), build a silver table from it with SQL and a feature table of each
//! sensor's daily statistics from that, build a point-in-time training set, train a linear
//! model three ways on it and track the runs, register the best one (with its training set),
//! move it through Staging to Production, show the registry's signed webhooks, publish the
//! features online and look one up, serve the champion on an endpoint with requests by key and
//! show its inference table, monitor the endpoint's predictions for drift against the training
//! table, and show the lineage from the raw file to the model.
//!
//! The pipeline (ingest, features, train, register) is a job, `quickstart pipeline`, whose
//! tasks run this binary's steps (`tarn quickstart --step ...`) as processes with the job
//! owner's token, as any job's tasks do; the quickstart runs it, follows it live, shows what
//! each task printed, and leaves it with a daily schedule, paused.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::client::Client;
use crate::server::{ServerArgs, StoreArgs};

#[derive(Args)]
pub struct QuickstartArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, env = "TARN_PORT", default_value_t = 5000)]
    port: u16,
    /// Keep serving after the example, until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
    /// One step of the pipeline, as the job's task runs it (with TARN_HOST and TARN_TOKEN).
    #[arg(long, hide = true, value_enum)]
    step: Option<Step>,
    /// The training run whose model `--step register` registers.
    #[arg(long, hide = true)]
    run_id: Option<String>,
}

/// The pipeline's steps: the job's tasks, in order.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Step {
    /// Raw file -> bronze (ingestion) -> silver (SQL).
    Ingest,
    /// The sensors' daily statistics, a feature table.
    Features,
    /// A point-in-time training set, three tracked training runs; the best run as a task value.
    Train,
    /// The best run's model registered and promoted; the features published online.
    Register,
}

impl Step {
    const ALL: [Step; 4] = [Step::Ingest, Step::Features, Step::Train, Step::Register];

    fn key(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Features => "features",
            Step::Train => "train",
            Step::Register => "register",
        }
    }
}

/// The job that runs the pipeline.
const PIPELINE_JOB: &str = "quickstart pipeline";
/// Its schedule, left paused: every day at 06:00 UTC.
const PIPELINE_SCHEDULE: &str = "0 0 6 * * ?";
/// The experiment the training runs go to.
const EXPERIMENT: &str = "quickstart-linear-regression";

/// The raw measurements as a sensor would drop them: a CSV file with a few broken lines.
/// When the quickstart's readings start; one reading every 7 minutes after.
const FIRST_READING: &str = "2026-11-01T00:00:00Z";
/// Readings come from this many sensors, in turn.
const SENSORS: usize = 40;

/// The time of reading `id`, RFC 3339.
fn read_at(id: usize) -> String {
    let start = tarn_lake::parse_timestamp(FIRST_READING)
        .map(|at| at.timestamp_millis())
        .unwrap_or_default();
    tarn_lake::format_timestamp(start + id as i64 * 7 * 60_000)
}

fn raw_csv(xs: &[[f64; 2]], ys: &[f64]) -> String {
    let mut csv = String::from("id,sensor_id,read_at,x0,x1,y\n");
    for (id, (x, y)) in xs.iter().zip(ys).enumerate() {
        let (sensor, at) = (id % SENSORS, read_at(id));
        csv.push_str(&format!(
            "{id},{sensor},{at},{:.6},{:.6},{y:.6}\n",
            x[0], x[1]
        ));
        // Every 500th reading comes out garbled and every 700th is a glitch no model should
        // learn from, as real feeds do: ingestion quarantines the first, SQL filters the second.
        if id % 500 == 499 {
            csv.push_str(&format!(
                "{},{sensor},{at},n/a,{:.6},{y:.6}\n",
                id + 100_000,
                x[1]
            ));
        }
        if id % 700 == 699 {
            csv.push_str(&format!(
                "{},{sensor},{at},{:.6},{:.6},9999.0\n",
                id + 200_000,
                x[0],
                x[1]
            ));
        }
    }
    csv.push_str("999999,0.5\n");
    csv
}

/// A deterministic synthetic regression problem: y = 3 x0 - 2 x1 + 0.5 + noise.
fn make_data(rows: usize) -> (Vec<[f64; 2]>, Vec<f64>) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut xs = Vec::with_capacity(rows);
    let mut ys = Vec::with_capacity(rows);
    for _ in 0..rows {
        let x = [next() * 2.0 - 1.0, next() * 2.0 - 1.0];
        ys.push(3.0 * x[0] - 2.0 * x[1] + 0.5 + (next() - 0.5) * 0.1);
        xs.push(x);
    }
    (xs, ys)
}

/// Full-batch gradient descent; returns the weights, bias and the loss after every epoch.
fn train(
    xs: &[[f64; 2]],
    ys: &[f64],
    learning_rate: f64,
    epochs: usize,
) -> ([f64; 2], f64, Vec<f64>) {
    let (mut w, mut b) = ([0.0f64; 2], 0.0f64);
    let n = xs.len() as f64;
    let mut losses = Vec::with_capacity(epochs);
    for _ in 0..epochs {
        let (mut gw, mut gb, mut loss) = ([0.0f64; 2], 0.0f64, 0.0f64);
        for (x, y) in xs.iter().zip(ys) {
            let error = w[0] * x[0] + w[1] * x[1] + b - y;
            loss += error * error;
            gw[0] += error * x[0];
            gw[1] += error * x[1];
            gb += error;
        }
        w[0] -= learning_rate * 2.0 * gw[0] / n;
        w[1] -= learning_rate * 2.0 * gw[1] / n;
        b -= learning_rate * 2.0 * gb / n;
        losses.push(loss / n);
    }
    (w, b, losses)
}

pub async fn run(args: QuickstartArgs) -> Result<()> {
    if let Some(step) = args.step {
        return run_step(step, &args).await;
    }
    let mut server_args = ServerArgs::defaults();
    server_args.store = args.store.clone();
    server_args.host = "127.0.0.1".to_string();
    server_args.port = args.port;
    // The quickstart's own receiver listens on loopback.
    server_args.webhooks_allow_private = true;
    let started = match crate::server::start_server(&server_args).await {
        Ok(started) => started,
        Err(err) => {
            eprintln!("port {} is taken ({err:#}); using a free port", args.port);
            server_args.port = 0;
            crate::server::start_server(&server_args).await?
        }
    };
    let (state, listener, bootstrap) = started;
    let lake = Lakehouse {
        store: state.store.clone(),
        lake: state.lake.clone(),
    };
    let address = listener.local_addr()?;
    crate::server::announce_admin_token(&bootstrap);
    let token = match &server_args.admin_token {
        Some(token) => token.clone(),
        None => crate::server::read_admin_token(&args.store.data_dir)?,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tarn_server::serve(state, listener, async move {
        let _ = stop_rx.await;
    }));

    let base = format!("http://{address}");
    let client = Client::new(base.clone(), "dev".to_string(), token.clone())?;
    let job_id = pipeline_job(&client, &args.store.data_dir).await?;
    println!(
        "Running job {job_id} ({PIPELINE_JOB}: ingest -> features -> train -> register), its \
         tasks as processes acting as the job's owner:"
    );
    let started = client
        .call(
            reqwest::Method::POST,
            "/api/2.2/jobs/run-now",
            json!({"job_id": job_id}),
        )
        .await?;
    let run_id = started["run_id"].as_i64().context("run id")?;
    let caller = crate::local::cli_caller("dev".to_string());
    let store = lake.store.clone();
    crate::jobs::follow_run(&client, run_id).await?;
    let ended = tarn_jobs::runs::run_for(
        store.as_ref(),
        &caller,
        run_id,
        tarn_core::auth::PermissionLevel::CanView,
    )
    .await?;
    for task in ended.latest_attempts() {
        let output = tarn_jobs::runs::output(
            store.as_ref(),
            &args.store.jobs_folder(),
            &caller,
            task.run_id,
        )
        .await?;
        println!();
        println!("[{}]", task.task_key);
        print!("{}", output.logs);
    }
    if ended.state.result != Some(tarn_core::jobs::ResultState::Success) {
        bail!(
            "run {run_id} of the pipeline ended {}: {} (the task logs are above)",
            ended
                .state
                .result
                .map_or("without a result", |r| r.as_str()),
            ended.state.message,
        );
    }
    serve_champion(&client).await?;
    monitor_predictions(&client).await?;
    println!();
    println!("Lineage of {FEATURE_TABLE}:");
    let both = [
        tarn_core::lineage::Direction::Upstream,
        tarn_core::lineage::Direction::Downstream,
    ];
    let graph = tarn_lake::lineage::lineage_graph(
        lake.store.as_ref(),
        &lake.admin().await?,
        FEATURE_TABLE,
        &both,
        4,
    )
    .await?;
    print!("{}", crate::lineage::render_tree(&graph, &both));
    println!();
    println!(
        "Where to look (while this server, or `tarn server --data-dir {}`, runs):",
        args.store.data_dir.display()
    );
    let dir = args.store.data_dir.display();
    println!(
        "  tracking URI   MLFLOW_TRACKING_URI={base}   (workspaces: {base}/ws/staging, {base}/ws/prod)"
    );
    println!("  admin token    MLFLOW_TRACKING_TOKEN=$(cat {dir}/admin.token)");
    println!(
        "  try            curl -s -H \"Authorization: Bearer $(cat {dir}/admin.token)\" '{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={EXPERIMENT}'"
    );
    println!(
        "  the CLI        export TARN_HOST={base} TARN_TOKEN=$(cat {dir}/admin.token)   (or: tarn configure --host {base})"
    );
    println!("  SQL            tarn sql \"SELECT count(*) FROM {TRAINING_TABLE}\"");
    println!("  lineage        tarn lineage {TRAINING_TABLE}");
    println!("  features       tarn features show {FEATURE_TABLE}");
    println!("  monitoring     tarn monitors show {PREDICTIONS_TABLE}");
    println!("  metrics        {base}/metrics");
    println!(
        "  the pipeline   tarn jobs runs --job-id {job_id}   (daily at 06:00 UTC, paused: tarn jobs get {job_id})"
    );
    if args.keep_serving {
        println!("Serving until Ctrl-C.");
        crate::server::shutdown_signal().await;
    } else {
        println!(
            "The server stops now; `tarn server --data-dir {}` serves the same data.",
            args.store.data_dir.display()
        );
    }
    let _ = stop_tx.send(());
    server.await??;
    Ok(())
}

/// Trains the model three ways on the training set, each a tracked run with its dataset, its
/// loss curve and its model (JSON and ONNX in an MLflow model directory); the best run's id.
async fn train_runs(client: &Client, training: &TrainingSet) -> Result<String> {
    let experiment_id = match client
        .call(
            reqwest::Method::GET,
            "/api/2.0/mlflow/experiments/get-by-name",
            json!({"experiment_name": EXPERIMENT}),
        )
        .await
    {
        Ok(found) => found["experiment"]["experiment_id"]
            .as_str()
            .unwrap_or("0")
            .to_string(),
        Err(_) => client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/experiments/create",
                json!({"name": EXPERIMENT}),
            )
            .await?["experiment_id"]
            .as_str()
            .unwrap_or("0")
            .to_string(),
    };
    let (xs, ys) = (&training.xs, &training.ys);
    println!();
    println!(
        "Training a linear model with three learning rates on {TRAINING_TABLE} (version {}), tracked in experiment {experiment_id} of workspace dev:",
        training.version
    );
    let epochs = 60;
    for learning_rate in [0.01, 0.05, 0.2] {
        let run = client
            .call(reqwest::Method::POST, "/api/2.0/mlflow/runs/create",
                json!({"experiment_id": experiment_id, "run_name": format!("lr-{learning_rate}"), "start_time": tarn_core::ids::now_millis(),
                       "tags": [{"key": "mlflow.source.name", "value": "tarn quickstart"},
                                {"key": "tarn.training_set_id", "value": training.id}]}),
            )
            .await?;
        let run_id = run["run"]["info"]["run_id"]
            .as_str()
            .context("run id")?
            .to_string();
        client
            .call(
                reqwest::Method::POST,
                "/api/2.0/mlflow/runs/log-inputs",
                json!({"run_id": run_id, "datasets": [training.dataset_input()]}),
            )
            .await?;
        let (w, b, losses) = train(xs, ys, learning_rate, epochs);
        let now = tarn_core::ids::now_millis();
        let metrics: Vec<Value> = losses
            .iter()
            .enumerate()
            .map(|(step, loss)| json!({"key": "train_mse", "value": loss, "timestamp": now, "step": step}))
            .collect();
        let rmse = losses.last().copied().unwrap_or(f64::NAN).sqrt();
        client
            .call(reqwest::Method::POST, "/api/2.0/mlflow/runs/log-batch",
                json!({"run_id": run_id, "metrics": metrics,
                       "params": [{"key": "learning_rate", "value": learning_rate.to_string()}, {"key": "epochs", "value": epochs.to_string()}, {"key": "rows", "value": xs.len().to_string()}]}),
            )
            .await?;
        client.call(reqwest::Method::POST, "/api/2.0/mlflow/runs/log-metric", json!({"run_id": run_id, "key": "rmse", "value": rmse, "timestamp": now, "step": 0})).await?;
        let model = json!({"weights": w, "bias": b});
        let artifacts =
            format!("/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/model");
        client
            .send(
                client
                    .request(reqwest::Method::PUT, &format!("{artifacts}/model.json"))
                    .body(model.to_string()),
            )
            .await?;
        // The same model as ONNX in an MLflow model directory: what the endpoint serves.
        let linear = tarn_models::export::LinearModel {
            features: vec!["x0".into(), "x1".into()],
            coefficients: vec![w[0] as f32, w[1] as f32],
            intercept: b as f32,
        };
        let created = tarn_lake::format_timestamp(now);
        for (file, body) in [
            ("MLmodel", linear.mlmodel(&run_id, &created).into_bytes()),
            ("model.onnx", linear.onnx()),
        ] {
            client
                .send(
                    client
                        .request(reqwest::Method::PUT, &format!("{artifacts}/{file}"))
                        .body(body),
                )
                .await?;
        }
        client.call(reqwest::Method::POST, "/api/2.0/mlflow/runs/update", json!({"run_id": run_id, "status": "FINISHED", "end_time": tarn_core::ids::now_millis()})).await?;
        println!(
            "  run {run_id}  learning_rate={learning_rate:<5} rmse={rmse:.4}  w=[{:.3}, {:.3}] b={b:.3}",
            w[0], w[1]
        );
    }
    let best = client
        .call(reqwest::Method::POST, "/api/2.0/mlflow/runs/search",
            json!({"experiment_ids": [experiment_id], "filter": "attributes.status = 'FINISHED'", "order_by": ["metrics.rmse ASC"], "max_results": 1}),
        )
        .await?;
    let best_run = &best["runs"][0];
    println!(
        "Best run by rmse: {} ({})",
        best_run["info"]["run_name"].as_str().unwrap_or("?"),
        best_run["info"]["run_id"].as_str().unwrap_or("?")
    );
    let best_run_id = best_run["info"]["run_id"]
        .as_str()
        .context("best run id")?
        .to_string();
    Ok(best_run_id)
}

const MODEL_NAME: &str = "quickstart-linear";
const RAW_TABLE: &str = "dev.bronze.quickstart_measurements";
const TRAINING_TABLE: &str = "dev.silver.quickstart_training";
const FEATURE_TABLE: &str = "dev.features.quickstart_sensor_daily";

/// Runs one step of the pipeline, as the job's task does: against the server at TARN_HOST with
/// the task's token, and on the data directory's store and lake for ingestion.
async fn run_step(step: Step, args: &QuickstartArgs) -> Result<()> {
    let variable = |name: &str| {
        std::env::var(name)
            .with_context(|| format!("--step runs inside the pipeline's job, which sets {name}"))
    };
    let client = Client::new(
        variable("TARN_HOST")?,
        "dev".to_string(),
        variable("TARN_TOKEN")?,
    )?;
    let lake = Lakehouse {
        store: args.store.open().await?,
        lake: std::sync::Arc::new(tarn_lake::Lake::open(&args.store.lake_root(None))?),
    };
    match step {
        Step::Ingest => {
            let (raw_x, raw_y) = make_data(2000);
            build_silver_table(&client, &lake, &args.store.data_dir, &raw_x, &raw_y).await
        }
        Step::Features => refresh_feature_table(&client, &lake).await,
        Step::Train => {
            let training = training_set(&client).await?;
            let best = train_runs(&client, &training).await?;
            // The register task takes it as {{tasks.train.values.best_run_id}}.
            let values = variable("TARN_TASK_VALUES")?;
            std::fs::write(&values, json!({ "best_run_id": best }).to_string())
                .with_context(|| format!("cannot write {values}"))
        }
        Step::Register => {
            let run_id = args
                .run_id
                .as_deref()
                .context("--step register needs --run-id")?;
            register_and_promote(&client, run_id).await?;
            publish_features(&client).await
        }
    }
}

/// Creates the pipeline's job, or resets it to these settings when an earlier quickstart made
/// it: one task per step, each running this binary through a small launcher, and a daily
/// schedule, paused. Its id.
async fn pipeline_job(client: &Client, data_dir: &std::path::Path) -> Result<i64> {
    let folder = data_dir.join("quickstart").join("pipeline");
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let launcher = folder.join("tarn_step.py");
    let binary = std::env::current_exe().context("cannot find the tarn binary")?;
    std::fs::write(
        &launcher,
        format!(
            "# A task of the quickstart's pipeline: one step of `tarn quickstart`.\n\
             import os, sys\n\
             tarn = {binary:?}\n\
             os.execv(tarn, [tarn, \"quickstart\", *sys.argv[1:]])\n",
            binary = binary.display().to_string()
        ),
    )
    .with_context(|| format!("cannot write {}", launcher.display()))?;
    let data_dir = std::path::absolute(data_dir)?.display().to_string();
    let mut previous: Option<&str> = None;
    let tasks: Vec<Value> = Step::ALL
        .iter()
        .map(|step| {
            let mut parameters = vec!["--data-dir", &data_dir, "--step", step.key()];
            if *step == Step::Register {
                parameters.extend(["--run-id", "{{tasks.train.values.best_run_id}}"]);
            }
            let mut task = json!({
                "task_key": step.key(),
                "spark_python_task": {"python_file": launcher.display().to_string(), "parameters": parameters},
            });
            if let Some(upstream) = previous {
                task["depends_on"] = json!([{ "task_key": upstream }]);
            }
            previous = Some(step.key());
            task
        })
        .collect();
    let settings = json!({
        "name": PIPELINE_JOB,
        "description": "tarn quickstart's pipeline: raw file to a registered, promoted model",
        "tasks": tasks,
        "schedule": {"quartz_cron_expression": PIPELINE_SCHEDULE, "timezone_id": "UTC", "pause_status": "PAUSED"},
    });
    let listed = client
        .call(
            reqwest::Method::GET,
            "/api/2.2/jobs/list",
            json!({"name": PIPELINE_JOB}),
        )
        .await?;
    if let Some(job_id) = listed["jobs"][0]["job_id"].as_i64() {
        client
            .call(
                reqwest::Method::POST,
                "/api/2.2/jobs/reset",
                json!({"job_id": job_id, "new_settings": settings}),
            )
            .await?;
        return Ok(job_id);
    }
    let created = client
        .call(reqwest::Method::POST, "/api/2.2/jobs/create", settings)
        .await?;
    created["job_id"].as_i64().context("job id")
}

/// The server's store and lake, for what the quickstart does in-process (ingestion, lineage),
/// as `tarn ingest` and `tarn lineage` do.
struct Lakehouse {
    store: std::sync::Arc<dyn tarn_core::store::MetaStore>,
    lake: std::sync::Arc<tarn_lake::Lake>,
}

impl Lakehouse {
    /// The admin, in `dev`: whom the quickstart's HTTP calls act as, too.
    async fn admin(&self) -> Result<tarn_core::caller::Caller> {
        let admin = self.store.get_principal(tarn_server::ADMIN_USER).await?;
        let principal = tarn_core::auth::Principal {
            id: admin.id,
            name: admin.name,
            kind: tarn_core::auth::PrincipalKind::User,
            is_admin: true,
            group_ids: Vec::new(),
            only_workspace: None,
        };
        Ok(tarn_core::caller::Caller::new("dev", principal))
    }
}

/// The training set's rows, its id, and the silver table's version it was built from.
struct TrainingSet {
    id: String,
    xs: Vec<[f64; 2]>,
    ys: Vec<f64>,
    version: u64,
    /// Rows that found their sensor's statistics.
    with_features: usize,
}

impl TrainingSet {
    /// The table as an MLflow dataset input, so each run records the exact data it used.
    fn dataset_input(&self) -> Value {
        let source =
            json!({"delta_table_name": TRAINING_TABLE, "delta_table_version": self.version});
        json!({
            "tags": [{"key": "mlflow.data.context", "value": "training"}],
            "dataset": {
                "name": TRAINING_TABLE,
                "digest": format!("v{}", self.version),
                "source_type": "delta_table",
                "source": source.to_string(),
                "schema": json!({"mlflow_colspec": [
                    {"name": "x0", "type": "double"}, {"name": "x1", "type": "double"}, {"name": "y", "type": "double"}
                ]}).to_string(),
                "profile": json!({"num_rows": self.ys.len()}).to_string(),
            }
        })
    }
}

/// Raw file -> bronze (ingestion, bad rows quarantined) -> silver (SQL).
async fn build_silver_table(
    client: &Client,
    lake: &Lakehouse,
    data_dir: &std::path::Path,
    xs: &[[f64; 2]],
    ys: &[f64],
) -> Result<()> {
    for schema in ["bronze", "silver", "features"] {
        let created = client
            .call(
                reqwest::Method::POST,
                "/api/2.1/unity-catalog/schemas",
                json!({"name": schema, "catalog_name": "dev"}),
            )
            .await;
        if let Err(err) = created
            && !err.to_string().contains("RESOURCE_ALREADY_EXISTS")
        {
            return Err(err);
        }
    }
    let landing = data_dir.join("quickstart").join("landing");
    std::fs::create_dir_all(&landing)
        .with_context(|| format!("cannot create {}", landing.display()))?;
    let raw = landing.join("measurements.csv");
    std::fs::write(&raw, raw_csv(xs, ys))
        .with_context(|| format!("cannot write {}", raw.display()))?;
    let report = lake
        .lake
        .ingest(
            lake.store.as_ref(),
            &lake.admin().await?,
            &tarn_lake::ingest::IngestSpec {
                table: RAW_TABLE.into(),
                sources: vec![landing.clone()],
                format: None,
                columns: Some(
                    [
                        ("id", "bigint"),
                        ("sensor_id", "bigint"),
                        ("read_at", "timestamp"),
                        ("x0", "double"),
                        ("x1", "double"),
                        ("y", "double"),
                    ]
                    .into_iter()
                    .map(|(name, kind)| tarn_core::catalog::ColumnInfo::new(name, kind))
                    .collect(),
                ),
            },
            &|_| {},
        )
        .await?;
    println!("Ingesting {} into {RAW_TABLE}:", landing.display());
    for file in &report.files {
        println!(
            "  {}: {} rows written, {} bad rows to {}",
            file.source,
            file.rows_written,
            file.rows_quarantined,
            report.quarantine_table.as_deref().unwrap_or("-")
        );
    }
    for skipped in &report.skipped {
        println!("  {skipped}: ingested before, skipped");
    }
    let statement = format!(
        "CREATE OR REPLACE TABLE {TRAINING_TABLE} AS \
         SELECT sensor_id, read_at, x0, x1, y FROM {RAW_TABLE} WHERE y BETWEEN -10 AND 10"
    );
    let result = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/sql/statements",
            json!({"statement": statement, "wait_timeout": "50s"}),
        )
        .await?;
    if result["status"]["state"] != "SUCCEEDED" {
        bail!("building {TRAINING_TABLE} failed: {}", result["status"]);
    }
    println!("Built {TRAINING_TABLE} with SQL: {statement}");
    Ok(())
}

/// Each sensor's daily statistics from the silver table. A day's figures are known only when
/// the day is over: stamping them at the day's start would let a reading see statistics of
/// readings after it, a leak no point-in-time join can catch.
const SENSOR_STATS: &str = "SELECT sensor_id, date_trunc('day', read_at) + INTERVAL '1' DAY AS known_at, \
     count(*) AS readings, avg(x0) AS mean_x0, avg(x1) AS mean_x1 \
     FROM dev.silver.quickstart_training GROUP BY 1, 2";

/// Creates the sensors' feature table from the silver table, or on a later run merges the
/// statistics computed again (a changed value replaces the old one in a new version).
async fn refresh_feature_table(client: &Client, lake: &Lakehouse) -> Result<()> {
    let path = format!("/api/2.0/tarn/feature-tables/{FEATURE_TABLE}");
    if client
        .call(reqwest::Method::GET, &path, json!({}))
        .await
        .is_err()
    {
        let created = client
            .call(
                reqwest::Method::POST,
                "/api/2.0/tarn/feature-tables",
                json!({"name": FEATURE_TABLE, "primary_keys": ["sensor_id"], "timestamp_keys": ["known_at"],
                       "description": "Daily statistics per sensor, known at the end of each day",
                       "query": SENSOR_STATS}),
            )
            .await?;
        println!(
            "Built feature table {FEATURE_TABLE} (keys sensor_id, known_at; from {}) with {} features",
            created["source_tables"][0].as_str().unwrap_or("?"),
            created["features"].as_array().map_or(0, Vec::len)
        );
        return Ok(());
    }
    let admin = lake.admin().await?;
    let rows = lake
        .lake
        .query(
            lake.store.as_ref(),
            &admin,
            SENSOR_STATS,
            &Default::default(),
        )
        .await?;
    let merged = tarn_features::tables::write(
        &lake.lake,
        lake.store.as_ref(),
        &admin,
        FEATURE_TABLE,
        rows.batches,
    )
    .await?;
    println!(
        "Refreshed feature table {FEATURE_TABLE}: {} rows merged ({} updated, {} new), version {}",
        merged.num_source_rows, merged.num_updated_rows, merged.num_inserted_rows, merged.version
    );
    Ok(())
}

/// The training set: every silver row with its sensor's statistics as of the day before,
/// built point-in-time by tarn and recorded with the table versions it read.
async fn training_set(client: &Client) -> Result<TrainingSet> {
    let spec = json!({
        "label": {"table": TRAINING_TABLE},
        "feature_lookups": [{"table_name": FEATURE_TABLE, "lookup_key": ["sensor_id"], "timestamp_lookup_key": "read_at",
                             "lookback_window": "2d", "feature_names": ["readings", "mean_x0", "mean_x1"],
                             "default_values": {"readings": 0}}],
    });
    let response = client
        .send(
            client
                .request(reqwest::Method::POST, "/api/2.0/tarn/training-sets")
                .json(&spec),
        )
        .await?;
    let id = response
        .headers()
        .get("x-tarn-training-set-id")
        .and_then(|v| v.to_str().ok())
        .context("training set id")?
        .to_string();
    let bytes = response.bytes().await?;
    let record = client
        .call(
            reqwest::Method::GET,
            &format!("/api/2.0/tarn/training-sets/{id}"),
            json!({}),
        )
        .await?;
    let version = record["training_set"]["spec"]["label"]["version"]
        .as_u64()
        .context("label version")?;
    let (_, batches) = tarn_lake::ipc::decode(&bytes)?;
    let mut set = TrainingSet {
        id,
        xs: Vec::new(),
        ys: Vec::new(),
        version,
        with_features: 0,
    };
    for batch in &batches {
        let column = |name: &str| -> Result<Vec<Option<f64>>> {
            let array = batch
                .column_by_name(name)
                .with_context(|| format!("the training set has no column {name}"))?;
            let doubles = tarn_lake::arrow::compute::cast(
                array,
                &tarn_lake::arrow::datatypes::DataType::Float64,
            )?;
            let doubles = doubles
                .as_any()
                .downcast_ref::<tarn_lake::arrow::array::Float64Array>()
                .context("doubles")?;
            Ok(doubles.iter().collect())
        };
        let (x0, x1, y) = (column("x0")?, column("x1")?, column("y")?);
        set.with_features += column("mean_x0")?.iter().flatten().count();
        let value = |v: Option<f64>| v.unwrap_or(f64::NAN);
        set.xs
            .extend(x0.into_iter().zip(x1).map(|(a, b)| [value(a), value(b)]));
        set.ys.extend(y.into_iter().map(value));
    }
    println!(
        "Built training set {} point-in-time: {} rows of {TRAINING_TABLE} version {version}, {} with their sensor's statistics of the day before (the first day's readings have none)",
        set.id,
        set.ys.len(),
        set.with_features
    );
    Ok(set)
}

/// Publishes the sensors' latest statistics to the online store and looks one up.
async fn publish_features(client: &Client) -> Result<()> {
    let published = client
        .call(
            reqwest::Method::POST,
            &format!("/api/2.0/tarn/feature-tables/{FEATURE_TABLE}/publish"),
            json!({}),
        )
        .await?;
    println!();
    println!(
        "Published {FEATURE_TABLE} version {} to the {} online store ({}): {} keys written",
        published["version"],
        published["online_store"].as_str().unwrap_or("?"),
        published["mode"].as_str().unwrap_or("?"),
        published["keys_written"]
    );
    let found = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/tarn/online/lookup",
            json!({"table_name": FEATURE_TABLE, "keys": [{"sensor_id": 7}]}),
        )
        .await?;
    let hit = &found["results"][0];
    println!(
        "  online lookup of sensor 7: {} {} (as of {})",
        hit["status"].as_str().unwrap_or("?"),
        hit["values"],
        hit["feature_timestamp"]
            .as_i64()
            .map(|us| tarn_lake::format_timestamp(us / 1000))
            .unwrap_or_default()
    );
    Ok(())
}

const ENDPOINT: &str = "quickstart";
const INFERENCE_TABLE: &str = "dev.inference.quickstart_payload";

/// Serves the champion on an endpoint, sends requests by sensor (the endpoint looks up the
/// sensor's features online, as the training set did offline) and shows the inference table.
async fn serve_champion(client: &Client) -> Result<()> {
    let config =
        json!({"served_entities": [{"entity_name": MODEL_NAME, "entity_alias": "champion"}]});
    let exists = client
        .call(
            reqwest::Method::GET,
            &format!("/api/2.0/serving-endpoints/{ENDPOINT}"),
            json!({}),
        )
        .await
        .is_ok();
    let endpoint = if exists {
        client
            .call(
                reqwest::Method::PUT,
                &format!("/api/2.0/serving-endpoints/{ENDPOINT}/config"),
                config,
            )
            .await?
    } else {
        client
            .call(
                reqwest::Method::POST,
                "/api/2.0/serving-endpoints",
                json!({"name": ENDPOINT, "config": config}),
            )
            .await?
    };
    println!();
    println!(
        "Serving endpoint {ENDPOINT}: {MODEL_NAME}@champion (version {}), {}, logging to {}",
        endpoint["config"]["served_entities"][0]["served_version"]
            .as_str()
            .unwrap_or("?"),
        endpoint["state"]["ready"].as_str().unwrap_or("?"),
        endpoint["inference_table"].as_str().unwrap_or("?"),
    );
    let invocations = format!("/serving-endpoints/{ENDPOINT}/invocations");
    for (sensor, x0, x1) in [(7, 0.5, -0.2), (3, -0.1, 0.4), (12, 0.9, 0.9)] {
        let body = json!({"dataframe_records": [{"sensor_id": sensor, "x0": x0, "x1": x1}], "return_features": true,
                          "client_request_id": format!("quickstart-sensor-{sensor}")});
        let response = client
            .send(
                client
                    .request(reqwest::Method::POST, &invocations)
                    .json(&body),
            )
            .await?;
        let version = response
            .headers()
            .get("tarn-model-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        let answer: Value = response.json().await?;
        println!(
            "  sensor {sensor:>2} x0={x0:<4} x1={x1:<4} -> y={:.3} (version {version}; looked up {})",
            answer["predictions"][0]["variable"]
                .as_f64()
                .unwrap_or(f64::NAN),
            answer["features"][0]
        );
    }
    // Rows reach the table within a second; wait for this run's three.
    let statement = format!(
        "SELECT client_request_id, status_code, model_version, execution_time_ms, response \
         FROM {INFERENCE_TABLE} WHERE client_request_id LIKE 'quickstart-sensor-%' ORDER BY timestamp_ms DESC LIMIT 3"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let result = client
            .call(
                reqwest::Method::POST,
                "/api/2.0/sql/statements",
                json!({"statement": statement, "wait_timeout": "30s"}),
            )
            .await?;
        let rows = result["result"]["data_array"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if rows.len() == 3 || std::time::Instant::now() > deadline {
            println!("Inference table {INFERENCE_TABLE} (newest rows):");
            for row in rows {
                println!(
                    "  {} status {} version {} {} ms {}",
                    row[0].as_str().unwrap_or("?"),
                    row[1].as_str().unwrap_or("?"),
                    row[2].as_str().unwrap_or("?"),
                    row[3].as_str().unwrap_or("?"),
                    row[4].as_str().unwrap_or("?")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

const PREDICTIONS_TABLE: &str = "dev.inference.quickstart_predictions";
/// Rows scored for the monitor, in requests of 50.
const MONITORED_ROWS: usize = 200;

/// Statement results' rows, each a list of values as text.
async fn sql_rows(client: &Client, statement: &str) -> Result<Vec<Value>> {
    let result = client
        .call(
            reqwest::Method::POST,
            "/api/2.0/sql/statements",
            json!({"statement": statement, "wait_timeout": "30s"}),
        )
        .await?;
    Ok(result["result"]["data_array"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// How many rows a table has (0 before it exists).
async fn count_rows(client: &Client, table: &str) -> u64 {
    sql_rows(client, &format!("SELECT count(*) FROM {table}"))
        .await
        .ok()
        .and_then(|rows| rows.first()?[0].as_str()?.parse().ok())
        .unwrap_or(0)
}

/// Watches the endpoint in production: scores readings whose x1 drifted upward since training,
/// waits for them to be unpacked into one row per prediction, monitors that table against the
/// training table as baseline, refreshes the monitor and shows the drift it found per column.
async fn monitor_predictions(client: &Client) -> Result<()> {
    let before = count_rows(client, PREDICTIONS_TABLE).await;
    let (xs, _) = make_data(MONITORED_ROWS);
    let invocations = format!("/serving-endpoints/{ENDPOINT}/invocations");
    for (batch, chunk) in xs.chunks(50).enumerate() {
        let records: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, x)| {
                json!({"sensor_id": (batch * 50 + i) % SENSORS, "x0": x[0], "x1": x[1] + 0.8})
            })
            .collect();
        client
            .send(
                client
                    .request(reqwest::Method::POST, &invocations)
                    .json(&json!({"dataframe_records": records})),
            )
            .await?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count_rows(client, PREDICTIONS_TABLE).await < before + MONITORED_ROWS as u64 {
        if std::time::Instant::now() > deadline {
            bail!("the predictions of {ENDPOINT} did not reach {PREDICTIONS_TABLE} in 30 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    println!();
    println!(
        "Scored {MONITORED_ROWS} more readings (x1 drifted by +0.8); {PREDICTIONS_TABLE} holds one row per prediction:"
    );
    for row in sql_rows(
        client,
        &format!(
            "SELECT timestamp, sensor_id, round(x0, 3), round(x1, 3), round(prediction, 3), model_version \
             FROM {PREDICTIONS_TABLE} ORDER BY timestamp DESC, row_index LIMIT 3"
        ),
    )
    .await?
    {
        let cells: Vec<&str> = row
            .as_array()
            .map(|r| r.iter().map(|c| c.as_str().unwrap_or("null")).collect())
            .unwrap_or_default();
        println!("  {}", cells.join("  "));
    }
    let monitor = format!("/api/2.1/unity-catalog/tables/{PREDICTIONS_TABLE}/monitor");
    let settings = json!({
        "output_schema_name": "dev.inference",
        "baseline_table_name": TRAINING_TABLE,
        "inference_log": {
            "problem_type": "PROBLEM_TYPE_REGRESSION",
            "timestamp_col": "timestamp",
            "granularities": ["1 day"],
            "model_id_col": "model_version",
            "prediction_col": "prediction",
        },
    });
    if let Err(err) = client.call(reqwest::Method::POST, &monitor, settings).await
        && !err.to_string().contains("RESOURCE_ALREADY_EXISTS")
    {
        return Err(err);
    }
    let refresh = client
        .call(
            reqwest::Method::POST,
            &format!("{monitor}/refreshes"),
            json!({}),
        )
        .await?;
    let refresh_id = refresh["refresh_id"].as_i64().context("refresh id")?;
    let ended = loop {
        let info = client
            .call(
                reqwest::Method::GET,
                &format!("{monitor}/refreshes/{refresh_id}"),
                json!({}),
            )
            .await?;
        match info["state"].as_str() {
            Some("PENDING" | "RUNNING") => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            _ => break info,
        }
    };
    if ended["state"] != "SUCCESS" {
        bail!(
            "the monitor's refresh ended {}: {}",
            ended["state"],
            ended["message"]
        );
    }
    println!(
        "Monitor on {PREDICTIONS_TABLE} (baseline {TRAINING_TABLE}) refreshed; drift of today's window against the baseline:"
    );
    let drift = sql_rows(
        client,
        "SELECT column_name, drift_test, round(drift_score, 6), round(population_stability_index, 4), \
         round(wasserstein_distance, 4), drift_detected FROM dev.inference.quickstart_predictions_drift_metrics \
         WHERE drift_type = 'BASELINE' AND slice_key IS NULL AND model_id IS NULL \
         AND column_name IN ('sensor_id', 'x0', 'x1') \
         AND window.start = (SELECT max(window.start) FROM dev.inference.quickstart_predictions_drift_metrics) \
         ORDER BY column_name",
    )
    .await?;
    println!(
        "  {:<11} {:<17} {:>10} {:>8} {:>11}  DRIFT",
        "COLUMN", "TEST", "P/SCORE", "PSI", "WASSERSTEIN"
    );
    for row in drift {
        let cell = |i: usize| row[i].as_str().unwrap_or("null").to_string();
        println!(
            "  {:<11} {:<17} {:>10} {:>8} {:>11}  {}",
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            if cell(5) == "true" { "yes" } else { "no" }
        );
    }
    Ok(())
}

/// Registers the best run's model as a new version, moves it None -> Staging -> Production
/// (archiving the previous Production version), points the `champion` alias at it, and shows
/// the signed webhook deliveries a local receiver got for those changes.
async fn register_and_promote(client: &Client, run_id: &str) -> Result<()> {
    let receiver = Receiver::start().await?;
    subscribe(client, &receiver).await?;
    if client
        .call(
            reqwest::Method::GET,
            "/api/2.0/mlflow/registered-models/get",
            json!({"name": MODEL_NAME}),
        )
        .await
        .is_err()
    {
        client
            .call(reqwest::Method::POST, "/api/2.0/mlflow/registered-models/create",
                json!({"name": MODEL_NAME, "description": "Linear regression from tarn quickstart"}),
            )
            .await?;
    }
    let created = client
        .call(reqwest::Method::POST, "/api/2.0/mlflow/model-versions/create",
            json!({"name": MODEL_NAME, "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
        )
        .await?;
    let version = created["model_version"]["version"]
        .as_str()
        .context("version")?
        .to_string();
    println!();
    println!("Registered {MODEL_NAME} version {version} (a copy of the run's model, checksummed).");
    if let Some(tag) = created["model_version"]["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["key"] == "tarn.training_set_id")
    {
        println!(
            "  its feature spec: training set {} (GET /api/2.0/tarn/training-sets/{} rebuilds its rows)",
            tag["value"].as_str().unwrap_or("?"),
            tag["value"].as_str().unwrap_or("?")
        );
    }
    for stage in ["Staging", "Production"] {
        client
            .call(reqwest::Method::POST, "/api/2.0/mlflow/model-versions/transition-stage",
                json!({"name": MODEL_NAME, "version": version, "stage": stage, "archive_existing_versions": true}),
            )
            .await?;
        println!("  moved version {version} to {stage}");
    }
    client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/registered-models/alias",
            json!({"name": MODEL_NAME, "alias": "champion", "version": version}),
        )
        .await?;
    println!("  {MODEL_NAME}@champion -> version {version}");
    // Created, two transitions, the alias; reruns also archive the previous version.
    let expected = 4;
    let mut deliveries = receiver
        .wait_for(expected, std::time::Duration::from_secs(10))
        .await;
    // Deliveries are sent concurrently; show them in the order the changes happened.
    deliveries.sort_by_key(|d| {
        serde_json::from_str::<Value>(&d.body)
            .ok()
            .and_then(|b| b["timestamp"].as_str().map(str::to_string))
            .unwrap_or_default()
    });
    println!("Webhook deliveries received (signed, from the registry's event outbox):");
    for delivery in &deliveries {
        let verified = tarn_events::webhooks::mlflow_signature(
            WEBHOOK_SECRET,
            &delivery.delivery_id,
            &delivery.timestamp,
            &delivery.body,
        )
        .is_ok_and(|expected| expected == delivery.signature);
        let body: Value = serde_json::from_str(&delivery.body).unwrap_or(Value::Null);
        let event = format!(
            "{}.{}",
            body["entity"].as_str().unwrap_or("?"),
            body["action"].as_str().unwrap_or("?")
        );
        println!(
            "  {event:<33} delivery {}  signature {}  {}",
            &delivery.delivery_id[..8.min(delivery.delivery_id.len())],
            if verified { "verified" } else { "MISMATCH" },
            body["data"]
        );
    }
    if deliveries.len() < expected {
        println!(
            "  (only {} of {expected} arrived in time; `tarn models audit` shows every event)",
            deliveries.len()
        );
    }
    Ok(())
}

const WEBHOOK_SECRET: &str = "quickstart-secret";

/// One webhook request as the quickstart's receiver saw it.
#[derive(Clone)]
struct Received {
    delivery_id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A local HTTP endpoint standing in for a CD system that reacts to registry events.
struct Receiver {
    url: String,
    received: std::sync::Arc<tokio::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Result<Self> {
        use axum::http::HeaderMap;
        let received: std::sync::Arc<tokio::sync::Mutex<Vec<Received>>> = Default::default();
        let store = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let store = store.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    store.lock().await.push(Received {
                        delivery_id: header("x-mlflow-delivery-id"),
                        timestamp: header("x-mlflow-timestamp"),
                        signature: header("x-mlflow-signature"),
                        body,
                    });
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, received })
    }

    async fn wait_for(&self, count: usize, timeout: std::time::Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.received.lock().await.clone();
            if tokio::time::Instant::now() > deadline {
                return seen;
            }
            if seen.len() >= count {
                // Let stragglers (system transitions of a rerun) arrive too.
                tokio::time::sleep(std::time::Duration::from_millis(600)).await;
                return self.received.lock().await.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Subscribes the receiver to the registry events the example causes, replacing the
/// webhooks of earlier quickstarts (their receivers are gone).
async fn subscribe(client: &Client, receiver: &Receiver) -> Result<()> {
    let listed = client
        .call(reqwest::Method::GET, "/api/2.0/mlflow/webhooks", json!({}))
        .await?;
    for old in listed["webhooks"].as_array().cloned().unwrap_or_default() {
        if old["name"] == "quickstart" {
            let id = old["webhook_id"].as_str().unwrap_or_default();
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/2.0/mlflow/webhooks/{id}"),
                    json!({}),
                )
                .await?;
        }
    }
    client
        .call(
            reqwest::Method::POST,
            "/api/2.0/mlflow/webhooks",
            json!({
                "name": "quickstart",
                "url": receiver.url,
                "secret": WEBHOOK_SECRET,
                "events": [
                    {"entity": "MODEL_VERSION", "action": "CREATED"},
                    {"entity": "MODEL_VERSION_STAGE", "action": "TRANSITIONED"},
                    {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
                ],
            }),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_descent_recovers_the_coefficients() {
        let (xs, ys) = make_data(2000);
        let (w, b, losses) = train(&xs, &ys, 0.2, 300);
        assert!(
            (w[0] - 3.0).abs() < 0.05 && (w[1] + 2.0).abs() < 0.05 && (b - 0.5).abs() < 0.05,
            "{w:?} {b}"
        );
        assert!(losses.windows(2).all(|pair| pair[1] <= pair[0] + 1e-12));
        assert!(losses[losses.len() - 1] < 0.001, "ends at the noise level");
    }
}
