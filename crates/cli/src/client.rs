//! How client commands reach a server: the host and token from flags, `TARN_HOST` and
//! `TARN_TOKEN`, or a profile (`~/.tarnrc`, else `~/.databrickscfg`), and one HTTP client that
//! turns the server's MLflow error JSON into the command's error.
//!
//! Client commands act as the token's principal: the server checks every request exactly as it
//! checks the API's, so a command can do what its user could do with `curl` and nothing more.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

/// The profile used when none is named, as in `~/.databrickscfg`.
const DEFAULT_PROFILE: &str = "DEFAULT";

/// Where a client command sends its requests, and as whom.
#[derive(Args, Clone, Debug, Default)]
pub struct Connection {
    /// The server, `http://HOST:PORT` (a workspace's own URL, `http://HOST:PORT/ws/prod`,
    /// also works); default: the profile's.
    #[arg(long, global = true, env = "TARN_HOST")]
    pub host: Option<String>,
    /// A personal access token (`tarn tokens create`, or `DIR/admin.token`); default: the
    /// profile's.
    #[arg(long, global = true, env = "TARN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The workspace to work in; default: the host's, the profile's, else `dev`.
    #[arg(long, global = true, env = "TARN_WORKSPACE")]
    pub workspace: Option<String>,
    /// A profile of `~/.tarnrc` (or of `~/.databrickscfg`): its `host`, `token` and
    /// `workspace` fill in what the flags and environment leave out.
    #[arg(long, global = true, env = "TARN_PROFILE")]
    pub profile: Option<String>,
}

/// One section of a profile file.
type Profile = HashMap<String, String>;

impl Connection {
    /// The client these settings describe; fails with what to set when the server or the
    /// token is unknown.
    pub fn connect(&self) -> Result<Client> {
        let profile = self.profile()?;
        let from_profile = |key: &str| profile.as_ref().and_then(|p| p.get(key).cloned());
        let host = self.host.clone().or_else(|| from_profile("host")).context(
            "no server to talk to: pass --host and --token, set TARN_HOST and TARN_TOKEN, or \
             write a profile with `tarn configure` (`tarn admin ...` works on a data directory \
             without a server)",
        )?;
        let token = self.token.clone().or_else(|| from_profile("token")).with_context(|| {
            format!(
                "no token for {host}: pass --token, set TARN_TOKEN, or write one into a profile \
                 with `tarn configure`"
            )
        })?;
        let (root, host_workspace) = split_workspace(&host)?;
        let workspace = self
            .workspace
            .clone()
            .or(host_workspace)
            .or_else(|| from_profile("workspace"))
            .unwrap_or_else(|| "dev".to_string());
        Client::new(root, workspace, token)
    }

    /// The named (or default) profile from `~/.tarnrc`, else from `~/.databrickscfg`; None
    /// when neither file has it and none was named.
    fn profile(&self) -> Result<Option<Profile>> {
        let name = self.profile.as_deref().unwrap_or(DEFAULT_PROFILE);
        for file in profile_files() {
            let Some(text) = read_if_present(&file)? else {
                continue;
            };
            let mut sections = parse_profiles(&text)
                .with_context(|| format!("cannot read profiles from {}", file.display()))?;
            if let Some(profile) = sections.remove(name) {
                return Ok(Some(profile));
            }
        }
        if self.profile.is_some() {
            bail!("no profile [{name}] in ~/.tarnrc or ~/.databrickscfg");
        }
        Ok(None)
    }
}

