//! Properties of the scoring payload parser (`dataframe_split`, `dataframe_records`,
//! `instances`, `inputs`): any body is parsed or refused as bad input, never a panic or an
//! abort; payloads built from generated rows and tensors decode to exactly those rows and
//! tensors, values exact; prepared for a model, the values reach its input tensor exactly;
//! ragged and deeply nested tensors are refused without allocating what they claim.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};
use tarn_models::payload::{Frame, Input, NamedTensor};
use tarn_models::{Invocation, Model, ModelError};
use tract_onnx::prelude::{DatumType, Tensor};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn regressor() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::from_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/random_forest_regressor"),
        )
        .expect("model loads")
    })
}

/// Parses `body`: a refusal is bad input, the 400 of the scoring API.
fn parse_answers(body: &[u8]) -> Result<Option<Invocation>, TestCaseError> {
    match Invocation::parse(body) {
        Ok(invocation) => Ok(Some(invocation)),
        Err(ModelError::BadInput(message)) => {
            prop_assert!(!message.is_empty());
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "{:?} refused with {other:?}",
            String::from_utf8_lossy(body)
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Values and payloads

fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        select(vec![
            0.0,
            -0.0,
            0.1,
            1e-310,
            f64::MAX,
            f64::MIN,
            f64::EPSILON
        ]),
    ]
}

/// A JSON cell: null, a boolean, an integer at either end of its range, an exact double or
/// text with quotes, escapes and non-ASCII characters.
fn cell() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        finite_f64().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "[\"\\\\/\\x00\\x1fé😀\\x{2028}a-z ]{0,8}".prop_map(Value::from),
    ]
}

/// Distinct column names.
fn columns(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(any::<String>(), 1..=max)
        .prop_map(|names| names.into_iter().collect())
        .prop_shuffle()
}

fn frame(max_columns: usize, max_rows: usize) -> impl Strategy<Value = Frame> {
    columns(max_columns).prop_flat_map(move |columns| {
        let width = columns.len();
        (
            Just(columns),
            prop::collection::vec(prop::collection::vec(cell(), width), 0..=max_rows),
        )
            .prop_map(|(columns, rows)| Frame { columns, rows })
    })
}

/// A tensor's shape (dimensions 0 to 4 wide) and its values, row-major.
fn tensor(max_dims: usize) -> impl Strategy<Value = (Vec<usize>, Vec<Value>)> {
    prop::collection::vec(0..=4usize, 1..=max_dims).prop_flat_map(|shape| {
        let size = shape.iter().product::<usize>();
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            finite_f64().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            "[a-z\"]{0,4}".prop_map(Value::from),
        ];
        (Just(shape), prop::collection::vec(leaf, size))
    })
}

/// Values in nested lists of `shape`.
fn nest(shape: &[usize], values: &[Value]) -> Value {
    match shape.split_first() {
        None => values.first().cloned().unwrap_or(Value::Null),
        Some((&len, rest)) => {
            let stride = rest.iter().product::<usize>();
            Value::Array(
                (0..len)
                    .map(|i| nest(rest, &values[i * stride..(i + 1) * stride]))
                    .collect(),
            )
        }
    }
}

/// The shape parsing reads off nested lists: it stops at the first empty list.
fn read_shape(shape: &[usize]) -> Vec<usize> {
    match shape.iter().position(|&d| d == 0) {
        Some(at) => shape[..=at].to_vec(),
        None => shape.to_vec(),
    }
}

/// A valid body of any of the four formats.
fn valid_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        frame(4, 4)
            .prop_map(|f| json!({"dataframe_split": {"columns": f.columns, "data": f.rows}})),
        frame(4, 4).prop_map(|f| json!({"dataframe_records": records(&f)})),
        tensor(3).prop_map(|(shape, values)| json!({"inputs": nest(&shape, &values)})),
        tensor(3).prop_map(|(shape, values)| json!({"instances": nest(&shape, &values)})),
    ]
    .prop_flat_map(|body| {
        (
            Just(body),
            prop::option::of(prop::collection::btree_map("[a-z]{1,5}", cell(), 0..3)),
            prop::option::of(any::<String>()),
        )
            .prop_map(|(mut body, params, id)| {
                if let Some(params) = params {
                    body["params"] = Value::Object(params.into_iter().collect());
                }
                if let Some(id) = id {
                    body["client_request_id"] = Value::from(id);
                }
                body
            })
    })
}

