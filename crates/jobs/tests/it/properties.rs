//! Properties of the parsers of job settings (Databricks Jobs JSON with its task graph),
//! Quartz cron schedules and dynamic value references: any input is accepted or refused with
//! INVALID_PARAMETER_VALUE, never a panic or a stack overflow; generated acyclic task graphs
//! are accepted and kept as sent, and one back edge makes them a refused cycle; generated
//! schedules fire at exactly their next matching second, in order, skipping none; reference
//! paths round-trip.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};
use tarn_core::{Error, ErrorCode};
use tarn_jobs::cron::{Cron, time_zone};
use tarn_jobs::references::{parse_path, references, resolve, time_field};
use tarn_jobs::settings::{RUN_IF, checked};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn refused_cleanly(err: &Error, what: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        err.code,
        ErrorCode::InvalidParameterValue,
        "{:?} refused with {}",
        what,
        err
    );
    prop_assert!(!err.message.is_empty());
    Ok(())
}

/// `checked` answers: the settings as stored, or INVALID_PARAMETER_VALUE.
fn check_answers(settings: &Value) -> Result<(), TestCaseError> {
    match checked(settings.clone()) {
        Ok((stored, typed)) => {
            prop_assert!(stored.is_object());
            prop_assert!(typed.tasks.len() <= tarn_jobs::settings::MAX_TASKS);
        }
        Err(err) => refused_cleanly(&err, settings)?,
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Arbitrary and mutated JSON

/// Field names of job settings (so arbitrary JSON reaches the checks behind them) and others.
const FIELDS: &[&str] = &[
    "name",
    "tasks",
    "task_key",
    "depends_on",
    "run_if",
    "outcome",
    "max_retries",
    "min_retry_interval_millis",
    "retry_on_timeout",
    "timeout_seconds",
    "disabled",
    "condition_task",
    "op",
    "left",
    "right",
    "run_job_task",
    "job_id",
    "job_parameters",
    "for_each_task",
    "inputs",
    "concurrency",
    "task",
    "spark_python_task",
    "python_file",
    "notebook_task",
    "notebook_path",
    "python_wheel_task",
    "sql_task",
    "dbt_task",
    "environment_key",
    "environments",
    "spec",
    "dependencies",
    "parameters",
    "default",
    "schedule",
    "quartz_cron_expression",
    "timezone_id",
    "pause_status",
    "trigger",
    "periodic",
    "interval",
    "unit",
    "table_update",
    "table",
    "table_names",
    "condition",
    "file_arrival",
    "url",
    "model",
    "aliases",
    "alert",
    "alert_id",
    "max_concurrent_runs",
    "queue",
    "enabled",
    "run_as",
    "user_name",
    "tags",
    "format",
    "job_clusters",
];

/// Strings the checks look into: schedules, zones, enum values, references, paths.
const STRINGS: &[&str] = &[
    "",
    "a",
    "ALL_SUCCESS",
    "NONE_FAILED",
    "EQUAL_TO",
    "GREATER_THAN",
    "true",
    "PAUSED",
    "HOURS",
    "ANY_UPDATED",
    "MODEL_ALIAS_SET",
    "0 0 12 * * ?",
    "0 0/5 * ? * MON-FRI 2030",
    "* * * * * *",
    "0 0 0 L-31 * ?",
    "0 0 0 ? * 5#9",
    "UTC",
    "Europe/Amsterdam",
    "Mars/Base",
    "{{job.run_id}}",
    "{{tasks.a.values.x}}",
    "{{job.parameters.p}}",
    "{{ `a.b`.c }}",
    "{{",
    "}}",
    "{{job.}}",
    "file:///tmp/x",
    "/tmp/../x",
    "[1,2]",
    "9223372036854775808",
    "\u{0}",
    "é😀",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(FIELDS).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(vec![
            -2i64,
            -1,
            0,
            1,
            2,
            100,
            1000,
            1001,
            i64::MAX,
            i64::MIN
        ])
        .prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        select(STRINGS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
    .boxed()
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    WrapInList,
    Duplicate,
}

/// Walks down `path` (each step picks a child) and edits the node it reaches.
fn edit(value: &mut Value, path: &[Index], how: &Edit) {
    if let Some((step, rest)) = path.split_first() {
        let child = match value {
            Value::Object(fields) if !fields.is_empty() => {
                let key = fields
                    .keys()
                    .nth(step.index(fields.len()))
                    .cloned()
                    .unwrap_or_default();
                if rest.is_empty() && matches!(how, Edit::Remove) {
                    fields.remove(&key);
                    return;
                }
                fields.get_mut(&key)
            }
            Value::Array(items) if !items.is_empty() => {
                let at = step.index(items.len());
                if rest.is_empty() && matches!(how, Edit::Remove) {
                    items.remove(at);
                    return;
                }
                if rest.is_empty() && matches!(how, Edit::Duplicate) {
                    let copy = items[at].clone();
                    items.insert(at, copy);
                    return;
                }
                items.get_mut(at)
            }
            _ => None,
        };
        if let Some(child) = child {
            return edit(child, rest, how);
        }
    }
    match how {
        Edit::Replace(new) => *value = new.clone(),
        Edit::WrapInList => *value = Value::Array(vec![value.take()]),
        Edit::Remove | Edit::Duplicate => *value = Value::Null,
    }
}

fn edits() -> impl Strategy<Value = Vec<(Vec<Index>, Edit)>> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<Index>(), 0..7),
            prop_oneof![
                arbitrary_json().prop_map(Edit::Replace),
                json_leaf().prop_map(Edit::Replace),
                Just(Edit::Remove),
                Just(Edit::WrapInList),
                Just(Edit::Duplicate),
            ],
        ),
        1..4,
    )
}

