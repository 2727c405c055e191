//! Serving endpoints in the shape of Databricks' serving-endpoints API: served entities naming a
//! registered model by version, alias or stage, a traffic split between them, and where the
//! endpoint's inference table lives.

use serde::{Deserialize, Serialize};

use crate::entities::KeyValue;
use crate::error::{Error, Result};
use crate::registry::Stage;

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingEndpoint {
    pub id: String,
    pub workspace: String,
    pub name: String,
    pub creator: String,
    pub creation_timestamp: i64,
    pub last_updated_timestamp: i64,
    pub config: EndpointConfig,
    /// Bumped by each config update: the runtime reloads when it changes.
    pub config_version: i64,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EndpointConfig {
    #[serde(default)]
    pub served_entities: Vec<ServedEntity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_config: Option<TrafficConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_capture_config: Option<AutoCaptureConfig>,
}

/// A registered model served by the endpoint: one of a version, an alias or a stage. An
/// alias or a stage is followed: the endpoint swaps to the version it points at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServedEntity {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub entity_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_stage: Option<String>,
    /// Accepted for compatibility; tarn scores on its own threads whatever the size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero_enabled: Option<bool>,
}

/// What a served entity asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRef {
    Number(i64),
    Alias(String),
    Stage(Stage),
}

impl ServedEntity {
    pub fn version_ref(&self) -> Result<VersionRef> {
        match (&self.entity_version, &self.entity_alias, &self.entity_stage) {
            (Some(version), None, None) => version
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .map(VersionRef::Number)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "entity_version must be a version number, got {version:?}"
                    ))
                }),
            (None, Some(alias), None) if !alias.trim().is_empty() => {
                Ok(VersionRef::Alias(alias.clone()))
            }
            (None, None, Some(stage)) => Stage::parse(stage)
                .ok()
                .filter(|s| *s != Stage::None)
                .map(VersionRef::Stage)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "entity_stage must be Staging, Production or Archived, got {stage:?}"
                    ))
                }),
            _ => Err(Error::invalid(format!(
                "served entity {:?} needs exactly one of entity_version, entity_alias and entity_stage",
                self.entity_name
            ))),
        }
    }

    /// The entity's name, or the Databricks default `<model>-<version>` (alias or stage).
    fn default_name(&self) -> String {
        let suffix = self
            .entity_version
            .as_deref()
            .or(self.entity_alias.as_deref())
            .or(self.entity_stage.as_deref())
            .unwrap_or_default();
        format!("{}-{}", self.entity_name, suffix)
    }
}

