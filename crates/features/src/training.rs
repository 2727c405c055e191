//! Training sets: label rows joined point-in-time with feature lookups, on-demand features
//! computed on the result, every table pinned to the version read so a set can be built again
//! row for row.

use std::collections::BTreeMap;
use std::sync::Arc;

use tarn_core::caller::Caller;
use tarn_core::features::{
    FeatureLookup, FeatureTable, TableVersion, TrainingSet, TrainingSetSpec, parse_duration_micros,
};
use tarn_core::ids::now_millis;
use tarn_core::lineage::{NewLineage, Node, NodeKind};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::arrow::array::{Array, ArrayRef, Scalar, StringArray};
use tarn_lake::arrow::compute::kernels::zip::zip;
use tarn_lake::arrow::compute::{cast, concat_batches, is_null};
use tarn_lake::arrow::datatypes::{DataType, Field, Schema};
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::catalog::{ManagedTable, location_of};
use tarn_lake::{At, Lake, WriteMode, columns_of_arrow};

use crate::ondemand::add_on_demand_features;
use crate::pit::{FeatureIndex, Gather, PARALLEL_MIN_ROWS, joined_column, micros, per_core};
use crate::{creatable_table, readable_table};

/// A built training set: its rows, and the record of how they were made.
#[derive(Debug, Clone)]
pub struct Built {
    pub batch: RecordBatch,
    pub training_set: TrainingSet,
}

/// A feature table ready to join: its metadata and the columns a lookup takes, in the
/// batches they were read in.
struct FeatureRead {
    meta: FeatureTable,
    batches: Vec<RecordBatch>,
}

/// The label rows, one batch, and the tables they came from.
async fn label_rows(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    spec: &mut TrainingSetSpec,
    tables_read: &mut Vec<TableVersion>,
) -> Result<RecordBatch> {
    let (schema, batches) = if let Some(name) = &spec.label.table {
        let table = readable_table(store, caller, name).await?;
        let at = spec.label.version.map_or(At::Latest, At::Version);
        let (schema, batches, version) = lake
            .read_columns(&location_of(&table)?, &table.full_name, at, None)
            .await?;
        spec.label.table = Some(table.full_name.clone());
        spec.label.version = Some(version);
        tables_read.push(TableVersion {
            name: table.full_name,
            version,
        });
        (schema, batches)
    } else {
        let query = spec.label.query.as_deref().unwrap_or_default();
        let output = lake
            .query(store, caller, query, &spec.label.versions)
            .await?;
        for read in &output.reads {
            if let (NodeKind::Table, Some(version)) = (read.node.kind, read.version) {
                spec.label
                    .versions
                    .insert(read.node.name.clone(), version as u64);
                tables_read.push(TableVersion {
                    name: read.node.name.clone(),
                    version: version as u64,
                });
            }
        }
        (output.schema, output.batches)
    };
    concat_batches(&schema, &batches)
        .map_err(|e| Error::internal_from("cannot gather the label rows", e))
}

/// Checks a lookup against its table and fills in what it left to defaults: the lookup key,
/// the features.
fn resolve_lookup(
    lookup: &mut FeatureLookup,
    meta: &FeatureTable,
    columns: &[String],
) -> Result<()> {
    let table = &meta.full_name;
    if lookup.lookup_key.is_empty() {
        lookup.lookup_key = meta.primary_keys.clone();
    }
    if lookup.lookup_key.len() != meta.primary_keys.len() {
        return Err(Error::invalid(format!(
            "The lookup of {table} gives {} lookup key column(s) for its {} primary key(s) ({})",
            lookup.lookup_key.len(),
            meta.primary_keys.len(),
            meta.primary_keys.join(", ")
        )));
    }
    match (&meta.timestamp_key, &lookup.timestamp_lookup_key) {
        (Some(ts), None) => {
            return Err(Error::invalid(format!(
                "{table} is a time-series feature table (timestamp key '{ts}'): its lookup needs timestamp_lookup_key, the label column holding each row's event time"
            )));
        }
        (None, Some(_)) => {
            return Err(Error::invalid(format!(
                "{table} has no timestamp key: leave timestamp_lookup_key and lookback_window out of its lookup"
            )));
        }
        _ => {}
    }
    let is_key = |name: &str| {
        meta.primary_keys.iter().any(|k| k == name) || meta.timestamp_key.as_deref() == Some(name)
    };
    let features = match &lookup.feature_names {
        Some(names) => {
            for name in names {
                if is_key(name) {
                    return Err(Error::invalid(format!(
                        "'{name}' is a key of {table}, not a feature"
                    )));
                }
                if !columns.contains(name) {
                    return Err(Error::invalid(format!(
                        "Feature '{name}' is not a column of {table}"
                    )));
                }
            }
            names.clone()
        }
        None => columns.iter().filter(|c| !is_key(c)).cloned().collect(),
    };
    for name in lookup.rename_outputs.keys() {
        if !features.contains(name) {
            return Err(Error::invalid(format!(
                "rename_outputs names '{name}', which the lookup of {table} does not take"
            )));
        }
    }
    for name in lookup.default_values.keys() {
        let renamed = lookup.rename_outputs.iter().any(|(_, to)| to == name);
        if !features.contains(name) && !renamed {
            return Err(Error::invalid(format!(
                "default_values names '{name}', which the lookup of {table} does not take"
            )));
        }
    }
    lookup.feature_names = Some(features);
    Ok(())
}

