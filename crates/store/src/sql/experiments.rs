//! Experiments: create, rename, delete and restore, tags, and search.

use super::*;

#[async_trait]
impl ExperimentStore for Store {
    async fn create_experiment(
        &self,
        workspace: &str,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
        owner_id: i64,
    ) -> Result<String> {
        let mut tx = self.begin().await?;
        let experiment_id: i64 = db::query_scalar(
            "UPDATE workspaces SET next_experiment_id = next_experiment_id + 1 WHERE name = $1 RETURNING next_experiment_id - 1",
        )
        .bind(workspace)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(format!("Workspace '{workspace}' does not exist")))?;
        let location = artifact_location
            .map(str::to_string)
            .unwrap_or_else(|| format!("mlflow-artifacts:/{experiment_id}"));
        insert_experiment(
            &mut tx,
            workspace,
            experiment_id,
            name,
            &location,
            Some(owner_id),
        )
        .await?;
        for tag in tags {
            upsert_experiment_tag(&mut tx, workspace, experiment_id, tag).await?;
        }
        // The creator manages what it creates.
        db::query("INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES ($1, $2, $3, $4, $5)")
            .bind(workspace)
            .bind(ObjectType::Experiment.as_str())
            .bind(experiment_id.to_string())
            .bind(owner_id)
            .bind(PermissionLevel::CanManage.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(experiment_id.to_string())
    }

    async fn get_experiment(&self, workspace: &str, experiment_id: i64) -> Result<Experiment> {
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        Ok(self
            .with_experiment_tags(workspace, vec![experiment])
            .await?
            .remove(0))
    }

    async fn experiment_exists(&self, workspace: &str, experiment_id: i64) -> Result<bool> {
        let key = (workspace.to_string(), experiment_id);
        if self
            .known_experiments
            .lock()
            .is_ok_and(|known| known.contains(&key))
        {
            return Ok(true);
        }
        let found: Option<i64> = db::query_scalar(
            "SELECT experiment_id FROM experiments WHERE workspace = $1 AND experiment_id = $2",
        )
        .bind(workspace)
        .bind(experiment_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        if found.is_some()
            && let Ok(mut known) = self.known_experiments.lock()
        {
            if known.len() >= RUN_EXPERIMENT_CACHE_MAX {
                known.clear();
            }
            known.insert(key);
        }
        Ok(found.is_some())
    }

    async fn get_experiment_by_name(&self, workspace: &str, name: &str) -> Result<Experiment> {
        let row = db::query("SELECT * FROM experiments WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                Error::not_found(format!("Could not find experiment with name '{name}'"))
            })?;
        let experiment = row_experiment(&row).map_err(db_error)?;
        Ok(self
            .with_experiment_tags(workspace, vec![experiment])
            .await?
            .remove(0))
    }

