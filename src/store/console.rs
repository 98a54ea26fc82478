//! Console sessions: an API key exchanged for an `HttpOnly` cookie (see `handlers::console`).

use super::{Env, Result};
use crate::{crypto, ids};
use rusqlite::{params, Connection, OptionalExtension};

/// The longest a session lives, however busy.
pub const MAX_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// A session in use is marked seen at most this often (a write), so reads stay reads.
const SEEN_EVERY_MS: i64 = 60 * 1000;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub env: Env,
    pub key_id: String,
    pub csrf: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// Makes a session for a key; returns the cookie value (shown once) and the session.
pub fn create(conn: &Connection, env: Env, key_id: &str, now: i64) -> Result<(String, Session)> {
    use base64::Engine;
    let b64 = |n| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ids::random_bytes(n));
    let cookie = b64(32);
    let s = Session {
        id: ids::object_id(),
        env,
        key_id: key_id.into(),
        csrf: b64(24),
        created_at: now,
        last_seen_at: now,
    };
    conn.prepare_cached(
        "INSERT INTO console_sessions (id, hash, env, key_id, csrf, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![s.id, crypto::sha256(cookie.as_bytes()), env.as_str(), key_id, s.csrf, now])?;
    Ok((cookie, s))
}

/// The live session a cookie names: its key not revoked, used within `idle_ms`, younger than
/// the longest lifetime.
pub fn find(conn: &Connection, cookie: &str, now: i64, idle_ms: i64) -> Result<Option<Session>> {
    let found = conn
        .prepare_cached(
            "SELECT s.id, s.env, s.key_id, s.csrf, s.created_at, s.last_seen_at FROM console_sessions s \
             JOIN api_keys k ON k.id = s.key_id WHERE s.hash = ?1 AND k.revoked_at IS NULL",
        )?
        .query_row([crypto::sha256(cookie.as_bytes())], |r| {
            let env: String = r.get(1)?;
            Ok(Session {
                id: r.get(0)?,
                env: Env::parse(&env).unwrap_or(Env::Development),
                key_id: r.get(2)?,
                csrf: r.get(3)?,
                created_at: r.get(4)?,
                last_seen_at: r.get(5)?,
            })
        })
        .optional()?;
    Ok(found.filter(|s| now - s.last_seen_at < idle_ms && now - s.created_at < MAX_LIFETIME_MS))
}

/// Whether a session's use is worth recording now.
pub fn needs_touch(s: &Session, now: i64) -> bool {
    now - s.last_seen_at >= SEEN_EVERY_MS
}

pub fn touch(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE console_sessions SET last_seen_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM console_sessions WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}
