//! OAuth 2.0 authorization requests between the redirect to the provider and its callback.

use super::{Env, Result, Secrets, StoreError};
use crate::{crypto, ids};
use rusqlite::{params, Connection, OptionalExtension};

/// The associated data binding a sealed PKCE verifier to its request.
pub fn aad(id: &str) -> Vec<u8> {
    format!("oauth-state:{id}").into_bytes()
}

/// A request the callback can complete.
#[derive(Debug)]
pub struct Pending {
    pub id: String,
    pub env: Env,
    pub user_id: String,
    pub integration_id: String,
    pub credential_name: Option<String>,
    pub verifier: String,
}

/// Records a request: only the state's hash is kept, the verifier sealed.
#[allow(clippy::too_many_arguments)]
pub fn create(
    conn: &Connection,
    secrets: &Secrets,
    env: Env,
    user_id: &str,
    integration_id: &str,
    credential_name: Option<&str>,
    state: &str,
    verifier: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<()> {
    let id = ids::object_id();
    let sealed = secrets.seal(conn, verifier.as_bytes(), &aad(&id))?;
    conn.prepare_cached(
        "INSERT INTO oauth_states (id, hash, env, user_id, integration_id, credential_name, verifier_sealed, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        crypto::sha256(state.as_bytes()),
        env.as_str(),
        user_id,
        integration_id,
        credential_name,
        sealed,
        now,
        now + ttl_ms
    ])?;
    Ok(())
}

/// Takes the request a presented state names, once: a second use, or one after expiry, is
/// `Gone`; a state that never was is `NotFound`.
pub fn take(conn: &Connection, secrets: &Secrets, state: &str, now: i64) -> Result<Pending> {
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        Vec<u8>,
        i64,
        Option<i64>,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT id, env, user_id, integration_id, credential_name, verifier_sealed, expires_at, used_at \
             FROM oauth_states WHERE hash = ?1",
        )?
        .query_row([crypto::sha256(state.as_bytes())], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .optional()?;
    let (id, env, user_id, integration_id, credential_name, sealed, expires_at, used_at) =
        row.ok_or(StoreError::NotFound)?;
    if used_at.is_some() {
        return Err(StoreError::Gone(
            "this authorization was completed already; start again".into(),
        ));
    }
    if expires_at <= now {
        return Err(StoreError::Gone(
            "this authorization took too long and has expired; start again".into(),
        ));
    }
    conn.prepare_cached("UPDATE oauth_states SET used_at = ?2 WHERE id = ?1")?
        .execute(params![id, now])?;
    let verifier = String::from_utf8(secrets.open(&sealed, &aad(&id))?)
        .map_err(|_| StoreError::Invalid("the stored verifier is not text".into()))?;
    Ok(Pending {
        env: Env::parse(&env).ok_or_else(|| StoreError::Invalid(format!("unknown environment {env}")))?,
        id,
        user_id,
        integration_id,
        credential_name,
        verifier,
    })
}
