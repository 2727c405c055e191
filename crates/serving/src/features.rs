//! Feature-aware serving: a model version trained on a training set (its
//! `tarn.training_set_id` tag) is invoked with only its keys and request-time fields. Each
//! request's rows get the features of the training set's lookups from the online store (as the
//! endpoint's owner sees them), the lookup's defaults for keys not found (or too old), and the
//! on-demand features computed by the same code that built the training set; then the model
//! scores them as if they had been sent.

use std::sync::Arc;

use serde_json::{Map, Value};
use tarn_core::caller::Caller;
use tarn_core::features::TrainingSetSpec;
use tarn_core::registry::ModelVersion;
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};
use tarn_features::online::{self, Status};
use tarn_lake::arrow::json::ReaderBuilder;
use tarn_lake::arrow::json::reader::infer_json_schema_from_iterator;
use tarn_models::payload::{Frame, Input};

use crate::context::ServingContext;

/// One lookup of the spec with the feature table's primary keys.
#[derive(Debug, Clone)]
struct Lookup {
    table: String,
    /// Request columns giving the table's primary keys, in the keys' order.
    request_keys: Vec<String>,
    primary_keys: Vec<String>,
    /// (feature as stored, column it becomes); every stored feature when None.
    features: Option<Vec<(String, String)>>,
    renames: std::collections::BTreeMap<String, String>,
    defaults: std::collections::BTreeMap<String, Value>,
}

/// What a model version's training set says to add to each request row.
#[derive(Debug)]
pub struct FeatureSpec {
    lookups: Vec<Lookup>,
    spec: TrainingSetSpec,
}