// ---------------------------------------------------------------------------------------------
// Generated valid settings

const TASK_TYPES: &[&str] = &[
    "spark_python_task",
    "notebook_task",
    "python_wheel_task",
    "sql_task",
    "condition_task",
    "run_job_task",
];

fn task_body(kind: &str) -> Value {
    match kind {
        "spark_python_task" => {
            json!({"python_file": "/jobs/step.py", "parameters": ["{{job.run_id}}"]})
        }
        "notebook_task" => {
            json!({"notebook_path": "/Workspace/nb", "base_parameters": {"day": "{{job.start_time.iso_date}}"}})
        }
        "python_wheel_task" => json!({"package_name": "pkg", "entry_point": "main"}),
        "sql_task" => json!({"file": {"path": "/q.sql"}}),
        "condition_task" => {
            json!({"op": "GREATER_THAN", "left": "{{job.parameters.threshold}}", "right": "0.5"})
        }
        _ => json!({"job_id": 7, "job_parameters": {"p": "{{job.id}}"}}),
    }
}

/// A task graph: for each task its key, type and the earlier tasks it depends on.
#[derive(Debug, Clone)]
struct Graph {
    keys: Vec<String>,
    kinds: Vec<&'static str>,
    upstream: Vec<BTreeSet<usize>>,
    run_if: Vec<Option<&'static str>>,
    /// Whether a dependency on a condition task names its outcome.
    outcomes: Vec<bool>,
}

fn graph(max_tasks: usize) -> impl Strategy<Value = Graph> {
    prop::collection::vec(
        (
            "[A-Za-z0-9_-]{0,20}",
            select(TASK_TYPES),
            prop::collection::vec(any::<Index>(), 0..4),
            prop::option::of(select(RUN_IF.to_vec())),
            any::<bool>(),
        ),
        1..=max_tasks,
    )
    .prop_map(|tasks| {
        let mut graph = Graph {
            keys: Vec::new(),
            kinds: Vec::new(),
            upstream: Vec::new(),
            run_if: Vec::new(),
            outcomes: Vec::new(),
        };
        for (i, (suffix, kind, picks, run_if, outcome)) in tasks.into_iter().enumerate() {
            // The position, then `_`, keeps keys distinct (`t2` + `9` would be `t29`); the rest is
            // any character keys may hold.
            graph.keys.push(format!("t{i}_{suffix}"));
            graph.kinds.push(kind);
            graph.upstream.push(if i == 0 {
                BTreeSet::new()
            } else {
                picks.iter().map(|p| p.index(i)).collect()
            });
            graph.run_if.push(run_if);
            graph.outcomes.push(outcome);
        }
        graph
    })
}

