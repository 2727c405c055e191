//! The model registry's SQL. Every change writes its event row in the same transaction
//! (`insert_event`), so the audit trail and the webhook outbox never miss or invent a change.

use super::*;

pub(super) const PROMPT_TAG: &str = "mlflow.prompt.is_prompt";

/// Tags and aliases of the version in `$table`, as two JSON-array columns, so one statement
/// reads versions whole: each statement, and each row, is a hand-off to the database driver.
macro_rules! version_extras {
    (sqlite, $table:literal) => {
        concat!(
            "(SELECT json_group_array(json_array(t.key, t.value)) FROM model_version_tags t \
             WHERE t.model_id = ", $table, ".model_id AND t.version = ", $table, ".version) AS tags_json, \
             (SELECT json_group_array(a.alias) FROM registered_model_aliases a \
             WHERE a.model_id = ", $table, ".model_id AND a.version = ", $table, ".version) AS aliases_json"
        )
    };
    (postgres, $table:literal) => {
        concat!(
            "(SELECT COALESCE(json_agg(json_build_array(t.key, t.value)), '[]')::text FROM model_version_tags t \
             WHERE t.model_id = ", $table, ".model_id AND t.version = ", $table, ".version) AS tags_json, \
             (SELECT COALESCE(json_agg(a.alias), '[]')::text FROM registered_model_aliases a \
             WHERE a.model_id = ", $table, ".model_id AND a.version = ", $table, ".version) AS aliases_json"
        )
    };
}

/// A version row as `row_model_version` reads it, from `model_versions mv` joined with
/// `registered_models rm`.
pub(super) const MODEL_VERSION_COLUMNS: &str = match DIALECT {
    Dialect::Sqlite => concat!(
        "mv.*, rm.name AS model_name, ",
        version_extras!(sqlite, "mv")
    ),
    Dialect::Postgres => concat!(
        "mv.*, rm.name AS model_name, ",
        version_extras!(postgres, "mv")
    ),
};

/// The same, returned by a statement that changes `model_versions`.
pub(super) const RETURNED_VERSION_EXTRAS: &str = match DIALECT {
    Dialect::Sqlite => version_extras!(sqlite, "model_versions"),
    Dialect::Postgres => version_extras!(postgres, "model_versions"),
};

pub(super) fn model_not_found(name: &str) -> Error {
    Error::not_found(format!("Registered Model with name={name} not found"))
}

pub(super) fn version_not_found(name: &str, version: i64) -> Error {
    Error::not_found(format!(
        "Model Version (name={name}, version={version}) not found"
    ))
}

pub(super) fn row_registered_model(
    row: &db::DbRow,
) -> std::result::Result<RegisteredModel, sqlx::Error> {
    Ok(RegisteredModel {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        creation_timestamp: row.try_get("creation_timestamp")?,
        last_updated_timestamp: row.try_get("last_updated_timestamp")?,
        user_id: row.try_get("user_id")?,
        description: row.try_get("description")?,
        latest_versions: Vec::new(),
        tags: Vec::new(),
        aliases: Vec::new(),
    })
}

pub(super) fn row_model_version(row: &db::DbRow) -> std::result::Result<ModelVersion, sqlx::Error> {
    Ok(ModelVersion {
        name: row.try_get("model_name")?,
        version: row.try_get("version")?,
        creation_timestamp: row.try_get("creation_timestamp")?,
        last_updated_timestamp: row.try_get("last_updated_timestamp")?,
        user_id: row.try_get("user_id")?,
        current_stage: decode_with(row, "current_stage", |v| Stage::parse(v).ok())?,
        description: row.try_get("description")?,
        source: row.try_get("source")?,
        run_id: row.try_get("run_id")?,
        status: decode_with(row, "status", VersionStatus::parse)?,
        status_message: row.try_get("status_message")?,
        tags: json_list::<(String, String)>(row, "tags_json")?
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        run_link: row.try_get("run_link")?,
        aliases: json_list(row, "aliases_json")?,
        model_id: row.try_get("logged_model_id")?,
        storage_location: row.try_get("storage_location")?,
        checksum: row.try_get("checksum")?,
        registered_model_id: row.try_get("model_id")?,
    })
}

/// A JSON-array column, sorted (whatever order the database aggregated it in).
pub(super) fn json_list<T>(
    row: &db::DbRow,
    column: &str,
) -> std::result::Result<Vec<T>, sqlx::Error>
where
    T: serde::de::DeserializeOwned + Ord,
{
    let text: String = row.try_get(column)?;
    let mut list: Vec<T> =
        serde_json::from_str(&text).map_err(|err| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: Box::new(err),
        })?;
    list.sort();
    Ok(list)
}

/// A version as the API returns it, read inside a write transaction.
pub(super) async fn version_row_in_tx(
    tx: &mut Tx<'_>,
    model_id: &str,
    version: i64,
) -> Result<ModelVersion> {
    let row = db::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MODEL_VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id \
         WHERE mv.model_id = $1 AND mv.version = $2"
    )))
    .bind(model_id)
    .bind(version)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    row_model_version(&row).map_err(db_error)
}

/// The id of a model, inside a transaction (so the row is locked on PostgreSQL).
pub(super) async fn model_id_in_tx(tx: &mut Tx<'_>, workspace: &str, name: &str) -> Result<String> {
    let lock = match DIALECT {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    db::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM registered_models WHERE workspace = $1 AND name = $2{lock}"
    )))
    .bind(workspace)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?
    .ok_or_else(|| model_not_found(name))
}

