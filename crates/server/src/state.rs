//! What every handler and background task of the server shares, built once at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use tarn_artifacts::ArtifactStore;
use tarn_core::signed_urls::UrlSigner;
use tarn_core::store::MetaStore;
use tarn_lake::statements::{StatementLimits, Statements};
use tarn_serving::ServingContext;

use crate::metrics;

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn MetaStore>,
    pub artifacts: ArtifactStore,
    pub metrics: Arc<metrics::HttpMetrics>,
    pub auth_cache: Arc<tarn_identity::AuthCache>,
    pub part_urls: Arc<tarn_artifacts::PartUrls>,
    pub webhooks: Arc<tarn_events::webhooks::Sender>,
    pub lake: Arc<tarn_lake::Lake>,
    pub statements: Arc<Statements>,
    /// Where published features are looked up.
    pub online: Arc<dyn tarn_features::online::OnlineStore>,
    /// Tables lookups resolved recently.
    pub lookups: Arc<tarn_features::online::LookupCache>,
    /// The serving endpoints this server runs.
    pub endpoints: Arc<tarn_serving::Endpoints>,
    /// How often tables' Delta logs are read for commits other writers made.
    pub table_watch_every: std::time::Duration,
    /// The job runner and this server's executor.
    pub jobs: Arc<JobsRuntime>,
}

/// What the API shares with the job runner and the executor `serve` starts.
pub struct JobsRuntime {
    /// Wakes the runner: a run was made or asked to stop.
    pub runner: tarn_jobs::runs::Wakeup,
    /// Wakes the executor: tasks are ready.
    pub ready: tarn_jobs::runs::Wakeup,
    pub executor: JobsSettings,
}

/// How this server's executor runs tasks.
#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// Tasks' logs and files; `runs/get-output` reads the logs here.
    pub folder: PathBuf,
    /// The interpreter of Python tasks.
    pub python: PathBuf,
    /// Tasks run at once (0: none here, `tarn worker`s run them).
    pub slots: usize,
    /// How long an executor's claim on a task holds without renewal.
    pub lease: std::time::Duration,
    /// The executor's name in the store; its claims left from a previous start are ended
    /// when it starts again.
    pub worker: String,
}

impl Default for JobsSettings {
    fn default() -> Self {
        Self {
            folder: std::env::temp_dir().join(format!("tarn-jobs-{}", std::process::id())),
            python: PathBuf::from("python3"),
            slots: 8,
            lease: std::time::Duration::from_secs(30),
            worker: "local".to_string(),
        }
    }
}

/// How the server's runtimes are tuned; the defaults suit tests.
pub struct Settings {
    pub webhooks: tarn_events::webhooks::WebhookSettings,
    /// How serving endpoints batch and score.
    pub scoring: tarn_models::BatcherOptions,
    /// What one scoring request may hold.
    pub serving_limits: tarn_serving::Limits,
    /// The bounds every SQL statement runs within.
    pub statements: StatementLimits,
    /// Where SQL results too large to keep in memory are written.
    pub statements_folder: PathBuf,
    /// Where serving endpoints' logged rows wait until their inference tables hold them: a
    /// restart on the same folder writes what a killed server left.
    pub inference_spool: PathBuf,
    /// How often tables' Delta logs are read for commits other writers made.
    pub table_watch_every: std::time::Duration,
    pub jobs: JobsSettings,
    /// The key that signs links (upload parts, result files): the store's shared one
    /// (`tarn_core::signed_urls::shared_key`) when several servers serve it.
    pub link_key: [u8; 32],
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            webhooks: Default::default(),
            scoring: Default::default(),
            serving_limits: Default::default(),
            statements: Default::default(),
            statements_folder: std::env::temp_dir().join("tarn-statements"),
            inference_spool: std::env::temp_dir().join("tarn-inference-spool"),
            table_watch_every: std::time::Duration::from_secs(5),
            jobs: JobsSettings::default(),
            link_key: rand::random(),
        }
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn MetaStore>,
        artifacts: ArtifactStore,
        lake: tarn_lake::Lake,
        online: Arc<dyn tarn_features::online::OnlineStore>,
        settings: Settings,
    ) -> tarn_core::Result<Self> {
        let lake = Arc::new(lake);
        let lookups = Arc::new(tarn_features::online::LookupCache::default());
        let serving = ServingContext {
            store: store.clone(),
            artifacts: artifacts.clone(),
            lake: lake.clone(),
            online: online.clone(),
            lookups: lookups.clone(),
            inference_spool: settings.inference_spool,
        };
        let statements = Arc::new(Statements::new(
            store.clone(),
            &lake,
            settings.statements,
            settings.statements_folder,
            UrlSigner::new(settings.link_key),
        )?);
        Ok(Self {
            store,
            artifacts,
            metrics: Arc::new(metrics::HttpMetrics::default()),
            auth_cache: Arc::new(tarn_identity::AuthCache::default()),
            part_urls: Arc::new(tarn_artifacts::PartUrls::new(UrlSigner::new(
                settings.link_key,
            ))),
            webhooks: Arc::new(tarn_events::webhooks::Sender::new(settings.webhooks)?),
            lake,
            online,
            lookups,
            endpoints: Arc::new(tarn_serving::Endpoints::new(
                serving,
                settings.scoring,
                settings.serving_limits,
            )),
            statements,
            table_watch_every: settings.table_watch_every,
            jobs: Arc::new(JobsRuntime {
                runner: Default::default(),
                ready: Default::default(),
                executor: settings.jobs,
            }),
        })
    }

    /// Forgets cached access decisions: after a change to principals, tokens, memberships,
    /// grants, bindings or tables through this server.
    pub fn forget_access(&self) {
        self.auth_cache.clear();
        self.lookups.clear();
    }
}
