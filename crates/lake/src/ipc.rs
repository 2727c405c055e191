//! Arrow IPC and Parquet bodies, so Python clients send and fetch dataframes without CSV.

use std::io::Cursor;

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::ipc::reader::{FileReader, StreamReader};
use deltalake::arrow::ipc::writer::StreamWriter;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::parquet::arrow::ArrowWriter;
use tarn_core::{Error, Result};

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
/// The media type of a Parquet file.
pub const PARQUET: &str = "application/vnd.apache.parquet";

/// Reads an Arrow IPC stream or file (told apart by the file format's magic bytes).
pub fn decode(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let invalid = |e: deltalake::arrow::error::ArrowError| {
        Error::invalid(format!("The body is not valid Arrow IPC: {e}"))
    };
    if bytes.starts_with(b"ARROW1") {
        let reader = FileReader::try_new(Cursor::new(bytes), None).map_err(invalid)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        Ok((schema, batches))
    } else {
        let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(invalid)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        Ok((schema, batches))
    }
}

/// Writes batches as one Arrow IPC stream.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let failed =
        |e: deltalake::arrow::error::ArrowError| Error::internal_from("cannot encode Arrow IPC", e);
    let mut writer = StreamWriter::try_new(Vec::new(), schema).map_err(failed)?;
    for batch in batches {
        writer.write(batch).map_err(failed)?;
    }
    writer.into_inner().map_err(failed)
}

/// Writes batches as one Parquet file.
pub fn encode_parquet(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let failed = |e: deltalake::parquet::errors::ParquetError| {
        Error::internal_from("cannot encode Parquet", e)
    };
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), None).map_err(failed)?;
    for batch in batches {
        writer.write(batch).map_err(failed)?;
    }
    writer.into_inner().map_err(failed)
}
