//! Alerts and their evaluations. An alert's settings are kept as sent (JSON); each change, and
//! each announced evaluation, is an event in the change's transaction.

use super::*;
use tarn_core::alerts::{Alert, AlertSettings, AlertState, Evaluation, EvaluationReason};
use tarn_core::events::{AlertChange, AlertStateChange};

fn row_alert(row: &db::DbRow) -> std::result::Result<Alert, sqlx::Error> {
    Ok(Alert {
        id: row.try_get("id")?,
        workspace: row.try_get("workspace")?,
        settings: decode_json(row, "settings")?,
        owner: row.try_get("owner")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        state: decode_with(row, "state", |s| AlertState::parse(s).ok())?,
        last_evaluated_at: row.try_get("last_evaluated_at")?,
        state_changed_at: row.try_get("state_changed_at")?,
        last_notified_at: row.try_get("last_notified_at")?,
    })
}

fn row_evaluation(row: &db::DbRow) -> std::result::Result<Evaluation, sqlx::Error> {
    let reason: String = row.try_get("reason")?;
    Ok(Evaluation {
        alert_id: row.try_get("alert_id")?,
        evaluated_at: row.try_get("evaluated_at")?,
        reason: EvaluationReason::parse(&reason),
        state: decode_with(row, "state", |s| AlertState::parse(s).ok())?,
        value: row.try_get("value")?,
        threshold: row.try_get("threshold")?,
        message: row.try_get("message")?,
        notified: row.try_get("notified")?,
    })
}

fn alert_not_found(id: &str) -> Error {
    Error::not_found(format!("Alert {id} does not exist."))
}

fn change_of(alert: &Alert) -> Result<AlertChange> {
    Ok(AlertChange {
        alert_id: alert.id.clone(),
        display_name: alert.settings.display_name.clone(),
        settings: serde_json::to_value(&alert.settings)
            .map_err(|e| Error::internal_from("cannot encode", e))?,
    })
}

async fn alert_in<'e, E>(executor: E, workspace: &str, id: &str) -> Result<Alert>
where
    E: db::Executor<'e>,
{
    let row = db::query("SELECT * FROM alerts WHERE workspace = $1 AND id = $2")
        .bind(workspace)
        .bind(id)
        .fetch_optional(executor)
        .await
        .map_err(db_error)?
        .ok_or_else(|| alert_not_found(id))?;
    row_alert(&row).map_err(db_error)
}

#[async_trait]
impl AlertStore for Store {
    async fn create_alert(&self, alert: &Alert, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        db::query(
            "INSERT INTO alerts (id, workspace, display_name, settings, owner, created_at, \
             updated_at, state, last_evaluated_at, state_changed_at, last_notified_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&alert.id)
        .bind(&alert.workspace)
        .bind(&alert.settings.display_name)
        .bind(json_text(&alert.settings)?)
        .bind(&alert.owner)
        .bind(alert.created_at)
        .bind(alert.updated_at)
        .bind(alert.state.as_str())
        .bind(alert.last_evaluated_at)
        .bind(alert.state_changed_at)
        .bind(alert.last_notified_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_event(
            &mut tx,
            &alert.workspace,
            &actor.name,
            alert.created_at,
            &Change::AlertCreated(change_of(alert)?),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_alert(&self, workspace: &str, id: &str) -> Result<Alert> {
        alert_in(&self.read, workspace, id).await
    }

    async fn list_alerts(&self, workspace: Option<&str>) -> Result<Vec<Alert>> {
        let rows = match workspace {
            Some(workspace) => {
                db::query("SELECT * FROM alerts WHERE workspace = $1 ORDER BY display_name, id")
                    .bind(workspace)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                db::query("SELECT * FROM alerts ORDER BY workspace, display_name, id")
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(db_error)?;
        rows.iter()
            .map(row_alert)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn update_alert(
        &self,
        workspace: &str,
        id: &str,
        settings: &AlertSettings,
        now: i64,
        actor: &Actor,
    ) -> Result<Alert> {
        let mut tx = self.begin().await?;
        let updated = db::query(
            "UPDATE alerts SET settings = $1, display_name = $2, updated_at = $3 \
             WHERE workspace = $4 AND id = $5",
        )
        .bind(json_text(settings)?)
        .bind(&settings.display_name)
        .bind(now)
        .bind(workspace)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(alert_not_found(id));
        }
        let alert = alert_in(&mut *tx, workspace, id).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::AlertUpdated(change_of(&alert)?),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(alert)
    }

    async fn delete_alert(&self, workspace: &str, id: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let alert = alert_in(&mut *tx, workspace, id).await?;
        db::query("DELETE FROM alert_evaluations WHERE alert_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        db::query("DELETE FROM alerts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            tarn_core::ids::now_millis(),
            &Change::AlertDeleted {
                alert_id: alert.id,
                display_name: alert.settings.display_name,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn record_evaluation(
        &self,
        evaluation: &Evaluation,
        announce: Option<&AlertStateChange>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let workspace: Option<String> =
            db::query_scalar("SELECT workspace FROM alerts WHERE id = $1")
                .bind(&evaluation.alert_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        // Deleted while it was evaluated: nothing to keep.
        let Some(workspace) = workspace else {
            return Ok(());
        };
        let at = evaluation.evaluated_at;
        // The right-hand sides read the row as it was: `state` is the state before.
        db::query(
            "UPDATE alerts SET state_changed_at = CASE WHEN state <> $1 THEN $2 \
             ELSE state_changed_at END, \
             last_notified_at = CASE WHEN $3 THEN $2 ELSE last_notified_at END, \
             state = $1, last_evaluated_at = $2 WHERE id = $4",
        )
        .bind(evaluation.state.as_str())
        .bind(at)
        .bind(evaluation.notified)
        .bind(&evaluation.alert_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        db::query(
            "INSERT INTO alert_evaluations (alert_id, evaluated_at, reason, state, value, \
             threshold, message, notified) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&evaluation.alert_id)
        .bind(at)
        .bind(evaluation.reason.as_str())
        .bind(evaluation.state.as_str())
        .bind(&evaluation.value)
        .bind(&evaluation.threshold)
        .bind(&evaluation.message)
        .bind(evaluation.notified)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(announce) = announce {
            insert_event(
                &mut tx,
                &workspace,
                "system",
                at,
                &Change::AlertStateChanged(announce.clone()),
            )
            .await?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn list_evaluations(&self, alert_id: &str, limit: u64) -> Result<Vec<Evaluation>> {
        let rows = db::query(
            "SELECT * FROM alert_evaluations WHERE alert_id = $1 \
             ORDER BY evaluation_id DESC LIMIT $2",
        )
        .bind(alert_id)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(row_evaluation)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }
}
