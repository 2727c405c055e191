//! Properties of the parsers of user input seen through the HTTP API, where a parser's answer
//! meets the store, the lake and the scorer: search filters, order-by clauses and page sizes;
//! page tokens of every list; the SQL statement API's parameters; scoring payloads; artifact
//! paths; job settings. Whatever a client sends is answered (never a panic), and refused with
//! 400 INVALID_PARAMETER_VALUE or BAD_REQUEST (or 404 for what does not exist), never a 5xx;
//! valid parameters are honoured.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::{ADMIN_TOKEN, Response, TestApp, app, urlencode};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `property` over `strategy` against one app, made once for all its cases.
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    setup: impl AsyncFnOnce(&TestApp),
    property: impl AsyncFn(&TestApp, S::Value) -> Result<(), TestCaseError>,
) {
    let runtime = runtime();
    let app = runtime.block_on(async {
        let app = app().await;
        setup(&app).await;
        app
    });
    let result = TestRunner::new(config(cases))
        .run(&strategy, |value| runtime.block_on(property(&app, value)));
    runtime.block_on(async move { drop(app) });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// An answer, or a refusal of the request's input: 400 with INVALID_PARAMETER_VALUE or
/// BAD_REQUEST, or 404. Never a 5xx.
fn answered_or_refused(
    response: &Response,
    what: &dyn std::fmt::Debug,
) -> Result<(), TestCaseError> {
    let status = response.status;
    prop_assert!(
        !status.is_server_error(),
        "{:?} answered {}: {}",
        what,
        status,
        response.text
    );
    if status == StatusCode::BAD_REQUEST {
        let code = response.json["error_code"].as_str().unwrap_or_default();
        prop_assert!(
            code == "INVALID_PARAMETER_VALUE" || code == "BAD_REQUEST",
            "{:?} refused with {}: {}",
            what,
            code,
            response.text
        );
    } else {
        prop_assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{:?} answered {}: {}",
            what,
            status,
            response.text
        );
    }
    Ok(())
}

async fn send_raw(
    app: &TestApp,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Response {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    app.send(request).await
}

// ---------------------------------------------------------------------------------------------
// Generated input

/// Pieces that break parsers: quotes, escapes, brackets, operators, keywords, odd Unicode,
/// numbers past every range.
const SNIPPETS: &[&str] = &[
    "'",
    "''",
    "`",
    "\"",
    "\\",
    "(",
    ")",
    ",",
    ".",
    "\u{0}",
    "é",
    "\u{FEFF}",
    "😀",
    "1e999999",
    "-1e-999999",
    "99999999999999999999999999",
    "NaN",
    "'NaN'",
    "'inf'",
    "'-Infinity'",
    " AND ",
    " OR ",
    " IS NULL",
    " IN (",
    " LIKE ",
    "=",
    "<>",
    "!=",
    "%",
    "_",
    ";",
    "--",
    "\n",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            select(SNIPPETS).prop_map(str::to_string),
            select(vec![
                "metrics.m",
                "params.p",
                "tags.t",
                "attributes.status",
                "datasets.name",
                "name",
                "run_name",
                "start_time",
                "creation_time",
                "version_number",
                "1",
                "-3.5e300",
                "'x'",
                "'%a%'",
                " ",
                "ASC",
                "DESC",
            ])
            .prop_map(str::to_string),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// A filter in MLflow's grammar with values from everywhere in their ranges (and past them,
/// quoted), over the entities and keys the seeded data has.
fn filter() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<i64>().prop_map(|n| n.to_string()),
        select(vec!["'NaN'", "'inf'", "'-inf'", "1e308", "-0", "'1e400'"]).prop_map(str::to_string),
    ];
    let text = "[a-z%_'\\\\é😀 ]{0,8}".prop_map(|s| format!("'{}'", s.replace('\'', "''")));
    let clause = prop_oneof![
        (
            select(vec![
                "metrics.m",
                "metrics.`m`",
                "attributes.start_time",
                "attributes.end_time",
                "creation_time",
                "last_update_time",
                "version_number",
                "creation_timestamp"
            ]),
            select(vec![">", ">=", "=", "!=", "<", "<="]),
            number
        )
            .prop_map(|(k, op, v)| format!("{k} {op} {v}")),
        (
            select(vec![
                "params.p",
                "tags.t",
                "tags.`mlflow.runName`",
                "attributes.run_name",
                "name",
                "run_id",
                "datasets.name",
                "attributes.status",
                "source_path",
                "status"
            ]),
            select(vec!["=", "!=", "LIKE", "ILIKE"]),
            text.clone()
        )
            .prop_map(|(k, op, v)| format!("{k} {op} {v}")),
        (
            select(vec!["params.p", "tags.t"]),
            select(vec!["IS NULL", "IS NOT NULL"])
        )
            .prop_map(|(k, op)| format!("{k} {op}")),
        (
            select(vec![
                "attributes.run_id",
                "name",
                "run_id",
                "experiment_id",
                "status",
                "datasets.digest"
            ]),
            select(vec!["IN", "NOT IN"]),
            prop::collection::vec(text, 1..4)
        )
            .prop_map(|(k, op, items)| format!("{k} {op} ({})", items.join(", "))),
    ];
    prop::collection::vec(clause, 1..4).prop_map(|clauses| clauses.join(" AND "))
}