impl Graph {
    fn task(&self, i: usize) -> Value {
        let depends_on: Vec<Value> = self.upstream[i]
            .iter()
            .map(|&u| {
                let mut dependency = json!({"task_key": self.keys[u]});
                if self.kinds[u] == "condition_task" && self.outcomes[i] {
                    dependency["outcome"] = json!(if u % 2 == 0 { "true" } else { "false" });
                }
                dependency
            })
            .collect();
        let mut task = json!({
            "task_key": self.keys[i],
            "depends_on": depends_on,
        });
        task[self.kinds[i]] = task_body(self.kinds[i]);
        if let Some(run_if) = self.run_if[i] {
            task["run_if"] = json!(run_if);
        }
        task
    }

    /// The job's settings, its tasks in the order `order` gives.
    fn settings(&self, order: &[usize]) -> Value {
        json!({
            "name": "generated",
            "tasks": order.iter().map(|&i| self.task(i)).collect::<Vec<_>>(),
            "parameters": [{"name": "threshold", "default": "0.7"}],
            "schedule": {"quartz_cron_expression": "0 0 3 * * ?", "timezone_id": "Europe/Amsterdam"},
            "job_clusters": [{"job_cluster_key": "c", "new_cluster": {"num_workers": 2}}],
        })
    }

    /// Every task `i` depends on, directly or not.
    fn ancestors(&self, i: usize) -> BTreeSet<usize> {
        let mut found = BTreeSet::new();
        let mut todo: Vec<usize> = self.upstream[i].iter().copied().collect();
        while let Some(u) = todo.pop() {
            if found.insert(u) {
                todo.extend(self.upstream[u].iter().copied());
            }
        }
        found
    }
}

fn graph_and_order(max_tasks: usize) -> impl Strategy<Value = (Graph, Vec<usize>)> {
    graph(max_tasks).prop_flat_map(|graph| {
        let order = Just((0..graph.keys.len()).collect::<Vec<_>>()).prop_shuffle();
        (Just(graph), order)
    })
}

// ---------------------------------------------------------------------------------------------
// Quartz fields

