//! Tree ensembles as the ONNX-ML `TreeEnsembleClassifier` and `TreeEnsembleRegressor` operators
//! define them, evaluated by tarn rather than tract: tract walks every leaf of every tree per
//! row, tarn walks one path per tree over nodes laid out flat with their children resolved.

use std::collections::HashMap;

/// How a branch node compares the feature with its threshold (`nodes_modes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        Ok(match text {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => Mode::Leaf,
            other => return Err(format!("unknown node mode {other}")),
        })
    }
}

/// How the leaf values of the trees combine (`aggregate_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

impl Aggregate {
    pub fn parse(text: &str) -> Result<Aggregate, String> {
        Ok(match text {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => return Err(format!("unknown aggregate function {other}")),
        })
    }
}

/// What turns the aggregated scores into outputs (`post_transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    pub fn parse(text: &str) -> Result<PostTransform, String> {
        Ok(match text {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => return Err(format!("unknown post transform {other}")),
        })
    }

    /// Applies the transform to one row of scores in place.
    pub fn apply(self, scores: &mut [f64]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::Softmax => softmax(scores, false),
            PostTransform::SoftmaxZero => softmax(scores, true),
            PostTransform::Probit => scores
                .iter_mut()
                .for_each(|s| *s = std::f64::consts::SQRT_2 * erf_inv(2.0 * *s - 1.0)),
        }
    }
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax of a row; `skip_zeros` leaves exact zeros at zero (ONNX's SOFTMAX_ZERO).
fn softmax(scores: &mut [f64], skip_zeros: bool) {
    let counted = |s: f64| !skip_zeros || s != 0.0;
    let max = scores
        .iter()
        .copied()
        .filter(|s| counted(*s))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0;
    for s in scores.iter_mut() {
        if counted(*s) {
            *s = (*s - max).exp();
            total += *s;
        }
    }
    if total > 0.0 {
        scores.iter_mut().for_each(|s| *s /= total);
    }
}

/// The inverse error function (Giles' single-precision approximation, enough for PROBIT).
fn erf_inv(x: f64) -> f64 {
    let w = -((1.0 - x) * (1.0 + x)).ln();
    if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ] {
            p = c + p * w;
        }
        p * x
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ] {
            p = c + p * w;
        }
        p * x
    }
}

/// The node and leaf attributes of a tree ensemble operator, one entry per node and per leaf
/// weight, as the ONNX attributes give them.
#[derive(Debug, Clone, Default)]
pub struct TreeAttributes {
    pub tree_ids: Vec<i64>,
    pub node_ids: Vec<i64>,
    pub feature_ids: Vec<i64>,
    pub modes: Vec<Mode>,
    pub values: Vec<f64>,
    pub true_ids: Vec<i64>,
    pub false_ids: Vec<i64>,
    pub missing_tracks_true: Vec<bool>,
    pub leaf_tree_ids: Vec<i64>,
    pub leaf_node_ids: Vec<i64>,
    pub leaf_targets: Vec<i64>,
    pub leaf_weights: Vec<f64>,
}

/// One node: a branch holds its feature, threshold and children; a leaf holds the range of its
/// weights in `Ensemble::weights` (in `first`/`second`).
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f64,
    feature: u32,
    mode: Mode,
    missing_tracks_true: bool,
    first: u32,
    second: u32,
}

/// A validated ensemble: every child exists, every tree is a tree (no node reached twice).
#[derive(Debug)]
pub struct Ensemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    weights: Vec<(u32, f64)>,
    targets: usize,
    aggregate: Aggregate,
    features: usize,
}

