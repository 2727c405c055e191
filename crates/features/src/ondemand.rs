//! On-demand features: SQL expressions over a row's fields (label or request columns and
//! looked-up features), evaluated by DataFusion. The one function here runs both when a
//! training set is built and when a request is served, so the two cannot drift apart.

use tarn_core::features::OnDemandFeature;
use tarn_core::{Error, Result};
use tarn_lake::arrow::compute::concat_batches;
use tarn_lake::arrow::record_batch::RecordBatch;
use tarn_lake::datafusion::common::tree_node::TreeNode;
use tarn_lake::datafusion::logical_expr::Expr;
use tarn_lake::datafusion::prelude::{SessionConfig, SessionContext};

/// Appends one column per on-demand feature, computed row by row from the batch's columns
/// (and the features before it). Expressions see one row at a time: aggregates and window
/// functions, which would look at other rows, are refused.
pub async fn add_on_demand_features(
    batch: RecordBatch,
    features: &[OnDemandFeature],
) -> Result<RecordBatch> {
    if features.is_empty() {
        return Ok(batch);
    }
    let config = SessionConfig::new()
        .with_target_partitions(1)
        // Column names keep their case, as in the tables.
        .set_bool("datafusion.sql_parser.enable_ident_normalization", false);
    let context = SessionContext::new_with_config(config);
    let invalid = |feature: &OnDemandFeature, err: String| {
        Error::invalid(format!(
            "On-demand feature '{}' ({}): {err}",
            feature.name, feature.expression
        ))
    };
    let mut frame = context
        .read_batch(batch)
        .map_err(|e| Error::internal_from("cannot compute on-demand features", e))?;
    for feature in features {
        if frame
            .schema()
            .has_column_with_unqualified_name(&feature.name)
        {
            return Err(invalid(
                feature,
                "a column of that name exists already".to_string(),
            ));
        }
        tarn_lake::check_expression_depth(&feature.expression)
            .map_err(|e| invalid(feature, e.message))?;
        let expr = frame
            .parse_sql_expr(&feature.expression)
            .map_err(|e| invalid(feature, e.to_string()))?;
        let looks_at_other_rows = expr
            .exists(|e| {
                Ok(matches!(
                    e,
                    Expr::AggregateFunction(_)
                        | Expr::WindowFunction(_)
                        | Expr::ScalarSubquery(_)
                        | Expr::Exists(_)
                        | Expr::InSubquery(_)
                ))
            })
            .unwrap_or(true);
        if looks_at_other_rows {
            return Err(invalid(
                feature,
                "aggregates, window functions and subqueries are not allowed: an on-demand feature is computed from one row".to_string(),
            ));
        }
        frame = frame
            .with_column(&feature.name, expr)
            .map_err(|e| invalid(feature, e.to_string()))?;
    }
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|e| Error::invalid(format!("On-demand features failed: {e}")))?;
    concat_batches(&schema, &batches)
        .map_err(|e| Error::internal_from("cannot gather on-demand features", e))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tarn_lake::arrow::array::{Array, Float64Array, Int64Array};
    use tarn_lake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("Amount", DataType::Float64, true),
                Field::new("days", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Float64Array::from(vec![Some(10.0), None, Some(3.0)])),
                Arc::new(Int64Array::from(vec![2, 4, 0])),
            ],
        )
        .expect("ok")
    }

    fn feature(name: &str, expression: &str) -> OnDemandFeature {
        OnDemandFeature {
            name: name.into(),
            expression: expression.into(),
        }
    }

    #[tokio::test]
    async fn expressions_see_columns_and_earlier_features() {
        let out = add_on_demand_features(
            batch(),
            &[
                feature(
                    "per_day",
                    "Amount / CASE WHEN days = 0 THEN NULL ELSE days END",
                ),
                feature("per_day_x2", "per_day * 2"),
            ],
        )
        .await
        .expect("ok");
        assert_eq!(out.num_rows(), 3);
        let doubled = out
            .column_by_name("per_day_x2")
            .expect("ok")
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("ok")
            .clone();
        assert_eq!(
            doubled.iter().collect::<Vec<_>>(),
            vec![Some(10.0), None, None]
        );
    }

    #[tokio::test]
    async fn aggregates_and_clashing_names_are_refused() {
        for (name, expression) in [
            ("total", "sum(days)"),
            ("days", "days + 1"),
            ("x", "nope + 1"),
        ] {
            let err = add_on_demand_features(batch(), &[feature(name, expression)])
                .await
                .expect_err("refused");
            assert!(
                err.message.contains(&format!("'{name}'")),
                "{}",
                err.message
            );
        }
    }
}