/// One Quartz field's text and the values it stands for, written as values, ranges (also
/// wrapping past the end), steps and `*`, comma-separated.
fn cron_field(
    min: u32,
    max: u32,
    max_items: usize,
) -> impl Strategy<Value = (String, BTreeSet<u32>)> {
    let item = prop_oneof![
        3 => (min..=max).prop_map(|v| (v.to_string(), BTreeSet::from([v]))),
        2 => (min..=max, min..=max).prop_map(move |(a, b)| {
            let values = if a <= b {
                (a..=b).collect()
            } else {
                (a..=max).chain(min..=b).collect()
            };
            (format!("{a}-{b}"), values)
        }),
        1 => (min..=max, 1..=max + 1).prop_map(move |(a, step)| {
            (format!("{a}/{step}"), (a..=max).step_by(step as usize).collect())
        }),
        1 => (min..=max, min..=max, 1..=10u32).prop_map(|(a, b, step)| {
            let (a, b) = (a.min(b), a.max(b));
            (format!("{a}-{b}/{step}"), (a..=b).step_by(step as usize).collect())
        }),
        1 => (1..=max + 1).prop_map(move |step| {
            (format!("*/{step}"), (min..=max).step_by(step as usize).collect())
        }),
        1 => Just(("*".to_string(), (min..=max).collect())),
    ];
    prop::collection::vec(item, 1..=max_items).prop_map(|items| {
        let text = items
            .iter()
            .map(|(t, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let values = items.into_iter().flat_map(|(_, v)| v).collect();
        (text, values)
    })
}

#[derive(Debug, Clone)]
struct Schedule {
    text: String,
    seconds: BTreeSet<u32>,
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
}

/// A schedule firing every day at the generated seconds, minutes and hours.
fn daily(max_items: usize) -> impl Strategy<Value = Schedule> {
    (
        cron_field(0, 59, max_items),
        cron_field(0, 59, max_items),
        cron_field(0, 23, max_items),
        select(vec![
            "* * ?",
            "? * *",
            "1-31 * ?",
            "? JAN-DEC SUN-SAT",
            "* * ? *",
            "* * ? 1970-2099",
        ]),
        select(vec![" ", "  ", "\t"]),
    )
        .prop_map(
            |((s, seconds), (m, minutes), (h, hours), days, ws)| Schedule {
                text: [s.as_str(), m.as_str(), h.as_str(), days].join(ws),
                seconds,
                minutes,
                hours,
            },
        )
}

/// The first time strictly after `after` that a daily schedule fires in UTC, by brute force.
fn next_in_utc(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let day = after.date_naive();
    for date in [day, day.succ_opt()?] {
        for &h in &schedule.hours {
            for &m in &schedule.minutes {
                for &s in &schedule.seconds {
                    let at = date.and_hms_opt(h, m, s)?.and_utc();
                    if at > after {
                        return Some(at);
                    }
                }
            }
        }
    }
    None
}

const ZONES: &[&str] = &[
    "UTC",
    "Europe/Amsterdam",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
];

/// Instants near 2026's clock changes of the zones above (a bias: schedules are most likely to
/// go wrong there).
fn near_a_clock_change() -> impl Strategy<Value = DateTime<Utc>> {
    (
        select(vec![
            "2026-03-08T07:00:00Z",
            "2026-11-01T06:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-04-05T03:00:00Z",
            "2026-09-06T04:00:00Z",
            "2026-04-04T15:00:00Z",
            "2026-10-03T15:30:00Z",
            "2026-04-04T14:00:00Z",
            "2026-09-26T14:00:00Z",
        ]),
        0..(3 * 86_400i64),
    )
        .prop_map(|(change, before)| {
            DateTime::parse_from_rfc3339(change)
                .expect("instant")
                .with_timezone(&Utc)
                - Duration::seconds(before)
        })
}

/// The instant a local time fires at, where it names one (the first of two on a fall-back
/// night); none in a spring-forward gap.
fn listed<'a>(values: impl Iterator<Item = &'a u32>) -> String {
    values.map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn local_instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------------
// References

fn reference_part() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        "[A-Za-z0-9_-]{1,12}".prop_map(|p| (p.clone(), p)),
        "[^`{}]{1,12}".prop_map(|p| (p.clone(), format!("`{p}`"))),
    ]
}

