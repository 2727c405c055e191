//! MLflow's search grammar (`mlflow/utils/search_utils.py`): a conjunction of comparisons joined by
//! AND, over prefixed identifiers (`metrics.acc`, `params.model`, `tags.\`mlflow.runName\``,
//! `attributes.status`, `datasets.name`), with per-entity comparators. The parser produces an AST
//! whose values stay values: the store binds them, never splices them into SQL.

use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Comparator {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Like => "LIKE",
            Self::ILike => "ILIKE",
            Self::In => "IN",
            Self::NotIn => "NOT IN",
            Self::IsNull => "IS NULL",
            Self::IsNotNull => "IS NOT NULL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Str(String),
    List(Vec<String>),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub entity: Entity,
    pub key: String,
    pub comparator: Comparator,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub entity: Entity,
    pub key: String,
    pub ascending: bool,
}

/// A filter or order-by the grammar refuses; surfaces as INVALID_PARAMETER_VALUE.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);

fn error<T>(message: impl Into<String>) -> Result<T, SearchError> {
    Err(SearchError(message.into()))
}

/// Filters longer than this are refused outright.
const MAX_FILTER_LENGTH: usize = 100_000;
/// The most comparisons one filter may AND together. Each becomes a subquery of its own, and
/// PostgreSQL's planner time grows steeply with their number (about 100 took 30 s of CPU).
pub const MAX_FILTER_CLAUSES: usize = 50;

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq)]
struct Segment {
    text: String,
    quoted: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Dot-separated segments, each bare or quoted with backquotes or double quotes.
    Identifier(Vec<Segment>),
    Str(String),
    Number(f64),
    Operator(Comparator),
    LeftParen,
    RightParen,
    Comma,
}

fn quoted(chars: &[char], start: usize, quote: char) -> Result<(String, usize), SearchError> {
    let mut text = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            // SQL escapes a quote by doubling it.
            if quote == '\'' && chars.get(i + 1) == Some(&'\'') {
                text.push('\'');
                i += 2;
                continue;
            }
            return Ok((text, i + 1));
        }
        text.push(chars[i]);
        i += 1;
    }
    error(format!(
        "Invalid filter: unterminated quote {quote} starting at position {start}"
    ))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn tokenize(input: &str) -> Result<Vec<Token>, SearchError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '\'' => {
                let (text, next) = quoted(&chars, i, '\'')?;
                tokens.push(Token::Str(text));
                i = next;
            }
            '(' => {
                tokens.push(Token::LeftParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RightParen);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '=' => {
                tokens.push(Token::Operator(Comparator::Eq));
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Operator(Comparator::Ne));
                i += 2;
            }
            '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('<', Some('=')) => (Comparator::Le, 2),
                    ('<', Some('>')) => (Comparator::Ne, 2),
                    ('>', Some('=')) => (Comparator::Ge, 2),
                    ('<', _) => (Comparator::Lt, 1),
                    _ => (Comparator::Gt, 1),
                };
                tokens.push(Token::Operator(op));
                i += width;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || chars[i] == '.'
                        || ((chars[i] == 'e' || chars[i] == 'E') && i + 1 < chars.len())
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let number = text
                    .parse::<f64>()
                    .map_err(|_| SearchError(format!("Invalid number '{text}' in filter")))?;
                tokens.push(Token::Number(number));
            }
            c if is_word_char(c) || c == '`' || c == '"' => {
                let mut segments = Vec::new();
                loop {
                    match chars.get(i) {
                        Some(&q) if q == '`' || q == '"' => {
                            let (text, next) = quoted(&chars, i, q)?;
                            segments.push(Segment { text, quoted: true });
                            i = next;
                        }
                        Some(&w) if is_word_char(w) => {
                            let start = i;
                            while i < chars.len() && is_word_char(chars[i]) {
                                i += 1;
                            }
                            segments.push(Segment {
                                text: chars[start..i].iter().collect(),
                                quoted: false,
                            });
                        }
                        _ => {
                            return error(format!(
                                "Invalid filter: unexpected character at position {i}"
                            ));
                        }
                    }
                    if chars.get(i) == Some(&'.') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Identifier(segments));
            }
            other => {
                return error(format!(
                    "Invalid character '{}' in filter",
                    other.escape_default()
                ));
            }
        }
    }
    Ok(tokens)
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Identifier(segments))
        if segments.len() == 1 && !segments[0].quoted && segments[0].text.eq_ignore_ascii_case(word))
}

