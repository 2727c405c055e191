//! Webhooks and their delivery queue. The fan-out takes events out of the webhooks' outbox and
//! writes their deliveries in the same transaction, so every committed event is queued exactly
//! once, whatever order transactions commit in, and none is lost across restarts.

use super::*;

pub(super) const WEBHOOK_CONSUMER: &str = "webhooks";

pub(super) fn row_webhook(row: &db::DbRow) -> std::result::Result<Webhook, sqlx::Error> {
    Ok(Webhook {
        id: row.try_get("id")?,
        workspace: row.try_get("workspace")?,
        flavor: decode_with(row, "flavor", Flavor::parse)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        authorization: row.try_get("authorization_header")?,
        enable_ssl_verification: row.try_get("enable_ssl_verification")?,
        model_name: row.try_get("model_name")?,
        events: decode_json(row, "events")?,
        status: decode_with(row, "status", |v| WebhookStatus::parse(v).ok())?,
        creation_timestamp: row.try_get("creation_timestamp")?,
        last_updated_timestamp: row.try_get("last_updated_timestamp")?,
    })
}

pub(super) fn row_delivery(row: &db::DbRow) -> std::result::Result<Delivery, sqlx::Error> {
    Ok(Delivery {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_name: row.try_get("event_name")?,
        payload: row.try_get("payload")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        last_latency_ms: row.try_get("last_latency_ms")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn webhook_not_found(id: &str) -> Error {
    Error::not_found(format!("Webhook with ID {id} not found."))
}

/// What the audit trail records of a webhook: never its secret or authorization.
pub(super) fn webhook_audit(webhook: &Webhook) -> event::WebhookChange {
    event::WebhookChange {
        id: webhook.id.clone(),
        flavor: webhook.flavor.as_str().to_string(),
        name: webhook.name.clone(),
        url: webhook.url.clone(),
        events: webhook.events.clone(),
        status: webhook.status.as_str().to_string(),
        model_name: webhook.model_name.clone(),
    }
}

#[async_trait]
impl WebhookStore for Store {
    async fn create_webhook(&self, webhook: &Webhook, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let start: Option<i64> = db::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        db::query(
            "INSERT INTO webhooks (id, workspace, flavor, name, description, url, secret, authorization_header, \
             enable_ssl_verification, model_name, events, status, start_event_id, creation_timestamp, last_updated_timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        )
        .bind(&webhook.id)
        .bind(&webhook.workspace)
        .bind(webhook.flavor.as_str())
        .bind(&webhook.name)
        .bind(&webhook.description)
        .bind(&webhook.url)
        .bind(webhook.secret.as_deref())
        .bind(webhook.authorization.as_deref())
        .bind(webhook.enable_ssl_verification)
        .bind(webhook.model_name.as_deref())
        .bind(serde_json::to_string(&webhook.events).map_err(|e| Error::internal_from("cannot encode webhook events", e))?)
        .bind(webhook.status.as_str())
        .bind(start.unwrap_or(0))
        .bind(webhook.creation_timestamp)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_event(
            &mut tx,
            &webhook.workspace,
            &actor.name,
            webhook.creation_timestamp,
            &Change::WebhookCreated(webhook_audit(webhook)),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_webhook(&self, workspace: &str, id: &str) -> Result<Webhook> {
        let row = db::query("SELECT * FROM webhooks WHERE workspace = $1 AND id = $2")
            .bind(workspace)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| webhook_not_found(id))?;
        row_webhook(&row).map_err(db_error)
    }

    async fn list_webhooks(
        &self,
        workspace: &str,
        flavor: Flavor,
        model_name: Option<&str>,
        offset: u64,
        max_results: u64,
    ) -> Result<Page<Webhook>> {
        let mut builder = Builder::new("SELECT * FROM webhooks WHERE workspace = ");
        builder.push_bind(workspace.to_string());
        builder.push(" AND flavor = ");
        builder.push_bind(flavor.as_str());
        if let Some(model) = model_name {
            builder.push(" AND model_name = ");
            builder.push_bind(model.to_string());
        }
        builder.push(" ORDER BY creation_timestamp DESC, id");
        self.read_page(&mut builder, row_webhook, max_results, offset)
            .await
    }

    async fn update_webhook(&self, webhook: &Webhook, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let updated = db::query(
            "UPDATE webhooks SET name = $1, description = $2, url = $3, secret = $4, authorization_header = $5, \
             enable_ssl_verification = $6, events = $7, status = $8, last_updated_timestamp = $9 \
             WHERE workspace = $10 AND id = $11",
        )
        .bind(&webhook.name)
        .bind(&webhook.description)
        .bind(&webhook.url)
        .bind(webhook.secret.as_deref())
        .bind(webhook.authorization.as_deref())
        .bind(webhook.enable_ssl_verification)
        .bind(serde_json::to_string(&webhook.events).map_err(|e| Error::internal_from("cannot encode webhook events", e))?)
        .bind(webhook.status.as_str())
        .bind(webhook.last_updated_timestamp)
        .bind(&webhook.workspace)
        .bind(&webhook.id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(webhook_not_found(&webhook.id));
        }
        insert_event(
            &mut tx,
            &webhook.workspace,
            &actor.name,
            webhook.last_updated_timestamp,
            &Change::WebhookUpdated(webhook_audit(webhook)),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_webhook(&self, workspace: &str, id: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        db::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let deleted = db::query("DELETE FROM webhooks WHERE workspace = $1 AND id = $2")
            .bind(workspace)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if deleted.rows_affected() == 0 {
            return Err(webhook_not_found(id));
        }
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now_millis(),
            &Change::WebhookDeleted { id: id.to_string() },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn fan_out(&self, limit: u64, now: i64) -> Result<usize> {
        // Checked on a reader first: the dispatcher polls often, and taking the single SQLite
        // writer for nothing would stall every other write.
        let pending: bool =
            db::query_scalar("SELECT EXISTS (SELECT 1 FROM event_outbox WHERE consumer = $1)")
                .bind(WEBHOOK_CONSUMER)
                .fetch_one(&self.read)
                .await
                .map_err(db_error)?;
        if !pending {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        // Several servers on one PostgreSQL database each take events the others have not
        // locked; SQLite has one writer.
        let lock = match DIALECT {
            Dialect::Postgres => " FOR UPDATE OF o SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let rows = db::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.* FROM event_outbox o JOIN events e ON e.id = o.event_id \
             WHERE o.consumer = $1 ORDER BY o.event_id LIMIT $2{lock}"
        )))
        .bind(WEBHOOK_CONSUMER)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let events = rows
            .iter()
            .map(row_event)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_error)?;
        if events.is_empty() {
            return Ok(0);
        }
        let hook_rows = db::query("SELECT * FROM webhooks WHERE status = 'ACTIVE'")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut webhooks = Vec::with_capacity(hook_rows.len());
        for row in &hook_rows {
            let start: i64 = row.try_get("start_event_id").map_err(db_error)?;
            webhooks.push((start, row_webhook(row).map_err(db_error)?));
        }
        for event in &events {
            let stored = event.change.store()?;
            for (start, webhook) in &webhooks {
                if event.id <= *start {
                    continue;
                }
                for name in hooks::matching_names(webhook, event, &stored) {
                    let body = hooks::payload(webhook, &name, event, &stored);
                    db::query(
                        "INSERT INTO webhook_deliveries (delivery_id, webhook_id, event_id, event_name, payload, status, \
                         attempts, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
                    )
                    .bind(uuid_v4())
                    .bind(&webhook.id)
                    .bind(event.id)
                    .bind(&name)
                    .bind(body.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                }
            }
        }
        let mut taken = Builder::new("DELETE FROM event_outbox WHERE consumer = ");
        taken.push_bind(WEBHOOK_CONSUMER).push(" AND event_id IN (");
        let mut ids = taken.separated(", ");
        for event in &events {
            ids.push_bind(event.id);
        }
        taken.push(")");
        taken.build().execute(&mut *tx).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(events.len())
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: u64,
    ) -> Result<Vec<(Delivery, Webhook)>> {
        let due: bool = db::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1)",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await
        .map_err(db_error)?;
        if !due {
            return Ok(Vec::new());
        }
        let rows = db::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2 ORDER BY id LIMIT $3) \
             AND status = 'pending' AND next_attempt_at <= $2 RETURNING *",
        )
        .bind(lease_until)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.write)
        .await
        .map_err(db_error)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let delivery = row_delivery(row).map_err(db_error)?;
            let hook = db::query("SELECT * FROM webhooks WHERE id = $1")
                .bind(&delivery.webhook_id)
                .fetch_optional(&self.write)
                .await
                .map_err(db_error)?;
            if let Some(hook) = hook {
                claimed.push((delivery, row_webhook(&hook).map_err(db_error)?));
            }
        }
        claimed.sort_by_key(|(d, _)| d.id);
        Ok(claimed)
    }

    async fn record_attempt(&self, id: i64, result: &AttemptResult, now: i64) -> Result<()> {
        let (status, next) = match result.outcome {
            AttemptOutcome::Delivered => ("succeeded", now),
            AttemptOutcome::RetryAt(at) => ("pending", at),
            AttemptOutcome::GaveUp => ("failed", now),
        };
        db::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
             last_status_code = $3, last_error = $4, last_latency_ms = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(status)
        .bind(next)
        .bind(result.status_code)
        .bind(result.error.as_deref())
        .bind(result.latency_ms)
        .bind(now)
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<Delivery>> {
        let mut builder = Builder::new(
            "SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE w.workspace = ",
        );
        builder.push_bind(query.workspace.clone());
        if let Some(webhook_id) = &query.webhook_id {
            builder.push(" AND d.webhook_id = ");
            builder.push_bind(webhook_id.clone());
        }
        if let Some(status) = &query.status {
            builder.push(" AND d.status = ");
            builder.push_bind(status.clone());
        }
        builder.push(" ORDER BY d.id DESC LIMIT ");
        builder.push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        self.read_all(&mut builder, row_delivery).await
    }
}

/// A random UUID in its usual text form (what MLflow sends as the delivery id).
pub(super) fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = tarn_core::ids::hex32(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
