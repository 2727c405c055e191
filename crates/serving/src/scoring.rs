//! Scoring one request: checked against the model on the request's task, run on the batcher's
//! scoring threads.

use tarn_core::Error;
use tarn_models::batcher::Scored;
use tarn_models::{Batcher, Invocation};

/// What one request may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 16 MiB is the payload limit of Databricks' serving endpoints.
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_rows: 10_000,
        }
    }
}

/// Checks a scoring body against the model and scores it on the batcher's threads.
pub async fn score(
    batcher: &Batcher,
    body: &[u8],
    limits: Limits,
) -> Result<(Scored, Invocation), Error> {
    score_invocation(batcher, Invocation::parse(body)?, limits).await
}

/// Checks a parsed request against the model and scores it on the batcher's threads.
pub async fn score_invocation(
    batcher: &Batcher,
    invocation: Invocation,
    limits: Limits,
) -> Result<(Scored, Invocation), Error> {
    let prepared = batcher.model().prepare(&invocation, limits.max_rows)?;
    let scored = batcher.score(prepared).await?;
    Ok((scored, invocation))
}
