//! `tarn serve MODEL`: a standalone scoring server for one model, with the routes and payloads
//! of `mlflow models serve`, for users who want only that.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tarn_models::{Batcher, BatcherOptions, Model};
use tarn_serving::Limits;

#[derive(Args)]
pub struct ServeArgs {
    /// An MLflow model directory with the onnx flavor, or a registered model:
    /// models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/STAGE.
    pub model: String,
    /// Where registered models are (for models:/ URIs).
    #[command(flatten)]
    pub store: crate::server::StoreArgs,
    /// Artifacts of the registry; default DATA_DIR/artifacts.
    #[arg(long, env = "TARN_ARTIFACT_ROOT")]
    pub artifact_root: Option<String>,
    /// The workspace of a models:/ URI.
    #[arg(long, default_value = "dev")]
    pub workspace: String,
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, short, default_value_t = 5001)]
    pub port: u16,
    /// Scoring threads; default one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Most rows scored together when concurrent requests are batched.
    #[arg(long, default_value_t = 256)]
    pub max_batch_rows: usize,
    /// How long a scoring thread waits for more requests to batch, in microseconds (0: none).
    #[arg(long, default_value_t = 0)]
    pub max_wait_us: u64,
    /// Most rows one request may hold.
    #[arg(long, default_value_t = 10_000)]
    pub max_rows: usize,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let model = if args.model.starts_with("models:/") {
        let (name, reference) = tarn_core::serving::parse_model_uri(&args.model)?;
        let store = args.store.open().await?;
        let artifacts = tarn_artifacts::ArtifactStore::open(
            &args.store.artifact_root(args.artifact_root.clone()),
        )?;
        let version =
            tarn_serving::resolve_ref(store.as_ref(), &args.workspace, &name, reference).await?;
        tarn_serving::load_model(&artifacts, &args.workspace, &version)
            .await
            .with_context(|| format!("cannot serve {}", args.model))?
    } else {
        Model::from_dir(Path::new(&args.model))
            .with_context(|| format!("cannot serve {}", args.model))?
    };
    let mut options = BatcherOptions {
        max_batch_rows: args.max_batch_rows.max(1),
        max_wait: Duration::from_micros(args.max_wait_us),
        ..BatcherOptions::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    let inputs: Vec<String> = model
        .onnx
        .inputs()
        .iter()
        .map(|i| format!("{} {} {:?}", i.name, i.element.name(), i.shape))
        .collect();
    let batcher = Arc::new(Batcher::start(Arc::new(model), options));
    let limits = Limits {
        max_rows: args.max_rows,
        ..Limits::default()
    };
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, model = %args.model, inputs = ?inputs, "tarn serve listening");
    tarn_server::scoring::serve_model(batcher, limits, listener, crate::server::shutdown_signal())
        .await?;
    Ok(())
}