pub(super) async fn touch_model(tx: &mut Tx<'_>, model_id: &str, now: i64) -> Result<()> {
    db::query("UPDATE registered_models SET last_updated_timestamp = $1 WHERE id = $2")
        .bind(now)
        .bind(model_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Checks that the version exists (inside the transaction) and returns the model id.
pub(super) async fn version_in_tx(
    tx: &mut Tx<'_>,
    workspace: &str,
    name: &str,
    version: i64,
) -> Result<String> {
    let model_id = model_id_in_tx(tx, workspace, name).await?;
    let found: Option<i64> =
        db::query_scalar("SELECT version FROM model_versions WHERE model_id = $1 AND version = $2")
            .bind(&model_id)
            .bind(version)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?;
    found.ok_or_else(|| version_not_found(name, version))?;
    Ok(model_id)
}

pub(super) fn check_archive_existing(stage: Stage, archive_existing: bool) -> Result<()> {
    if archive_existing && !stage.is_active() {
        return Err(Error::invalid(format!(
            "Model version transition cannot archive existing model versions because '{}' \
             is not an Active stage. Valid stages are ['Staging', 'Production']",
            stage.as_str()
        )));
    }
    Ok(())
}

pub(super) async fn current_stage(tx: &mut Tx<'_>, model_id: &str, version: i64) -> Result<Stage> {
    let stage: String = db::query_scalar(
        "SELECT current_stage FROM model_versions WHERE model_id = $1 AND version = $2",
    )
    .bind(model_id)
    .bind(version)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    Stage::parse(&stage)
}

pub(super) struct NewActivity<'a> {
    model_id: &'a str,
    version: i64,
    activity: ActivityType,
    from_stage: Option<Stage>,
    to_stage: Option<Stage>,
    user: &'a str,
    comment: &'a str,
    system_comment: &'a str,
    request_open: bool,
    now: i64,
}

pub(super) async fn insert_activity(tx: &mut Tx<'_>, new: &NewActivity<'_>) -> Result<i64> {
    db::query_scalar(
        "INSERT INTO model_version_activities (model_id, version, activity_type, from_stage, to_stage, user_id, comment, \
         system_comment, request_status, creation_timestamp, last_updated_timestamp) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    )
    .bind(new.model_id)
    .bind(new.version)
    .bind(new.activity.as_str())
    .bind(new.from_stage.map(Stage::as_str))
    .bind(new.to_stage.map(Stage::as_str))
    .bind(new.user)
    .bind(new.comment)
    .bind(new.system_comment)
    .bind(new.request_open.then_some("open"))
    .bind(new.now)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)
}

/// A stage change, direct or by an approved request.
pub(super) struct Transition<'a> {
    workspace: &'a str,
    model_id: &'a str,
    name: &'a str,
    version: i64,
    /// The stage the version is in now (read in the same transaction).
    from: Stage,
    stage: Stage,
    archive_existing: bool,
    activity: ActivityType,
    comment: &'a str,
    actor: &'a Actor,
    now: i64,
}

/// Moves the version (archiving the stage's other versions if asked), records the activities
/// and events; returns the id of the version's activity and the moved version.
pub(super) async fn apply_transition(
    tx: &mut Tx<'_>,
    change: &Transition<'_>,
) -> Result<(i64, ModelVersion)> {
    let from = change.from;
    let archived: Vec<i64> = if change.archive_existing {
        db::query_scalar(
            "UPDATE model_versions SET current_stage = $1, last_updated_timestamp = $2 \
             WHERE model_id = $3 AND version <> $4 AND current_stage = $5 RETURNING version",
        )
        .bind(Stage::Archived.as_str())
        .bind(change.now)
        .bind(change.model_id)
        .bind(change.version)
        .bind(change.stage.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?
    } else {
        Vec::new()
    };
    // The moved version comes back from the UPDATE itself: one statement fewer per transition.
    let moved = db::query(sqlx::AssertSqlSafe(format!(
        "UPDATE model_versions SET current_stage = $1, last_updated_timestamp = $2 WHERE model_id = $3 AND version = $4 \
         RETURNING *, $5 AS model_name, {RETURNED_VERSION_EXTRAS}"
    )))
    .bind(change.stage.as_str())
    .bind(change.now)
    .bind(change.model_id)
    .bind(change.version)
    .bind(change.name)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_error)?;
    let moved = row_model_version(&moved).map_err(db_error)?;
    touch_model(tx, change.model_id, change.now).await?;
    let activity_id = insert_activity(
        tx,
        &NewActivity {
            model_id: change.model_id,
            version: change.version,
            activity: change.activity,
            from_stage: Some(from),
            to_stage: Some(change.stage),
            user: &change.actor.name,
            comment: change.comment,
            system_comment: "",
            request_open: false,
            now: change.now,
        },
    )
    .await?;
    let system_comment = format!(
        "Archived because version {} moved to {}",
        change.version,
        change.stage.as_str()
    );
    for other in &archived {
        insert_activity(
            tx,
            &NewActivity {
                model_id: change.model_id,
                version: *other,
                activity: ActivityType::SystemTransition,
                from_stage: Some(change.stage),
                to_stage: Some(Stage::Archived),
                user: &change.actor.name,
                comment: "",
                system_comment: &system_comment,
                request_open: false,
                now: change.now,
            },
        )
        .await?;
    }
    let transitions = std::iter::once((change.version, from, change.stage, false)).chain(
        archived
            .iter()
            .map(|v| (*v, change.stage, Stage::Archived, true)),
    );
    for (changed, from_stage, to_stage, by_system) in transitions {
        insert_event(
            tx,
            change.workspace,
            &change.actor.name,
            change.now,
            &Change::StageTransitioned {
                name: change.name.to_string(),
                version: changed,
                from_stage,
                to_stage,
                system: by_system,
                comment: change.comment.to_string(),
            },
        )
        .await?;
    }
    Ok((activity_id, moved))
}

pub(super) fn row_activity(row: &db::DbRow) -> std::result::Result<Activity, sqlx::Error> {
    let stage = |column: &str| -> std::result::Result<Option<Stage>, sqlx::Error> {
        let value: Option<String> = row.try_get(column)?;
        value
            .map(|v| {
                Stage::parse(&v).map_err(|_| sqlx::Error::ColumnDecode {
                    index: column.to_string(),
                    source: format!("unknown stored value {v:?}").into(),
                })
            })
            .transpose()
    };
    let status: Option<String> = row.try_get("request_status")?;
    Ok(Activity {
        id: row.try_get("id")?,
        activity_type: decode_with(row, "activity_type", ActivityType::parse)?,
        from_stage: stage("from_stage")?,
        to_stage: stage("to_stage")?,
        user_id: row.try_get("user_id")?,
        comment: row.try_get("comment")?,
        system_comment: row.try_get("system_comment")?,
        creation_timestamp: row.try_get("creation_timestamp")?,
        last_updated_timestamp: row.try_get("last_updated_timestamp")?,
        open: status.as_deref() == Some("open"),
        model_name: row.try_get("model_name")?,
        version: row.try_get("version")?,
    })
}

