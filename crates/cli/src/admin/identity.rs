//! `tarn admin users|groups|service-principals|workspaces|tokens`: the identity commands on the
//! metadata store directly, with the data directory's authority: the first admin, and a way
//! back in when no admin can sign in.

use anyhow::{Context, Result};
use tarn_core::auth::PrincipalKind;
use tarn_core::store::{MetaStore, PrincipalRecord};

use crate::identity::{
    GroupsCommand, PrincipalRow, ServicePrincipalsCommand, TokenRow, TokensCommand, UsersCommand,
    WorkspacesCommand, print_principals, print_tokens,
};
use crate::local::cli_actor;

fn rows(principals: &[PrincipalRecord]) -> Vec<PrincipalRow> {
    principals
        .iter()
        .map(|p| PrincipalRow {
            name: p.name.clone(),
            kind: p.kind.as_str().to_string(),
            is_admin: p.is_admin,
            active: p.active,
        })
        .collect()
}

async fn create(
    store: &dyn MetaStore,
    name: &str,
    kind: PrincipalKind,
    admin: bool,
    password: Option<&str>,
) -> Result<PrincipalRecord> {
    Ok(
        tarn_identity::create_principal(store, name, kind, admin, password, &cli_actor().name)
            .await?,
    )
}

pub async fn users(store: &dyn MetaStore, command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Create {
            name,
            password,
            admin,
        } => {
            let user = create(
                store,
                &name,
                PrincipalKind::User,
                admin,
                password.as_deref(),
            )
            .await?;
            println!(
                "created user {} (id {}){}",
                user.name,
                user.id,
                if admin { " as admin" } else { "" }
            );
        }
        UsersCommand::List => print_principals(&rows(&store.list_principals(None).await?)),
        UsersCommand::SetPassword { name, password } => {
            store
                .set_password_hash(
                    &name,
                    &tarn_identity::hash_password(&password)?,
                    &cli_actor().name,
                )
                .await?;
            println!("password set for {name}");
        }
        UsersCommand::Deactivate { name } => {
            store.set_active(&name, false, &cli_actor().name).await?;
            println!("deactivated {name}");
        }
    }
    Ok(())
}

pub async fn groups(store: &dyn MetaStore, command: GroupsCommand) -> Result<()> {
    match command {
        GroupsCommand::Create { name } => {
            let group = create(store, &name, PrincipalKind::Group, false, None).await?;
            println!("created group {} (id {})", group.name, group.id);
        }
        GroupsCommand::AddMember { group, member } => {
            store
                .add_group_member(&group, &member, &cli_actor().name)
                .await?;
            println!("added {member} to {group}");
        }
        GroupsCommand::RemoveMember { group, member } => {
            store
                .remove_group_member(&group, &member, &cli_actor().name)
                .await?;
            println!("removed {member} from {group}");
        }
        GroupsCommand::Members { group } => {
            print_principals(&rows(&store.group_members(&group).await?))
        }
    }
    Ok(())
}

pub async fn service_principals(
    store: &dyn MetaStore,
    command: ServicePrincipalsCommand,
) -> Result<()> {
    match command {
        ServicePrincipalsCommand::Create { name } => {
            let sp = create(store, &name, PrincipalKind::ServicePrincipal, false, None).await?;
            println!("created service principal {} (id {})", sp.name, sp.id);
        }
    }
    Ok(())
}

pub async fn workspaces(store: &dyn MetaStore, command: WorkspacesCommand) -> Result<()> {
    match command {
        WorkspacesCommand::List => {
            for workspace in store.list_workspaces().await? {
                println!("{workspace}");
            }
        }
        WorkspacesCommand::AddMember {
            workspace,
            principal,
        } => {
            store
                .add_workspace_member(&workspace, &principal, &cli_actor().name)
                .await?;
            println!("{principal} is a member of {workspace}");
        }
        WorkspacesCommand::RemoveMember {
            workspace,
            principal,
        } => {
            store
                .remove_workspace_member(&workspace, &principal, &cli_actor().name)
                .await?;
            println!("{principal} is no longer a member of {workspace}");
        }
        WorkspacesCommand::Members { workspace } => {
            print_principals(&rows(&store.workspace_members(&workspace).await?))
        }
    }
    Ok(())
}

pub async fn tokens(store: &dyn MetaStore, command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create {
            principal,
            lifetime_seconds,
            comment,
            only_workspace,
        } => {
            let principal = principal.context(
                "name the principal the token is for (`tarn admin` acts for no one itself)",
            )?;
            let (info, secret) = tarn_identity::issue_token(
                store,
                &principal,
                &comment,
                lifetime_seconds,
                only_workspace.as_deref(),
                &cli_actor().name,
            )
            .await?;
            eprintln!(
                "token {} for {} (shown once):",
                info.token_id, info.principal_name
            );
            println!("{secret}");
        }
        // Offline, every token is listed: there is no caller to narrow the list to.
        TokensCommand::List { principal, .. } => {
            let tokens = store.list_tokens(principal.as_deref()).await?;
            let rows: Vec<TokenRow> = tokens
                .into_iter()
                .map(|t| TokenRow {
                    token_id: t.token_id,
                    principal: t.principal_name,
                    workspace: t.workspace,
                    expires_at: t.expires_at,
                    comment: t.comment,
                })
                .collect();
            print_tokens(&rows);
        }
        TokensCommand::Revoke { token_id } => {
            store.revoke_token(&token_id, &cli_actor().name).await?;
            println!("revoked {token_id}");
        }
    }
    Ok(())
}