// ---------------------------------------------------------------------------------------------
// What each search accepts

struct Grammar {
    what: &'static str,
    entities: &'static [Entity],
    attributes: &'static [&'static str],
    numeric_attributes: &'static [&'static str],
    list_attributes: &'static [&'static str],
    param_comparators: &'static [Comparator],
    tag_comparators: &'static [Comparator],
    order_attributes: &'static [&'static str],
}

use Comparator::*;

const NUMERIC: &[Comparator] = &[Gt, Ge, Eq, Ne, Lt, Le];
const STRING_WITH_NULL: &[Comparator] = &[Ne, Eq, Like, ILike, IsNull, IsNotNull];
const STRING: &[Comparator] = &[Ne, Eq, Like, ILike];
const STRING_WITH_IN: &[Comparator] = &[Ne, Eq, Like, ILike, In, NotIn];

const RUNS: Grammar = Grammar {
    what: "runs",
    entities: &[
        Entity::Metric,
        Entity::Param,
        Entity::Tag,
        Entity::Attribute,
        Entity::Dataset,
    ],
    attributes: &[
        "run_id",
        "run_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
    ],
    numeric_attributes: &["start_time", "end_time"],
    list_attributes: &["run_id", "run_name", "user_id", "status", "artifact_uri"],
    param_comparators: STRING_WITH_NULL,
    tag_comparators: STRING_WITH_NULL,
    order_attributes: &[
        "run_id",
        "run_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
    ],
};

const EXPERIMENTS: Grammar = Grammar {
    what: "experiments",
    entities: &[Entity::Attribute, Entity::Tag],
    attributes: &["name", "experiment_id", "creation_time", "last_update_time"],
    numeric_attributes: &["creation_time", "last_update_time"],
    list_attributes: &["experiment_id"],
    param_comparators: &[],
    tag_comparators: STRING_WITH_NULL,
    order_attributes: &["name", "experiment_id", "creation_time", "last_update_time"],
};

const REGISTERED_MODELS: Grammar = Grammar {
    what: "registered models",
    entities: &[Entity::Attribute, Entity::Tag],
    attributes: &["name"],
    numeric_attributes: &[],
    list_attributes: &["name"],
    param_comparators: &[],
    tag_comparators: STRING,
    order_attributes: &["name", "creation_timestamp", "last_updated_timestamp"],
};

const MODEL_VERSIONS: Grammar = Grammar {
    what: "model versions",
    entities: &[Entity::Attribute, Entity::Tag],
    attributes: &["name", "version_number", "run_id", "source_path"],
    numeric_attributes: &["version_number"],
    list_attributes: &["name", "run_id"],
    param_comparators: &[],
    tag_comparators: STRING,
    order_attributes: &[
        "name",
        "version_number",
        "creation_timestamp",
        "last_updated_timestamp",
    ],
};

const LOGGED_MODELS: Grammar = Grammar {
    what: "logged models",
    entities: &[
        Entity::Attribute,
        Entity::Tag,
        Entity::Param,
        Entity::Metric,
    ],
    attributes: &[
        "name",
        "model_id",
        "model_type",
        "status",
        "source_run_id",
        "creation_timestamp",
        "creation_time",
        "last_updated_timestamp",
        "last_updated_time",
    ],
    numeric_attributes: &[
        "creation_timestamp",
        "creation_time",
        "last_updated_timestamp",
        "last_updated_time",
    ],
    list_attributes: &["status", "name"],
    param_comparators: STRING,
    tag_comparators: STRING,
    order_attributes: &[
        "name",
        "model_id",
        "model_type",
        "status",
        "source_run_id",
        "creation_timestamp",
        "creation_time",
        "last_updated_timestamp",
        "last_updated_time",
    ],
};

