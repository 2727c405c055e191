//! Webhook delivery: a dispatcher task moves events from the event log into the delivery
//! queue (`WebhookStore::fan_out`) and sends due deliveries, signing them in each flavor's
//! scheme. Failed attempts are retried with exponential backoff up to a cap; every attempt is
//! recorded. Deliveries are leased while in flight, so a crash mid-send means a retry (with the
//! same delivery id), never a loss.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::Mac;
use tarn_core::store::{AttemptOutcome, AttemptResult, Delivery, MetaStore};
use tarn_core::webhooks::{Flavor, Webhook};
use tarn_core::{Error, Result};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How deliveries are made; the defaults suit production, tests shorten the backoff.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Allow loopback, private, link-local and similar destinations (SSRF guard off).
    pub allow_private: bool,
    /// First retry delay; doubled per attempt up to `max_backoff`.
    pub retry_base: Duration,
    pub max_backoff: Duration,
    pub max_attempts: i64,
    pub timeout: Duration,
    /// How often the dispatcher looks for new events and due deliveries.
    pub poll_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 8,
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
        }
    }
}

/// An HTTP answer (or failure) of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub status_code: Option<u16>,
    pub body: String,
    pub error: Option<String>,
    pub latency_ms: i64,
}

impl Sent {
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
    /// Network errors, timeouts, 408, 429 and 5xx may pass; other 4xx will not.
    fn retryable(&self) -> bool {
        match self.status_code {
            None => true,
            Some(s) => s == 408 || s == 429 || s >= 500,
        }
    }
}

/// Refuses destinations a webhook must not reach: non-HTTP schemes and, unless allowed,
/// addresses on loopback, private, link-local, CGNAT, multicast or unspecified networks
/// (server-side request forgery).
pub async fn check_destination(url: &str, allow_private: bool) -> Result<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid(format!("Invalid webhook URL '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "Invalid webhook URL '{url}': only http and https are allowed"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| Error::invalid(format!("Invalid webhook URL '{url}': no host")))?;
    if allow_private {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::invalid(format!("Webhook host '{host}' does not resolve: {e}")))?
        .map(|a| a.ip())
        .collect();
    if let Some(bad) = addresses.iter().find(|ip| is_internal(ip)) {
        return Err(Error::invalid(format!(
            "Webhook URL '{url}' resolves to {bad}, a private or local address; an admin can \
             allow such destinations (`tarn server --webhooks-allow-private`)"
        )));
    }
    Ok(())
}

fn is_internal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_internal(&IpAddr::V4(v4)))
        }
    }
}