impl Ensemble {
    pub fn build(
        attributes: &TreeAttributes,
        targets: usize,
        aggregate: Aggregate,
    ) -> Result<Ensemble, String> {
        let a = attributes;
        let count = a.node_ids.len();
        if count == 0 {
            return Err("the ensemble has no nodes".into());
        }
        for (name, len) in [
            ("nodes_treeids", a.tree_ids.len()),
            ("nodes_featureids", a.feature_ids.len()),
            ("nodes_modes", a.modes.len()),
            ("nodes_values", a.values.len()),
            ("nodes_truenodeids", a.true_ids.len()),
            ("nodes_falsenodeids", a.false_ids.len()),
            (
                "nodes_missing_value_tracks_true",
                a.missing_tracks_true.len(),
            ),
        ] {
            if len != count {
                return Err(format!("{name} has {len} entries for {count} nodes"));
            }
        }
        let leaf_count = a.leaf_weights.len();
        if a.leaf_tree_ids.len() != leaf_count
            || a.leaf_node_ids.len() != leaf_count
            || a.leaf_targets.len() != leaf_count
        {
            return Err("the leaf attributes differ in length".into());
        }

        let mut index: HashMap<(i64, i64), u32> = HashMap::with_capacity(count);
        for (i, key) in a.tree_ids.iter().zip(&a.node_ids).enumerate() {
            let position = u32::try_from(i).map_err(|_| "too many nodes".to_string())?;
            if index.insert((*key.0, *key.1), position).is_some() {
                return Err(format!("node {} of tree {} appears twice", key.1, key.0));
            }
        }
        let child = |tree: i64, id: i64| {
            index.get(&(tree, id)).copied().ok_or_else(|| {
                format!("a node of tree {tree} points to node {id}, which is missing")
            })
        };

        // Leaf weights, grouped by leaf in the order the leaves come.
        let mut by_leaf: HashMap<u32, Vec<(u32, f64)>> = HashMap::new();
        for i in 0..leaf_count {
            let node = child(a.leaf_tree_ids[i], a.leaf_node_ids[i])?;
            let target = usize::try_from(a.leaf_targets[i])
                .ok()
                .filter(|t| *t < targets)
                .ok_or_else(|| {
                    format!("leaf weight for target {} of {targets}", a.leaf_targets[i])
                })?;
            if a.modes[node as usize] != Mode::Leaf {
                return Err(format!(
                    "a weight is attached to branch node {}",
                    a.leaf_node_ids[i]
                ));
            }
            by_leaf
                .entry(node)
                .or_default()
                .push((target as u32, a.leaf_weights[i]));
        }

        let mut nodes = Vec::with_capacity(count);
        let mut weights = Vec::with_capacity(leaf_count);
        let mut features = 0;
        let mut is_child = vec![false; count];
        for i in 0..count {
            let tree = a.tree_ids[i];
            let mode = a.modes[i];
            let node = if mode == Mode::Leaf {
                let start = weights.len() as u32;
                weights.extend(by_leaf.remove(&(i as u32)).unwrap_or_default());
                Node {
                    threshold: 0.0,
                    feature: 0,
                    mode,
                    missing_tracks_true: false,
                    first: start,
                    second: weights.len() as u32,
                }
            } else {
                let feature = u32::try_from(a.feature_ids[i])
                    .map_err(|_| format!("feature id {} is out of range", a.feature_ids[i]))?;
                features = features.max(feature as usize + 1);
                let (yes, no) = (child(tree, a.true_ids[i])?, child(tree, a.false_ids[i])?);
                is_child[yes as usize] = true;
                is_child[no as usize] = true;
                Node {
                    threshold: a.values[i],
                    feature,
                    mode,
                    missing_tracks_true: a.missing_tracks_true[i],
                    first: yes,
                    second: no,
                }
            };
            nodes.push(node);
        }

        // One root per tree, in tree id order, and each tree must really be one.
        let mut roots: Vec<(i64, u32)> = (0..count)
            .filter(|i| !is_child[*i])
            .map(|i| (a.tree_ids[i], i as u32))
            .collect();
        roots.sort_unstable();
        if roots.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return Err("a tree has more than one root".into());
        }
        let mut trees = a.tree_ids.clone();
        trees.sort_unstable();
        trees.dedup();
        if let Some(rootless) = trees
            .iter()
            .find(|t| !roots.iter().any(|(tree, _)| tree == *t))
        {
            return Err(format!(
                "tree {rootless} has no root (every node is a child)"
            ));
        }
        let mut seen = vec![false; count];
        let mut pending = Vec::new();
        for (_, root) in &roots {
            pending.push(*root);
            while let Some(at) = pending.pop() {
                if std::mem::replace(&mut seen[at as usize], true) {
                    return Err(format!("node {} is reached twice", a.node_ids[at as usize]));
                }
                let node = nodes[at as usize];
                if node.mode != Mode::Leaf {
                    pending.extend([node.first, node.second]);
                }
            }
        }
        Ok(Ensemble {
            nodes,
            roots: roots.into_iter().map(|(_, root)| root).collect(),
            weights,
            targets,
            aggregate,
            features,
        })
    }

    pub fn targets(&self) -> usize {
        self.targets
    }

    /// How many features a row needs (one more than the highest feature id used).
    pub fn features(&self) -> usize {
        self.features
    }

    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// The class or target ids that carry weights.
    pub fn weighted_targets(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.weights.iter().map(|(t, _)| *t).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn weights_all_non_negative(&self) -> bool {
        self.weights.iter().all(|(_, w)| *w >= 0.0)
    }

    fn leaf(&self, root: u32, row: &[f64]) -> &[(u32, f64)] {
        let mut at = root as usize;
        loop {
            let node = &self.nodes[at];
            let value = row[node.feature as usize];
            let go_true = match node.mode {
                Mode::Leaf => {
                    return &self.weights[node.first as usize..node.second as usize];
                }
                _ if node.missing_tracks_true && value.is_nan() => true,
                Mode::Leq => value <= node.threshold,
                Mode::Lt => value < node.threshold,
                Mode::Gte => value >= node.threshold,
                Mode::Gt => value > node.threshold,
                Mode::Eq => value == node.threshold,
                Mode::Neq => value != node.threshold,
            };
            at = if go_true { node.first } else { node.second } as usize;
        }
    }

    /// Aggregates the leaves every row reaches into `scores` (row-major, one per target and
    /// row; no base values). Sums walk one tree over all rows before the next, so that a tree's
    /// nodes stay in cache across the rows (a row's sum still adds the trees in order).
    pub fn score_rows(&self, rows: &[f64], width: usize, scores: &mut Vec<f64>) {
        let targets = self.targets;
        let count = rows.len() / width.max(1);
        scores.clear();
        scores.resize(count * targets, 0.0);
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => {
                for root in &self.roots {
                    for (row, out) in rows
                        .chunks_exact(width)
                        .zip(scores.chunks_exact_mut(targets))
                    {
                        for (target, weight) in self.leaf(*root, row) {
                            out[*target as usize] += weight;
                        }
                    }
                }
                if self.aggregate == Aggregate::Average {
                    let trees = self.roots.len() as f64;
                    scores.iter_mut().for_each(|s| *s /= trees);
                }
            }
            Aggregate::Min | Aggregate::Max => {
                for (row, out) in rows
                    .chunks_exact(width)
                    .zip(scores.chunks_exact_mut(targets))
                {
                    self.score_row(row, out);
                }
            }
        }
    }

    /// Aggregates the leaves one row reaches into `scores` (one per target, no base values).
    /// `row` must hold at least `features()` values.
    pub fn score_row(&self, row: &[f64], scores: &mut [f64]) {
        debug_assert!(row.len() >= self.features && scores.len() == self.targets);
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => {
                scores.fill(0.0);
                for root in &self.roots {
                    for (target, weight) in self.leaf(*root, row) {
                        scores[*target as usize] += weight;
                    }
                }
                if self.aggregate == Aggregate::Average {
                    let trees = self.roots.len() as f64;
                    scores.iter_mut().for_each(|s| *s /= trees);
                }
            }
            Aggregate::Min | Aggregate::Max => {
                let start = if self.aggregate == Aggregate::Min {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                };
                scores.fill(start);
                for root in &self.roots {
                    for (target, weight) in self.leaf(*root, row) {
                        let score = &mut scores[*target as usize];
                        *score = if self.aggregate == Aggregate::Min {
                            score.min(*weight)
                        } else {
                            score.max(*weight)
                        };
                    }
                }
                // A target no leaf reached scores zero, as in onnxruntime.
                scores
                    .iter_mut()
                    .filter(|s| s.is_infinite())
                    .for_each(|s| *s = 0.0);
            }
        }
    }
}

