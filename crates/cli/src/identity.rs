//! `tarn users|groups|service-principals|workspaces|tokens|permissions`: principals, their
//! memberships, tokens and grants. The commands are declared once; the client runs them
//! through the server as the token's principal (here), `tarn admin` on the metadata store
//! directly for the first admin and for recovery (`admin::identity`).

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, path_segment as segment, text};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user (with a password for HTTP basic auth).
    Create {
        name: String,
        #[arg(long, env = "TARN_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// List users, groups and service principals.
    List,
    /// Set a user's password.
    SetPassword {
        name: String,
        #[arg(long, env = "TARN_NEW_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Deactivate a principal: its tokens and password stop working.
    Deactivate { name: String },
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    Create { name: String },
    AddMember { group: String, member: String },
    RemoveMember { group: String, member: String },
    Members { group: String },
}

#[derive(Subcommand)]
pub enum ServicePrincipalsCommand {
    Create { name: String },
}

#[derive(Subcommand)]
pub enum WorkspacesCommand {
    List,
    AddMember {
        workspace: String,
        principal: String,
    },
    RemoveMember {
        workspace: String,
        principal: String,
    },
    Members {
        workspace: String,
    },
}

#[derive(Subcommand)]
pub enum TokensCommand {
    /// Issue a token (for yourself, or as an admin for PRINCIPAL); the secret is printed once.
    Create {
        principal: Option<String>,
        #[arg(long)]
        lifetime_seconds: Option<i64>,
        #[arg(long, default_value = "")]
        comment: String,
        /// Limit the token to one workspace (default: every one the principal belongs to).
        #[arg(long = "only-workspace")]
        only_workspace: Option<String>,
    },
    /// List your tokens, or (as an admin) everyone's or one principal's.
    List {
        #[arg(long)]
        principal: Option<String>,
        /// Every principal's tokens.
        #[arg(long, conflicts_with = "principal")]
        all: bool,
    },
    Revoke {
        token_id: String,
    },
}

#[derive(Subcommand)]
pub enum PermissionsCommand {
    /// Grant a level on an object (adds to or raises grants).
    Grant {
        #[command(flatten)]
        object: ObjectArg,
        #[arg(long)]
        principal: String,
        /// Experiments: CAN_READ, CAN_EDIT, CAN_MANAGE. Registered models also
        /// CAN_MANAGE_STAGING_VERSIONS and CAN_MANAGE_PRODUCTION_VERSIONS. Jobs: CAN_VIEW,
        /// CAN_MANAGE_RUN, IS_OWNER, CAN_MANAGE. Serving endpoints: CAN_VIEW, CAN_QUERY,
        /// CAN_MANAGE.
        #[arg(long)]
        level: String,
    },
    /// Show who holds which level on an object.
    Show {
        #[command(flatten)]
        object: ObjectArg,
    },
}

/// The securable object a permissions command names, in the connection's workspace.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct ObjectArg {
    /// An experiment id.
    #[arg(long)]
    experiment: Option<String>,
    /// A registered model's name.
    #[arg(long)]
    model: Option<String>,
    /// A job id.
    #[arg(long)]
    job: Option<i64>,
    /// A serving endpoint's name.
    #[arg(long)]
    endpoint: Option<String>,
}

impl ObjectArg {
    /// The permissions API's path for the object, after finding its id.
    async fn path(&self, client: &Client) -> Result<String> {
        let (kind, id) = if let Some(id) = &self.experiment {
            ("experiments", id.clone())
        } else if let Some(name) = &self.model {
            let model = client
                .get(
                    "/api/2.0/mlflow/databricks/registered-models/get",
                    &[("name", name.clone())],
                )
                .await?;
            let id = model["registered_model_databricks"]["id"]
                .as_str()
                .context("the server answered a registered model without its id")?;
            ("registered-models", id.to_string())
        } else if let Some(id) = self.job {
            ("jobs", id.to_string())
        } else if let Some(name) = &self.endpoint {
            let endpoint = client
                .get(
                    &format!("/api/2.0/serving-endpoints/{}", segment(name)),
                    &[],
                )
                .await?;
            let id = endpoint["id"]
                .as_str()
                .context("the server answered an endpoint without its id")?;
            ("serving-endpoints", id.to_string())
        } else {
            bail!("name an object: --experiment, --model, --job or --endpoint");
        };
        Ok(format!("/api/2.0/permissions/{kind}/{}", segment(&id)))
    }

