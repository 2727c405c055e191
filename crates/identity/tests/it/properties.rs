//! Properties of the SCIM filter (RFC 7644 §3.4.2.2) and PATCH parsers: any text is parsed or
//! refused with INVALID_PARAMETER_VALUE, never a panic; a filter written from a generated tree
//! (any case, spacing, schema prefix and JSON escapes) parses back to that tree; nesting past
//! the limit is refused; any PATCH request is applied or refused.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use tarn_core::{Error, ErrorCode};
use tarn_identity::scim::filter::{self, Filter, MAX_FILTER_LEN, Op};
use tarn_identity::scim::patch::{self, PATCH_SCHEMA};

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
    Ok(())
}

fn resource() -> Value {
    json!({
        "id": "12",
        "userName": "Alice@Example.com",
        "displayName": "Alice",
        "active": true,
        "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
        "groups": [{"value": "3", "display": "ops"}],
        "members": [{"value": "1"}, {"value": "2"}],
        "x": 1.5,
    })
}

/// Parses `text`; a filter that parses evaluates over a resource without panicking.
fn parse_answers(text: &str) -> Result<(), TestCaseError> {
    match filter::parse(text) {
        Ok(parsed) => {
            parsed.matches(&resource());
            parsed.matches(&Value::Null);
        }
        Err(err) => refused_cleanly(&err, &text)?,
    }
    Ok(())
}

const SCHEMAS: &[&str] = &[
    "urn:ietf:params:scim:schemas:core:2.0:User:",
    "urn:ietf:params:scim:schemas:core:2.0:Group:",
    "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal:",
];

/// Words of about a schema prefix's length with non-ASCII characters anywhere: an attribute
/// that could be mistaken for a prefixed one.
fn prefix_length_word() -> impl Strategy<Value = String> {
    (
        select(SCHEMAS),
        0..60usize,
        prop::collection::vec(select(vec!["a", ":", "é", "😀", "\u{80}", "ü"]), 0..8),
    )
        .prop_map(|(schema, keep, tail)| {
            let kept: String = schema.chars().take(keep).collect();
            format!("{kept}{}", tail.concat())
        })
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            select(vec![
                "(",
                ")",
                "[",
                "]",
                "\"",
                "\\\"",
                "\\u00e9",
                "\\ud800",
                "not",
                "and",
                "or",
                "eq",
                "ne",
                "co",
                "sw",
                "ew",
                "gt",
                "ge",
                "lt",
                "le",
                "pr",
                "true",
                "null",
                "1e999",
                "-0",
                "userName",
                "emails.value",
                "name.givenName",
                " ",
                "\t",
                "urn:ietf:params:scim:schemas:core:2.0:User:",
                "é",
            ])
            .prop_map(str::to_string),
            prefix_length_word(),
        ],
        0..24,
    )
    .prop_map(|parts| parts.join(" "))
}

// ---------------------------------------------------------------------------------------------
// Generated filter trees

const KEYWORDS: &[&str] = &["not", "and", "or"];

fn attribute_part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_$-]{1,10}".prop_filter("not a keyword", |p| {
        !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(p))
    })
}

/// An attribute path of one or two names, and how the filter writes it.
fn attribute() -> impl Strategy<Value = (Vec<String>, String)> {
    (
        prop::collection::vec(attribute_part(), 1..=2),
        prop::option::of((select(SCHEMAS), any::<bool>())),
    )
        .prop_map(|(path, schema)| {
            let mut text = path.join(".");
            if let Some((schema, upper)) = schema {
                let schema = if upper {
                    schema.to_uppercase()
                } else {
                    schema.to_string()
                };
                text = format!("{schema}{text}");
            }
            (path, text)
        })
}

fn op() -> impl Strategy<Value = (Op, &'static str)> {
    select(vec![
        (Op::Eq, "eq"),
        (Op::Ne, "ne"),
        (Op::Co, "co"),
        (Op::Sw, "sw"),
        (Op::Ew, "ew"),
        (Op::Gt, "gt"),
        (Op::Ge, "ge"),
        (Op::Lt, "lt"),
        (Op::Le, "le"),
    ])
}

fn value(string_only: bool) -> BoxedStrategy<(Value, String)> {
    let string =
        any::<String>().prop_map(|s| (Value::String(s.clone()), Value::String(s).to_string()));
    if string_only {
        return string.boxed();
    }
    prop_oneof![
        string,
        any::<i64>().prop_map(|n| (Value::from(n), n.to_string())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| (Value::from(f), Value::from(f).to_string())),
        select(vec![
            (Value::Bool(true), "true"),
            (Value::Bool(false), "FALSE"),
            (Value::Null, "null"),
        ])
        .prop_map(|(v, t)| (v, t.to_string())),
    ]
    .boxed()
}

fn cased(word: &str, upper: bool) -> String {
    if upper {
        word.to_uppercase()
    } else {
        word.to_string()
    }
}