/// `v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`, MLflow's scheme.
pub fn mlflow_signature(
    secret: &str,
    delivery_id: &str,
    timestamp: &str,
    body: &str,
) -> Result<String> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .map_err(|e| Error::internal(format!("HMAC key: {e}")))?;
    mac.update(format!("{delivery_id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Lowercase hex HMAC-SHA256(secret, body), Databricks' `X-Databricks-Signature`.
pub fn databricks_signature(secret: &str, body: &str) -> Result<String> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .map_err(|e| Error::internal(format!("HMAC key: {e}")))?;
    mac.update(body.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// One HTTP client per setting of certificate checks; no redirects (a redirect could lead a
/// checked URL to an internal one).
pub struct Sender {
    verified: reqwest::Client,
    unverified: reqwest::Client,
    settings: WebhookSettings,
}

impl Sender {
    pub fn new(settings: WebhookSettings) -> Result<Self> {
        let build = |verify: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(settings.timeout)
                .danger_accept_invalid_certs(!verify)
                .build()
                .map_err(|e| Error::internal(format!("webhook HTTP client: {e}")))
        };
        Ok(Self {
            verified: build(true)?,
            unverified: build(false)?,
            settings,
        })
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// Sends `body` to the webhook with its flavor's headers and signature.
    pub async fn send(&self, webhook: &Webhook, delivery_id: &str, body: &str) -> Sent {
        let started = Instant::now();
        let outcome = self.try_send(webhook, delivery_id, body).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match outcome {
            Ok((status, body)) => Sent {
                status_code: Some(status),
                body,
                error: None,
                latency_ms,
            },
            Err(error) => Sent {
                status_code: None,
                body: String::new(),
                error: Some(error),
                latency_ms,
            },
        }
    }

    async fn try_send(
        &self,
        webhook: &Webhook,
        delivery_id: &str,
        body: &str,
    ) -> std::result::Result<(u16, String), String> {
        check_destination(&webhook.url, self.settings.allow_private)
            .await
            .map_err(|e| e.message)?;
        let client = if webhook.enable_ssl_verification {
            &self.verified
        } else {
            &self.unverified
        };
        let mut request = client
            .post(&webhook.url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        match webhook.flavor {
            Flavor::Mlflow => {
                let timestamp = (tarn_core::ids::now_millis() / 1000).to_string();
                request = request
                    .header("X-MLflow-Delivery-Id", delivery_id)
                    .header("X-MLflow-Timestamp", &timestamp);
                if let Some(secret) = webhook.secret.as_deref().filter(|s| !s.is_empty()) {
                    let signature = mlflow_signature(secret, delivery_id, &timestamp, body)
                        .map_err(|e| e.message)?;
                    request = request.header("X-MLflow-Signature", signature);
                }
            }
            Flavor::Databricks => {
                request = request.header("X-Databricks-Delivery-Id", delivery_id);
                if let Some(secret) = webhook.secret.as_deref().filter(|s| !s.is_empty()) {
                    let signature = databricks_signature(secret, body).map_err(|e| e.message)?;
                    request = request.header("X-Databricks-Signature", signature);
                }
                if let Some(authorization) =
                    webhook.authorization.as_deref().filter(|a| !a.is_empty())
                {
                    request = request.header("Authorization", authorization);
                }
            }
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        // Receivers sometimes answer with whole pages; the log keeps the start.
        Ok((status, text.chars().take(2000).collect()))
    }

    /// When to try again after `attempts` failed attempts: base * 2^(attempts-1), capped,
    /// with up to 20% jitter so a recovering receiver is not hit by every retry at once.
    fn retry_at(&self, attempts: i64, now: i64) -> i64 {
        let base = self.settings.retry_base.as_millis() as f64;
        let cap = self.settings.max_backoff.as_millis() as f64;
        let delay = (base * 2f64.powi((attempts - 1).clamp(0, 30) as i32)).min(cap);
        let jitter = delay * 0.2 * rand::random::<f64>();
        now + (delay + jitter) as i64
    }
}

/// Fans out new events and sends every due delivery once; returns how many were sent.
pub async fn dispatch_once(store: &dyn MetaStore, sender: &Sender) -> Result<usize> {
    while store.fan_out(500, tarn_core::ids::now_millis()).await? > 0 {}
    let now = tarn_core::ids::now_millis();
    let lease = i64::try_from(sender.settings.timeout.as_millis()).unwrap_or(30_000) * 2;
    let due = store.claim_deliveries(now, now + lease, 64).await?;
    let count = due.len();
    let sends = due.into_iter().map(|(delivery, webhook)| async move {
        let sent = sender
            .send(&webhook, &delivery.delivery_id, &delivery.payload)
            .await;
        (delivery, sent)
    });
    for (delivery, sent) in futures::future::join_all(sends).await {
        record(store, sender, &delivery, &sent).await?;
    }
    Ok(count)
}

async fn record(
    store: &dyn MetaStore,
    sender: &Sender,
    delivery: &Delivery,
    sent: &Sent,
) -> Result<()> {
    let now = tarn_core::ids::now_millis();
    let attempts = delivery.attempts + 1;
    let outcome = if sent.succeeded() {
        AttemptOutcome::Delivered
    } else if sent.retryable() && attempts < sender.settings.max_attempts {
        AttemptOutcome::RetryAt(sender.retry_at(attempts, now))
    } else {
        AttemptOutcome::GaveUp
    };
    if !sent.succeeded() {
        tracing::warn!(
            delivery = %delivery.delivery_id,
            webhook = %delivery.webhook_id,
            status = ?sent.status_code,
            error = ?sent.error,
            attempts,
            "webhook delivery failed"
        );
    }
    let error = sent
        .error
        .clone()
        .or_else(|| (!sent.succeeded()).then(|| sent.body.chars().take(500).collect::<String>()));
    store
        .record_attempt(
            delivery.id,
            &AttemptResult {
                status_code: sent.status_code.map(i64::from),
                error,
                latency_ms: sent.latency_ms,
                outcome,
            },
            now,
        )
        .await
}

/// Runs the dispatcher until `stop` fires.
pub async fn run_dispatcher(
    store: Arc<dyn MetaStore>,
    sender: Arc<Sender>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(sender.settings.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = dispatch_once(store.as_ref(), &sender).await {
            tracing::warn!(error = %err.message, "webhook dispatch failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_schemes() {
        // Values computed independently with Python's hmac/hashlib/base64.
        assert_eq!(
            mlflow_signature("s3cret", "d-1", "1700000000", "{\"a\":1}").expect("sign"),
            "v1,G2ShuVzSSSfy1jCfd6eHfcRxF+GSmEbR2H97FZuxIU8="
        );
        assert_eq!(
            databricks_signature("s3cret", "{\"a\":1}").expect("sign"),
            "5910e62016ef5034272c926c27071992a465c2335cecf41851bda071577f4f6d"
        );
    }

    #[tokio::test]
    async fn internal_destinations_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://10.1.2.3/hook",
            "http://192.168.0.10/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/hook",
            "http://100.64.0.1/hook",
            "http://0.0.0.0/hook",
        ] {
            assert!(check_destination(url, false).await.is_err(), "{url}");
            assert!(check_destination(url, true).await.is_ok(), "{url}");
        }
        for url in ["ftp://example.com/x", "file:///etc/passwd", "not a url"] {
            assert!(check_destination(url, true).await.is_err(), "{url}");
        }
        assert!(
            check_destination("http://93.184.216.34/hook", false)
                .await
                .is_ok()
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let sender = Sender::new(WebhookSettings {
            retry_base: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..WebhookSettings::default()
        })
        .expect("sender");
        let delays: Vec<i64> = (1..=6).map(|a| sender.retry_at(a, 0)).collect();
        for (delay, expected) in delays.iter().zip([100, 200, 400, 800, 1000, 1000]) {
            assert!(
                *delay >= expected && *delay <= expected + expected / 5,
                "{delays:?}"
            );
        }
    }
}