/// `TreeEnsembleRegressor`: aggregated leaf values plus base values, post-transformed.
#[derive(Debug)]
pub struct TreeRegressor {
    pub ensemble: Ensemble,
    pub base_values: Vec<f64>,
    pub post_transform: PostTransform,
}

impl TreeRegressor {
    /// Scores `rows` (row-major, `width` values each) into `out` (row-major, one per target).
    pub fn predict(&self, rows: &[f64], width: usize, out: &mut Vec<f32>) {
        let targets = self.ensemble.targets();
        let mut all = Vec::new();
        self.ensemble.score_rows(rows, width, &mut all);
        for scores in all.chunks_exact_mut(targets) {
            for (score, base) in scores.iter_mut().zip(&self.base_values) {
                *score += base;
            }
            self.post_transform.apply(scores);
            out.extend(scores.iter().map(|s| *s as f32));
        }
    }
}

/// `TreeEnsembleClassifier`: a label and a probability (or score) per class.
#[derive(Debug)]
pub struct TreeClassifier {
    pub ensemble: Ensemble,
    pub base_values: Vec<f64>,
    pub post_transform: PostTransform,
    /// Two classes with weights on one only: that weight is the score of the second class,
    /// the convention of skl2onnx, onnxmltools and onnxruntime for binary boosting.
    single_score: bool,
    /// The class the single score is accumulated on.
    single_class: usize,
    non_negative: bool,
}

