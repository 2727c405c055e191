//! Task logs. A task's standard output and error go to one file on the machine that runs it;
//! an executor on another machine (`tarn worker`) also ships that file into the store as it
//! grows. Readers take the local file when this machine ran the task, the shipped copy
//! otherwise, so any server reads any task's log while it runs and after.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tarn_core::jobs::TaskRun;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tokio::sync::oneshot;

/// The most of a task's log `runs/get-output` returns: its end (Databricks' limit).
pub const MAX_OUTPUT_LOG: u64 = 5 * 1024 * 1024;
/// How often a shipping executor sends what its tasks wrote since.
const SHIP_EVERY: Duration = Duration::from_millis(500);
/// The largest piece shipped at once.
const SHIP_PIECE: usize = 1024 * 1024;

/// A task's folder under an executor's: `<folder>/<run id>/<task run id>/`.
pub fn task_folder(folder: &Path, task: &TaskRun) -> PathBuf {
    folder
        .join(task.job_run_id.to_string())
        .join(task.run_id.to_string())
}

/// The log of a task run on the machine that runs it: its standard output and error,
/// interleaved as written.
pub fn log_path(folder: &Path, task: &TaskRun) -> PathBuf {
    task_folder(folder, task).join("output.log")
}

/// Reads the log from byte `from`, at most `limit` bytes; with the log's length. `None` when
/// there is no file.
fn read_file(path: &Path, from: u64, limit: u64) -> Result<Option<(Vec<u8>, u64)>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::internal_from("cannot read the task's log", err)),
    };
    let unreadable = |err| Error::internal_from("cannot read the task's log", err);
    let length = file.metadata().map_err(unreadable)?.len();
    file.seek(SeekFrom::Start(from.min(length)))
        .map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(Some((bytes, length)))
}

/// The end of the log in the file at `path`, at most `limit` bytes, and whether earlier output
/// was left out (empty when there is no file).
pub fn local_tail(path: &Path, limit: u64) -> Result<(String, bool)> {
    let length = std::fs::metadata(path).map_or(0, |meta| meta.len());
    let from = length.saturating_sub(limit);
    let bytes = read_file(path, from, limit)?.map_or_else(Vec::new, |(bytes, _)| bytes);
    Ok((String::from_utf8_lossy(&bytes).into_owned(), from > 0))
}

/// A task's log from byte `from`, at most `limit` bytes, wherever it ran; with the log's length
/// so far. `folder` is this machine's jobs folder.
pub async fn read(
    store: &dyn MetaStore,
    folder: &Path,
    task: &TaskRun,
    from: u64,
    limit: u64,
) -> Result<(Vec<u8>, u64)> {
    if let Some(local) = read_file(&log_path(folder, task), from, limit)? {
        return Ok(local);
    }
    let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let (bytes, length) = store
        .read_task_log(task.run_id, clamp(from), clamp(limit))
        .await?;
    Ok((bytes, u64::try_from(length).unwrap_or(0)))
}

/// The end of a task's log, at most `limit` bytes, wherever it ran, and whether earlier
/// output was left out.
pub async fn tail(
    store: &dyn MetaStore,
    folder: &Path,
    task: &TaskRun,
    limit: u64,
) -> Result<(String, bool)> {
    let path = log_path(folder, task);
    if path.exists() {
        return local_tail(&path, limit);
    }
    let (_, length) = read(store, folder, task, u64::MAX, 0).await?;
    let from = length.saturating_sub(limit);
    let (bytes, _) = read(store, folder, task, from, limit).await?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), from > 0))
}

/// Ships the log at `path` of task run `task_run_id` into the store as it grows, until `done`;
/// then ships the rest and returns. A failed shipment is tried again at the next turn.
pub(crate) async fn ship(
    store: &dyn MetaStore,
    task_run_id: i64,
    path: &Path,
    mut done: oneshot::Receiver<()>,
) {
    let mut shipped = 0u64;
    loop {
        let last = tokio::select! {
            _ = tokio::time::sleep(SHIP_EVERY) => false,
            _ = &mut done => true,
        };
        loop {
            let piece = match read_file(path, shipped, SHIP_PIECE as u64) {
                Ok(Some((piece, _))) if !piece.is_empty() => piece,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(task_run_id, error = %err.report(), "cannot read a task's log to ship it");
                    break;
                }
            };
            let offset = i64::try_from(shipped).unwrap_or(i64::MAX);
            match store.append_task_log(task_run_id, offset, &piece).await {
                Ok(()) => shipped += piece.len() as u64,
                Err(err) => {
                    tracing::warn!(task_run_id, error = %err.report(), "cannot ship a task's log");
                    break;
                }
            }
        }
        if last {
            return;
        }
    }
}