    fn describe(&self) -> String {
        match (&self.experiment, &self.model, self.job, &self.endpoint) {
            (Some(id), ..) => format!("experiment {id}"),
            (_, Some(name), ..) => format!("registered model {name}"),
            (_, _, Some(id), _) => format!("job {id}"),
            (.., Some(name)) => format!("serving endpoint {name}"),
            _ => "the object".to_string(),
        }
    }
}

/// One principal as the server describes it, for the listings.
pub struct PrincipalRow {
    pub name: String,
    pub kind: String,
    pub is_admin: bool,
    pub active: bool,
}

pub fn print_principals(principals: &[PrincipalRow]) {
    println!(
        "{:<24} {:<18} {:<6} {:<6}",
        "NAME", "KIND", "ADMIN", "ACTIVE"
    );
    for p in principals {
        println!(
            "{:<24} {:<18} {:<6} {:<6}",
            p.name, p.kind, p.is_admin, p.active
        );
    }
}

/// Tokens as `tarn tokens list` prints them: id, owner, workspace limit, expiry, comment.
pub fn print_tokens(tokens: &[TokenRow]) {
    println!(
        "{:<18} {:<20} {:<12} {:<24} COMMENT",
        "TOKEN ID", "PRINCIPAL", "WORKSPACE", "EXPIRES"
    );
    for t in tokens {
        println!(
            "{:<18} {:<20} {:<12} {:<24} {}",
            t.token_id,
            t.principal,
            t.workspace.as_deref().unwrap_or("any"),
            t.expires_at
                .map_or_else(|| "never".to_string(), tarn_lake::format_timestamp),
            t.comment
        );
    }
}

pub struct TokenRow {
    pub token_id: String,
    pub principal: String,
    pub workspace: Option<String>,
    pub expires_at: Option<i64>,
    pub comment: String,
}

