//! Properties of SQL statement text, the lake's user input: the depth check answers any text;
//! statements (valid ones mutated: cut, spliced, salted with quotes, comments and huge
//! numbers) are answered with rows or a client error, never a panic or an internal error;
//! long chains of any operator, prefix, suffix, call or field access are refused by the depth
//! check or planned, never overflowing the stack (run in a child process, where an overflow
//! is reported instead of ending every test).

use std::process::Command;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use tarn_core::ErrorCode;
use tarn_lake::{
    Lake, MAX_CHAINED_RELATIONS, MAX_EXPRESSION_DEPTH, SqlScope, check_expression_depth,
};

use crate::sql::Fixture;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Statements that plan and run against the fixture's tables.
const STATEMENTS: &[&str] = &[
    "SELECT * FROM dev.bronze.payments WHERE amount > 10 ORDER BY id",
    "SELECT id, sum(amount) AS total FROM dev.bronze.payments GROUP BY id HAVING sum(amount) > 1",
    "SELECT p.id, q.amount FROM dev.bronze.payments p JOIN prod.bronze.payments q ON p.id = q.id",
    "SELECT CAST(amount AS string) || 'é😀' AS s, id % 2 FROM payments WHERE id IN (1, 2)",
    "SELECT * FROM dev.bronze.payments VERSION AS OF 1",
    "SELECT count(*) FROM dev.bronze.payments TIMESTAMP AS OF '2020-01-01T00:00:00Z'",
    "WITH t AS (SELECT 1 AS x UNION ALL SELECT 2) SELECT x, x * 1e308 FROM t",
    "SELECT named_struct('a', 1, 'b', 'x')['a'], [1, 2, 3][2], -9223372036854775808",
    "SELECT CASE WHEN amount > 15 THEN 'big' ELSE 'small' END FROM dev.bronze.payments",
    "SELECT id FROM dev.bronze.payments WHERE id = (SELECT max(id) FROM dev.bronze.payments)",
    "CREATE TABLE dev.silver.copy AS SELECT * FROM dev.bronze.payments",
    "INSERT INTO dev.bronze.payments VALUES (4, 40.0)",
    "DELETE FROM dev.bronze.payments WHERE id = 4",
    "CREATE VIEW dev.silver.v AS SELECT id FROM dev.bronze.payments",
    "DROP VIEW dev.silver.v",
    "SHOW TABLES",
    "EXPLAIN SELECT 1",
];