fn entity_of(prefix: &str) -> Option<Entity> {
    match prefix {
        "metric" | "metrics" => Some(Entity::Metric),
        "param" | "params" | "parameter" | "parameters" => Some(Entity::Param),
        "tag" | "tags" => Some(Entity::Tag),
        "attribute" | "attributes" | "attr" | "run" => Some(Entity::Attribute),
        "dataset" | "datasets" => Some(Entity::Dataset),
        _ => None,
    }
}

/// MLflow's aliases for run attributes.
fn canonical_attribute(key: &str) -> &str {
    match key {
        "created" | "Created" => "start_time",
        "run name" | "Run name" | "Run Name" => "run_name",
        "timestamp" => "creation_timestamp",
        "last_updated_time" => "last_updated_timestamp",
        other => other,
    }
}

impl Grammar {
    /// `entity.key` (the first bare segment names the entity) or a bare attribute.
    fn identifier(&self, segments: &[Segment]) -> Result<(Entity, String), SearchError> {
        let (entity, key_segments) = match segments {
            [single] => (Entity::Attribute, std::slice::from_ref(single)),
            [first, rest @ ..] if !first.quoted => match entity_of(&first.text) {
                Some(entity) => (entity, rest),
                None => {
                    return error(format!(
                        "Invalid entity type '{}'. Valid values are {}",
                        first.text,
                        self.entity_names()
                    ));
                }
            },
            _ => {
                return error(
                    "Invalid identifier: a quoted name must follow an entity prefix such as 'tags.'",
                );
            }
        };
        if !self.entities.contains(&entity) {
            return error(format!(
                "Invalid entity type for {}: valid values are {}",
                self.what,
                self.entity_names()
            ));
        }
        let key = key_segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if key.is_empty() {
            return error("Invalid identifier: the key is empty");
        }
        match entity {
            Entity::Attribute => {
                let canonical = canonical_attribute(&key);
                let canonical = if self.attributes.contains(&canonical) {
                    canonical
                } else {
                    key.as_str()
                };
                if !self.attributes.contains(&canonical) {
                    return error(format!(
                        "Invalid attribute key '{key}' specified. Valid keys are '{}'",
                        self.attributes.join("', '")
                    ));
                }
                Ok((entity, canonical.to_string()))
            }
            Entity::Dataset if !["name", "digest", "context"].contains(&key.as_str()) => {
                error(format!(
                    "Invalid dataset key '{key}' specified. Valid keys are 'name', 'digest', 'context'"
                ))
            }
            _ => Ok((entity, key)),
        }
    }