    async fn search_experiments(
        &self,
        workspace: &str,
        query: &SearchExperiments,
    ) -> Result<Page<Experiment>> {
        let mut builder = Builder::new("SELECT e.* FROM experiments e WHERE e.workspace = ");
        builder.push_bind(workspace.to_string());
        builder.push(" AND e.lifecycle_stage");
        builder.push(lifecycle_condition(query.view_type));
        for comparison in &query.filter {
            builder.push(" AND ");
            match comparison.entity {
                Entity::Tag => push_key_value_condition(
                    &mut builder,
                    "experiment_tags",
                    "kv.workspace = e.workspace AND kv.experiment_id = e.experiment_id",
                    comparison,
                )?,
                Entity::Attribute => match comparison.key.as_str() {
                    "name" => push_comparison(&mut builder, "e.name", comparison)?,
                    "experiment_id" => push_experiment_id_comparison(&mut builder, comparison)?,
                    "creation_time" => {
                        push_numeric_comparison(&mut builder, "e.creation_time", comparison)?
                    }
                    "last_update_time" => {
                        push_numeric_comparison(&mut builder, "e.last_update_time", comparison)?
                    }
                    other => {
                        return Err(Error::invalid(format!(
                            "Invalid attribute key '{other}' specified."
                        )));
                    }
                },
                _ => {
                    return Err(Error::invalid(
                        "Invalid entity type for an experiment search filter",
                    ));
                }
            }
        }
        if let Some(readable) = &query.readable_by {
            builder.push(" AND EXISTS (SELECT 1 FROM acl a WHERE a.workspace = e.workspace AND a.object_type = ");
            builder.push_bind(ObjectType::Experiment.as_str());
            builder.push(" AND a.object_id = CAST(e.experiment_id AS TEXT) AND a.principal_id IN ");
            push_in_list(&mut builder, readable.grantee_ids.iter().copied());
            builder.push(")");
        }
        builder.push(" ORDER BY ");
        for order in &query.order_by {
            let column = match order.key.as_str() {
                "name" => format!("e.name{}", collate()),
                "experiment_id" => "e.experiment_id".to_string(),
                "creation_time" => "e.creation_time".to_string(),
                "last_update_time" => "e.last_update_time".to_string(),
                other => return Err(Error::invalid(format!("Invalid order_by key '{other}'"))),
            };
            builder.push(format!(
                "{column} {}, ",
                if order.ascending { "ASC" } else { "DESC" }
            ));
        }
        builder.push("e.creation_time DESC, e.experiment_id ASC");
        let page = self
            .read_page(
                &mut builder,
                row_experiment,
                query.max_results,
                query.offset,
            )
            .await?;
        Ok(Page {
            items: self.with_experiment_tags(workspace, page.items).await?,
            next_offset: page.next_offset,
        })
    }

    async fn rename_experiment(
        &self,
        workspace: &str,
        experiment_id: i64,
        new_name: &str,
    ) -> Result<()> {
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid("Cannot rename a non-active experiment."));
        }
        let result = db::query("UPDATE experiments SET name = $1, last_update_time = $2 WHERE workspace = $3 AND experiment_id = $4")
            .bind(new_name)
            .bind(now_millis())
            .bind(workspace)
            .bind(experiment_id)
            .execute(&self.write)
            .await;
        match result {
            Err(err) if is_unique_violation(&err) => Err(Error::already_exists(format!(
                "Experiment(name={new_name}) already exists."
            ))),
            Err(err) => Err(db_error(err)),
            Ok(_) => Ok(()),
        }
    }

    async fn delete_experiment(&self, workspace: &str, experiment_id: i64) -> Result<()> {
        set_experiment_stage(self, workspace, experiment_id, LifecycleStage::Deleted).await
    }

    async fn restore_experiment(&self, workspace: &str, experiment_id: i64) -> Result<()> {
        set_experiment_stage(self, workspace, experiment_id, LifecycleStage::Active).await
    }

    async fn set_experiment_tag(
        &self,
        workspace: &str,
        experiment_id: i64,
        tag: &KeyValue,
    ) -> Result<()> {
        let experiment = self.experiment_row(workspace, experiment_id).await?;
        if experiment.lifecycle_stage != LifecycleStage::Active {
            return Err(Error::invalid(format!(
                "The experiment {experiment_id} must be in the 'active' state. Current state is deleted."
            )));
        }
        let mut tx = self.begin().await?;
        upsert_experiment_tag(&mut tx, workspace, experiment_id, tag).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_experiment_tag(
        &self,
        workspace: &str,
        experiment_id: i64,
        key: &str,
    ) -> Result<()> {
        self.experiment_row(workspace, experiment_id).await?;
        let result = db::query(
            "DELETE FROM experiment_tags WHERE workspace = $1 AND experiment_id = $2 AND key = $3",
        )
        .bind(workspace)
        .bind(experiment_id)
        .bind(key)
        .execute(&self.write)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in experiment with id {experiment_id}"
            )));
        }
        Ok(())
    }
}

