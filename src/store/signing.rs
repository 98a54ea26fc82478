//! User-token signing keys: the public half in the clear (it is published in the JWKS), the
//! private half sealed with the master key.

use super::{Result, Secrets};
use crate::ids;
use rusqlite::{params, Connection, OptionalExtension};

/// The associated data that binds a sealed private key to its key id.
pub fn aad(kid: &str) -> Vec<u8> {
    format!("signing-key:{kid}").into_bytes()
}

/// Stores a new signing key; the caller generated it.
pub fn insert(conn: &Connection, secrets: &Secrets, kid: &str, public: &[u8], private: &[u8]) -> Result<()> {
    let sealed = secrets.seal(conn, private, &aad(kid))?;
    conn.prepare_cached(
        "INSERT INTO signing_keys (kid, public_key, private_sealed, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kid, public, sealed, ids::now_ms()])?;
    Ok(())
}

/// Retires every current key (its public half stays published until its tokens expire).
pub fn retire_current(conn: &Connection) -> Result<Vec<String>> {
    let mut st =
        conn.prepare_cached("UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL RETURNING kid")?;
    let kids = st.query_map([ids::now_ms()], |r| r.get(0))?;
    Ok(kids.collect::<rusqlite::Result<_>>()?)
}

/// The key new tokens are signed with.
pub fn current_kid(conn: &Connection) -> Result<Option<String>> {
    let mut st = conn.prepare_cached(
        "SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1",
    )?;
    Ok(st.query_row([], |r| r.get(0)).optional()?)
}

/// The unsealed private key `kid`.
pub fn private_key(conn: &Connection, secrets: &Secrets, kid: &str) -> Result<Option<Vec<u8>>> {
    let sealed: Option<Vec<u8>> = conn
        .prepare_cached("SELECT private_sealed FROM signing_keys WHERE kid = ?1")?
        .query_row([kid], |r| r.get(0))
        .optional()?;
    sealed.map(|s| secrets.open(&s, &aad(kid))).transpose()
}

/// Public keys that may still verify a token: current ones, and those retired after
/// `retired_since_ms` (epoch milliseconds; see `tokens::retired_since`). Newest first.
pub fn published(conn: &Connection, retired_since_ms: i64) -> Result<Vec<(String, Vec<u8>)>> {
    let mut st = conn.prepare_cached(
        "SELECT kid, public_key FROM signing_keys WHERE retired_at IS NULL OR retired_at > ?1 \
         ORDER BY created_at DESC, kid",
    )?;
    let rows = st.query_map([retired_since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
