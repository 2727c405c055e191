//! Scoring threads with micro-batching: requests queue up, a scoring thread takes the first
//! one and every compatible one already waiting (up to a row budget, optionally waiting a
//! bounded time for more), runs the model once on all their rows, and answers each request
//! with its own rows. Scoring never runs on the async threads.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tract_onnx::prelude::*;

use crate::error::ModelError;
use crate::model::Model;
use crate::payload::{Predictions, Prepared};

#[derive(Debug, Clone)]
pub struct BatcherOptions {
    /// Scoring threads (default: the machine's cores).
    pub threads: usize,
    /// Most rows scored in one run of the model.
    pub max_batch_rows: usize,
    /// How long a scoring thread waits for more requests once it holds one; zero scores
    /// whatever is queued at once.
    pub max_wait: Duration,
    /// Requests waiting beyond this are refused (TEMPORARILY_UNAVAILABLE) instead of queued.
    pub queue: usize,
}

impl Default for BatcherOptions {
    fn default() -> Self {
        BatcherOptions {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_batch_rows: 256,
            max_wait: Duration::ZERO,
            queue: 4096,
        }
    }
}

/// The answer to one request: its `{"predictions": ...}` body, and how long the model ran.
#[derive(Debug, Clone)]
pub struct Scored {
    pub body: Vec<u8>,
    pub execution: Duration,
    /// How many requests shared the run.
    pub batch_requests: usize,
}

struct Job {
    prepared: Prepared,
    reply: oneshot::Sender<Result<Scored, ModelError>>,
}

/// A model with its scoring threads; dropping it lets the threads finish what is queued and exit.
pub struct Batcher {
    sender: SyncSender<Job>,
    model: Arc<Model>,
    counts: Arc<BatchCounts>,
}

/// How well batching works: requests scored, and runs of the model that scored them.
#[derive(Debug, Default)]
pub struct BatchCounts {
    pub requests: AtomicU64,
    pub runs: AtomicU64,
}

impl Batcher {
    pub fn start(model: Arc<Model>, options: BatcherOptions) -> Batcher {
        let (sender, receiver) = mpsc::sync_channel(options.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let counts = Arc::new(BatchCounts::default());
        for i in 0..options.threads.max(1) {
            let (model, receiver, options) = (model.clone(), receiver.clone(), options.clone());
            let counts = counts.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tarn-score-{i}"))
                .spawn(move || score_loop(&model, &receiver, &options, &counts));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a scoring thread");
            }
        }
        Batcher {
            sender,
            model,
            counts,
        }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn counts(&self) -> &BatchCounts {
        &self.counts
    }

    /// Queues a prepared request and waits for its predictions.
    pub async fn score(&self, prepared: Prepared) -> Result<Scored, ModelError> {
        let (reply, answer) = oneshot::channel();
        match self.sender.try_send(Job { prepared, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ModelError::Unavailable(
                    "the model's request queue is full; retry later".into(),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ModelError::Unavailable("the model is shutting down".into()));
            }
        }
        answer
            .await
            .map_err(|_| ModelError::Unavailable("the scoring thread stopped".into()))?
    }
}

/// Whether two requests can share one run: same input shapes but for the rows.
fn compatible(a: &Prepared, b: &Prepared) -> bool {
    a.records == b.records
        && a.feeds.len() == b.feeds.len()
        && a.feeds.iter().zip(&b.feeds).all(|(x, y)| {
            x.datum_type() == y.datum_type() && x.shape().get(1..) == y.shape().get(1..)
        })
}

fn score_loop(
    model: &Model,
    receiver: &Mutex<Receiver<Job>>,
    options: &BatcherOptions,
    counts: &BatchCounts,
) {
    let batched = model.onnx.inputs().iter().all(|input| input.batched());
    let mut carried: Option<Job> = None;
    loop {
        let mut batch = Vec::new();
        {
            let Ok(queue) = receiver.lock() else { return };
            let first = match carried.take() {
                Some(job) => job,
                None => match queue.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            let mut rows = first.prepared.rows;
            batch.push(first);
            let deadline = Instant::now() + options.max_wait;
            while batched && rows < options.max_batch_rows {
                let next = match queue.try_recv() {
                    Ok(job) => job,
                    Err(_) if options.max_wait.is_zero() => break,
                    Err(_) => match queue
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    },
                };
                if !compatible(&batch[0].prepared, &next.prepared)
                    || rows + next.prepared.rows > options.max_batch_rows
                {
                    carried = Some(next);
                    break;
                }
                rows += next.prepared.rows;
                batch.push(next);
            }
        }
        counts.runs.fetch_add(1, Ordering::Relaxed);
        counts
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        run_batch(model, batch);
    }
}

fn run_batch(model: &Model, batch: Vec<Job>) {
    let started = Instant::now();
    let requests = batch.len();
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(requests);
    let mut jobs = Vec::with_capacity(requests);
    let mut feeds: Vec<TVec<Tensor>> = Vec::with_capacity(requests);
    let mut total = 0;
    for job in batch {
        ranges.push(total..total + job.prepared.rows);
        total += job.prepared.rows;
        feeds.push(job.prepared.feeds);
        jobs.push((job.reply, job.prepared.records));
    }
    let inputs = match stack(feeds) {
        Ok(inputs) => inputs,
        Err(error) => {
            jobs.into_iter().for_each(|(reply, _)| {
                let _ = reply.send(Err(error.clone()));
            });
            return;
        }
    };
    let outputs = model.onnx.run(inputs);
    let execution = started.elapsed();
    for ((reply, records), range) in jobs.into_iter().zip(ranges) {
        let answer = outputs.as_ref().map_err(Clone::clone).and_then(|outputs| {
            let body = Predictions {
                names: model.onnx.outputs(),
                outputs,
                range,
                records,
            }
            .to_json()?;
            Ok(Scored {
                body,
                execution,
                batch_requests: requests,
            })
        });
        // The caller may have gone (client disconnected); nothing to do then.
        let _ = reply.send(answer);
    }
}

/// One input tensor per model input, the requests' rows stacked along the first axis.
fn stack(mut feeds: Vec<TVec<Tensor>>) -> Result<TVec<TValue>, ModelError> {
    if feeds.len() == 1 {
        return Ok(feeds
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(IntoTValue::into_tvalue)
            .collect());
    }
    let inputs = feeds.first().map_or(0, TVec::len);
    (0..inputs)
        .map(|i| {
            let parts: Vec<Tensor> = feeds.iter().map(|f| f[i].clone()).collect();
            Tensor::stack_tensors(0, &parts)
                .map(IntoTValue::into_tvalue)
                .map_err(|e| ModelError::Scoring(format!("{e:#}")))
        })
        .collect()
}
