//! Delivery targets: each environment's webhook and EventBridge settings, secrets sealed.

use super::{Env, Result, Secrets, StoreError};
use crate::ids;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

pub const WEBHOOK: &str = "webhook";
pub const EVENTBRIDGE: &str = "eventbridge";

#[derive(Debug, Clone)]
pub struct Target {
    pub env: Env,
    pub target: String,
    pub enabled: bool,
    /// Non-secret settings (`url`; `accessKeyId`, `region`, `eventBusName`, `endpoint`).
    pub config: Value,
    pub secret_sealed: Option<Vec<u8>>,
    /// The last characters of the secret, for display.
    pub secret_hint: Option<String>,
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_secret_until: Option<i64>,
    /// Why the target is failing (refused credentials, 410 Gone), if it is.
    pub failing: Option<String>,
    pub updated_at: i64,
}

/// The associated data binding a target's secret (`which` is `secret` or `previous`).
pub fn aad(env: Env, target: &str, which: &str) -> Vec<u8> {
    format!("delivery-target:{}:{target}:{which}", env.as_str()).into_bytes()
}

const COLUMNS: &str = "env, target, enabled, config, secret_sealed, secret_hint, previous_secret_sealed, \
                       previous_secret_until, failing, updated_at";

fn from_row(r: &Row) -> rusqlite::Result<Target> {
    let config: String = r.get(3)?;
    Ok(Target {
        env: Env::parse(&r.get::<_, String>(0)?).unwrap_or(Env::Development),
        target: r.get(1)?,
        enabled: r.get(2)?,
        config: serde_json::from_str(&config).unwrap_or(Value::Null),
        secret_sealed: r.get(4)?,
        secret_hint: r.get(5)?,
        previous_secret_sealed: r.get(6)?,
        previous_secret_until: r.get(7)?,
        failing: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub fn get(conn: &Connection, env: Env, target: &str) -> Result<Option<Target>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM delivery_targets WHERE env = ?1 AND target = ?2"
        ))?
        .query_row(params![env.as_str(), target], from_row)
        .optional()?)
}

/// Creates or replaces a target's settings; `secret` (plaintext) replaces the stored secret
/// when given. Clears `failing`: new settings deserve a new try.
pub fn put(
    conn: &Connection,
    secrets: &Secrets,
    env: Env,
    target: &str,
    enabled: bool,
    config: &Value,
    secret: Option<&str>,
) -> Result<Target> {
    let sealed = secret
        .map(|s| secrets.seal(conn, s.as_bytes(), &aad(env, target, "secret")))
        .transpose()?;
    let hint = secret.map(hint_of);
    conn.prepare_cached(
        "INSERT INTO delivery_targets (env, target, enabled, config, secret_sealed, secret_hint, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (env, target) DO UPDATE SET enabled = excluded.enabled, config = excluded.config, \
         secret_sealed = coalesce(excluded.secret_sealed, secret_sealed), \
         secret_hint = coalesce(excluded.secret_hint, secret_hint), failing = NULL, updated_at = excluded.updated_at",
    )?
    .execute(params![
        env.as_str(),
        target,
        enabled,
        config.to_string(),
        sealed,
        hint,
        ids::now_ms()
    ])?;
    get(conn, env, target)?.ok_or(StoreError::NotFound)
}

/// The last four characters of a secret.
pub fn hint_of(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Replaces the secret with `new_secret`, keeping the current one valid until `keep_until_ms`.
pub fn rotate_secret(
    conn: &Connection,
    secrets: &Secrets,
    env: Env,
    target: &str,
    new_secret: &str,
    keep_until_ms: i64,
) -> Result<Target> {
    let current = get(conn, env, target)?.ok_or(StoreError::NotFound)?;
    let old_plain = current
        .secret_sealed
        .as_ref()
        .map(|s| secrets.open(s, &aad(env, target, "secret")))
        .transpose()?;
    let previous = old_plain
        .map(|p| secrets.seal(conn, &p, &aad(env, target, "previous")))
        .transpose()?;
    let sealed = secrets.seal(conn, new_secret.as_bytes(), &aad(env, target, "secret"))?;
    conn.prepare_cached(
        "UPDATE delivery_targets SET secret_sealed = ?3, secret_hint = ?4, previous_secret_sealed = ?5, \
         previous_secret_until = ?6, updated_at = ?7 WHERE env = ?1 AND target = ?2",
    )?
    .execute(params![
        env.as_str(),
        target,
        sealed,
        hint_of(new_secret),
        previous,
        keep_until_ms,
        ids::now_ms()
    ])?;
    get(conn, env, target)?.ok_or(StoreError::NotFound)
}

/// Opens the target's secret, and the previous one while it is still valid at `now_ms`.
pub fn open_secrets(secrets: &Secrets, t: &Target, now_ms: i64) -> Result<(Option<String>, Option<String>)> {
    let open = |sealed: &Option<Vec<u8>>, which: &str| -> Result<Option<String>> {
        sealed
            .as_ref()
            .map(|s| {
                secrets
                    .open(s, &aad(t.env, &t.target, which))
                    .map(|p| String::from_utf8_lossy(&p).into_owned())
            })
            .transpose()
    };
    let previous = if t.previous_secret_until.is_some_and(|until| until > now_ms) {
        open(&t.previous_secret_sealed, "previous")?
    } else {
        None
    };
    Ok((open(&t.secret_sealed, "secret")?, previous))
}

/// Marks a target failing (or healthy again with `None`).
pub fn set_failing(conn: &Connection, env: Env, target: &str, why: Option<&str>) -> Result<()> {
    conn.prepare_cached(
        "UPDATE delivery_targets SET failing = ?3 WHERE env = ?1 AND target = ?2 AND failing IS NOT ?3",
    )?
    .execute(params![env.as_str(), target, why])?;
    Ok(())
}

/// Turns a target off, saying why.
pub fn disable(conn: &Connection, env: Env, target: &str, why: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE delivery_targets SET enabled = 0, failing = ?3, updated_at = ?4 WHERE env = ?1 AND target = ?2",
    )?
    .execute(params![env.as_str(), target, why, ids::now_ms()])?;
    Ok(())
}
