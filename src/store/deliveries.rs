//! The delivery outbox: one row per error log and target, each attempt recorded.

use super::{error_logs::ErrorLog, Env, Result, StoreError};
use crate::ids;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub env: Env,
    pub target: String,
    pub error_log_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One try at delivering.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

const COLUMNS: &str = "d.id, d.env, d.target, d.error_log_id, d.status, d.attempts, d.next_attempt_at, d.last_error, \
                       d.created_at, d.updated_at";

fn from_row(r: &Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        env: Env::parse(&r.get::<_, String>(1)?).unwrap_or(Env::Development),
        target: r.get(2)?,
        error_log_id: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// Writes one pending delivery, due at once, per enabled target of the log's environment; call in
/// the transaction that writes the log. Returns how many.
pub fn enqueue_for(conn: &Connection, log: &ErrorLog) -> Result<usize> {
    let targets: Vec<String> = conn
        .prepare_cached("SELECT target FROM delivery_targets WHERE env = ?1 AND enabled = 1 ORDER BY target")?
        .query_map([log.env.as_str()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let now = ids::now_ms();
    let mut st = conn.prepare_cached(
        "INSERT INTO deliveries (id, env, target, error_log_id, status, next_attempt_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?6)",
    )?;
    for t in &targets {
        st.execute(params![ids::object_id(), log.env.as_str(), t, log.id, now, now])?;
    }
    Ok(targets.len())
}

/// Writes one pending delivery of `log` to `target`, due at once (a test event).
pub fn enqueue_one(conn: &Connection, log: &ErrorLog, target: &str) -> Result<String> {
    let id = ids::object_id();
    let now = ids::now_ms();
    conn.prepare_cached(
        "INSERT INTO deliveries (id, env, target, error_log_id, status, next_attempt_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?
    .execute(params![id, log.env.as_str(), target, log.id, now])?;
    Ok(id)
}

/// How many deliveries to `target` are pending, and when the oldest was made.
pub fn pending_summary(conn: &Connection, target: &str) -> Result<(i64, Option<i64>)> {
    Ok(conn
        .prepare_cached("SELECT count(*), min(created_at) FROM deliveries WHERE target = ?1 AND status = 'pending'")?
        .query_row([target], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Pending deliveries of `target` that are due, oldest first, for enabled targets only.
pub fn due(conn: &Connection, target: &str, now_ms: i64, limit: usize) -> Result<Vec<Delivery>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries d JOIN delivery_targets t ON t.env = d.env AND t.target = d.target \
         WHERE d.target = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2 AND t.enabled = 1 \
         ORDER BY d.next_attempt_at, d.created_at, d.id LIMIT ?3"
    ))?;
    let rows = st.query_map(params![target, now_ms, limit as i64], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// When the next pending delivery of an enabled `target` falls due.
pub fn next_due_at(conn: &Connection, target: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT min(d.next_attempt_at) FROM deliveries d JOIN delivery_targets t ON t.env = d.env AND t.target = d.target \
             WHERE d.target = ?1 AND d.status = 'pending' AND t.enabled = 1",
        )?
        .query_row([target], |r| r.get(0))?)
}

/// Records an attempt and the delivery's new state. Nothing happens if the delivery is gone
/// (its log was erased) or no longer pending.
pub fn record(conn: &Connection, id: &str, attempt: &Attempt, status: &str, next_attempt_at: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4, updated_at = ?5 \
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id, status, next_attempt_at, attempt.error, ids::now_ms()])?;
    if n == 0 {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, attempt.at, attempt.status_code, attempt.error, attempt.duration_ms])?;
    Ok(true)
}

/// Deliveries of an environment, newest first, with their attempts.
pub fn list(
    conn: &Connection,
    env: Env,
    status: Option<&str>,
    target: Option<&str>,
    limit: usize,
) -> Result<Vec<(Delivery, Vec<Attempt>)>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries d WHERE d.env = ?1 AND (?2 IS NULL OR d.status = ?2) \
         AND (?3 IS NULL OR d.target = ?3) ORDER BY d.created_at DESC, d.id DESC LIMIT ?4"
    ))?;
    let found: Vec<Delivery> = st
        .query_map(params![env.as_str(), status, target, limit as i64], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    found
        .into_iter()
        .map(|d| {
            let a = attempts(conn, &d.id)?;
            Ok((d, a))
        })
        .collect()
}

fn attempts(conn: &Connection, id: &str) -> Result<Vec<Attempt>> {
    let mut st = conn.prepare_cached(
        "SELECT attempted_at, status_code, error, duration_ms FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY attempted_at, rowid",
    )?;
    let rows = st.query_map([id], |r| {
        Ok(Attempt {
            at: r.get(0)?,
            status_code: r.get(1)?,
            error: r.get(2)?,
            duration_ms: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, env: Env, id: &str) -> Result<(Delivery, Vec<Attempt>)> {
    let d = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deliveries d WHERE d.id = ?1 AND d.env = ?2"
        ))?
        .query_row(params![id, env.as_str()], from_row)
        .optional()?
        .ok_or(StoreError::NotFound)?;
    let a = attempts(conn, &d.id)?;
    Ok((d, a))
}

/// Sends a failed delivery again: back to pending, due now, with a fresh retry schedule.
pub fn retry(conn: &Connection, env: Env, id: &str) -> Result<(Delivery, Vec<Attempt>)> {
    let (d, _) = get(conn, env, id)?;
    if d.status != FAILED {
        return Err(StoreError::Conflict(format!(
            "delivery {id} is {}; only failed deliveries are retried",
            d.status
        )));
    }
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, ids::now_ms()])?;
    get(conn, env, id)
}
