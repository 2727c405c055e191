//! Runs of jobs and their task runs, in one table (one id space). The runner writes its
//! decisions and the executors their claims and ends, each naming the state it expects, so a
//! decision made on a stale read changes nothing; the cancel flag is the API's alone.

use super::*;
use tarn_core::jobs::{
    Iteration, JobRun, LifeCycle, RepairAttempt, RepairKind, ResultState, RunFilter, RunState,
    TaskOutput, TaskRun,
};

fn row_state(row: &db::DbRow) -> std::result::Result<RunState, sqlx::Error> {
    let result: Option<String> = row.try_get("result_state")?;
    let result = match result {
        None => None,
        Some(_) => Some(decode_with(row, "result_state", ResultState::parse)?),
    };
    Ok(RunState {
        life_cycle: decode_with(row, "life_cycle", LifeCycle::parse)?,
        result,
        message: row.try_get("state_message")?,
        user_cancelled_or_timedout: row.try_get("user_cancelled_or_timedout")?,
    })
}

fn decode_opt_json<T: serde::de::DeserializeOwned + Default>(
    row: &db::DbRow,
    column: &str,
) -> std::result::Result<T, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    match text {
        None => Ok(T::default()),
        Some(_) => decode_json(row, column),
    }
}

fn row_job_run(row: &db::DbRow) -> std::result::Result<JobRun, sqlx::Error> {
    Ok(JobRun {
        run_id: row.try_get("run_id")?,
        workspace: row.try_get("workspace")?,
        job_id: row.try_get("job_id")?,
        run_name: row.try_get("run_name")?,
        run_type: row.try_get("run_type")?,
        trigger: row.try_get("trigger_type")?,
        creator_user_name: row.try_get("creator")?,
        run_as_user_name: row.try_get("run_as")?,
        settings: decode_opt_json(row, "settings")?,
        job_parameters: decode_opt_json(row, "job_parameters")?,
        overriding_parameters: decode_opt_json(row, "overriding_parameters")?,
        state: row_state(row)?,
        cancel_requested: row.try_get("cancel_requested")?,
        created_time: row.try_get("created_time")?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        idempotency_token: row.try_get("idempotency_token")?,
        repair_history: decode_opt_json(row, "repair_history")?,
        tasks: Vec::new(),
    })
}

fn row_task_run(row: &db::DbRow) -> std::result::Result<TaskRun, sqlx::Error> {
    let values: Option<String> = row.try_get("task_values")?;
    Ok(TaskRun {
        run_id: row.try_get("run_id")?,
        job_run_id: row.try_get("job_run_id")?,
        task_key: row.try_get("task_key")?,
        attempt_number: row.try_get("attempt_number")?,
        state: row_state(row)?,
        start_time: row.try_get("start_time")?,
        end_time: row.try_get("end_time")?,
        not_before: row.try_get("not_before")?,
        worker: row.try_get("worker")?,
        lease_until: row.try_get("lease_until")?,
        process_group: row.try_get("process_group")?,
        outcome: row.try_get("outcome")?,
        values: match values {
            None => serde_json::Value::Object(Default::default()),
            Some(_) => decode_json(row, "task_values")?,
        },
        output: decode_opt_json::<TaskOutput>(row, "output")?,
        iteration: match row.try_get::<Option<i64>, _>("parent_run_id")? {
            None => None,
            Some(parent_run_id) => Some(Iteration {
                parent_run_id,
                index: row.try_get("iteration")?,
                input: row.try_get("iteration_input")?,
            }),
        },
    })
}

fn run_not_found(run_id: i64) -> Error {
    Error::not_found(format!("Run {run_id} does not exist."))
}

async fn insert_task<'e, E>(executor: E, workspace: &str, task: &TaskRun, now: i64) -> Result<i64>
where
    E: db::Executor<'e>,
{
    db::query_scalar(
        "INSERT INTO job_runs (workspace, job_run_id, task_key, attempt_number, life_cycle, \
         result_state, state_message, user_cancelled_or_timedout, start_time, end_time, \
         not_before, worker, lease_until, process_group, outcome, task_values, output, \
         created_time, parent_run_id, iteration, iteration_input) VALUES ($1, $2, $3, $4, $5, \
         $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
         RETURNING run_id",
    )
    .bind(workspace)
    .bind(task.job_run_id)
    .bind(&task.task_key)
    .bind(task.attempt_number)
    .bind(task.state.life_cycle.as_str())
    .bind(task.state.result.map(ResultState::as_str))
    .bind(&task.state.message)
    .bind(task.state.user_cancelled_or_timedout)
    .bind(task.start_time)
    .bind(task.end_time)
    .bind(task.not_before)
    .bind(task.worker.as_deref())
    .bind(task.lease_until)
    .bind(task.process_group)
    .bind(task.outcome.as_deref())
    .bind(json_text(&task.values)?)
    .bind(json_text(&task.output)?)
    .bind(now)
    .bind(
        task.iteration
            .as_ref()
            .map(|iteration| iteration.parent_run_id),
    )
    .bind(task.iteration.as_ref().map(|iteration| iteration.index))
    .bind(
        task.iteration
            .as_ref()
            .map(|iteration| iteration.input.as_str()),
    )
    .fetch_one(executor)
    .await
    .map_err(db_error)
}