fn order_by() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        prop_oneof![
            select(vec![
                "metrics.m DESC",
                "params.p",
                "tags.t ASC",
                "attributes.start_time",
                "name",
                "creation_time DESC",
                "last_updated_timestamp",
                "version_number DESC",
                "metrics.`m` asc",
                "timestamp",
            ])
            .prop_map(Value::from),
            soup().prop_map(Value::from),
            Just(json!({"field_name": "metrics.m", "ascending": false})),
        ],
        0..3,
    )
}

/// A page size as clients send it: any integer, a string, a float, too large, the wrong type.
fn max_results() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        any::<i64>().prop_map(Value::from),
        (0..200i64).prop_map(Value::from),
        (0..200i64).prop_map(|n| Value::from(n.to_string())),
        select(vec![
            json!(1.5),
            json!(1e30),
            json!("1e3"),
            json!(true),
            json!([5]),
            json!(-1)
        ]),
    ])
}

/// A page token: offsets anywhere in u64 (as MLflow's base64 JSON and as Databricks' plain
/// number), forged JSON, arbitrary text.
fn page_token() -> impl Strategy<Value = String> {
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    prop_oneof![
        1 => any::<u64>().prop_map(move |n| b64(format!("{{\"offset\": {n}}}"))),
        1 => (0..10u64).prop_map(move |n| b64(format!("{{\"offset\": {n}}}"))),
        1 => (u64::MAX - 100..=u64::MAX).prop_map(move |n| b64(format!("{{\"offset\": {n}}}"))),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        3 => select(vec![
            u64::MAX.to_string(),
            (u64::MAX - 50).to_string(),
            usize::MAX.to_string(),
            i64::MAX.to_string(),
            "-1".to_string(),
            "18446744073709551616".to_string(),
        ]),
        1 => select(vec![
            "{\"offset\": -1}",
            "{\"offset\": 1e30}",
            "[1]",
            "{}",
            "null"
        ])
        .prop_map(move |s| b64(s.to_string())),
        1 => any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Search

/// An experiment with a run carrying the keys the generated filters name.
async fn seed_runs(app: &TestApp) {
    let run_id = app.new_run("0").await;
    for (path, body) in [
        (
            "runs/log-metric",
            json!({"run_id": run_id, "key": "m", "value": 0.5, "timestamp": 1}),
        ),
        (
            "runs/log-metric",
            json!({"run_id": run_id, "key": "m", "value": "NaN", "timestamp": 2}),
        ),
        (
            "runs/log-parameter",
            json!({"run_id": run_id, "key": "p", "value": "a%b"}),
        ),
        (
            "runs/set-tag",
            json!({"run_id": run_id, "key": "t", "value": "é"}),
        ),
        ("registered-models/create", json!({"name": "m"})),
    ] {
        let answer = app
            .admin("POST", &format!("/api/2.0/mlflow/{path}"), body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
    }
}

const SEARCHES: &[&str] = &[
    "runs/search",
    "experiments/search",
    "registered-models/search",
    "model-versions/search",
    "logged-models/search",
];

/// Every search answers any filter, order-by and page size, generated in the grammar, made of
/// its pieces or arbitrary, sent as JSON or as a query string: never a 5xx.
#[test]
fn searches_answer_any_filter_order_by_and_page_size() {
    let strategy = (
        select(SEARCHES),
        prop_oneof![filter(), soup(), any::<String>()],
        order_by(),
        max_results(),
        prop::option::of(page_token()),
        any::<bool>(),
    );
    check(
        64,
        strategy,
        seed_runs,
        async |app, (search, filter, order_by, max_results, token, get)| {
            let mut body = json!({"experiment_ids": ["0"], "filter": filter, "order_by": order_by});
            if let Some(max_results) = max_results {
                body["max_results"] = max_results;
            }
            if let Some(token) = token {
                body["page_token"] = json!(token);
            }
            let path = format!("/api/2.0/mlflow/{search}");
            let method = if get && search != "logged-models/search" {
                "GET"
            } else {
                "POST"
            };
            let answer = app.admin(method, &path, body.clone()).await;
            answered_or_refused(&answer, &(search, &body))
        },
    );
}

/// Every list answers any page token: the page it names (possibly empty, at any offset up
/// to the top of u64), or a refusal; never a 5xx or a panic.
#[test]
fn lists_answer_any_page_token() {
    let strategy = (
        select(vec![
            ("POST", "/api/2.0/mlflow/runs/search"),
            ("POST", "/api/2.0/mlflow/experiments/search"),
            ("GET", "/api/2.0/mlflow/registered-models/search"),
            ("GET", "/api/2.0/mlflow/model-versions/search"),
            ("GET", "/api/2.0/mlflow/metrics/get-history"),
            ("GET", "/api/2.0/mlflow/webhooks"),
            ("GET", "/api/2.2/jobs/list"),
            ("GET", "/api/2.2/jobs/runs/list"),
            ("GET", "/api/2.0/alerts"),
            ("GET", "/api/2.1/unity-catalog/schemas"),
            ("GET", "/api/2.1/unity-catalog/tables"),
            ("GET", "/api/2.1/unity-catalog/catalogs"),
        ]),
        page_token(),
        prop::option::of(1..5i64),
    );
    check(
        96,
        strategy,
        seed_runs,
        async |app, ((method, path), token, size)| {
            let run_id = app
                .admin(
                    "POST",
                    "/api/2.0/mlflow/runs/search",
                    json!({"experiment_ids": ["0"]}),
                )
                .await
                .json["runs"][0]["info"]["run_id"]
                .clone();
            let mut body = json!({
                "experiment_ids": ["0"],
                "page_token": token,
                "run_id": run_id,
                "metric_key": "m",
                "catalog_name": "dev",
                "schema_name": "default",
            });
            if let Some(size) = size {
                for field in ["max_results", "limit", "page_size"] {
                    body[field] = json!(size);
                }
            }
            let answer = app.admin(method, path, body.clone()).await;
            answered_or_refused(&answer, &(path, &token))
        },
    );
}

/// Every store-backed list at the page token of the last offset u64 holds (MLflow's base64
/// JSON and Databricks' plain number).
#[tokio::test]
async fn lists_answer_a_page_token_at_the_top_of_u64() {
    let app = app().await;
    let mlflow =
        base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {}}}", u64::MAX));
    for (method, path, token) in [
        ("GET", "/api/2.2/jobs/list", u64::MAX.to_string()),
        ("POST", "/api/2.0/mlflow/experiments/search", mlflow.clone()),
        ("POST", "/api/2.0/mlflow/runs/search", mlflow),
    ] {
        let answer = app
            .admin(
                method,
                path,
                json!({"experiment_ids": ["0"], "page_token": token}),
            )
            .await;
        assert!(
            answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST,
            "{path}: {} {}",
            answer.status,
            answer.text
        );
    }
}

/// The alerts list at a page token near the top of usize.
#[tokio::test]
async fn the_alerts_list_answers_a_page_token_at_the_top_of_usize() {
    let app = app().await;
    let answer = app
        .admin(
            "GET",
            "/api/2.0/alerts",
            json!({"page_token": usize::MAX.to_string()}),
        )
        .await;
    assert!(
        answer.status == StatusCode::OK || answer.status == StatusCode::BAD_REQUEST,
        "{} {}",
        answer.status,
        answer.text
    );
}

/// Sizes in a query string arrive as text and are read as numbers: a page size or a history
/// length is never refused as the wrong type.
#[tokio::test]
async fn alert_lists_read_sizes_from_the_query_string() {
    let app = app().await;
    let listed = app
        .admin("GET", "/api/2.0/alerts", json!({"page_size": 1}))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let history = app
        .admin(
            "GET",
            "/api/2.0/tarn/alerts/no-such-alert/history",
            json!({"max_results": 5}),
        )
        .await;
    assert_eq!(history.status, StatusCode::NOT_FOUND, "{}", history.text);
}

// ---------------------------------------------------------------------------------------------
// SQL statements

fn parameter(valid: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        3 => select(valid).prop_map(Value::from),
        1 => select(valid).prop_map(|v| Value::from(v.to_lowercase())),
        1 => any::<String>().prop_map(Value::from),
        1 => select(vec![json!(5), json!(null), json!(true), json!(["INLINE"]), json!({})]),
    ])
}