/// The model id and the version's current stage, read inside the transition's transaction
/// and checked against the principal's grants there, so a transition reads nothing before
/// its write. The errors come in this order: an unknown model, then no read permission
/// (non-readers learn nothing of its versions), then an unknown version, then the level the
/// move needs, then an `archive_existing` into an inactive stage.
pub(super) async fn checked_stage_in_tx(
    tx: &mut Tx<'_>,
    workspace: &str,
    name: &str,
    version: i64,
    principal: &Principal,
    to: Stage,
    archive_existing: bool,
) -> Result<(String, Stage)> {
    let lock = match DIALECT {
        Dialect::Postgres => " FOR UPDATE OF rm",
        Dialect::Sqlite => "",
    };
    let row = db::query(sqlx::AssertSqlSafe(format!(
        "SELECT rm.id, mv.current_stage FROM registered_models rm \
         LEFT JOIN model_versions mv ON mv.model_id = rm.id AND mv.version = $3 \
         WHERE rm.workspace = $1 AND rm.name = $2{lock}"
    )))
    .bind(workspace)
    .bind(name)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?
    .ok_or_else(|| model_not_found(name))?;
    let model_id: String = row.try_get("id").map_err(db_error)?;
    let stage: Option<String> = row.try_get("current_stage").map_err(db_error)?;
    let granted = if principal.is_admin {
        Vec::new()
    } else {
        granted_levels_on(
            &mut **tx,
            workspace,
            ObjectType::RegisteredModel,
            &model_id,
            &principal.grantee_ids(),
        )
        .await?
    };
    let require = |level| {
        require_granted(
            principal,
            ObjectType::RegisteredModel,
            &model_id,
            &granted,
            level,
        )
    };
    require(PermissionLevel::CanRead)?;
    let from = Stage::parse(&stage.ok_or_else(|| version_not_found(name, version))?)?;
    require(to.transition_level(from, archive_existing))?;
    check_archive_existing(to, archive_existing)?;
    Ok((model_id, from))
}

/// The prompt rule of MLflow's registry search: prompts (models tagged
/// `mlflow.prompt.is_prompt = 'true'`) are found only when the filter asks for them, and
/// excluded otherwise; the prompt-tag comparisons themselves are consumed here.
pub(super) fn split_prompt_filter(filter: &[Comparison]) -> (bool, Vec<&Comparison>) {
    let mut wants_prompts = false;
    let mut rest = Vec::new();
    for comparison in filter {
        if comparison.entity == Entity::Tag && comparison.key == PROMPT_TAG {
            if let Value::Str(value) = &comparison.value {
                let value = value.to_ascii_lowercase();
                wants_prompts |= (comparison.comparator == Comparator::Eq && value == "true")
                    || (comparison.comparator == Comparator::Ne && value == "false");
            }
        } else {
            rest.push(comparison);
        }
    }
    (wants_prompts, rest)
}

pub(super) fn push_prompt_rule(builder: &mut Builder, model_column: &str, wants_prompts: bool) {
    builder.push(if wants_prompts {
        " AND EXISTS"
    } else {
        " AND NOT EXISTS"
    });
    builder.push(format!(
        " (SELECT 1 FROM registered_model_tags pt WHERE pt.model_id = {model_column} AND pt.key = "
    ));
    builder.push_bind(PROMPT_TAG);
    builder.push(" AND LOWER(pt.value) = 'true')");
}

/// A tag comparison on a registry object. `!=` also matches objects without the tag, as
/// MLflow's registry search does.
pub(super) fn push_registry_tag_condition(
    builder: &mut Builder,
    table: &str,
    join: &str,
    comparison: &Comparison,
) -> Result<()> {
    if comparison.comparator == Comparator::Ne {
        let equal = Comparison {
            comparator: Comparator::Eq,
            ..comparison.clone()
        };
        builder.push("NOT ");
        return push_key_value_condition(builder, table, join, &equal);
    }
    push_key_value_condition(builder, table, join, comparison)
}

pub(super) fn push_readable(
    builder: &mut Builder,
    model_column: &str,
    readable_by: &Option<ReadableBy>,
) {
    if let Some(readable) = readable_by {
        builder.push(format!(
            " AND EXISTS (SELECT 1 FROM acl a WHERE a.workspace = rm.workspace AND a.object_id = {model_column} AND a.object_type = "
        ));
        builder.push_bind(ObjectType::RegisteredModel.as_str());
        builder.push(" AND a.principal_id IN ");
        push_in_list(builder, readable.grantee_ids.iter().copied());
        builder.push(")");
    }
}

pub(super) fn order_direction(order: &OrderBy) -> &'static str {
    if order.ascending { "ASC" } else { "DESC" }
}

impl Store {
    pub(super) async fn fetch_activities(&self, builder: &mut Builder) -> Result<Vec<Activity>> {
        self.read_all(builder, row_activity).await
    }

    pub(super) async fn activity_by_id(&self, workspace: &str, id: i64) -> Result<Activity> {
        let mut builder = Builder::new(
            "SELECT a.*, rm.name AS model_name FROM model_version_activities a \
             JOIN registered_models rm ON rm.id = a.model_id WHERE rm.workspace = ",
        );
        builder.push_bind(workspace.to_string());
        builder.push(" AND a.id = ");
        builder.push_bind(id);
        self.fetch_activities(&mut builder)
            .await?
            .pop()
            .ok_or_else(|| Error::not_found(format!("Activity {id} not found")))
    }

    pub(super) async fn version_activities(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        open_requests_only: bool,
    ) -> Result<Vec<Activity>> {
        // Missing model or version is an error, not an empty history.
        self.model_version_row(workspace, name, version).await?;
        let mut builder = Builder::new(
            "SELECT a.*, rm.name AS model_name FROM model_version_activities a \
             JOIN registered_models rm ON rm.id = a.model_id WHERE rm.workspace = ",
        );
        builder.push_bind(workspace.to_string());
        builder.push(" AND rm.name = ");
        builder.push_bind(name.to_string());
        builder.push(" AND a.version = ");
        builder.push_bind(version);
        if open_requests_only {
            builder.push(
                " AND a.activity_type = 'REQUESTED_TRANSITION' AND a.request_status = 'open'",
            );
        }
        builder.push(" ORDER BY a.id");
        self.fetch_activities(&mut builder).await
    }

