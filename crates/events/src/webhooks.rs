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
/// addresses on loopback, private, link-local, CGNAT, multicast, reserved or unspecified
/// networks, also when written inside an IPv6 address (server-side request forgery). Checked
/// when a webhook is saved, for a clear error then; each send connects only to addresses
/// checked by the same rule as it resolves them ([`CheckedResolver`]).
pub async fn check_destination(url: &str, allow_private: bool) -> Result<()> {
    let host = destination_host(url)?;
    if allow_private {
        return Ok(());
    }
    if let Some(ip) = literal_address(&host) {
        return refuse_internal(url, ip);
    }
    let url::Host::Domain(name) = &host else {
        return Ok(());
    };
    let addresses = tokio::net::lookup_host((name.as_str(), 0))
        .await
        .map_err(|e| Error::invalid(format!("Webhook host '{name}' does not resolve: {e}")))?;
    for address in addresses {
        refuse_internal(url, address.ip())?;
    }
    Ok(())
}

/// The host of an http(s) URL, as the URL standard reads it (`http://2130706433/` is
/// 127.0.0.1).
fn destination_host(url: &str) -> Result<url::Host<String>> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid(format!("Invalid webhook URL '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid(format!(
            "Invalid webhook URL '{url}': only http and https are allowed"
        )));
    }
    parsed
        .host()
        .map(|host| host.to_owned())
        .ok_or_else(|| Error::invalid(format!("Invalid webhook URL '{url}': no host")))
}

fn literal_address(host: &url::Host<String>) -> Option<IpAddr> {
    match host {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(*v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(*v6)),
        url::Host::Domain(_) => None,
    }
}

fn refuse_internal(url: &str, ip: IpAddr) -> Result<()> {
    if is_internal(&ip) {
        return Err(Error::invalid(format!(
            "Webhook URL '{url}' resolves to {ip}, a private or local address; an admin can \
             allow such destinations (`tarn server --webhooks-allow-private`)"
        )));
    }
    Ok(())
}

/// Whether `ip` is on a network a webhook must not reach from the server.
fn is_internal(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // CGNAT 100.64.0.0/10
                || (a == 100 && (64..128).contains(&b))
                // IETF protocol assignments 192.0.0.0/24
                || (a == 192 && b == 0 && c == 0)
                // benchmarking 198.18.0.0/15
                || (a == 198 && (b == 18 || b == 19))
                // reserved 240.0.0.0/4, the broadcast address included
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| {
                let [h1, h2] = high.to_be_bytes();
                let [l1, l2] = low.to_be_bytes();
                is_internal(&IpAddr::V4(std::net::Ipv4Addr::new(h1, h2, l1, l2)))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // unique local fc00::/7, link-local fe80::/10, site-local fec0::/10
                || (segments[0] & 0xfe00) == 0xfc00
                || (segments[0] & 0xffc0) == 0xfe80
                || (segments[0] & 0xffc0) == 0xfec0
                // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d
                || (segments[..5] == [0; 5]
                    && (segments[5] == 0xffff || segments[5] == 0)
                    && embedded(segments[6], segments[7]))
                // NAT64 64:ff9b::a.b.c.d; the local-use prefix 64:ff9b:1::/48 entirely
                || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(segments[6], segments[7]))
                || (segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1)
                // 6to4 2002:aabb:ccdd::/48 carries a.b.c.d
                || (segments[0] == 0x2002 && embedded(segments[1], segments[2]))
                // Teredo 2001::/32 (the IPv4 address is obfuscated), documentation 2001:db8::/32
                || (segments[0] == 0x2001 && (segments[1] == 0 || segments[1] == 0xdb8))
                // discard-only 100::/64
                || segments[..4] == [0x100, 0, 0, 0]
        }
    }
}