/// The files profiles are read from, first match wins: `TARN_CONFIG_FILE` or `~/.tarnrc`,
/// then `DATABRICKS_CONFIG_FILE` or `~/.databrickscfg`.
fn profile_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |variable: &str, name: &str| {
        std::env::var_os(variable)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(name)))
    };
    [
        file("TARN_CONFIG_FILE", ".tarnrc"),
        file("DATABRICKS_CONFIG_FILE", ".databrickscfg"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The tarn profile file `tarn configure` writes.
pub fn tarnrc_path() -> Result<PathBuf> {
    profile_files()
        .into_iter()
        .next()
        .context("HOME is not set: set TARN_CONFIG_FILE to say where profiles live")
}

fn read_if_present(file: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

/// The sections of an INI profile file, `~/.databrickscfg`'s format: `[name]` headers,
/// `key = value` lines, `#` and `;` comments. Keys before any header belong to DEFAULT.
pub fn parse_profiles(text: &str) -> Result<HashMap<String, Profile>> {
    let mut sections: HashMap<String, Profile> = HashMap::new();
    let mut current = DEFAULT_PROFILE.to_string();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .with_context(|| format!("line {}: a section header ends with ]", number + 1))?;
            current = name.trim().to_string();
            sections.entry(current.clone()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .with_context(|| format!("line {}: expected `key = value`", number + 1))?;
        sections
            .entry(current.clone())
            .or_default()
            .insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(sections)
}

/// Writes `profile` into the profile file's section `name`, keeping every other section and
/// key, readable by its owner only (it holds a token).
pub fn write_profile(file: &Path, name: &str, profile: &[(&str, &str)]) -> Result<()> {
    let text = read_if_present(file)?.unwrap_or_default();
    let mut sections = parse_profiles(&text)?;
    let section = sections.entry(name.to_string()).or_default();
    for (key, value) in profile {
        section.insert((*key).to_string(), (*value).to_string());
    }
    let mut names: Vec<&String> = sections.keys().collect();
    // DEFAULT first, then the others by name, so the file reads the same after every write.
    names.sort_by_key(|n| (n.as_str() != DEFAULT_PROFILE, n.as_str()));
    let mut out = String::new();
    for name in names {
        out.push_str(&format!("[{name}]\n"));
        let mut keys: Vec<(&String, &String)> = sections[name].iter().collect();
        keys.sort();
        for (key, value) in keys {
            out.push_str(&format!("{key} = {value}\n"));
        }
        out.push('\n');
    }
    write_private(file, &out)
}

fn write_private(file: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    out.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// The server's root and the workspace the host names, if any: `http://h:5000/ws/prod` is
/// `http://h:5000` in `prod`.
fn split_workspace(host: &str) -> Result<(String, Option<String>)> {
    let parsed = url::Url::parse(host)
        .with_context(|| format!("the host must be a URL like http://127.0.0.1:5000: {host}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("the host must be an http:// or https:// URL: {host}");
    }
    let trimmed = host.trim_end_matches('/');
    if let Some((root, workspace)) = trimmed.rsplit_once("/ws/")
        && !workspace.is_empty()
        && !workspace.contains('/')
    {
        return Ok((root.to_string(), Some(workspace.to_string())));
    }
    Ok((trimmed.to_string(), None))
}

/// A name (an endpoint's, a table's) as one URL path segment.
pub fn path_segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A slash-separated path (an artifact's) as URL path segments, each encoded.
pub fn path_segments(path: &str) -> String {
    path.split('/')
        .map(path_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// A string field of an answer, empty when absent.
pub fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// An error the server answered with, in MLflow's error JSON.
#[derive(Debug)]
pub struct ApiError {
    pub error_code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.error_code)
    }
}

impl std::error::Error for ApiError {}

/// The error code the server answered `err` with; none when it did not answer.
pub fn error_code(err: &anyhow::Error) -> Option<&str> {
    err.downcast_ref::<ApiError>()
        .map(|api| api.error_code.as_str())
}

/// Requests to one server, in one workspace, as one token's principal.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    root: String,
    workspace: String,
    token: String,
}

impl Client {
    pub fn new(root: String, workspace: String, token: String) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tarn-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            root,
            workspace,
            token,
        })
    }

    /// The workspace requests go to.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// The server's root URL, without a workspace.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The same server and token in another workspace.
    pub fn in_workspace(&self, workspace: &str) -> Self {
        Self {
            workspace: workspace.to_string(),
            ..self.clone()
        }
    }

    /// The URL of `path` (`/api/2.0/...`) in this client's workspace.
    pub fn url(&self, path: &str) -> String {
        format!("{}/ws/{}{path}", self.root, self.workspace)
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.json(self.request(Method::GET, path).query(query))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(self.request(Method::PATCH, path).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.json(self.request(Method::DELETE, path).query(query))
            .await
    }

    /// Sends `body` to `path`: as the query of a GET, as JSON otherwise.
    pub async fn call(&self, method: Method, path: &str, body: Value) -> Result<Value> {
        let request = self.request(method.clone(), path);
        if method != Method::GET {
            return self.json(request.json(&body)).await;
        }
        let query: Vec<(String, String)> = body
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                (key.clone(), value)
            })
            .collect();
        self.json(request.query(&query)).await
    }

    /// A request to `path` with the token, for bodies and answers that are not JSON; `send`
    /// it with [`Client::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Sends a request; an error answer becomes an [`ApiError`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = request.build().context("cannot build the request")?;
        let (method, url) = (request.method().clone(), request.url().clone());
        let response = self
            .http
            .execute(request)
            .await
            .with_context(|| format!("cannot reach the server: {method} {url}"))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let field = |key: &str| parsed.get(key).and_then(Value::as_str).map(str::to_string);
        Err(ApiError {
            error_code: field("error_code").unwrap_or_else(|| status.as_str().to_string()),
            message: field("message").unwrap_or(text),
        }
        .into())
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = self.send(request).await?;
        let bytes = response
            .bytes()
            .await
            .context("the server's answer broke off")?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_read_like_databrickscfg() {
        let text = "host = http://a:1\n# comment\n[DEFAULT]\ntoken = t0\n\n[prod]\nhost = http://b:2/ws/prod\ntoken=t1\n; another\n";
        let sections = parse_profiles(text).expect("parses");
        assert_eq!(sections["DEFAULT"]["host"], "http://a:1");
        assert_eq!(sections["DEFAULT"]["token"], "t0");
        assert_eq!(sections["prod"]["host"], "http://b:2/ws/prod");
        assert_eq!(sections["prod"]["token"], "t1");
        assert!(parse_profiles("[broken\n").is_err());
        assert!(parse_profiles("no equals sign\n").is_err());
    }

    #[test]
    fn a_host_may_name_its_workspace() {
        let split = |h: &str| split_workspace(h).expect("a URL");
        assert_eq!(split("http://h:5000"), ("http://h:5000".into(), None));
        assert_eq!(split("http://h:5000/"), ("http://h:5000".into(), None));
        assert_eq!(
            split("http://h:5000/ws/prod/"),
            ("http://h:5000".into(), Some("prod".into()))
        );
        assert!(split_workspace("h:5000").is_err());
        assert!(split_workspace("ftp://h").is_err());
    }

    #[test]
    fn writing_a_profile_keeps_the_others() {
        let dir = std::env::temp_dir().join(format!("tarnrc-{}", std::process::id()));
        let file = dir.join("tarnrc");
        write_profile(&file, "prod", &[("host", "http://p"), ("token", "a")]).expect("writes");
        write_profile(&file, DEFAULT_PROFILE, &[("host", "http://d")]).expect("writes");
        write_profile(&file, "prod", &[("token", "b")]).expect("writes");
        let text = std::fs::read_to_string(&file).expect("reads");
        let sections = parse_profiles(&text).expect("parses");
        assert_eq!(sections["prod"]["host"], "http://p");
        assert_eq!(sections["prod"]["token"], "b");
        assert_eq!(sections["DEFAULT"]["host"], "http://d");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(dir).expect("cleans up");
    }
}