    pub(super) async fn fetch_versions(&self, builder: &mut Builder) -> Result<Vec<ModelVersion>> {
        self.read_all(builder, row_model_version).await
    }

    /// Adds tags, aliases and the latest version per stage to models.
    pub(super) async fn complete_models(
        &self,
        mut models: Vec<RegisteredModel>,
    ) -> Result<Vec<RegisteredModel>> {
        if models.is_empty() {
            return Ok(models);
        }
        let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
        let mut tags = self
            .key_values("registered_model_tags", "model_id", &ids)
            .await?;
        let mut aliases: HashMap<String, Vec<Alias>> = HashMap::new();
        let mut builder = Builder::new(
            "SELECT model_id, alias, version FROM registered_model_aliases WHERE model_id IN ",
        );
        push_in_list(&mut builder, ids.iter().cloned());
        builder.push(" ORDER BY alias");
        for row in builder
            .build()
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?
        {
            aliases
                .entry(row.try_get("model_id").map_err(db_error)?)
                .or_default()
                .push(Alias {
                    alias: row.try_get("alias").map_err(db_error)?,
                    version: row.try_get("version").map_err(db_error)?,
                });
        }
        let mut builder = Builder::new(format!(
            "SELECT {MODEL_VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id \
             WHERE mv.model_id IN "
        ));
        push_in_list(&mut builder, ids.iter().cloned());
        builder.push(
            " AND mv.version = (SELECT MAX(v2.version) FROM model_versions v2 \
             WHERE v2.model_id = mv.model_id AND v2.current_stage = mv.current_stage)",
        );
        let mut latest: HashMap<String, Vec<ModelVersion>> = HashMap::new();
        for mut version in self.fetch_versions(&mut builder).await? {
            // As MLflow: a model's latest versions carry their tags, not their aliases.
            version.aliases.clear();
            latest
                .entry(version.registered_model_id.clone())
                .or_default()
                .push(version);
        }
        for model in &mut models {
            model.tags = tags.remove(&model.id).unwrap_or_default();
            model.aliases = aliases.remove(&model.id).unwrap_or_default();
            let mut versions = latest.remove(&model.id).unwrap_or_default();
            versions.sort_by_key(|v| v.current_stage);
            model.latest_versions = versions;
        }
        Ok(models)
    }

    pub(super) async fn model_version_row(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
    ) -> Result<ModelVersion> {
        let mut builder = Builder::new(format!(
            "SELECT {MODEL_VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id \
             WHERE rm.workspace = "
        ));
        builder.push_bind(workspace.to_string());
        builder.push(" AND rm.name = ");
        builder.push_bind(name.to_string());
        builder.push(" AND mv.version = ");
        builder.push_bind(version);
        let found = self.fetch_versions(&mut builder).await?.pop();
        let Some(found) = found else {
            // Say which of the two is missing, as MLflow does.
            self.registered_model_id(workspace, name).await?;
            return Err(version_not_found(name, version));
        };
        Ok(found)
    }
}

#[async_trait]
impl RegistryStore for Store {
    async fn create_registered_model(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
        tags: &[KeyValue],
        actor: &Actor,
    ) -> Result<RegisteredModel> {
        let id = tarn_core::ids::hex32(rand::random());
        let now = now_millis();
        let (owned_workspace, owned_name, owned_description, owned_tags, owned_actor) = (
            workspace.to_string(),
            name.to_string(),
            description.to_string(),
            tags.to_vec(),
            actor.clone(),
        );
        let () = self
            .write(move |tx| {
                Box::pin(async move {
                    let (workspace, name, description, tags, actor) = (owned_workspace.as_str(), owned_name.as_str(), owned_description.as_str(), &owned_tags, &owned_actor);
                let inserted = db::query(
                    "INSERT INTO registered_models (id, workspace, name, description, owner_id, user_id, creation_timestamp, last_updated_timestamp) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&id)
                .bind(workspace)
                .bind(name)
                .bind(description)
                .bind(actor.id)
                .bind(&actor.name)
                .bind(now)
                .execute(&mut **tx)
                .await;
                match inserted {
                    Err(err) if is_unique_violation(&err) => {
                        return Err(Error::already_exists(format!(
                            "Registered Model (name={name}) already exists."
                        )));
                    }
                    Err(err) if is_foreign_key_violation(&err) => {
                        return Err(Error::not_found(format!(
                            "Workspace '{workspace}' does not exist"
                        )));
                    }
                    Err(err) => return Err(db_error(err)),
                    Ok(_) => {}
                }
                for tag in tags {
                    upsert_registry_tag(tx, &id, tag).await?;
                }
                grant_creator(tx, workspace, ObjectType::RegisteredModel, &id, actor.id).await?;
                let tag_map = tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
                insert_event(tx, workspace, &actor.name, now, &Change::ModelCreated { name: name.to_string(), tags: tag_map, description: description.to_string() })
                .await?;
                    Ok(())
                })
            })
            .await?;
        self.get_registered_model(workspace, name).await
    }

    async fn get_registered_model(&self, workspace: &str, name: &str) -> Result<RegisteredModel> {
        let row = db::query("SELECT * FROM registered_models WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| model_not_found(name))?;
        let model = row_registered_model(&row).map_err(db_error)?;
        Ok(self.complete_models(vec![model]).await?.remove(0))
    }

    async fn registered_model_id(&self, workspace: &str, name: &str) -> Result<String> {
        db::query_scalar("SELECT id FROM registered_models WHERE workspace = $1 AND name = $2")
            .bind(workspace)
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| model_not_found(name))
    }

    async fn registered_model_name(&self, workspace: &str, id: &str) -> Result<String> {
        db::query_scalar("SELECT name FROM registered_models WHERE workspace = $1 AND id = $2")
            .bind(workspace)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found(format!("Registered model with id={id} not found")))
    }

