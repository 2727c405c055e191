//! Table upkeep: compaction of small files (optimize) and removal of files no version within
//! the retention period needs (vacuum).

use std::num::NonZeroU64;

use chrono::Duration;
use deltalake::DeltaTableError;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::table::config::TablePropertiesExt;
use serde::Serialize;
use tarn_core::{Error, Result};
use url::Url;

use crate::error::table_error;
use crate::tables::{At, Lake, commit_properties, open};

/// What an optimize did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Optimized {
    pub version: u64,
    pub num_files_added: u64,
    pub num_files_removed: u64,
    pub partitions_optimized: u64,
    pub total_considered_files: usize,
}

/// What a vacuum did (or, on a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vacuumed {
    pub dry_run: bool,
    pub files_deleted: Vec<String>,
}

/// How to vacuum.
#[derive(Debug, Clone, Default)]
pub struct VacuumSpec {
    /// Keep files the versions of the last this many hours need; the table's
    /// `delta.deletedFileRetentionDuration` (7 days by default) when none.
    pub retention_hours: Option<u64>,
    /// List what would go without deleting.
    pub dry_run: bool,
    /// A retention shorter than the table's breaks time travel and readers still at old
    /// versions: refused unless this is set.
    pub skip_retention_check: bool,
}

impl Lake {
    /// Rewrites small files into fewer large ones; with `zorder_by`, clusters rows by those
    /// columns so filters on them skip files.
    pub async fn optimize(
        &self,
        location: &Url,
        full_name: &str,
        target_size: Option<u64>,
        zorder_by: Vec<String>,
    ) -> Result<Optimized> {
        let table = open(location, full_name, At::Latest).await?;
        let mut optimize = table.optimize().with_commit_properties(commit_properties());
        if !zorder_by.is_empty() {
            optimize = optimize.with_type(OptimizeType::ZOrder(zorder_by));
        }
        if let Some(size) = target_size {
            let size = NonZeroU64::new(size).ok_or_else(|| {
                Error::invalid("Invalid target_size 0: files need at least one byte")
            })?;
            optimize = optimize.with_target_size(size);
        }
        let (table, metrics) = optimize.await.map_err(|e| match e {
            DeltaTableError::Generic(message) => {
                Error::invalid(format!("Cannot optimize {full_name}: {message}"))
            }
            other => table_error(full_name, other),
        })?;
        Ok(Optimized {
            version: table.version().unwrap_or_default(),
            num_files_added: metrics.num_files_added,
            num_files_removed: metrics.num_files_removed,
            partitions_optimized: metrics.partitions_optimized,
            total_considered_files: metrics.total_considered_files,
        })
    }

    /// Deletes data files no version within the retention period refers to, including
    /// files no version ever referred to (left by failed writers).
    pub async fn vacuum(
        &self,
        location: &Url,
        full_name: &str,
        spec: &VacuumSpec,
    ) -> Result<Vacuumed> {
        let table = open(location, full_name, At::Latest).await?;
        let kept = table
            .snapshot()
            .map_err(|e| table_error(full_name, e))?
            .table_config()
            .deleted_file_retention_duration();
        if let Some(hours) = spec.retention_hours
            && !spec.skip_retention_check
            && u128::from(hours) * 3600 < kept.as_secs() as u128
        {
            return Err(Error::invalid(format!(
                "Refusing to vacuum {full_name} with a retention of {hours} hours: the table keeps {} hours (delta.deletedFileRetentionDuration) so time travel and running readers still find their files; pass skip_retention_check to override",
                kept.as_secs() / 3600
            )));
        }
        let mut vacuum = table
            .vacuum()
            .with_commit_properties(commit_properties())
            .with_mode(VacuumMode::Full)
            .with_dry_run(spec.dry_run)
            .with_enforce_retention_duration(!spec.skip_retention_check);
        if let Some(hours) = spec.retention_hours {
            let hours = i64::try_from(hours)
                .ok()
                .and_then(Duration::try_hours)
                .ok_or_else(|| Error::invalid(format!("Invalid retention of {hours} hours")))?;
            vacuum = vacuum.with_retention_period(hours);
        }
        let (_, metrics) = vacuum.await.map_err(|e| table_error(full_name, e))?;
        Ok(Vacuumed {
            dry_run: metrics.dry_run,
            files_deleted: metrics.files_deleted,
        })
    }
}