fn records(frame: &Frame) -> Vec<Value> {
    frame
        .rows
        .iter()
        .map(|row| {
            Value::Object(
                frame
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect::<Map<String, Value>>(),
            )
        })
        .collect()
}

const SNIPPETS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "\\udfff",
    "null",
    "true",
    "1e999999",
    "-1e-999999",
    "18446744073709551616",
    "-9223372036854775809",
    "0.1e",
    "NaN",
    "Infinity",
    "é",
    "\u{0}",
    "\u{FEFF}",
    "\"dataframe_split\":",
    "\"inputs\":",
    "\"instances\":",
    "\"dataframe_records\":",
    "\"columns\":",
    "\"data\":",
];

fn mutated(text: String, cuts: Vec<(Index, Index, &'static str, usize)>) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    for (at, len, snippet, times) in cuts {
        let start = at.index(bytes.len() + 1);
        let end = (start + len.index(8)).min(bytes.len());
        bytes.splice(start..end, snippet.repeat(times).into_bytes());
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// Running a parse in a child process, where an abort does not end every other test

const PROBE: &str = "TARN_PAYLOAD_PROBE";

/// Parses `body` in a child process running only [`payload_probe`]; what it printed, or how it
/// died.
fn parse_in_child(body: &str) -> Result<String, String> {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "properties::payload_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, body)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // With one test thread, the harness prints `test ... ` before the probe's own line.
    let answer = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE: ").map(|(_, answer)| answer));
    match answer {
        Some(answer) if output.status.success() => Ok(answer.to_string()),
        _ => Err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .filter(|l| l.contains("panicked")
                    || l.contains("memory")
                    || l.contains("overflow"))
                .collect::<Vec<_>>()
                .join(" | ")
        )),
    }
}

/// Parses the body a parent test put in the environment (does nothing when run by hand).
#[test]
#[ignore = "run in a child process by parse_in_child"]
fn payload_probe() {
    if let Ok(body) = std::env::var(PROBE) {
        match Invocation::parse(body.as_bytes()) {
            Ok(invocation) => println!("PROBE: ok {} rows", invocation.rows()),
            Err(ModelError::BadInput(_)) => println!("PROBE: bad input"),
            Err(other) => println!("PROBE: {other:?}"),
        }
    }
}

