//! Table monitors and their refreshes. A monitor's settings are kept as sent (JSON); each
//! change is an event, in the change's transaction.

use super::*;
use tarn_core::ErrorCode;
use tarn_core::events::MonitorChange;
use tarn_core::monitors::{
    Monitor, MonitorSettings, MonitorStatus, Refresh, RefreshEnd, RefreshState, RefreshTrigger,
    RefreshVersions,
};

fn row_monitor(row: &db::DbRow) -> std::result::Result<Monitor, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Monitor {
        table_id: row.try_get("table_id")?,
        table_name: row.try_get("table_name")?,
        workspace: row.try_get("workspace")?,
        settings: decode_json(row, "settings")?,
        status: MonitorStatus::parse(&status),
        monitor_version: row.try_get("monitor_version")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        latest_failure: row.try_get("latest_failure")?,
    })
}

fn row_refresh(row: &db::DbRow) -> std::result::Result<Refresh, sqlx::Error> {
    let trigger: String = row.try_get("trigger_kind")?;
    let source: Option<i64> = row.try_get("source_version")?;
    let monitor: Option<i64> = row.try_get("monitor_version")?;
    let versions = match (source, monitor) {
        (Some(source), Some(monitor)) => Some(RefreshVersions {
            source,
            baseline: row.try_get("baseline_version")?,
            monitor,
        }),
        _ => None,
    };
    Ok(Refresh {
        refresh_id: row.try_get("refresh_id")?,
        state: decode_with(row, "state", RefreshState::parse)?,
        start_time_ms: row.try_get("start_time_ms")?,
        end_time_ms: row.try_get("end_time_ms")?,
        message: row.try_get("message")?,
        trigger: RefreshTrigger::parse(&trigger),
        versions,
    })
}

fn monitor_not_found(table_id: &str) -> Error {
    Error::not_found(format!("The table ({table_id}) has no monitor."))
}

fn settings_json(settings: &MonitorSettings) -> Result<serde_json::Value> {
    serde_json::to_value(settings).map_err(|e| Error::internal_from("cannot encode", e))
}

async fn monitor_in<'e, E>(executor: E, table_id: &str) -> Result<Monitor>
where
    E: db::Executor<'e>,
{
    let row = db::query("SELECT * FROM table_monitors WHERE table_id = $1")
        .bind(table_id)
        .fetch_optional(executor)
        .await
        .map_err(db_error)?
        .ok_or_else(|| monitor_not_found(table_id))?;
    row_monitor(&row).map_err(db_error)
}

