//! `tarn admin`: what works on the data directory and database directly, without a server:
//! principals and tokens (the first admin, recovery; `identity`), and backups. `backup` writes a
//! consistent copy of a running installation; `restore` makes a new one from it.
//!
//! A backup is a folder: `manifest.json`, the metadata (`metadata.db`, a SQLite snapshot, or
//! `metadata.pgdump`), the online store's snapshot (`online.db`), and copies of the lake and
//! artifact roots when they are local folders (`lake/`, `artifacts/`; an object store keeps its
//! own versions and is not copied). The metadata is copied first: files written after it are
//! extra (a table version the catalog does not know yet is read as a newer commit), never
//! missing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::identity::{
    GroupsCommand, ServicePrincipalsCommand, TokensCommand, UsersCommand, WorkspacesCommand,
};
use crate::server::StoreArgs;

mod identity;

#[derive(Args)]
pub struct Roots {
    #[command(flatten)]
    store: StoreArgs,
    /// The lake; default DATA_DIR/lake.
    #[arg(long, env = "TARN_LAKE_ROOT")]
    lake_root: Option<String>,
    /// The artifact root; default DATA_DIR/artifacts.
    #[arg(long, env = "TARN_ARTIFACT_ROOT")]
    artifact_root: Option<String>,
    /// The online feature store: `sqlite://PATH` or `redis://HOST:PORT/DB` (shared by replicas);
    /// default DATA_DIR/online.db.
    #[arg(long, env = "TARN_ONLINE_STORE")]
    online_store: Option<String>,
}

