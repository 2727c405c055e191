//! Properties of the parsers of user input in tarn-core: MLflow's search grammar (filters and
//! order-by clauses of runs, experiments, registered models, model versions and logged models),
//! page tokens and workspace file paths (what bundle deploys upload and tasks run). Any text is answered with a parse or with INVALID_PARAMETER_VALUE, never a
//! panic; filters and clauses built from generated comparisons parse back to exactly those
//! comparisons; every offset survives its page token.

use base64::Engine;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use tarn_core::files::{ancestors, normalize_path, parent};
use tarn_core::search::{
    self, Comparator, Comparison, Entity, MAX_FILTER_CLAUSES, OrderBy, SearchError, Value,
};
use tarn_core::{Error, ErrorCode};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// What each search accepts, as MLflow documents it

type FilterFn = fn(&str) -> Result<Vec<Comparison>, SearchError>;
type OrderFn = fn(&str) -> Result<OrderBy, SearchError>;

use Comparator::*;

const NUMERIC: &[Comparator] = &[Gt, Ge, Eq, Ne, Lt, Le];
const STRING: &[Comparator] = &[Ne, Eq, Like, ILike];
const STRING_WITH_NULL: &[Comparator] = &[Ne, Eq, Like, ILike, IsNull, IsNotNull];
const STRING_WITH_IN: &[Comparator] = &[Ne, Eq, Like, ILike, In, NotIn];

#[derive(Debug)]
struct Grammar {
    name: &'static str,
    filter: FilterFn,
    order_by: Option<OrderFn>,
    metrics: bool,
    /// Comparators of params and tags; empty when the entity is not searchable.
    params: &'static [Comparator],
    tags: &'static [Comparator],
    datasets: bool,
    numeric_attributes: &'static [&'static str],
    list_attributes: &'static [&'static str],
    string_attributes: &'static [&'static str],
    order_attributes: &'static [&'static str],
    /// Only attributes may be ordered by.
    attributes_only_order: bool,
}

const RUNS: Grammar = Grammar {
    name: "runs",
    filter: search::parse_run_filter,
    order_by: Some(search::parse_run_order_by),
    metrics: true,
    params: STRING_WITH_NULL,
    tags: STRING_WITH_NULL,
    datasets: true,
    numeric_attributes: &["start_time", "end_time"],
    list_attributes: &["run_id", "run_name", "user_id", "status", "artifact_uri"],
    string_attributes: &[],
    order_attributes: &[
        "run_id",
        "run_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
    ],
    attributes_only_order: false,
};

const EXPERIMENTS: Grammar = Grammar {
    name: "experiments",
    filter: search::parse_experiment_filter,
    order_by: Some(search::parse_experiment_order_by),
    metrics: false,
    params: &[],
    tags: STRING_WITH_NULL,
    datasets: false,
    numeric_attributes: &["creation_time", "last_update_time"],
    list_attributes: &["experiment_id"],
    string_attributes: &["name"],
    order_attributes: &["name", "experiment_id", "creation_time", "last_update_time"],
    attributes_only_order: true,
};

const REGISTERED_MODELS: Grammar = Grammar {
    name: "registered models",
    filter: search::parse_registered_model_filter,
    order_by: Some(search::parse_registered_model_order_by),
    metrics: false,
    params: &[],
    tags: STRING,
    datasets: false,
    numeric_attributes: &[],
    list_attributes: &["name"],
    string_attributes: &[],
    order_attributes: &["name", "creation_timestamp", "last_updated_timestamp"],
    attributes_only_order: true,
};

const MODEL_VERSIONS: Grammar = Grammar {
    name: "model versions",
    filter: search::parse_model_version_filter,
    order_by: Some(search::parse_model_version_order_by),
    metrics: false,
    params: &[],
    tags: STRING,
    datasets: false,
    numeric_attributes: &["version_number"],
    list_attributes: &["name", "run_id"],
    string_attributes: &["source_path"],
    order_attributes: &[
        "name",
        "version_number",
        "creation_timestamp",
        "last_updated_timestamp",
    ],
    attributes_only_order: true,
};