/// Pieces that break SQL text: quotes of every kind, comments, escapes, separators, numbers
/// past every type's range, odd Unicode.
const SNIPPETS: &[&str] = &[
    "'",
    "''",
    "\"",
    "`",
    "\\",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ";",
    "--",
    "/*",
    "*/",
    "$$",
    "E'\\x'",
    "X'zz'",
    "1e99999",
    "99999999999999999999999999999999999999",
    "-",
    "+",
    "*",
    "/",
    "%",
    "||",
    "::",
    ":",
    "?",
    "$1",
    "@a",
    "NULL",
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "CASE",
    "END",
    "JOIN",
    "UNION",
    "VERSION AS OF",
    "TIMESTAMP AS OF",
    "\u{0}",
    "é",
    "\u{FEFF}",
    "\u{202E}",
    "😀",
    "\n",
    "\t",
    " ",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Insert(Index, &'static str, usize),
    Delete(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), select(SNIPPETS), 1..50usize)
            .prop_map(|(i, s, n)| Mutation::Insert(i, s, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for mutation in mutations {
        match mutation {
            Mutation::Truncate(i) => chars.truncate(i.index(chars.len() + 1)),
            Mutation::Insert(i, snippet, times) => {
                let at = i.index(chars.len() + 1);
                chars.splice(at..at, snippet.repeat(*times).chars());
            }
            Mutation::Delete(a, b) => {
                let (a, b) = (a.index(chars.len() + 1), b.index(chars.len() + 1));
                chars.drain(a.min(b)..a.max(b));
            }
        }
    }
    chars.into_iter().collect()
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            select(SNIPPETS).prop_map(str::to_string),
            "[a-z_]{1,6}".prop_map(|w| format!(" {w} ")),
            any::<i64>().prop_map(|n| format!(" {n} ")),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

/// A long chain: `count` repetitions of one construct around or after `1`.
#[derive(Debug, Clone)]
struct Chain {
    prefix: &'static str,
    repeated: &'static str,
    middle: &'static str,
    closing: &'static str,
    suffix: &'static str,
    count: usize,
}

impl Chain {
    fn text(&self) -> String {
        format!(
            "{}{}{}{}{}",
            self.prefix,
            self.repeated.repeat(self.count),
            self.middle,
            self.closing.repeat(self.count),
            self.suffix
        )
    }
}

/// (text before, repeated, middle, repeated closer, text after): operators chained,
/// prefixes stacked, suffixes stacked, calls and brackets nested, fields accessed.
const CHAINS: &[(&str, &str, &str, &str, &str)] = &[
    ("SELECT 1", " + 1", "", "", ""),
    ("SELECT 1", " || 'a'", "", "", ""),
    ("SELECT true", " AND true", "", "", ""),
    ("SELECT 1", " = 1", "", "", ""),
    ("SELECT 1", " & 1", "", "", ""),
    ("SELECT 1", "::bigint", "", "", ""),
    ("SELECT ", "NOT ", "true", "", ""),
    ("SELECT ", "- ", "1", "", ""),
    ("SELECT ", "~ ", "1", "", ""),
    ("SELECT 1", " IS NOT NULL", "", "", ""),
    ("SELECT 'a'", " COLLATE \"C\"", "", "", ""),
    ("SELECT now()", " AT TIME ZONE 'UTC'", "", "", ""),
    ("SELECT [1]", "[1]", "", "", ""),
    ("SELECT (named_struct('a', 1))", ".a", "", "", ""),
    ("SELECT named_struct('a', 1)", "['a']", "", "", ""),
    ("SELECT ", "abs(", "1", ")", ""),
    ("SELECT ", "(", "1", ")", ""),
    ("SELECT ", "CAST(", "1", " AS bigint)", ""),
    ("SELECT ", "CASE WHEN true THEN ", "1", " END", ""),
    ("SELECT ", "[", "1", "]", ""),
    ("SELECT ", "(SELECT ", "1", ")", ""),
    (
        "SELECT 1 WHERE ",
        "EXISTS (SELECT 1 WHERE ",
        "true",
        ")",
        "",
    ),
    (
        "SELECT 1 WHERE 1 IN ",
        "(SELECT 1 WHERE 1 IN ",
        "(1)",
        ")",
        "",
    ),
    ("", "WITH a AS (", "SELECT 1", ") SELECT * FROM a", ""),
    (
        "SELECT * FROM ",
        "(SELECT * FROM ",
        "(SELECT 1) t",
        ") t",
        "",
    ),
    ("SELECT 1", " UNION ALL SELECT 1", "", "", ""),
    ("SELECT 1", " UNION SELECT 1", "", "", ""),
    ("SELECT 1", " EXCEPT SELECT 2", "", "", ""),
    (
        "SELECT 1 AS x FROM (SELECT 1) a",
        " CROSS JOIN (SELECT 1)",
        "",
        "",
        "",
    ),
    (
        "SELECT 1 FROM (SELECT 1 AS x) a",
        " JOIN (SELECT 1 AS y) ON true",
        "",
        "",
        "",
    ),
    (
        "SELECT 1 FROM (SELECT 1) a",
        " NATURAL JOIN (SELECT 1)",
        "",
        "",
        "",
    ),
];

fn chain() -> impl Strategy<Value = Chain> {
    (
        select(CHAINS),
        prop_oneof![
            Just(MAX_EXPRESSION_DEPTH / 2),
            Just(MAX_EXPRESSION_DEPTH - 2),
            Just(MAX_EXPRESSION_DEPTH + 2),
            50..2_000usize,
            3_000..6_000usize,
        ],
    )
        .prop_map(
            |((prefix, repeated, middle, closing, suffix), count)| Chain {
                prefix,
                repeated,
                middle,
                closing,
                suffix,
                count,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// A statement run in a child process

const PROBE: &str = "TARN_SQL_PROBE";

/// Runs the statement in `file` in a child process running only [`sql_probe`]: what it
/// printed, or how it died.
fn sql_in_child(statement: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("statement.sql");
    std::fs::write(&file, statement).expect("write statement");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "properties::sql_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, &file)
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
                .filter(|l| l.contains("panicked") || l.contains("overflow"))
                .collect::<Vec<_>>()
                .join(" | ")
        )),
    }
}

/// Runs the statement a parent test named in the environment on a fresh lake, on this test
/// thread's 2 MiB stack (a server worker's); does nothing when run by hand.
#[tokio::test]
#[ignore = "run in a child process by sql_in_child"]
async fn sql_probe() {
    let Ok(file) = std::env::var(PROBE) else {
        return;
    };
    let statement = std::fs::read_to_string(file).expect("statement");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tarn_store::open(&format!(
        "sqlite://{}",
        dir.path().join("tarn.db").display()
    ))
    .await
    .expect("store");
    store
        .ensure_workspace("dev", "tester")
        .await
        .expect("workspace");
    let principal = store
        .create_principal(
            "alice",
            tarn_core::auth::PrincipalKind::User,
            true,
            None,
            "tester",
        )
        .await
        .expect("user");
    let caller = tarn_core::caller::Caller::new(
        "dev",
        tarn_core::auth::Principal {
            id: principal.id,
            name: principal.name,
            kind: principal.kind,
            is_admin: true,
            group_ids: Vec::new(),
            only_workspace: None,
        },
    );
    let lake = Lake::open(dir.path().join("lake").to_str().expect("path")).expect("lake");
    match lake
        .sql(store.as_ref(), &caller, &statement, &SqlScope::default())
        .await
    {
        Ok(output) => println!("PROBE: ok {} batches", output.batches.len()),
        Err(err) => println!("PROBE: {} {}", err.code.as_str(), err.message),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(512))]

    /// The depth check answers any text, and text made of SQL's pieces, with a pass or
    /// INVALID_PARAMETER_VALUE.
    #[test]
    fn the_depth_check_answers_any_text(text in any::<String>(), soup in token_soup()) {
        for text in [text, soup] {
            if let Err(err) = check_expression_depth(&text) {
                prop_assert_eq!(err.code, ErrorCode::InvalidParameterValue);
            }
        }
    }
}

/// Statements cut, spliced and salted with quotes, comments, separators, huge numbers and odd
/// Unicode are answered with rows or a client error: never a panic, never an internal error.
#[test]
fn mutated_statements_are_answered_with_rows_or_a_client_error() {
    let runtime = runtime();
    let f = runtime.block_on(Fixture::new());
    let strategy = (
        select(STATEMENTS),
        prop::collection::vec(mutation(), 0..4),
        token_soup(),
        any::<bool>(),
    );
    proptest::test_runner::TestRunner::new(config(64))
        .run(&strategy, |(statement, mutations, soup, use_soup)| {
            let text = if use_soup {
                soup
            } else {
                mutate(statement, &mutations)
            };
            runtime.block_on(async {
                let answer = f
                    .lake
                    .sql(f.store.as_ref(), &f.owner, &text, &SqlScope::default())
                    .await;
                if let Err(err) = answer {
                    prop_assert!(
                        err.code != ErrorCode::InternalError,
                        "{:?}: {:?} {}",
                        text,
                        err.code,
                        err.message
                    );
                }
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

proptest! {
    // Each case and each shrinking step runs a child process: few of both.
    #![proptest_config(ProptestConfig { max_shrink_iters: 24, ..config(16) })]

    /// A chain of any operator, prefix, suffix, call, bracket, subquery or field access, from
    /// short to thousands long, is refused by the depth check or planned and run:
    /// the child process running it neither panics nor overflows its stack, and the answer is
    /// never an internal error.
    #[test]
    fn long_chains_of_any_construct_are_refused_or_run_without_overflow(chain in chain()) {
        let text = chain.text();
        let answer = sql_in_child(&text);
        let shown = format!("{}{}x{} ({} bytes)", chain.prefix, chain.repeated, chain.count, text.len());
        prop_assert!(answer.is_ok(), "{}: the child died: {:?}", shown, answer);
        let answer = answer.unwrap_or_default();
        prop_assert!(!answer.starts_with("INTERNAL_ERROR"), "{}: {}", shown, answer);
    }
}

// Regressions: the smallest inputs the properties above found, kept by name.

/// Set operations and joins chain without brackets or operators the expression bound counts:
/// 300 `EXCEPT`s (under 5 KB of text) and 3,000 `UNION ALL`s overflowed the planner's stack,
/// which aborts the process. Up to the bound on chained relations they run, on a 2 MiB stack;
/// past it they are refused.
#[test]
fn chained_set_operations_and_joins_run_up_to_the_bound_and_are_refused_past_it() {
    let runs_or_refused = |text: &str, runs: bool, shown: &str| {
        let answer = sql_in_child(text);
        let expected = if runs {
            "ok"
        } else {
            "INVALID_PARAMETER_VALUE"
        };
        assert!(
            answer.as_ref().is_ok_and(|a| a.starts_with(expected)),
            "{shown}: {answer:?}"
        );
    };
    let bounds = [
        (MAX_CHAINED_RELATIONS, true),
        (MAX_CHAINED_RELATIONS + 1, false),
    ];
    for repeated in [
        " EXCEPT SELECT 2",
        " UNION ALL SELECT 1",
        " INTERSECT SELECT 1",
    ] {
        for (count, runs) in bounds {
            let text = format!("SELECT 1{}", repeated.repeat(count));
            runs_or_refused(&text, runs, &format!("{repeated} x{count}"));
        }
    }
    // Joins and the tables of a FROM list, each table with a name of its own.
    let tables: Vec<String> = (0..=MAX_CHAINED_RELATIONS + 1)
        .map(|i| format!("(SELECT {i} AS c{i}) t{i}"))
        .collect();
    for separator in [" CROSS JOIN ", ", "] {
        for (count, runs) in bounds {
            let text = format!("SELECT 1 FROM {}", tables[..=count].join(separator));
            runs_or_refused(&text, runs, &format!("{separator:?} x{count}"));
        }
    }
}

/// Two references to a column that does not exist are the caller's mistake, as one is.
#[test]
fn a_statement_naming_an_unknown_column_twice_is_a_client_error() {
    let runtime = runtime();
    runtime.block_on(async {
        let f = Fixture::new().await;
        for text in ["SELECT x", "SELECT x, x"] {
            let err = f
                .lake
                .sql(f.store.as_ref(), &f.owner, text, &SqlScope::default())
                .await
                .expect_err("no column x");
            assert_eq!(
                err.code,
                ErrorCode::InvalidParameterValue,
                "{text}: {}",
                err.message
            );
        }
    });
}