impl TreeClassifier {
    pub fn new(ensemble: Ensemble, base_values: Vec<f64>, post_transform: PostTransform) -> Self {
        let weighted = ensemble.weighted_targets();
        let single_score = ensemble.targets() == 2 && weighted.len() == 1;
        let single_class = weighted.first().copied().unwrap_or(0) as usize;
        let non_negative = ensemble.weights_all_non_negative();
        TreeClassifier {
            ensemble,
            base_values,
            post_transform,
            single_score,
            single_class,
            non_negative,
        }
    }

    pub fn classes(&self) -> usize {
        self.ensemble.targets()
    }

    /// Scores `rows` into the winning class index per row and the class scores.
    pub fn predict(
        &self,
        rows: &[f64],
        width: usize,
        winners: &mut Vec<usize>,
        out: &mut Vec<f32>,
    ) {
        let classes = self.classes();
        let single = self.single_class;
        let mut all = Vec::new();
        self.ensemble.score_rows(rows, width, &mut all);
        for scores in all.chunks_exact_mut(classes) {
            if self.single_score {
                let base = match self.base_values.len() {
                    2 => self.base_values[single],
                    1 => self.base_values[0],
                    _ => 0.0,
                };
                let score = scores[single] + base;
                // Probabilities accumulated by averaging trees stand as they are; margins are
                // mirrored so that LOGISTIC yields [1 - p, p].
                scores[0] = if self.non_negative && self.post_transform == PostTransform::None {
                    1.0 - score
                } else {
                    -score
                };
                scores[1] = score;
            } else if self.base_values.len() == classes {
                for (score, base) in scores.iter_mut().zip(&self.base_values) {
                    *score += base;
                }
            }
            self.post_transform.apply(scores);
            // The first of equal maxima wins, as numpy's argmax does.
            let winner = scores
                .iter()
                .enumerate()
                .fold(0, |best, (i, s)| if *s > scores[best] { i } else { best });
            winners.push(winner);
            out.extend(scores.iter().map(|s| *s as f32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tree 0: x0 <= 0.5 ? leaf(1.0 to target 0) : leaf(2.0 to target 1).
    /// Tree 1: x1 < 10 ? leaf(0.5 to target 1) : leaf(-1.0 to target 0).
    fn two_trees() -> TreeAttributes {
        TreeAttributes {
            tree_ids: vec![0, 0, 0, 1, 1, 1],
            node_ids: vec![0, 1, 2, 0, 1, 2],
            feature_ids: vec![0, 0, 0, 1, 0, 0],
            modes: vec![
                Mode::Leq,
                Mode::Leaf,
                Mode::Leaf,
                Mode::Lt,
                Mode::Leaf,
                Mode::Leaf,
            ],
            values: vec![0.5, 0.0, 0.0, 10.0, 0.0, 0.0],
            true_ids: vec![1, 0, 0, 1, 0, 0],
            false_ids: vec![2, 0, 0, 2, 0, 0],
            missing_tracks_true: vec![false, false, false, true, false, false],
            leaf_tree_ids: vec![0, 0, 1, 1],
            leaf_node_ids: vec![1, 2, 1, 2],
            leaf_targets: vec![0, 1, 1, 0],
            leaf_weights: vec![1.0, 2.0, 0.5, -1.0],
        }
    }

    fn scores(ensemble: &Ensemble, row: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; ensemble.targets()];
        ensemble.score_row(row, &mut out);
        out
    }

    #[test]
    fn each_tree_contributes_the_leaf_its_path_reaches() {
        let ensemble = Ensemble::build(&two_trees(), 2, Aggregate::Sum).expect("valid");
        assert_eq!(ensemble.trees(), 2);
        assert_eq!(ensemble.features(), 2);
        assert_eq!(scores(&ensemble, &[0.5, 3.0]), vec![1.0, 0.5]);
        assert_eq!(scores(&ensemble, &[0.6, 30.0]), vec![-1.0, 2.0]);
        // NaN: tree 0 goes false (comparison fails), tree 1 tracks missing values to true.
        assert_eq!(scores(&ensemble, &[f64::NAN, f64::NAN]), vec![0.0, 2.5]);
        let average = Ensemble::build(&two_trees(), 2, Aggregate::Average).expect("valid");
        assert_eq!(scores(&average, &[0.5, 3.0]), vec![0.5, 0.25]);
        let max = Ensemble::build(&two_trees(), 2, Aggregate::Max).expect("valid");
        assert_eq!(scores(&max, &[0.5, 3.0]), vec![1.0, 0.5]);
    }

    #[test]
    fn malformed_trees_are_refused() {
        let mut missing_child = two_trees();
        missing_child.true_ids[0] = 7;
        let error = Ensemble::build(&missing_child, 2, Aggregate::Sum).expect_err("missing child");
        assert!(error.contains("node 7"), "{error}");

        let mut cycle = two_trees();
        cycle.modes[1] = Mode::Leq;
        cycle.true_ids[1] = 0;
        cycle.false_ids[1] = 2;
        cycle.leaf_node_ids[0] = 2;
        let error = Ensemble::build(&cycle, 2, Aggregate::Sum).expect_err("cycle");
        assert!(error.contains("root") || error.contains("twice"), "{error}");

        let error = Ensemble::build(&two_trees(), 1, Aggregate::Sum).expect_err("target range");
        assert!(error.contains("target 1"), "{error}");
    }

    #[test]
    fn binary_boosting_scores_the_second_class() {
        let mut margin = two_trees();
        margin.leaf_targets = vec![0, 0, 0, 0];
        let ensemble = Ensemble::build(&margin, 2, Aggregate::Sum).expect("valid");
        let classifier = TreeClassifier::new(ensemble, vec![0.25], PostTransform::Logistic);
        let (mut winners, mut probabilities) = (Vec::new(), Vec::new());
        // Margin 1.0 + 0.5 + 0.25 for the first row, 2.0 - 1.0 + 0.25 for the second.
        classifier.predict(
            &[0.5, 3.0, 0.6, 30.0, 0.6, 3.0],
            2,
            &mut winners,
            &mut probabilities,
        );
        assert_eq!(
            &probabilities[..2],
            &[logistic(-1.75) as f32, logistic(1.75) as f32]
        );
        assert_eq!(winners, vec![1, 1, 1]);
        let mut negative = two_trees();
        negative.leaf_targets = vec![0, 0, 0, 0];
        negative.leaf_weights = vec![-1.0, -2.0, -0.5, -1.0];
        let ensemble = Ensemble::build(&negative, 2, Aggregate::Sum).expect("valid");
        let classifier = TreeClassifier::new(ensemble, vec![], PostTransform::Logistic);
        let (mut winners, mut probabilities) = (Vec::new(), Vec::new());
        classifier.predict(&[0.5, 3.0], 2, &mut winners, &mut probabilities);
        assert_eq!(winners, vec![0]);
        assert!(probabilities[0] > 0.8);
    }

    #[test]
    fn softmax_zero_keeps_zeros() {
        let mut row = [0.0, 1.0, 1.0];
        PostTransform::SoftmaxZero.apply(&mut row);
        assert_eq!(row, [0.0, 0.5, 0.5]);
        let mut row = [0.0, 0.0];
        PostTransform::Softmax.apply(&mut row);
        assert_eq!(row, [0.5, 0.5]);
        let mut half = [0.5];
        PostTransform::Probit.apply(&mut half);
        assert!(half[0].abs() < 1e-6);
    }
}
