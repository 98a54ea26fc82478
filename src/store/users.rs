//! Users, and the things removed with them.

use super::{conflict_on_unique, Env, Result, StoreError};
use crate::ids;
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub full_name: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, username, full_name, disabled, created_at, updated_at";

fn from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        full_name: r.get(2)?,
        disabled: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

/// Finds a user by id, or else by username (an id-shaped username is found too).
pub fn find(conn: &Connection, env: Env, reference: &str) -> Result<Option<User>> {
    if ids::is_object_id(reference) {
        let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = ?1 AND env = ?2"))?;
        if let Some(u) = st.query_row(params![reference, env.as_str()], from_row).optional()? {
            return Ok(Some(u));
        }
    }
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE env = ?1 AND username = ?2"))?;
    Ok(st.query_row(params![env.as_str(), reference], from_row).optional()?)
}

/// Like [`find`], but a missing user is [`StoreError::NotFound`].
pub fn get(conn: &Connection, env: Env, reference: &str) -> Result<User> {
    find(conn, env, reference)?.ok_or(StoreError::NotFound)
}

/// Creates a user; a taken username is [`StoreError::Conflict`].
pub fn insert(conn: &Connection, env: Env, username: &str, full_name: Option<&str>) -> Result<User> {
    let now = ids::now_ms();
    let user = User {
        id: ids::object_id(),
        username: username.to_string(),
        full_name: full_name.map(str::to_string),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    conn.prepare_cached(
        "INSERT INTO users (id, env, username, full_name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![user.id, env.as_str(), user.username, user.full_name, now])
    .map_err(|e| conflict_on_unique(e, &format!("username {username:?} is already taken")))?;
    Ok(user)
}

/// Which users a listing returns.
#[derive(Debug, Default)]
pub struct Filter {
    /// Only ids after this one (the previous page's last id).
    pub after: Option<String>,
    /// Only usernames starting with this (case-sensitive).
    pub prefix: Option<String>,
    /// Only users with a workflow installed from this template workflow.
    pub parent_workflow_id: Option<String>,
    pub limit: usize,
}

/// The statement `list` runs, made once.
pub fn list_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {COLUMNS} FROM users WHERE env = ?1 AND id > ?2 \
             AND (?3 IS NULL OR substr(username, 1, length(?3)) = ?3) \
             AND (?4 IS NULL OR EXISTS (SELECT 1 FROM workflows w WHERE w.user_id = users.id AND w.parent_workflow_id = ?4)) \
             ORDER BY id LIMIT ?5"
        )
    });
    &SQL
}

/// Users in creation order.
pub fn list(conn: &Connection, env: Env, f: &Filter) -> Result<Vec<User>> {
    let mut st = conn.prepare_cached(list_sql())?;
    let rows = st.query_map(
        params![
            env.as_str(),
            f.after.as_deref().unwrap_or(""),
            f.prefix,
            f.parent_workflow_id,
            f.limit as i64
        ],
        from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A change to a user; `None` leaves a field alone, `full_name: Some(None)` clears it.
#[derive(Debug, Default)]
pub struct Patch {
    pub username: Option<String>,
    pub full_name: Option<Option<String>>,
    pub disabled: Option<bool>,
}

pub fn update(conn: &Connection, env: Env, reference: &str, patch: &Patch) -> Result<User> {
    let mut user = get(conn, env, reference)?;
    if let Some(u) = &patch.username {
        user.username = u.clone();
    }
    if let Some(f) = &patch.full_name {
        user.full_name = f.clone();
    }
    if let Some(d) = patch.disabled {
        user.disabled = d;
    }
    user.updated_at = ids::now_ms();
    conn.prepare_cached(
        "UPDATE users SET username = ?2, full_name = ?3, disabled = ?4, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![
        user.id,
        user.username,
        user.full_name,
        user.disabled,
        user.updated_at
    ])
    .map_err(|e| conflict_on_unique(e, &format!("username {:?} is already taken", user.username)))?;
    Ok(user)
}

/// Deletes a user; foreign keys remove their credentials, workflows and executions in the
/// same statement, so in the same transaction.
pub fn delete(conn: &Connection, env: Env, reference: &str) -> Result<User> {
    let user = get(conn, env, reference)?;
    conn.prepare_cached("DELETE FROM users WHERE id = ?1")?
        .execute([&user.id])?;
    Ok(user)
}

/// Deactivates every workflow of a user; returns how many changed.
pub fn deactivate_workflows(conn: &Connection, env: Env, reference: &str) -> Result<usize> {
    let user = get(conn, env, reference)?;
    Ok(conn
        .prepare_cached("UPDATE workflows SET active = 0, updated_at = ?2 WHERE user_id = ?1 AND active = 1")?
        .execute(params![user.id, ids::now_ms()])?)
}

/// Erases a user's error logs (which outlive the user). A deleted user is named by id.
pub fn delete_logs(conn: &Connection, env: Env, reference: &str) -> Result<usize> {
    // A deleted user's logs stay until erased, so an id that no longer names a user is taken
    // as long as this environment holds logs for it; otherwise the user is unknown here.
    let (user_id, exists) = match find(conn, env, reference)? {
        Some(u) => (u.id, true),
        None if ids::is_object_id(reference) => (reference.to_string(), false),
        None => return Err(StoreError::NotFound),
    };
    let n = conn
        .prepare_cached("DELETE FROM error_logs WHERE env = ?1 AND user_id = ?2")?
        .execute(params![env.as_str(), user_id])?;
    if n == 0 && !exists {
        return Err(StoreError::NotFound);
    }
    Ok(n)
}
