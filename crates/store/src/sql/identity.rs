//! Principals, groups, tokens and passwords; workspaces and their members.

use super::*;

/// Commits a membership change, with its event when the statement changed a row (adding a
/// member twice or removing one who is not changes nothing, and records nothing).
async fn commit_membership(
    mut tx: Tx<'_>,
    rows_changed: u64,
    scope: &str,
    actor: &str,
    change: Change,
) -> Result<()> {
    if rows_changed > 0 {
        insert_event(&mut tx, scope, actor, now_millis(), &change).await?;
    }
    tx.commit().await.map_err(db_error)
}

#[async_trait]
impl IdentityStore for Store {
    async fn create_principal(
        &self,
        name: &str,
        kind: PrincipalKind,
        is_admin: bool,
        password_hash: Option<&str>,
        actor: &str,
    ) -> Result<PrincipalRecord> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let result = db::query(
            "INSERT INTO principals (name, kind, is_admin, active, password_hash, created_at) VALUES ($1, $2, $3, TRUE, $4, $5) RETURNING *",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(is_admin)
        .bind(password_hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let record = match result {
            Err(err) if is_unique_violation(&err) => {
                return Err(Error::already_exists(format!(
                    "Principal '{name}' already exists"
                )));
            }
            Err(err) => return Err(db_error(err)),
            Ok(row) => row_principal(&row).map_err(db_error)?,
        };
        let change = Change::PrincipalCreated {
            name: name.to_string(),
            kind: kind.as_str().to_string(),
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now, &change).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn get_principal(&self, name: &str) -> Result<PrincipalRecord> {
        let row = db::query("SELECT * FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::not_found(format!("Principal '{name}' does not exist")))?;
        row_principal(&row).map_err(db_error)
    }

    async fn list_principals(&self, kind: Option<PrincipalKind>) -> Result<Vec<PrincipalRecord>> {
        let rows =
            db::query("SELECT * FROM principals WHERE ($1 IS NULL OR kind = $1) ORDER BY name")
                .bind(kind.map(PrincipalKind::as_str))
                .fetch_all(&self.read)
                .await
                .map_err(db_error)?;
        rows.iter()
            .map(row_principal)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn set_password_hash(&self, name: &str, password_hash: &str, actor: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let result =
            db::query("UPDATE principals SET password_hash = $1 WHERE name = $2 AND kind = 'user'")
                .bind(password_hash)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!("User '{name}' does not exist")));
        }
        let change = Change::PasswordSet {
            name: name.to_string(),
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now_millis(), &change).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn set_principal_attributes(
        &self,
        name: &str,
        attributes: &serde_json::Value,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let updated = db::query("UPDATE principals SET attributes = $1 WHERE name = $2")
            .bind(json_text(attributes)?)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "Principal '{name}' does not exist"
            )));
        }
        let change = Change::PrincipalUpdated {
            name: name.to_string(),
            attributes: attributes.clone(),
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now_millis(), &change).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete_principal(&self, name: &str, actor: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let now = now_millis();
        let id: Option<i64> = db::query_scalar(
            "UPDATE principals SET active = FALSE, deleted_at = $1 WHERE name = $2 RETURNING id",
        )
        .bind(now)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(id) = id else {
            return Err(Error::not_found(format!(
                "Principal '{name}' does not exist"
            )));
        };
        for sql in [
            "DELETE FROM group_members WHERE group_id = $1 OR member_id = $1",
            "DELETE FROM workspace_members WHERE principal_id = $1",
        ] {
            db::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        db::query(
            "UPDATE tokens SET revoked_at = $1 WHERE principal_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let change = Change::PrincipalDeleted {
            name: name.to_string(),
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now, &change).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn group_memberships(&self) -> Result<Vec<(i64, i64)>> {
        db::query_as("SELECT group_id, member_id FROM group_members ORDER BY group_id, member_id")
            .fetch_all(&self.read)
            .await
            .map_err(db_error)
    }

    async fn set_active(&self, name: &str, active: bool, actor: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let was: Option<bool> = db::query_scalar("SELECT active FROM principals WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        let Some(was) = was else {
            return Err(Error::not_found(format!(
                "Principal '{name}' does not exist"
            )));
        };
        if was == active {
            return Ok(());
        }
        db::query(
            "UPDATE principals SET active = $1, \
             deleted_at = CASE WHEN $1 THEN NULL ELSE deleted_at END WHERE name = $2",
        )
        .bind(active)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let name = name.to_string();
        let change = if active {
            Change::PrincipalActivated { name }
        } else {
            Change::PrincipalDeactivated { name }
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now_millis(), &change).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn active_principal(&self, name: &str) -> Result<Principal> {
        let record = self.get_principal(name).await?;
        if !record.active {
            return Err(Error::permission_denied(format!(
                "Principal '{name}' is deactivated"
            )));
        }
        self.principal_with_groups(record).await
    }

    async fn password_login(&self, name: &str) -> Result<Option<(String, Principal)>> {
        let Some(row) = db::query(
            "SELECT * FROM principals WHERE name = $1 AND kind = 'user' AND active = TRUE",
        )
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let Some(hash) = row
            .try_get::<Option<String>, _>("password_hash")
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let record = row_principal(&row).map_err(db_error)?;
        Ok(Some((hash, self.principal_with_groups(record).await?)))
    }

    async fn add_group_member(&self, group: &str, member: &str, actor: &str) -> Result<()> {
        let group_record = self.get_principal(group).await?;
        if group_record.kind != PrincipalKind::Group {
            return Err(Error::invalid(format!("'{group}' is not a group")));
        }
        let member_id = self.principal_id(member).await?;
        let mut tx = self.begin().await?;
        let added = db::query("INSERT INTO group_members (group_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(group_record.id)
            .bind(member_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        let change = Change::GroupMemberAdded {
            group: group.to_string(),
            member: member.to_string(),
        };
        commit_membership(tx, added, event::ACCOUNT, actor, change).await
    }

    async fn remove_group_member(&self, group: &str, member: &str, actor: &str) -> Result<()> {
        let group_id = self.principal_id(group).await?;
        let member_id = self.principal_id(member).await?;
        let mut tx = self.begin().await?;
        let removed = db::query("DELETE FROM group_members WHERE group_id = $1 AND member_id = $2")
            .bind(group_id)
            .bind(member_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        let change = Change::GroupMemberRemoved {
            group: group.to_string(),
            member: member.to_string(),
        };
        commit_membership(tx, removed, event::ACCOUNT, actor, change).await
    }

    async fn group_members(&self, group: &str) -> Result<Vec<PrincipalRecord>> {
        let group_id = self.principal_id(group).await?;
        let rows = db::query("SELECT p.* FROM principals p JOIN group_members g ON g.member_id = p.id WHERE g.group_id = $1 ORDER BY p.name")
            .bind(group_id)
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(row_principal)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn create_token(&self, token: &NewToken<'_>, actor: &str) -> Result<TokenInfo> {
        let NewToken {
            token_id,
            principal_name,
            token_hash,
            comment,
            expires_at,
            workspace,
        } = *token;
        let principal_id = self.principal_id(principal_name).await?;
        let now = now_millis();
        let mut tx = self.begin().await?;
        db::query(
            "INSERT INTO tokens (token_id, principal_id, token_hash, comment, created_at, expires_at, workspace) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_id)
        .bind(principal_id)
        .bind(token_hash)
        .bind(comment)
        .bind(now)
        .bind(expires_at)
        .bind(workspace)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let change = Change::TokenCreated {
            id: token_id.to_string(),
            principal: principal_name.to_string(),
            expires_at,
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now, &change).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(TokenInfo {
            token_id: token_id.to_string(),
            principal_id,
            principal_name: principal_name.to_string(),
            comment: comment.to_string(),
            created_at: now,
            expires_at,
            workspace: workspace.map(str::to_string),
        })
    }

    async fn principal_for_token(&self, token_hash: &str, now: i64) -> Result<Option<Principal>> {
        let row = db::query(
            "SELECT p.*, t.workspace AS token_workspace FROM tokens t JOIN principals p ON p.id = t.principal_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2) AND p.active = TRUE",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let only_workspace: Option<String> =
                    row.try_get("token_workspace").map_err(db_error)?;
                let principal = self
                    .principal_with_groups(row_principal(&row).map_err(db_error)?)
                    .await?;
                Ok(Some(Principal {
                    only_workspace,
                    ..principal
                }))
            }
        }
    }

    async fn list_tokens(&self, principal_name: Option<&str>) -> Result<Vec<TokenInfo>> {
        let rows = db::query(
            "SELECT t.*, p.name FROM tokens t JOIN principals p ON p.id = t.principal_id \
             WHERE t.revoked_at IS NULL AND ($1 IS NULL OR p.name = $1) ORDER BY t.created_at, t.token_id",
        )
        .bind(principal_name)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(row_token)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn revoke_token(&self, token_id: &str, actor: &str) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let result = db::query(
            "UPDATE tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(token_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "Token '{token_id}' does not exist"
            )));
        }
        let change = Change::TokenRevoked {
            id: token_id.to_string(),
        };
        insert_event(&mut tx, event::ACCOUNT, actor, now, &change).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn token_owner(&self, token_id: &str) -> Result<i64> {
        db::query_scalar(
            "SELECT principal_id FROM tokens WHERE token_id = $1 AND revoked_at IS NULL",
        )
        .bind(token_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::not_found(format!("Token '{token_id}' does not exist")))
    }
}

#[async_trait]
impl WorkspaceStore for Store {
    async fn ensure_workspace(&self, name: &str, actor: &str) -> Result<bool> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let inserted = db::query(
            "INSERT INTO workspaces (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected()
            == 1;
        if inserted {
            // Every workspace has MLflow's "Default" experiment 0.
            insert_experiment(&mut tx, name, 0, "Default", "mlflow-artifacts:/0", None).await?;
            let change = Change::WorkspaceCreated {
                name: name.to_string(),
            };
            insert_event(&mut tx, name, actor, now, &change).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(inserted)
    }

    async fn list_workspaces(&self) -> Result<Vec<String>> {
        db::query_scalar("SELECT name FROM workspaces ORDER BY name")
            .fetch_all(&self.read)
            .await
            .map_err(db_error)
    }

    async fn workspace_exists(&self, name: &str) -> Result<bool> {
        let found: Option<String> = db::query_scalar("SELECT name FROM workspaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        Ok(found.is_some())
    }

    async fn add_workspace_member(
        &self,
        workspace: &str,
        principal_name: &str,
        actor: &str,
    ) -> Result<()> {
        if !self.workspace_exists(workspace).await? {
            return Err(Error::not_found(format!(
                "Workspace '{workspace}' does not exist"
            )));
        }
        let principal_id = self.principal_id(principal_name).await?;
        let mut tx = self.begin().await?;
        let added = db::query("INSERT INTO workspace_members (workspace, principal_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(workspace)
            .bind(principal_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        let change = Change::WorkspaceMemberAdded {
            workspace: workspace.to_string(),
            member: principal_name.to_string(),
        };
        commit_membership(tx, added, workspace, actor, change).await
    }

    async fn remove_workspace_member(
        &self,
        workspace: &str,
        principal_name: &str,
        actor: &str,
    ) -> Result<()> {
        let principal_id = self.principal_id(principal_name).await?;
        let mut tx = self.begin().await?;
        let removed =
            db::query("DELETE FROM workspace_members WHERE workspace = $1 AND principal_id = $2")
                .bind(workspace)
                .bind(principal_id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        let change = Change::WorkspaceMemberRemoved {
            workspace: workspace.to_string(),
            member: principal_name.to_string(),
        };
        commit_membership(tx, removed, workspace, actor, change).await
    }

    async fn workspace_members(&self, workspace: &str) -> Result<Vec<PrincipalRecord>> {
        let rows = db::query(
            "SELECT p.* FROM principals p JOIN workspace_members w ON w.principal_id = p.id WHERE w.workspace = $1 ORDER BY p.name",
        )
        .bind(workspace)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(row_principal)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn is_workspace_member(&self, workspace: &str, grantee_ids: &[i64]) -> Result<bool> {
        if grantee_ids.is_empty() {
            return Ok(false);
        }
        let mut builder = Builder::new("SELECT COUNT(*) FROM workspace_members WHERE workspace = ");
        builder.push_bind(workspace.to_string());
        builder.push(" AND principal_id IN ");
        push_in_list(&mut builder, grantee_ids.iter().copied());
        let count: i64 = builder
            .build_query_scalar()
            .fetch_one(&self.read)
            .await
            .map_err(db_error)?;
        Ok(count > 0)
    }
}
