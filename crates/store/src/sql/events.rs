//! The event stream's SQL: each change appends one event in its own transaction and puts it in
//! every consumer's outbox, so the audit trail and the consumers never miss or invent a change.

use super::*;

pub(super) fn row_event(row: &db::DbRow) -> std::result::Result<Event, sqlx::Error> {
    let entity: String = row.try_get("entity")?;
    let action: String = row.try_get("action")?;
    let data = decode_json(row, "data")?;
    let change =
        Change::from_stored(&entity, &action, data).map_err(|err| sqlx::Error::ColumnDecode {
            index: "data".into(),
            source: Box::new(err),
        })?;
    Ok(Event {
        id: row.try_get("id")?,
        workspace: row.try_get("workspace")?,
        timestamp: row.try_get("timestamp")?,
        actor: row.try_get("actor")?,
        object: row.try_get("object")?,
        change,
    })
}

/// Who reads the event stream: each event waits in the outbox of each of them until taken.
pub(super) const EVENT_CONSUMERS: &[&str] =
    &[WEBHOOK_CONSUMER, JOB_TRIGGERS_CONSUMER, ALERTS_CONSUMER];
/// Job schedules and triggers (tarn_jobs::triggers::CONSUMER).
const JOB_TRIGGERS_CONSUMER: &str = "job_triggers";
/// Alerts evaluated after monitor refreshes (tarn_monitor::alerts::CONSUMER).
const ALERTS_CONSUMER: &str = "alerts";

/// Appends `change`, made by `actor` in `workspace` at `now`, and puts it in each consumer's
/// outbox; called inside the transaction of the change.
pub(super) async fn insert_event(
    tx: &mut Tx<'_>,
    workspace: &str,
    actor: &str,
    now: i64,
    change: &Change,
) -> Result<()> {
    let stored = change.store()?;
    let id: i64 = db::query_scalar(
        "INSERT INTO events (workspace, timestamp, actor, entity, action, object, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(workspace)
    .bind(now)
    .bind(actor)
    .bind(&stored.entity)
    .bind(&stored.action)
    .bind(change.object())
    .bind(stored.data.to_string())
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    for consumer in EVENT_CONSUMERS {
        db::query("INSERT INTO event_outbox (consumer, event_id) VALUES ($1, $2)")
            .bind(*consumer)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

#[async_trait]
impl EventStore for Store {
    async fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut builder = Builder::new("SELECT * FROM events WHERE id > ");
        builder.push_bind(query.after_id);
        for (column, value) in [
            ("workspace", &query.workspace),
            ("entity", &query.entity),
            ("object", &query.object),
            ("actor", &query.actor),
        ] {
            if let Some(value) = value {
                builder.push(format!(" AND {column} = "));
                builder.push_bind(value.clone());
            }
        }
        builder.push(" ORDER BY id LIMIT ");
        builder.push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        self.read_all(&mut builder, row_event).await
    }

    async fn last_event_id(&self) -> Result<i64> {
        db::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
            .fetch_one(&self.read)
            .await
            .map_err(db_error)
    }

    async fn record_event(&self, workspace: &str, actor: &Actor, change: &Change) -> Result<()> {
        let mut tx = self.begin().await?;
        insert_event(&mut tx, workspace, &actor.name, now_millis(), change).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn pending_events(&self, consumer: &str, limit: u64) -> Result<Vec<Event>> {
        let mut builder = Builder::new(
            "SELECT e.* FROM event_outbox o JOIN events e ON e.id = o.event_id WHERE o.consumer = ",
        );
        builder.push_bind(consumer.to_string());
        builder.push(" ORDER BY o.event_id LIMIT ");
        builder.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.read_all(&mut builder, row_event).await
    }

    async fn acknowledge_events(&self, consumer: &str, up_to: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        db::query("DELETE FROM event_outbox WHERE consumer = $1 AND event_id <= $2")
            .bind(consumer)
            .bind(up_to)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}