impl Store {
    /// The task runs of the runs `run_ids`, in id order.
    async fn task_runs_of(&self, run_ids: &[i64]) -> Result<Vec<TaskRun>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut builder = Builder::new("SELECT * FROM job_runs WHERE job_run_id IN ");
        push_in_list(&mut builder, run_ids.iter().copied());
        builder.push(" ORDER BY run_id");
        self.read_all(&mut builder, row_task_run).await
    }

    async fn with_tasks(&self, mut runs: Vec<JobRun>) -> Result<Vec<JobRun>> {
        let ids: Vec<i64> = runs.iter().map(|run| run.run_id).collect();
        for task in self.task_runs_of(&ids).await? {
            if let Some(run) = runs.iter_mut().find(|run| run.run_id == task.job_run_id) {
                run.tasks.push(task);
            }
        }
        Ok(runs)
    }
}

#[async_trait]
impl JobRunStore for Store {
    async fn create_job_run(&self, run: &JobRun) -> Result<JobRun> {
        let mut tx = self.begin().await?;
        if let Some(token) = &run.idempotency_token {
            let existing: Option<i64> = db::query_scalar(
                "SELECT run_id FROM job_runs WHERE workspace = $1 AND idempotency_token = $2",
            )
            .bind(&run.workspace)
            .bind(token)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            if let Some(existing) = existing {
                drop(tx);
                return self.get_job_run(&run.workspace, existing).await;
            }
        }
        let inserted: std::result::Result<i64, sqlx::Error> = db::query_scalar(
            "INSERT INTO job_runs (workspace, job_id, run_name, run_type, trigger_type, creator, \
             run_as, settings, job_parameters, overriding_parameters, idempotency_token, \
             life_cycle, result_state, state_message, user_cancelled_or_timedout, created_time, \
             start_time, end_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18) RETURNING run_id",
        )
        .bind(&run.workspace)
        .bind(run.job_id)
        .bind(&run.run_name)
        .bind(&run.run_type)
        .bind(&run.trigger)
        .bind(&run.creator_user_name)
        .bind(&run.run_as_user_name)
        .bind(json_text(&run.settings)?)
        .bind(json_text(&run.job_parameters)?)
        .bind(json_text(&run.overriding_parameters)?)
        .bind(run.idempotency_token.as_deref())
        .bind(run.state.life_cycle.as_str())
        .bind(run.state.result.map(ResultState::as_str))
        .bind(&run.state.message)
        .bind(run.state.user_cancelled_or_timedout)
        .bind(run.created_time)
        .bind(run.start_time)
        .bind(run.end_time)
        .fetch_one(&mut *tx)
        .await;
        let run_id = match inserted {
            Ok(run_id) => run_id,
            Err(err) if is_foreign_key_violation(&err) => {
                return Err(Error::not_found(format!(
                    "Workspace '{}' does not exist",
                    run.workspace
                )));
            }
            Err(err) => return Err(db_error(err)),
        };
        let mut stored = run.clone();
        stored.run_id = run_id;
        for task in &mut stored.tasks {
            task.job_run_id = run_id;
            task.run_id = insert_task(&mut *tx, &run.workspace, task, run.created_time).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn get_job_run(&self, workspace: &str, run_id: i64) -> Result<JobRun> {
        let row = db::query(
            "SELECT * FROM job_runs WHERE workspace = $1 AND run_id = \
             (SELECT COALESCE(job_run_id, run_id) FROM job_runs WHERE run_id = $2)",
        )
        .bind(workspace)
        .bind(run_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        .ok_or_else(|| run_not_found(run_id))?;
        let run = row_job_run(&row).map_err(db_error)?;
        let mut runs = self.with_tasks(vec![run]).await?;
        runs.pop().ok_or_else(|| run_not_found(run_id))
    }

    async fn list_job_runs(
        &self,
        workspace: &str,
        filter: &RunFilter,
        with_tasks: bool,
        offset: u64,
        limit: u64,
    ) -> Result<Page<JobRun>> {
        let mut builder = Builder::new("SELECT * FROM job_runs WHERE job_run_id IS NULL");
        builder.push(" AND workspace = ");
        builder.push_bind(workspace.to_string());
        if let Some(job_id) = filter.job_id {
            builder.push(" AND job_id = ");
            builder.push_bind(job_id);
        }
        let ended = "('TERMINATED', 'SKIPPED', 'INTERNAL_ERROR')";
        if filter.active_only {
            builder.push(format!(" AND life_cycle NOT IN {ended}"));
        }
        if filter.completed_only {
            builder.push(format!(" AND life_cycle IN {ended}"));
        }
        if let Some(run_type) = &filter.run_type {
            builder.push(" AND run_type = ");
            builder.push_bind(run_type.clone());
        }
        if let Some(from) = filter.start_time_from {
            builder.push(" AND created_time >= ");
            builder.push_bind(from);
        }
        if let Some(to) = filter.start_time_to {
            builder.push(" AND created_time <= ");
            builder.push_bind(to);
        }
        builder.push(" ORDER BY run_id DESC");
        let page = self
            .read_page(&mut builder, row_job_run, limit, offset)
            .await?;
        if !with_tasks {
            return Ok(page);
        }
        Ok(Page {
            items: self.with_tasks(page.items).await?,
            next_offset: page.next_offset,
        })
    }

    async fn active_job_runs(&self) -> Result<Vec<JobRun>> {
        let mut builder = Builder::new(
            "SELECT * FROM job_runs WHERE job_run_id IS NULL AND life_cycle NOT IN \
             ('TERMINATED', 'SKIPPED', 'INTERNAL_ERROR') ORDER BY run_id",
        );
        let runs = self.read_all(&mut builder, row_job_run).await?;
        self.with_tasks(runs).await
    }

    async fn update_job_run(&self, run: &JobRun, event: Option<&Change>) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some(event) = event {
            insert_event(
                &mut tx,
                &run.workspace,
                &run.creator_user_name,
                now_millis(),
                event,
            )
            .await?;
        }
        db::query(
            "UPDATE job_runs SET life_cycle = $1, result_state = $2, state_message = $3, \
             user_cancelled_or_timedout = $4, start_time = $5, end_time = $6 \
             WHERE run_id = $7 AND job_run_id IS NULL",
        )
        .bind(run.state.life_cycle.as_str())
        .bind(run.state.result.map(ResultState::as_str))
        .bind(&run.state.message)
        .bind(run.state.user_cancelled_or_timedout)
        .bind(run.start_time)
        .bind(run.end_time)
        .bind(run.run_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn update_task_runs(
        &self,
        changes: &[(&TaskRun, LifeCycle)],
        worker: Option<&str>,
    ) -> Result<Vec<bool>> {
        let mut tx = self.begin().await?;
        let mut written = Vec::with_capacity(changes.len());
        for (task, expected) in changes {
            let changed = db::query(
                "UPDATE job_runs SET life_cycle = $1, result_state = $2, state_message = $3, \
                 user_cancelled_or_timedout = $4, start_time = $5, end_time = $6, \
                 not_before = $7, worker = $8, lease_until = $9, process_group = $10, \
                 outcome = $11, task_values = $12, output = $13 WHERE run_id = $14 \
                 AND job_run_id IS NOT NULL AND life_cycle = $15 \
                 AND ($16 IS NULL OR worker = $16)",
            )
            .bind(task.state.life_cycle.as_str())
            .bind(task.state.result.map(ResultState::as_str))
            .bind(&task.state.message)
            .bind(task.state.user_cancelled_or_timedout)
            .bind(task.start_time)
            .bind(task.end_time)
            .bind(task.not_before)
            .bind(task.worker.as_deref())
            .bind(task.lease_until)
            .bind(task.process_group)
            .bind(task.outcome.as_deref())
            .bind(json_text(&task.values)?)
            .bind(json_text(&task.output)?)
            .bind(task.run_id)
            .bind(expected.as_str())
            .bind(worker)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            written.push(changed == 1);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(written)
    }

    async fn insert_task_run(&self, task: &TaskRun) -> Result<TaskRun> {
        let mut tx = self.begin().await?;
        let workspace: String =
            db::query_scalar("SELECT workspace FROM job_runs WHERE run_id = $1")
                .bind(task.job_run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?
                .ok_or_else(|| run_not_found(task.job_run_id))?;
        let mut stored = task.clone();
        stored.run_id = insert_task(&mut *tx, &workspace, task, now_millis()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn claim_task_run(
        &self,
        worker: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<(String, TaskRun)>> {
        let mut tx = self.begin().await?;
        // The inner pick may race another claimer on PostgreSQL; the outer condition makes
        // the loser claim nothing, and it asks again.
        let row = db::query(
            "UPDATE job_runs SET life_cycle = 'RUNNING', worker = $1, start_time = $2, \
             lease_until = $3 WHERE run_id = (SELECT run_id FROM job_runs WHERE \
             life_cycle = 'PENDING' AND job_run_id IS NOT NULL ORDER BY run_id LIMIT 1) \
             AND life_cycle = 'PENDING' RETURNING *",
        )
        .bind(worker)
        .bind(now)
        .bind(lease_until)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let workspace: String = row.try_get("workspace").map_err(db_error)?;
        Ok(Some((workspace, row_task_run(&row).map_err(db_error)?)))
    }

    async fn renew_task_runs(&self, worker: &str, lease_until: i64) -> Result<Vec<i64>> {
        let mut tx = self.begin().await?;
        db::query(
            "UPDATE job_runs SET lease_until = $1 WHERE worker = $2 AND life_cycle = 'RUNNING'",
        )
        .bind(lease_until)
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let cancelled: Vec<i64> = db::query_scalar(
            "SELECT t.run_id FROM job_runs t JOIN job_runs r ON r.run_id = t.job_run_id \
             WHERE t.worker = $1 AND t.life_cycle = 'RUNNING' AND r.cancel_requested",
        )
        .bind(worker)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(cancelled)
    }

    async fn request_job_run_cancel(
        &self,
        workspace: &str,
        run_id: Option<i64>,
        job_id: Option<i64>,
    ) -> Result<Vec<i64>> {
        let mut tx = self.begin().await?;
        let mut builder = Builder::new(
            "UPDATE job_runs SET cancel_requested = TRUE WHERE job_run_id IS NULL AND \
             life_cycle NOT IN ('TERMINATED', 'SKIPPED', 'INTERNAL_ERROR') AND workspace = ",
        );
        builder.push_bind(workspace.to_string());
        if let Some(run_id) = run_id {
            builder.push(" AND run_id = ");
            builder.push_bind(run_id);
        }
        if let Some(job_id) = job_id {
            builder.push(" AND job_id = ");
            builder.push_bind(job_id);
        }
        builder.push(" RETURNING run_id");
        let asked: Vec<i64> = builder
            .build_query_scalar()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(asked)
    }

    async fn repair_job_run(&self, run: &JobRun, rerun: &[TaskRun], now: i64) -> Result<JobRun> {
        let mut tx = self.begin().await?;
        let reopened = db::query(
            "UPDATE job_runs SET settings = $1, job_parameters = $2, overriding_parameters = $3, \
             life_cycle = 'PENDING', result_state = NULL, state_message = '', \
             user_cancelled_or_timedout = FALSE, cancel_requested = FALSE, end_time = 0 \
             WHERE workspace = $4 AND run_id = $5 AND job_run_id IS NULL \
             AND life_cycle IN ('TERMINATED', 'SKIPPED', 'INTERNAL_ERROR')",
        )
        .bind(json_text(&run.settings)?)
        .bind(json_text(&run.job_parameters)?)
        .bind(json_text(&run.overriding_parameters)?)
        .bind(&run.workspace)
        .bind(run.run_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if reopened != 1 {
            return Err(Error::invalid(format!(
                "Run {} is still active; it can be repaired once it has ended",
                run.run_id
            )));
        }
        let mut repaired = run.clone();
        repaired.state = RunState::new(LifeCycle::Pending);
        repaired.cancel_requested = false;
        repaired.end_time = 0;
        let mut ids = Vec::with_capacity(rerun.len());
        for task in rerun {
            let mut task = task.clone();
            task.job_run_id = run.run_id;
            task.run_id = insert_task(&mut *tx, &run.workspace, &task, now).await?;
            ids.push(task.run_id);
            repaired.tasks.push(task);
        }
        repaired.repair_history.push(RepairAttempt {
            kind: RepairKind::Repair,
            id: ids.first().copied().unwrap_or(run.run_id),
            start_time: now,
            end_time: 0,
            life_cycle_state: None,
            result_state: None,
            task_run_ids: ids,
        });
        db::query("UPDATE job_runs SET repair_history = $1 WHERE run_id = $2")
            .bind(json_text(&repaired.repair_history)?)
            .bind(run.run_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(repaired)
    }

    async fn delete_job_run(&self, workspace: &str, run_id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let life_cycle: Option<String> = db::query_scalar(
            "SELECT life_cycle FROM job_runs WHERE workspace = $1 AND run_id = $2 \
             AND job_run_id IS NULL",
        )
        .bind(workspace)
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let life_cycle = life_cycle.ok_or_else(|| run_not_found(run_id))?;
        if !LifeCycle::parse(&life_cycle).is_some_and(LifeCycle::is_terminal) {
            return Err(Error::invalid(format!(
                "Run {run_id} is still active ({life_cycle}); cancel it before deleting it"
            )));
        }
        db::query(
            "DELETE FROM job_task_logs WHERE task_run_id IN \
             (SELECT run_id FROM job_runs WHERE job_run_id = $1)",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        db::query("DELETE FROM job_runs WHERE job_run_id = $1 OR run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn hold_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let held: Option<String> = db::query_scalar(
            "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE leases.holder = excluded.holder OR leases.until < $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(held.is_some())
    }

    async fn trigger_states(&self) -> Result<Vec<(i64, serde_json::Value)>> {
        let rows: Vec<(i64, String)> =
            db::query_as("SELECT job_id, state FROM job_trigger_states ORDER BY job_id")
                .fetch_all(&self.read)
                .await
                .map_err(db_error)?;
        rows.into_iter()
            .map(|(job_id, state)| {
                serde_json::from_str(&state)
                    .map(|state| (job_id, state))
                    .map_err(|err| {
                        Error::internal_from("a stored trigger state does not decode", err)
                    })
            })
            .collect()
    }

    async fn save_trigger_state(&self, job_id: i64, state: &serde_json::Value) -> Result<()> {
        let mut tx = self.begin().await?;
        db::query(
            "INSERT INTO job_trigger_states (job_id, state) VALUES ($1, $2) \
             ON CONFLICT (job_id) DO UPDATE SET state = excluded.state",
        )
        .bind(job_id)
        .bind(json_text(state)?)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>> {
        db::query_as("SELECT holder, until FROM leases WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)
    }

    async fn shared_secret(&self, name: &str, candidate: &str, now: i64) -> Result<String> {
        let mut tx = self.begin().await?;
        // Two servers starting at once both insert: the second's candidate is dropped and
        // both read the first's.
        db::query(
            "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let kept: String = db::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(kept)
    }

    async fn append_task_log(&self, task_run_id: i64, offset: i64, data: &[u8]) -> Result<()> {
        db::query(
            "INSERT INTO job_task_logs (task_run_id, start_offset, end_offset, data) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (task_run_id, start_offset) DO NOTHING",
        )
        .bind(task_run_id)
        .bind(offset)
        .bind(offset + data.len() as i64)
        .bind(data)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn read_task_log(
        &self,
        task_run_id: i64,
        from: i64,
        limit: i64,
    ) -> Result<(Vec<u8>, i64)> {
        let length: Option<i64> =
            db::query_scalar("SELECT MAX(end_offset) FROM job_task_logs WHERE task_run_id = $1")
                .bind(task_run_id)
                .fetch_one(&self.read)
                .await
                .map_err(db_error)?;
        let length = length.unwrap_or(0);
        let until = from.saturating_add(limit.max(0)).min(length);
        let pieces: Vec<(i64, Vec<u8>)> = db::query_as(
            "SELECT start_offset, data FROM job_task_logs WHERE task_run_id = $1 \
             AND end_offset > $2 AND start_offset < $3 ORDER BY start_offset",
        )
        .bind(task_run_id)
        .bind(from)
        .bind(until)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        let mut text = Vec::with_capacity((until - from).max(0) as usize);
        for (start, data) in pieces {
            // Pieces are contiguous; a retried shipment may overlap what is taken already.
            let have = from + text.len() as i64;
            let skip = (have - start).max(0) as usize;
            let take = ((until - have).max(0) as usize).min(data.len().saturating_sub(skip));
            if skip < data.len() {
                text.extend_from_slice(&data[skip..skip + take]);
            }
        }
        Ok((text, length))
    }
}
