//! tarn's evaluators for the ONNX-ML operators, registered with tract in place of its own (or
//! where it has none): tree ensembles, `Scaler`, `Imputer`, `Binarizer`.

use std::sync::Arc;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_ndarray::{Array1, Array2, ArrayD, IxDyn};

use super::tree::{
    Aggregate, Ensemble, Mode, PostTransform, TreeAttributes, TreeClassifier, TreeRegressor,
};

pub fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleClassifier", tree_classifier);
    register.insert("TreeEnsembleRegressor", tree_regressor);
    register.insert("Scaler", scaler);
    register.insert("Imputer", imputer);
    register.insert("Binarizer", binarizer);
}

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// A float attribute list, or its `_as_tensor` double-precision twin (ai.onnx.ml opset 3).
fn floats(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Option<Vec<f64>>> {
    if let Some(proto) = node.get_attr_opt::<&TensorProto>(&format!("{name}_as_tensor"))? {
        let tensor = ctx.load_tensor(proto)?;
        let tensor = tensor.cast_to::<f64>()?;
        return Ok(Some(
            tensor
                .to_plain_array_view::<f64>()?
                .iter()
                .copied()
                .collect(),
        ));
    }
    Ok(node
        .get_attr_opt_vec::<f32>(name)?
        .map(|v| v.into_iter().map(f64::from).collect()))
}

fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_vec::<i64>(name)?.unwrap_or_default())
}

fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    let text = node
        .get_attr_opt::<&str>("post_transform")?
        .unwrap_or("NONE");
    PostTransform::parse(text).map_err(|e| format_err!("{}: {e}", node.op_type))
}

fn tree_attributes(
    ctx: &ParsingContext,
    node: &NodeProto,
    leaf: &str,
) -> TractResult<TreeAttributes> {
    let modes = node
        .get_attr_opt_vec::<String>("nodes_modes")?
        .unwrap_or_default()
        .iter()
        .map(|m| Mode::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err!("{}: {e}", node.op_type))?;
    let count = modes.len();
    Ok(TreeAttributes {
        tree_ids: ints(node, "nodes_treeids")?,
        node_ids: ints(node, "nodes_nodeids")?,
        feature_ids: ints(node, "nodes_featureids")?,
        modes,
        values: floats(ctx, node, "nodes_values")?.unwrap_or_default(),
        true_ids: ints(node, "nodes_truenodeids")?,
        false_ids: ints(node, "nodes_falsenodeids")?,
        missing_tracks_true: match node
            .get_attr_opt_vec::<i64>("nodes_missing_value_tracks_true")?
        {
            Some(flags) => flags.into_iter().map(|f| f != 0).collect(),
            None => vec![false; count],
        },
        leaf_tree_ids: ints(node, &format!("{leaf}_treeids"))?,
        leaf_node_ids: ints(node, &format!("{leaf}_nodeids"))?,
        leaf_targets: ints(node, &format!("{leaf}_ids"))?,
        leaf_weights: floats(ctx, node, &format!("{leaf}_weights"))?.unwrap_or_default(),
    })
}

fn ensemble(
    ctx: &ParsingContext,
    node: &NodeProto,
    leaf: &str,
    targets: usize,
    aggregate: Aggregate,
) -> TractResult<Ensemble> {
    Ensemble::build(&tree_attributes(ctx, node, leaf)?, targets, aggregate)
        .map_err(|e| format_err!("{} {:?}: {e}", node.op_type, node.name))
}

/// The class labels of a classifier: integers or strings.
#[derive(Debug)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }

    fn datum_type(&self) -> DatumType {
        match self {
            Labels::Ints(_) => DatumType::I64,
            Labels::Strings(_) => DatumType::String,
        }
    }

    fn pick(&self, winners: &[usize]) -> Tensor {
        match self {
            Labels::Ints(labels) => {
                Array1::from_iter(winners.iter().map(|w| labels[*w])).into_tensor()
            }
            Labels::Strings(labels) => {
                Array1::from_iter(winners.iter().map(|w| labels[*w].clone())).into_tensor()
            }
        }
    }
}