/// A `models:/NAME/VERSION`, `models:/NAME@ALIAS` or `models:/NAME/STAGE` URI.
pub fn parse_model_uri(uri: &str) -> Result<(String, VersionRef)> {
    let bad = || {
        Error::invalid(format!(
            "{uri:?} is not models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME/STAGE"
        ))
    };
    let rest = uri.strip_prefix("models:/").ok_or_else(bad)?;
    if let Some((name, alias)) = rest.split_once('@') {
        if name.is_empty() || alias.is_empty() || alias.contains('/') {
            return Err(bad());
        }
        return Ok((name.to_string(), VersionRef::Alias(alias.to_string())));
    }
    let (name, which) = rest.rsplit_once('/').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    if let Ok(version) = which.parse::<i64>() {
        return if version > 0 {
            Ok((name.to_string(), VersionRef::Number(version)))
        } else {
            Err(bad())
        };
    }
    match Stage::parse(which) {
        Ok(stage) if stage != Stage::None => Ok((name.to_string(), VersionRef::Stage(stage))),
        _ => Err(bad()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrafficConfig {
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub served_entity_name: String,
    pub traffic_percentage: u32,
}

/// Where requests and responses are logged: `<catalog>.<schema>.<prefix>_payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoCaptureConfig {
    #[serde(default)]
    pub catalog_name: String,
    #[serde(default)]
    pub schema_name: String,
    #[serde(default)]
    pub table_name_prefix: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// tarn's: where the ground truth for the endpoint's predictions arrives, joined into
    /// `<prefix>_predictions` as it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<InferenceLabels>,
}

fn enabled() -> bool {
    true
}

impl AutoCaptureConfig {
    /// The table of requests and responses as they came.
    pub fn table_name(&self) -> String {
        format!("{}_payload", self.table_name_prefix)
    }

    /// The table of one row per scored row, unpacked from the payload table.
    pub fn predictions_table_name(&self) -> String {
        format!("{}_predictions", self.table_name_prefix)
    }
}

/// A label table joined into an endpoint's predictions: its rows match predictions on
/// `join_columns` (columns of both tables: a request field such as a transaction id, or
/// `client_request_id`, `request_id` and `row_index`) and carry the true outcome in
/// `label_column`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceLabels {
    /// `catalog.schema.table`.
    pub table_name: String,
    pub join_columns: Vec<String>,
    #[serde(default = "default_label_column")]
    pub label_column: String,
}

fn default_label_column() -> String {
    "label".to_string()
}

impl InferenceLabels {
    fn check(&self) -> Result<()> {
        crate::catalog::parse_table_name(&self.table_name).map_err(|_| {
            Error::invalid(format!(
                "labels.table_name must be catalog.schema.table, got {:?}",
                self.table_name
            ))
        })?;
        if self.join_columns.is_empty() {
            return Err(Error::invalid(
                "labels.join_columns must name at least one column",
            ));
        }
        let columns = self.join_columns.iter().chain([&self.label_column]);
        for (i, name) in columns.enumerate() {
            if name.trim().is_empty() {
                return Err(Error::invalid("labels' column names cannot be empty"));
            }
            if self.join_columns[..i.min(self.join_columns.len())].contains(name) {
                return Err(Error::invalid(format!(
                    "labels name the column {name:?} twice"
                )));
            }
        }
        if self.join_columns.iter().any(|c| c == "label") {
            return Err(Error::invalid(
                "labels.join_columns cannot include label, the predictions' label column",
            ));
        }
        Ok(())
    }
}

/// Endpoint names: Databricks allows letters, digits, `-` and `_`, up to 63 characters.
pub fn validate_endpoint_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(Error::invalid(format!(
            "endpoint name {name:?} must be 1 to 63 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

impl EndpointConfig {
    /// Checks the config and fills in what Databricks defaults: entity names, an even traffic
    /// split, and the inference table (`<workspace>.inference.<endpoint>_payload`).
    pub fn normalized(mut self, workspace: &str, endpoint: &str) -> Result<EndpointConfig> {
        if self.served_entities.is_empty() {
            return Err(Error::invalid(
                "config.served_entities must name at least one model",
            ));
        }
        if self.served_entities.len() > 10 {
            return Err(Error::invalid("an endpoint serves at most 10 entities"));
        }
        for entity in &mut self.served_entities {
            if entity.entity_name.trim().is_empty() {
                return Err(Error::invalid("each served entity needs entity_name"));
            }
            entity.version_ref()?;
            if entity.name.is_empty() {
                entity.name = entity.default_name();
            }
        }
        let names: Vec<&str> = self
            .served_entities
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        if let Some(duplicate) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
        {
            return Err(Error::invalid(format!(
                "two served entities are named {:?}",
                duplicate.1
            )));
        }
        let routes = match self.traffic_config.take() {
            Some(traffic) if !traffic.routes.is_empty() => traffic.routes,
            _ => even_split(&names),
        };
        for route in &routes {
            if !names.contains(&route.served_entity_name.as_str()) {
                return Err(Error::invalid(format!(
                    "traffic route to {:?}, which is not a served entity",
                    route.served_entity_name
                )));
            }
        }
        let total: u32 = routes.iter().map(|r| r.traffic_percentage).sum();
        if total != 100 {
            return Err(Error::invalid(format!(
                "traffic percentages add up to {total}, not 100"
            )));
        }
        self.traffic_config = Some(TrafficConfig { routes });
        let mut capture = self
            .auto_capture_config
            .take()
            .unwrap_or(AutoCaptureConfig {
                catalog_name: String::new(),
                schema_name: String::new(),
                table_name_prefix: String::new(),
                enabled: true,
                labels: None,
            });
        if capture.catalog_name.is_empty() {
            capture.catalog_name = workspace.to_string();
        }
        if capture.schema_name.is_empty() {
            capture.schema_name = "inference".to_string();
        }
        if capture.table_name_prefix.is_empty() {
            capture.table_name_prefix = endpoint.replace('-', "_");
        }
        if capture.catalog_name != workspace {
            return Err(Error::invalid(format!(
                "the inference table must be in the endpoint's workspace catalog {workspace:?}"
            )));
        }
        if let Some(labels) = &capture.labels {
            labels.check()?;
        }
        self.auto_capture_config = Some(capture);
        Ok(self)
    }
}

fn even_split(names: &[&str]) -> Vec<Route> {
    let share = 100 / names.len() as u32;
    let remainder = 100 - share * names.len() as u32;
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Route {
            served_entity_name: name.to_string(),
            traffic_percentage: share + u32::from(i == 0) * remainder,
        })
        .collect()
}

/// Picks the route for a number in 0..100 (a request's draw), by cumulative percentage.
pub fn pick_route(routes: &[Route], draw: u32) -> Option<&str> {
    let mut cumulative = 0;
    routes.iter().find_map(|route| {
        cumulative += route.traffic_percentage;
        (draw < cumulative).then_some(route.served_entity_name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(model: &str, version: &str) -> ServedEntity {
        ServedEntity {
            entity_name: model.into(),
            entity_version: Some(version.into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_names_traffic_and_inference_table() {
        let config = EndpointConfig {
            served_entities: vec![
                entity("fraud", "1"),
                entity("fraud", "2"),
                entity("fraud", "3"),
            ],
            ..Default::default()
        }
        .normalized("prod", "fraud-api")
        .expect("valid");
        let routes = &config.traffic_config.as_ref().expect("routes").routes;
        assert_eq!(
            routes
                .iter()
                .map(|r| r.traffic_percentage)
                .collect::<Vec<_>>(),
            vec![34, 33, 33]
        );
        assert_eq!(config.served_entities[1].name, "fraud-2");
        let capture = config.auto_capture_config.expect("capture");
        assert_eq!(
            (
                capture.catalog_name.as_str(),
                capture.schema_name.as_str(),
                capture.table_name().as_str()
            ),
            ("prod", "inference", "fraud_api_payload")
        );
        assert_eq!(pick_route(routes, 0), Some("fraud-1"));
        assert_eq!(pick_route(routes, 34), Some("fraud-2"));
        assert_eq!(pick_route(routes, 99), Some("fraud-3"));
    }

    #[test]
    fn model_uris() {
        assert_eq!(
            parse_model_uri("models:/fraud/3").expect("version"),
            ("fraud".into(), VersionRef::Number(3))
        );
        assert_eq!(
            parse_model_uri("models:/fraud@champion").expect("alias"),
            ("fraud".into(), VersionRef::Alias("champion".into()))
        );
        assert_eq!(
            parse_model_uri("models:/fraud/production").expect("stage"),
            ("fraud".into(), VersionRef::Stage(Stage::Production))
        );
        for bad in [
            "runs:/x/model",
            "models:/fraud",
            "models:/fraud/0",
            "models:/@a",
            "models:/fraud/None",
            "models:/f@a/b",
        ] {
            assert!(parse_model_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_bad_configs() {
        let bad =
            |config: EndpointConfig| config.normalized("dev", "e").expect_err("refused").message;
        assert!(bad(EndpointConfig::default()).contains("at least one"));
        let both = ServedEntity {
            entity_alias: Some("champion".into()),
            ..entity("m", "1")
        };
        assert!(
            bad(EndpointConfig {
                served_entities: vec![both],
                ..Default::default()
            })
            .contains("exactly one")
        );
        let traffic = TrafficConfig {
            routes: vec![Route {
                served_entity_name: "m-1".into(),
                traffic_percentage: 90,
            }],
        };
        assert!(
            bad(EndpointConfig {
                served_entities: vec![entity("m", "1")],
                traffic_config: Some(traffic),
                ..Default::default()
            })
            .contains("90")
        );
        assert!(
            bad(EndpointConfig {
                served_entities: vec![entity("m", "x")],
                ..Default::default()
            })
            .contains("version number")
        );
        assert!(validate_endpoint_name("a/b").is_err());
        assert!(validate_endpoint_name("fraud-api_2").is_ok());
    }
}
