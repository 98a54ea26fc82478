//! API keys: made once and shown once, stored as SHA-256 hashes, compared in constant time.
//!
//! A key reads `ingot_<dev|prod>_<id>_<secret>`: the id finds the row, the secret (32 random
//! bytes) is checked against the stored hash. The secret has full entropy, so a plain hash is
//! enough; a slow password hash would only slow every request.

use super::{Env, Result, StoreError};
use crate::crypto;
use crate::ids;
use base64::Engine;
use rusqlite::{params, Connection, OptionalExtension};

/// An API key as listed: never the secret.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub env: Env,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn prefix(env: Env) -> &'static str {
    match env {
        Env::Development => "dev",
        Env::Production => "prod",
    }
}

/// Makes a key; returns it with the full key text, which is never stored.
pub fn create(conn: &Connection, env: Env, name: &str) -> Result<(ApiKey, String)> {
    let id = ids::hex(&ids::random_bytes(6));
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ids::random_bytes(32));
    let hash = crypto::sha256(secret.as_bytes());
    let now = ids::now_ms();
    conn.prepare_cached("INSERT INTO api_keys (id, name, env, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![id, name, env.as_str(), &hash[..], now])?;
    let full = format!("ingot_{}_{id}_{secret}", prefix(env));
    let key = ApiKey {
        id,
        name: name.into(),
        env,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    Ok((key, full))
}

/// Every key, newest first.
pub fn list(conn: &Connection) -> Result<Vec<ApiKey>> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, env, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at DESC",
    )?;
    let rows = st.query_map([], |r| {
        Ok(ApiKey {
            id: r.get(0)?,
            name: r.get(1)?,
            env: Env::parse(&r.get::<_, String>(2)?).unwrap_or(Env::Development),
            created_at: r.get(3)?,
            last_used_at: r.get(4)?,
            revoked_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many keys have ever been made.
pub fn count(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM api_keys")?
        .query_row([], |r| r.get(0))?)
}

/// Ends a key at once.
pub fn revoke(conn: &Connection, id: &str) -> Result<()> {
    let n = conn
        .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, ids::now_ms()])?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The id and environment of a live key matching `presented`, or `None`.
pub fn authenticate(conn: &Connection, presented: &str) -> Result<Option<(String, Env)>> {
    let mut parts = presented.splitn(4, '_');
    let (Some("ingot"), Some(env_word), Some(id), Some(secret)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let row: Option<(Vec<u8>, String)> = conn
        .prepare_cached("SELECT secret_hash, env FROM api_keys WHERE id = ?1 AND revoked_at IS NULL")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((hash, env)) = row else {
        return Ok(None);
    };
    let presented_hash = crypto::sha256(secret.as_bytes());
    if !crypto::constant_time_eq(&hash, &presented_hash) {
        return Ok(None);
    }
    // The environment word is part of the key as it was shown: a key presented under the other
    // environment's word is not that key.
    Ok(Env::parse(&env)
        .filter(|e| prefix(*e) == env_word)
        .map(|e| (id.to_string(), e)))
}

/// Records when keys were last used (batched by the caller; see `handlers::auth`).
pub fn touch(conn: &Connection, uses: &[(String, i64)]) -> Result<()> {
    let mut st =
        conn.prepare_cached("UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?2) WHERE id = ?1")?;
    for (id, at) in uses {
        st.execute(params![id, at])?;
    }
    Ok(())
}
