//! SQLite's group commit: many writers' transactions committed by one fsync. It is the
//! SQLite pool's writer; PostgreSQL's (`crate::pg::Writer`) commits each write on its own.

use std::sync::Arc;

use tarn_core::{Error, Result};

use super::{Pool, Transaction};
use crate::common::WriteFuture;
use crate::error::db_error;

type Tx<'c> = Transaction<'c>;

type WriteJob = Box<dyn for<'t> FnOnce(&'t mut Tx<'static>) -> WriteFuture<'t, ()> + Send>;

/// Group commit for a single-writer database. A write that finds the writer idle runs at once
/// on its own task, in a transaction of its own: a lone client pays no hand-off to another
/// task and back. Writes that arrive meanwhile queue up; the one that finishes hands the queue
/// to a thread of the blocking pool, which runs up to `GROUP_COMMIT_MAX` of them in one
/// transaction, each inside its own savepoint (a refused write rolls back alone), and
/// acknowledges them all after the one durable commit. One fsync then serves many requests.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    pool: Pool,
    queue: Arc<std::sync::Mutex<WriteQueue>>,
}

#[derive(Debug, Default)]
struct WriteQueue {
    /// A `WriterTurn` is held: by a write on its own task, or by the thread draining the queue.
    writing: bool,
    waiting: Vec<QueuedWrite>,
}

struct QueuedWrite {
    job: WriteJob,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

impl std::fmt::Debug for QueuedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueuedWrite")
    }
}

/// Most writes committed by one transaction.
const GROUP_COMMIT_MAX: usize = 64;

fn writer_stopped() -> Error {
    Error::internal("the metadata store writer has stopped")
}

/// The writer, held. Dropped while writes wait (after a write on its own task, or when a
/// request is cancelled or a drain unwinds), it hands them to a drain; otherwise it releases
/// the writer.
struct WriterTurn {
    /// `None` once released.
    commit: Option<GroupCommit>,
}

impl WriterTurn {
    /// The next writes waiting; none when the queue is empty, and then the writer is released.
    fn next_group(&mut self) -> Option<Vec<QueuedWrite>> {
        let group = self.commit.as_ref()?.next_group();
        if group.is_none() {
            self.commit = None;
        }
        group
    }
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        let Some(group) = self.next_group() else {
            return;
        };
        // The queue drains on a thread of the blocking pool: its commits wait for the disk
        // there, not on a runtime worker that could be reading the next requests meanwhile.
        // Without a runtime, the group is dropped and its waiters report it.
        if let (Some(commit), Ok(runtime)) =
            (self.commit.take(), tokio::runtime::Handle::try_current())
        {
            let on_runtime = runtime.clone();
            runtime.spawn_blocking(move || on_runtime.block_on(commit.drain(group)));
        }
    }
}

impl GroupCommit {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            queue: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriteQueue> {
        // The queue holds no invariant a panic elsewhere could break.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `write` in the next group's transaction and returns its value once committed.
    pub async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<'static>) -> WriteFuture<'t, T> + Send + 'static,
    {
        let (value_tx, value_rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |tx| {
            Box::pin(async move {
                let value = write(tx).await?;
                let _ = value_tx.send(value);
                Ok(())
            })
        });
        self.submit(job).await?;
        value_rx.await.map_err(|_| writer_stopped())
    }

    /// Returns once the job's changes are durably committed (or refused).
    async fn submit(&self, job: WriteJob) -> Result<()> {
        let (done, answer) = tokio::sync::oneshot::channel();
        if let Some(mine) = self.queue_unless_idle(QueuedWrite { job, done }) {
            let turn = WriterTurn {
                commit: Some(self.clone()),
            };
            Self::write_group(&self.pool, vec![mine]).await;
            drop(turn);
        }
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Queues `write` while the writer is busy; gives it back, holding the writer, when idle.
    fn queue_unless_idle(&self, write: QueuedWrite) -> Option<QueuedWrite> {
        let mut queue = self.lock();
        if queue.writing {
            queue.waiting.push(write);
            return None;
        }
        queue.writing = true;
        Some(write)
    }

    /// The next writes waiting, or none, and then the writer is released.
    fn next_group(&self) -> Option<Vec<QueuedWrite>> {
        let mut queue = self.lock();
        if queue.waiting.is_empty() {
            queue.writing = false;
            return None;
        }
        let take = queue.waiting.len().min(GROUP_COMMIT_MAX);
        Some(queue.waiting.drain(..take).collect())
    }

    /// Writes `group`, then the queue in groups until it is empty, holding the writer.
    async fn drain(self, mut group: Vec<QueuedWrite>) {
        let pool = self.pool.clone();
        let mut turn = WriterTurn { commit: Some(self) };
        loop {
            Self::write_group(&pool, group).await;
            match turn.next_group() {
                Some(next) => group = next,
                None => return,
            }
        }
    }

    async fn write_group(pool: &Pool, group: Vec<QueuedWrite>) {
        let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(err) => {
                let err = db_error(err);
                for queued in group {
                    let _ = queued.done.send(Err(err.clone()));
                }
                return;
            }
        };
        if group.len() == 1 {
            // Alone in its transaction, a job needs no savepoint: a failure rolls back all.
            if let Some(queued) = group.into_iter().next() {
                let outcome = (queued.job)(&mut tx).await;
                let result = match outcome {
                    Ok(()) => tx.commit().await.map_err(db_error),
                    Err(err) => {
                        let _ = tx.rollback().await;
                        Err(err)
                    }
                };
                let _ = queued.done.send(result);
            }
            return;
        }
        let mut outcomes = Vec::with_capacity(group.len());
        for queued in group {
            let outcome = Self::in_savepoint(&mut tx, queued.job).await;
            outcomes.push((queued.done, outcome));
        }
        let committed = tx.commit().await.map_err(db_error);
        for (done, outcome) in outcomes {
            // A requester that went away needs no answer.
            let _ = done.send(match &committed {
                Ok(()) => outcome,
                Err(err) => Err(err.clone()),
            });
        }
    }

    /// Savepoints are never released: `ROLLBACK TO` undoes the newest one of the name, which is
    /// this job's, and `COMMIT` keeps everything still standing. That saves a statement a job.
    async fn in_savepoint(tx: &mut Tx<'static>, job: WriteJob) -> Result<()> {
        super::query("SAVEPOINT tarn_write")
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        let outcome = job(tx).await;
        if outcome.is_err() {
            super::query("ROLLBACK TO tarn_write")
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
        }
        outcome
    }
}
