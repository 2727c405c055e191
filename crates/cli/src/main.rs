//! The `tarn` binary: the server, offline admin commands over the metadata store, and the
//! quickstart.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tarn_core::auth::{ObjectType, PrincipalKind};
use tarn_core::store::MetaStore;

mod admin;
mod features;
mod ingest;
mod jobs;
mod lineage;
mod local;
mod models;
mod monitors;
mod quickstart;
mod score;
mod serve;
mod server;
mod sql;
mod tables;
mod worker;

use local::cli_actor;
use server::{ServerArgs, StoreArgs, run_server};

#[derive(Parser)]
#[command(
    name = "tarn",
    version,
    about = "MLOps on the lakehouse, in one binary"
)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, global = true, env = "TARN_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the tarn server.
    Server(ServerArgs),
    /// Run job tasks on this machine for the servers sharing a metadata store.
    Worker(worker::WorkerArgs),
    /// Start tarn on embedded defaults and log a small real example into `dev`.
    Quickstart(quickstart::QuickstartArgs),
    /// Serve one model (an MLflow model directory or a registered model) with the scoring API
    /// of `mlflow models serve`.
    Serve(serve::ServeArgs),
    /// Score a table or query with a registered model into a predictions table.
    Score {
        #[command(flatten)]
        store: StoreArgs,
        /// The lake; default DATA_DIR/lake.
        #[arg(long, env = "TARN_LAKE_ROOT")]
        lake_root: Option<String>,
        /// Artifacts of the registry; default DATA_DIR/artifacts.
        #[arg(long, env = "TARN_ARTIFACT_ROOT")]
        artifact_root: Option<String>,
        #[command(flatten)]
        args: score::ScoreArgs,
    },
    /// Work on the data directory and database directly, without a server: backups.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Manage users.
    Users {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage groups.
    Groups {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Manage service principals.
    ServicePrincipals {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ServicePrincipalsCommand,
    },
    /// Manage workspaces and their members.
    Workspaces {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Manage personal access tokens.
    Tokens {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Jobs in the Databricks Jobs shape: create from settings, list, get, delete, run and
    /// follow, runs, logs, cancel.
    Jobs {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The model registry: list, show, transition, aliases, audit trail.
    Models {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// The lakehouse catalog: schemas, tables, columns, history and rows.
    Tables {
        #[command(flatten)]
        store: StoreArgs,
        /// The lake; default DATA_DIR/lake.
        #[arg(long, env = "TARN_LAKE_ROOT")]
        lake_root: Option<String>,
        #[command(subcommand)]
        command: tables::TablesCommand,
    },
    /// Ingest CSV, JSON lines or Parquet files into a Delta table (each file once).
    Ingest {
        #[command(flatten)]
        store: StoreArgs,
        /// The lake; default DATA_DIR/lake.
        #[arg(long, env = "TARN_LAKE_ROOT")]
        lake_root: Option<String>,
        #[command(flatten)]
        args: ingest::IngestArgs,
    },
    /// Run one SQL statement over the lakehouse and print the result.
    Sql {
        #[command(flatten)]
        store: StoreArgs,
        /// The lake; default DATA_DIR/lake.
        #[arg(long, env = "TARN_LAKE_ROOT")]
        lake_root: Option<String>,
        #[command(flatten)]
        args: sql::SqlArgs,
    },
    /// The feature store: feature tables and point-in-time training sets.
    Features {
        #[command(flatten)]
        store: StoreArgs,
        /// The lake; default DATA_DIR/lake.
        #[arg(long, env = "TARN_LAKE_ROOT")]
        lake_root: Option<String>,
        /// The online store; default sqlite://DATA_DIR/online.db.
        #[arg(long, env = "TARN_ONLINE_STORE")]
        online_store: Option<String>,
        #[command(subcommand)]
        command: features::FeaturesCommand,
    },
    /// Table monitors: profile, drift and model-quality metrics tables, refreshed on demand.
    Monitors {
        #[command(flatten)]
        store: StoreArgs,
        /// The lake; default DATA_DIR/lake.
        #[arg(long, env = "TARN_LAKE_ROOT")]
        lake_root: Option<String>,
        #[command(subcommand)]
        command: monitors::MonitorsCommand,
    },
    /// Show where a table's data came from and where it went.
    Lineage {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        args: lineage::LineageArgs,
    },
    /// Manage permissions on objects.
    Permissions {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: PermissionsCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user (with a password for HTTP basic auth).
    Create {
        name: String,
        #[arg(long, env = "TARN_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// List users, groups and service principals.
    List,
    /// Set a user's password.
    SetPassword {
        name: String,
        #[arg(long, env = "TARN_NEW_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Deactivate a principal: its tokens and password stop working.
    Deactivate { name: String },
}

#[derive(Subcommand)]
enum GroupsCommand {
    Create { name: String },
    AddMember { group: String, member: String },
    RemoveMember { group: String, member: String },
    Members { group: String },
}

#[derive(Subcommand)]
enum ServicePrincipalsCommand {
    Create { name: String },
}

#[derive(Subcommand)]
enum WorkspacesCommand {
    List,
    AddMember {
        workspace: String,
        principal: String,
    },
    RemoveMember {
        workspace: String,
        principal: String,
    },
    Members {
        workspace: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Issue a token for a principal; the secret is printed once.
    Create {
        principal: String,
        #[arg(long)]
        lifetime_seconds: Option<i64>,
        #[arg(long, default_value = "")]
        comment: String,
        /// The one workspace the token may be used in (default: every one the principal
        /// belongs to).
        #[arg(long)]
        workspace: Option<String>,
    },
    List {
        #[arg(long)]
        principal: Option<String>,
    },
    Revoke {
        token_id: String,
    },
}

#[derive(Subcommand)]
enum PermissionsCommand {
    /// Grant a level on an experiment or registered model (adds to or raises grants).
    Grant {
        #[command(flatten)]
        object: ObjectArg,
        #[arg(long)]
        principal: String,
        /// Experiments: CAN_READ, CAN_EDIT, CAN_MANAGE. Registered models also
        /// CAN_MANAGE_STAGING_VERSIONS and CAN_MANAGE_PRODUCTION_VERSIONS.
        #[arg(long)]
        level: String,
    },
    /// Show who holds which level on an experiment or registered model.
    Show {
        #[command(flatten)]
        object: ObjectArg,
    },
}

/// The securable object a permissions command names.
#[derive(Args)]
struct ObjectArg {
    #[arg(long, default_value = "dev")]
    workspace: String,
    /// An experiment id.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    experiment: Option<String>,
    /// A registered model name.
    #[arg(long)]
    model: Option<String>,
}

impl ObjectArg {
    /// The object's type and id, after checking it exists.
    async fn resolve(&self, store: &dyn MetaStore) -> Result<(ObjectType, String)> {
        if let Some(name) = &self.model {
            let id = store.registered_model_id(&self.workspace, name).await?;
            return Ok((ObjectType::RegisteredModel, id));
        }
        let experiment = self
            .experiment
            .as_deref()
            .context("--experiment or --model")?;
        let id = tarn_core::validation::parse_experiment_id(experiment)?;
        store.get_experiment(&self.workspace, id).await?;
        Ok((ObjectType::Experiment, id.to_string()))
    }
}

fn init_logging(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TARN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

// Arrow and Parquet work allocates and frees large buffers from many threads; glibc's
// per-thread arenas kept much of it resident after a training set was answered. Built without
// asking for transparent huge pages (Cargo.toml says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of each runtime thread. SQL planning and execution recurse once per level of an
/// expression (tarn refuses deeper than `tarn_lake::MAX_EXPRESSION_DEPTH`); 2 MiB, tokio's
/// default, left too little room at that depth with DataFusion's planner built unoptimised.
/// Only the pages a thread touches are ever committed.
const THREAD_STACK: usize = 16 * 1024 * 1024;

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

async fn run() -> Result<()> {
    let cli = Cli::parse();
    // The quickstart talks to its reader; request logs would drown that out.
    let default_filter = match cli.command {
        Command::Quickstart(_) => "warn",
        _ => "info,sqlx=warn",
    };
    init_logging(&cli.log_format, default_filter);
    match cli.command {
        Command::Server(args) => run_server(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Quickstart(args) => quickstart::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Score {
            store,
            lake_root,
            artifact_root,
            args,
        } => {
            let lake = tarn_lake::Lake::open(&store.lake_root(lake_root))?;
            let artifacts =
                tarn_artifacts::ArtifactStore::open(&store.artifact_root(artifact_root))?;
            score::run(store.open().await?.as_ref(), &lake, &artifacts, args).await
        }
        Command::Users { store, command } => users(store.open().await?.as_ref(), command).await,
        Command::Groups { store, command } => groups(store.open().await?.as_ref(), command).await,
        Command::ServicePrincipals { store, command } => match command {
            ServicePrincipalsCommand::Create { name } => {
                let store = store.open().await?;
                let sp = tarn_identity::create_principal(
                    store.as_ref(),
                    &name,
                    PrincipalKind::ServicePrincipal,
                    false,
                    None,
                    &local::cli_actor().name,
                )
                .await?;
                println!("created service principal {} (id {})", sp.name, sp.id);
                Ok(())
            }
        },
        Command::Workspaces { store, command } => {
            workspaces(store.open().await?.as_ref(), command).await
        }
        Command::Tokens { store, command } => tokens(store.open().await?.as_ref(), command).await,
        Command::Permissions { store, command } => {
            permissions(store.open().await?.as_ref(), command).await
        }
        Command::Jobs { store, command } => jobs::run(&store, command).await,
        Command::Models { store, command } => {
            models::run(store.open().await?.as_ref(), command).await
        }
        Command::Tables {
            store,
            lake_root,
            command,
        } => {
            let lake = tarn_lake::Lake::open(&store.lake_root(lake_root))?;
            tables::run(store.open().await?.as_ref(), &lake, command).await
        }
        Command::Ingest {
            store,
            lake_root,
            args,
        } => {
            let lake = tarn_lake::Lake::open(&store.lake_root(lake_root))?;
            ingest::run(store.open().await?.as_ref(), &lake, args).await
        }
        Command::Sql {
            store,
            lake_root,
            args,
        } => {
            let lake = tarn_lake::Lake::open(&store.lake_root(lake_root))?;
            sql::run(store.open().await?.as_ref(), &lake, args).await
        }
        Command::Features {
            store,
            lake_root,
            online_store,
            command,
        } => {
            let lake = tarn_lake::Lake::open(&store.lake_root(lake_root))?;
            let online_url = online_store.unwrap_or_else(|| {
                format!("sqlite://{}", store.data_dir.join("online.db").display())
            });
            features::run(store.open().await?.as_ref(), &lake, &online_url, command).await
        }
        Command::Monitors {
            store,
            lake_root,
            command,
        } => {
            let lake = std::sync::Arc::new(tarn_lake::Lake::open(&store.lake_root(lake_root))?);
            monitors::run(store.open().await?, lake, command).await
        }
        Command::Lineage { store, args } => lineage::run(store.open().await?.as_ref(), args).await,
        Command::Admin { command } => admin::run(command).await,
    }
}

fn print_principals(principals: &[tarn_core::store::PrincipalRecord]) {
    println!(
        "{:<24} {:<18} {:<6} {:<6}",
        "NAME", "KIND", "ADMIN", "ACTIVE"
    );
    for p in principals {
        println!(
            "{:<24} {:<18} {:<6} {:<6}",
            p.name,
            p.kind.as_str(),
            p.is_admin,
            p.active
        );
    }
}

async fn users(store: &dyn MetaStore, command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Create {
            name,
            password,
            admin,
        } => {
            let user = tarn_identity::create_principal(
                store,
                &name,
                PrincipalKind::User,
                admin,
                password.as_deref(),
                &local::cli_actor().name,
            )
            .await?;
            println!(
                "created user {} (id {}){}",
                user.name,
                user.id,
                if admin { " as admin" } else { "" }
            );
        }
        UsersCommand::List => print_principals(&store.list_principals(None).await?),
        UsersCommand::SetPassword { name, password } => {
            store
                .set_password_hash(
                    &name,
                    &tarn_identity::hash_password(&password)?,
                    &local::cli_actor().name,
                )
                .await?;
            println!("password set for {name}");
        }
        UsersCommand::Deactivate { name } => {
            store
                .set_active(&name, false, &local::cli_actor().name)
                .await?;
            println!("deactivated {name}");
        }
    }
    Ok(())
}

async fn groups(store: &dyn MetaStore, command: GroupsCommand) -> Result<()> {
    match command {
        GroupsCommand::Create { name } => {
            let group = tarn_identity::create_principal(
                store,
                &name,
                PrincipalKind::Group,
                false,
                None,
                &local::cli_actor().name,
            )
            .await?;
            println!("created group {} (id {})", group.name, group.id);
        }
        GroupsCommand::AddMember { group, member } => {
            store
                .add_group_member(&group, &member, &local::cli_actor().name)
                .await?;
            println!("added {member} to {group}");
        }
        GroupsCommand::RemoveMember { group, member } => {
            store
                .remove_group_member(&group, &member, &local::cli_actor().name)
                .await?;
            println!("removed {member} from {group}");
        }
        GroupsCommand::Members { group } => print_principals(&store.group_members(&group).await?),
    }
    Ok(())
}

async fn workspaces(store: &dyn MetaStore, command: WorkspacesCommand) -> Result<()> {
    match command {
        WorkspacesCommand::List => {
            for workspace in store.list_workspaces().await? {
                println!("{workspace}");
            }
        }
        WorkspacesCommand::AddMember {
            workspace,
            principal,
        } => {
            store
                .add_workspace_member(&workspace, &principal, &local::cli_actor().name)
                .await?;
            println!("{principal} is a member of {workspace}");
        }
        WorkspacesCommand::RemoveMember {
            workspace,
            principal,
        } => {
            store
                .remove_workspace_member(&workspace, &principal, &local::cli_actor().name)
                .await?;
            println!("{principal} is no longer a member of {workspace}");
        }
        WorkspacesCommand::Members { workspace } => {
            print_principals(&store.workspace_members(&workspace).await?)
        }
    }
    Ok(())
}

async fn tokens(store: &dyn MetaStore, command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create {
            principal,
            lifetime_seconds,
            comment,
            workspace,
        } => {
            let (info, secret) = tarn_identity::issue_token(
                store,
                &principal,
                &comment,
                lifetime_seconds,
                workspace.as_deref(),
                &local::cli_actor().name,
            )
            .await?;
            eprintln!(
                "token {} for {} (shown once):",
                info.token_id, info.principal_name
            );
            println!("{secret}");
        }
        TokensCommand::List { principal } => {
            println!(
                "{:<18} {:<20} {:<15} COMMENT",
                "TOKEN ID", "PRINCIPAL", "EXPIRES (ms)"
            );
            for t in store.list_tokens(principal.as_deref()).await? {
                let expires = t
                    .expires_at
                    .map_or_else(|| "never".to_string(), |e| e.to_string());
                println!(
                    "{:<18} {:<20} {:<15} {}",
                    t.token_id, t.principal_name, expires, t.comment
                );
            }
        }
        TokensCommand::Revoke { token_id } => {
            store
                .revoke_token(&token_id, &local::cli_actor().name)
                .await?;
            println!("revoked {token_id}");
        }
    }
    Ok(())
}

async fn permissions(store: &dyn MetaStore, command: PermissionsCommand) -> Result<()> {
    match command {
        PermissionsCommand::Grant {
            object,
            principal,
            level,
        } => {
            let (object_type, id) = object.resolve(store).await?;
            let parsed = object_type.parse_level(&level).with_context(|| {
                let known: Vec<&str> = object_type.levels().iter().map(|l| l.as_str()).collect();
                format!("unknown level '{level}': use one of {}", known.join(", "))
            })?;
            store
                .update_grants(
                    &object.workspace,
                    object_type,
                    &id,
                    &[(principal.clone(), parsed)],
                    &cli_actor(),
                )
                .await?;
            println!(
                "{principal} has {} on {} {} in {}",
                parsed.as_str(),
                object_type.as_str().replace('_', " "),
                object.model.as_deref().unwrap_or(&id),
                object.workspace
            );
        }
        PermissionsCommand::Show { object } => {
            let (object_type, id) = object.resolve(store).await?;
            println!("{:<24} {:<18} LEVEL", "PRINCIPAL", "KIND");
            for g in store
                .object_grants(&object.workspace, object_type, &id)
                .await?
            {
                println!(
                    "{:<24} {:<18} {}",
                    g.principal_name,
                    g.principal_kind.as_str(),
                    g.level.as_str()
                );
            }
        }
    }
    Ok(())
}
