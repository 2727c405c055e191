//! The monitors API's use cases with their permission checks: reading a monitor or its
//! refreshes needs SELECT on the table; creating, changing, deleting, refreshing and cancelling
//! need the table's ownership or MANAGE on it (its schema's or catalog's holds too), and the
//! metrics tables need CREATE_TABLE on the output schema. Settings are checked against the
//! table's columns before anything is stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use tarn_core::caller::Caller;
use tarn_core::catalog::{Privilege, TableInfo, parse_table_name};
use tarn_core::ids::now_millis;
use tarn_core::monitors::{
    Monitor, MonitorSettings, MonitorStatus, ProblemType, Profile, Refresh, RefreshEnd,
    RefreshState, RefreshTrigger,
};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};
use tarn_lake::Lake;
use tarn_lake::access::{Securable, authorize, authorize_create_table, table_for};
use tarn_lake::arrow::datatypes::{DataType, Schema};

use crate::compute::{SLICE_COLUMN, is_numeric, is_text, is_time};
use crate::custom::Custom;
use crate::kept;
use crate::refresh::{self, source_query};

/// How many refreshes `list_refreshes` shows, newest first (Databricks shows the latest 25).
const LISTED_REFRESHES: u64 = 25;

/// The table, once `caller` may manage its monitor.
async fn managed_table(
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
) -> Result<TableInfo> {
    let table = table_for(store, caller, table_name, Privilege::Select).await?;
    authorize(store, caller, &Securable::table(&table), Privilege::Manage).await?;
    Ok(table)
}

/// The monitor on a table `caller` may read; RESOURCE_DOES_NOT_EXIST when it has none.
async fn monitor_of(store: &dyn MetaStore, table: &TableInfo) -> Result<Monitor> {
    store.get_monitor(&table.table_id).await.map_err(|err| {
        if err.code == ErrorCode::ResourceDoesNotExist {
            Error::not_found(format!(
                "Monitor for table {} does not exist.",
                table.full_name
            ))
        } else {
            err
        }
    })
}

/// The source's columns and the slicing expressions' types, from a query that reads no rows.
async fn columns_of(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &str,
    slicing_exprs: &[String],
) -> Result<Schema> {
    let sql = source_query(table, slicing_exprs, true);
    let output = lake
        .query(store, caller, &sql, &BTreeMap::new())
        .await
        .map_err(|err| match err.code {
            ErrorCode::InvalidParameterValue | ErrorCode::BadRequest
                if !slicing_exprs.is_empty() =>
            {
                Error::invalid(format!(
                    "The slicing expressions do not evaluate over {table}: {}",
                    err.message
                ))
            }
            _ => err,
        })?;
    Ok(output.schema.as_ref().clone())
}

fn column_type<'a>(schema: &'a Schema, name: &str, role: &str) -> Result<&'a DataType> {
    schema
        .fields()
        .iter()
        .find(|f| f.name() == name && !f.name().starts_with(SLICE_COLUMN))
        .map(|f| f.data_type())
        .ok_or_else(|| {
            Error::invalid(format!(
                "{role} '{name}' is not a column of the monitored table"
            ))
        })
}

/// Checks the settings against the table's columns, and where the metrics go.
async fn check(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table: &TableInfo,
    settings: &MonitorSettings,
) -> Result<()> {
    let profile = settings.validate()?;
    let schema = columns_of(
        lake,
        store,
        caller,
        &table.full_name,
        &settings.slicing_exprs,
    )
    .await?;
    if let Some(custom) = Custom::of(&settings.custom_metrics)? {
        custom.check(&schema).await?;
    }
    if let Some((timestamp_col, _)) = profile.windows() {
        let data_type = column_type(&schema, timestamp_col, "timestamp_col")?;
        if !is_time(data_type) {
            return Err(Error::invalid(format!(
                "timestamp_col '{timestamp_col}' is {data_type}: it must be a timestamp or a date"
            )));
        }
    }
    if let Profile::InferenceLog(log) = &profile {
        column_type(&schema, &log.model_id_col, "model_id_col")?;
        let prediction = column_type(&schema, &log.prediction_col, "prediction_col")?;
        let fits = |data_type: &DataType| match log.problem_type {
            ProblemType::Regression => is_numeric(data_type),
            ProblemType::Classification => {
                is_text(data_type) || data_type.is_integer() || data_type == &DataType::Boolean
            }
        };
        let expected = match log.problem_type {
            ProblemType::Regression => "a number for a regression",
            ProblemType::Classification => {
                "a class (text, integer or boolean) for a classification"
            }
        };
        if !fits(prediction) {
            return Err(Error::invalid(format!(
                "prediction_col '{}' is {prediction}: it must be {expected}",
                log.prediction_col
            )));
        }
        if let Some(label) = &log.label_col {
            let data_type = column_type(&schema, label, "label_col")?;
            if !fits(data_type) {
                return Err(Error::invalid(format!(
                    "label_col '{label}' is {data_type}: it must be {expected}"
                )));
            }
        }
        if let Some(proba) = &log.prediction_proba_col {
            if log.problem_type != ProblemType::Classification {
                return Err(Error::invalid(
                    "prediction_proba_col is for classification monitors",
                ));
            }
            let data_type = column_type(&schema, proba, "prediction_proba_col")?;
            if !is_numeric(data_type) {
                return Err(Error::invalid(format!(
                    "prediction_proba_col '{proba}' is {data_type}: it must hold the positive class's probability"
                )));
            }
        }
    }
    if let Some(baseline) = &settings.baseline_table_name {
        table_for(store, caller, baseline, Privilege::Select).await?;
    }
    if let Some(schedule) = &settings.schedule {
        schedule
            .quartz_cron_expression
            .parse::<tarn_jobs::cron::Cron>()
            .map_err(|e| Error::invalid(e.to_string()))?;
        tarn_jobs::cron::time_zone(&schedule.timezone_id).map_err(Error::invalid)?;
    }
    let output = settings.output_schema_name.as_deref().unwrap_or_default();
    let (catalog, schema_name) = output.split_once('.').unwrap_or((output, ""));
    authorize_create_table(store, caller, catalog, schema_name).await?;
    for metrics in [
        format!("{output}.{}_profile_metrics", table.name),
        format!("{output}.{}_drift_metrics", table.name),
    ] {
        parse_table_name(&metrics)?;
        if metrics == table.full_name || Some(&metrics) == settings.baseline_table_name.as_ref() {
            return Err(Error::invalid(format!(
                "The metrics table {metrics} would replace a table the monitor reads"
            )));
        }
    }
    Ok(())
}