fn principal_rows(list: &Value) -> Vec<PrincipalRow> {
    list.as_array()
        .map(|principals| {
            principals
                .iter()
                .map(|p| PrincipalRow {
                    name: text(&p["name"]),
                    kind: text(&p["kind"]),
                    is_admin: p["is_admin"].as_bool().unwrap_or(false),
                    active: p["active"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every principal, as an admin sees them.
async fn all_principals(client: &Client) -> Result<Vec<PrincipalRow>> {
    let listed = client.get("/api/2.0/tarn/users", &[]).await?;
    Ok(principal_rows(&listed["principals"]))
}

/// The SCIM resource (`Users/12`) of a user or service principal with that name.
async fn scim_resource(client: &Client, name: &str) -> Result<String> {
    for (collection, attribute) in [
        ("Users", "userName"),
        ("ServicePrincipals", "applicationId"),
    ] {
        let found = client
            .get(
                &format!("/api/2.0/preview/scim/v2/{collection}"),
                &[("filter", format!("{attribute} eq {}", json!(name)))],
            )
            .await?;
        if let Some(id) = found["Resources"][0]["id"].as_str() {
            return Ok(format!("{collection}/{id}"));
        }
    }
    bail!("no user or service principal named {name}")
}

async fn scim_group(client: &Client, name: &str) -> Result<Value> {
    let found = client
        .get(
            "/api/2.0/preview/scim/v2/Groups",
            &[("filter", format!("displayName eq {}", json!(name)))],
        )
        .await?;
    found["Resources"][0]
        .as_object()
        .map(|g| Value::Object(g.clone()))
        .with_context(|| format!("no group named {name}"))
}

async fn scim_patch(client: &Client, resource: &str, operations: Value) -> Result<()> {
    client
        .patch(
            &format!("/api/2.0/preview/scim/v2/{resource}"),
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": operations,
            }),
        )
        .await?;
    Ok(())
}

pub async fn users(client: &Client, command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Create {
            name,
            password,
            admin,
        } => {
            let created = client
                .post(
                    "/api/2.0/tarn/users",
                    &json!({"name": name, "password": password, "admin": admin}),
                )
                .await?;
            println!(
                "created user {} (id {}){}",
                text(&created["user"]["name"]),
                created["user"]["id"],
                if admin { " as admin" } else { "" }
            );
        }
        UsersCommand::List => print_principals(&all_principals(client).await?),
        UsersCommand::SetPassword { name, password } => {
            let resource = scim_resource(client, &name).await?;
            scim_patch(
                client,
                &resource,
                json!([{"op": "replace", "path": "password", "value": password}]),
            )
            .await?;
            println!("password set for {name}");
        }
        UsersCommand::Deactivate { name } => {
            let resource = scim_resource(client, &name).await?;
            scim_patch(
                client,
                &resource,
                json!([{"op": "replace", "path": "active", "value": false}]),
            )
            .await?;
            println!("deactivated {name}");
        }
    }
    Ok(())
}

pub async fn groups(client: &Client, command: GroupsCommand) -> Result<()> {
    match command {
        GroupsCommand::Create { name } => {
            let created = client
                .post("/api/2.0/tarn/groups", &json!({"name": name}))
                .await?;
            println!(
                "created group {} (id {})",
                text(&created["group"]["name"]),
                created["group"]["id"]
            );
        }
        GroupsCommand::AddMember { group, member } => {
            client
                .post(
                    "/api/2.0/tarn/groups/members",
                    &json!({"group": group, "member": member}),
                )
                .await?;
            println!("added {member} to {group}");
        }
        GroupsCommand::RemoveMember { group, member } => {
            let found = scim_group(client, &group).await?;
            let id = text(&found["id"]);
            let member_id = found["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["display"].as_str() == Some(member.as_str()))
                .and_then(|m| m["value"].as_str())
                .with_context(|| format!("{member} is not a member of {group}"))?;
            scim_patch(
                client,
                &format!("Groups/{id}"),
                json!([{"op": "remove", "path": format!("members[value eq \"{member_id}\"]")}]),
            )
            .await?;
            println!("removed {member} from {group}");
        }
        GroupsCommand::Members { group } => {
            let found = scim_group(client, &group).await?;
            let names: Vec<&str> = found["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["display"].as_str())
                .collect();
            let members: Vec<PrincipalRow> = all_principals(client)
                .await?
                .into_iter()
                .filter(|p| names.contains(&p.name.as_str()))
                .collect();
            print_principals(&members);
        }
    }
    Ok(())
}

pub async fn service_principals(client: &Client, command: ServicePrincipalsCommand) -> Result<()> {
    match command {
        ServicePrincipalsCommand::Create { name } => {
            let created = client
                .post("/api/2.0/tarn/service-principals", &json!({"name": name}))
                .await?;
            println!(
                "created service principal {} (id {})",
                text(&created["service_principal"]["name"]),
                created["service_principal"]["id"]
            );
        }
    }
    Ok(())
}

pub async fn workspaces(client: &Client, command: WorkspacesCommand) -> Result<()> {
    const MEMBERS: &str = "/api/2.0/tarn/workspace/members";
    match command {
        // The workspaces a caller can see are the catalogs it may read.
        WorkspacesCommand::List => {
            let catalogs = client.get("/api/2.1/unity-catalog/catalogs", &[]).await?;
            for catalog in catalogs["catalogs"].as_array().into_iter().flatten() {
                println!("{}", text(&catalog["name"]));
            }
        }
        WorkspacesCommand::AddMember {
            workspace,
            principal,
        } => {
            client
                .in_workspace(&workspace)
                .post(MEMBERS, &json!({"principal": principal}))
                .await?;
            println!("{principal} is a member of {workspace}");
        }
        WorkspacesCommand::RemoveMember {
            workspace,
            principal,
        } => {
            client
                .send(
                    client
                        .in_workspace(&workspace)
                        .request(reqwest::Method::DELETE, MEMBERS)
                        .json(&json!({"principal": principal})),
                )
                .await?;
            println!("{principal} is no longer a member of {workspace}");
        }
        WorkspacesCommand::Members { workspace } => {
            let listed = client.in_workspace(&workspace).get(MEMBERS, &[]).await?;
            print_principals(&principal_rows(&listed["members"]));
        }
    }
    Ok(())
}

fn token_rows(listed: &Value) -> Vec<TokenRow> {
    listed["token_infos"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| TokenRow {
            token_id: text(&t["token_id"]),
            principal: text(&t["principal"]),
            workspace: t["workspace"].as_str().map(str::to_string),
            expires_at: t["expiry_time"].as_i64().filter(|e| *e >= 0),
            comment: text(&t["comment"]),
        })
        .collect()
}

pub async fn tokens(client: &Client, command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create {
            principal,
            lifetime_seconds,
            comment,
            only_workspace,
        } => {
            let mut body = json!({
                "lifetime_seconds": lifetime_seconds,
                "comment": comment,
                "workspace": only_workspace,
            });
            let path = match &principal {
                Some(name) => {
                    body["principal"] = json!(name);
                    "/api/2.0/token-management/on-behalf-of/tokens"
                }
                None => "/api/2.0/token/create",
            };
            let issued = client.post(path, &body).await?;
            eprintln!(
                "token {} for {} (shown once):",
                text(&issued["token_info"]["token_id"]),
                text(&issued["token_info"]["principal"])
            );
            println!("{}", text(&issued["token_value"]));
        }
        TokensCommand::List { principal, all } => {
            let everyone = all || principal.is_some();
            let path = if everyone {
                "/api/2.0/token-management/tokens"
            } else {
                "/api/2.0/token/list"
            };
            let mut rows = token_rows(&client.get(path, &[]).await?);
            if let Some(name) = principal {
                rows.retain(|t| t.principal == name);
            }
            print_tokens(&rows);
        }
        TokensCommand::Revoke { token_id } => {
            client
                .post("/api/2.0/token/delete", &json!({"token_id": token_id}))
                .await?;
            println!("revoked {token_id}");
        }
    }
    Ok(())
}

pub async fn permissions(client: &Client, command: PermissionsCommand) -> Result<()> {
    match command {
        PermissionsCommand::Grant {
            object,
            principal,
            level,
        } => {
            let path = object.path(client).await?;
            client
                .patch(
                    &path,
                    &json!({"access_control_list": [
                        {"user_name": principal, "permission_level": level}
                    ]}),
                )
                .await?;
            println!(
                "{principal} has {level} on {} in {}",
                object.describe(),
                client.workspace()
            );
        }
        PermissionsCommand::Show { object } => {
            let path = object.path(client).await?;
            let acl = client.get(&path, &[]).await?;
            println!("{:<24} {:<18} LEVEL", "PRINCIPAL", "KIND");
            for entry in acl["access_control_list"].as_array().into_iter().flatten() {
                let (kind, name) = [
                    ("user", "user_name"),
                    ("group", "group_name"),
                    ("service_principal", "service_principal_name"),
                ]
                .into_iter()
                .find_map(|(kind, key)| entry[key].as_str().map(|name| (kind, name)))
                .unwrap_or(("?", "?"));
                for level in entry["all_permissions"].as_array().into_iter().flatten() {
                    println!(
                        "{:<24} {:<18} {}",
                        name,
                        kind,
                        text(&level["permission_level"])
                    );
                }
            }
        }
    }
    Ok(())
}
