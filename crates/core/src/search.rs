// PLACEHOLDER written so other crates compile; helper-1 replaces this whole file.
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
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SearchError(pub String);
pub fn parse_run_filter(_f: &str) -> Result<Vec<Comparison>, SearchError> {
    Ok(vec![])
}
pub fn parse_run_order_by(_c: &str) -> Result<OrderBy, SearchError> {
    Err(SearchError("x".into()))
}
pub fn parse_experiment_filter(_f: &str) -> Result<Vec<Comparison>, SearchError> {
    Ok(vec![])
}
pub fn parse_experiment_order_by(_c: &str) -> Result<OrderBy, SearchError> {
    Err(SearchError("x".into()))
}
pub fn parse_logged_model_filter(_f: &str) -> Result<Vec<Comparison>, SearchError> {
    Ok(vec![])
}
pub fn encode_page_token(offset: u64) -> String {
    offset.to_string()
}
pub fn decode_page_token(t: &str) -> Result<u64, SearchError> {
    t.parse().map_err(|_| SearchError("bad".into()))
}
