//! Serving endpoints. The creator manages what it creates; every change is an event in the log (the
//! audit trail), in the change's transaction.

use super::*;

pub(super) fn row_endpoint(row: &db::DbRow) -> std::result::Result<ServingEndpoint, sqlx::Error> {
    Ok(ServingEndpoint {
        id: row.try_get("id")?,
        workspace: row.try_get("workspace")?,
        name: row.try_get("name")?,
        creator: row.try_get("creator")?,
        creation_timestamp: row.try_get("creation_timestamp")?,
        last_updated_timestamp: row.try_get("last_updated_timestamp")?,
        config: decode_json(row, "config")?,
        config_version: row.try_get("config_version")?,
        tags: decode_json(row, "tags")?,
    })
}

pub(super) fn endpoint_not_found(name: &str) -> Error {
    Error::not_found(format!("Serving endpoint '{name}' does not exist."))
}

#[async_trait]
impl ServingStore for Store {
    async fn create_endpoint(&self, endpoint: &ServingEndpoint, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let inserted = db::query(
            "INSERT INTO serving_endpoints (id, workspace, name, creator, config, config_version, tags, \
             creation_timestamp, last_updated_timestamp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.workspace)
        .bind(&endpoint.name)
        .bind(&endpoint.creator)
        .bind(json_text(&endpoint.config)?)
        .bind(endpoint.config_version)
        .bind(json_text(&endpoint.tags)?)
        .bind(endpoint.creation_timestamp)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::already_exists(format!(
                    "Serving endpoint '{}' already exists.",
                    endpoint.name
                )));
            }
            Err(err) if is_foreign_key_violation(&err) => {
                return Err(Error::not_found(format!(
                    "Workspace '{}' does not exist",
                    endpoint.workspace
                )));
            }
            Err(err) => return Err(db_error(err)),
            Ok(_) => {}
        }
        grant_creator(
            &mut tx,
            &endpoint.workspace,
            ObjectType::ServingEndpoint,
            &endpoint.id,
            actor.id,
        )
        .await?;
        insert_event(
            &mut tx,
            &endpoint.workspace,
            &actor.name,
            endpoint.creation_timestamp,
            &Change::EndpointCreated(event::EndpointChange {
                id: endpoint.id.clone(),
                name: endpoint.name.clone(),
                config: endpoint.config.clone(),
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn get_endpoint(&self, workspace: &str, name: &str) -> Result<ServingEndpoint> {
        let row = db::query("SELECT * FROM serving_endpoints WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| endpoint_not_found(name))?;
        row_endpoint(&row).map_err(db_error)
    }

    async fn list_endpoints(&self, workspace: Option<&str>) -> Result<Vec<ServingEndpoint>> {
        let rows = match workspace {
            Some(workspace) => {
                db::query("SELECT * FROM serving_endpoints WHERE workspace = $1 ORDER BY name")
                    .bind(workspace)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                db::query("SELECT * FROM serving_endpoints ORDER BY workspace, name")
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(db_error)?;
        rows.iter()
            .map(row_endpoint)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn update_endpoint_config(
        &self,
        workspace: &str,
        name: &str,
        config: &EndpointConfig,
        now: i64,
        actor: &Actor,
    ) -> Result<ServingEndpoint> {
        let mut tx = self.begin().await?;
        let updated = db::query(
            "UPDATE serving_endpoints SET config = $1, config_version = config_version + 1, \
             last_updated_timestamp = $2 WHERE workspace = $3 AND name = $4",
        )
        .bind(json_text(config)?)
        .bind(now)
        .bind(workspace)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(endpoint_not_found(name));
        }
        let row = db::query("SELECT * FROM serving_endpoints WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let endpoint = row_endpoint(&row).map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::EndpointUpdated(event::EndpointChange {
                id: endpoint.id.clone(),
                name: name.to_string(),
                config: config.clone(),
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(endpoint)
    }

    async fn delete_endpoint(&self, workspace: &str, name: &str, actor: &Actor) -> Result<String> {
        let mut tx = self.begin().await?;
        let id: Option<String> =
            db::query_scalar("SELECT id FROM serving_endpoints WHERE workspace = $1 AND name = $2")
                .bind(workspace)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let id = id.ok_or_else(|| endpoint_not_found(name))?;
        db::query("DELETE FROM serving_endpoints WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        delete_grants(&mut tx, workspace, ObjectType::ServingEndpoint, &id).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            tarn_core::ids::now_millis(),
            &Change::EndpointDeleted {
                id: id.clone(),
                name: name.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(id)
    }
}