/// Resolves a webhook's host name for the HTTP client and keeps only addresses the SSRF rule
/// allows, failing when any is refused. The address connected to is the address checked: a
/// second lookup could answer differently (DNS rebinding).
struct CheckedResolver;

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addresses.iter().find(|a| is_internal(&a.ip())) {
                return Err(format!(
                    "webhook host '{host}' resolves to {}, a private or local address",
                    bad.ip()
                )
                .into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An error and the causes under it (reqwest's own message names only the URL).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// `v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>`, MLflow's scheme.
pub fn mlflow_signature(
    secret: &str,
    delivery_id: &str,
    timestamp: &str,
    body: &str,
) -> Result<String> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .map_err(|e| Error::internal_from("HMAC key", e))?;
    mac.update(format!("{delivery_id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Lowercase hex HMAC-SHA256(secret, body), Databricks' `X-Databricks-Signature`.
pub fn databricks_signature(secret: &str, body: &str) -> Result<String> {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .map_err(|e| Error::internal_from("HMAC key", e))?;
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
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(settings.timeout)
                .danger_accept_invalid_certs(!verify)
                // Proxies would resolve the host themselves, past the check.
                .no_proxy();
            if !settings.allow_private {
                builder = builder.dns_resolver(Arc::new(CheckedResolver));
            }
            builder
                .build()
                .map_err(|e| Error::internal_from("webhook HTTP client", e))
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
        // Names are checked as they are resolved for the connection; an address written in
        // the URL is checked here.
        let host = destination_host(&webhook.url).map_err(|e| e.message)?;
        if let Some(ip) = literal_address(&host).filter(|_| !self.settings.allow_private) {
            refuse_internal(&webhook.url, ip).map_err(|e| e.message)?;
        }
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
        let response = request.send().await.map_err(|e| with_causes(&e))?;
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
            tracing::warn!(error = %err.report(), "webhook dispatch failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_webhook() -> Webhook {
        Webhook {
            id: "w1".into(),
            workspace: "dev".into(),
            flavor: Flavor::Mlflow,
            name: "hook".into(),
            description: String::new(),
            url: String::new(),
            secret: None,
            authorization: None,
            enable_ssl_verification: true,
            model_name: None,
            events: vec!["model_version.created".into()],
            status: tarn_core::webhooks::WebhookStatus::Active,
            creation_timestamp: 0,
            last_updated_timestamp: 0,
        }
    }

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
            "http://2130706433/hook",
            "http://0x7f.1/hook",
            "http://[::127.0.0.1]/hook",
            "http://[::ffff:10.0.0.1]/hook",
            "http://[64:ff9b::7f00:1]/hook",
            "http://[64:ff9b:1::1]/hook",
            "http://[2002:7f00:1::]/hook",
            "http://[2002:a9fe:a9fe::1]/hook",
            "http://[fec0::1]/hook",
            "http://[fd00::1]/hook",
            "http://[fe80::1]/hook",
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
            "http://198.18.0.1/hook",
            "http://198.19.255.254/hook",
            "http://240.0.0.1/hook",
            "http://255.255.255.255/hook",
            "http://192.0.0.8/hook",
            "http://192.0.2.1/hook",
        ] {
            assert!(check_destination(url, false).await.is_err(), "{url}");
            assert!(check_destination(url, true).await.is_ok(), "{url}");
        }
        for url in ["ftp://example.com/x", "file:///etc/passwd", "not a url"] {
            assert!(check_destination(url, true).await.is_err(), "{url}");
        }
        for url in [
            "http://93.184.216.34/hook",
            "http://[64:ff9b::5db8:d822]/hook",
            "http://[2002:5db8:d822::1]/hook",
            "http://[2606:4700::1111]/hook",
            "http://198.20.0.1/hook",
        ] {
            assert!(check_destination(url, false).await.is_ok(), "{url}");
        }
    }

    /// A host name is checked as the client resolves it for the connection, so a name that
    /// resolves to a loopback address at send time is never connected to.
    #[tokio::test]
    async fn sends_refuse_names_that_resolve_internally() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sender = Sender::new(WebhookSettings::default()).expect("sender");
        let hook = Webhook {
            url: format!("http://localhost:{port}/hook"),
            ..test_webhook()
        };
        let sent = sender.send(&hook, "d1", "{}").await;
        assert_eq!(sent.status_code, None);
        let error = sent.error.expect("refused");
        assert!(error.contains("private or local"), "{error}");
        listener.set_nonblocking(true).expect("nonblocking");
        assert!(listener.accept().is_err(), "nothing connected");
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
