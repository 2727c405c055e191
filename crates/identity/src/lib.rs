//! Authentication (bearer tokens, HTTP basic) and the authorization checks every API, the CLI
//! and background work use.
//! Token secrets are never stored: only their SHA-256. Passwords are stored as Argon2 hashes;
//! verified credentials are remembered briefly (`AuthCache`) so requests stay fast.

pub mod access;
pub mod scim;

pub use tarn_core::auth::require_admin;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};
use tarn_core::auth::{ObjectType, PermissionLevel, Principal, PrincipalKind, require_granted};
use tarn_core::store::{MetaStore, PrincipalRecord};
use tarn_core::{Error, Result};

const TOKEN_PREFIX: &str = "tarn_";
/// How long a verified credential or workspace membership is trusted without asking the store.
/// Changes made through this server clear the cache at once; other replicas see them after this.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);
const AUTH_CACHE_MAX_ENTRIES: usize = 10_000;

/// Recently verified credentials (keyed by a digest, never the secret) and workspace
/// memberships, so a request does not pay for token lookups and Argon2 each time.
#[derive(Debug, Default)]
pub struct AuthCache {
    principals: Mutex<HashMap<String, (Principal, Instant)>>,
    memberships: Mutex<HashMap<(String, i64), Instant>>,
    /// Checks passed on hot paths (scoring): (principal, object type, object id, level).
    allowed: Mutex<HashMap<(i64, ObjectType, String, PermissionLevel), Instant>>,
    /// Failed password sign-ins per user name: how many in a row, and when the last was.
    failed_sign_ins: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Failed password sign-ins in a row a user name gets before each further try waits.
const FREE_SIGN_IN_FAILURES: u32 = 5;
/// The longest wait after failed sign-ins; it doubles from one second per failure past the
/// free ones.
const MAX_SIGN_IN_WAIT: Duration = Duration::from_secs(900);
/// User names whose failures are remembered at most (a flood of made-up names cannot grow
/// the map without bound).
const MAX_TRACKED_SIGN_INS: usize = 100_000;

impl AuthCache {
    fn principal(&self, key: &str) -> Option<Principal> {
        let entries = self.principals.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL)
            .map(|(p, _)| p.clone())
    }

    fn remember_principal(&self, key: String, principal: Principal) {
        if let Ok(mut entries) = self.principals.lock() {
            if entries.len() >= AUTH_CACHE_MAX_ENTRIES {
                entries.retain(|_, (_, at)| at.elapsed() < AUTH_CACHE_TTL);
            }
            entries.insert(key, (principal, Instant::now()));
        }
    }

    /// How long `user` must still wait before a password is checked again, after too many
    /// failures in a row.
    fn sign_in_wait(&self, user: &str) -> Option<Duration> {
        let entries = self.failed_sign_ins.lock().ok()?;
        let (failures, last) = entries.get(user)?;
        let wait = sign_in_backoff(*failures)?;
        wait.checked_sub(last.elapsed())
    }

    fn record_sign_in(&self, user: &str, succeeded: bool) {
        let Ok(mut entries) = self.failed_sign_ins.lock() else {
            return;
        };
        if succeeded {
            entries.remove(user);
            return;
        }
        if entries.len() >= MAX_TRACKED_SIGN_INS {
            entries.retain(|_, (_, last)| last.elapsed() < MAX_SIGN_IN_WAIT);
        }
        let entry = entries
            .entry(user.to_string())
            .or_insert((0, Instant::now()));
        *entry = (entry.0.saturating_add(1), Instant::now());
    }

    pub fn is_member(&self, workspace: &str, principal_id: i64) -> bool {
        self.memberships.lock().is_ok_and(|entries| {
            entries
                .get(&(workspace.to_string(), principal_id))
                .is_some_and(|at| at.elapsed() < AUTH_CACHE_TTL)
        })
    }

    pub fn remember_member(&self, workspace: &str, principal_id: i64) {
        if let Ok(mut entries) = self.memberships.lock() {
            if entries.len() >= AUTH_CACHE_MAX_ENTRIES {
                entries.retain(|_, at| at.elapsed() < AUTH_CACHE_TTL);
            }
            entries.insert((workspace.to_string(), principal_id), Instant::now());
        }
    }

    /// Forgets one token's principal: after that token is revoked.
    pub fn forget_token(&self, secret: &str) {
        if let Ok(mut entries) = self.principals.lock() {
            entries.remove(&format!("bearer:{}", hash_token(secret)));
        }
    }

