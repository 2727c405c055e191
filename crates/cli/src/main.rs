//! The `tarn` binary: the server and worker, client commands that talk to a server as a
//! token's principal, `tarn admin` commands on the data directory and database, and the
//! quickstart.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod admin;
mod client;
mod configure;
mod endpoints;
mod features;
mod identity;
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
mod tracking;
mod worker;

use client::Connection;
use server::{ServerArgs, run_server};

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
    /// Save a server, token and workspace as a profile in `~/.tarnrc` for the client commands.
    Configure(configure::ConfigureArgs),
    /// MLflow experiments: list, create, rename, delete, restore.
    Experiments {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: tracking::ExperimentsCommand,
    },
    /// MLflow runs: list with their metrics, show, a metric's history, delete, restore.
    Runs {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: tracking::RunsCommand,
    },
    /// Serving endpoints: list, show, create, update, delete, query.
    Endpoints {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: endpoints::EndpointsCommand,
    },
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
        connection: client::Connection,
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
        connection: Connection,
        #[command(subcommand)]
        command: identity::UsersCommand,
    },
    /// Manage groups.
    Groups {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: identity::GroupsCommand,
    },
    /// Manage service principals.
    ServicePrincipals {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: identity::ServicePrincipalsCommand,
    },
    /// Manage workspaces and their members.
    Workspaces {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: identity::WorkspacesCommand,
    },
    /// Manage personal access tokens.
    Tokens {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: identity::TokensCommand,
    },
    /// Jobs in the Databricks Jobs shape: create from settings, list, get, delete, run and
    /// follow, runs, logs, cancel.
    Jobs {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// The model registry: list, show, transition, aliases, audit trail.
    Models {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// The lakehouse catalog: schemas, tables, columns, history and rows.
    Tables {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: tables::TablesCommand,
    },
    /// Ingest CSV, JSON lines or Parquet files into a Delta table (each file once).
    Ingest {
        #[command(flatten)]
        connection: client::Connection,
        #[command(flatten)]
        args: ingest::IngestArgs,
    },
    /// Run one SQL statement over the lakehouse and print the result.
    Sql {
        #[command(flatten)]
        connection: client::Connection,
        #[command(flatten)]
        args: sql::SqlArgs,
    },
    /// The feature store: feature tables and point-in-time training sets.
    Features {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: features::FeaturesCommand,
    },
    /// Table monitors: profile, drift and model-quality metrics tables, refreshed on demand.
    Monitors {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: monitors::MonitorsCommand,
    },
    /// Show where a table's data came from and where it went.
    Lineage {
        #[command(flatten)]
        connection: client::Connection,
        #[command(flatten)]
        args: lineage::LineageArgs,
    },
    /// Manage permissions on objects.
    Permissions {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: identity::PermissionsCommand,
    },
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

fn main() -> std::process::ExitCode {
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(THREAD_STACK)
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run()));
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The error and its causes on one line, without the backtrace `RUST_BACKTRACE`
        // would add: a command's user needs the server's reason, not the stack.
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
        Command::Configure(args) => configure::run(args).await,
        Command::Experiments {
            connection,
            command,
        } => tracking::experiments(&connection.connect()?, command).await,
        Command::Runs {
            connection,
            command,
        } => tracking::runs(&connection.connect()?, command).await,
        Command::Endpoints {
            connection,
            command,
        } => endpoints::run(&connection.connect()?, command).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Quickstart(args) => quickstart::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Score { connection, args } => score::run(&connection.connect()?, args).await,
        Command::Users {
            connection,
            command,
        } => identity::users(&connection.connect()?, command).await,
        Command::Groups {
            connection,
            command,
        } => identity::groups(&connection.connect()?, command).await,
        Command::ServicePrincipals {
            connection,
            command,
        } => identity::service_principals(&connection.connect()?, command).await,
        Command::Workspaces {
            connection,
            command,
        } => identity::workspaces(&connection.connect()?, command).await,
        Command::Tokens {
            connection,
            command,
        } => identity::tokens(&connection.connect()?, command).await,
        Command::Permissions {
            connection,
            command,
        } => identity::permissions(&connection.connect()?, command).await,
        Command::Jobs {
            connection,
            command,
        } => jobs::run(&connection.connect()?, command).await,
        Command::Models {
            connection,
            command,
        } => models::run(&connection.connect()?, command).await,
        Command::Tables {
            connection,
            command,
        } => tables::run(&connection.connect()?, command).await,
        Command::Ingest { connection, args } => ingest::run(&connection.connect()?, args).await,
        Command::Sql { connection, args } => sql::run(&connection.connect()?, args).await,
        Command::Features {
            connection,
            command,
        } => features::run(&connection.connect()?, command).await,
        Command::Monitors {
            connection,
            command,
        } => monitors::run(&connection.connect()?, command).await,
        Command::Lineage { connection, args } => lineage::run(&connection.connect()?, args).await,
        Command::Admin { command } => admin::run(command).await,
    }
}