pub(super) fn push_experiment_id_comparison(
    builder: &mut Builder,
    comparison: &Comparison,
) -> Result<()> {
    let parse = |text: &str| {
        text.parse::<i64>()
            .map_err(|_| Error::invalid(format!("Invalid experiment ID '{text}'")))
    };
    match (&comparison.comparator, &comparison.value) {
        (Comparator::In | Comparator::NotIn, Value::List(items)) => {
            let ids = items
                .iter()
                .map(|i| parse(i))
                .collect::<Result<Vec<i64>>>()?;
            if ids.is_empty() {
                builder.push(if comparison.comparator == Comparator::In {
                    "1 = 0"
                } else {
                    "1 = 1"
                });
                return Ok(());
            }
            builder.push(if comparison.comparator == Comparator::In {
                "e.experiment_id IN "
            } else {
                "e.experiment_id NOT IN "
            });
            push_in_list(builder, ids);
            Ok(())
        }
        (Comparator::Eq | Comparator::Ne, Value::Str(text)) => {
            builder.push(if comparison.comparator == Comparator::Eq {
                "e.experiment_id = "
            } else {
                "e.experiment_id <> "
            });
            builder.push_bind(parse(text)?);
            Ok(())
        }
        (Comparator::Eq | Comparator::Ne, Value::Number(number)) => {
            builder.push(if comparison.comparator == Comparator::Eq {
                "e.experiment_id = "
            } else {
                "e.experiment_id <> "
            });
            builder.push_bind(*number);
            Ok(())
        }
        _ => Err(Error::invalid("experiment_id supports =, != and IN")),
    }
}

pub(super) async fn insert_experiment(
    tx: &mut Tx<'_>,
    workspace: &str,
    experiment_id: i64,
    name: &str,
    location: &str,
    owner_id: Option<i64>,
) -> Result<()> {
    let now = now_millis();
    let result = db::query(
        "INSERT INTO experiments (workspace, experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time, owner_id) \
         VALUES ($1, $2, $3, $4, 'active', $5, $5, $6)",
    )
    .bind(workspace)
    .bind(experiment_id)
    .bind(name)
    .bind(location)
    .bind(now)
    .bind(owner_id)
    .execute(&mut **tx)
    .await;
    match result {
        Err(err) if is_unique_violation(&err) => Err(Error::already_exists(format!(
            "Experiment(name={name}) already exists."
        ))),
        Err(err) => Err(db_error(err)),
        Ok(_) => Ok(()),
    }
}

pub(super) async fn upsert_experiment_tag(
    tx: &mut Tx<'_>,
    workspace: &str,
    experiment_id: i64,
    tag: &KeyValue,
) -> Result<()> {
    db::query(
        "INSERT INTO experiment_tags (workspace, experiment_id, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace, experiment_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(workspace)
    .bind(experiment_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(super) async fn set_experiment_stage(
    store: &Store,
    workspace: &str,
    experiment_id: i64,
    stage: LifecycleStage,
) -> Result<()> {
    let experiment = store.experiment_row(workspace, experiment_id).await?;
    if stage == LifecycleStage::Deleted && experiment_id == 0 {
        return Err(Error::invalid(
            "Cannot delete the default experiment '0'. This is an internally reserved experiment.",
        ));
    }
    let from = if stage == LifecycleStage::Deleted {
        LifecycleStage::Active
    } else {
        LifecycleStage::Deleted
    };
    if experiment.lifecycle_stage != from {
        return Err(Error::invalid(format!(
            "Cannot {} experiment {experiment_id}: it is {}.",
            if stage == LifecycleStage::Deleted {
                "delete"
            } else {
                "restore"
            },
            experiment.lifecycle_stage.as_str()
        )));
    }
    let now = now_millis();
    let mut tx = store.begin().await?;
    db::query("UPDATE experiments SET lifecycle_stage = $1, last_update_time = $2 WHERE workspace = $3 AND experiment_id = $4")
        .bind(stage.as_str())
        .bind(now)
        .bind(workspace)
        .bind(experiment_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    // Runs follow their experiment, as in MLflow.
    db::query("UPDATE runs SET lifecycle_stage = $1, deleted_time = $2 WHERE workspace = $3 AND experiment_id = $4 AND lifecycle_stage = $5")
        .bind(stage.as_str())
        .bind((stage == LifecycleStage::Deleted).then_some(now))
        .bind(workspace)
        .bind(experiment_id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}
