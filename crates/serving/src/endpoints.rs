//! Live serving endpoints: the models each stored endpoint serves, loaded and warmed, with its
//! traffic split and inference log. A config change or a registry change (the alias or stage an
//! entity follows now points at another version) is rolled out the same way: load the new
//! version, warm it, switch the endpoint over, and let the old one finish the requests it
//! holds (they keep it alive) before it is dropped. No request fails during the swap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tarn_core::caller::Caller;
use tarn_core::registry::ModelVersion;
use tarn_core::serving::{ServedEntity, ServingEndpoint, VersionRef};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tarn_models::batcher::Scored;
use tarn_models::{Batcher, BatcherOptions, Invocation, Model};

use crate::context::ServingContext;
use crate::features::FeatureSpec;
use crate::inference::{InferenceLog, InferenceRow, ensure_table};
use crate::scoring::{Limits, score_invocation};

/// Largest model file tarn loads.
const MAX_MODEL_BYTES: u64 = 1 << 30;
/// How often stored endpoints and the aliases and stages they follow are checked.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// One served entity as it runs: the version it resolved to and its scorer.
pub struct LiveEntity {
    pub name: String,
    pub model: String,
    pub version: i64,
    pub batcher: Arc<Batcher>,
    /// The features the version looks up, when it was trained on a training set.
    pub features: Option<Arc<FeatureSpec>>,
}

/// An endpoint as it runs.
pub struct LiveEndpoint {
    pub endpoint: ServingEndpoint,
    pub entities: Vec<Arc<LiveEntity>>,
    pub log: Option<InferenceLog>,
    /// Its owner, as whom features are looked up.
    pub owner: Caller,
}

impl LiveEndpoint {
    /// The entity that answers a request drawn at `draw` (0..100) by the traffic split.
    pub fn route(&self, draw: u32) -> Option<&Arc<LiveEntity>> {
        let routes = self
            .endpoint
            .config
            .traffic_config
            .as_ref()
            .map(|t| t.routes.as_slice())
            .unwrap_or_default();
        let name = tarn_core::serving::pick_route(routes, draw)?;
        self.entities.iter().find(|e| e.name == name)
    }
}

type Key = (String, String);

/// Reads one of a batcher's counters.
type CountOf = fn(&tarn_models::batcher::BatchCounts) -> u64;

struct Failure {
    message: String,
    config_version: i64,
    at: std::time::Instant,
}

/// A failed rollout of an unchanged config is tried again after this long.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30);

/// Every endpoint this server runs.
pub struct Endpoints {
    pub(crate) context: ServingContext,
    live: RwLock<HashMap<Key, Arc<LiveEndpoint>>>,
    /// Why the last rollout of an endpoint failed (it keeps serving its previous config), for
    /// which config version, and when.
    failures: Mutex<HashMap<Key, Failure>>,
    /// One rollout at a time.
    rollout: tokio::sync::Mutex<()>,
    writers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub options: BatcherOptions,
    pub limits: Limits,
}

fn key(workspace: &str, name: &str) -> Key {
    (workspace.to_string(), name.to_string())
}

/// The version a served entity asks for, as the registry has it now.
pub async fn resolve(
    store: &dyn MetaStore,
    workspace: &str,
    entity: &ServedEntity,
) -> Result<ModelVersion> {
    resolve_ref(store, workspace, &entity.entity_name, entity.version_ref()?).await
}

/// The version a reference (number, alias, stage) names now.
pub async fn resolve_ref(
    store: &dyn MetaStore,
    workspace: &str,
    model: &str,
    reference: VersionRef,
) -> Result<ModelVersion> {
    match reference {
        VersionRef::Number(version) => store.get_model_version(workspace, model, version).await,
        VersionRef::Alias(alias) => store.version_by_alias(workspace, model, &alias).await,
        VersionRef::Stage(stage) => store
            .latest_versions(workspace, model, &[stage])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "model {model} has no version in stage {}",
                    stage.as_str()
                ))
            }),
    }
}

