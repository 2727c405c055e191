//! Between Delta schemas and the catalog's column descriptions (Unity Catalog's `ColumnInfo`).

use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::{DataType, PrimitiveType, StructField, StructType};
use tarn_core::catalog::ColumnInfo;
use tarn_core::{Error, Result};

/// The catalog's description of a table's columns, in order, with partition positions.
pub fn columns_of(schema: &StructType, partition_columns: &[String]) -> Result<Vec<ColumnInfo>> {
    schema
        .fields()
        .enumerate()
        .map(|(position, field)| {
            Ok(ColumnInfo {
                name: field.name().to_string(),
                type_name: type_name(field.data_type()),
                type_text: field.data_type().to_string(),
                type_json: serde_json::to_string(field)
                    .map_err(|e| Error::internal_from("cannot describe a column", e))?,
                position: position as i64,
                nullable: field.is_nullable(),
                comment: String::new(),
                partition_index: partition_columns
                    .iter()
                    .position(|p| p == field.name())
                    .map(|i| i as i64),
            })
        })
        .collect()
}

/// The catalog's description of the columns of query results (a view's, say).
pub fn columns_of_arrow(schema: &deltalake::arrow::datatypes::Schema) -> Result<Vec<ColumnInfo>> {
    let delta: StructType = schema
        .try_into_kernel()
        .map_err(|e| Error::invalid(format!("Unsupported column type: {e}")))?;
    columns_of(&delta, &[])
}

/// Unity Catalog's type family of a column.
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Array(_) => "ARRAY".into(),
        DataType::Map(_) => "MAP".into(),
        DataType::Struct(_) => "STRUCT".into(),
        DataType::Variant(_) => "VARIANT".into(),
        DataType::Primitive(PrimitiveType::Integer) => "INT".into(),
        DataType::Primitive(PrimitiveType::Decimal(_)) => "DECIMAL".into(),
        DataType::Primitive(primitive) => primitive.to_string().to_ascii_uppercase(),
    }
}

/// The Delta field a requested column asks for: `type_json` (a Delta field) when given, else
/// the SQL type in `type_text` or `type_name` (`bigint`, `string`, `decimal(10,2)`, ...).
pub fn field_of(column: &ColumnInfo) -> Result<StructField> {
    tarn_core::catalog::normalize_name("column name", &column.name).map_err(|_| {
        Error::invalid(format!(
            "Invalid column name '{}': use letters, digits and underscores",
            column.name
        ))
    })?;
    if !column.type_json.is_empty() {
        let field: StructField = serde_json::from_str(&column.type_json).map_err(|e| {
            Error::invalid(format!(
                "Invalid type_json for column '{}': {e}",
                column.name
            ))
        })?;
        if field.name() != &column.name {
            return Err(Error::invalid(format!(
                "type_json names column '{}', not '{}'",
                field.name(),
                column.name
            )));
        }
        return Ok(field);
    }
    let spelled = if column.type_text.is_empty() {
        &column.type_name
    } else {
        &column.type_text
    };
    let data_type = parse_sql_type(spelled).ok_or_else(|| {
        Error::invalid(format!(
            "Unsupported type '{spelled}' for column '{}': use a primitive SQL type \
             (string, bigint, int, smallint, tinyint, double, float, boolean, binary, date, \
             timestamp, timestamp_ntz, decimal(p,s)) or give type_json",
            column.name
        ))
    })?;
    Ok(StructField::new(&column.name, data_type, column.nullable))
}

/// The Arrow schema of the catalog's columns: what a table's rows are read into.
pub fn arrow_schema_of_columns(
    columns: &[ColumnInfo],
) -> Result<deltalake::arrow::datatypes::SchemaRef> {
    let fields = columns.iter().map(field_of).collect::<Result<Vec<_>>>()?;
    let schema =
        StructType::try_new(fields).map_err(|e| Error::invalid(format!("Invalid columns: {e}")))?;
    let arrow: deltalake::arrow::datatypes::Schema = (&schema)
        .try_into_arrow()
        .map_err(|e| Error::invalid(format!("Unsupported column type: {e}")))?;
    Ok(std::sync::Arc::new(arrow))
}

fn parse_sql_type(spelled: &str) -> Option<DataType> {
    let lower = spelled.trim().to_ascii_lowercase();
    let canonical = match lower.as_str() {
        "bigint" | "long" => "long",
        "int" | "integer" => "integer",
        "smallint" | "short" => "short",
        "tinyint" | "byte" => "byte",
        "real" | "float" => "float",
        "double" => "double",
        "string" | "varchar" | "text" => "string",
        "boolean" | "bool" => "boolean",
        "binary" => "binary",
        "date" => "date",
        "timestamp" => "timestamp",
        "timestamp_ntz" => "timestamp_ntz",
        other if other.starts_with("decimal(") => other,
        _ => return None,
    };
    serde_json::from_value(serde_json::Value::String(canonical.replace(' ', ""))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(name: &str, type_text: &str) -> ColumnInfo {
        ColumnInfo::new(name, type_text)
    }

    #[test]
    fn sql_types_round_trip_through_delta_fields() {
        let fields: Vec<StructField> = [
            ("id", "BIGINT"),
            ("n", "int"),
            ("amount", "decimal(10, 2)"),
            ("at", "timestamp"),
            ("name", "string"),
        ]
        .iter()
        .map(|(name, sql)| field_of(&requested(name, sql)).expect("field"))
        .collect();
        let schema = StructType::try_new(fields).expect("schema");
        let columns = columns_of(&schema, &["n".to_string()]).expect("columns");
        let described: Vec<(&str, &str, &str)> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.type_name.as_str(), c.type_text.as_str()))
            .collect();
        assert_eq!(
            described,
            [
                ("id", "LONG", "long"),
                ("n", "INT", "integer"),
                ("amount", "DECIMAL", "decimal(10,2)"),
                ("at", "TIMESTAMP", "timestamp"),
                ("name", "STRING", "string"),
            ]
        );
        assert_eq!(columns[1].partition_index, Some(0));
        // type_json round-trips.
        let again = field_of(&columns[2]).expect("from json");
        assert_eq!(again.data_type().to_string(), "decimal(10,2)");
        // And the columns read back as the Arrow schema rows are read into.
        use deltalake::arrow::datatypes::{DataType as Arrow, TimeUnit};
        let arrow = arrow_schema_of_columns(&columns).expect("arrow schema");
        let types: Vec<&Arrow> = arrow.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &Arrow::Int64,
                &Arrow::Int32,
                &Arrow::Decimal128(10, 2),
                &Arrow::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                &Arrow::Utf8,
            ]
        );
    }

    #[test]
    fn bad_columns_are_refused() {
        assert!(field_of(&requested("x", "uuid")).is_err());
        assert!(field_of(&requested("a b", "int")).is_err());
        let mut wrong_json = requested("x", "");
        wrong_json.type_json = r#"{"name":"y","type":"long","nullable":true,"metadata":{}}"#.into();
        assert!(field_of(&wrong_json).is_err());
    }
}