fn limit() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        any::<i64>().prop_map(Value::from),
        (1..100i64).prop_map(Value::from),
        (1..100i64).prop_map(|n| Value::from(n.to_string())),
        select(vec![
            json!(0),
            json!(-1),
            json!(1.5),
            json!(1e30),
            json!("x"),
            json!(u64::MAX),
            json!([1])
        ]),
    ])
}

fn statement_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "SELECT 1 AS x",
            "SELECT value FROM generate_series(1, 20)",
            "SELECT 'é😀' AS s, NULL AS n, 1e308 * 10 AS big",
            "SELECT * FROM dev.default.nope",
        ])
        .prop_map(str::to_string),
        1 => soup(),
        1 => any::<String>(),
    ]
}

/// The statement API answers any combination of its parameters (wait_timeout,
/// on_wait_timeout, format, disposition, row_limit, byte_limit, catalog, schema) and any
/// statement text: a statement or a refusal, and a failed statement's error is never an
/// internal one.
#[test]
fn sql_statement_parameters_are_answered_or_refused_cleanly() {
    let strategy = (
        statement_text(),
        parameter(&[
            "0s",
            "5s",
            "10s",
            "50s",
            "51s",
            "4s",
            "-5s",
            "5",
            "5.0s",
            "+5s",
            "99999999999999999999s",
        ]),
        parameter(&["CONTINUE", "CANCEL"]),
        parameter(&["JSON_ARRAY", "ARROW_STREAM", "CSV"]),
        parameter(&["INLINE", "EXTERNAL_LINKS"]),
        (limit(), limit()),
        (
            prop::option::of(any::<String>()),
            prop::option::of(select(vec!["default", "nope", "", "a.b", "`x`"])),
        ),
    );
    check(
        48,
        strategy,
        async |_| {},
        async |app,
               (
            statement,
            wait,
            on_wait,
            format,
            disposition,
            (rows, bytes),
            (catalog, schema),
        )| {
            let mut body = json!({"statement": statement, "warehouse_id": "any"});
            for (field, value) in [
                ("wait_timeout", wait),
                ("on_wait_timeout", on_wait),
                ("format", format),
                ("disposition", disposition),
                ("row_limit", rows),
                ("byte_limit", bytes),
                ("catalog", catalog.map(Value::from)),
                ("schema", schema.map(Value::from)),
            ] {
                if let Some(value) = value {
                    body[field] = value;
                }
            }
            let answer = app
                .admin("POST", "/api/2.0/sql/statements", body.clone())
                .await;
            answered_or_refused(&answer, &body)?;
            if answer.status == StatusCode::OK {
                let code = answer.json["status"]["error"]["error_code"]
                    .as_str()
                    .unwrap_or_default();
                prop_assert!(code != "INTERNAL_ERROR", "{}: {}", body, answer.text);
            }
            Ok(())
        },
    );
}

