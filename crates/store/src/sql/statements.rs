//! SQL statements' state, so any replica answers a poll, a fetch or a cancel for a statement
//! another one runs.

use super::*;
use tarn_core::store::StatementRecord;

fn row_statement(row: &db::DbRow) -> std::result::Result<StatementRecord, sqlx::Error> {
    let outcome: Option<String> = row.try_get("outcome")?;
    Ok(StatementRecord {
        id: row.try_get("id")?,
        workspace: row.try_get("workspace")?,
        owner_id: row.try_get("owner_id")?,
        server: row.try_get("server")?,
        state: row.try_get("state")?,
        outcome: match outcome {
            Some(_) => Some(decode_json(row, "outcome")?),
            None => None,
        },
        cancel_requested: row.try_get("cancel_requested")?,
        submitted_at: row.try_get("submitted_at")?,
        seen_at: row.try_get("seen_at")?,
    })
}

#[async_trait]
impl StatementStore for Store {
    async fn create_statement(&self, statement: &StatementRecord) -> Result<()> {
        let outcome = statement.outcome.as_ref().map(json_text).transpose()?;
        db::query(
            "INSERT INTO sql_statements (id, workspace, owner_id, server, state, outcome, \
             cancel_requested, submitted_at, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&statement.id)
        .bind(&statement.workspace)
        .bind(statement.owner_id)
        .bind(&statement.server)
        .bind(&statement.state)
        .bind(outcome)
        .bind(statement.cancel_requested)
        .bind(statement.submitted_at)
        .bind(statement.seen_at)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn get_statement(&self, id: &str) -> Result<Option<StatementRecord>> {
        let row = db::query("SELECT * FROM sql_statements WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref()
            .map(row_statement)
            .transpose()
            .map_err(db_error)
    }

    async fn end_statement(
        &self,
        id: &str,
        state: &str,
        outcome: &serde_json::Value,
        now: i64,
    ) -> Result<bool> {
        let ended = db::query(
            "UPDATE sql_statements SET state = $2, outcome = $3, ended_at = $4, seen_at = $4 \
             WHERE id = $1 AND state = 'RUNNING'",
        )
        .bind(id)
        .bind(state)
        .bind(json_text(outcome)?)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(ended.rows_affected() == 1)
    }

    async fn request_statement_cancel(&self, id: &str) -> Result<()> {
        db::query(
            "UPDATE sql_statements SET cancel_requested = TRUE WHERE id = $1 AND state = 'RUNNING'",
        )
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn touch_statements(&self, server: &str, now: i64) -> Result<Vec<String>> {
        let touched: Vec<(String, bool)> = db::query_as(
            "UPDATE sql_statements SET seen_at = $2 WHERE server = $1 AND state = 'RUNNING' \
             RETURNING id, cancel_requested",
        )
        .bind(server)
        .bind(now)
        .fetch_all(&self.write)
        .await
        .map_err(db_error)?;
        Ok(touched
            .into_iter()
            .filter_map(|(id, cancel)| cancel.then_some(id))
            .collect())
    }

    async fn delete_statements_before(&self, before: i64) -> Result<Vec<String>> {
        db::query_scalar("DELETE FROM sql_statements WHERE submitted_at < $1 RETURNING id")
            .bind(before)
            .fetch_all(&self.write)
            .await
            .map_err(db_error)
    }
}
