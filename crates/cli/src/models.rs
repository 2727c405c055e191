//! `tarn models ...`: the registry through the server's API, as the token's principal: MLflow's
//! registry routes, Databricks' transition requests and registry webhooks, MLflow 3 webhooks,
//! and tarn's delivery log and audit trail.

use anyhow::{Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use tarn_core::registry::MAX_REGISTERED_MODELS_PER_PAGE;

use crate::client::{Client, error_code};

const MLFLOW: &str = "/api/2.0/mlflow";
const AUDIT: &str = "/api/2.0/tarn/audit";
const DELIVERIES: &str = "/api/2.0/tarn/webhooks/deliveries";

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List registered models with their latest version per stage and their aliases.
    List {
        /// MLflow filter, e.g. "name LIKE 'fraud%'" or "tags.team = 'risk'".
        #[arg(long, default_value = "")]
        filter: String,
    },
    /// Show a model: versions with stage and lineage, aliases, open requests and activity.
    Show { name: String },
    /// Move a version to None, Staging, Production or Archived.
    Transition {
        name: String,
        version: String,
        stage: String,
        /// Archive the versions currently in the target stage.
        #[arg(long)]
        archive_existing: bool,
    },
    /// Request a stage transition (a reviewer approves or rejects it).
    Request {
        name: String,
        version: String,
        stage: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approve the open requests to move a version to a stage, which moves it.
    Approve {
        name: String,
        version: String,
        stage: String,
        #[arg(long)]
        archive_existing: bool,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject the open requests to move a version to a stage.
    Reject {
        name: String,
        version: String,
        stage: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Point an alias at a version (or remove it with --delete).
    Alias {
        name: String,
        alias: String,
        /// The version; omit with --delete.
        version: Option<String>,
        #[arg(long)]
        delete: bool,
    },
    /// Webhooks on registry events: list, create, delete, and the delivery log.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// The audit trail: registry and permission changes, oldest first (admins).
    Audit {
        /// Only this model (or `experiment/<id>`, `registered_model/<id>` for permissions).
        #[arg(long)]
        object: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Webhooks of the workspace, both formats (admins), or one model's (its managers).
    List {
        /// Only the Databricks-format webhooks of this model.
        #[arg(long)]
        model: Option<String>,
    },
    /// Subscribe a URL to registry events.
    Create {
        url: String,
        /// Events: `model_version.created`-style names (MLflow format) or
        /// `MODEL_VERSION_CREATED`-style names (Databricks format). Repeatable.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// `mlflow` (X-MLflow-Signature) or `databricks` (X-Databricks-Signature).
        #[arg(long, default_value = "mlflow")]
        format: String,
        /// MLflow format only: the webhook's name; default the URL's host.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// HMAC key for the signature header.
        #[arg(long, env = "TARN_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Databricks format only: just this model's events.
        #[arg(long)]
        model: Option<String>,
    },
    Delete {
        id: String,
    },
    /// The delivery log, newest first.
    Deliveries {
        #[arg(long)]
        webhook: Option<String>,
        /// pending, succeeded or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

pub async fn run(client: &Client, command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List { filter } => list(client, filter).await?,
        ModelsCommand::Show { name } => show(client, &name).await?,
        ModelsCommand::Transition {
            name,
            version,
            stage,
            archive_existing,
        } => {
            let answer = client
                .post(
                    &format!("{MLFLOW}/model-versions/transition-stage"),
                    &json!({
                        "name": name,
                        "version": version,
                        "stage": stage,
                        "archive_existing_versions": archive_existing,
                    }),
                )
                .await?;
            let moved = &answer["model_version"];
            println!(
                "{name} version {} is now in {}",
                text(moved, "version"),
                text(moved, "current_stage")
            );
        }
        ModelsCommand::Request {
            name,
            version,
            stage,
            comment,
        } => {
            let answer = client
                .post(
                    &format!("{MLFLOW}/transition-requests/create"),
                    &json!({"name": name, "version": version, "stage": stage, "comment": comment}),
                )
                .await?;
            println!(
                "requested moving {name} version {version} to {}",
                text(&answer["request"], "to_stage")
            );
        }
        ModelsCommand::Approve {
            name,
            version,
            stage,
            archive_existing,
            comment,
        } => {
            let answer = client
                .post(
                    &format!("{MLFLOW}/transition-requests/approve"),
                    &json!({
                        "name": name,
                        "version": version,
                        "stage": stage,
                        "archive_existing_versions": archive_existing,
                        "comment": comment,
                    }),
                )
                .await?;
            println!(
                "approved: {name} version {version} is now in {}",
                text(&answer["activity"], "to_stage")
            );
        }
        ModelsCommand::Reject {
            name,
            version,
            stage,
            comment,
        } => {
            let answer = client
                .post(
                    &format!("{MLFLOW}/transition-requests/reject"),
                    &json!({"name": name, "version": version, "stage": stage, "comment": comment}),
                )
                .await?;
            println!(
                "rejected the requests to move {name} version {version} to {}",
                text(&answer["activity"], "to_stage")
            );
        }
        ModelsCommand::Alias {
            name,
            alias,
            version,
            delete,
        } => {
            let path = format!("{MLFLOW}/registered-models/alias");
            if delete {
                delete_with_body(client, &path, &json!({"name": name, "alias": alias})).await?;
                println!("removed {name}@{alias}");
            } else {
                let Some(version) = version else {
                    bail!("give the version {name}@{alias} should point at, or --delete");
                };
                client
                    .post(
                        &path,
                        &json!({"name": name, "alias": alias, "version": version}),
                    )
                    .await?;
                println!("{name}@{alias} -> version {version}");
            }
        }
        ModelsCommand::Webhooks { command } => webhooks(client, command).await?,
        ModelsCommand::Audit {
            object,
            actor,
            limit,
        } => {
            let mut query = vec![("max_results", limit.to_string())];
            query.extend(object.map(|o| ("object", o)));
            query.extend(actor.map(|a| ("actor", a)));
            let answer = client.get(AUDIT, &query).await?;
            print_events(items(&answer, "events"));
        }
    }
    Ok(())
}

async fn list(client: &Client, filter: String) -> Result<()> {
    let models = all_pages(
        client,
        &format!("{MLFLOW}/registered-models/search"),
        "registered_models",
        vec![
            ("filter", filter),
            ("max_results", MAX_REGISTERED_MODELS_PER_PAGE.to_string()),
        ],
    )
    .await?;
    println!(
        "{:<32} {:<36} {:<24} UPDATED",
        "NAME", "LATEST (stage:version)", "ALIASES"
    );
    for model in &models {
        let latest: Vec<String> = items(model, "latest_versions")
            .iter()
            .map(|v| format!("{}:{}", text(v, "current_stage"), text(v, "version")))
            .collect();
        let aliases: Vec<String> = items(model, "aliases")
            .iter()
            .map(|a| format!("{}->{}", text(a, "alias"), text(a, "version")))
            .collect();
        println!(
            "{:<32} {:<36} {:<24} {}",
            text(model, "name"),
            latest.join(" "),
            aliases.join(" "),
            time(integer(model, "last_updated_timestamp"))
        );
    }
    Ok(())
}

async fn show(client: &Client, name: &str) -> Result<()> {
    // The Databricks shape of the model carries its id and the caller's level on it.
    let answer = client
        .get(
            &format!("{MLFLOW}/databricks/registered-models/get"),
            &[("name", name.to_string())],
        )
        .await?;
    let model = &answer["registered_model_databricks"];
    println!("{}  (id {})", text(model, "name"), text(model, "id"));
    if let Some(level) = model.get("permission_level").and_then(Value::as_str) {
        println!("  your level: {level}");
    }
    if let Some(description) = model.get("description").and_then(Value::as_str) {
        println!("  {description}");
    }
    for tag in items(model, "tags") {
        println!("  tag {} = {}", text(tag, "key"), text(tag, "value"));
    }
    let versions = all_pages(
        client,
        &format!("{MLFLOW}/model-versions/search"),
        "model_versions",
        vec![("filter", format!("name = '{}'", name.replace('\'', "\\'")))],
    )
    .await?;
    println!();
    print_versions(&versions);
    for version in &versions {
        let number = text(version, "version");
        let requests = client
            .get(
                &format!("{MLFLOW}/transition-requests/list"),
                &[("name", name.to_string()), ("version", number.to_string())],
            )
            .await?;
        for request in items(&requests, "requests") {
            println!(
                "  open request: version {number} -> {} by {} ({})",
                text(request, "to_stage"),
                text(request, "user_id"),
                text(request, "comment")
            );
        }
    }
    println!();
    let audit = client
        .get(
            AUDIT,
            &[("object", name.to_string()), ("max_results", "1000".into())],
        )
        .await;
    match audit {
        Ok(answer) => {
            println!("Activity:");
            print_events(items(&answer, "events"));
        }
        // The audit trail is for admins; readers see the versions' own histories.
        Err(error) if error_code(&error) == Some("PERMISSION_DENIED") => {
            println!(
                "Activity (transitions, requests and comments; the audit trail is for admins):"
            );
            print_activities(client, name, &versions).await?;
        }
        Err(error) => return Err(error),
    }
    Ok(())
}

fn print_versions(versions: &[Value]) {
    println!(
        "{:<8} {:<11} {:<8} {:<34} {:<36} {:<10} ALIASES",
        "VERSION", "STAGE", "STATUS", "RUN", "LOGGED MODEL", "BY"
    );
    for v in versions {
        let aliases: Vec<&str> = items(v, "aliases")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{:<8} {:<11} {:<8} {:<34} {:<36} {:<10} {}",
            text(v, "version"),
            text(v, "current_stage"),
            text(v, "status").trim_end_matches("_REGISTRATION"),
            text(v, "run_id"),
            text(v, "model_id"),
            text(v, "user_id"),
            aliases.join(",")
        );
    }
}

/// Each version's activity history, oldest first.
async fn print_activities(client: &Client, name: &str, versions: &[Value]) -> Result<()> {
    let mut activities = Vec::new();
    for version in versions {
        let number = text(version, "version");
        let answer = client
            .get(
                &format!("{MLFLOW}/model-versions/activities"),
                &[("name", name.to_string()), ("version", number.to_string())],
            )
            .await?;
        for activity in items(&answer, "activities") {
            activities.push((number.to_string(), activity.clone()));
        }
    }
    activities.sort_by_key(|(_, a)| integer(a, "creation_timestamp"));
    println!(
        "{:<19} {:<8} {:<14} {:<26} {:<24} COMMENT",
        "TIME (UTC)", "VERSION", "USER", "ACTIVITY", "STAGES"
    );
    for (version, a) in &activities {
        let stages = match (a.get("from_stage"), a.get("to_stage")) {
            (None, None) => "-".to_string(),
            _ => format!("{} -> {}", text(a, "from_stage"), text(a, "to_stage")),
        };
        println!(
            "{:<19} {:<8} {:<14} {:<26} {:<24} {}",
            time(integer(a, "creation_timestamp")),
            version,
            text(a, "user_id"),
            text(a, "activity_type"),
            stages,
            a.get("comment").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(())
}

async fn webhooks(client: &Client, command: WebhooksCommand) -> Result<()> {
    match command {
        WebhooksCommand::List { model } => list_webhooks(client, model).await?,
        WebhooksCommand::Create {
            url,
            events,
            format,
            name,
            description,
            secret,
            model,
        } => {
            let id = match format.as_str() {
                "mlflow" => {
                    if model.is_some() {
                        bail!("--model applies to the databricks format only");
                    }
                    let name = name.unwrap_or_else(|| default_webhook_name(&url));
                    // MLflow names events as entity and action: `model_version.created`.
                    let events: Vec<Value> = events
                        .iter()
                        .map(|e| {
                            let (entity, action) = e.split_once('.').unwrap_or((e, ""));
                            json!({"entity": entity, "action": action})
                        })
                        .collect();
                    let answer = client
                        .post(
                            &format!("{MLFLOW}/webhooks"),
                            &json!({
                                "name": name,
                                "description": description,
                                "url": url,
                                "events": events,
                                "secret": secret,
                            }),
                        )
                        .await?;
                    text(&answer["webhook"], "webhook_id").to_string()
                }
                "databricks" => {
                    if name.is_some() {
                        bail!("databricks webhooks have no name: use --description");
                    }
                    let answer = client
                        .post(
                            &format!("{MLFLOW}/registry-webhooks/create"),
                            &json!({
                                "model_name": model,
                                "events": events,
                                "description": description,
                                "http_url_spec": {"url": url, "secret": secret},
                            }),
                        )
                        .await?;
                    text(&answer["webhook"], "id").to_string()
                }
                other => bail!("unknown format '{other}': use mlflow or databricks"),
            };
            println!("created webhook {id}");
        }
        WebhooksCommand::Delete { id } => {
            // The id does not say its format: the Databricks route answers "not found" for an
            // MLflow webhook, which then goes through MLflow's.
            let databricks = delete_with_body(
                client,
                &format!("{MLFLOW}/registry-webhooks/delete"),
                &json!({"id": id}),
            )
            .await;
            match databricks {
                Ok(()) => {}
                Err(error)
                    if error_code(&error) == Some("RESOURCE_DOES_NOT_EXIST")
                        && is_path_segment(&id) =>
                {
                    client
                        .delete(&format!("{MLFLOW}/webhooks/{id}"), &[])
                        .await?;
                }
                Err(error) => return Err(error),
            }
            println!("deleted webhook {id}");
        }
        WebhooksCommand::Deliveries {
            webhook,
            status,
            limit,
        } => {
            let mut query = vec![("max_results", limit.to_string())];
            query.extend(webhook.map(|w| ("webhook_id", w)));
            query.extend(status.map(|s| ("status", s)));
            let answer = client.get(DELIVERIES, &query).await?;
            println!(
                "{:<36} {:<34} {:<40} {:<10} {:>8} {:>6} {:>8}  LAST ERROR",
                "DELIVERY", "WEBHOOK", "EVENT", "STATUS", "ATTEMPTS", "CODE", "LATENCY"
            );
            for d in items(&answer, "deliveries") {
                println!(
                    "{:<36} {:<34} {:<40} {:<10} {:>8} {:>6} {:>6}ms  {}",
                    text(d, "delivery_id"),
                    text(d, "webhook_id"),
                    text(d, "event_name"),
                    text(d, "status"),
                    integer(d, "attempts"),
                    d.get("last_status_code")
                        .and_then(Value::as_i64)
                        .map_or("-".to_string(), |c| c.to_string()),
                    integer(d, "last_latency_ms"),
                    d.get("last_error").and_then(Value::as_str).unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

/// Both formats' webhooks (MLflow's are admin-only), or one model's Databricks-format ones.
async fn list_webhooks(client: &Client, model: Option<String>) -> Result<()> {
    // (id, format, status, url, model, events)
    let mut rows: Vec<[String; 6]> = Vec::new();
    if model.is_none() {
        for hook in all_pages(client, &format!("{MLFLOW}/webhooks"), "webhooks", vec![]).await? {
            let events: Vec<String> = items(&hook, "events")
                .iter()
                .map(|e| {
                    format!("{}.{}", text(e, "entity"), text(e, "action")).to_ascii_lowercase()
                })
                .collect();
            rows.push([
                text(&hook, "webhook_id").into(),
                "mlflow".into(),
                text(&hook, "status").into(),
                text(&hook, "url").into(),
                "-".into(),
                events.join(","),
            ]);
        }
    }
    let query: Vec<(&str, String)> = model.map(|m| ("model_name", m)).into_iter().collect();
    let path = format!("{MLFLOW}/registry-webhooks/list");
    for hook in all_pages(client, &path, "webhooks", query).await? {
        let events: Vec<&str> = items(&hook, "events")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        rows.push([
            text(&hook, "id").into(),
            "databricks".into(),
            text(&hook, "status").into(),
            text(&hook["http_url_spec"], "url").into(),
            text(&hook, "model_name").into(),
            events.join(","),
        ]);
    }
    println!(
        "{:<34} {:<10} {:<9} {:<40} {:<20} EVENTS",
        "ID", "FORMAT", "STATUS", "URL", "MODEL"
    );
    for [id, format, status, url, model, events] in rows {
        println!("{id:<34} {format:<10} {status:<9} {url:<40} {model:<20} {events}");
    }
    Ok(())
}

/// An MLflow webhook needs a name; its destination's host says what it is for.
fn default_webhook_name(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| url.to_string())
}

/// Whether `id` can stand in a URL path as it is (webhook ids are hex).
fn is_path_segment(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn print_events(events: &[Value]) {
    println!(
        "{:<6} {:<19} {:<14} {:<20} {:<12} DETAILS",
        "ID", "TIME (UTC)", "ACTOR", "ENTITY", "ACTION"
    );
    for event in events {
        println!(
            "{:<6} {:<19} {:<14} {:<20} {:<12} {}",
            integer(event, "id"),
            time(integer(event, "timestamp")),
            text(event, "actor"),
            text(event, "entity"),
            text(event, "action"),
            event["data"]
        );
    }
}

/// Every item of a paged MLflow list (`key` plus `next_page_token`), page after page.
async fn all_pages(
    client: &Client,
    path: &str,
    key: &str,
    query: Vec<(&str, String)>,
) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut page_token: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.extend(page_token.map(|t| ("page_token", t)));
        let answer = client.get(path, &page_query).await?;
        found.extend(items(&answer, key).iter().cloned());
        page_token = answer
            .get("next_page_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if page_token.is_none() {
            return Ok(found);
        }
    }
}

/// MLflow's DELETE routes take their arguments as a JSON body, as its clients send them.
async fn delete_with_body(client: &Client, path: &str, body: &Value) -> Result<()> {
    client
        .send(client.request(Method::DELETE, path).json(body))
        .await?;
    Ok(())
}

/// The text at `key`, `-` when absent (numbers as the server wrote them).
fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn integer(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn items<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(crate) fn time(millis: i64) -> String {
    let (year, month, day, hour, minute, second, _) = tarn_core::ids::utc_parts(millis);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
}

/// A registered model version fetched through the server for scoring on this machine.
pub(crate) struct FetchedModel {
    pub name: String,
    pub version: i64,
    pub model: tarn_models::Model,
}

/// The version a `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `models:/NAME/STAGE` URI
/// names now, as the token's principal sees the registry.
pub(crate) async fn resolve_version(client: &Client, uri: &str) -> Result<(String, i64)> {
    use tarn_core::serving::{VersionRef, parse_model_uri};
    let (name, reference) = parse_model_uri(uri)?;
    let version = match reference {
        VersionRef::Number(version) => {
            client
                .get(
                    &format!("{MLFLOW}/model-versions/get"),
                    &[("name", name.clone()), ("version", version.to_string())],
                )
                .await?;
            version
        }
        VersionRef::Alias(alias) => {
            let answer = client
                .get(
                    &format!("{MLFLOW}/registered-models/alias"),
                    &[("name", name.clone()), ("alias", alias)],
                )
                .await?;
            version_number(&answer["model_version"])?
        }
        VersionRef::Stage(stage) => {
            let answer = client
                .post(
                    &format!("{MLFLOW}/registered-models/get-latest-versions"),
                    &json!({"name": name, "stages": [stage.as_str()]}),
                )
                .await?;
            match items(&answer, "model_versions").first() {
                Some(version) => version_number(version)?,
                None => bail!("{name} has no version in {}", stage.as_str()),
            }
        }
    };
    Ok((name, version))
}

fn version_number(version: &Value) -> Result<i64> {
    let text = text(version, "version");
    text.parse()
        .map_err(|_| anyhow::anyhow!("the server's model version '{text}' is not a number"))
}

/// Resolves `uri` and downloads the version's files (as `mlflow` does, through the artifact
/// proxy), unless `current` is that version already.
pub(crate) async fn fetch_model(
    client: &Client,
    uri: &str,
    current: Option<i64>,
) -> Result<Option<FetchedModel>> {
    let (name, version) = resolve_version(client, uri).await?;
    if current == Some(version) {
        return Ok(None);
    }
    let answer = client
        .get(
            &format!("{MLFLOW}/model-versions/get-download-uri"),
            &[("name", name.clone()), ("version", version.to_string())],
        )
        .await?;
    let location = text(&answer, "artifact_uri");
    let location = location
        .strip_prefix("mlflow-artifacts:/")
        .unwrap_or(location)
        .trim_matches('/')
        .to_string();
    let files = model_files(client, &location).await?;
    let mlmodel = files
        .get("MLmodel")
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .ok_or_else(|| anyhow::anyhow!("{name} version {version} has no MLmodel file"))?;
    let model = tokio::task::spawn_blocking(move || {
        let model = tarn_models::Model::load(&mlmodel, |file: &str| {
            files.get(file).cloned().ok_or_else(|| {
                tarn_models::ModelError::Invalid(format!("the model has no file {file}"))
            })
        })?;
        model.warm_up()?;
        Ok::<_, tarn_models::ModelError>(model)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("{name} version {version}: {e}"))?;
    Ok(Some(FetchedModel {
        name,
        version,
        model,
    }))
}

/// Every file under the artifact folder `location`, by path relative to it.
async fn model_files(
    client: &Client,
    location: &str,
) -> Result<std::collections::HashMap<String, Vec<u8>>> {
    const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";
    let mut files = std::collections::HashMap::new();
    let mut folders = vec![String::new()];
    while let Some(folder) = folders.pop() {
        let path = [location, folder.as_str()]
            .iter()
            .filter(|part| !part.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        let listing = client.get(ARTIFACTS, &[("path", path.clone())]).await?;
        for entry in items(&listing, "files") {
            let relative = [folder.as_str(), text(entry, "path")]
                .iter()
                .filter(|part| !part.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            if entry.get("is_dir").and_then(Value::as_bool) == Some(true) {
                folders.push(relative);
                continue;
            }
            let url = format!(
                "{ARTIFACTS}/{}",
                crate::client::path_segments(&format!("{location}/{relative}"))
            );
            let bytes = client
                .send(client.request(Method::GET, &url))
                .await?
                .bytes()
                .await?;
            files.insert(relative, bytes.to_vec());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::{default_webhook_name, is_path_segment, time};

    #[test]
    fn timestamps_render_as_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_572_827_587), "2026-11-25 02:13:47");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn an_mlflow_webhook_is_named_after_its_host() {
        assert_eq!(
            default_webhook_name("https://ci.example.com/hook?token=x"),
            "ci.example.com"
        );
        assert_eq!(default_webhook_name("not a url"), "not a url");
    }

    #[test]
    fn only_plain_ids_go_into_a_path() {
        assert!(is_path_segment("0123abcdef"));
        assert!(!is_path_segment("../admin"));
        assert!(!is_path_segment(""));
    }
}