/// Rows of an input tensor as f64, row-major, with their width; checks the width covers the
/// features a model reads.
fn rows(input: &TValue, features: usize, op: &str) -> TractResult<(Vec<f64>, usize)> {
    let input = input.cast_to::<f64>()?;
    let view = input.to_plain_array_view::<f64>()?;
    let (count, width) = match view.shape() {
        [count, width] => (*count, *width),
        [width] => (1, *width),
        shape => bail!("{op} takes rows of features, got a tensor of shape {shape:?}"),
    };
    ensure!(
        width >= features,
        "{op} reads {features} features but the rows have {width}"
    );
    let values: Vec<f64> = view.iter().copied().collect();
    debug_assert_eq!(values.len(), count * width);
    Ok((values, width.max(1)))
}

#[derive(Debug)]
struct ClassifierModel {
    classifier: TreeClassifier,
    labels: Labels,
}

#[derive(Debug, Clone)]
struct TreeClassifierOp(Arc<ClassifierModel>);

impl PartialEq for TreeClassifierOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for TreeClassifierOp {}

fn tree_classifier(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let labels = match (
        node.get_attr_opt_vec::<i64>("classlabels_int64s")?,
        node.get_attr_opt_vec::<String>("classlabels_strings")?,
    ) {
        (Some(ints), None) if !ints.is_empty() => Labels::Ints(ints),
        (None, Some(strings)) if !strings.is_empty() => Labels::Strings(strings),
        _ => {
            bail!("TreeEnsembleClassifier needs one of classlabels_int64s and classlabels_strings")
        }
    };
    let ensemble = ensemble(ctx, node, "class", labels.len(), Aggregate::Sum)?;
    let base_values = floats(ctx, node, "base_values")?.unwrap_or_default();
    let classifier = TreeClassifier::new(ensemble, base_values, post_transform(node)?);
    let op = TreeClassifierOp(Arc::new(ClassifierModel { classifier, labels }));
    let (label_type, classes) = (op.0.labels.datum_type(), op.0.labels.len());
    let rules =
        move |_: &dyn Op, s: &mut Solver, inputs: &[TensorProxy], outputs: &[TensorProxy]| {
            check_input_arity(inputs, 1)?;
            check_output_arity(outputs, 2)?;
            s.equals(&outputs[0].datum_type, label_type)?;
            s.equals(&outputs[1].datum_type, DatumType::F32)?;
            s.equals(&outputs[0].rank, 1)?;
            s.equals(&outputs[1].rank, 2)?;
            s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
            s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
            s.equals(&outputs[1].shape[1], classes.to_dim())?;
            Ok(())
        };
    Ok((inference_wrap(op, 2, rules), vec![]))
}

impl Op for TreeClassifierOp {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeClassifierOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let model = &self.0;
        let (values, width) = rows(
            &input,
            model.classifier.ensemble.features(),
            "TreeEnsembleClassifier",
        )?;
        let count = values.len() / width;
        let classes = model.classifier.classes();
        let mut winners = Vec::with_capacity(count);
        let mut scores = Vec::with_capacity(count * classes);
        model
            .classifier
            .predict(&values, width, &mut winners, &mut scores);
        let scores = Array2::from_shape_vec((count, classes), scores)?.into_tensor();
        Ok(tvec!(
            model.labels.pick(&winners).into_tvalue(),
            scores.into_tvalue()
        ))
    }
}

impl TypedOp for TreeClassifierOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        let classes = self.0.classifier.classes().to_dim();
        Ok(tvec!(
            self.0.labels.datum_type().fact([rows.clone()]),
            f32::fact([rows, classes])
        ))
    }

    as_op!();
}

#[derive(Debug, Clone)]
struct TreeRegressorOp(Arc<TreeRegressor>);

impl PartialEq for TreeRegressorOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for TreeRegressorOp {}