    /// Forgets everything: after a token is revoked or a user, group or membership changes.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.principals.lock() {
            entries.clear();
        }
        if let Ok(mut entries) = self.memberships.lock() {
            entries.clear();
        }
        if let Ok(mut entries) = self.allowed.lock() {
            entries.clear();
        }
    }
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token: (token id, secret). The secret is shown once and never stored.
pub fn new_token() -> (String, String) {
    let id = tarn_core::ids::hex32(rand::random());
    let secret = format!(
        "{TOKEN_PREFIX}{}{}",
        tarn_core::ids::hex32(rand::random()),
        tarn_core::ids::hex32(rand::random())
    );
    (id[..16].to_string(), secret)
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| Error::internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Names become path segments and URL parts elsewhere; keep them plain.
fn validate_principal_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid principal name '{name}': use letters, digits, '_', '-', '.', '@'"
        )))
    }
}

/// Creates a user, group or service principal; only users may have a password.
pub async fn create_principal(
    store: &dyn MetaStore,
    name: &str,
    kind: PrincipalKind,
    is_admin: bool,
    password: Option<&str>,
    actor: &str,
) -> Result<PrincipalRecord> {
    validate_principal_name(name)?;
    let hash = match password {
        Some(_) if kind != PrincipalKind::User => {
            return Err(Error::invalid("Only users have passwords"));
        }
        Some(p) if p.chars().count() < 8 => {
            return Err(Error::invalid("A password needs at least 8 characters"));
        }
        Some(p) => Some(hash_password(p)?),
        None => None,
    };
    store
        .create_principal(name, kind, is_admin, hash.as_deref(), actor)
        .await
}

/// Issues a token for `principal_name`, usable in `workspace` only when one is given; returns
/// the stored info and the secret.
pub async fn issue_token(
    store: &dyn MetaStore,
    principal_name: &str,
    comment: &str,
    lifetime_seconds: Option<i64>,
    workspace: Option<&str>,
    actor: &str,
) -> Result<(tarn_core::store::TokenInfo, String)> {
    if let Some(seconds) = lifetime_seconds
        && seconds <= 0
    {
        return Err(Error::invalid("lifetime_seconds must be positive"));
    }
    if let Some(workspace) = workspace
        && !store.workspace_exists(workspace).await?
    {
        return Err(Error::invalid(format!(
            "Workspace '{workspace}' does not exist"
        )));
    }
    let (token_id, secret) = new_token();
    let expires_at = lifetime_seconds
        .map(|s| tarn_core::ids::now_millis().saturating_add(s.saturating_mul(1000)));
    let info = store
        .create_token(
            &tarn_core::store::NewToken {
                token_id: &token_id,
                principal_name,
                token_hash: &hash_token(&secret),
                comment,
                expires_at,
                workspace,
            },
            actor,
        )
        .await?;
    Ok((info, secret))
}

/// The principal a bearer token stands for, if it is valid now.
async fn token_principal(
    store: &dyn MetaStore,
    cache: &AuthCache,
    secret: &str,
) -> Result<Option<Principal>> {
    let hash = hash_token(secret);
    let key = format!("bearer:{hash}");
    if let Some(principal) = cache.principal(&key) {
        return Ok(Some(principal));
    }
    let principal = store
        .principal_for_token(&hash, tarn_core::ids::now_millis())
        .await?;
    if let Some(principal) = &principal {
        cache.remember_principal(key, principal.clone());
    }
    Ok(principal)
}

/// The wait after `failures` failed sign-ins in a row: none for the first few, then one
/// second doubling per failure, capped.
fn sign_in_backoff(failures: u32) -> Option<Duration> {
    let past_free = failures.checked_sub(FREE_SIGN_IN_FAILURES)?;
    Some(Duration::from_secs(1u64 << past_free.min(10)).min(MAX_SIGN_IN_WAIT))
}