const LOGGED_MODELS: Grammar = Grammar {
    name: "logged models",
    filter: search::parse_logged_model_filter,
    order_by: None,
    metrics: true,
    params: STRING,
    tags: STRING,
    datasets: false,
    numeric_attributes: &[
        "creation_timestamp",
        "creation_time",
        "last_updated_timestamp",
    ],
    list_attributes: &["status", "name"],
    string_attributes: &["model_id", "model_type", "source_run_id"],
    order_attributes: &[],
    attributes_only_order: true,
};

const GRAMMARS: [&Grammar; 5] = [
    &RUNS,
    &EXPERIMENTS,
    &REGISTERED_MODELS,
    &MODEL_VERSIONS,
    &LOGGED_MODELS,
];

fn grammar() -> impl Strategy<Value = &'static Grammar> {
    select(GRAMMARS.to_vec())
}

/// Runs every parser of the search grammar on `text`: each answers, and a refusal is the
/// invalid-parameter error.
fn parse_everywhere(text: &str) -> Result<(), TestCaseError> {
    for grammar in GRAMMARS {
        match (grammar.filter)(text) {
            Ok(comparisons) => prop_assert!(
                comparisons.len() <= MAX_FILTER_CLAUSES,
                "{} filter {text:?} gave {} comparisons",
                grammar.name,
                comparisons.len()
            ),
            Err(err) => refusal_is_invalid_parameter(err)?,
        }
        if let Some(order_by) = grammar.order_by
            && let Err(err) = order_by(text)
        {
            refusal_is_invalid_parameter(err)?;
        }
    }
    if let Err(err) = search::decode_page_token(text) {
        refusal_is_invalid_parameter(err)?;
    }
    Ok(())
}

fn refusal_is_invalid_parameter(err: SearchError) -> Result<(), TestCaseError> {
    prop_assert!(!err.0.is_empty(), "a refusal says why");
    let wire = Error::from(err);
    prop_assert_eq!(wire.code, ErrorCode::InvalidParameterValue);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generated filters, rendered in the many ways MLflow's grammar allows

fn ws() -> impl Strategy<Value = &'static str> {
    select(vec![" ", "  ", "\t", "\n", " \r\n ", "\u{3000}", "\u{a0}"])
}

fn cased(word: &str, variant: u8) -> String {
    match variant % 3 {
        0 => word.to_lowercase(),
        1 => word.to_uppercase(),
        _ => {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

fn comparator_text(op: Comparator, variant: u8, ws: &str) -> String {
    let next = variant / 3;
    match op {
        Eq => ["=", "=="][usize::from(variant % 2)].to_string(),
        Ne => ["!=", "<>"][usize::from(variant % 2)].to_string(),
        Gt => ">".into(),
        Ge => ">=".into(),
        Lt => "<".into(),
        Le => "<=".into(),
        Like => cased("like", variant),
        ILike => cased("ilike", variant),
        In => cased("in", variant),
        NotIn => format!("{}{ws}{}", cased("not", variant), cased("in", next)),
        IsNull => format!("{}{ws}{}", cased("is", variant), cased("null", next)),
        IsNotNull => format!(
            "{}{ws}{}{ws}{}",
            cased("is", variant),
            cased("not", next),
            cased("null", next / 3)
        ),
    }
}

/// Text with the characters that need care: quotes, backslashes, wildcards, non-ASCII.
fn tricky_text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        proptest::string::string_regex(&format!("[^\\x00]{{0,{max}}}")).expect("regex"),
        proptest::string::string_regex(&format!("['\"`\\\\%_. a-zA-Z0-9é中😀]{{0,{max}}}"))
            .expect("regex"),
    ]
    .boxed()
}

/// A metric, param or tag key: (the key, how the filter writes it).
fn key() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        prop::collection::vec("[A-Za-z_é中][A-Za-z0-9_é中]{0,8}", 1..4).prop_map(|segments| {
            let key = segments.join(".");
            (key.clone(), key)
        }),
        tricky_text(16)
            .prop_map(|k| k.replace('`', ""))
            .prop_filter("non-empty", |k| !k.is_empty())
            .prop_map(|k| (k.clone(), format!("`{k}`"))),
        tricky_text(16)
            .prop_map(|k| k.replace('"', ""))
            .prop_filter("non-empty", |k| !k.is_empty())
            .prop_map(|k| (k.clone(), format!("\"{k}\""))),
    ]
    .boxed()
}

