//! Grants on experiments, registered models and serving endpoints: the creator's grant, the levels
//! a caller holds, and changes to them, each recorded in the audit trail.

use super::*;

/// The creator manages what it creates: a CAN_MANAGE grant, in the creating transaction.
pub(super) async fn grant_creator(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    creator_id: i64,
) -> Result<()> {
    db::query("INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES ($1, $2, $3, $4, $5)")
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .bind(creator_id)
        .bind(object_type.creator_level().as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Removes every grant on an object (deleted, or its list replaced).
pub(super) async fn delete_grants(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
) -> Result<()> {
    db::query("DELETE FROM acl WHERE workspace = $1 AND object_type = $2 AND object_id = $3")
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The levels granted on an object to any of `grantee_ids`, read through `executor` (the
/// reader pool, or a write transaction that decides on them).
pub(super) async fn granted_levels_on<'e, E>(
    executor: E,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    grantee_ids: &[i64],
) -> Result<Vec<PermissionLevel>>
where
    E: db::Executor<'e>,
{
    if grantee_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut builder = Builder::new("SELECT level FROM acl WHERE workspace = ");
    builder.push_bind(workspace.to_string());
    builder.push(" AND object_type = ");
    builder.push_bind(object_type.as_str());
    builder.push(" AND object_id = ");
    builder.push_bind(object_id.to_string());
    builder.push(" AND principal_id IN ");
    push_in_list(&mut builder, grantee_ids.iter().copied());
    let levels: Vec<String> = builder
        .build_query_scalar()
        .fetch_all(executor)
        .await
        .map_err(db_error)?;
    Ok(levels
        .iter()
        .filter_map(|l| PermissionLevel::parse(l))
        .collect())
}

#[async_trait]
impl PermissionStore for Store {
    async fn granted_levels(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grantee_ids: &[i64],
    ) -> Result<Vec<PermissionLevel>> {
        granted_levels_on(&self.read, workspace, object_type, object_id, grantee_ids).await
    }

    async fn object_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
    ) -> Result<Vec<Grant>> {
        let rows = db::query(
            "SELECT a.principal_id, a.level, p.name, p.kind FROM acl a JOIN principals p ON p.id = a.principal_id \
             WHERE a.workspace = $1 AND a.object_type = $2 AND a.object_id = $3 ORDER BY p.name",
        )
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        let mut grants = Vec::with_capacity(rows.len());
        for row in rows {
            let level: String = row.try_get("level").map_err(db_error)?;
            let kind: String = row.try_get("kind").map_err(db_error)?;
            if let (Some(level), Some(kind)) =
                (PermissionLevel::parse(&level), PrincipalKind::parse(&kind))
            {
                grants.push(Grant {
                    principal_id: row.try_get("principal_id").map_err(db_error)?,
                    principal_name: row.try_get("name").map_err(db_error)?,
                    principal_kind: kind,
                    level,
                });
            }
        }
        Ok(grants)
    }

    async fn update_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grants: &[(String, PermissionLevel)],
        actor: &tarn_core::registry::Actor,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        write_grants(&mut tx, workspace, object_type, object_id, grants).await?;
        record_grant_change(
            &mut tx,
            workspace,
            object_type,
            object_id,
            grants,
            Change::PermissionsUpdated,
            actor,
        )
        .await?;
        tx.commit().await.map_err(db_error)
    }

    async fn replace_grants(
        &self,
        workspace: &str,
        object_type: ObjectType,
        object_id: &str,
        grants: &[(String, PermissionLevel)],
        actor: &tarn_core::registry::Actor,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        record_grant_change(
            &mut tx,
            workspace,
            object_type,
            object_id,
            grants,
            Change::PermissionsReplaced,
            actor,
        )
        .await?;
        delete_grants(&mut tx, workspace, object_type, object_id).await?;
        write_grants(&mut tx, workspace, object_type, object_id, grants).await?;
        tx.commit().await.map_err(db_error)
    }
}

/// Permission changes belong to the audit trail, in the same transaction as the change.
pub(super) async fn record_grant_change(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    grants: &[(String, PermissionLevel)],
    change: fn(event::ObjectGrants) -> Change,
    actor: &tarn_core::registry::Actor,
) -> Result<()> {
    let listed = grants
        .iter()
        .map(|(name, level)| event::ObjectGrant {
            principal: name.clone(),
            permission_level: level.as_str().to_string(),
        })
        .collect();
    insert_event(
        tx,
        workspace,
        &actor.name,
        now_millis(),
        &change(event::ObjectGrants {
            object_type: object_type.as_str().to_string(),
            object_id: object_id.to_string(),
            grants: listed,
        }),
    )
    .await
}

pub(super) async fn write_grants(
    tx: &mut Tx<'_>,
    workspace: &str,
    object_type: ObjectType,
    object_id: &str,
    grants: &[(String, PermissionLevel)],
) -> Result<()> {
    for (principal_name, level) in grants {
        let principal_id: i64 = db::query_scalar("SELECT id FROM principals WHERE name = $1")
            .bind(principal_name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                Error::invalid(format!("Principal '{principal_name}' does not exist"))
            })?;
        db::query(
            "INSERT INTO acl (workspace, object_type, object_id, principal_id, level) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (workspace, object_type, object_id, principal_id) DO UPDATE SET level = excluded.level",
        )
        .bind(workspace)
        .bind(object_type.as_str())
        .bind(object_id)
        .bind(principal_id)
        .bind(level.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