/// A default value as a one-row array of the feature's type.
fn default_array(
    value: &serde_json::Value,
    data_type: &DataType,
    feature: &str,
) -> Result<ArrayRef> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let parsed = cast(&StringArray::from(vec![text.clone()]), data_type)
        .ok()
        .filter(|a| a.is_valid(0));
    parsed.ok_or_else(|| {
        Error::invalid(format!(
            "Default value {text} of feature '{feature}' is not a {data_type}"
        ))
    })
}

/// Joins one lookup's features onto the label rows: the output columns, named.
fn join_lookup(
    label: &RecordBatch,
    lookup: &FeatureLookup,
    read: &FeatureRead,
) -> Result<Vec<(Field, ArrayRef)>> {
    let table = &read.meta.full_name;
    let column = |batch: &RecordBatch, name: &str, side: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("{side} has no column '{name}'")))
    };
    let feature_keys = read
        .meta
        .primary_keys
        .iter()
        .map(|k| joined_column(&read.batches, k, table))
        .collect::<Result<Vec<_>>>()?;
    let feature_times = match &read.meta.timestamp_key {
        Some(ts) => Some(micros(
            joined_column(&read.batches, ts, table)?.as_ref(),
            ts,
        )?),
        None => None,
    };
    let index = FeatureIndex::build(
        table,
        &read.meta.primary_keys,
        &feature_keys,
        feature_times.as_ref(),
    )?;
    let label_keys = lookup
        .lookup_key
        .iter()
        .zip(&feature_keys)
        .zip(&read.meta.primary_keys)
        .map(|((name, feature_key), key)| {
            let values = column(label, name, "The label rows")?;
            cast(&values, feature_key.data_type()).map_err(|e| {
                Error::invalid(format!(
                    "Lookup key '{name}' ({}) cannot be compared with key '{key}' of {table} ({}): {e}",
                    values.data_type(),
                    feature_key.data_type()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let label_times = match &lookup.timestamp_lookup_key {
        Some(name) => Some(micros(
            column(label, name, "The label rows")?.as_ref(),
            name,
        )?),
        None => None,
    };
    let lookback = lookup
        .lookback_window
        .as_deref()
        .map(parse_duration_micros)
        .transpose()?;
    let indices = index.lookup(&label_keys, label_times.as_ref(), lookback)?;
    drop(index);
    let unmatched =
        is_null(&indices).map_err(|e| Error::internal_from("cannot apply defaults", e))?;
    let rows = Gather::new(&read.batches, &indices);
    let names: Vec<&String> = lookup.feature_names.iter().flatten().collect();
    // Each column is gathered on its own: spread over the cores when there are many rows.
    let columns = per_core(names.len(), indices.len() >= PARALLEL_MIN_ROWS, |range| {
        names[range]
            .iter()
            .map(|name| rows.column(name, table))
            .collect::<Vec<_>>()
    });
    let columns = columns.into_iter().flatten();
    let mut out = Vec::new();
    for (name, gathered) in names.into_iter().zip(columns) {
        let mut gathered = gathered?;
        let output = lookup.rename_outputs.get(name).unwrap_or(name);
        let default = lookup
            .default_values
            .get(output)
            .or_else(|| lookup.default_values.get(name))
            .filter(|v| !v.is_null());
        if let Some(default) = default {
            let default = default_array(default, gathered.data_type(), name)?;
            gathered = zip(&unmatched, &Scalar::new(default), &gathered)
                .map_err(|e| Error::internal_from("cannot apply defaults", e))?;
        }
        out.push((
            Field::new(output, gathered.data_type().clone(), true),
            gathered,
        ));
    }
    Ok(out)
}

/// The feature table a lookup names, its columns read at the lookup's version (pinned to the
/// version read).
async fn read_feature_table(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    lookup: &mut FeatureLookup,
) -> Result<FeatureRead> {
    let table = readable_table(store, caller, &lookup.table_name).await?;
    let meta = store
        .get_feature_table(&table.catalog_name, &table.schema_name, &table.name)
        .await
        .map_err(|err| match err.code {
            ErrorCode::ResourceDoesNotExist => Error::invalid(format!(
                "{} is not a feature table: create it with primary keys through the feature table API",
                table.full_name
            )),
            _ => err,
        })?;
    lookup.table_name = table.full_name.clone();
    let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    resolve_lookup(lookup, &meta, &columns)?;
    let mut wanted = meta.primary_keys.clone();
    wanted.extend(meta.timestamp_key.iter().cloned());
    wanted.extend(lookup.feature_names.iter().flatten().cloned());
    let at = lookup.version.map_or(At::Latest, At::Version);
    let (schema, mut batches, version) = lake
        .read_columns(&location_of(&table)?, &table.full_name, at, Some(&wanted))
        .await?;
    lookup.version = Some(version);
    batches.retain(|b| b.num_rows() > 0);
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    Ok(FeatureRead { meta, batches })
}

/// Builds the rows of a training set for `caller`; the spec comes back with every table
/// pinned to the version read.
pub async fn build(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    mut spec: TrainingSetSpec,
) -> Result<(RecordBatch, TrainingSetSpec, Vec<TableVersion>)> {
    spec.validate()?;
    let mut tables_read = Vec::new();
    let label = label_rows(lake, store, caller, &mut spec, &mut tables_read).await?;
    let mut fields: Vec<Field> = label
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = label.columns().to_vec();
    for lookup in &mut spec.feature_lookups {
        let started = std::time::Instant::now();
        let read = read_feature_table(lake, store, caller, lookup).await?;
        let read_ms = started.elapsed().as_millis();
        tables_read.push(TableVersion {
            name: read.meta.full_name.clone(),
            version: lookup.version.unwrap_or_default(),
        });
        let (rows, job) = (label.clone(), lookup.clone());
        let joined = tokio::task::spawn_blocking(move || join_lookup(&rows, &job, &read))
            .await
            .map_err(|e| Error::internal_from("the join failed", e))??;
        tracing::info!(
            table = %lookup.table_name,
            rows = label.num_rows(),
            read_ms,
            join_ms = started.elapsed().as_millis() - read_ms,
            "joined feature lookup"
        );
        for (field, array) in joined {
            if fields.iter().any(|f| f.name() == field.name()) {
                return Err(Error::invalid(format!(
                    "Column '{}' would appear twice in the training set: rename it with rename_outputs in the lookup of {}",
                    field.name(),
                    lookup.table_name
                )));
            }
            fields.push(field);
            columns.push(array);
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::internal_from("cannot assemble the training set", e))?;
    let batch = add_on_demand_features(batch, &spec.on_demand_features).await?;
    let batch = exclude(batch, &spec.exclude_columns)?;
    tables_read.sort_by(|a, b| a.name.cmp(&b.name));
    tables_read.dedup();
    Ok((batch, spec, tables_read))
}

fn exclude(batch: RecordBatch, excluded: &[String]) -> Result<RecordBatch> {
    let schema = batch.schema();
    if let Some(missing) = excluded.iter().find(|c| schema.index_of(c).is_err()) {
        return Err(Error::invalid(format!(
            "exclude_columns names '{missing}', which is not a column of the training set"
        )));
    }
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !excluded.contains(schema.field(*i).name()))
        .collect();
    batch
        .project(&keep)
        .map_err(|e| Error::internal_from("cannot drop excluded columns", e))
}

/// Builds a training set, records it (and writes it to `output_table` when given), and
/// returns its rows.
pub async fn create(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    spec: TrainingSetSpec,
    output_table: Option<&str>,
) -> Result<Built> {
    // Refuse an output table the caller cannot create before doing the work.
    let output = match output_table {
        Some(name) => Some(creatable_table(store, caller, name).await?),
        None => None,
    };
    let (batch, spec, tables_read) = build(lake, store, caller, spec).await?;
    let training_set_id = uuid::Uuid::new_v4().simple().to_string();
    let output_table = match output {
        Some((catalog, schema, name)) => {
            let table = lake
                .create_managed(
                    store,
                    &caller.actor(),
                    ManagedTable {
                        catalog,
                        schema,
                        name,
                        columns: columns_of_arrow(&batch.schema())?,
                        comment: format!("Training set {training_set_id}"),
                        properties: BTreeMap::from([(
                            "tarn.training_set_id".to_string(),
                            training_set_id.clone(),
                        )]),
                    },
                )
                .await?;
            let written = lake
                .write(
                    &location_of(&table)?,
                    &table.full_name,
                    vec![batch.clone()],
                    WriteMode::Append,
                    false,
                )
                .await?;
            let sources = TableVersion::lineage_sources(&tables_read);
            let write = NewLineage::new(
                Node::table(table.full_name.clone()),
                Some(written.version as i64),
                "TRAINING SET",
                caller.principal.name.clone(),
            )
            .reading(sources);
            store.record_committed_write(&write).await;
            Some(TableVersion {
                name: table.full_name,
                version: written.version,
            })
        }
        None => None,
    };
    let training_set = TrainingSet {
        training_set_id,
        workspace: caller.workspace.clone(),
        spec,
        tables_read,
        num_rows: batch.num_rows() as u64,
        output_table,
        created_by: caller.principal.name.clone(),
        created_at: now_millis(),
    };
    store.record_training_set(&training_set).await?;
    Ok(Built {
        batch,
        training_set,
    })
}

/// The rows of a recorded training set, built again from the versions it read.
pub async fn rebuild(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    training_set_id: &str,
) -> Result<(RecordBatch, TrainingSet)> {
    let recorded = store
        .get_training_set(&caller.workspace, training_set_id)
        .await?;
    let (batch, _, _) = build(lake, store, caller, recorded.spec.clone()).await?;
    Ok((batch, recorded))
}