#[async_trait]
impl MonitorStore for Store {
    async fn create_monitor(&self, monitor: &Monitor, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let inserted = db::query(
            "INSERT INTO table_monitors (table_id, table_name, workspace, settings, status, \
             monitor_version, created_by, created_at, updated_at, latest_failure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&monitor.table_id)
        .bind(&monitor.table_name)
        .bind(&monitor.workspace)
        .bind(json_text(&monitor.settings)?)
        .bind(monitor.status.as_str())
        .bind(monitor.monitor_version)
        .bind(&monitor.created_by)
        .bind(monitor.created_at)
        .bind(monitor.updated_at)
        .bind(&monitor.latest_failure)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::already_exists(format!(
                    "Monitor already exists for table {}.",
                    monitor.table_name
                )));
            }
            Err(err) => return Err(db_error(err)),
            Ok(_) => {}
        }
        insert_event(
            &mut tx,
            &monitor.workspace,
            &actor.name,
            monitor.created_at,
            &Change::MonitorCreated(MonitorChange {
                table_name: monitor.table_name.clone(),
                monitor_version: monitor.monitor_version,
                settings: settings_json(&monitor.settings)?,
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_monitor(&self, table_id: &str) -> Result<Monitor> {
        monitor_in(&self.read, table_id).await
    }

    async fn list_monitors(&self) -> Result<Vec<Monitor>> {
        let rows = db::query("SELECT * FROM table_monitors ORDER BY table_name")
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(row_monitor)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn update_monitor(
        &self,
        table_id: &str,
        settings: &MonitorSettings,
        now: i64,
        actor: &Actor,
    ) -> Result<Monitor> {
        let mut tx = self.begin().await?;
        let updated = db::query(
            "UPDATE table_monitors SET settings = $1, monitor_version = monitor_version + 1, \
             updated_at = $2 WHERE table_id = $3",
        )
        .bind(json_text(settings)?)
        .bind(now)
        .bind(table_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(monitor_not_found(table_id));
        }
        let monitor = monitor_in(&mut *tx, table_id).await?;
        insert_event(
            &mut tx,
            &monitor.workspace,
            &actor.name,
            now,
            &Change::MonitorUpdated(MonitorChange {
                table_name: monitor.table_name.clone(),
                monitor_version: monitor.monitor_version,
                settings: settings_json(&monitor.settings)?,
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(monitor)
    }

    async fn set_monitor_status(
        &self,
        table_id: &str,
        status: MonitorStatus,
        failure: Option<&str>,
    ) -> Result<()> {
        db::query("UPDATE table_monitors SET status = $1, latest_failure = $2 WHERE table_id = $3")
            .bind(status.as_str())
            .bind(failure)
            .bind(table_id)
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_monitor(&self, table_id: &str, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let monitor = monitor_in(&mut *tx, table_id).await?;
        db::query("DELETE FROM monitor_refreshes WHERE table_id = $1")
            .bind(table_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        db::query("DELETE FROM table_monitors WHERE table_id = $1")
            .bind(table_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_event(
            &mut tx,
            &monitor.workspace,
            &actor.name,
            tarn_core::ids::now_millis(),
            &Change::MonitorDeleted {
                table_name: monitor.table_name,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn create_refresh(
        &self,
        table_id: &str,
        trigger: RefreshTrigger,
        now: i64,
    ) -> Result<Refresh> {
        let mut tx = self.begin().await?;
        monitor_in(&mut *tx, table_id).await?;
        let active: Option<i64> = db::query_scalar(
            "SELECT refresh_id FROM monitor_refreshes WHERE table_id = $1 \
             AND state IN ('PENDING', 'RUNNING') LIMIT 1",
        )
        .bind(table_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(active) = active {
            return Err(Error::new(
                ErrorCode::ResourceConflict,
                format!(
                    "Refresh {active} of this monitor is still in progress: wait for it or cancel it"
                ),
            ));
        }
        let row = db::query(
            "INSERT INTO monitor_refreshes (table_id, state, trigger_kind, start_time_ms) \
             VALUES ($1, 'PENDING', $2, $3) RETURNING *",
        )
        .bind(table_id)
        .bind(trigger.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let refresh = row_refresh(&row).map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(refresh)
    }

    async fn get_refresh(&self, table_id: &str, refresh_id: i64) -> Result<Refresh> {
        let row =
            db::query("SELECT * FROM monitor_refreshes WHERE table_id = $1 AND refresh_id = $2")
                .bind(table_id)
                .bind(refresh_id)
                .fetch_optional(&self.read)
                .await
                .map_err(db_error)?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "Refresh {refresh_id} of this monitor does not exist."
                    ))
                })?;
        row_refresh(&row).map_err(db_error)
    }

    async fn list_refreshes(&self, table_id: &str, limit: u64) -> Result<Vec<Refresh>> {
        let rows = db::query(
            "SELECT * FROM monitor_refreshes WHERE table_id = $1 ORDER BY refresh_id DESC LIMIT $2",
        )
        .bind(table_id)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(row_refresh)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn transition_refresh(
        &self,
        table_id: &str,
        refresh_id: i64,
        from: &[RefreshState],
        to: RefreshState,
        now: i64,
        end: &RefreshEnd,
    ) -> Result<bool> {
        let mut builder = Builder::new("UPDATE monitor_refreshes SET state = ");
        builder.push_bind(to.as_str());
        if !to.is_active() {
            builder.push(", end_time_ms = ");
            builder.push_bind(now);
            builder.push(", message = ");
            builder.push_bind(end.message.clone());
        }
        if let Some(versions) = end.versions {
            builder.push(", source_version = ");
            builder.push_bind(versions.source);
            builder.push(", baseline_version = ");
            builder.push_bind(versions.baseline);
            builder.push(", monitor_version = ");
            builder.push_bind(versions.monitor);
        }
        builder.push(" WHERE table_id = ");
        builder.push_bind(table_id.to_string());
        builder.push(" AND refresh_id = ");
        builder.push_bind(refresh_id);
        builder.push(" AND state IN ");
        push_in_list(&mut builder, from.iter().map(|state| state.as_str()));
        let updated = builder
            .build()
            .execute(&self.write)
            .await
            .map_err(db_error)?;
        Ok(updated.rows_affected() > 0)
    }

    async fn last_successful_refresh(&self, table_id: &str) -> Result<Option<Refresh>> {
        let row = db::query(
            "SELECT * FROM monitor_refreshes WHERE table_id = $1 AND state = 'SUCCESS' \
             ORDER BY refresh_id DESC LIMIT 1",
        )
        .bind(table_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        row.map(|row| row_refresh(&row))
            .transpose()
            .map_err(db_error)
    }

    async fn beat_refresh(&self, table_id: &str, refresh_id: i64, now: i64) -> Result<()> {
        db::query(
            "UPDATE monitor_refreshes SET heartbeat_at = $1 WHERE table_id = $2 \
             AND refresh_id = $3 AND state IN ('PENDING', 'RUNNING')",
        )
        .bind(now)
        .bind(table_id)
        .bind(refresh_id)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn stalled_refreshes(&self, silent_since: i64) -> Result<Vec<(String, Refresh)>> {
        let rows = db::query(
            "SELECT * FROM monitor_refreshes WHERE state IN ('PENDING', 'RUNNING') \
             AND COALESCE(heartbeat_at, start_time_ms) < $1 ORDER BY refresh_id",
        )
        .bind(silent_since)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| Ok((row.try_get("table_id")?, row_refresh(row)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(db_error)
    }
}