fn tree_regressor(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let targets = node.get_attr_opt::<i64>("n_targets")?.unwrap_or(1);
    let targets = usize::try_from(targets)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| {
            format_err!("TreeEnsembleRegressor: n_targets must be positive, got {targets}")
        })?;
    let aggregate = Aggregate::parse(
        node.get_attr_opt::<&str>("aggregate_function")?
            .unwrap_or("SUM"),
    )
    .map_err(|e| format_err!("TreeEnsembleRegressor: {e}"))?;
    let ensemble = ensemble(ctx, node, "target", targets, aggregate)?;
    let base_values = floats(ctx, node, "base_values")?.unwrap_or_default();
    ensure!(
        base_values.is_empty() || base_values.len() == targets,
        "TreeEnsembleRegressor: {} base values for {targets} targets",
        base_values.len()
    );
    let regressor = TreeRegressor {
        ensemble,
        base_values,
        post_transform: post_transform(node)?,
    };
    let rules =
        move |_: &dyn Op, s: &mut Solver, inputs: &[TensorProxy], outputs: &[TensorProxy]| {
            check_input_arity(inputs, 1)?;
            check_output_arity(outputs, 1)?;
            s.equals(&outputs[0].datum_type, DatumType::F32)?;
            s.equals(&outputs[0].rank, 2)?;
            s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
            s.equals(&outputs[0].shape[1], targets.to_dim())?;
            Ok(())
        };
    Ok((
        inference_wrap(TreeRegressorOp(Arc::new(regressor)), 1, rules),
        vec![],
    ))
}

impl Op for TreeRegressorOp {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeRegressorOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (values, width) = rows(&input, self.0.ensemble.features(), "TreeEnsembleRegressor")?;
        let count = values.len() / width;
        let targets = self.0.ensemble.targets();
        let mut out = Vec::with_capacity(count * targets);
        self.0.predict(&values, width, &mut out);
        Ok(tvec!(
            Array2::from_shape_vec((count, targets), out)?
                .into_tensor()
                .into_tvalue()
        ))
    }
}

impl TypedOp for TreeRegressorOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact([
            inputs[0].shape[0].clone(),
            self.0.ensemble.targets().to_dim()
        ])))
    }

    as_op!();
}

/// The element-wise preprocessing operators of ONNX-ML, one value (and its column) at a time.
#[derive(Debug, PartialEq)]
enum Elementwise {
    /// `(x - offset) * scale`, per column or one for all; always float output.
    Scaler { offset: Vec<f64>, scale: Vec<f64> },
    /// Replaces `replaced` (NaN by default) with the imputed value of the column.
    Imputer { imputed: Vec<f64>, replaced: f64 },
    /// 1 above the threshold, else 0.
    Binarizer { threshold: f64 },
}

/// The value of a per-column attribute list for `column` (a one-value list applies to all).
fn per_column(values: &[f64], column: usize) -> f64 {
    if values.len() == 1 {
        values[0]
    } else {
        values.get(column).copied().unwrap_or(f64::NAN)
    }
}

impl Elementwise {
    fn name(&self) -> &'static str {
        match self {
            Elementwise::Scaler { .. } => "Scaler",
            Elementwise::Imputer { .. } => "Imputer",
            Elementwise::Binarizer { .. } => "Binarizer",
        }
    }

    /// The per-column lists, which must cover the columns of the input.
    fn columns(&self) -> Vec<usize> {
        match self {
            Elementwise::Scaler { offset, scale } => vec![offset.len(), scale.len()],
            Elementwise::Imputer { imputed, .. } => vec![imputed.len()],
            Elementwise::Binarizer { .. } => vec![],
        }
    }

    fn apply(&self, value: f64, column: usize) -> f64 {
        match self {
            Elementwise::Scaler { offset, scale } => {
                (value - per_column(offset, column)) * per_column(scale, column)
            }
            Elementwise::Imputer { imputed, replaced } => {
                let missing = if replaced.is_nan() {
                    value.is_nan()
                } else {
                    value == *replaced
                };
                if missing {
                    per_column(imputed, column)
                } else {
                    value
                }
            }
            Elementwise::Binarizer { threshold } => f64::from(u8::from(value > *threshold)),
        }
    }

    /// Scaler always answers floats; the others keep the input's type.
    fn output_type(&self, input: DatumType) -> DatumType {
        match self {
            Elementwise::Scaler { .. } => DatumType::F32,
            _ => input,
        }
    }
}

