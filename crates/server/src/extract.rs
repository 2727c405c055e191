//! Request extractors: `Caller` (who is calling, in which workspace) and `Req<T>` (MLflow-style
//! arguments: the query string for GET, a JSON body otherwise).

use axum::body::Body;
use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request};
use axum::http::Method;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tarn_core::Error;
use tarn_core::caller::Caller;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest JSON request body accepted; MLflow caps log-batch at 1 MB, this leaves room for
/// other requests while refusing abuse.
pub const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

pub use tarn_core::caller::DEFAULT_WORKSPACE;

/// Taking a `Caller` in a handler is what makes the handler require a principal and workspace
/// membership: it is the authenticated principal and the workspace of the request.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ctx) = parts.extensions.get::<Caller>() {
            return Ok(ctx.clone());
        }
        let workspace = workspace_of(parts).await;
        let authorization = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal =
            tarn_identity::authenticate(state.store.as_ref(), &state.auth_cache, authorization)
                .await?;
        if let Some(only) = &principal.only_workspace
            && *only != workspace
        {
            return Err(Error::permission_denied(format!(
                "This token is limited to workspace '{only}'"
            ))
            .into());
        }
        if !state.auth_cache.is_member(&workspace, principal.id) {
            if !state.store.workspace_exists(&workspace).await? {
                return Err(
                    Error::not_found(format!("Workspace '{workspace}' does not exist")).into(),
                );
            }
            if !principal.is_admin
                && !state
                    .store
                    .is_workspace_member(&workspace, &principal.grantee_ids())
                    .await?
            {
                return Err(Error::permission_denied(format!(
                    "'{}' is not a member of workspace '{workspace}'",
                    principal.name
                ))
                .into());
            }
            state.auth_cache.remember_member(&workspace, principal.id);
        }
        let ctx = Caller {
            workspace,
            principal,
        };
        parts.extensions.insert(ctx.clone());
        Ok(ctx)
    }
}

/// A caller who must be an admin, refused before the request's arguments are read (a member
/// learns nothing from what an admin-only route would say of them).
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        tarn_identity::require_admin(&caller.principal)?;
        Ok(Self(caller))
    }
}

/// `/ws/{workspace}/...` names the workspace; otherwise the MLflow 3 `X-MLFLOW-WORKSPACE` header
/// does; otherwise it is `dev`.
async fn workspace_of(parts: &mut Parts) -> String {
    if let Ok(params) = RawPathParams::from_request_parts(parts, &()).await
        && let Some((_, name)) = params.iter().find(|(key, _)| *key == "workspace")
    {
        return name.to_string();
    }
    parts
        .headers
        .get("x-mlflow-workspace")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && *v != "default")
        .unwrap_or(DEFAULT_WORKSPACE)
        .to_string()
}

/// Named path parameters, the same with or without the `/ws/{workspace}` prefix (which a
/// positional `Path<T>` would count as one more parameter).
pub struct PathArgs(HashMap<String, String>);

impl PathArgs {
    pub fn get(&self, name: &str) -> Result<&str, Error> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::invalid(format!("Missing path parameter '{name}'")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathArgs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("Invalid path: {e}")))?;
        Ok(Self(params))
    }
}

/// MLflow request arguments as `T`.
pub struct Req<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Req<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request<Body>,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = if request.method() == Method::GET {
            query_to_json(request.uri().query().unwrap_or(""))
        } else {
            let bytes = axum::body::to_bytes(request.into_body(), MAX_JSON_BODY)
                .await
                .map_err(|_| {
                    Error::invalid(format!(
                        "Request body is too large: the limit is {MAX_JSON_BODY} bytes"
                    ))
                })?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Object(Map::new())
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::new(
                        tarn_core::ErrorCode::BadRequest,
                        format!("Malformed JSON body: {e}"),
                    )
                })?
            }
        };
        typed(value).map(Req).map_err(ApiError::from)
    }
}