/// A string value: (the value, how the filter writes it).
fn string_value() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        tricky_text(16).prop_map(|s| (s.clone(), format!("'{}'", s.replace('\'', "''")))),
        tricky_text(16)
            .prop_map(|s| s.replace('"', ""))
            .prop_map(|s| (s.clone(), format!("\"{s}\""))),
    ]
    .boxed()
}

fn finite_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1000i64..1000).prop_map(|i| i as f64),
        select(vec![
            0.0,
            -0.0,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            1e15,
            0.1
        ]),
    ]
    .boxed()
}

/// A number: (the value, how the filter writes it: plain, exponent, shortest, or quoted).
fn number_value() -> BoxedStrategy<(f64, String)> {
    (finite_f64(), 0..4u8)
        .prop_map(|(n, style)| {
            let text = match style {
                0 => format!("{n}"),
                1 => format!("{n:e}"),
                2 => format!("{n:?}"),
                _ => format!("'{n}'"),
            };
            (n, text)
        })
        .boxed()
}

fn list_value() -> BoxedStrategy<(Vec<String>, String)> {
    (prop::collection::vec((string_value(), ws()), 1..5), ws())
        .prop_map(|(items, ws)| {
            let values = items.iter().map(|((v, _), _)| v.clone()).collect();
            let text = items
                .iter()
                .map(|((_, text), w)| format!("{w}{text}"))
                .collect::<Vec<_>>()
                .join(",");
            (values, format!("({text}{ws})"))
        })
        .boxed()
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Metric,
    Param,
    Tag,
    Dataset(&'static str),
    NumericAttribute(&'static str),
    ListAttribute(&'static str),
    StringAttribute(&'static str),
}

fn targets(g: &Grammar) -> Vec<Target> {
    let mut all = Vec::new();
    if g.metrics {
        all.push(Target::Metric);
    }
    if !g.params.is_empty() {
        all.push(Target::Param);
    }
    if !g.tags.is_empty() {
        all.push(Target::Tag);
    }
    if g.datasets {
        all.extend(["name", "digest", "context"].map(Target::Dataset));
    }
    all.extend(
        g.numeric_attributes
            .iter()
            .copied()
            .map(Target::NumericAttribute),
    );
    all.extend(g.list_attributes.iter().copied().map(Target::ListAttribute));
    all.extend(
        g.string_attributes
            .iter()
            .copied()
            .map(Target::StringAttribute),
    );
    all
}

fn pick<'a>(options: &[&'a str], choice: u8) -> &'a str {
    options[usize::from(choice) % options.len()]
}

/// An attribute as a filter or order-by clause may name it: bare, behind one of the
/// attribute prefixes, quoted, or (for runs) by one of MLflow's aliases.
fn attribute_text(g: &Grammar, name: &str, choice: u8) -> String {
    match (g.name, name, choice % 8) {
        ("runs", "start_time", 7) => "created".into(),
        ("runs", "run_name", 7) => "`Run Name`".into(),
        ("runs", "run_name", 6) => "attributes.`run name`".into(),
        (_, _, 0 | 6 | 7) => name.into(),
        (_, _, 1) => format!("attributes.{name}"),
        (_, _, 2) => format!("attribute.{name}"),
        (_, _, 3) => format!("attr.`{name}`"),
        (_, _, 4) => format!("run.\"{name}\""),
        _ => format!("`{name}`"),
    }
}

/// One generated clause: the comparison and its text.
fn clause(g: &'static Grammar) -> impl Strategy<Value = (Comparison, String)> {
    (
        select(targets(g)),
        key(),
        number_value(),
        string_value(),
        list_value(),
        (ws(), ws()),
        any::<Index>(),
        any::<(u8, u8)>(),
    )
        .prop_map(
            move |(
                target,
                (key, key_text),
                (n, n_text),
                (s, s_text),
                (list, list_text),
                (w1, w2),
                op,
                (variant, choice),
            )| {
                let (entity, key, ident, ops, numeric) = match target {
                    Target::Metric => (
                        Entity::Metric,
                        key,
                        format!("{}.{key_text}", pick(&["metric", "metrics"], choice)),
                        NUMERIC,
                        true,
                    ),
                    Target::Param => (
                        Entity::Param,
                        key,
                        format!(
                            "{}.{key_text}",
                            pick(&["param", "params", "parameter", "parameters"], choice)
                        ),
                        g.params,
                        false,
                    ),
                    Target::Tag => (
                        Entity::Tag,
                        key,
                        format!("{}.{key_text}", pick(&["tag", "tags"], choice)),
                        g.tags,
                        false,
                    ),
                    Target::Dataset(name) => (
                        Entity::Dataset,
                        name.to_string(),
                        format!("{}.{name}", pick(&["dataset", "datasets"], choice)),
                        STRING_WITH_IN,
                        false,
                    ),
                    Target::NumericAttribute(name) => (
                        Entity::Attribute,
                        name.to_string(),
                        attribute_text(g, name, choice),
                        NUMERIC,
                        true,
                    ),
                    Target::ListAttribute(name) => (
                        Entity::Attribute,
                        name.to_string(),
                        attribute_text(g, name, choice),
                        STRING_WITH_IN,
                        false,
                    ),
                    Target::StringAttribute(name) => (
                        Entity::Attribute,
                        name.to_string(),
                        attribute_text(g, name, choice),
                        STRING,
                        false,
                    ),
                };
                let comparator = ops[op.index(ops.len())];
                let (value, value_text) = match comparator {
                    IsNull | IsNotNull => (Value::Null, String::new()),
                    In | NotIn => (Value::List(list), list_text),
                    _ if numeric => (Value::Number(n), n_text),
                    _ => (Value::Str(s), s_text),
                };
                let op_text = comparator_text(comparator, variant, w1);
                (
                    Comparison {
                        entity,
                        key,
                        comparator,
                        value,
                    },
                    format!("{ident}{w1}{op_text}{w2}{value_text}"),
                )
            },
        )
}

/// A filter of 1 to `max` generated clauses joined by AND: the comparisons and the text.
fn filter(g: &'static Grammar, max: usize) -> impl Strategy<Value = (Vec<Comparison>, String)> {
    (
        prop::collection::vec((clause(g), ws(), ws(), any::<u8>()), 1..=max),
        ws(),
    )
        .prop_map(|(clauses, lead)| {
            let mut text = lead.to_string();
            let mut comparisons = Vec::new();
            for (i, ((comparison, clause_text), w1, w2, variant)) in clauses.iter().enumerate() {
                if i > 0 {
                    text.push_str(&format!("{w1}{}{w2}", cased("and", *variant)));
                }
                text.push_str(clause_text);
                comparisons.push(comparison.clone());
            }
            text.push_str(lead);
            (comparisons, text)
        })
}

fn any_filter(max: usize) -> impl Strategy<Value = (&'static Grammar, Vec<Comparison>, String)> {
    grammar().prop_flat_map(move |g| filter(g, max).prop_map(move |(c, t)| (g, c, t)))
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid input

/// Snippets that break parsers: quotes, escapes, operators, keywords, odd Unicode, numbers
/// too large for any type.
const SNIPPETS: &[&str] = &[
    "'",
    "''",
    "`",
    "\"",
    "\\",
    "\\'",
    "(",
    ")",
    ",",
    ".",
    "..",
    "\0",
    "é",
    "\u{FEFF}",
    "\u{202E}",
    "😀",
    "\u{10FFFF}",
    "1e999999",
    "-1e-999999",
    "99999999999999999999999999",
    "1e",
    "-",
    "+",
    ".5",
    "0x10",
    "NaN",
    "inf",
    " AND ",
    " and",
    " OR ",
    " IS ",
    " NOT ",
    " NULL",
    " IN (",
    " LIKE ",
    "=",
    "==",
    "<>",
    "!",
    "!=",
    "<=",
    ">",
    "%",
    "_",
    ";",
    "--",
    "/*",
    "\n",
    "\t",
    "\u{3000}",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Insert(Index, &'static str),
    Delete(Index, Index),
    Duplicate(Index, Index),
    Repeat(&'static str, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), select(SNIPPETS)).prop_map(|(at, s)| Mutation::Insert(at, s)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        (select(SNIPPETS), 1..2000usize).prop_map(|(s, n)| Mutation::Repeat(s, n)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for mutation in mutations {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match mutation {
            Mutation::Truncate(i) => chars.truncate(at(i, chars.len())),
            Mutation::Insert(i, s) => {
                let i = at(i, chars.len());
                chars.splice(i..i, s.chars());
            }
            Mutation::Delete(a, b) | Mutation::Duplicate(a, b) => {
                let (a, b) = (at(a, chars.len()), at(b, chars.len()));
                let range = a.min(b)..a.max(b);
                if matches!(mutation, Mutation::Delete(..)) {
                    chars.drain(range);
                } else {
                    let copy: Vec<char> = chars[range.clone()].to_vec();
                    chars.splice(range.end..range.end, copy);
                }
            }
            Mutation::Repeat(s, n) => {
                let at = chars.len() / 2;
                chars.splice(at..at, s.repeat(*n).chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// Text made of the grammar's own pieces in any order.
fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            select(SNIPPETS).prop_map(str::to_string),
            select(vec![
                "metrics.acc",
                "params.p",
                "tags.`t`",
                "attributes.status",
                "datasets.name",
                "run_name",
                "name",
                "start_time",
                "created",
                "1",
                "0.5",
                "-3e7",
                "'x'",
                "\"y\"",
                "ASC",
                "DESC",
                " ",
                "IS NOT NULL",
                "NOT IN",
                "ILIKE",
            ])
            .prop_map(str::to_string),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(256))]

    /// Any text, and any text made of the grammar's own pieces, is parsed or refused with
    /// INVALID_PARAMETER_VALUE by every filter, order-by and page-token parser.
    #[test]
    fn search_parsers_never_panic_on_arbitrary_text(text in any::<String>(), soup in token_soup()) {
        parse_everywhere(&text)?;
        parse_everywhere(&soup)?;
    }

    /// Valid filters cut, spliced, duplicated and salted with quotes, escapes, Unicode and
    /// huge numbers are parsed or refused cleanly.
    #[test]
    fn search_parsers_never_panic_on_mutated_filters(
        (_, _, text) in any_filter(6),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        parse_everywhere(&mutate(&text, &mutations))?;
    }

    /// A filter written from generated comparisons (any quoting, keyword case, whitespace,
    /// entity prefix and alias) parses to exactly those comparisons, values exact.
    #[test]
    fn filters_built_from_comparisons_parse_back_to_them((g, comparisons, text) in any_filter(8)) {
        let parsed = (g.filter)(&text);
        prop_assert_eq!(parsed, Ok(comparisons), "{} filter {:?}", g.name, text);
    }

    /// Up to MAX_FILTER_CLAUSES comparisons parse; one more is refused with a reason, not
    /// planned.
    #[test]
    fn filters_hold_the_clause_limit(
        (g, comparisons, text) in any_filter(1),
        extra in 0..3usize,
    ) {
        let count = MAX_FILTER_CLAUSES + extra;
        let joined = vec![text.as_str(); count].join(" AND ");
        match (g.filter)(&joined) {
            Ok(parsed) => {
                prop_assert_eq!(extra, 0);
                prop_assert_eq!(parsed.len(), MAX_FILTER_CLAUSES);
                prop_assert!(parsed.iter().all(|c| *c == comparisons[0]));
            }
            Err(err) => {
                prop_assert!(extra > 0, "{}", err.0);
                prop_assert!(err.0.contains("too many clauses"), "{}", err.0);
            }
        }
    }

    /// An order-by clause written from a generated key and direction parses to that key and
    /// direction.
    #[test]
    fn order_by_clauses_parse_back_to_their_key_and_direction(
        g in select(vec![&RUNS, &EXPERIMENTS, &REGISTERED_MODELS, &MODEL_VERSIONS]),
        (key, key_text) in key(),
        which in any::<Index>(),
        (choice, variant, direction) in (any::<u8>(), any::<u8>(), 0..3u8),
        (w1, w2) in (ws(), ws()),
    ) {
        let order_by = g.order_by.expect("orders");
        let mut options: Vec<(Entity, String, String)> = g
            .order_attributes
            .iter()
            .map(|a| {
                let text = if g.attributes_only_order {
                    // Bare or quoted: the forms MLflow documents for these searches.
                    if choice % 2 == 0 { a.to_string() } else { format!("`{a}`") }
                } else {
                    attribute_text(g, a, choice)
                };
                (Entity::Attribute, a.to_string(), text)
            })
            .collect();
        if !g.attributes_only_order {
            options.push((Entity::Metric, key.clone(), format!("metrics.{key_text}")));
            options.push((Entity::Param, key.clone(), format!("params.{key_text}")));
            options.push((Entity::Tag, key.clone(), format!("tags.{key_text}")));
        }
        let (entity, key, ident) = options[which.index(options.len())].clone();
        let (suffix, ascending) = match direction {
            0 => (String::new(), true),
            1 => (format!("{w1}{}", cased("asc", variant)), true),
            _ => (format!("{w1}{}", cased("desc", variant)), false),
        };
        let text = format!("{w2}{ident}{suffix}{w2}");
        prop_assert_eq!(
            order_by(&text),
            Ok(OrderBy { entity, key, ascending }),
            "{} order_by {:?}", g.name, text
        );
    }

    /// Metric, param and tag keys that happen to be spelled like an attribute alias
    /// (`created`, `timestamp`, ...) are ordered by as written: MLflow's aliases are for
    /// attributes only.
    #[test]
    fn order_by_keys_named_like_attribute_aliases_stay_as_written(
        prefix in select(vec![("metrics", Entity::Metric), ("params", Entity::Param), ("tags", Entity::Tag)]),
        key in select(vec!["created", "Created", "timestamp", "last_updated_time", "Run Name"]),
        descending in any::<bool>(),
    ) {
        let (prefix, entity) = prefix;
        let text = format!("{prefix}.`{key}`{}", if descending { " DESC" } else { "" });
        prop_assert_eq!(
            search::parse_run_order_by(&text),
            Ok(OrderBy { entity, key: key.to_string(), ascending: !descending }),
            "order_by {:?}", text
        );
    }

    /// Every offset survives its page token, and tokens are plain base64 text.
    #[test]
    fn page_tokens_round_trip_every_offset(offset in prop_oneof![any::<u64>(), 0..100_000u64]) {
        let token = search::encode_page_token(offset);
        prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)), "{token}");
        prop_assert_eq!(search::decode_page_token(&token), Ok(offset));
        // MLflow writes its own tokens with a space after the colon, and clients may send the
        // URL-safe alphabet or surrounding whitespace.
        let mlflow = base64::engine::general_purpose::STANDARD
            .encode(format!("{{\"offset\": {offset}}}"));
        prop_assert_eq!(search::decode_page_token(&mlflow), Ok(offset));
        let url_safe = base64::engine::general_purpose::URL_SAFE
            .encode(format!("{{\"offset\":{offset}}}"));
        prop_assert_eq!(search::decode_page_token(&format!(" {url_safe}\n")), Ok(offset));
    }

    /// Forged tokens (arbitrary bytes, JSON of the wrong shape, negative, fractional or
    /// huge offsets) are refused with INVALID_PARAMETER_VALUE or read as a valid offset,
    /// never anything else.
    #[test]
    fn forged_page_tokens_are_refused_cleanly(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        offset in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("18446744073709551616".to_string()),
            Just("1e400".to_string()),
            Just("\"12\"".to_string()),
            Just("null".to_string()),
            Just("[1]".to_string()),
        ],
        url_safe in any::<bool>(),
    ) {
        let engine = if url_safe {
            base64::engine::general_purpose::URL_SAFE
        } else {
            base64::engine::general_purpose::STANDARD
        };
        for payload in [bytes.clone(), format!("{{\"offset\": {offset}}}").into_bytes()] {
            let token = engine.encode(&payload);
            if token.is_empty() {
                // The empty token is the first page.
                prop_assert_eq!(search::decode_page_token(&token), Ok(0));
                continue;
            }
            match search::decode_page_token(&token) {
                Ok(decoded) => {
                    let json: serde_json::Value =
                        serde_json::from_slice(&payload).expect("a token that decodes is JSON");
                    // `{"offset": n}`, or `[n]`: serde reads a struct from a list too.
                    let offset = json["offset"].as_u64().or_else(|| json[0].as_u64());
                    prop_assert_eq!(offset, Some(decoded));
                }
                Err(err) => refusal_is_invalid_parameter(err)?,
            }
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Long and deeply bracketed input (far past the length limit, thousands of open
    /// brackets or quotes) is refused quickly and cleanly.
    #[test]
    fn huge_and_deeply_nested_filters_are_refused_cleanly(
        (g, _, text) in any_filter(2),
        snippet in select(vec!["(", "((", "'", "`", "\"", "metrics.a > 1 AND ", "-"]),
        times in prop_oneof![1_000..5_000usize, 100_000..120_000usize],
    ) {
        let long = format!("{}{text}", snippet.repeat(times));
        match (g.filter)(&long) {
            Ok(parsed) => prop_assert!(parsed.len() <= MAX_FILTER_CLAUSES),
            Err(err) => refusal_is_invalid_parameter(err)?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workspace file paths

/// A workspace path as clients write them: absolute or not, with `/Workspace` (even twice),
/// `.`, `..`, empty parts, backslashes, controls and non-ASCII names.
fn workspace_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop_oneof![
                3 => "[A-Za-z0-9_.@ -]{1,12}",
                1 => select(vec!["Workspace", "workspace", "", ".", "..", "...", "a\\b", "\u{0}", "\t", "é😀", "Users", "Shared"])
                    .prop_map(str::to_string),
                1 => any::<String>().prop_map(|s| s.replace('/', "")),
            ],
            0..8,
        ),
        any::<bool>(),
        any::<bool>(),
        // `/Workspace` in front, once or more: the prefix that names the same tree.
        prop::collection::vec(select(vec!["Workspace", "workspace"]), 0..3),
    )
        .prop_map(|(parts, absolute, trailing, front)| {
            let front: Vec<String> = front.into_iter().map(str::to_string).collect();
            let mut path = [front, parts].concat().join("/");
            if absolute {
                path.insert(0, '/');
            }
            if trailing {
                path.push('/');
            }
            path
        })
}

proptest! {
    #![proptest_config(config(512))]

    /// A workspace path is refused with INVALID_PARAMETER_VALUE or normalized to its one stored
    /// form: absolute, no `/Workspace` in front, no `.`, `..` or empty parts, no trailing slash;
    /// normalizing the stored form gives it back, and its ancestors and parent are its prefixes.
    #[test]
    fn workspace_paths_normalize_to_one_stored_form(path in prop_oneof![workspace_path(), any::<String>()]) {
        let stored = match normalize_path(&path) {
            Ok(stored) => stored,
            Err(err) => {
                prop_assert_eq!(err.code, ErrorCode::InvalidParameterValue);
                return Ok(());
            }
        };
        prop_assert!(stored.starts_with('/'), "{:?} -> {:?}", path, stored);
        prop_assert!(stored == "/" || !stored.ends_with('/'), "{:?} -> {:?}", path, stored);
        prop_assert!(!stored.contains("//"), "{:?} -> {:?}", path, stored);
        prop_assert!(
            stored.split('/').all(|part| part != "." && part != ".."),
            "{:?} -> {:?}", path, stored
        );
        prop_assert_eq!(
            normalize_path(&stored).map_err(|e| e.message),
            Ok(stored.clone()),
            "the stored form of {:?} names another path", path
        );
        let above = ancestors(&stored);
        for ancestor in &above {
            prop_assert!(stored.starts_with(&format!("{ancestor}/")), "{} above {}", ancestor, stored);
        }
        let expected_parent = above.last().map_or("/", String::as_str);
        prop_assert_eq!(parent(&stored), expected_parent, "{}", stored);
    }
}

/// `/Workspace/Workspace` is stored as `/Workspace`, which names the root when read back.
#[test]
fn a_path_under_a_folder_named_workspace_keeps_its_stored_form() {
    let stored = normalize_path("/Workspace/Workspace").expect("a path");
    assert_eq!(normalize_path(&stored).expect("a path"), stored);
}