#[derive(Debug, Clone)]
struct ElementwiseOp(Arc<Elementwise>);

impl PartialEq for ElementwiseOp {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for ElementwiseOp {}

fn elementwise(op: Elementwise) -> Built {
    let scaler = matches!(op, Elementwise::Scaler { .. });
    let rules =
        move |_: &dyn Op, s: &mut Solver, inputs: &[TensorProxy], outputs: &[TensorProxy]| {
            check_input_arity(inputs, 1)?;
            check_output_arity(outputs, 1)?;
            s.equals(&outputs[0].shape, &inputs[0].shape)?;
            if scaler {
                s.equals(&outputs[0].datum_type, DatumType::F32)?;
            } else {
                s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
            }
            Ok(())
        };
    Ok((
        inference_wrap(ElementwiseOp(Arc::new(op)), 1, rules),
        vec![],
    ))
}

fn scaler(ctx: &ParsingContext, node: &NodeProto) -> Built {
    let offset = floats(ctx, node, "offset")?.unwrap_or_else(|| vec![0.0]);
    let scale = floats(ctx, node, "scale")?.unwrap_or_else(|| vec![1.0]);
    elementwise(Elementwise::Scaler { offset, scale })
}

fn imputer(ctx: &ParsingContext, node: &NodeProto) -> Built {
    ensure!(
        node.get_attr_opt_vec::<i64>("imputed_value_int64s")?
            .is_none(),
        "Imputer: integer imputation is not supported, only floats"
    );
    let imputed = floats(ctx, node, "imputed_value_floats")?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format_err!("Imputer: imputed_value_floats is missing"))?;
    let replaced = node
        .get_attr_opt::<f32>("replaced_value_float")?
        .map_or(f64::NAN, f64::from);
    elementwise(Elementwise::Imputer { imputed, replaced })
}

fn binarizer(_ctx: &ParsingContext, node: &NodeProto) -> Built {
    let threshold = node
        .get_attr_opt::<f32>("threshold")?
        .map_or(0.0, f64::from);
    elementwise(Elementwise::Binarizer { threshold })
}

impl Op for ElementwiseOp {
    fn name(&self) -> StaticName {
        self.0.name().into()
    }

    op_as_typed_op!();
}

impl EvalOp for ElementwiseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let output_type = self.0.output_type(input.datum_type());
        ensure!(
            matches!(output_type, DatumType::F32 | DatumType::F64),
            "{} takes float inputs, got {:?}",
            self.0.name(),
            input.datum_type()
        );
        let shape = input.shape().to_vec();
        let width = shape.last().copied().unwrap_or(1).max(1);
        if let Some(len) = self
            .0
            .columns()
            .into_iter()
            .find(|len| *len != 1 && *len != width)
        {
            bail!(
                "{} has {len} per-column values for {width} columns",
                self.0.name()
            );
        }
        let input = input.cast_to::<f64>()?;
        let view = input.to_plain_array_view::<f64>()?;
        let values: Vec<f64> = view
            .iter()
            .enumerate()
            .map(|(i, v)| self.0.apply(*v, i % width))
            .collect();
        let output = ArrayD::from_shape_vec(IxDyn(&shape), values)?.into_tensor();
        Ok(tvec!(
            output.cast_to_dt(output_type)?.into_owned().into_tvalue()
        ))
    }
}

impl TypedOp for ElementwiseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(
            self.0
                .output_type(inputs[0].datum_type)
                .fact(inputs[0].shape.clone())
        ))
    }

    as_op!();
}