/// Arguments in the query string of a request whose body is data (Arrow, Parquet).
pub struct QueryArgs<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        query_args(parts.uri.query().unwrap_or(""))
            .map(QueryArgs)
            .map_err(ApiError::from)
    }
}

/// Arguments in a query string as `T`, for handlers that read the body themselves.
pub fn query_args<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    typed(query_to_json(query))
}

/// Request arguments as `T`, with MLflow's message naming the offending parameter.
fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    if contains_nul(&value) {
        return Err(Error::invalid(
            "Request values must not contain NUL characters",
        ));
    }
    if !value.is_object() {
        return Err(Error::new(
            tarn_core::ErrorCode::BadRequest,
            "The request body must be a JSON object",
        ));
    }
    let offending = |path: &str| -> String {
        path.replace('[', ".")
            .replace(']', "")
            .split('.')
            .try_fold(&value, |v, part| {
                v.get(part)
                    .or_else(|| part.parse::<usize>().ok().and_then(|i| v.get(i)))
            })
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        Error::invalid(format!(
            "Invalid value {} for parameter '{path}' supplied: {}",
            offending(&path),
            e.inner()
        ))
    })
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\0') || contains_nul(item)),
        _ => false,
    }
}

/// Query strings become JSON objects; a repeated key becomes an array. Values stay strings:
/// numeric fields accept strings through `de::lenient_*`.
fn query_to_json(query: &str) -> Value {
    let mut map = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match map.get_mut(key.as_ref()) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                map.insert(key.into_owned(), value);
            }
        }
    }
    Value::Object(map)
}

/// Serde helpers for MLflow's loosely typed wire values.
pub mod de {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn number(value: &Value) -> Option<f64> {
        match value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.as_str() {
                "NaN" | "nan" => Some(f64::NAN),
                "Infinity" | "inf" => Some(f64::INFINITY),
                "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
                other => other.parse().ok(),
            },
            _ => None,
        }
    }

    /// The largest integer every smaller one of which a double holds exactly (2^53).
    const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

    /// An int64 sent as a JSON number or a string (proto3 JSON and query strings do both).
    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
            // Not an i64: a float, or an integer beyond int64 that JSON parsing rounded to
            // one. Only integral floats a double holds exactly are taken; anything larger is
            // refused rather than clamped or rounded to a neighbouring value.
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER)
                .map(|f| Some(f as i64))
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "invalid value {n}: expected a 64-bit integer"
                    ))
                }),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("invalid value '{s}': expected a 64-bit integer"))
            }),
            Some(other) => Err(serde::de::Error::custom(format!(
                "invalid value {other}: expected a 64-bit integer"
            ))),
        }
    }

    /// A double that may be NaN or infinite, sent as a number or a string.
    pub fn f64_value<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let value = Value::deserialize(d)?;
        number(&value).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid value {value}: expected a double (64-bit floating point)"
            ))
        })
    }

    /// A bool sent as JSON or as the strings "true"/"false".
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(serde::de::Error::custom(format!(
                "invalid value {other}: expected a boolean"
            ))),
        }
    }

    /// A list that a query string may carry as a single value.
    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s]),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    Value::Number(n) => Ok(n.to_string()),
                    other => Err(serde::de::Error::custom(format!(
                        "invalid list item {other}: expected a string"
                    ))),
                })
                .collect(),
            Some(other) => Err(serde::de::Error::custom(format!(
                "invalid value {other}: expected a list of strings"
            ))),
        }
    }

    /// A string id that some clients send as a number.
    pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(serde::de::Error::custom(format!(
                "invalid value {other}: expected a string"
            ))),
        }
    }
}

/// `scheme://host` the client used to reach this server, when the request says.
pub fn request_base_url(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = value("x-forwarded-host").or_else(|| value("host"))?;
    let scheme = value("x-forwarded-proto").unwrap_or("http");
    Some(format!("{scheme}://{host}"))
}