    fn entity_names(&self) -> String {
        self.entities
            .iter()
            .map(|e| match e {
                Entity::Metric => "'metrics'",
                Entity::Param => "'params'",
                Entity::Tag => "'tags'",
                Entity::Attribute => "'attributes'",
                Entity::Dataset => "'datasets'",
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn comparators(&self, entity: Entity, key: &str) -> &'static [Comparator] {
        match entity {
            Entity::Metric => NUMERIC,
            Entity::Param => self.param_comparators,
            Entity::Tag => self.tag_comparators,
            Entity::Dataset => STRING_WITH_IN,
            Entity::Attribute if self.numeric_attributes.contains(&key) => NUMERIC,
            Entity::Attribute if self.list_attributes.contains(&key) => STRING_WITH_IN,
            Entity::Attribute => STRING,
        }
    }

    fn is_numeric(&self, entity: Entity, key: &str) -> bool {
        entity == Entity::Metric
            || (entity == Entity::Attribute && self.numeric_attributes.contains(&key))
    }

    fn parse_filter(&self, filter: &str) -> Result<Vec<Comparison>, SearchError> {
        if filter.len() > MAX_FILTER_LENGTH {
            return error(format!(
                "Filter is too long: the limit is {MAX_FILTER_LENGTH} characters"
            ));
        }
        if filter.contains('\0') {
            return error("Filter must not contain NUL characters");
        }
        let tokens = tokenize(filter)?;
        let mut comparisons = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let (comparison, next) = self.comparison(&tokens, i)?;
            comparisons.push(comparison);
            if comparisons.len() > MAX_FILTER_CLAUSES {
                return error(format!(
                    "Filter has too many clauses: at most {MAX_FILTER_CLAUSES} comparisons may be \
                     joined with AND"
                ));
            }
            i = next;
            if i < tokens.len() {
                if keyword(tokens.get(i), "and") {
                    i += 1;
                    if i == tokens.len() {
                        return error("Invalid filter: AND must be followed by a comparison");
                    }
                } else if keyword(tokens.get(i), "or") {
                    return error(
                        "Invalid clause(s) in filter string: 'OR'. Only AND is supported",
                    );
                } else {
                    return error(format!(
                        "Invalid filter: expected AND after comparison {}",
                        comparisons.len()
                    ));
                }
            }
        }
        Ok(comparisons)
    }

    fn comparison(
        &self,
        tokens: &[Token],
        start: usize,
    ) -> Result<(Comparison, usize), SearchError> {
        let segments = match tokens.get(start) {
            Some(Token::Identifier(segments)) if !keyword(tokens.get(start), "and") => segments,
            Some(Token::LeftParen) | Some(Token::RightParen) => {
                return error("Invalid filter: parentheses are only allowed around IN lists");
            }
            _ => return error("Invalid filter: expected an identifier such as metrics.acc"),
        };
        let (entity, key) = self.identifier(segments)?;
        let mut i = start + 1;
        let comparator = match tokens.get(i) {
            Some(Token::Operator(op)) => {
                i += 1;
                *op
            }
            t if keyword(t, "like") => {
                i += 1;
                Like
            }
            t if keyword(t, "ilike") => {
                i += 1;
                ILike
            }
            t if keyword(t, "in") => {
                i += 1;
                In
            }
            t if keyword(t, "not") && keyword(tokens.get(i + 1), "in") => {
                i += 2;
                NotIn
            }
            t if keyword(t, "is") => {
                if keyword(tokens.get(i + 1), "null") {
                    i += 2;
                    IsNull
                } else if keyword(tokens.get(i + 1), "not") && keyword(tokens.get(i + 2), "null") {
                    i += 3;
                    IsNotNull
                } else {
                    return error("Invalid filter: IS must be followed by NULL or NOT NULL");
                }
            }
            _ => {
                return error(format!(
                    "Invalid filter: expected a comparator after '{key}'"
                ));
            }
        };
        let allowed = self.comparators(entity, &key);
        if !allowed.contains(&comparator) {
            if matches!(comparator, In | NotIn) && entity == Entity::Attribute {
                return error(format!(
                    "Only {:?} attributes support comparison with a list of quoted string values.",
                    self.list_attributes
                ));
            }
            return error(format!(
                "Invalid comparator '{}' not one of '{}'",
                comparator.as_str(),
                allowed
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join("', '")
            ));
        }
        let value = match comparator {
            IsNull | IsNotNull => Value::Null,
            In | NotIn => {
                let (items, next) = list(tokens, i)?;
                i = next;
                Value::List(items)
            }
            _ => {
                let value = match tokens.get(i) {
                    Some(Token::Number(n)) if self.is_numeric(entity, &key) => Value::Number(*n),
                    Some(Token::Str(text)) if !self.is_numeric(entity, &key) => {
                        Value::Str(text.clone())
                    }
                    // A double-quoted value reads as a string, as MLflow allows.
                    Some(Token::Identifier(segments))
                        if !self.is_numeric(entity, &key)
                            && segments.len() == 1
                            && segments[0].quoted =>
                    {
                        Value::Str(segments[0].text.clone())
                    }
                    // Experiment and run ids may be compared as quoted strings or numbers.
                    Some(Token::Number(n))
                        if entity == Entity::Attribute && key == "experiment_id" =>
                    {
                        Value::Str(format_number(*n))
                    }
                    Some(Token::Str(text)) if self.is_numeric(entity, &key) => {
                        Value::Number(text.parse::<f64>().map_err(|_| {
                            SearchError(format!("Expected a numeric value for {key}, got '{text}'"))
                        })?)
                    }
                    _ if self.is_numeric(entity, &key) => {
                        return error(format!(
                            "Expected numeric value type for {key}. Found a non-numeric value"
                        ));
                    }
                    _ => {
                        return error(format!(
                            "Expected a quoted string value for {key} (e.g. 'my-value'). Got a different value"
                        ));
                    }
                };
                i += 1;
                value
            }
        };
        Ok((
            Comparison {
                entity,
                key,
                comparator,
                value,
            },
            i,
        ))
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// `('a', 'b', ...)`: quoted strings only.
fn list(tokens: &[Token], start: usize) -> Result<(Vec<String>, usize), SearchError> {
    if tokens.get(start) != Some(&Token::LeftParen) {
        return error("While parsing a list in the query, expected a '(' after IN");
    }
    let mut items = Vec::new();
    let mut i = start + 1;
    loop {
        match tokens.get(i) {
            Some(Token::Str(text)) => items.push(text.clone()),
            Some(Token::Identifier(segments)) if segments.len() == 1 && segments[0].quoted => {
                items.push(segments[0].text.clone())
            }
            _ => {
                return error(
                    "While parsing a list in the query, expected string value, punctuation, or whitespace",
                );
            }
        }
        i += 1;
        match tokens.get(i) {
            Some(Token::Comma) => i += 1,
            Some(Token::RightParen) => return Ok((items, i + 1)),
            _ => return error("While parsing a list in the query, expected ',' or ')'"),
        }
    }
}

fn parse_order_by(
    grammar: &Grammar,
    clause: &str,
    attributes_only: bool,
) -> Result<OrderBy, SearchError> {
    let tokens = tokenize(clause)?;
    let (segments, rest) = match tokens.split_first() {
        Some((Token::Identifier(segments), rest)) => (segments, rest),
        _ => {
            return error(format!(
                "Invalid order_by clause '{clause}'. Could not be parsed."
            ));
        }
    };
    let ascending = match rest {
        [] => true,
        [t] if keyword(Some(t), "asc") => true,
        [t] if keyword(Some(t), "desc") => false,
        _ => {
            return error(format!(
                "Invalid ordering key in order_by clause '{clause}'."
            ));
        }
    };
    let (entity, key) = match segments.as_slice() {
        [single] if !single.quoted || attributes_only => {
            let key = canonical_attribute(&single.text).to_string();
            (Entity::Attribute, key)
        }
        _ => {
            let (entity, key) = grammar.identifier(segments)?;
            // Only attributes have aliases: a metric named `created` stays `created`.
            match entity {
                Entity::Attribute => (entity, canonical_attribute(&key).to_string()),
                _ => (entity, key),
            }
        }
    };
    if entity == Entity::Attribute && !grammar.order_attributes.contains(&key.as_str()) {
        return error(format!(
            "Invalid order by key '{key}' specified. Valid keys are '{}'",
            grammar.order_attributes.join("', '")
        ));
    }
    if attributes_only && entity != Entity::Attribute {
        return error(format!(
            "Invalid order_by entity for {}: only attributes can be ordered by",
            grammar.what
        ));
    }
    if entity == Entity::Dataset {
        return error("Cannot order by dataset fields");
    }
    Ok(OrderBy {
        entity,
        key,
        ascending,
    })
}

pub fn parse_run_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    RUNS.parse_filter(filter)
}
pub fn parse_run_order_by(clause: &str) -> Result<OrderBy, SearchError> {
    parse_order_by(&RUNS, clause, false)
}
pub fn parse_experiment_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    EXPERIMENTS.parse_filter(filter)
}
pub fn parse_experiment_order_by(clause: &str) -> Result<OrderBy, SearchError> {
    parse_order_by(&EXPERIMENTS, clause, true)
}
pub fn parse_registered_model_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    REGISTERED_MODELS.parse_filter(filter)
}
pub fn parse_registered_model_order_by(clause: &str) -> Result<OrderBy, SearchError> {
    parse_order_by(&REGISTERED_MODELS, clause, true)
}
pub fn parse_model_version_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    MODEL_VERSIONS.parse_filter(filter)
}
pub fn parse_model_version_order_by(clause: &str) -> Result<OrderBy, SearchError> {
    parse_order_by(&MODEL_VERSIONS, clause, true)
}
pub fn parse_logged_model_filter(filter: &str) -> Result<Vec<Comparison>, SearchError> {
    LOGGED_MODELS.parse_filter(filter)
}

