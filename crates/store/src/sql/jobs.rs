//! Jobs. The creator owns what it creates (IS_OWNER); every change is an event in the log, in
//! the change's transaction. The settings are stored as sent; their checks are tarn-jobs'.

use super::*;
use tarn_core::jobs::Job;

pub(super) fn row_job(row: &db::DbRow) -> std::result::Result<Job, sqlx::Error> {
    Ok(Job {
        job_id: row.try_get("job_id")?,
        workspace: row.try_get("workspace")?,
        creator_user_name: row.try_get("creator")?,
        run_as_user_name: row.try_get("run_as")?,
        settings: decode_json(row, "settings")?,
        created_time: row.try_get("created_time")?,
    })
}

pub(super) fn job_not_found(job_id: i64) -> Error {
    Error::not_found(format!("Job {job_id} does not exist."))
}

fn job_change(job: &Job) -> event::JobChange {
    event::JobChange {
        job_id: job.job_id,
        name: job.name().to_string(),
        settings: job.settings.clone(),
    }
}

/// The job `job_id` of `workspace`, read through `executor` (the reader pool, or the write
/// transaction that changes it).
async fn job_in<'e, E>(executor: E, workspace: &str, job_id: i64) -> Result<Job>
where
    E: db::Executor<'e>,
{
    let row = db::query("SELECT * FROM jobs WHERE workspace = $1 AND job_id = $2")
        .bind(workspace)
        .bind(job_id)
        .fetch_optional(executor)
        .await
        .map_err(db_error)?
        .ok_or_else(|| job_not_found(job_id))?;
    row_job(&row).map_err(db_error)
}

#[async_trait]
impl JobStore for Store {
    async fn create_job(
        &self,
        workspace: &str,
        settings: &serde_json::Value,
        run_as: &str,
        now: i64,
        actor: &Actor,
    ) -> Result<Job> {
        let mut tx = self.begin().await?;
        let inserted: std::result::Result<i64, sqlx::Error> = db::query_scalar(
            "INSERT INTO jobs (workspace, name, creator, run_as, settings, created_time, \
             last_updated_time) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING job_id",
        )
        .bind(workspace)
        .bind(tarn_core::jobs::name_in(settings))
        .bind(&actor.name)
        .bind(run_as)
        .bind(json_text(settings)?)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let job_id = match inserted {
            Ok(job_id) => job_id,
            Err(err) if is_foreign_key_violation(&err) => {
                return Err(Error::not_found(format!(
                    "Workspace '{workspace}' does not exist"
                )));
            }
            Err(err) => return Err(db_error(err)),
        };
        let job = Job {
            job_id,
            workspace: workspace.to_string(),
            creator_user_name: actor.name.clone(),
            run_as_user_name: run_as.to_string(),
            settings: settings.clone(),
            created_time: now,
        };
        grant_creator(
            &mut tx,
            workspace,
            ObjectType::Job,
            &job_id.to_string(),
            actor.id,
        )
        .await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::JobCreated(job_change(&job)),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(job)
    }

    async fn get_job(&self, workspace: &str, job_id: i64) -> Result<Job> {
        job_in(&self.read, workspace, job_id).await
    }

    async fn list_jobs(
        &self,
        workspace: &str,
        name: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Job>> {
        let mut builder = Builder::new("SELECT * FROM jobs WHERE workspace = ");
        builder.push_bind(workspace.to_string());
        if let Some(name) = name {
            builder.push(" AND lower(name) = lower(");
            builder.push_bind(name.to_string());
            builder.push(")");
        }
        builder.push(" ORDER BY job_id");
        self.read_page(&mut builder, row_job, limit, offset).await
    }

    async fn replace_job_settings(
        &self,
        workspace: &str,
        job_id: i64,
        settings: &serde_json::Value,
        run_as: &str,
        actor: &Actor,
    ) -> Result<Job> {
        let mut tx = self.begin().await?;
        let mut job = job_in(&mut *tx, workspace, job_id).await?;
        let now = tarn_core::ids::now_millis();
        db::query(
            "UPDATE jobs SET name = $1, run_as = $2, settings = $3, last_updated_time = $4 \
             WHERE job_id = $5",
        )
        .bind(tarn_core::jobs::name_in(settings))
        .bind(run_as)
        .bind(json_text(settings)?)
        .bind(now)
        .bind(job_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        job.settings = settings.clone();
        job.run_as_user_name = run_as.to_string();
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::JobUpdated(job_change(&job)),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(job)
    }

    async fn delete_job(&self, workspace: &str, job_id: i64, actor: &Actor) -> Result<()> {
        let mut tx = self.begin().await?;
        let job = job_in(&mut *tx, workspace, job_id).await?;
        db::query("DELETE FROM jobs WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        delete_grants(&mut tx, workspace, ObjectType::Job, &job_id.to_string()).await?;
        db::query("DELETE FROM job_trigger_states WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            tarn_core::ids::now_millis(),
            &Change::JobDeleted {
                job_id,
                name: job.name().to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }
}