/// Creates a monitor on `table_name`.
pub async fn create(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
    settings: MonitorSettings,
) -> Result<Monitor> {
    let table = managed_table(store, caller, table_name).await?;
    check(lake, store, caller, &table, &settings).await?;
    let now = now_millis();
    let monitor = Monitor {
        table_id: table.table_id.clone(),
        table_name: table.full_name.clone(),
        workspace: caller.workspace.clone(),
        settings,
        status: MonitorStatus::Active,
        monitor_version: 1,
        created_by: caller.principal.name.clone(),
        created_at: now,
        updated_at: now,
        latest_failure: None,
    };
    store.create_monitor(&monitor, &caller.actor()).await?;
    Ok(monitor)
}

pub async fn get(store: &dyn MetaStore, caller: &Caller, table_name: &str) -> Result<Monitor> {
    let table = table_for(store, caller, table_name, Privilege::Select).await?;
    monitor_of(store, &table).await
}

/// Replaces the monitor's settings (Databricks' update replaces them whole).
pub async fn update(
    lake: &Lake,
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
    settings: MonitorSettings,
) -> Result<Monitor> {
    let table = managed_table(store, caller, table_name).await?;
    monitor_of(store, &table).await?;
    check(lake, store, caller, &table, &settings).await?;
    store
        .update_monitor(&table.table_id, &settings, now_millis(), &caller.actor())
        .await
}

/// Deletes the monitor; its metrics tables stay.
pub async fn delete(store: &dyn MetaStore, caller: &Caller, table_name: &str) -> Result<()> {
    let table = managed_table(store, caller, table_name).await?;
    monitor_of(store, &table).await?;
    store
        .delete_monitor(&table.table_id, &caller.actor())
        .await?;
    kept::forget(&table.table_id);
    Ok(())
}

/// Records a PENDING refresh of the monitor on `table_name`, for `refresh::execute` to run.
pub async fn queue_refresh(
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
    trigger: RefreshTrigger,
) -> Result<(Monitor, Refresh)> {
    let table = managed_table(store, caller, table_name).await?;
    let monitor = monitor_of(store, &table).await?;
    let refresh = store
        .create_refresh(&table.table_id, trigger, now_millis())
        .await?;
    Ok((monitor, refresh))
}

/// Queues a refresh and starts it in the background as `caller`.
pub async fn run_refresh(
    lake: Arc<Lake>,
    store: Arc<dyn MetaStore>,
    caller: &Caller,
    table_name: &str,
    trigger: RefreshTrigger,
) -> Result<Refresh> {
    let (monitor, refresh) = queue_refresh(store.as_ref(), caller, table_name, trigger).await?;
    tokio::spawn(refresh::execute(
        lake,
        store,
        caller.clone(),
        monitor,
        refresh.clone(),
    ));
    Ok(refresh)
}

pub async fn list_refreshes(
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
) -> Result<Vec<Refresh>> {
    let table = table_for(store, caller, table_name, Privilege::Select).await?;
    monitor_of(store, &table).await?;
    store
        .list_refreshes(&table.table_id, LISTED_REFRESHES)
        .await
}

pub async fn get_refresh(
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
    refresh_id: i64,
) -> Result<Refresh> {
    let table = table_for(store, caller, table_name, Privilege::Select).await?;
    monitor_of(store, &table).await?;
    store.get_refresh(&table.table_id, refresh_id).await
}

/// Cancels a pending or running refresh; one that ended is left as it is.
pub async fn cancel_refresh(
    store: &dyn MetaStore,
    caller: &Caller,
    table_name: &str,
    refresh_id: i64,
) -> Result<()> {
    let table = managed_table(store, caller, table_name).await?;
    monitor_of(store, &table).await?;
    let refresh = store.get_refresh(&table.table_id, refresh_id).await?;
    if !refresh.state.is_active() {
        return Err(Error::new(
            ErrorCode::ResourceConflict,
            format!(
                "Refresh {refresh_id} already ended ({}): only a pending or running refresh can be cancelled",
                refresh.state.as_str()
            ),
        ));
    }
    store
        .transition_refresh(
            &table.table_id,
            refresh_id,
            &[RefreshState::Pending, RefreshState::Running],
            RefreshState::Canceled,
            now_millis(),
            &RefreshEnd {
                message: Some("Cancelled by the user".into()),
                versions: None,
            },
        )
        .await?;
    Ok(())
}
