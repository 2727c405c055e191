//! Consistent copies of the metadata database while servers run, and putting one back into an
//! empty database. SQLite: `VACUUM INTO`, which reads one snapshot as writers go on, into a
//! compact database file. PostgreSQL: `pg_dump`'s custom format (one transaction's snapshot),
//! put back with `pg_restore`; both must be on the PATH.

use std::path::{Path, PathBuf};

use tarn_core::{Error, Result};

/// The file a `sqlite://PATH` URL names; None for another database.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://").map(PathBuf::from)
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Writes a consistent copy of the database at `url` to the file `to`, which must not exist.
pub async fn snapshot(url: &str, to: &Path) -> Result<()> {
    if to.exists() {
        return Err(Error::invalid(format!("{} exists already", to.display())));
    }
    if let Some(path) = sqlite_path(url) {
        let to = to.to_path_buf();
        return tokio::task::spawn_blocking(move || vacuum_into(&path, &to))
            .await
            .map_err(|e| Error::internal_from("the snapshot stopped", e))?;
    }
    if is_postgres(url) {
        return run_tool(
            "pg_dump",
            &[
                "--format=custom",
                "--no-owner",
                "--file",
                &to.to_string_lossy(),
                url,
            ],
        )
        .await;
    }
    Err(Error::invalid(format!(
        "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
    )))
}

fn vacuum_into(path: &Path, to: &Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::not_found(format!(
            "No SQLite database at {}",
            path.display()
        )));
    }
    let cannot = |e: rusqlite::Error| {
        Error::internal_from(
            format!("cannot copy the SQLite database {}", path.display()),
            e,
        )
    };
    let connection = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(cannot)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(30))
        .map_err(cannot)?;
    connection
        .execute("VACUUM INTO ?1", [to.to_string_lossy()])
        .map_err(cannot)?;
    Ok(())
}

/// Puts the snapshot `from` (made by [`snapshot`] from the same kind of database) into the
/// database at `url`, which must be new: a SQLite file that does not exist, or a PostgreSQL
/// database without tables.
pub async fn restore(from: &Path, url: &str) -> Result<()> {
    if let Some(path) = sqlite_path(url) {
        if path.exists() {
            return Err(Error::invalid(format!(
                "{} exists already: restore into a new data directory",
                path.display()
            )));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::internal_from(format!("cannot create {}", parent.display()), e)
            })?;
        }
        std::fs::copy(from, &path).map_err(|e| {
            Error::internal_from(
                format!("cannot copy {} to {}", from.display(), path.display()),
                e,
            )
        })?;
        return Ok(());
    }
    if is_postgres(url) {
        return run_tool(
            "pg_restore",
            &[
                "--exit-on-error",
                "--no-owner",
                "--single-transaction",
                "--dbname",
                url,
                &from.to_string_lossy(),
            ],
        )
        .await;
    }
    Err(Error::invalid(format!(
        "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
    )))
}

async fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    let mut command = std::process::Command::new(tool);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| Error::internal_from(format!("{tool} stopped"), e))?
        .map_err(|e| {
            Error::invalid(format!(
                "cannot run {tool} ({e}): PostgreSQL's client tools must be on the PATH"
            ))
        })?;
    if output.status.success() {
        return Ok(());
    }
    // The URL may hold a password: report the tool's own words, never its arguments.
    Err(Error::internal(format!(
        "{tool} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