/// The principal behind a request's `Authorization` header; every API but `/health` requires
/// one.
pub async fn authenticate(
    store: &dyn MetaStore,
    cache: &AuthCache,
    authorization: Option<&str>,
) -> Result<Principal> {
    let header = authorization.ok_or_else(|| {
        Error::unauthenticated(
            "Authentication required: send a bearer token or HTTP basic credentials",
        )
    })?;
    let (scheme, credentials) = header.split_once(' ').unwrap_or((header, ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return token_principal(store, cache, credentials)
            .await?
            .ok_or_else(|| Error::unauthenticated("Invalid, expired or revoked token"));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| Error::unauthenticated("Malformed basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| Error::unauthenticated("Malformed basic credentials"))?;
        // A token may stand in for the password, as Databricks allows.
        if user == "token"
            && let Some(principal) = token_principal(store, cache, password).await?
        {
            return Ok(principal);
        }
        let key = format!("basic:{user}:{}", hash_token(password));
        if let Some(principal) = cache.principal(&key) {
            return Ok(principal);
        }
        // Guessing is slowed per user name: past a few failures in a row, each try waits.
        if let Some(wait) = cache.sign_in_wait(user) {
            return Err(Error::new(
                tarn_core::ErrorCode::RequestLimitExceeded,
                format!(
                    "Too many failed sign-ins for '{user}': try again in {} s",
                    wait.as_secs() + 1
                ),
            ));
        }
        let verified = match store.password_login(user).await? {
            Some((stored, principal)) => {
                let password = password.to_string();
                tokio::task::spawn_blocking(move || verify_password(&password, &stored))
                    .await
                    .map_err(|e| Error::internal(format!("password check failed: {e}")))?
                    .then_some(principal)
            }
            None => None,
        };
        cache.record_sign_in(user, verified.is_some());
        let principal =
            verified.ok_or_else(|| Error::unauthenticated("Invalid username or password"))?;
        cache.remember_principal(key, principal.clone());
        return Ok(principal);
    }
    Err(Error::unauthenticated(format!(
        "Unsupported authorization scheme '{scheme}'"
    )))
}

/// `require` for paths where a store read per request would cost more than the work itself
/// (scoring): a passed check is trusted for the cache's lifetime, like a membership.
pub async fn require_cached(
    store: &dyn MetaStore,
    cache: &AuthCache,
    workspace: &str,
    principal: &Principal,
    object_type: ObjectType,
    object_id: &str,
    required: PermissionLevel,
) -> Result<()> {
    if principal.is_admin {
        return Ok(());
    }
    let key = (principal.id, object_type, object_id.to_string(), required);
    let cached = cache.allowed.lock().is_ok_and(|entries| {
        entries
            .get(&key)
            .is_some_and(|at| at.elapsed() < AUTH_CACHE_TTL)
    });
    if cached {
        return Ok(());
    }
    require(
        store,
        workspace,
        principal,
        object_type,
        object_id,
        required,
    )
    .await?;
    if let Ok(mut entries) = cache.allowed.lock() {
        if entries.len() >= AUTH_CACHE_MAX_ENTRIES {
            entries.retain(|_, at| at.elapsed() < AUTH_CACHE_TTL);
        }
        entries.insert(key, Instant::now());
    }
    Ok(())
}

/// Fails unless the principal holds `required` (or more) on the object.
pub async fn require(
    store: &dyn MetaStore,
    workspace: &str,
    principal: &Principal,
    object_type: ObjectType,
    object_id: &str,
    required: PermissionLevel,
) -> Result<()> {
    if principal.is_admin {
        return Ok(());
    }
    let granted = store
        .granted_levels(workspace, object_type, object_id, &principal.grantee_ids())
        .await?;
    require_granted(principal, object_type, object_id, &granted, required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_waits_grow_after_the_free_failures() {
        let waits: Vec<Option<u64>> = (0..20)
            .map(|failures| sign_in_backoff(failures).map(|w| w.as_secs()))
            .collect();
        assert_eq!(
            &waits[..8],
            &[None, None, None, None, None, Some(1), Some(2), Some(4)]
        );
        assert_eq!(waits[19], Some(MAX_SIGN_IN_WAIT.as_secs()));
        let cache = AuthCache::default();
        for _ in 0..FREE_SIGN_IN_FAILURES {
            assert_eq!(cache.sign_in_wait("alice"), None);
            cache.record_sign_in("alice", false);
        }
        assert!(cache.sign_in_wait("alice").is_some());
        assert_eq!(cache.sign_in_wait("bob"), None);
        cache.record_sign_in("alice", true);
        assert_eq!(cache.sign_in_wait("alice"), None);
    }

    #[test]
    fn passwords_round_trip_and_tokens_differ() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("S3cret", &hash));
        let (id_a, secret_a) = new_token();
        let (id_b, secret_b) = new_token();
        assert_ne!(id_a, id_b);
        assert_ne!(secret_a, secret_b);
        assert!(secret_a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash_token(&secret_a).len(), 64);
    }
}