impl Roots {
    fn online_url(&self) -> String {
        self.online_store.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.store.data_dir.join("online.db").display()
            )
        })
    }
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Users on the metadata store: the first admin, a password reset.
    Users {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Groups on the metadata store.
    Groups {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Service principals on the metadata store.
    ServicePrincipals {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: ServicePrincipalsCommand,
    },
    /// Workspace memberships on the metadata store.
    Workspaces {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: WorkspacesCommand,
    },
    /// Tokens on the metadata store: a token for anyone, when no admin can sign in.
    Tokens {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Write a consistent backup of the metadata, the online store and the local lake and
    /// artifact roots into a new folder, while servers run.
    Backup {
        #[command(flatten)]
        roots: Roots,
        /// The folder to write (must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Make a new installation from a backup: the metadata into an empty database, the lake
    /// and artifacts into the roots given (tables are pointed at the new lake root).
    Restore {
        #[command(flatten)]
        roots: Roots,
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
    },
}

pub async fn run(command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::Users { store, command } => {
            identity::users(store.open().await?.as_ref(), command).await
        }
        AdminCommand::Groups { store, command } => {
            identity::groups(store.open().await?.as_ref(), command).await
        }
        AdminCommand::ServicePrincipals { store, command } => {
            identity::service_principals(store.open().await?.as_ref(), command).await
        }
        AdminCommand::Workspaces { store, command } => {
            identity::workspaces(store.open().await?.as_ref(), command).await
        }
        AdminCommand::Tokens { store, command } => {
            identity::tokens(store.open().await?.as_ref(), command).await
        }
        AdminCommand::Backup { roots, to } => backup(&roots, &to).await,
        AdminCommand::Restore { roots, from } => restore(&roots, &from).await,
    }
}

/// The folder a lake or artifact root names when it is local; None for an object store.
fn local_folder(root: &str) -> Option<PathBuf> {
    if let Some(path) = root.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!root.contains("://")).then(|| PathBuf::from(root))
}

async fn backup(roots: &Roots, to: &Path) -> Result<()> {
    if to.exists() {
        bail!("{} exists already: back up into a new folder", to.display());
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let database = roots.store.database_url();
    let metadata = if tarn_store::backup::sqlite_path(&database).is_some() {
        "metadata.db"
    } else {
        "metadata.pgdump"
    };
    tarn_store::backup::snapshot(&database, &to.join(metadata)).await?;
    eprintln!("metadata: {}", to.join(metadata).display());
    let online = roots.online_url();
    let online_kept = match tarn_store::backup::sqlite_path(&online) {
        Some(path) if path.exists() => {
            tarn_store::backup::snapshot(&online, &to.join("online.db")).await?;
            true
        }
        _ => false,
    };
    let lake_root = tarn_lake::Lake::open(&roots.store.lake_root(roots.lake_root.clone()))?
        .root()
        .to_string();
    let artifact_root = roots.store.artifact_root(roots.artifact_root.clone());
    let mut copied = serde_json::Map::new();
    for (name, root) in [("lake", &lake_root), ("artifacts", &artifact_root)] {
        match local_folder(root) {
            Some(folder) if folder.exists() => {
                let (files, bytes) = copy_tree(&folder, &to.join(name), name)?;
                copied.insert(name.to_string(), json!({ "files": files, "bytes": bytes }));
            }
            Some(_) => {}
            None => eprintln!("{name}: {root} is an object store; it is not copied"),
        }
    }
    let manifest = json!({
        "tarn_version": env!("CARGO_PKG_VERSION"),
        "created_at": tarn_core::webhooks::iso_timestamp(tarn_core::ids::now_millis()),
        "metadata": metadata,
        "online_store": online_kept.then_some("online.db"),
        "lake_root": lake_root,
        "artifact_root": artifact_root,
        "copied": copied,
    });
    write_manifest(to, &manifest)?;
    println!("Backed up into {}", to.display());
    Ok(())
}

fn write_manifest(to: &Path, manifest: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(manifest)?;
    std::fs::write(to.join("manifest.json"), text).context("cannot write manifest.json")
}

async fn restore(roots: &Roots, from: &Path) -> Result<()> {
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(from.join("manifest.json"))
            .with_context(|| format!("{} holds no manifest.json", from.display()))?,
    )
    .context("manifest.json does not decode")?;
    let field = |name: &str| -> Result<String> {
        manifest[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("manifest.json has no {name}"))
    };
    let database = roots.store.database_url();
    let metadata = field("metadata")?;
    let sqlite = tarn_store::backup::sqlite_path(&database).is_some();
    if sqlite != (metadata == "metadata.db") {
        bail!(
            "the backup holds {metadata}, which cannot go into {}",
            if sqlite { "SQLite" } else { "PostgreSQL" }
        );
    }
    std::fs::create_dir_all(&roots.store.data_dir)
        .with_context(|| format!("cannot create {}", roots.store.data_dir.display()))?;
    tarn_store::backup::restore(&from.join(&metadata), &database).await?;
    if manifest["online_store"].is_string()
        && let Some(path) = tarn_store::backup::sqlite_path(&roots.online_url())
    {
        tarn_store::backup::restore(
            &from.join("online.db"),
            &format!("sqlite://{}", path.display()),
        )
        .await?;
    }
    let lake_root = roots.store.lake_root(roots.lake_root.clone());
    let artifact_root = roots.store.artifact_root(roots.artifact_root.clone());
    for (name, root) in [("lake", &lake_root), ("artifacts", &artifact_root)] {
        let kept = from.join(name);
        if !kept.exists() {
            continue;
        }
        let folder = local_folder(root).with_context(|| {
            format!("the backup holds {name}/, to restore into a local folder, not {root}")
        })?;
        if folder.exists() && std::fs::read_dir(&folder)?.next().is_some() {
            bail!("{} is not empty: restore into new roots", folder.display());
        }
        copy_tree(&kept, &folder, name)?;
    }
    // Opening the store brings an older backup's schema up to date.
    let store = roots.store.open().await?;
    let new_lake_root = tarn_lake::Lake::open(&lake_root)?.root().to_string();
    let old_lake_root = field("lake_root")?;
    if old_lake_root != new_lake_root {
        let moved = store
            .relocate_tables(&old_lake_root, &new_lake_root)
            .await?;
        eprintln!("{moved} tables now under {new_lake_root}");
    }
    println!(
        "Restored {} (made by tarn {}, {}) into {}",
        from.display(),
        manifest["tarn_version"].as_str().unwrap_or("?"),
        manifest["created_at"].as_str().unwrap_or("?"),
        roots.store.data_dir.display()
    );
    Ok(())
}

/// Copies the files under `from` into `to`, with a progress bar; (files, bytes) copied.
fn copy_tree(from: &Path, to: &Path, what: &str) -> Result<(u64, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![from.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?
        {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push((entry.path(), entry.metadata()?.len()));
            }
        }
    }
    let bytes: u64 = files.iter().map(|(_, size)| size).sum();
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template("{msg:10} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes}")
            .context("progress bar template")?,
    );
    bar.set_message(what.to_string());
    for (path, size) in &files {
        let relative = path.strip_prefix(from)?;
        let target = to.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        match std::fs::copy(path, &target) {
            Ok(_) => bar.inc(*size),
            // Removed while we copied (a vacuum, a fetched result): nothing to keep.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => bar.inc(*size),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot copy {}", path.display()));
            }
        }
    }
    bar.finish();
    Ok((files.len() as u64, bytes))
}