    async fn rename_registered_model(
        &self,
        workspace: &str,
        name: &str,
        new_name: &str,
        actor: &Actor,
    ) -> Result<RegisteredModel> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = model_id_in_tx(&mut tx, workspace, name).await?;
        let renamed = db::query(
            "UPDATE registered_models SET name = $1, last_updated_timestamp = $2 WHERE id = $3",
        )
        .bind(new_name)
        .bind(now)
        .bind(&model_id)
        .execute(&mut *tx)
        .await;
        match renamed {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::already_exists(format!(
                    "Registered Model (name={new_name}) already exists."
                )));
            }
            Err(err) => return Err(db_error(err)),
            Ok(_) => {}
        }
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::ModelRenamed {
                name: new_name.to_string(),
                previous_name: name.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.get_registered_model(workspace, new_name).await
    }

    async fn update_registered_model(
        &self,
        workspace: &str,
        name: &str,
        description: &str,
        actor: &Actor,
    ) -> Result<RegisteredModel> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = model_id_in_tx(&mut tx, workspace, name).await?;
        db::query(
            "UPDATE registered_models SET description = $1, last_updated_timestamp = $2 WHERE id = $3",
        )
        .bind(description)
        .bind(now)
        .bind(&model_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::ModelUpdated {
                name: name.to_string(),
                description: description.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.get_registered_model(workspace, name).await
    }

    async fn delete_registered_model(
        &self,
        workspace: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<Vec<String>> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = model_id_in_tx(&mut tx, workspace, name).await?;
        let locations: Vec<String> =
            db::query_scalar("SELECT storage_location FROM model_versions WHERE model_id = $1")
                .bind(&model_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
        for statement in [
            "DELETE FROM registered_model_aliases WHERE model_id = $1",
            "DELETE FROM model_version_tags WHERE model_id = $1",
            "DELETE FROM model_versions WHERE model_id = $1",
            "DELETE FROM registered_model_tags WHERE model_id = $1",
            "DELETE FROM registered_models WHERE id = $1",
        ] {
            db::query(statement)
                .bind(&model_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        delete_grants(&mut tx, workspace, ObjectType::RegisteredModel, &model_id).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::ModelDeleted {
                name: name.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(locations)
    }

    async fn search_registered_models(
        &self,
        workspace: &str,
        query: &SearchRegistry,
    ) -> Result<Page<RegisteredModel>> {
        let mut builder =
            Builder::new("SELECT rm.* FROM registered_models rm WHERE rm.workspace = ");
        builder.push_bind(workspace.to_string());
        let (wants_prompts, filter) = split_prompt_filter(&query.filter);
        push_prompt_rule(&mut builder, "rm.id", wants_prompts);
        for comparison in filter {
            builder.push(" AND ");
            match (comparison.entity, comparison.key.as_str()) {
                (Entity::Tag, _) => push_registry_tag_condition(
                    &mut builder,
                    "registered_model_tags",
                    "kv.model_id = rm.id",
                    comparison,
                )?,
                (Entity::Attribute, "name") => {
                    push_comparison(&mut builder, "rm.name", comparison)?
                }
                (_, other) => {
                    return Err(Error::invalid(format!("Invalid attribute name: {other}")));
                }
            }
        }
        push_readable(&mut builder, "rm.id", &query.readable_by);
        builder.push(" ORDER BY ");
        for order in &query.order_by {
            let column = match order.key.as_str() {
                "name" => format!("rm.name{}", collate()),
                "creation_timestamp" | "timestamp" => "rm.creation_timestamp".to_string(),
                "last_updated_timestamp" => "rm.last_updated_timestamp".to_string(),
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid order by key '{other}' specified."
                    )));
                }
            };
            builder.push(format!("{column} {}, ", order_direction(order)));
        }
        builder.push(format!("rm.name{} ASC", collate()));
        let page = self
            .read_page(
                &mut builder,
                row_registered_model,
                query.max_results,
                query.offset,
            )
            .await?;
        Ok(Page {
            items: self.complete_models(page.items).await?,
            next_offset: page.next_offset,
        })
    }

    async fn set_registered_model_tag(
        &self,
        workspace: &str,
        name: &str,
        tag: &KeyValue,
        actor: &Actor,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = model_id_in_tx(&mut tx, workspace, name).await?;
        upsert_registry_tag(&mut tx, &model_id, tag).await?;
        touch_model(&mut tx, &model_id, now).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::ModelTagSet {
                name: name.to_string(),
                key: tag.key.clone(),
                value: tag.value.clone(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_registered_model_tag(
        &self,
        workspace: &str,
        name: &str,
        key: &str,
        actor: &Actor,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = model_id_in_tx(&mut tx, workspace, name).await?;
        db::query("DELETE FROM registered_model_tags WHERE model_id = $1 AND key = $2")
            .bind(&model_id)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        touch_model(&mut tx, &model_id, now).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::ModelTagDeleted {
                name: name.to_string(),
                key: key.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn latest_versions(
        &self,
        workspace: &str,
        name: &str,
        stages: &[Stage],
    ) -> Result<Vec<ModelVersion>> {
        let model_id = self.registered_model_id(workspace, name).await?;
        let mut builder = Builder::new(format!(
            "SELECT {MODEL_VERSION_COLUMNS} FROM model_versions mv JOIN registered_models rm ON rm.id = mv.model_id \
             WHERE mv.model_id = "
        ));
        builder.push_bind(model_id);
        builder.push(
            " AND mv.version = (SELECT MAX(v2.version) FROM model_versions v2 \
             WHERE v2.model_id = mv.model_id AND v2.current_stage = mv.current_stage)",
        );
        if !stages.is_empty() {
            builder.push(" AND mv.current_stage IN ");
            push_in_list(&mut builder, stages.iter().map(|s| s.as_str()));
        }
        let mut versions = self.fetch_versions(&mut builder).await?;
        versions.sort_by_key(|v| v.current_stage);
        Ok(versions)
    }

    async fn create_model_version(
        &self,
        workspace: &str,
        new: &NewModelVersion,
        actor: &Actor,
    ) -> Result<ModelVersion> {
        let now = now_millis();
        let (owned_workspace, owned_new, owned_actor) =
            (workspace.to_string(), new.clone(), actor.clone());
        self.write(move |tx| {
                Box::pin(async move {
                    let (workspace, new, actor) = (owned_workspace.as_str(), &owned_new, &owned_actor);
                let model_id = model_id_in_tx(tx, workspace, &new.name).await?;
                let version: i64 = db::query_scalar(
                    "UPDATE registered_models SET next_version = next_version + 1, last_updated_timestamp = $1 \
                     WHERE id = $2 RETURNING next_version - 1",
                )
                .bind(now)
                .bind(&model_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(db_error)?;
                db::query(
                    "INSERT INTO model_versions (model_id, version, creation_timestamp, last_updated_timestamp, user_id, current_stage, \
                     description, source, run_id, run_link, logged_model_id, status, storage_location, checksum) \
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&model_id)
                .bind(version)
                .bind(now)
                .bind(&actor.name)
                .bind(Stage::None.as_str())
                .bind(&new.description)
                .bind(&new.source)
                .bind(new.run_id.as_deref())
                .bind(new.run_link.as_deref())
                .bind(new.model_id.as_deref())
                .bind(VersionStatus::Ready.as_str())
                .bind(&new.storage_location)
                .bind(&new.checksum)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                for tag in &new.tags {
                    upsert_version_tag(tx, &model_id, version, tag).await?;
                }
                let tag_map = new.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
                insert_event(tx, workspace, &actor.name, now, &Change::VersionCreated { name: new.name.clone(), version, source: new.source.clone(), run_id: new.run_id.clone(), model_id: new.model_id.clone(), tags: tag_map, description: new.description.clone() })
                .await?;
                    // Read back on the writer, whose page cache this write leaves warm: a
                    // reader would find the database changed and start from cold.
                    version_row_in_tx(tx, &model_id, version).await
                })
            })
            .await
    }

    async fn get_model_version(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
    ) -> Result<ModelVersion> {
        self.model_version_row(workspace, name, version).await
    }

    async fn update_model_version(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        description: &str,
        actor: &Actor,
    ) -> Result<ModelVersion> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = version_in_tx(&mut tx, workspace, name, version).await?;
        db::query(
            "UPDATE model_versions SET description = $1, last_updated_timestamp = $2 WHERE model_id = $3 AND version = $4",
        )
        .bind(description)
        .bind(now)
        .bind(&model_id)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::VersionUpdated {
                name: name.to_string(),
                version,
                description: description.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.model_version_row(workspace, name, version).await
    }

    async fn delete_model_version(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<String> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = version_in_tx(&mut tx, workspace, name, version).await?;
        let location: String = db::query_scalar(
            "SELECT storage_location FROM model_versions WHERE model_id = $1 AND version = $2",
        )
        .bind(&model_id)
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        for statement in [
            "DELETE FROM registered_model_aliases WHERE model_id = $1 AND version = $2",
            "DELETE FROM model_version_tags WHERE model_id = $1 AND version = $2",
            "DELETE FROM model_versions WHERE model_id = $1 AND version = $2",
        ] {
            db::query(statement)
                .bind(&model_id)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        touch_model(&mut tx, &model_id, now).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::VersionDeleted {
                name: name.to_string(),
                version,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(location)
    }

    async fn search_model_versions(
        &self,
        workspace: &str,
        query: &SearchRegistry,
    ) -> Result<Page<ModelVersion>> {
        // Keys first, whole rows for the page only: the sort then carries two columns, and tags
        // and aliases are read for the rows returned, not for every match.
        let mut builder = Builder::new(
            "WITH page AS (SELECT mv.model_id, mv.version FROM model_versions mv \
             JOIN registered_models rm ON rm.id = mv.model_id WHERE rm.workspace = ",
        );
        builder.push_bind(workspace.to_string());
        let (wants_prompts, filter) = split_prompt_filter(&query.filter);
        push_prompt_rule(&mut builder, "rm.id", wants_prompts);
        for comparison in filter {
            builder.push(" AND ");
            match (comparison.entity, comparison.key.as_str()) {
                (Entity::Tag, _) => push_registry_tag_condition(
                    &mut builder,
                    "model_version_tags",
                    "kv.model_id = mv.model_id AND kv.version = mv.version",
                    comparison,
                )?,
                (Entity::Attribute, "name") => {
                    push_comparison(&mut builder, "rm.name", comparison)?
                }
                (Entity::Attribute, "version_number") => {
                    push_numeric_comparison(&mut builder, "mv.version", comparison)?
                }
                (Entity::Attribute, "run_id") => {
                    push_comparison(&mut builder, "mv.run_id", comparison)?
                }
                (Entity::Attribute, "source_path") => {
                    push_comparison(&mut builder, "mv.source", comparison)?
                }
                (_, other) => {
                    return Err(Error::invalid(format!("Invalid attribute name: {other}")));
                }
            }
        }
        push_readable(&mut builder, "rm.id", &query.readable_by);
        let mut order = String::from(" ORDER BY ");
        let mut seen = Vec::new();
        for order_by in &query.order_by {
            let column = match order_by.key.as_str() {
                "name" => format!("rm.name{}", collate()),
                "version_number" => "mv.version".to_string(),
                "creation_timestamp" | "timestamp" => "mv.creation_timestamp".to_string(),
                "last_updated_timestamp" => "mv.last_updated_timestamp".to_string(),
                other => {
                    return Err(Error::invalid(format!(
                        "Invalid order by key '{other}' specified."
                    )));
                }
            };
            if seen.contains(&column) {
                return Err(Error::invalid(format!(
                    "`order_by` contains duplicate fields: {}",
                    order_by.key
                )));
            }
            order.push_str(&format!("{column} {}, ", order_direction(order_by)));
            seen.push(column);
        }
        order.push_str(&format!("rm.name{} ASC, mv.version DESC", collate()));
        builder.push(&order);
        limit_offset(&mut builder, query.max_results, query.offset);
        builder.push(format!(
            ") SELECT {MODEL_VERSION_COLUMNS} FROM page \
             JOIN model_versions mv ON mv.model_id = page.model_id AND mv.version = page.version \
             JOIN registered_models rm ON rm.id = mv.model_id{order}"
        ));
        let versions = self.fetch_versions(&mut builder).await?;
        let page = into_page(versions, query.offset, query.max_results);
        Ok(Page {
            items: page.items,
            next_offset: page.next_offset,
        })
    }

    async fn set_model_version_tag(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        tag: &KeyValue,
        actor: &Actor,
    ) -> Result<()> {
        let now = now_millis();
        let (owned_workspace, owned_name, owned_tag, owned_actor) = (
            workspace.to_string(),
            name.to_string(),
            tag.clone(),
            actor.clone(),
        );
        let () = self
            .write(move |tx| {
                Box::pin(async move {
                    let (workspace, name, tag, actor) = (
                        owned_workspace.as_str(),
                        owned_name.as_str(),
                        &owned_tag,
                        &owned_actor,
                    );
                    let model_id = version_in_tx(tx, workspace, name, version).await?;
                    upsert_version_tag(tx, &model_id, version, tag).await?;
                    insert_event(
                        tx,
                        workspace,
                        &actor.name,
                        now,
                        &Change::VersionTagSet {
                            name: name.to_string(),
                            version,
                            key: tag.key.clone(),
                            value: tag.value.clone(),
                        },
                    )
                    .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(())
    }

    async fn delete_model_version_tag(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        key: &str,
        actor: &Actor,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = version_in_tx(&mut tx, workspace, name, version).await?;
        db::query(
            "DELETE FROM model_version_tags WHERE model_id = $1 AND version = $2 AND key = $3",
        )
        .bind(&model_id)
        .bind(version)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::VersionTagDeleted {
                name: name.to_string(),
                version,
                key: key.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn transition_stage(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        stage: Stage,
        archive_existing: bool,
        comment: &str,
        principal: &Principal,
    ) -> Result<ModelVersion> {
        let now = now_millis();
        let (owned_workspace, owned_name, owned_comment, owned_principal) = (
            workspace.to_string(),
            name.to_string(),
            comment.to_string(),
            principal.clone(),
        );
        let moved = self
            .write(move |tx| {
                Box::pin(async move {
                    let (workspace, name, comment, principal) = (
                        owned_workspace.as_str(),
                        owned_name.as_str(),
                        owned_comment.as_str(),
                        &owned_principal,
                    );
                    let (model_id, from) = checked_stage_in_tx(
                        tx,
                        workspace,
                        name,
                        version,
                        principal,
                        stage,
                        archive_existing,
                    )
                    .await?;
                    let change = Transition {
                        workspace,
                        model_id: &model_id,
                        name,
                        version,
                        from,
                        stage,
                        archive_existing,
                        activity: ActivityType::AppliedTransition,
                        comment,
                        actor: &Actor::from(principal),
                        now,
                    };
                    Ok(apply_transition(tx, &change).await?.1)
                })
            })
            .await?;
        Ok(moved)
    }

    async fn create_transition_request(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        to_stage: Stage,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = version_in_tx(&mut tx, workspace, name, version).await?;
        let current = current_stage(&mut tx, &model_id, version).await?;
        if current == to_stage {
            return Err(Error::invalid(format!(
                "Model version {version} of '{name}' is already in stage {}",
                to_stage.as_str()
            )));
        }
        let duplicate: Option<i64> = db::query_scalar(
            "SELECT id FROM model_version_activities WHERE model_id = $1 AND version = $2 \
             AND activity_type = 'REQUESTED_TRANSITION' AND request_status = 'open' AND to_stage = $3 AND user_id = $4",
        )
        .bind(&model_id)
        .bind(version)
        .bind(to_stage.as_str())
        .bind(&actor.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if duplicate.is_some() {
            return Err(Error::already_exists(format!(
                "{} already has an open request to move version {version} of '{name}' to {}",
                actor.name,
                to_stage.as_str()
            )));
        }
        let id = insert_activity(
            &mut tx,
            &NewActivity {
                model_id: &model_id,
                version,
                activity: ActivityType::RequestedTransition,
                from_stage: Some(current),
                to_stage: Some(to_stage),
                user: &actor.name,
                comment,
                system_comment: "",
                request_open: true,
                now,
            },
        )
        .await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::TransitionRequested {
                name: name.to_string(),
                version,
                from_stage: current,
                to_stage,
                comment: comment.to_string(),
                request_id: id,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.activity_by_id(workspace, id).await
    }

    async fn resolve_transition_request(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        to_stage: Stage,
        outcome: RequestOutcome,
        requester: Option<&str>,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity> {
        if let RequestOutcome::Approve { archive_existing } = outcome {
            check_archive_existing(to_stage, archive_existing)?;
        }
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = version_in_tx(&mut tx, workspace, name, version).await?;
        let mut open = Builder::new("UPDATE model_version_activities SET request_status = ");
        open.push_bind(match outcome {
            RequestOutcome::Approve { .. } => "approved",
            RequestOutcome::Reject => "rejected",
            RequestOutcome::Cancel => "cancelled",
        });
        open.push(", last_updated_timestamp = ");
        open.push_bind(now);
        open.push(" WHERE model_id = ");
        open.push_bind(model_id.clone());
        open.push(" AND version = ");
        open.push_bind(version);
        open.push(" AND activity_type = 'REQUESTED_TRANSITION' AND request_status = 'open' AND to_stage = ");
        open.push_bind(to_stage.as_str());
        if let Some(requester) = requester {
            open.push(" AND user_id = ");
            open.push_bind(requester.to_string());
        }
        open.push(" RETURNING id");
        let ended: Vec<i64> = open
            .build_query_scalar()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        if ended.is_empty() {
            return Err(Error::not_found(format!(
                "No open transition request to move version {version} of '{name}' to {}{}",
                to_stage.as_str(),
                requester.map(|r| format!(" by {r}")).unwrap_or_default()
            )));
        }
        let (activity, resolved): (_, fn(event::RequestResolved) -> Change) = match outcome {
            RequestOutcome::Approve { .. } => (
                ActivityType::ApprovedRequest,
                Change::TransitionRequestApproved,
            ),
            RequestOutcome::Reject => (
                ActivityType::RejectedRequest,
                Change::TransitionRequestRejected,
            ),
            RequestOutcome::Cancel => (
                ActivityType::CancelledRequest,
                Change::TransitionRequestCancelled,
            ),
        };
        let current = current_stage(&mut tx, &model_id, version).await?;
        let id = match outcome {
            RequestOutcome::Approve { archive_existing } => {
                let change = Transition {
                    workspace,
                    model_id: &model_id,
                    name,
                    version,
                    from: current,
                    stage: to_stage,
                    archive_existing,
                    activity,
                    comment,
                    actor,
                    now,
                };
                apply_transition(&mut tx, &change).await?.0
            }
            RequestOutcome::Reject | RequestOutcome::Cancel => {
                insert_activity(
                    &mut tx,
                    &NewActivity {
                        model_id: &model_id,
                        version,
                        activity,
                        from_stage: Some(current),
                        to_stage: Some(to_stage),
                        user: &actor.name,
                        comment,
                        system_comment: "",
                        request_open: false,
                        now,
                    },
                )
                .await?
            }
        };
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &resolved(event::RequestResolved {
                name: name.to_string(),
                version,
                from_stage: current,
                to_stage,
                comment: comment.to_string(),
                request_ids: ended,
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.activity_by_id(workspace, id).await
    }

    async fn open_transition_requests(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
    ) -> Result<Vec<Activity>> {
        self.version_activities(workspace, name, version, true)
            .await
    }

    async fn activities(&self, workspace: &str, name: &str, version: i64) -> Result<Vec<Activity>> {
        self.version_activities(workspace, name, version, false)
            .await
    }

    async fn create_comment(
        &self,
        workspace: &str,
        name: &str,
        version: i64,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = version_in_tx(&mut tx, workspace, name, version).await?;
        let id = insert_activity(
            &mut tx,
            &NewActivity {
                model_id: &model_id,
                version,
                activity: ActivityType::NewComment,
                from_stage: None,
                to_stage: None,
                user: &actor.name,
                comment,
                system_comment: "",
                request_open: false,
                now,
            },
        )
        .await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::CommentCreated(event::CommentText {
                name: name.to_string(),
                version,
                comment: comment.to_string(),
                id,
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.activity_by_id(workspace, id).await
    }

    async fn get_comment(&self, workspace: &str, id: i64) -> Result<Activity> {
        let found = self.activity_by_id(workspace, id).await;
        match found {
            Ok(activity) if activity.activity_type == ActivityType::NewComment => Ok(activity),
            Ok(_) | Err(_) => Err(Error::not_found(format!("Comment {id} not found"))),
        }
    }

    async fn update_comment(
        &self,
        workspace: &str,
        id: i64,
        comment: &str,
        actor: &Actor,
    ) -> Result<Activity> {
        let existing = self.get_comment(workspace, id).await?;
        let now = now_millis();
        let mut tx = self.begin().await?;
        db::query(
            "UPDATE model_version_activities SET comment = $1, last_updated_timestamp = $2 WHERE id = $3",
        )
        .bind(comment)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::CommentUpdated(event::CommentText {
                name: existing.model_name.clone(),
                version: existing.version,
                comment: comment.to_string(),
                id,
            }),
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        self.activity_by_id(workspace, id).await
    }

    async fn delete_comment(&self, workspace: &str, id: i64, actor: &Actor) -> Result<()> {
        let existing = self.get_comment(workspace, id).await?;
        let now = now_millis();
        let mut tx = self.begin().await?;
        db::query("DELETE FROM model_version_activities WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::CommentDeleted {
                name: existing.model_name.clone(),
                version: existing.version,
                id,
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn set_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
        version: i64,
        actor: &Actor,
    ) -> Result<()> {
        let now = now_millis();
        let (owned_workspace, owned_name, owned_alias, owned_actor) = (
            workspace.to_string(),
            name.to_string(),
            alias.to_string(),
            actor.clone(),
        );
        let () = self
            .write(move |tx| {
                Box::pin(async move {
                    let (workspace, name, alias, actor) = (owned_workspace.as_str(), owned_name.as_str(), owned_alias.as_str(), &owned_actor);
                let model_id = version_in_tx(tx, workspace, name, version).await?;
                db::query(
                    "INSERT INTO registered_model_aliases (model_id, alias, version) VALUES ($1, $2, $3) \
                     ON CONFLICT (model_id, alias) DO UPDATE SET version = excluded.version",
                )
                .bind(&model_id)
                .bind(alias)
                .bind(version)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
                touch_model(tx, &model_id, now).await?;
                insert_event(tx, workspace, &actor.name, now, &Change::AliasSet { name: name.to_string(), alias: alias.to_string(), version })
                .await?;
                    Ok(())
                })
            })
            .await?;
        Ok(())
    }

    async fn delete_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
        actor: &Actor,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let model_id = model_id_in_tx(&mut tx, workspace, name).await?;
        db::query("DELETE FROM registered_model_aliases WHERE model_id = $1 AND alias = $2")
            .bind(&model_id)
            .bind(alias)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        touch_model(&mut tx, &model_id, now).await?;
        insert_event(
            &mut tx,
            workspace,
            &actor.name,
            now,
            &Change::AliasDeleted {
                name: name.to_string(),
                alias: alias.to_string(),
            },
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn version_by_alias(
        &self,
        workspace: &str,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion> {
        let mut builder = Builder::new(format!(
            "SELECT {MODEL_VERSION_COLUMNS} FROM registered_model_aliases a \
             JOIN registered_models rm ON rm.id = a.model_id \
             JOIN model_versions mv ON mv.model_id = a.model_id AND mv.version = a.version \
             WHERE rm.workspace = "
        ));
        builder.push_bind(workspace.to_string());
        builder.push(" AND rm.name = ");
        builder.push_bind(name.to_string());
        builder.push(" AND a.alias = ");
        builder.push_bind(alias.to_string());
        let Some(found) = self.fetch_versions(&mut builder).await?.pop() else {
            // A missing model is a 404; a missing alias is MLflow's INVALID_PARAMETER_VALUE.
            self.registered_model_id(workspace, name).await?;
            return Err(Error::invalid(format!(
                "Registered model alias {alias} not found."
            )));
        };
        Ok(found)
    }

    async fn version_storage_locations(&self, model_id: &str) -> Result<Vec<String>> {
        db::query_scalar("SELECT storage_location FROM model_versions WHERE model_id = $1")
            .bind(model_id)
            .fetch_all(&self.read)
            .await
            .map_err(db_error)
    }
}

pub(super) async fn upsert_registry_tag(
    tx: &mut Tx<'_>,
    model_id: &str,
    tag: &KeyValue,
) -> Result<()> {
    db::query(
        "INSERT INTO registered_model_tags (model_id, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
    )
    .bind(model_id)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(super) async fn upsert_version_tag(
    tx: &mut Tx<'_>,
    model_id: &str,
    version: i64,
    tag: &KeyValue,
) -> Result<()> {
    db::query(
        "INSERT INTO model_version_tags (model_id, version, key, value) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (model_id, version, key) DO UPDATE SET value = excluded.value",
    )
    .bind(model_id)
    .bind(version)
    .bind(&tag.key)
    .bind(&tag.value)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(super) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}