#[derive(Serialize, Deserialize)]
struct PageToken {
    offset: u64,
}

/// Opaque page tokens: base64 of JSON `{"offset": N}`, as MLflow does.
pub fn encode_page_token(offset: u64) -> String {
    let json = serde_json::to_vec(&PageToken { offset }).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// The offset a page token stands for; an empty token is the first page.
pub fn decode_page_token(token: &str) -> Result<u64, SearchError> {
    if token.is_empty() {
        return Ok(0);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(token.trim()))
        .map_err(|_| SearchError("Invalid page token, could not base64-decode".into()))?;
    serde_json::from_slice::<PageToken>(&bytes)
        .map(|t| t.offset)
        .map_err(|_| SearchError("Invalid page token, decoded value is not a page offset".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(filter: &str) -> Comparison {
        let mut parsed = parse_run_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(parsed.len(), 1, "{filter}");
        parsed.remove(0)
    }

    #[test]
    fn run_filters() {
        let parsed = parse_run_filter(
            "metrics.acc > 0.5 and params.model = 'rf' AND tags.`team` LIKE 'a%' and attributes.status = 'FINISHED'",
        )
        .expect("parse");
        assert_eq!(
            parsed,
            vec![
                Comparison {
                    entity: Entity::Metric,
                    key: "acc".into(),
                    comparator: Gt,
                    value: Value::Number(0.5)
                },
                Comparison {
                    entity: Entity::Param,
                    key: "model".into(),
                    comparator: Eq,
                    value: Value::Str("rf".into())
                },
                Comparison {
                    entity: Entity::Tag,
                    key: "team".into(),
                    comparator: Like,
                    value: Value::Str("a%".into())
                },
                Comparison {
                    entity: Entity::Attribute,
                    key: "status".into(),
                    comparator: Eq,
                    value: Value::Str("FINISHED".into())
                },
            ]
        );
        assert!(parse_run_filter("").expect("empty").is_empty());
        assert!(parse_run_filter("   ").expect("blank").is_empty());
    }

    #[test]
    fn identifiers_quotes_and_aliases() {
        assert_eq!(one("tags.`mlflow.runName` = 'x'").key, "mlflow.runName");
        assert_eq!(one("tags.\"my tag\" != 'x'").key, "my tag");
        assert_eq!(
            one("tags.mlflow.source.name = 'x'").key,
            "mlflow.source.name"
        );
        assert_eq!(one("metric.loss <= -1.5e-3").value, Value::Number(-1.5e-3));
        assert_eq!(one("parameters.p ILIKE '%X%'").comparator, ILike);
        assert_eq!(one("attr.created >= 100").key, "start_time");
        assert_eq!(one("attributes.`Run Name` = 'r'").key, "run_name");
        assert_eq!(one("run_name = 'r'").entity, Entity::Attribute);
        assert_eq!(one("params.p IS NULL").comparator, IsNull);
        assert_eq!(one("params.p is not null").comparator, IsNotNull);
        assert_eq!(one("params.p = 'it''s'").value, Value::Str("it's".into()));
        assert_eq!(
            one("attributes.run_id IN ('a', 'b')").value,
            Value::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(one("run_name not in ('a')").comparator, NotIn);
        assert_eq!(one("datasets.name = 'iris'").entity, Entity::Dataset);
    }

    #[test]
    fn refused_filters() {
        for bad in [
            "metrics.acc ~ 1",
            "metrics.acc > 'high'",
            "params.model > 'rf'",
            "params.model = 1",
            "params.model = 'rf' OR 1=1",
            "params.model = 'rf' or params.model = 'lr'",
            "(params.model = 'rf')",
            "params.model = 'rf' AND",
            "params.model = 'rf' params.x = 'y'",
            "params.model = 'rf",
            "params.model = 'rf'; DROP TABLE runs; --",
            "bogus.key = 'x'",
            "attributes.bogus = 'x'",
            "datasets.bogus = 'x'",
            "metrics.acc IN (1, 2)",
            "params.p IN ('a')",
            "attributes.start_time IN ('1')",
            "params.p IS 'x'",
            "tags.t = 'a\0'",
            "params.model = 'rf' UNION SELECT token_hash FROM tokens",
            "metrics.acc",
            "= 'x'",
        ] {
            assert!(parse_run_filter(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_run_filter(&"a".repeat(MAX_FILTER_LENGTH + 1)).is_err());
        let clauses = |n: usize| {
            (0..n)
                .map(|i| format!("metrics.m{i} > 0"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        assert_eq!(
            parse_run_filter(&clauses(MAX_FILTER_CLAUSES))
                .expect("at the limit")
                .len(),
            MAX_FILTER_CLAUSES
        );
        let err = parse_run_filter(&clauses(MAX_FILTER_CLAUSES + 1)).expect_err("over");
        assert!(err.0.contains("too many clauses"), "{}", err.0);
    }

    #[test]
    fn experiment_model_and_version_grammars() {
        let parsed = parse_experiment_filter(
            "name LIKE 'churn%' and tags.team = 'a' and experiment_id IN ('1','2')",
        )
        .expect("parse");
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parse_experiment_filter("creation_time > 5").expect("numeric")[0].value,
            Value::Number(5.0)
        );
        assert!(parse_experiment_filter("metrics.acc > 1").is_err());
        assert!(parse_experiment_filter("name IN ('a')").is_err());
        let prompt = parse_registered_model_filter("tag.`mlflow.prompt.is_prompt` != 'true'")
            .expect("prompt filter");
        assert_eq!(
            (prompt[0].key.as_str(), prompt[0].comparator),
            ("mlflow.prompt.is_prompt", Ne)
        );
        assert!(parse_registered_model_filter("tags.x IS NULL").is_err());
        assert_eq!(
            parse_model_version_filter("version_number >= 2").expect("v")[0].value,
            Value::Number(2.0)
        );
        assert!(parse_model_version_filter("run_id IN ('a', 'b')").is_ok());
        assert!(
            parse_logged_model_filter(
                "metrics.acc > 0.5 and params.alpha = '1' and status = 'READY'"
            )
            .is_ok()
        );
    }

    #[test]
    fn order_by_clauses() {
        let by = |e, k: &str, a| OrderBy {
            entity: e,
            key: k.into(),
            ascending: a,
        };
        assert_eq!(
            parse_run_order_by("metrics.acc DESC"),
            Ok(by(Entity::Metric, "acc", false))
        );
        assert_eq!(
            parse_run_order_by("attributes.start_time ASC"),
            Ok(by(Entity::Attribute, "start_time", true))
        );
        assert_eq!(
            parse_run_order_by("params.x"),
            Ok(by(Entity::Param, "x", true))
        );
        assert_eq!(
            parse_run_order_by("start_time desc"),
            Ok(by(Entity::Attribute, "start_time", false))
        );
        assert_eq!(
            parse_run_order_by("tags.`a b` desc"),
            Ok(by(Entity::Tag, "a b", false))
        );
        assert!(parse_run_order_by("metrics.acc DOWN").is_err());
        assert!(parse_run_order_by("attributes.bogus").is_err());
        assert!(parse_run_order_by("").is_err());
        assert_eq!(
            parse_experiment_order_by("name DESC"),
            Ok(by(Entity::Attribute, "name", false))
        );
        assert!(parse_experiment_order_by("tags.x").is_err());
        assert_eq!(
            parse_registered_model_order_by("timestamp DESC"),
            Ok(by(Entity::Attribute, "creation_timestamp", false))
        );
        assert!(parse_model_version_order_by("version_number DESC").is_ok());
    }

    #[test]
    fn page_tokens() {
        assert_eq!(decode_page_token(""), Ok(0));
        assert_eq!(decode_page_token(&encode_page_token(1234)), Ok(1234));
        // MLflow's own token format.
        assert_eq!(decode_page_token("eyJvZmZzZXQiOiAxMDB9"), Ok(100));
        assert!(decode_page_token("not base64!").is_err());
        assert!(decode_page_token("eyJ4IjogMX0=").is_err());
    }
}
