//! The lakehouse data layer: Delta tables (delta-rs) under a lake root, described in the
//! catalog of the metadata store, with Arrow IPC and Parquet for data in and out. Heavy
//! dependencies (deltalake, DataFusion, Arrow) live in this crate only.

pub mod access;
pub mod catalog;
mod changes;
mod columns;
pub mod commits;
pub mod error;
pub mod ingest;
pub mod ipc;
pub mod lineage;
mod maintenance;
mod nesting;
mod scan;
mod shelf;
mod sql;
pub mod statements;
mod storage;
mod tables;
pub mod writes;

pub use changes::{Deleted, MergeSpec, Merged};
pub use columns::{arrow_schema_of_columns, columns_of, columns_of_arrow, field_of};
pub use deltalake::arrow;
pub use deltalake::datafusion;
pub use deltalake::kernel::StructField;
pub use maintenance::{Optimized, VacuumSpec, Vacuumed};
pub use nesting::{MAX_CHAINED_RELATIONS, MAX_EXPRESSION_DEPTH, check_expression_depth};
pub use sql::{
    DEFAULT_SCHEMA, RESULT_FILE_BYTES, ResultFile, ResultRows, SqlLimits, SqlOutput, SqlScope,
};
pub use tables::{
    At, BatchReducer, Commit, Lake, WriteMode, Written, format_timestamp, parse_timestamp,
};
