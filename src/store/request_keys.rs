//! The RSA key that signs outgoing requests (`X-Alloy-Signature`): the public half in the
//! clear (it is published), the private half sealed with the master key. At most one row.

use super::{Result, Secrets};
use crate::ids;
use rusqlite::{params, Connection, OptionalExtension};

/// The associated data that binds a sealed private key to its id.
pub fn aad(id: &str) -> Vec<u8> {
    format!("request-signing-key:{id}").into_bytes()
}

/// The id of the key requests are signed with, if one has been made.
pub fn current_id(conn: &Connection) -> Result<Option<String>> {
    let mut st = conn.prepare_cached("SELECT id FROM request_signing_keys ORDER BY created_at DESC, id LIMIT 1")?;
    Ok(st.query_row([], |r| r.get(0)).optional()?)
}

/// The public key (SubjectPublicKeyInfo DER) and the unsealed private key (PKCS#8 DER) of `id`.
pub fn get(conn: &Connection, secrets: &Secrets, id: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .prepare_cached("SELECT public_key, private_sealed FROM request_signing_keys WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(public, sealed)| Ok((public, secrets.open(&sealed, &aad(id))?)))
        .transpose()
}

/// Stores a key the caller generated, unless there is one already (another thread or process
/// made it first). Returns the id of the key now current. Call inside a write transaction.
pub fn insert_if_none(conn: &Connection, secrets: &Secrets, id: &str, public: &[u8], private: &[u8]) -> Result<String> {
    if let Some(current) = current_id(conn)? {
        return Ok(current);
    }
    insert(conn, secrets, id, public, private)?;
    Ok(id.to_string())
}

/// Replaces every key with this one; returns the ids it replaced. Call inside a write
/// transaction.
pub fn replace(conn: &Connection, secrets: &Secrets, id: &str, public: &[u8], private: &[u8]) -> Result<Vec<String>> {
    let old = conn
        .prepare_cached("DELETE FROM request_signing_keys RETURNING id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    insert(conn, secrets, id, public, private)?;
    Ok(old)
}

fn insert(conn: &Connection, secrets: &Secrets, id: &str, public: &[u8], private: &[u8]) -> Result<()> {
    let sealed = secrets.seal(conn, private, &aad(id))?;
    conn.prepare_cached(
        "INSERT INTO request_signing_keys (id, public_key, private_sealed, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, public, sealed, ids::now_ms()])?;
    Ok(())
}