/// Loads a registered version's model from registry storage and warms it, off the async
/// threads. Fails here, before anything serves it, when tarn cannot score it.
pub async fn load_model(
    artifacts: &tarn_artifacts::ArtifactStore,
    workspace: &str,
    version: &ModelVersion,
) -> Result<Model> {
    let location = version.storage_location.trim_end_matches('/');
    let describe = |e: Error| {
        Error::new(
            e.code,
            format!(
                "model {} version {}: {}",
                version.name, version.version, e.message
            ),
        )
    };
    let mlmodel = artifacts
        .get_bytes(workspace, &format!("{location}/MLmodel"), 1 << 20)
        .await
        .map_err(describe)?;
    let mlmodel = String::from_utf8(mlmodel.to_vec())
        .map_err(|_| Error::invalid("the MLmodel file is not UTF-8"))?;
    // The files of the model's directory (the ONNX file, weights kept beside it), up to a
    // total size.
    let mut files = std::collections::HashMap::new();
    let mut total = 0u64;
    for file in artifacts
        .list(workspace, location)
        .await
        .map_err(describe)?
    {
        if file.is_dir || file.path == "MLmodel" {
            continue;
        }
        total += file.file_size.unwrap_or_default();
        if total > MAX_MODEL_BYTES {
            return Err(Error::invalid(format!(
                "model {} version {} is larger than {MAX_MODEL_BYTES} bytes",
                version.name, version.version
            )));
        }
        let path = format!("{location}/{}", file.path);
        let bytes = artifacts
            .get_bytes(workspace, &path, MAX_MODEL_BYTES)
            .await
            .map_err(describe)?;
        files.insert(file.path, bytes);
    }
    tokio::task::spawn_blocking(move || {
        let model = Model::load(&mlmodel, |name: &str| {
            files.get(name).map(|bytes| bytes.to_vec()).ok_or_else(|| {
                tarn_models::ModelError::Invalid(format!("the model has no file {name}"))
            })
        })?;
        model.warm_up()?;
        Ok::<_, tarn_models::ModelError>(model)
    })
    .await
    .map_err(|e| Error::internal_from("model loading stopped", e))?
    .map_err(|e| describe(e.into()))
}

/// One request scored by an endpoint: the entity the traffic split picked, the id the request
/// is logged under, and its answer.
pub struct Invoked {
    pub entity: Arc<LiveEntity>,
    pub request_id: String,
    pub outcome: Result<(Scored, Invocation)>,
}

impl Endpoints {
    /// Endpoints whose models score with `options` and take requests within `limits`.
    pub fn new(context: ServingContext, options: BatcherOptions, limits: Limits) -> Endpoints {
        Endpoints {
            context,
            live: RwLock::default(),
            failures: Mutex::default(),
            rollout: tokio::sync::Mutex::default(),
            writers: Mutex::default(),
            options,
            limits,
        }
    }

    async fn load(&self, workspace: &str, version: &ModelVersion) -> Result<Arc<Batcher>> {
        let model = load_model(&self.context.artifacts, workspace, version).await?;
        Ok(Arc::new(Batcher::start(
            Arc::new(model),
            self.options.clone(),
        )))
    }

    pub fn get(&self, workspace: &str, name: &str) -> Option<Arc<LiveEndpoint>> {
        self.live.read().ok()?.get(&key(workspace, name)).cloned()
    }

    pub fn failure(&self, workspace: &str, name: &str) -> Option<String> {
        self.failures
            .lock()
            .ok()?
            .get(&key(workspace, name))
            .map(|f| f.message.clone())
    }

    /// Whether this config failed to roll out a moment ago (so it is not loaded again yet).
    fn failed_recently(&self, endpoint: &ServingEndpoint) -> bool {
        self.failures.lock().is_ok_and(|failures| {
            failures
                .get(&key(&endpoint.workspace, &endpoint.name))
                .is_some_and(|f| {
                    f.config_version == endpoint.config_version
                        && f.at.elapsed() < RETRY_FAILED_AFTER
                })
        })
    }

