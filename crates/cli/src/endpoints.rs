//! `tarn endpoints ...`: serving endpoints through the Databricks serving API: list, show,
//! create and update (a model version, alias or stage, or a whole config file), delete, and
//! query with a scoring payload.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, path_segment as segment, text};

#[derive(Subcommand)]
pub enum EndpointsCommand {
    /// List endpoints: state, what each serves and its traffic.
    List,
    /// One endpoint: its config, state, served versions and inference table.
    Show { name: String },
    /// Create an endpoint serving one registered model (or from a config file).
    Create {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Point an endpoint at another version (or a new config file); replicas roll to it.
    Update {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete an endpoint.
    Delete { name: String },
    /// Score a payload (`dataframe_split`, `dataframe_records`, `instances` or `inputs`)
    /// from a file, or standard input with `-`; prints the predictions.
    Query {
        name: String,
        /// The JSON payload file, or `-` for standard input.
        #[arg(long, default_value = "-")]
        input: PathBuf,
    },
}

/// What an endpoint serves: one model by version, alias or stage, or a whole config.
#[derive(Args)]
pub struct ConfigArgs {
    /// The registered model to serve.
    #[arg(long, required_unless_present = "config_file")]
    model: Option<String>,
    /// Its version.
    #[arg(long, conflicts_with_all = ["alias", "stage"])]
    version: Option<String>,
    /// Serve the version an alias points at, following it when it moves.
    #[arg(long, conflicts_with = "stage")]
    alias: Option<String>,
    /// Serve the latest version in a stage, following it.
    #[arg(long)]
    stage: Option<String>,
    /// Log every request and response to `CATALOG.SCHEMA.PREFIX_payload`.
    #[arg(long, value_name = "CATALOG.SCHEMA.PREFIX")]
    inference_table: Option<String>,
    /// A config in the Databricks shape (`served_entities`, `traffic_config`,
    /// `auto_capture_config`) instead of the flags.
    #[arg(long, conflicts_with = "model")]
    config_file: Option<PathBuf>,
}

impl ConfigArgs {
    fn config(&self) -> Result<Value> {
        if let Some(file) = &self.config_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            return serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()));
        }
        let model = self.model.as_deref().context("--model or --config-file")?;
        let mut entity = json!({"entity_name": model});
        match (&self.version, &self.alias, &self.stage) {
            (Some(version), ..) => entity["entity_version"] = json!(version),
            (_, Some(alias), _) => entity["entity_alias"] = json!(alias),
            (.., Some(stage)) => entity["entity_stage"] = json!(stage),
            _ => bail!("say what to serve: --version, --alias or --stage"),
        }
        let mut config = json!({"served_entities": [entity]});
        if let Some(table) = &self.inference_table {
            let parts: Vec<&str> = table.split('.').collect();
            let [catalog, schema, prefix] = parts[..] else {
                bail!("--inference-table takes CATALOG.SCHEMA.PREFIX: {table}");
            };
            config["auto_capture_config"] = json!({
                "catalog_name": catalog,
                "schema_name": schema,
                "table_name_prefix": prefix,
                "enabled": true,
            });
        }
        Ok(config)
    }
}

const ENDPOINTS: &str = "/api/2.0/serving-endpoints";

/// What an endpoint serves, as `model@version 80%, model@champion 20%`.
fn served(endpoint: &Value) -> String {
    let config = &endpoint["config"];
    let routes = config["traffic_config"]["routes"].as_array();
    config["served_entities"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entity| {
            let pointer = ["entity_version", "entity_alias", "entity_stage"]
                .iter()
                .find_map(|key| entity[*key].as_str())
                .unwrap_or("?");
            let mut described = format!("{}@{pointer}", text(&entity["entity_name"]));
            if let Some(version) = entity["served_version"].as_str()
                && version != pointer
            {
                described.push_str(&format!(" (v{version})"));
            }
            let share = routes.and_then(|routes| {
                routes
                    .iter()
                    .find(|r| r["served_entity_name"] == entity["name"])
                    .and_then(|r| r["traffic_percentage"].as_u64())
            });
            if let Some(share) = share {
                described.push_str(&format!(" {share}%"));
            }
            described
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn state(endpoint: &Value) -> String {
    let state = &endpoint["state"];
    format!(
        "{}/{}",
        text(&state["ready"]),
        text(&state["config_update"])
    )
}

pub async fn run(client: &Client, command: EndpointsCommand) -> Result<()> {
    match command {
        EndpointsCommand::List => {
            let listed = client.get(ENDPOINTS, &[]).await?;
            println!("{:<28} {:<26} SERVING", "NAME", "STATE");
            for endpoint in listed["endpoints"].as_array().into_iter().flatten() {
                println!(
                    "{:<28} {:<26} {}",
                    text(&endpoint["name"]),
                    state(endpoint),
                    served(endpoint)
                );
            }
        }
        EndpointsCommand::Show { name } => {
            let endpoint = client
                .get(&format!("{ENDPOINTS}/{}", segment(&name)), &[])
                .await?;
            println!("endpoint         {}", text(&endpoint["name"]));
            println!("state            {}", state(&endpoint));
            if let Some(message) = endpoint["state"]["update_failure_message"].as_str() {
                println!("update failed    {message}");
            }
            println!("serving          {}", served(&endpoint));
            println!("config version   {}", endpoint["config"]["config_version"]);
            println!("creator          {}", text(&endpoint["creator"]));
            if let Some(table) = endpoint["inference_table"].as_str() {
                println!("inference table  {table}");
            }
            println!(
                "invocations      {}/serving-endpoints/{}/invocations",
                client.url(""),
                segment(&name)
            );
        }
        EndpointsCommand::Create { name, config } => {
            let created = client
                .post(
                    ENDPOINTS,
                    &json!({"name": name, "config": config.config()?}),
                )
                .await?;
            println!(
                "created endpoint {} serving {}",
                text(&created["name"]),
                served(&created)
            );
        }
        EndpointsCommand::Update { name, config } => {
            let updated = client
                .put(
                    &format!("{ENDPOINTS}/{}/config", segment(&name)),
                    &config.config()?,
                )
                .await?;
            println!("endpoint {name} now serves {}", served(&updated));
        }
        EndpointsCommand::Delete { name } => {
            client
                .delete(&format!("{ENDPOINTS}/{}", segment(&name)), &[])
                .await?;
            println!("deleted endpoint {name}");
        }
        EndpointsCommand::Query { name, input } => {
            let payload = if input.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("cannot read the payload from standard input")?
            } else {
                std::fs::read_to_string(&input)
                    .with_context(|| format!("cannot read {}", input.display()))?
            };
            let payload: Value =
                serde_json::from_str(&payload).context("the payload is not JSON")?;
            let answer = client
                .post(
                    &format!("/serving-endpoints/{}/invocations", segment(&name)),
                    &payload,
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}