/// A filter tree and its text.
fn tree() -> impl Strategy<Value = (Filter, String)> {
    let leaf = prop_oneof![
        (attribute(), op(), any::<bool>()).prop_flat_map(|((path, text), (op, word), upper)| {
            let strings = matches!(op, Op::Co | Op::Sw | Op::Ew);
            value(strings).prop_map(move |(value, written)| {
                (
                    Filter::Compare {
                        path: path.clone(),
                        op,
                        value,
                    },
                    format!("{text} {} {written}", cased(word, upper)),
                )
            })
        }),
        (attribute(), any::<bool>()).prop_map(|((path, text), upper)| {
            (
                Filter::Present(path),
                format!("{text} {}", cased("pr", upper)),
            )
        }),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone(), any::<bool>(), any::<bool>()).prop_map(
                |((a, at), (b, bt), or, upper)| {
                    let word = cased(if or { "or" } else { "and" }, upper);
                    let text = format!("({at}) {word} ({bt})");
                    let tree = if or {
                        Filter::Or(Box::new(a), Box::new(b))
                    } else {
                        Filter::And(Box::new(a), Box::new(b))
                    };
                    (tree, text)
                }
            ),
            (inner.clone(), any::<bool>()).prop_map(|((a, at), upper)| {
                (
                    Filter::Not(Box::new(a)),
                    format!("{} ({at})", cased("not", upper)),
                )
            }),
            (attribute(), inner).prop_map(|((path, text), (a, at))| {
                (Filter::Any(path, Box::new(a)), format!("{text}[{at}]"))
            }),
        ]
    })
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(512))]

    /// Any text, SCIM's pieces in any order, and words about as long as a schema prefix with
    /// non-ASCII characters are parsed or refused with INVALID_PARAMETER_VALUE.
    #[test]
    fn scim_filters_never_panic_on_arbitrary_text(
        text in any::<String>(),
        soup in soup(),
        word in prefix_length_word(),
    ) {
        parse_answers(&text)?;
        parse_answers(&soup)?;
        parse_answers(&format!("{word} pr"))?;
        parse_answers(&format!("{word} eq \"x\""))?;
        parse_answers(&format!("emails[{word} pr]"))?;
    }

    /// A filter written from a generated tree parses back to exactly that tree.
    #[test]
    fn generated_scim_filters_parse_back_to_their_tree((tree, text) in tree()) {
        prop_assume!(text.len() <= MAX_FILTER_LEN);
        prop_assert_eq!(filter::parse(&text).map_err(|e| e.message), Ok(tree), "{}", text);
    }

    /// Nesting up to the limit parses; past it, parentheses, `not` and value paths are
    /// refused with a reason.
    #[test]
    fn scim_nesting_is_bounded(depth in 1..200usize, how in 0..3u8) {
        let text = match how {
            0 => format!("{}userName pr{}", "(".repeat(depth), ")".repeat(depth)),
            1 => format!("{}userName pr{}", "not (".repeat(depth), ")".repeat(depth)),
            _ => format!("{}value pr{}", "emails[".repeat(depth), "]".repeat(depth)),
        };
        match filter::parse(&text) {
            Ok(_) => prop_assert!(depth <= 32, "{} levels accepted", depth),
            Err(err) => {
                refused_cleanly(&err, &text)?;
                prop_assert!(depth > 32, "{} levels refused: {}", depth, err.message);
            }
        }
    }

    /// Any PATCH request (operations of any op, path and value) is applied or refused with
    /// INVALID_PARAMETER_VALUE.
    #[test]
    fn scim_patches_are_applied_or_refused_cleanly(
        operations in prop::collection::vec(
            (
                prop::option::of(select(vec!["add", "replace", "remove", "REPLACE", "move", ""])),
                prop::option::of(prop_oneof![
                    select(vec![
                        "displayName", "name.givenName", "members", "members[value eq \"1\"]",
                        "emails[type eq \"work\"].value", "emails[type eq \"work\"]x", "emails[",
                        "]", "a[b]]", "members[value eq \"1\"].display", "groups[]", "x.y.z",
                    ])
                    .prop_map(str::to_string),
                    soup(),
                    any::<String>(),
                ]),
                prop::option::of(prop_oneof![
                    Just(json!([{"value": "9"}])),
                    Just(json!({"displayName": "b", "name": {"givenName": "c"}})),
                    any::<String>().prop_map(Value::from),
                    any::<i64>().prop_map(Value::from),
                    Just(Value::Null),
                ]),
            ),
            0..4,
        ),
        schemas in prop_oneof![Just(json!([PATCH_SCHEMA])), Just(json!(["x"])), Just(Value::Null)],
    ) {
        let operations: Vec<Value> = operations
            .into_iter()
            .map(|(op, path, value)| {
                let mut operation = json!({});
                if let Some(op) = op {
                    operation["op"] = json!(op);
                }
                if let Some(path) = path {
                    operation["path"] = json!(path);
                }
                if let Some(value) = value {
                    operation["value"] = value;
                }
                operation
            })
            .collect();
        let mut request = json!({"Operations": operations});
        if !schemas.is_null() {
            request["schemas"] = schemas;
        }
        if let Err(err) = patch::apply(&resource(), &request) {
            refused_cleanly(&err, &request)?;
        }
    }
}

// A regression the properties above found, kept by its smallest input.

/// An attribute as long as the User schema's URN prefix whose last byte falls inside a
/// two-byte character.
#[test]
fn an_attribute_with_a_character_across_the_schema_prefix_length_is_refused() {
    let word = format!("{}é", "a".repeat(42));
    let err = filter::parse(&format!("{word} pr")).expect_err("not an attribute name");
    assert_eq!(err.code, ErrorCode::InvalidParameterValue);
}
