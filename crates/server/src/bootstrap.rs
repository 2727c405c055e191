//! First start: the workspaces dev, staging and prod, and an admin with a token. The token is
//! `TARN_ADMIN_TOKEN` when given; otherwise one is generated and written to `admin.token`.

use std::path::Path;

use tarn_core::auth::PrincipalKind;
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};

pub const WORKSPACES: [&str; 3] = ["dev", "staging", "prod"];
pub const ADMIN_USER: &str = "admin";

/// What bootstrap did, for the start-up message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// The admin token when this start created it (shown once).
    pub generated_admin_token: Option<String>,
    pub admin_token_file: Option<std::path::PathBuf>,
}

/// Whom the audit trail names for what start-up creates.
const SYSTEM: &str = "system";

pub async fn bootstrap(
    store: &dyn MetaStore,
    data_dir: &Path,
    admin_token: Option<&str>,
) -> Result<Bootstrap> {
    let mut created: Vec<&str> = Vec::new();
    for workspace in WORKSPACES {
        if store.ensure_workspace(workspace, SYSTEM).await? {
            tracing::info!(workspace, "created workspace");
            created.push(workspace);
        }
    }
    // The reference architecture's data access: development and staging read production
    // data, never write it. Bound once, when prod is created; admins change it later.
    if created.contains(&"prod") {
        let system = tarn_core::registry::Actor {
            id: 0,
            name: SYSTEM.into(),
        };
        for reader in ["dev", "staging"] {
            store
                .set_catalog_binding("prod", reader, true, &system)
                .await?;
        }
    }
    let admin_exists = match store.get_principal(ADMIN_USER).await {
        Ok(_) => true,
        Err(err) if err.code == ErrorCode::ResourceDoesNotExist => false,
        Err(err) => return Err(err),
    };
    if !admin_exists {
        // Replicas started together on a fresh database race to create the admin: the loser
        // finds it made by the winner.
        match store
            .create_principal(ADMIN_USER, PrincipalKind::User, true, None, SYSTEM)
            .await
        {
            Ok(_) => tracing::info!("created admin user"),
            Err(err) if store.get_principal(ADMIN_USER).await.is_ok() => {
                tracing::info!(error = %err.report(), "the admin user was created by another process");
            }
            Err(err) => return Err(err),
        }
    }
    let mut result = Bootstrap {
        generated_admin_token: None,
        admin_token_file: None,
    };
    if let Some(token) = admin_token {
        // A given token always works, also when it changes between starts.
        let hash = tarn_identity::hash_token(token);
        let known = || store.principal_for_token(&hash, tarn_core::ids::now_millis());
        if known().await?.is_none() {
            let (token_id, _) = tarn_identity::new_token();
            let created = store
                .create_token(
                    &tarn_core::store::NewToken {
                        token_id: &token_id,
                        principal_name: ADMIN_USER,
                        token_hash: &hash,
                        comment: "TARN_ADMIN_TOKEN",
                        expires_at: None,
                        workspace: None,
                    },
                    SYSTEM,
                )
                .await;
            // Another replica starting with the same token may have stored it first.
            if let Err(err) = created
                && known().await?.is_none()
            {
                return Err(err);
            }
        }
        return Ok(result);
    }
    let token_file = data_dir.join("admin.token");
    if !token_file.exists() {
        let (_, secret) = tarn_identity::issue_token(
            store,
            ADMIN_USER,
            "generated at first start",
            None,
            None,
            SYSTEM,
        )
        .await?;
        write_private(&token_file, &secret)?;
        result.generated_admin_token = Some(secret);
    }
    result.admin_token_file = Some(token_file);
    Ok(result)
}

fn write_private(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
    file.write_all(content.as_bytes())
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}
