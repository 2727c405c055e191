//! `tarn models ...`: the registry from the command line, on the metadata store directly (like
//! the other admin commands); changes are recorded in the audit trail as `cli:<user>`.

use anyhow::Result;
use clap::Subcommand;
use tarn_core::events::EventQuery;
use tarn_core::registry::{
    ModelVersion, RequestOutcome, Stage, parse_version, validate_settable_alias,
};
use tarn_core::search;
use tarn_core::store::{MetaStore, SearchRegistry};

use crate::local::{cli_actor, cli_principal};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List registered models with their latest version per stage and their aliases.
    List {
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// MLflow filter, e.g. "name LIKE 'fraud%'" or "tags.team = 'risk'".
        #[arg(long, default_value = "")]
        filter: String,
    },
    /// Show a model: versions with stage, lineage and checksum, aliases, and its activity.
    Show {
        name: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Move a version to None, Staging, Production or Archived.
    Transition {
        name: String,
        version: String,
        stage: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// Archive the versions currently in the target stage.
        #[arg(long)]
        archive_existing: bool,
    },
    /// Request a stage transition (a reviewer approves or rejects it).
    Request {
        name: String,
        version: String,
        stage: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approve the open requests to move a version to a stage, which moves it.
    Approve {
        name: String,
        version: String,
        stage: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
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
        #[arg(long, default_value = "dev")]
        workspace: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Point an alias at a version (or remove it with --delete).
    Alias {
        name: String,
        alias: String,
        /// The version; omit with --delete.
        version: Option<String>,
        #[arg(long, default_value = "dev")]
        workspace: String,
        #[arg(long)]
        delete: bool,
    },
    /// Webhooks on registry events: list, create, delete, and the delivery log.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// The audit trail: registry and permission changes, oldest first.
    Audit {
        #[arg(long, default_value = "dev")]
        workspace: String,
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
    /// Webhooks of a workspace, both formats.
    List {
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// Subscribe a URL to registry events.
    Create {
        url: String,
        /// Events: `model_version.created`-style names (MLflow format) or
        /// `MODEL_VERSION_CREATED`-style names (Databricks format). Repeatable.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        #[arg(long, default_value = "dev")]
        workspace: String,
        /// `mlflow` (X-MLflow-Signature) or `databricks` (X-Databricks-Signature).
        #[arg(long, default_value = "mlflow")]
        format: String,
        #[arg(long, default_value = "")]
        name: String,
        /// HMAC key for the signature header.
        #[arg(long, env = "TARN_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Databricks format only: just this model's events.
        #[arg(long)]
        model: Option<String>,
        /// Allow loopback and private destinations.
        #[arg(long)]
        allow_private: bool,
    },
    Delete {
        id: String,
        #[arg(long, default_value = "dev")]
        workspace: String,
    },
    /// The delivery log, newest first.
    Deliveries {
        #[arg(long, default_value = "dev")]
        workspace: String,
        #[arg(long)]
        webhook: Option<String>,
        /// pending, succeeded or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

async fn webhooks(store: &dyn MetaStore, command: WebhooksCommand) -> Result<()> {
    use tarn_core::webhooks::{Flavor, Webhook, WebhookStatus};
    match command {
        WebhooksCommand::List { workspace } => {
            println!(
                "{:<34} {:<10} {:<9} {:<40} EVENTS",
                "ID", "FORMAT", "STATUS", "URL"
            );
            for flavor in [Flavor::Mlflow, Flavor::Databricks] {
                let page = store
                    .list_webhooks(&workspace, flavor, None, 0, 1000)
                    .await?;
                for hook in page.items {
                    println!(
                        "{:<34} {:<10} {:<9} {:<40} {}",
                        hook.id,
                        flavor.as_str(),
                        hook.status.as_str(),
                        hook.url,
                        hook.events.join(",")
                    );
                }
            }
        }
        WebhooksCommand::Create {
            url,
            events,
            workspace,
            format,
            name,
            secret,
            model,
            allow_private,
        } => {
            let flavor = match format.as_str() {
                "mlflow" => Flavor::Mlflow,
                "databricks" => Flavor::Databricks,
                other => anyhow::bail!("unknown format '{other}': use mlflow or databricks"),
            };
            let events = events
                .iter()
                .map(|e| match flavor {
                    Flavor::Mlflow => {
                        let (entity, action) = e.split_once('.').unwrap_or((e, ""));
                        tarn_core::webhooks::mlflow_event_name(entity, action)
                    }
                    Flavor::Databricks => {
                        tarn_core::webhooks::validate_databricks_event(e).map(|()| e.clone())
                    }
                })
                .collect::<tarn_core::Result<Vec<_>>>()?;
            if model.is_some() && flavor == Flavor::Mlflow {
                anyhow::bail!("--model applies to the databricks format only");
            }
            if let Some(model) = &model {
                store.registered_model_id(&workspace, model).await?;
            }
            tarn_events::webhooks::check_destination(&url, allow_private).await?;
            let now = tarn_core::ids::now_millis();
            let hook = Webhook {
                id: tarn_core::ids::hex32(rand::random()),
                workspace,
                flavor,
                name,
                description: String::new(),
                url,
                secret,
                authorization: None,
                enable_ssl_verification: true,
                model_name: model,
                events,
                status: WebhookStatus::Active,
                creation_timestamp: now,
                last_updated_timestamp: now,
            };
            store.create_webhook(&hook, &cli_actor()).await?;
            println!("created webhook {}", hook.id);
        }
        WebhooksCommand::Delete { id, workspace } => {
            store.delete_webhook(&workspace, &id, &cli_actor()).await?;
            println!("deleted webhook {id}");
        }
        WebhooksCommand::Deliveries {
            workspace,
            webhook,
            status,
            limit,
        } => {
            let deliveries = store
                .deliveries(&tarn_core::store::DeliveryQuery {
                    workspace,
                    webhook_id: webhook,
                    status,
                    limit,
                })
                .await?;
            println!(
                "{:<36} {:<34} {:<40} {:<10} {:>8} {:>6} {:>8}  LAST ERROR",
                "DELIVERY", "WEBHOOK", "EVENT", "STATUS", "ATTEMPTS", "CODE", "LATENCY"
            );
            for d in deliveries {
                println!(
                    "{:<36} {:<34} {:<40} {:<10} {:>8} {:>6} {:>6}ms  {}",
                    d.delivery_id,
                    d.webhook_id,
                    d.event_name,
                    d.status,
                    d.attempts,
                    d.last_status_code
                        .map_or("-".to_string(), |c| c.to_string()),
                    d.last_latency_ms.unwrap_or(0),
                    d.last_error.unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn time(millis: i64) -> String {
    let (year, month, day, hour, minute, second, _) = tarn_core::ids::utc_parts(millis);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
}

fn print_versions(versions: &[ModelVersion]) {
    println!(
        "{:<8} {:<11} {:<8} {:<34} {:<36} {:<14} {:<10} ALIASES",
        "VERSION", "STAGE", "STATUS", "RUN", "LOGGED MODEL", "CHECKSUM", "BY"
    );
    for v in versions {
        println!(
            "{:<8} {:<11} {:<8} {:<34} {:<36} {:<14} {:<10} {}",
            v.version,
            v.current_stage.as_str(),
            v.status.as_str().trim_end_matches("_REGISTRATION"),
            v.run_id.as_deref().unwrap_or("-"),
            v.model_id.as_deref().unwrap_or("-"),
            &v.checksum[..v.checksum.len().min(12)],
            v.user_id.as_deref().unwrap_or("-"),
            v.aliases.join(",")
        );
    }
}

pub async fn run(store: &dyn MetaStore, command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List { workspace, filter } => {
            let query = SearchRegistry {
                filter: search::parse_registered_model_filter(&filter)?,
                order_by: vec![],
                max_results: 1000,
                offset: 0,
                readable_by: None,
            };
            let page = store.search_registered_models(&workspace, &query).await?;
            println!(
                "{:<32} {:<36} {:<24} UPDATED",
                "NAME", "LATEST (stage:version)", "ALIASES"
            );
            for model in page.items {
                let latest: Vec<String> = model
                    .latest_versions
                    .iter()
                    .map(|v| format!("{}:{}", v.current_stage.as_str(), v.version))
                    .collect();
                let aliases: Vec<String> = model
                    .aliases
                    .iter()
                    .map(|a| format!("{}->{}", a.alias, a.version))
                    .collect();
                println!(
                    "{:<32} {:<36} {:<24} {}",
                    model.name,
                    latest.join(" "),
                    aliases.join(" "),
                    time(model.last_updated_timestamp)
                );
            }
        }
        ModelsCommand::Show { name, workspace } => {
            let model = store.get_registered_model(&workspace, &name).await?;
            println!("{}  (id {})", model.name, model.id);
            if !model.description.is_empty() {
                println!("  {}", model.description);
            }
            for tag in &model.tags {
                println!("  tag {} = {}", tag.key, tag.value);
            }
            let query = SearchRegistry {
                filter: search::parse_model_version_filter(&format!(
                    "name = '{}'",
                    name.replace('\'', "\\'")
                ))?,
                order_by: vec![],
                max_results: 10_000,
                offset: 0,
                readable_by: None,
            };
            println!();
            let versions = store.search_model_versions(&workspace, &query).await?.items;
            print_versions(&versions);
            for version in &versions {
                for request in store
                    .open_transition_requests(&workspace, &name, version.version)
                    .await?
                {
                    println!(
                        "  open request: version {} -> {} by {} ({})",
                        version.version,
                        request.to_stage.map_or("?", |s| s.as_str()),
                        request.user_id,
                        request.comment
                    );
                }
            }
            println!();
            println!("Activity:");
            print_events(
                store,
                EventQuery {
                    workspace: Some(workspace),
                    object: Some(name),
                    limit: 1000,
                    ..EventQuery::default()
                },
            )
            .await?;
        }
        ModelsCommand::Transition {
            name,
            version,
            stage,
            workspace,
            archive_existing,
        } => {
            let stage = Stage::parse(&stage)?;
            let moved = store
                .transition_stage(
                    &workspace,
                    &name,
                    parse_version(&version)?,
                    stage,
                    archive_existing,
                    "",
                    &cli_principal(),
                )
                .await?;
            println!(
                "{name} version {} is now in {}",
                moved.version,
                moved.current_stage.as_str()
            );
        }
        ModelsCommand::Request {
            name,
            version,
            stage,
            workspace,
            comment,
        } => {
            let request = store
                .create_transition_request(
                    &workspace,
                    &name,
                    parse_version(&version)?,
                    Stage::parse(&stage)?,
                    &comment,
                    &cli_actor(),
                )
                .await?;
            println!(
                "requested moving {name} version {version} to {} (request {})",
                Stage::parse(&stage)?.as_str(),
                request.id
            );
        }
        ModelsCommand::Approve {
            name,
            version,
            stage,
            workspace,
            archive_existing,
            comment,
        } => {
            store
                .resolve_transition_request(
                    &workspace,
                    &name,
                    parse_version(&version)?,
                    Stage::parse(&stage)?,
                    RequestOutcome::Approve { archive_existing },
                    None,
                    &comment,
                    &cli_actor(),
                )
                .await?;
            println!(
                "approved: {name} version {version} is now in {}",
                Stage::parse(&stage)?.as_str()
            );
        }
        ModelsCommand::Reject {
            name,
            version,
            stage,
            workspace,
            comment,
        } => {
            store
                .resolve_transition_request(
                    &workspace,
                    &name,
                    parse_version(&version)?,
                    Stage::parse(&stage)?,
                    RequestOutcome::Reject,
                    None,
                    &comment,
                    &cli_actor(),
                )
                .await?;
            println!(
                "rejected the requests to move {name} version {version} to {}",
                Stage::parse(&stage)?.as_str()
            );
        }
        ModelsCommand::Alias {
            name,
            alias,
            version,
            workspace,
            delete,
        } => {
            if delete {
                store
                    .delete_alias(&workspace, &name, &alias, &cli_actor())
                    .await?;
                println!("removed {name}@{alias}");
            } else {
                validate_settable_alias(&alias)?;
                let version = parse_version(version.as_deref().unwrap_or(""))?;
                store
                    .set_alias(&workspace, &name, &alias, version, &cli_actor())
                    .await?;
                println!("{name}@{alias} -> version {version}");
            }
        }
        ModelsCommand::Webhooks { command } => webhooks(store, command).await?,
        ModelsCommand::Audit {
            workspace,
            object,
            actor,
            limit,
        } => {
            print_events(
                store,
                EventQuery {
                    workspace: Some(workspace),
                    object,
                    actor,
                    limit,
                    ..EventQuery::default()
                },
            )
            .await?;
        }
    }
    Ok(())
}

async fn print_events(store: &dyn MetaStore, query: EventQuery) -> Result<()> {
    println!(
        "{:<6} {:<19} {:<14} {:<20} {:<12} DETAILS",
        "ID", "TIME (UTC)", "ACTOR", "ENTITY", "ACTION"
    );
    for event in store.events(&query).await? {
        let stored = event.change.store()?;
        println!(
            "{:<6} {:<19} {:<14} {:<20} {:<12} {}",
            event.id,
            time(event.timestamp),
            event.actor,
            stored.entity,
            stored.action,
            stored.data
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::time;

    #[test]
    fn timestamps_render_as_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_795_572_827_587), "2026-11-25 02:13:47");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