impl FeatureSpec {
    /// The spec of the training set a version was trained on; None for a version without one.
    pub async fn of_version(
        store: &dyn MetaStore,
        workspace: &str,
        version: &ModelVersion,
    ) -> Result<Option<Arc<FeatureSpec>>> {
        let Some(tag) = version
            .tags
            .iter()
            .find(|t| t.key == tarn_core::features::TRAINING_SET_TAG)
        else {
            return Ok(None);
        };
        let set = store.get_training_set(workspace, &tag.value).await?;
        if set.spec.feature_lookups.is_empty() && set.spec.on_demand_features.is_empty() {
            return Ok(None);
        }
        let mut lookups = Vec::with_capacity(set.spec.feature_lookups.len());
        for lookup in &set.spec.feature_lookups {
            let parts: Vec<&str> = lookup.table_name.split('.').collect();
            let [catalog, schema, name] = parts.as_slice() else {
                return Err(Error::invalid(format!(
                    "feature table {} is not CATALOG.SCHEMA.TABLE",
                    lookup.table_name
                )));
            };
            let table = store.get_feature_table(catalog, schema, name).await?;
            let request_keys = if lookup.lookup_key.is_empty() {
                table.primary_keys.clone()
            } else {
                lookup.lookup_key.clone()
            };
            if request_keys.len() != table.primary_keys.len() {
                return Err(Error::invalid(format!(
                    "the lookup of {} gives {} keys for {} primary keys",
                    lookup.table_name,
                    request_keys.len(),
                    table.primary_keys.len()
                )));
            }
            let features = lookup.feature_names.as_ref().map(|names| {
                names
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            lookup
                                .rename_outputs
                                .get(n)
                                .cloned()
                                .unwrap_or_else(|| n.clone()),
                        )
                    })
                    .collect()
            });
            lookups.push(Lookup {
                table: lookup.table_name.clone(),
                request_keys,
                primary_keys: table.primary_keys,
                features,
                renames: lookup.rename_outputs.clone(),
                defaults: lookup.default_values.clone(),
            });
        }
        Ok(Some(Arc::new(FeatureSpec {
            lookups,
            spec: set.spec,
        })))
    }

    /// Adds the looked-up and on-demand features to a request's rows (a value the request
    /// gives itself is kept); returns the added features per row.
    pub async fn enrich(
        &self,
        context: &ServingContext,
        caller: &Caller,
        input: &mut Input,
    ) -> Result<Vec<Map<String, Value>>> {
        let Input::Frame(frame) = input else {
            return Err(Error::new(
                tarn_core::ErrorCode::BadRequest,
                "this model looks up its features: send dataframe_records or dataframe_split with its keys",
            ));
        };
        let mut added: Vec<Map<String, Value>> = vec![Map::new(); frame.rows.len()];
        for lookup in &self.lookups {
            let positions = lookup
                .request_keys
                .iter()
                .map(|k| {
                    frame.columns.iter().position(|c| c == k).ok_or_else(|| {
                        Error::new(
                            tarn_core::ErrorCode::BadRequest,
                            format!(
                                "Model is missing inputs [{k:?}] (a key of {}).",
                                lookup.table
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let keys: Vec<Map<String, Value>> = frame
                .rows
                .iter()
                .map(|row| {
                    lookup
                        .primary_keys
                        .iter()
                        .zip(&positions)
                        .map(|(pk, at)| (pk.clone(), row[*at].clone()))
                        .collect()
                })
                .collect();
            let request = online::LookupRequest {
                table: &lookup.table,
                keys: &keys,
                ttl: None,
                now: tarn_core::ids::now_millis(),
            };
            let found = online::lookup(
                context.store.as_ref(),
                context.online.as_ref(),
                &context.lookups,
                caller,
                &request,
            )
            .await?;
            for (row, answer) in added.iter_mut().zip(found) {
                let values = match answer.status {
                    Status::Present => answer.values(),
                    Status::NotFound | Status::OutsideMaxAge => Value::Null,
                };
                let stored: Vec<(String, String)> = match &lookup.features {
                    Some(features) => features.clone(),
                    None => values
                        .as_object()
                        .map(|o| {
                            o.keys()
                                .filter(|k| !lookup.primary_keys.contains(k))
                                .map(|k| {
                                    (
                                        k.clone(),
                                        lookup.renames.get(k).cloned().unwrap_or_else(|| k.clone()),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                for (feature, column) in stored {
                    let value = match values.get(&feature) {
                        Some(v) if answer.status == Status::Present => v.clone(),
                        _ => lookup
                            .defaults
                            .get(&column)
                            .or_else(|| lookup.defaults.get(&feature))
                            .cloned()
                            .unwrap_or(Value::Null),
                    };
                    row.insert(column, value);
                }
            }
        }
        add_columns(frame, &added);
        if !self.spec.on_demand_features.is_empty() {
            let before = frame.columns.len();
            on_demand(frame, &self.spec).await?;
            for (row, features) in frame.rows.iter().zip(added.iter_mut()) {
                for (column, value) in frame.columns[before..].iter().zip(&row[before..]) {
                    features.insert(column.clone(), value.clone());
                }
            }
        }
        let excluded: Vec<usize> = frame
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| self.spec.exclude_columns.contains(c))
            .map(|(i, _)| i)
            .collect();
        for at in excluded.into_iter().rev() {
            frame.columns.remove(at);
            frame.rows.iter_mut().for_each(|row| {
                row.remove(at);
            });
        }
        Ok(added)
    }
}

/// Appends the features as columns, unless the request has a column of that name.
fn add_columns(frame: &mut Frame, added: &[Map<String, Value>]) {
    let mut new_columns: Vec<String> = Vec::new();
    for row in added {
        for column in row.keys() {
            if !frame.columns.contains(column) && !new_columns.contains(column) {
                new_columns.push(column.clone());
            }
        }
    }
    for (row, features) in frame.rows.iter_mut().zip(added) {
        row.extend(
            new_columns
                .iter()
                .map(|c| features.get(c).cloned().unwrap_or(Value::Null)),
        );
    }
    frame.columns.extend(new_columns);
}

/// Computes the on-demand features over the rows with the training set's own evaluator.
async fn on_demand(frame: &mut Frame, spec: &TrainingSetSpec) -> Result<()> {
    let records: Vec<Value> = frame
        .rows
        .iter()
        .map(|row| {
            Value::Object(
                frame
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect(),
            )
        })
        .collect();
    let bad = |e: String| {
        Error::new(
            tarn_core::ErrorCode::BadRequest,
            format!("cannot compute on-demand features: {e}"),
        )
    };
    let schema =
        infer_json_schema_from_iterator(records.iter().map(Ok)).map_err(|e| bad(e.to_string()))?;
    let mut decoder = ReaderBuilder::new(Arc::new(schema))
        .build_decoder()
        .map_err(|e| bad(e.to_string()))?;
    decoder
        .serialize(&records)
        .map_err(|e| bad(e.to_string()))?;
    let batch = decoder
        .flush()
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no rows".into()))?;
    let computed =
        tarn_features::ondemand::add_on_demand_features(batch, &spec.on_demand_features).await?;
    let mut writer = tarn_lake::arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&computed).map_err(|e| bad(e.to_string()))?;
    writer.finish().map_err(|e| bad(e.to_string()))?;
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&writer.into_inner()).map_err(|e| bad(e.to_string()))?;
    for feature in &spec.on_demand_features {
        frame.columns.push(feature.name.clone());
        for (row, computed) in frame.rows.iter_mut().zip(&rows) {
            row.push(computed.get(&feature.name).cloned().unwrap_or(Value::Null));
        }
    }
    Ok(())
}
