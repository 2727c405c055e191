//! Commits other Delta writers make to tarn's tables (Spark, `deltalake`, polars writing to the
//! storage location directly). tarn's own commits carry a mark in their commit info and are
//! recorded by the write that made them, with its lineage; the watcher reads each table's log
//! past the last version it accounted for and records the unmarked commits as `table.committed`
//! events, so webhooks, job triggers and the audit trail see every change to a table.

use deltalake::logstore::LogStore;
use serde_json::Value;
use tarn_core::catalog::{OutsideCommit, WatchedTable};
use tarn_core::ids::now_millis;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use url::Url;

use crate::error::table_error;

/// The commit info key that marks a commit as tarn's own.
pub(crate) const TARN_COMMIT_MARK: &str = "tarnWriter";

/// What one scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    pub tables: usize,
    /// Commits by other writers recorded as events.
    pub outside_commits: usize,
}

/// Reads the log of every table past its watched version and records the commits tarn did not
/// make. A table whose log cannot be read is skipped (and logged) so one broken table does not
/// hide the others' commits; it is read again on the next scan.
pub async fn record_outside_commits(store: &dyn MetaStore) -> Result<Scanned> {
    let mut scanned = Scanned::default();
    for table in store.watched_tables().await? {
        scanned.tables += 1;
        match scan_table(store, &table).await {
            Ok(found) => scanned.outside_commits += found,
            Err(err) => tracing::warn!(
                table = %table.full_name,
                error = %err.report(),
                "cannot read the table's Delta log"
            ),
        }
    }
    Ok(scanned)
}

async fn scan_table(store: &dyn MetaStore, table: &WatchedTable) -> Result<usize> {
    let location = Url::parse(&table.storage_location)
        .map_err(|e| Error::internal_from("invalid storage location", e))?;
    let log = deltalake::DeltaTableBuilder::from_url(location)
        .and_then(|builder| builder.build())
        .map_err(|e| table_error(&table.full_name, e))?
        .log_store();
    if !log
        .is_delta_table_location()
        .await
        .map_err(|e| table_error(&table.full_name, e))?
    {
        // Created in the catalog, its first commit not written yet.
        return Ok(0);
    }
    let start = table.watched_version.unwrap_or(0).max(0);
    let latest = log
        .get_latest_version(start as u64)
        .await
        .map_err(|e| table_error(&table.full_name, e))? as i64;
    let Some(watched) = table.watched_version else {
        // The first scan takes the table as it is: its history came before anyone watched.
        store.record_outside_commits(table, latest, &[]).await?;
        return Ok(0);
    };
    if latest <= watched {
        return Ok(0);
    }
    let mut commits = Vec::new();
    for version in watched + 1..=latest {
        if let Some(commit) = outside_commit(log.as_ref(), table, version).await? {
            commits.push(commit);
        }
    }
    let recorded = store
        .record_outside_commits(table, latest, &commits)
        .await?;
    Ok(if recorded { commits.len() } else { 0 })
}

/// The commit at `version` unless tarn made it; none for a version whose log entry is gone
/// (cleaned up after a checkpoint) too, as nothing is left to say what it was.
async fn outside_commit(
    log: &dyn LogStore,
    table: &WatchedTable,
    version: i64,
) -> Result<Option<OutsideCommit>> {
    let Some(entry) = log
        .read_commit_entry(version as u64)
        .await
        .map_err(|e| table_error(&table.full_name, e))?
    else {
        return Ok(None);
    };
    let info = std::str::from_utf8(&entry)
        .ok()
        .into_iter()
        .flat_map(str::lines)
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|mut action| action.get_mut("commitInfo").map(Value::take))
        .unwrap_or(Value::Null);
    if info.get(TARN_COMMIT_MARK).is_some() {
        return Ok(None);
    }
    let text = |key: &str| info.get(key).and_then(Value::as_str).map(str::to_string);
    Ok(Some(OutsideCommit {
        version,
        operation: text("operation").unwrap_or_else(|| "UNKNOWN".into()),
        writer: text("engineInfo")
            .or_else(|| text("clientVersion"))
            .unwrap_or_else(|| "unknown Delta writer".into()),
        timestamp: info
            .get("timestamp")
            .and_then(Value::as_i64)
            .unwrap_or_else(now_millis),
    }))
}
