//! Install links (a hosted install page for one user and integration) and headless
//! installations (started, then completed with the credentials they ask for).

use super::{Env, Result, StoreError};
use crate::{crypto, ids};
use rusqlite::{params, Connection, OptionalExtension};

/// An install link as stored: only the link's hash is kept.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: String,
    pub env: Env,
    pub user_id: String,
    pub integration_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Makes a link; returns it (shown once) with its row.
pub fn create_link(
    conn: &Connection,
    env: Env,
    user_id: &str,
    integration_id: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<(String, Link)> {
    use base64::Engine;
    let secret = format!(
        "il_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ids::random_bytes(32))
    );
    let link = Link {
        id: ids::object_id(),
        env,
        user_id: user_id.into(),
        integration_id: integration_id.into(),
        expires_at: now + ttl_ms,
        used_at: None,
    };
    conn.prepare_cached(
        "INSERT INTO install_links (id, hash, env, user_id, integration_id, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        link.id,
        crypto::sha256(secret.as_bytes()),
        env.as_str(),
        user_id,
        integration_id,
        now,
        link.expires_at
    ])?;
    Ok((secret, link))
}

/// The link a presented secret names, if any (used or expired ones too: the caller says why
/// it no longer works).
pub fn find_link(conn: &Connection, secret: &str) -> Result<Option<Link>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, env, user_id, integration_id, expires_at, used_at FROM install_links WHERE hash = ?1",
        )?
        .query_row([crypto::sha256(secret.as_bytes())], |r| {
            let env: String = r.get(1)?;
            Ok(Link {
                id: r.get(0)?,
                env: Env::parse(&env).unwrap_or(Env::Development),
                user_id: r.get(2)?,
                integration_id: r.get(3)?,
                expires_at: r.get(4)?,
                used_at: r.get(5)?,
            })
        })
        .optional()?)
}

/// Spends a link on an install of `integration_id`: it must be unused, unexpired, and for
/// that integration. Runs inside the install's own write, so a link installs exactly once.
pub fn spend_link(conn: &Connection, link_id: &str, integration_id: &str, now: i64) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE install_links SET used_at = ?3 WHERE id = ?1 AND used_at IS NULL AND expires_at > ?3 \
             AND integration_id = ?2",
        )?
        .execute(params![link_id, integration_id, now])?;
    if changed == 0 {
        return Err(StoreError::Gone(
            "this install link is used, expired, or for another integration".into(),
        ));
    }
    Ok(())
}

/// A headless installation between its start and its completion.
#[derive(Debug, Clone)]
pub struct Installation {
    pub id: String,
    pub user_id: String,
    pub integration_id: String,
    pub workflow_ids: Vec<String>,
    pub credential_ids: Vec<String>,
    pub expires_at: i64,
    pub completed_at: Option<i64>,
}

/// How long a started installation waits for its completion.
pub const INSTALLATION_TTL_MS: i64 = 60 * 60 * 1000;

pub fn start(conn: &Connection, env: Env, i: &Installation, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO installations (id, env, user_id, integration_id, workflow_ids, credential_ids, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        i.id,
        env.as_str(),
        i.user_id,
        i.integration_id,
        serde_json::to_string(&i.workflow_ids).expect("ids serialize"),
        serde_json::to_string(&i.credential_ids).expect("ids serialize"),
        now,
        i.expires_at
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, env: Env, id: &str) -> Result<Installation> {
    conn.prepare_cached(
        "SELECT id, user_id, integration_id, workflow_ids, credential_ids, expires_at, completed_at \
         FROM installations WHERE id = ?1 AND env = ?2",
    )?
    .query_row(params![id, env.as_str()], |r| {
        let list = |i: usize| -> rusqlite::Result<Vec<String>> {
            let text: String = r.get(i)?;
            serde_json::from_str(&text)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
        };
        Ok(Installation {
            id: r.get(0)?,
            user_id: r.get(1)?,
            integration_id: r.get(2)?,
            workflow_ids: list(3)?,
            credential_ids: list(4)?,
            expires_at: r.get(5)?,
            completed_at: r.get(6)?,
        })
    })
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// Marks an installation complete; refused when it was completed already or has expired.
pub fn complete(conn: &Connection, id: &str, now: i64) -> Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE installations SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL AND expires_at > ?2",
        )?
        .execute(params![id, now])?;
    if changed == 0 {
        return Err(StoreError::Gone(
            "this installation was completed already or has expired".into(),
        ));
    }
    Ok(())
}