fn reference_path() -> impl Strategy<Value = (Vec<String>, String)> {
    prop::collection::vec(reference_part(), 1..5).prop_map(|parts| {
        let text = parts
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(".");
        (parts.into_iter().map(|(p, _)| p).collect(), text)
    })
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(256))]

    /// Any JSON value, shaped like job settings or not, is accepted or refused with
    /// INVALID_PARAMETER_VALUE.
    #[test]
    fn job_settings_never_panic_on_arbitrary_json(settings in arbitrary_json()) {
        check_answers(&settings)?;
        check_answers(&json!({ "tasks": [settings.clone()] }))?;
        check_answers(&json!({ "tasks": [{"task_key": "a", "spark_python_task": {}, "for_each_task": settings}] }))?;
    }

    /// Valid settings with nodes replaced, removed, wrapped in lists or duplicated are
    /// accepted or refused with INVALID_PARAMETER_VALUE.
    #[test]
    fn job_settings_never_panic_on_mutated_valid_settings(
        (graph, order) in graph_and_order(8),
        edits in edits(),
    ) {
        let mut settings = graph.settings(&order);
        for (path, how) in &edits {
            edit(&mut settings, path, how);
        }
        check_answers(&settings)?;
    }

    /// A generated acyclic task graph, its tasks in any order, with run_if, outcomes of
    /// condition tasks and references to its parameters, is accepted and stored as sent.
    #[test]
    fn acyclic_task_graphs_are_accepted_and_kept_as_sent((graph, order) in graph_and_order(40)) {
        let settings = graph.settings(&order);
        let (stored, typed) = checked(settings.clone())
            .map_err(|e| TestCaseError::fail(format!("refused: {e}\n{settings:#}")))?;
        for (field, value) in settings.as_object().expect("object") {
            prop_assert_eq!(&stored[field], value, "{} is kept as sent", field);
        }
        let keys: Vec<&str> = typed.tasks.iter().map(|t| t.key()).collect();
        let sent: Vec<&str> = order.iter().map(|&i| graph.keys[i].as_str()).collect();
        prop_assert_eq!(keys, sent);
        for (task, &i) in typed.tasks.iter().zip(&order) {
            prop_assert_eq!(task.task_type(), Some(graph.kinds[i]));
        }
    }

    /// The same graph with one task depending on one of its own descendants is refused,
    /// and the refusal names the cycle.
    #[test]
    fn a_back_edge_makes_a_cycle_that_is_refused(
        (graph, order) in graph_and_order(40),
        (pick_task, pick_ancestor) in (any::<Index>(), any::<Index>()),
    ) {
        let with_ancestors: Vec<usize> = (0..graph.keys.len())
            .filter(|&i| !graph.ancestors(i).is_empty())
            .collect();
        prop_assume!(!with_ancestors.is_empty());
        let descendant = with_ancestors[pick_task.index(with_ancestors.len())];
        let ancestors: Vec<usize> = graph.ancestors(descendant).into_iter().collect();
        let ancestor = ancestors[pick_ancestor.index(ancestors.len())];
        let mut cyclic = graph.clone();
        cyclic.upstream[ancestor].insert(descendant);
        let settings = cyclic.settings(&order);
        let err = checked(settings).expect_err("a cycle is refused");
        refused_cleanly(&err, &"cycle")?;
        prop_assert!(err.message.contains("cycle"), "{}", err.message);
        for key in [&graph.keys[ancestor], &graph.keys[descendant]] {
            prop_assert!(err.message.contains(key.as_str()), "{} names {}", err.message, key);
        }
    }

    /// Any text, and Quartz's own pieces in any order, parse to a schedule or a reason; a
    /// schedule that parses answers its next time from any instant without panicking.
    #[test]
    fn cron_parser_never_panics_on_arbitrary_text(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                select(vec![
                    "0", "59", "60", "*", "?", "/", "-", ",", "L", "W", "LW", "L-3", "#", "5#3",
                    "6L", "MON", "fri", "JAN", "DEC", "1970", "2099", "2100", "4294967296",
                    "99999999999999999999", " ", " ", "\t", "é", "1-", "-1", "*/0", "0/4294967295",
                ]),
                0..16,
            )
            .prop_map(|parts| parts.concat()),
        ],
        after in 0i64..4_102_444_800,
        zone in select(ZONES),
    ) {
        if let Ok(cron) = text.parse::<Cron>() {
            let after = DateTime::from_timestamp(after, 0).expect("instant");
            if let Some(next) = cron.next_after(after, time_zone(zone).expect("zone")) {
                prop_assert!(next > after, "{} from {}: {}", text, after, next);
            }
        }
    }

    /// A schedule built from generated fields fires, in UTC, at exactly the first matching
    /// second after any instant.
    #[test]
    fn generated_schedules_fire_at_their_next_matching_second_in_utc(
        schedule in daily(3),
        after in 0i64..4_000_000_000,
    ) {
        let cron: Cron = schedule
            .text
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let after = DateTime::from_timestamp(after, 0).expect("instant");
        prop_assert_eq!(
            cron.next_after(after, Tz::UTC),
            next_in_utc(&schedule, after),
            "{} after {}", schedule.text, after
        );
    }

    /// Copies of a schedule in a job's settings are refused with INVALID_PARAMETER_VALUE or
    /// accepted, whatever their fields and time zone.
    #[test]
    fn schedules_in_settings_are_accepted_or_refused_cleanly(
        expression in prop_oneof![daily(3).prop_map(|s| s.text), any::<String>()],
        zone in prop_oneof![select(ZONES).prop_map(str::to_string), any::<String>()],
        pause in prop::option::of(select(vec!["PAUSED", "UNPAUSED", "paused"])),
    ) {
        let mut schedule = json!({"quartz_cron_expression": expression, "timezone_id": zone});
        if let Some(pause) = pause {
            schedule["pause_status"] = json!(pause);
        }
        check_answers(&json!({ "schedule": schedule }))?;
    }

    /// A reference path written from generated parts (bare or back-quoted) parses to them,
    /// and is found where text holds it.
    #[test]
    fn reference_paths_round_trip(
        paths in prop::collection::vec(reference_path(), 0..4),
        fillers in prop::collection::vec("[^{}]{0,12}", 5),
        spaces in prop::collection::vec(select(vec!["", " ", "  "]), 4),
    ) {
        let mut text = fillers[0].clone();
        for (i, (parts, written)) in paths.iter().enumerate() {
            prop_assert_eq!(parse_path(written), Some(parts.clone()), "{}", written);
            text.push_str(&format!("{{{{{}{written}{}}}}}{}", spaces[i], spaces[i], fillers[i + 1]));
        }
        let found = references(&text);
        prop_assert_eq!(found, paths.into_iter().map(|(p, _)| p).collect::<Vec<_>>(), "{}", text);
    }

    /// Resolving leaves text as written where nothing is known, and replaces exactly the
    /// references the lookup knows.
    #[test]
    fn resolving_replaces_only_known_references(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                select(vec!["{{", "}}", "{", "}", "job.run_id", "`a b`", ".", " ", "x", "é"]),
                0..20,
            )
            .prop_map(|p| p.concat()),
        ],
    ) {
        prop_assert_eq!(resolve(&text, &|_| None), text.clone());
        let text = text.replace('\u{1}', "");
        let resolved = resolve(&text, &|path| (path == ["job", "run_id"]).then(|| "\u{1}".to_string()));
        let known = references(&text)
            .iter()
            .filter(|p| *p == &["job".to_string(), "run_id".to_string()])
            .count();
        prop_assert_eq!(resolved.matches('\u{1}').count(), known, "{:?}", text);
    }

    /// Every field of a time answers for any instant, or says none.
    #[test]
    fn time_fields_answer_for_any_instant(millis in any::<i64>(), field in any::<String>()) {
        for field in [field.as_str(), "iso_date", "iso_datetime", "timestamp_ms", "year", "day_of_week", "is_weekday"] {
            let _ = time_field(millis, field);
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// In every time zone, over its clock changes, a schedule's fires come in strictly
    /// increasing order and none is skipped: no local time the schedule names (that the clock
    /// shows) falls between one fire and the next.
    #[test]
    fn fires_are_increasing_and_none_is_skipped_across_clock_changes(
        seconds in select(vec![vec![0u32], vec![0, 30]]),
        minutes in prop::collection::btree_set(0..60u32, 1..4),
        hours in prop::collection::btree_set(prop_oneof![0..4u32, 0..24u32], 1..5),
        zone in select(ZONES),
        after in near_a_clock_change(),
    ) {
        let text = format!(
            "{} {} {} * * ?",
            listed(seconds.iter()),
            listed(minutes.iter()),
            listed(hours.iter())
        );
        let cron: Cron = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let tz = time_zone(zone).expect("zone");
        let mut previous = after;
        for _ in 0..12 {
            let fire = cron
                .next_after(previous, tz)
                .ok_or_else(|| TestCaseError::fail("a daily schedule fires again"))?;
            prop_assert!(fire > previous, "{} in {}: {} after {}", text, zone, fire, previous);
            let first = previous.with_timezone(&tz).date_naive().pred_opt().expect("day");
            let last = fire.with_timezone(&tz).date_naive().succ_opt().expect("day");
            let mut day = first;
            while day <= last {
                for &h in &hours {
                    for &m in &minutes {
                        for &s in &seconds {
                            let local = day.and_hms_opt(h, m, s).expect("time");
                            if let Some(at) = local_instant(tz, local) {
                                prop_assert!(
                                    at <= previous || at >= fire,
                                    "{} in {}: after {} the next fire is {}, but {} ({} local) \
                                     fires before it",
                                    text, zone, previous, fire, at, local
                                );
                            }
                        }
                    }
                }
                day = day.succ_opt().expect("day");
            }
            // A fire the clock shows is a time the schedule names, unless it was moved out of a
            // gap, which ends within the hour before it (gaps are an hour or half an hour).
            let local = fire.with_timezone(&tz);
            let after_a_gap = (1..=60).any(|minutes| {
                local_instant(tz, local.naive_local() - Duration::minutes(minutes)).is_none()
            });
            if local_instant(tz, local.naive_local()) == Some(fire) && !after_a_gap {
                prop_assert!(
                    hours.contains(&local.hour())
                        && minutes.contains(&local.minute())
                        && seconds.contains(&local.second()),
                    "{} in {}: fire {}", text, zone, local
                );
            }
            previous = fire;
        }
    }

    /// Settings nested as deep as JSON text can carry them (for_each tasks in for_each tasks,
    /// lists in lists) are refused cleanly, without overflowing the stack.
    #[test]
    fn deeply_nested_settings_are_refused_cleanly(depth in 1..200usize, shape in 0..3u8) {
        let text = match shape {
            0 => format!(
                "{{\"tasks\": [{}{{\"task_key\": \"leaf\", \"spark_python_task\": {{}}}}{}]}}",
                "{\"task_key\": \"a\", \"for_each_task\": {\"inputs\": \"[1]\", \"task\": ".repeat(depth),
                "}}".repeat(depth)
            ),
            1 => format!(
                "{{\"tasks\": [{{\"task_key\": \"a\", \"spark_python_task\": {{\"parameters\": {}\"{{{{job.nope}}}}\"{}}}}}]}}",
                "[".repeat(depth),
                "]".repeat(depth)
            ),
            _ => format!("{{\"tags\": {}1{}}}", "[".repeat(depth), "]".repeat(depth)),
        };
        // As a request body reaches the checks: parsed by serde_json, whose depth limit
        // refuses the deepest.
        if let Ok(settings) = serde_json::from_str::<Value>(&text) {
            check_answers(&settings)?;
        }
        let mut settings = Value::Null;
        // As deep as a request body can carry them (serde_json stops at 128 levels).
        for _ in 0..depth.min(62) {
            settings = json!({"task_key": "a", "for_each_task": {"inputs": "[1]", "task": settings}});
        }
        check_answers(&json!({ "tasks": [settings] }))?;
    }
}

// A regression the zone property above found, kept by its smallest input.

/// Lord Howe Island moves its clocks by half an hour (02:00 -> 02:30). `0 10,35 2 * * ?`
/// names 02:10 (in the gap: fires at 02:40) and 02:35 (a real time before it): 02:35 must
/// not be skipped.
#[test]
fn a_time_after_a_half_hour_gap_is_not_skipped_for_a_moved_one() {
    let cron: Cron = "0 10,35 2 * * ?".parse().expect("cron");
    let zone = time_zone("Australia/Lord_Howe").expect("zone");
    // 22:00 local, the evening before the clocks change on 2026-10-04.
    let after = Utc
        .with_ymd_and_hms(2026, 10, 3, 11, 30, 0)
        .single()
        .expect("instant");
    let fire = cron.next_after(after, zone).expect("fires");
    assert_eq!(
        fire.with_timezone(&zone).to_rfc3339(),
        "2026-10-04T02:35:00+11:00",
        "the first fire after the change"
    );
}

/// Every key in `HashSet` is there once: a sanity check of the graph generator itself.
#[test]
fn generated_task_keys_are_distinct() {
    let mut runner = proptest::test_runner::TestRunner::new(config(32));
    runner
        .run(&graph(40), |graph| {
            let keys: HashSet<&String> = graph.keys.iter().collect();
            prop_assert_eq!(keys.len(), graph.keys.len());
            Ok(())
        })
        .expect("distinct keys");
}