/// A ragged tensor claiming `width^depth` values: each level's first item nests further, the
/// other `width - 1` are numbers. A few kilobytes of text.
fn ragged(width: usize, depth: usize) -> String {
    let mut text = "0".to_string();
    for _ in 0..depth {
        text = format!("[{text}{}]", ",0".repeat(width - 1));
    }
    format!("{{\"inputs\": {text}}}")
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes, and any JSON value, are parsed or refused as bad input.
    #[test]
    fn payload_parser_never_panics_on_arbitrary_input(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        field in select(vec!["dataframe_split", "dataframe_records", "instances", "inputs", "params"]),
        inner in prop_oneof![cell(), prop::collection::vec(cell(), 0..4).prop_map(Value::Array)],
    ) {
        parse_answers(&bytes)?;
        parse_answers(json!({ field: inner.clone() }).to_string().as_bytes())?;
        parse_answers(json!({ "dataframe_split": { "columns": inner.clone(), "data": [inner.clone()] } }).to_string().as_bytes())?;
        parse_answers(json!({ "dataframe_records": [{ "a": inner.clone() }, inner.clone()] }).to_string().as_bytes())?;
        parse_answers(json!({ "instances": [{ "a": inner.clone() }, { "a": [inner] }] }).to_string().as_bytes())?;
    }

    /// Valid bodies cut, spliced and salted with brackets, escapes, lone surrogates and
    /// numbers past every range are parsed or refused as bad input.
    #[test]
    fn payload_parser_never_panics_on_mutated_payloads(
        body in valid_body(),
        cuts in prop::collection::vec((any::<Index>(), any::<Index>(), select(SNIPPETS), 1..300usize), 1..4),
    ) {
        parse_answers(&mutated(body.to_string(), cuts))?;
    }

    /// `dataframe_split` built from generated columns and rows decodes to exactly those
    /// columns and rows; without `columns` they are numbered.
    #[test]
    fn dataframe_split_decodes_to_its_rows_exactly(frame in frame(6, 6), named in any::<bool>()) {
        let body = if named {
            json!({"dataframe_split": {"columns": frame.columns, "data": frame.rows}})
        } else {
            json!({"dataframe_split": {"data": frame.rows}})
        };
        let invocation = Invocation::parse(body.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let columns = match (named, frame.rows.is_empty()) {
            (true, _) => frame.columns.clone(),
            (false, true) => Vec::new(),
            (false, false) => (0..frame.columns.len()).map(|i| i.to_string()).collect(),
        };
        prop_assert_eq!(invocation.rows(), frame.rows.len());
        prop_assert_eq!(invocation.input, Input::Frame(Frame { columns, rows: frame.rows }));
    }

    /// `dataframe_records` built from generated rows decodes to those rows, values exact, a
    /// key a record leaves out reading as null.
    #[test]
    fn dataframe_records_decode_to_their_rows_exactly(
        frame in frame(6, 6),
        dropped in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let mut sent = records(&frame);
        for pick in &dropped {
            let at = pick.index(sent.len().max(1));
            if let Some(record) = sent.get_mut(at)
                && let Value::Object(fields) = record
                && !fields.is_empty()
            {
                let key = fields.keys().nth(pick.index(fields.len())).cloned().unwrap_or_default();
                fields.remove(&key);
            }
        }
        let invocation = Invocation::parse(json!({"dataframe_records": sent}).to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let Input::Frame(got) = invocation.input else {
            return Err(TestCaseError::fail("a frame"));
        };
        let keys: BTreeSet<&String> = sent
            .iter()
            .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys()))
            .collect();
        prop_assert_eq!(got.columns.iter().collect::<BTreeSet<_>>(), keys);
        prop_assert_eq!(got.rows.len(), sent.len());
        for (row, record) in got.rows.iter().zip(&sent) {
            for (column, value) in got.columns.iter().zip(row) {
                prop_assert_eq!(value, record.get(column).unwrap_or(&Value::Null));
            }
        }
    }

    /// Nested lists under `instances` or `inputs`, and named tensors under `inputs`, decode to
    /// their shape and values, row-major and exact.
    #[test]
    fn tensors_decode_to_their_shape_and_values(
        (shape, values) in tensor(4),
        (other_shape, other_values) in tensor(3),
        field in select(vec!["instances", "inputs"]),
    ) {
        let nested = nest(&shape, &values);
        let invocation = Invocation::parse(json!({ field: nested }).to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let read = read_shape(&shape);
        let expected_values = if read.len() < shape.len() { Vec::new() } else { values.clone() };
        prop_assert_eq!(
            invocation.input,
            Input::Tensors(vec![NamedTensor { name: None, shape: read.clone(), values: expected_values.clone() }])
        );
        // Named tensors, as `inputs` takes them.
        let other = nest(&other_shape, &other_values);
        let invocation = Invocation::parse(json!({"inputs": {"x": nest(&shape, &values), "y": other}}).to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let Input::Tensors(tensors) = invocation.input else {
            return Err(TestCaseError::fail("tensors"));
        };
        prop_assert_eq!(&tensors[0], &NamedTensor { name: Some("x".into()), shape: read, values: expected_values });
        prop_assert_eq!(tensors[1].name.as_deref(), Some("y"));
    }

    /// Rows of any numbers reach the model's input tensor in the signature's column order,
    /// each value exactly as the input's element type holds it, whatever order the request
    /// sends the columns in and in both frame formats.
    #[test]
    fn frame_values_reach_the_model_input_exactly(
        rows in prop::collection::vec(prop::collection::vec(
            prop_oneof![finite_f64().prop_map(Value::from), any::<i32>().prop_map(Value::from), Just(Value::Null)],
            4,
        ), 1..8),
        order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(),
        records_format in any::<bool>(),
    ) {
        let names = ["a", "b", "c", "d"];
        let frame = Frame {
            columns: order.iter().map(|&i| names[i].to_string()).collect(),
            rows: rows.iter().map(|row| order.iter().map(|&i| row[i].clone()).collect()).collect(),
        };
        let body = if records_format {
            json!({"dataframe_records": records(&frame)})
        } else {
            json!({"dataframe_split": {"columns": frame.columns, "data": frame.rows}})
        };
        let invocation = Invocation::parse(body.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let prepared = regressor()
            .prepare(&invocation, 1000)
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(prepared.rows, rows.len());
        prop_assert_eq!(prepared.feeds.len(), 1);
        let feed: &Tensor = &prepared.feeds[0];
        prop_assert_eq!(feed.shape(), &[rows.len(), 4][..]);
        let wanted: Vec<f64> = rows.iter().flatten().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
        let same = |got: f64, want: f64| got == want || (got.is_nan() && want.is_nan());
        match feed.datum_type() {
            DatumType::F32 => {
                let got: Vec<f32> = feed.to_plain_array_view::<f32>().expect("f32").iter().copied().collect();
                for (got, want) in got.iter().zip(&wanted) {
                    prop_assert!(same(f64::from(*got), f64::from(*want as f32)), "{} != {}", got, want);
                }
            }
            DatumType::F64 => {
                let got: Vec<f64> = feed.to_plain_array_view::<f64>().expect("f64").iter().copied().collect();
                for (got, want) in got.iter().zip(&wanted) {
                    prop_assert!(same(*got, *want), "{} != {}", got, want);
                }
            }
            other => return Err(TestCaseError::fail(format!("input of {other:?}"))),
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Any parsed body is prepared for a model or refused as bad input, and a prepared one
    /// scores: never an internal failure.
    #[test]
    fn any_parsed_payload_is_prepared_or_refused_as_bad_input(
        body in prop_oneof![
            valid_body(),
            prop::collection::vec(prop::collection::vec(cell(), 0..6), 0..4)
                .prop_map(|rows| json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": rows}})),
            prop::collection::vec(prop::collection::btree_map(select(vec!["a", "b", "c", "d", "e"]), cell(), 0..6), 0..4)
                .prop_map(|rows| json!({"dataframe_records": rows})),
        ],
        max_rows in prop_oneof![Just(1000usize), 0..3usize],
    ) {
        let Some(invocation) = parse_answers(body.to_string().as_bytes())? else {
            return Ok(());
        };
        match regressor().predict(&invocation, max_rows) {
            Ok(answer) => {
                let answer: Value = serde_json::from_slice(&answer).expect("JSON");
                // Rows for a frame; for tensors, each output's rows.
                let rows = |v: &Value| v.as_array().map(Vec::len);
                let answered = match &answer["predictions"] {
                    Value::Object(outputs) => outputs.values().all(|o| rows(o) == Some(invocation.rows())),
                    list => rows(list) == Some(invocation.rows()),
                };
                prop_assert!(answered, "{} answered {}", body, answer);
            }
            Err(ModelError::BadInput(_)) => {}
            Err(other) => return Err(TestCaseError::fail(format!("{body}: {other:?}"))),
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// A ragged tensor whose first items claim a huge shape (a few kilobytes claiming up to
    /// 10^20 values) is refused as bad input, in a child process that neither panics on the
    /// shape's product nor aborts allocating it.
    #[test]
    fn ragged_tensors_are_refused_without_allocating_their_claimed_size(
        width in 2..100usize,
        depth in 2..12usize,
    ) {
        let answer = parse_in_child(&ragged(width, depth));
        prop_assert_eq!(answer, Ok("bad input".to_string()), "{} wide, {} deep", width, depth);
    }

    /// Lists nested deeper than JSON parsing goes are refused as bad input.
    #[test]
    fn deeply_nested_payloads_are_refused_cleanly(
        depth in 100..5000usize,
        field in select(vec!["inputs", "instances", "dataframe_split", "dataframe_records", "params"]),
    ) {
        let body = format!("{{\"{field}\": {}1{}}}", "[".repeat(depth), "]".repeat(depth));
        let answer = parse_in_child(&body);
        prop_assert!(
            matches!(answer.as_deref(), Ok("bad input") | Ok("ok 1 rows")),
            "{} deep under {}: {:?}", depth, field, answer
        );
    }
}

// Regressions: the smallest inputs the properties above found, kept by name.

/// 4 KB claiming 100^5 values: the shape's product is allocated before the tensor is found
/// ragged.
#[test]
fn a_small_ragged_tensor_claiming_a_huge_shape_is_refused() {
    assert_eq!(parse_in_child(&ragged(100, 5)), Ok("bad input".to_string()));
}

/// Claiming 64^11 = 2^66 values overflows the shape's product.
#[test]
fn a_ragged_tensor_whose_claimed_size_overflows_is_refused() {
    assert_eq!(parse_in_child(&ragged(64, 11)), Ok("bad input".to_string()));
}
