//! Scoring the MLflow ONNX models in `tests/fixtures` (made by `make_fixtures.py` with
//! scikit-learn and skl2onnx) gives the library's predictions; the batcher answers concurrent
//! requests as one batch would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tarn_models::{Batcher, BatcherOptions, Invocation, Model, ModelError};

mod properties;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

fn load(name: &str) -> Model {
    Model::from_dir(&fixtures().join(name)).expect("model loads")
}

/// Scores a request body in one run and returns the parsed `predictions`.
fn predict(model: &Model, body: &Value) -> Value {
    let invocation = Invocation::parse(body.to_string().as_bytes()).expect("valid request");
    let body = model.predict(&invocation, 1000).expect("scores");
    serde_json::from_slice::<Value>(&body).expect("valid json")["predictions"].take()
}

fn split(expected: &Value) -> Value {
    json!({ "dataframe_split": { "columns": expected["columns"], "data": expected["rows"] } })
}

fn assert_close(got: &Value, want: &Value) {
    let (got, want) = (
        got.as_f64()
            .unwrap_or_else(|| panic!("{got} is not a number")),
        want.as_f64().expect("number"),
    );
    assert!(
        (got - want).abs() <= 1e-5 + 1e-5 * want.abs(),
        "{got} != {want}"
    );
}

#[test]
fn classifiers_answer_the_library_labels_and_probabilities() {
    let expected = expected();
    for name in ["scaled_logistic", "gradient_boosting"] {
        let model = load(name);
        let predictions = predict(&model, &split(&expected));
        let want = &expected["models"][name];
        let rows = predictions.as_array().expect("records");
        assert_eq!(rows.len(), 12);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["output_label"], want["label"][i], "{name} row {i}");
            // As MLflow answers a ZipMap: {class label: probability}.
            let probabilities = row["output_probability"].as_object().expect("map");
            assert_eq!(probabilities.keys().collect::<Vec<_>>(), ["0", "1"]);
            for (got, want) in probabilities
                .values()
                .zip(want["probabilities"][i].as_array().expect("list"))
            {
                assert_close(got, want);
            }
        }
    }
}

#[test]
fn regressors_answer_the_library_values_in_every_format() {
    let expected = expected();
    let model = load("random_forest_regressor");
    let want = expected["models"]["random_forest_regressor"]["values"]
        .as_array()
        .expect("values");
    let records = predict(&model, &split(&expected));
    for (row, want) in records.as_array().expect("records").iter().zip(want) {
        assert_close(&row["variable"], want);
    }
    // Tensors in, a dict of output tensors back (as MLflow answers numpy outputs): [N, 1].
    let tensors = predict(&model, &json!({ "inputs": expected["rows"] }));
    for (got, want) in tensors["variable"]
        .as_array()
        .expect("list")
        .iter()
        .zip(want)
    {
        assert_close(&got[0], want);
    }
    let records: Vec<Value> = expected["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| json!({ "a": row[0], "b": row[1], "c": row[2], "d": row[3] }))
        .collect();
    assert_eq!(
        predict(&model, &json!({ "dataframe_records": records })),
        predict(&model, &split(&expected))
    );
}

#[test]
fn requests_that_do_not_fit_are_refused_with_a_reason() {
    let model = load("scaled_logistic");
    let refuse = |body: Value| {
        let invocation = Invocation::parse(body.to_string().as_bytes());
        let error = invocation
            .and_then(|i| model.prepare(&i, 5).map(|_| ()))
            .expect_err("refused");
        assert!(matches!(error, ModelError::BadInput(_)), "{error:?}");
        error.to_string()
    };
    let missing =
        refuse(json!({ "dataframe_split": { "columns": ["a", "b", "c"], "data": [[1, 2, 3]] } }));
    assert!(missing.contains("\"d\""), "{missing}");
    let typed = refuse(json!({ "dataframe_records": [{ "a": 1, "b": 2, "c": "x", "d": 4 }] }));
    assert!(typed.contains("column c"), "{typed}");
    let many = refuse(json!({ "inputs": vec![[0.0, 0.0, 0.0, 0.0]; 6] }));
    assert!(many.contains("6 rows"), "{many}");
    let narrow = refuse(json!({ "inputs": [[0.0, 0.0, 0.0]] }));
    assert!(narrow.contains("shape"), "{narrow}");
    let row = json!([0.0, 0.0, 0.0, 0.0]);
    let two = refuse(json!({ "inputs": [row], "instances": [row] }));
    assert!(two.contains("exactly one"), "{two}");
    let ragged = refuse(json!({ "instances": [row, [0.0, 0.0, 0.0]] }));
    assert!(ragged.contains("ragged"), "{ragged}");
    assert!(refuse(json!([1, 2])).contains("object"));
}

#[test]
fn broken_or_hostile_model_directories_fail_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("MLmodel"),
        "flavors:\n  onnx:\n    data: model.onnx\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("model.onnx"), b"not a protobuf at all").expect("write");
    let error = Model::from_dir(dir.path()).expect_err("garbage");
    assert!(matches!(error, ModelError::Invalid(_)), "{error:?}");
    std::fs::write(
        dir.path().join("MLmodel"),
        "flavors:\n  onnx:\n    data: /etc/passwd\n",
    )
    .expect("write");
    let error = Model::from_dir(dir.path()).expect_err("absolute path");
    assert!(error.to_string().contains("/etc/passwd"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_each_gets_its_own_rows() {
    let expected = expected();
    let model = Arc::new(load("gradient_boosting"));
    let one_batch = predict(&model, &split(&expected));
    // A bounded wait makes the scoring thread gather the concurrent requests.
    let options = BatcherOptions {
        threads: 1,
        max_wait: Duration::from_millis(20),
        ..BatcherOptions::default()
    };
    let batcher = Arc::new(Batcher::start(model.clone(), options));
    let rows = expected["rows"].as_array().expect("rows").clone();
    let requests = rows.into_iter().enumerate().map(|(i, row)| {
        let batcher = batcher.clone();
        let columns = expected["columns"].clone();
        tokio::spawn(async move {
            let body = json!({ "dataframe_split": { "columns": columns, "data": [row] } });
            let invocation = Invocation::parse(body.to_string().as_bytes()).expect("valid");
            let prepared = batcher.model().prepare(&invocation, 10).expect("fits");
            let scored = batcher.score(prepared).await.expect("scored");
            let mut body: Value = serde_json::from_slice(&scored.body).expect("json");
            (i, body["predictions"][0].take(), scored.batch_requests)
        })
    });
    let mut largest_batch = 0;
    for request in requests.collect::<Vec<_>>() {
        let (i, prediction, batch) = request.await.expect("task");
        assert_eq!(prediction, one_batch[i], "row {i}");
        largest_batch = largest_batch.max(batch);
    }
    assert!(
        largest_batch > 1,
        "concurrent requests were scored one by one"
    );
}
