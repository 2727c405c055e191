//! A closed-loop HTTP load generator for the serving benchmark (`bench/serving.py`): N
//! connections each send the same POST body back to back for a while; prints one JSON line with
//! the throughput and latency percentiles. Python clients cannot load a fast server on two
//! cores, so both servers of the benchmark are measured with this.
//!
//! cargo run --profile quick --example loadgen -- URL BODY_FILE CONCURRENCY SECONDS [TOKEN]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, body_file, concurrency, seconds, token) = match args.as_slice() {
        [url, body, concurrency, seconds] => (url, body, concurrency, seconds, None),
        [url, body, concurrency, seconds, token] => {
            (url, body, concurrency, seconds, Some(token.clone()))
        }
        _ => bail!("usage: loadgen URL BODY_FILE CONCURRENCY SECONDS [TOKEN]"),
    };
    let body = bytes::Bytes::from(
        std::fs::read(body_file).with_context(|| format!("reading {body_file}"))?,
    );
    let concurrency: usize = concurrency.parse().context("CONCURRENCY")?;
    let duration = Duration::from_secs_f64(seconds.parse().context("SECONDS")?);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::CONTENT_TYPE, "application/json".parse()?);
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .default_headers(headers)
        .build()?;

    // A short warm-up opens the connections and warms the server.
    run(&client, url, &body, concurrency, Duration::from_millis(500)).await?;
    let started = Instant::now();
    let (mut latencies, errors) = run(&client, url, &body, concurrency, duration).await?;
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let at = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[at] as f64 / 1000.0
    };
    let summary = serde_json::json!({
        "requests": latencies.len(),
        "errors": errors,
        "seconds": elapsed,
        "throughput": latencies.len() as f64 / elapsed,
        "p50_ms": percentile(0.50),
        "p90_ms": percentile(0.90),
        "p99_ms": percentile(0.99),
        "max_ms": percentile(1.0),
    });
    println!("{summary}");
    Ok(())
}

/// Latencies of the successful requests in microseconds, and the count of failed ones.
async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &bytes::Bytes,
    concurrency: usize,
    duration: Duration,
) -> Result<(Vec<u32>, u64)> {
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let response = client.post(&url).body(body.clone()).send().await;
                    let ok = match response {
                        Ok(response) => {
                            response.status().is_success() && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (latencies, failed) = worker.await?;
        all.extend(latencies);
        errors += failed;
    }
    Ok((all, errors))
}