    /// Resolves and loads what `endpoint` serves, reusing the versions already running.
    pub async fn prepare(&self, endpoint: &ServingEndpoint) -> Result<Vec<Arc<LiveEntity>>> {
        let store = self.context.store.as_ref();
        let current = self.get(&endpoint.workspace, &endpoint.name);
        let mut entities = Vec::with_capacity(endpoint.config.served_entities.len());
        for entity in &endpoint.config.served_entities {
            let version = resolve(store, &endpoint.workspace, entity).await?;
            let running = current
                .iter()
                .flat_map(|c| c.entities.iter())
                .find(|e| e.model == entity.entity_name && e.version == version.version);
            let (batcher, features) = match running {
                Some(running) => (running.batcher.clone(), running.features.clone()),
                None => (
                    self.load(&endpoint.workspace, &version).await?,
                    FeatureSpec::of_version(store, &endpoint.workspace, &version).await?,
                ),
            };
            entities.push(Arc::new(LiveEntity {
                name: entity.name.clone(),
                model: entity.entity_name.clone(),
                version: version.version,
                batcher,
                features,
            }));
        }
        Ok(entities)
    }

    /// Switches `endpoint` over to `entities` (from `prepare`), opening its inference table.
    pub async fn install(
        &self,
        endpoint: ServingEndpoint,
        entities: Vec<Arc<LiveEntity>>,
    ) -> Result<Arc<LiveEndpoint>> {
        let current = self.get(&endpoint.workspace, &endpoint.name);
        let principal = self
            .context
            .store
            .active_principal(&endpoint.creator)
            .await?;
        let owner = Caller::new(endpoint.workspace.clone(), principal.clone());
        let capture = endpoint
            .config
            .auto_capture_config
            .clone()
            .filter(|c| c.enabled);
        let log = match (&current, &capture) {
            (Some(current), Some(_))
                if current.endpoint.config.auto_capture_config
                    == endpoint.config.auto_capture_config =>
            {
                current.log.clone()
            }
            (_, Some(capture)) => {
                let actor = owner.actor();
                let table = ensure_table(
                    self.context.store.as_ref(),
                    &self.context.lake,
                    &actor,
                    &capture.catalog_name,
                    &capture.schema_name,
                    &capture.table_name(),
                )
                .await?;
                record_lineage(self.context.store.as_ref(), &endpoint, &table.full_name).await;
                let (log, writer) = InferenceLog::start(
                    self.context.lake.clone(),
                    &table,
                    &self.context.inference_spool,
                )
                .await?;
                if let Ok(mut writers) = self.writers.lock() {
                    writers.push(writer);
                }
                Some(log)
            }
            (_, None) => None,
        };
        let live = Arc::new(LiveEndpoint {
            endpoint,
            entities,
            log,
            owner,
        });
        let key = key(&live.endpoint.workspace, &live.endpoint.name);
        if let Ok(mut endpoints) = self.live.write() {
            endpoints.insert(key.clone(), live.clone());
        }
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&key);
        }
        tracing::info!(
            workspace = %live.endpoint.workspace,
            endpoint = %live.endpoint.name,
            versions = ?live.entities.iter().map(|e| format!("{}/{}", e.model, e.version)).collect::<Vec<_>>(),
            "serving endpoint ready"
        );
        Ok(live)
    }

    /// Loads and switches in one go, one rollout at a time.
    pub async fn deploy(&self, endpoint: ServingEndpoint) -> Result<Arc<LiveEndpoint>> {
        let _rollout = self.rollout.lock().await;
        let entities = self.prepare(&endpoint).await?;
        self.install(endpoint, entities).await
    }

    pub fn remove(&self, workspace: &str, name: &str) {
        let key = key(workspace, name);
        if let Ok(mut endpoints) = self.live.write() {
            endpoints.remove(&key);
        }
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&key);
        }
    }

    /// Brings the running endpoints in line with the store: new or updated configs, versions
    /// that followed aliases or stages moved to, endpoints deleted (possibly by another replica).
    pub async fn sync(&self) -> Result<()> {
        let stored = self.context.store.list_endpoints(None).await?;
        for endpoint in &stored {
            let current = self.get(&endpoint.workspace, &endpoint.name);
            let stale = match &current {
                None => true,
                Some(current) if current.endpoint.config_version != endpoint.config_version => true,
                Some(current) => self.moved(current).await,
            };
            if !stale || self.failed_recently(endpoint) {
                continue;
            }
            if let Err(error) = self.deploy(endpoint.clone()).await {
                tracing::warn!(workspace = %endpoint.workspace, endpoint = %endpoint.name, error = %error.message, "serving endpoint rollout failed");
                if let Ok(mut failures) = self.failures.lock() {
                    let failure = Failure {
                        message: error.message,
                        config_version: endpoint.config_version,
                        at: std::time::Instant::now(),
                    };
                    failures.insert(key(&endpoint.workspace, &endpoint.name), failure);
                }
            }
        }
        let gone: Vec<Key> = self
            .live
            .read()
            .map(|live| {
                live.keys()
                    .filter(|(ws, name)| {
                        !stored.iter().any(|e| &e.workspace == ws && &e.name == name)
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for (workspace, name) in gone {
            self.remove(&workspace, &name);
        }
        Ok(())
    }

    /// Whether an alias or stage one of the endpoint's entities follows points elsewhere now.
    async fn moved(&self, current: &LiveEndpoint) -> bool {
        let store = self.context.store.as_ref();
        for (entity, live) in current
            .endpoint
            .config
            .served_entities
            .iter()
            .zip(&current.entities)
        {
            if matches!(entity.version_ref(), Ok(VersionRef::Number(_))) {
                continue;
            }
            match resolve(store, &current.endpoint.workspace, entity).await {
                Ok(version) if version.version != live.version => return true,
                _ => {}
            }
        }
        false
    }

    /// Scores a request (its body as read, or why it could not be) with the entity the traffic
    /// split picks, and logs the request and its answer (or error) to the inference table.
    pub async fn invoke(&self, live: &LiveEndpoint, body: Result<bytes::Bytes>) -> Result<Invoked> {
        let entity = live
            .route(rand::random_range(0..100))
            .or_else(|| live.entities.first())
            .cloned()
            .ok_or_else(|| {
                Error::internal(format!("endpoint {} serves nothing", live.endpoint.name))
            })?;
        let arrived = tarn_core::ids::now_millis();
        let outcome = match &body {
            Ok(bytes) => self.score(live, &entity, bytes).await,
            Err(error) => Err(error.clone()),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        if let Some(log) = &live.log {
            let (status_code, execution_time_ms, client_request_id, response) = match &outcome {
                Ok((scored, invocation)) => (
                    200,
                    scored.execution.as_millis() as i64,
                    invocation.client_request_id.clone(),
                    String::from_utf8_lossy(&scored.body).into_owned(),
                ),
                Err(error) => (
                    error.code.http_status(),
                    0,
                    None,
                    serde_json::json!({ "error_code": error.code.as_str(), "message": error.message })
                        .to_string(),
                ),
            };
            log.record(InferenceRow {
                request_id: request_id.clone(),
                client_request_id,
                timestamp_ms: arrived,
                status_code,
                execution_time_ms,
                served_entity_name: entity.name.clone(),
                model_name: entity.model.clone(),
                model_version: entity.version,
                request: body
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
                response,
            });
        }
        Ok(Invoked {
            entity,
            request_id,
            outcome,
        })
    }

    /// Scores a request with one entity: looks up its features first when it has a feature
    /// spec (and answers them beside the predictions when asked to).
    async fn score(
        &self,
        live: &LiveEndpoint,
        entity: &LiveEntity,
        body: &[u8],
    ) -> Result<(Scored, Invocation)> {
        let mut invocation = Invocation::parse(body)?;
        let mut features = None;
        if let Some(spec) = &entity.features {
            let added = spec
                .enrich(&self.context, &live.owner, &mut invocation.input)
                .await?;
            features = invocation.return_features.then_some(added);
        }
        let (mut scored, invocation) =
            score_invocation(&entity.batcher, invocation, self.limits).await?;
        if let Some(features) = features {
            // {"predictions": ...} becomes {"predictions": ..., "features": [...]}.
            let features = serde_json::to_vec(&features)
                .map_err(|e| Error::internal_from("cannot encode features", e))?;
            scored.body.pop();
            scored.body.extend_from_slice(b",\"features\":");
            scored.body.extend_from_slice(&features);
            scored.body.push(b'}');
        }
        Ok((scored, invocation))
    }

    /// Stops serving: drops every endpoint (requests in flight have finished when this runs)
    /// and waits for the inference writers to write what they hold.
    pub async fn shutdown(&self) {
        if let Ok(mut live) = self.live.write() {
            live.clear();
        }
        let writers: Vec<_> = self
            .writers
            .lock()
            .map(|mut w| w.drain(..).collect())
            .unwrap_or_default();
        for writer in writers {
            let _ = writer.await;
        }
    }

    /// `/metrics` lines: rows logged and dropped per endpoint.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        use std::sync::atomic::Ordering;
        let mut out = String::new();
        let Ok(live) = self.live.read() else {
            return out;
        };
        let families: [(&str, &str, CountOf); 2] = [
            (
                "tarn_serving_requests_total",
                "Requests scored per served entity.",
                |c| c.requests.load(Ordering::Relaxed),
            ),
            (
                "tarn_serving_model_runs_total",
                "Runs of the model that scored them (fewer runs than requests: requests were batched).",
                |c| c.runs.load(Ordering::Relaxed),
            ),
        ];
        for (family, help, count) in families {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            for ((workspace, name), endpoint) in live.iter() {
                for entity in &endpoint.entities {
                    let _ = writeln!(
                        out,
                        "{family}{{workspace=\"{workspace}\",endpoint=\"{name}\",entity=\"{}\",version=\"{}\"}} {}",
                        entity.name,
                        entity.version,
                        count(entity.batcher.counts())
                    );
                }
            }
        }
        out.push_str("# HELP tarn_inference_rows_total Inference table rows by endpoint and outcome (written; dropped_full: buffer full under overload; dropped_failed: the table write failed).\n# TYPE tarn_inference_rows_total counter\n");
        for ((workspace, name), endpoint) in live.iter() {
            if let Some(log) = &endpoint.log {
                for (outcome, counter) in [
                    ("written", &log.counters.written),
                    ("dropped_full", &log.counters.dropped_full),
                    ("dropped_failed", &log.counters.dropped_failed),
                ] {
                    let _ = writeln!(
                        out,
                        "tarn_inference_rows_total{{workspace=\"{workspace}\",endpoint=\"{name}\",outcome=\"{outcome}\"}} {}",
                        counter.load(Ordering::Relaxed)
                    );
                }
            }
        }
        out
    }
}

/// Lineage: the endpoint writes its inference table.
async fn record_lineage(store: &dyn MetaStore, endpoint: &ServingEndpoint, table: &str) {
    let edge = tarn_core::lineage::NewLineage {
        target: tarn_core::lineage::Node::table(table),
        target_version: None,
        sources: vec![tarn_core::lineage::SourceRead {
            node: tarn_core::lineage::Node::serving_endpoint(&endpoint.workspace, &endpoint.name),
            version: None,
        }],
        operation: "SERVING".into(),
        actor: endpoint.creator.clone(),
        statement: None,
        created_at: tarn_core::ids::now_millis(),
    };
    store.record_committed_write(&edge).await;
}
