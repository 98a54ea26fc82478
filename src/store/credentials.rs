//! Credentials: a user's secrets, sealed with the master key and bound to their row.

use super::{users, Env, Result, Secrets, StoreError};
use crate::ids;
use rusqlite::{params, Connection};

/// A credential as listed: never its data.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The associated data binding sealed credential data to its credential and user.
pub fn aad(credential_id: &str, user_id: &str) -> Vec<u8> {
    format!("credential:{credential_id}:{user_id}").into_bytes()
}

/// Stores a credential for the user named by `user_ref`, sealing `data`.
/// How many credentials a user has.
pub fn count_for_user(conn: &Connection, user_id: &str) -> Result<usize> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM credentials WHERE user_id = ?1")?
        .query_row([user_id], |r| r.get::<_, i64>(0))? as usize)
}

pub fn insert(
    conn: &Connection,
    secrets: &Secrets,
    env: Env,
    user_ref: &str,
    kind: &str,
    name: Option<&str>,
    data: &[u8],
) -> Result<Credential> {
    let user = users::get(conn, env, user_ref)?;
    let id = ids::object_id();
    let sealed = secrets.seal(conn, data, &aad(&id, &user.id))?;
    let now = ids::now_ms();
    conn.prepare_cached(
        "INSERT INTO credentials (id, user_id, type, name, data_sealed, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![id, user.id, kind, name, sealed, now])?;
    Ok(Credential {
        id,
        user_id: user.id,
        kind: kind.into(),
        name: name.map(Into::into),
        created_at: now,
        updated_at: now,
    })
}

/// A user's credentials, oldest first.
pub fn list(conn: &Connection, user_id: &str) -> Result<Vec<Credential>> {
    let mut st = conn.prepare_cached(
        "SELECT id, user_id, type, name, created_at, updated_at FROM credentials WHERE user_id = ?1 ORDER BY created_at, id",
    )?;
    let rows = st.query_map([user_id], |r| {
        Ok(Credential {
            id: r.get(0)?,
            user_id: r.get(1)?,
            kind: r.get(2)?,
            name: r.get(3)?,
            created_at: r.get(4)?,
            updated_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes one of a user's credentials; another user's credential is not found.
pub fn delete(conn: &Connection, env: Env, user_ref: &str, credential_id: &str) -> Result<()> {
    let user = users::get(conn, env, user_ref)?;
    let n = conn
        .prepare_cached("DELETE FROM credentials WHERE id = ?1 AND user_id = ?2")?
        .execute(params![credential_id, user.id])?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Replaces a credential's data (a refreshed OAuth token), sealed afresh.
pub fn replace_data(
    conn: &Connection,
    secrets: &Secrets,
    credential_id: &str,
    user_id: &str,
    data: &[u8],
) -> Result<()> {
    let sealed = secrets.seal(conn, data, &aad(credential_id, user_id))?;
    let n = conn
        .prepare_cached("UPDATE credentials SET data_sealed = ?3, updated_at = ?4 WHERE id = ?1 AND user_id = ?2")?
        .execute(params![credential_id, user_id, sealed, ids::now_ms()])?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Opens a credential's data; only workflow runs call this.
pub fn open_data(conn: &Connection, secrets: &Secrets, credential_id: &str, user_id: &str) -> Result<Vec<u8>> {
    let sealed: Vec<u8> = conn
        .prepare_cached("SELECT data_sealed FROM credentials WHERE id = ?1 AND user_id = ?2")?
        .query_row(params![credential_id, user_id], |r| r.get(0))
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            e => e.into(),
        })?;
    secrets.open(&sealed, &aad(credential_id, user_id))
}