/// Valid parameters are honoured: the rows of a query come back inline as JSON arrays, as
/// many as the row limit lets through, whatever case the enumerations are written in.
#[test]
fn valid_sql_statement_parameters_are_honoured() {
    let strategy = (
        0..40u32,
        prop::option::of(1..60u64),
        (5..=50u32, any::<bool>()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    );
    check(
        24,
        strategy,
        async |_| {},
        async |app,
               (
            count,
            row_limit,
            (wait, as_text),
            (lower_format, lower_disposition, on_wait_cancel),
        )| {
            let case = |text: &str, lower: bool| {
                if lower {
                    text.to_lowercase()
                } else {
                    text.to_string()
                }
            };
            let mut body = json!({
                "statement": format!("SELECT value FROM generate_series(1, {count}) ORDER BY value"),
                "wait_timeout": format!("{wait}s"),
                "on_wait_timeout": if on_wait_cancel { "CANCEL" } else { "CONTINUE" },
                "format": case("JSON_ARRAY", lower_format),
                "disposition": case("INLINE", lower_disposition),
            });
            if let Some(limit) = row_limit {
                body["row_limit"] = if as_text {
                    json!(limit.to_string())
                } else {
                    json!(limit)
                };
            }
            let answer = app
                .admin("POST", "/api/2.0/sql/statements", body.clone())
                .await;
            prop_assert_eq!(answer.status, StatusCode::OK, "{}: {}", body, answer.text);
            prop_assert_eq!(
                &answer.json["status"]["state"],
                "SUCCEEDED",
                "{}: {}",
                body,
                answer.text
            );
            let expected = u64::from(count).min(row_limit.unwrap_or(u64::MAX));
            prop_assert_eq!(
                answer.json["manifest"]["total_row_count"].as_u64(),
                Some(expected),
                "{}",
                answer.text
            );
            let rows: Vec<String> = answer.json["result"]["data_array"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|row| row[0].as_str().unwrap_or_default().to_string())
                .collect();
            let wanted: Vec<String> = (1..=expected).map(|n| n.to_string()).collect();
            prop_assert_eq!(rows, wanted, "{}", answer.text);
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Artifacts

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._\\-]{1,16}",
        2 => "[a-z]{1,6}#[0-9]{1,3}",
        2 => "[^/\\\\\\x00-\\x1f\\x7f]{1,10}",
        1 => (230..=255usize).prop_map(|n| "n".repeat(n)),
        1 => select(vec!["..", ".", "%2e%2e", "%2F", "\\..\\", "C:", "\u{0}"]).prop_map(str::to_string),
    ]
}

/// An artifact path, percent-encoded name by name as a client puts it in the URL.
fn artifact_path() -> impl Strategy<Value = (String, String)> {
    prop::collection::vec(segment(), 1..5).prop_map(|segments| {
        let raw = format!("0/{}", segments.join("/"));
        let encoded = format!(
            "0/{}",
            segments
                .iter()
                .map(|s| urlencode(s))
                .collect::<Vec<_>>()
                .join("/")
        );
        (raw, encoded)
    })
}

/// An artifact uploaded at any path is stored (and reads back byte for byte) or refused with
/// 400; reading any path, including one below a stored file, answers the file or 404;
/// listing a stored file's folder shows it. Never a 5xx.
#[test]
fn artifact_paths_are_stored_or_refused_cleanly() {
    let strategy = (
        artifact_path(),
        prop::collection::vec(any::<u8>(), 0..512),
        any::<Index>(),
    );
    check(
        64,
        strategy,
        async |_| {},
        async |app, ((raw, encoded), bytes, probe)| {
            let base = "/api/2.0/mlflow-artifacts/artifacts";
            let put = send_raw(
                app,
                "PUT",
                &format!("{base}/{encoded}"),
                "application/octet-stream",
                bytes.clone(),
            )
            .await;
            answered_or_refused(&put, &raw)?;
            let read = app
                .admin("GET", &format!("{base}/{encoded}"), Value::Null)
                .await;
            answered_or_refused(&read, &raw)?;
            if put.status == StatusCode::OK {
                prop_assert_eq!(read.status, StatusCode::OK, "{:?}: {}", raw, read.text);
                prop_assert_eq!(
                    &read.text,
                    &String::from_utf8_lossy(&bytes),
                    "{:?} reads back",
                    raw
                );
                let (folder, name) = raw
                    .trim_end_matches('/')
                    .rsplit_once('/')
                    .expect("a folder");
                let listed = app.admin("GET", base, json!({"path": folder})).await;
                answered_or_refused(&listed, &folder)?;
                let names: Vec<&str> = listed.json["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["path"].as_str())
                    .collect();
                prop_assert!(
                    names.iter().any(|p| p.rsplit('/').next() == Some(name)),
                    "{:?} not listed in {:?}: {}",
                    name,
                    folder,
                    listed.text
                );
                // Below the file, as if it were a folder.
                let segments: Vec<&str> = encoded.split('/').collect();
                let below = format!("{base}/{encoded}/x{}", probe.index(3));
                let above = segments[..segments.len().max(2) - 1].join("/");
                for uri in [below, format!("{base}/{above}")] {
                    let answer = app.admin("GET", &uri, Value::Null).await;
                    answered_or_refused(&answer, &uri)?;
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Scoring

/// A scoring body: valid in any format (with values from everywhere in their ranges),
/// shaped wrongly, or mutated bytes.
fn scoring_body() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        "[a-z\"]{0,4}".prop_map(Value::from),
    ];
    let row = prop::collection::vec(cell.clone(), 4);
    let valid = prop_oneof![
        prop::collection::vec(row.clone(), 1..6).prop_map(|rows| json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": rows}})),
        prop::collection::vec(row.clone(), 1..6).prop_map(|rows| json!({"dataframe_records": rows.iter().map(|r| json!({"a": r[0], "b": r[1], "c": r[2], "d": r[3]})).collect::<Vec<_>>()})),
        prop::collection::vec(row.clone(), 1..6).prop_map(|rows| json!({"inputs": rows})),
        prop::collection::vec(row, 1..6).prop_map(|rows| json!({"instances": rows, "params": {"k": 1}, "client_request_id": "c"})),
        prop::collection::vec(prop::collection::vec(cell, 0..6), 0..4).prop_map(|rows| json!({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": rows}})),
    ];
    (
        valid,
        prop::collection::vec((any::<Index>(), select(SNIPPETS), 1..20usize), 0..3),
    )
        .prop_map(|(body, cuts)| {
            let mut bytes = body.to_string().into_bytes();
            for (at, snippet, times) in cuts {
                let at = at.index(bytes.len() + 1);
                bytes.splice(at..at, snippet.repeat(times).into_bytes());
            }
            bytes
        })
}

/// A serving endpoint answers any body with predictions or 400, never a 5xx; the rows of a
/// valid body are each answered.
#[test]
fn scoring_payloads_are_answered_or_refused_cleanly() {
    let strategy = (
        scoring_body(),
        select(vec![
            "application/json",
            "application/json; format=pandas-split",
            "text/csv",
        ]),
    );
    let setup = async |app: &TestApp| {
        crate::serving_api::register(app, "regressor", "random_forest_regressor").await;
        let created = app
            .admin(
                "POST",
                "/api/2.0/serving-endpoints",
                json!({"name": "props", "config": {"served_entities": [{"entity_name": "regressor", "entity_version": "1"}]}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    };
    check(64, strategy, setup, async |app, (body, content_type)| {
        let answer = send_raw(
            app,
            "POST",
            "/serving-endpoints/props/invocations",
            content_type,
            body.clone(),
        )
        .await;
        let shown = String::from_utf8_lossy(&body).to_string();
        answered_or_refused(&answer, &shown)?;
        if answer.status == StatusCode::OK {
            prop_assert!(
                answer.json["predictions"].is_array() || answer.json["predictions"].is_object(),
                "{}",
                answer.text
            );
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Jobs

fn job_settings() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        select(vec![
            "a",
            "ALL_DONE",
            "0 0 1 * * ?",
            "UTC",
            "{{job.nope}}",
            "{{tasks.a.values.x}}",
            "HOURS",
            ""
        ])
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                select(vec![
                    "task_key",
                    "depends_on",
                    "spark_python_task",
                    "condition_task",
                    "op",
                    "for_each_task",
                    "task",
                    "inputs",
                    "quartz_cron_expression",
                    "timezone_id",
                    "periodic",
                    "interval",
                    "unit",
                    "x"
                ]),
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    });
    (
        prop::collection::vec(("[a-c]", prop::option::of("[a-c]"), select(vec!["spark_python_task", "condition_task", "notebook_task", "dbt_task"])), 0..4),
        prop::option::of(value.clone()),
        select(vec!["tasks", "schedule", "trigger", "parameters", "max_concurrent_runs", "tags", "environments"]),
    )
        .prop_map(|(tasks, extra, field)| {
            let tasks: Vec<Value> = tasks
                .into_iter()
                .map(|(key, upstream, kind)| {
                    let mut task = json!({"task_key": key, kind: {"python_file": "/x.py", "op": "EQUAL_TO", "left": "1", "right": "1"}});
                    if let Some(upstream) = upstream {
                        task["depends_on"] = json!([{"task_key": upstream}]);
                    }
                    task
                })
                .collect();
            let mut settings = json!({"name": "p", "tasks": tasks});
            if let Some(extra) = extra {
                settings[field] = extra;
            }
            settings
        })
}

/// Creating and updating a job with any settings, and removing any fields, stores the job or
/// refuses the request with 400: never a 5xx.
#[test]
fn job_settings_are_stored_or_refused_cleanly() {
    let strategy = (
        job_settings(),
        job_settings(),
        prop::collection::vec(
            prop_oneof![
                select(vec![
                    "tasks/a",
                    "tasks/b",
                    "tasks",
                    "name",
                    "job_clusters/x",
                    "schedule",
                    "tasks/",
                    "/",
                    ""
                ])
                .prop_map(str::to_string),
                any::<String>()
            ],
            0..3,
        ),
    );
    check(
        48,
        strategy,
        async |_| {},
        async |app, (settings, changes, removed)| {
            let created = app
                .admin("POST", "/api/2.2/jobs/create", settings.clone())
                .await;
            answered_or_refused(&created, &settings)?;
            let job_id = match created.json["job_id"].as_i64() {
                Some(id) => id,
                None => {
                    // Update a job that exists, whatever the first settings were.
                    let made = app
                        .admin("POST", "/api/2.2/jobs/create", json!({"name": "base"}))
                        .await;
                    made.json["job_id"].as_i64().expect("a job")
                }
            };
            let body =
                json!({"job_id": job_id, "new_settings": changes, "fields_to_remove": removed});
            let updated = app
                .admin("POST", "/api/2.2/jobs/update", body.clone())
                .await;
            answered_or_refused(&updated, &body)?;
            let reset = app
                .admin(
                    "POST",
                    "/api/2.2/jobs/reset",
                    json!({"job_id": job_id, "new_settings": changes}),
                )
                .await;
            answered_or_refused(&reset, &changes)
        },
    );
}
