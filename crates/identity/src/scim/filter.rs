//! SCIM filters (RFC 7644 §3.4.2.2): `userName eq "a@b.c"`, `displayName co "ops" and
//! active eq true`, `emails[type eq "work" and value ew "@b.c"]`, `not (members pr)`. Parsed
//! into a tree and evaluated over a resource as JSON. Attribute names are case-insensitive; so
//! are string comparisons, except on `id` and `externalId` (case-exact in the RFC's schemas).

use serde_json::Value;
use tarn_core::{Error, Result};

/// Longest filter accepted.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and value paths accepted.
const MAX_DEPTH: usize = 32;

const CORE_SCHEMA_PREFIXES: [&str; 3] = [
    "urn:ietf:params:scim:schemas:core:2.0:User:",
    "urn:ietf:params:scim:schemas:core:2.0:Group:",
    "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal:",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`.
    Compare {
        path: Vec<String>,
        op: Op,
        value: Value,
    },
    /// `attr pr`.
    Present(Vec<String>),
    /// `attr[filter]`: some value of the multi-valued attribute matches.
    Any(Vec<String>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

fn invalid(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid SCIM filter: {message}"))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
}

fn tokens(text: &str) -> Result<Vec<Token>> {
    let mut found = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                found.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenBracket,
                    _ => Token::CloseBracket,
                });
            }
            '"' => {
                // A JSON string: its escapes are JSON's.
                chars.next();
                let mut escaped = false;
                let mut end = None;
                for (i, c) in chars.by_ref() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| invalid(format!("unclosed string at {at}")))?;
                let literal = &text[at..=end];
                let value: String = serde_json::from_str(literal)
                    .map_err(|_| invalid(format!("bad string {literal}")))?;
                found.push(Token::Text(value));
            }
            _ => {
                let mut end = text.len();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') {
                        end = i;
                        break;
                    }
                    chars.next();
                }
                found.push(Token::Word(text[at..end].to_string()));
            }
        }
    }
    Ok(found)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// Parses a filter; a clear error names what is wrong.
pub fn parse(text: &str) -> Result<Filter> {
    if text.len() > MAX_FILTER_LEN {
        return Err(invalid(format!("longer than {MAX_FILTER_LEN} characters")));
    }
    let mut parser = Parser {
        tokens: tokens(text)?,
        at: 0,
        depth: 0,
    };
    if parser.tokens.is_empty() {
        return Err(invalid("empty"));
    }
    let filter = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(filter),
        Some(extra) => Err(invalid(format!("unexpected {extra:?}"))),
    }
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn grouped(&mut self) -> Result<Filter> {
        self.deeper()?;
        let inner = self.or()?;
        self.depth -= 1;
        match self.next() {
            Some(Token::Close) => Ok(inner),
            _ => Err(invalid("missing ')'")),
        }
    }

    fn unary(&mut self) -> Result<Filter> {
        if self.peek_word("not") {
            self.at += 1;
            return match self.next() {
                Some(Token::Open) => Ok(Filter::Not(Box::new(self.grouped()?))),
                _ => Err(invalid("'not' needs a filter in parentheses")),
            };
        }
        match self.next() {
            Some(Token::Open) => self.grouped(),
            Some(Token::Word(word)) => self.attribute(&word),
            Some(other) => Err(invalid(format!("expected an attribute, found {other:?}"))),
            None => Err(invalid("ends where an attribute was expected")),
        }
    }

    fn attribute(&mut self, word: &str) -> Result<Filter> {
        let path = attribute_path(word)?;
        if self.tokens.get(self.at) == Some(&Token::OpenBracket) {
            self.at += 1;
            self.deeper()?;
            let inner = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Token::CloseBracket) {
                return Err(invalid("missing ']'"));
            }
            return Ok(Filter::Any(path, Box::new(inner)));
        }
        let op = match self.next() {
            Some(Token::Word(op)) => op.to_ascii_lowercase(),
            _ => return Err(invalid(format!("'{word}' needs an operator"))),
        };
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(invalid(format!("unknown operator '{other}'"))),
        };
        let value = match self.next() {
            Some(Token::Text(text)) => Value::String(text),
            Some(Token::Word(word)) => match word.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&word)
                    .map(Value::Number)
                    .map_err(|_| invalid(format!("bad value '{word}'")))?,
            },
            _ => return Err(invalid(format!("'{word}' needs a value"))),
        };
        if matches!(op, Op::Co | Op::Sw | Op::Ew) && !value.is_string() {
            return Err(invalid("co, sw and ew compare strings"));
        }
        Ok(Filter::Compare { path, op, value })
    }
}

/// `name.givenName` as `["name", "givenName"]`, without a core schema's URN.
pub fn attribute_path(word: &str) -> Result<Vec<String>> {
    let mut bare = word;
    for prefix in CORE_SCHEMA_PREFIXES {
        // Checked, not sliced: the prefix's length may fall inside a multi-byte character.
        if let Some((head, rest)) = bare.split_at_checked(prefix.len())
            && !rest.is_empty()
            && head.eq_ignore_ascii_case(prefix)
        {
            bare = rest;
        }
    }
    let path: Vec<String> = bare.split('.').map(str::to_string).collect();
    let plain = |part: &String| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
    };
    if path.len() > 2 || !path.iter().all(plain) {
        return Err(invalid(format!("bad attribute '{word}'")));
    }
    Ok(path)
}

/// The member `key` of an object, named case-insensitively.
pub fn member<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The values at `path` in `resource`, a multi-valued attribute giving each of its values.
fn values<'a>(resource: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let mut current = vec![resource];
    for key in path {
        let mut next = Vec::new();
        for value in current {
            match value {
                Value::Array(items) => {
                    next.extend(items.iter().filter_map(|item| member(item, key)));
                }
                other => next.extend(member(other, key)),
            }
        }
        current = next;
    }
    current
        .into_iter()
        .flat_map(|value| match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        })
        .collect()
}

fn case_exact(path: &[String]) -> bool {
    path.len() == 1 && (path[0].eq_ignore_ascii_case("id") || path[0] == "externalId")
}

fn compare(found: &Value, op: Op, wanted: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let fold = |s: &str| {
        if exact {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let ordering = match (found, wanted) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = (fold(a), fold(b));
            match op {
                Op::Co => return a.contains(&b),
                Op::Sw => return a.starts_with(&b),
                Op::Ew => return a.ends_with(&b),
                _ => a.cmp(&b),
            }
        }
        (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            _ => return false,
        },
        (Value::Bool(a), Value::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => a.cmp(b),
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => true,
    }
}

impl Filter {
    /// Whether `resource` matches.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Self::Compare { path, op, value } => {
                let found = values(resource, path);
                let exact = case_exact(path);
                if value.is_null() {
                    // `eq null`: absent; `ne null`: present.
                    let any = found.iter().any(|v| present(v));
                    return match op {
                        Op::Eq => !any,
                        Op::Ne => any,
                        _ => false,
                    };
                }
                if *op == Op::Ne {
                    return !found.iter().any(|f| compare(f, Op::Eq, value, exact));
                }
                found.iter().any(|f| compare(f, *op, value, exact))
            }
            Self::Present(path) => values(resource, path).into_iter().any(present),
            Self::Any(path, inner) => {
                let mut container = vec![resource];
                for key in path {
                    container = container
                        .into_iter()
                        .filter_map(|value| member(value, key))
                        .collect();
                }
                container.into_iter().any(|value| match value {
                    Value::Array(items) => items.iter().any(|item| inner.matches(item)),
                    other => inner.matches(other),
                })
            }
            Self::And(a, b) => a.matches(resource) && b.matches(resource),
            Self::Or(a, b) => a.matches(resource) || b.matches(resource),
            Self::Not(inner) => !inner.matches(resource),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alice() -> Value {
        json!({
            "id": "12",
            "userName": "Alice@Example.com",
            "displayName": "Alice Liddell",
            "active": true,
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "al@home.example", "type": "home"}
            ],
            "groups": [{"value": "3", "display": "data-science"}],
        })
    }

    fn holds(filter: &str) -> bool {
        parse(filter)
            .unwrap_or_else(|e| panic!("{filter}: {e:?}"))
            .matches(&alice())
    }

    #[test]
    fn the_rfc_forms_match_as_written() {
        assert!(holds(r#"userName eq "alice@example.com""#));
        assert!(holds(r#"USERNAME Eq "ALICE@example.COM""#));
        assert!(holds(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "alice""#
        ));
        assert!(!holds(r#"id eq "12 ""#));
        assert!(!holds(r#"id eq "012""#));
        assert!(holds(r#"displayName co "lid" and active eq true"#));
        assert!(holds(
            r#"displayName co "nobody" or name.familyName ew "dell""#
        ));
        assert!(holds(
            r#"emails[type eq "work" and value ew "@example.com"]"#
        ));
        assert!(!holds(
            r#"emails[type eq "home" and value ew "@example.com"]"#
        ));
        assert!(holds(r#"emails.value eq "al@home.example""#));
        assert!(holds(r#"groups.display eq "data-science""#));
        assert!(holds("name pr and not (externalId pr)"));
        assert!(holds("externalId eq null"));
        assert!(holds(r#"userName gt "a" and userName lt "b""#));
        assert!(holds(r#"userName ne "bob@example.com""#));
        assert!(!holds(r#"emails.type ne "home""#));
        // `and` binds tighter than `or`.
        assert!(holds(r#"active eq false and id eq "1" or id eq "12""#));
        assert!(!holds(r#"active eq false and (id eq "1" or id eq "12")"#));
        assert!(holds(r#"displayName eq "Alice \"Liddell\"" or id eq "12""#));
    }

    #[test]
    fn malformed_filters_are_refused_clearly() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName eq "open"#,
            r#"userName like "a""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"emails[type eq "work""#,
            r#"userName co 3"#,
            r#"not userName eq "a""#,
            r#"a.b.c eq "x""#,
            r#"user;Name eq "x""#,
            r#"userName eq "a" )"#,
            "userName eq bare",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.message.starts_with("Invalid SCIM filter"),
                "{bad}: {err:?}"
            );
        }
        let deep = format!("{}id pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&deep).is_err());
        assert!(parse(&"a".repeat(MAX_FILTER_LEN + 1)).is_err());
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking() {
        // A cheap fuzz: every prefix and every splice of the filters above.
        let pieces = [
            "userName", " eq ", "\"x\"", " and ", " or ", "not ", "(", ")", "[", "]", "pr", "\\",
            "\"", ".", "emails", " co ", "true", "1e999", "\u{0}", "é",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(1);
            if let Ok(filter) = parse(&text) {
                let _ = filter.matches(&alice());
            }
        }
    }
}
