//! Workflow executions: queued durably, claimed by one worker, finished in one transaction
//! together with the error log a failure leaves.

use super::{deliveries, error_logs, users, Env, Result};
use crate::ids;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const SUCCEEDED: &str = "succeeded";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";

#[derive(Debug, Clone)]
pub struct Execution {
    pub id: String,
    pub workflow_id: String,
    pub user_id: String,
    pub status: String,
    pub inputs: Value,
    pub results: Value,
    pub attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub stopped_at: Option<i64>,
}

impl Execution {
    pub fn finished(&self) -> bool {
        [SUCCEEDED, FAILED, CANCELLED].contains(&self.status.as_str())
    }
}

const COLUMNS: &str = "id, workflow_id, user_id, status, inputs, results, attempts, created_at, started_at, stopped_at";

fn from_row(r: &Row) -> rusqlite::Result<Execution> {
    let json = |i: usize| -> rusqlite::Result<Value> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    Ok(Execution {
        id: r.get(0)?,
        workflow_id: r.get(1)?,
        user_id: r.get(2)?,
        status: r.get(3)?,
        inputs: json(4)?,
        results: json(5)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        started_at: r.get(8)?,
        stopped_at: r.get(9)?,
    })
}

/// Stores a queued run; the caller hands its id to the engine after the commit.
pub fn enqueue(conn: &Connection, workflow_id: &str, user_id: &str, inputs: &Value) -> Result<String> {
    let id = ids::object_id();
    conn.prepare_cached(
        "INSERT INTO executions (id, workflow_id, user_id, status, inputs, created_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?5)",
    )?
    .execute(params![id, workflow_id, user_id, inputs.to_string(), ids::now_ms()])?;
    Ok(id)
}

/// Marks a queued run as running and returns it; `None` when it is gone (its user or workflow
/// was deleted) or another worker has it.
pub fn claim(conn: &Connection, id: &str) -> Result<Option<Execution>> {
    let mut st = conn.prepare_cached(&format!(
        "UPDATE executions SET status = 'running', started_at = ?2, attempts = attempts + 1 \
         WHERE id = ?1 AND status = 'queued' RETURNING {COLUMNS}"
    ))?;
    Ok(st.query_row(params![id, ids::now_ms()], from_row).optional()?)
}

/// After a crash: runs left `running` go back to `queued`; returns every queued id with its
/// environment, oldest first.
pub fn recover(conn: &Connection) -> Result<Vec<(String, Env)>> {
    let requeued = conn
        .prepare_cached("UPDATE executions SET status = 'queued' WHERE status = 'running'")?
        .execute([])?;
    if requeued > 0 {
        log::warn!("{requeued} runs were interrupted by a stop and are queued again");
    }
    let mut st = conn.prepare_cached(
        "SELECT e.id, u.env FROM executions e JOIN users u ON u.id = e.user_id \
         WHERE e.status = 'queued' ORDER BY e.created_at, e.id",
    )?;
    let ids = st.query_map([], |r| {
        let env: String = r.get(1)?;
        Ok((r.get(0)?, Env::parse(&env).unwrap_or(Env::Development)))
    })?;
    Ok(ids.collect::<rusqlite::Result<_>>()?)
}

/// Ends a running execution with `status` and its block results, writing `error` (if any) and
/// its outbox deliveries in the same transaction. Nothing happens when the run is gone or no longer running.
pub fn finish(
    conn: &Connection,
    id: &str,
    status: &str,
    results: &Value,
    error: Option<&error_logs::ErrorLog>,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE executions SET status = ?2, results = ?3, stopped_at = ?4 WHERE id = ?1 AND status = 'running'",
        )?
        .execute(params![id, status, results.to_string(), ids::now_ms()])?;
    if n == 0 {
        return Ok(false);
    }
    if let Some(log) = error {
        error_logs::insert(conn, log)?;
        deliveries::enqueue_for(conn, log)?;
    }
    Ok(true)
}

/// One page of a workflow's executions.
pub fn list(
    conn: &Connection,
    workflow_id: &str,
    offset: i64,
    limit: i64,
    descending: bool,
    failed_only: bool,
) -> Result<Vec<Execution>> {
    let order = if descending { "DESC" } else { "ASC" };
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM executions WHERE workflow_id = ?1 AND (?2 = 0 OR status = 'failed') \
         ORDER BY created_at {order}, id {order} LIMIT ?3 OFFSET ?4"
    ))?;
    let rows = st.query_map(params![workflow_id, failed_only, limit, offset], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, workflow_id: &str, id: &str) -> Result<Option<Execution>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM executions WHERE id = ?1 AND workflow_id = ?2"
        ))?
        .query_row(params![id, workflow_id], from_row)
        .optional()?)
}

/// The environment and state of the user a run belongs to: `None` when the user is gone.
pub fn owner(conn: &Connection, user_id: &str) -> Result<Option<(Env, users::User)>> {
    let row: Option<(String, users::User)> = conn
        .prepare_cached(
            "SELECT env, id, username, full_name, disabled, created_at, updated_at FROM users WHERE id = ?1",
        )?
        .query_row([user_id], |r| {
            Ok((
                r.get(0)?,
                users::User {
                    id: r.get(1)?,
                    username: r.get(2)?,
                    full_name: r.get(3)?,
                    disabled: r.get(4)?,
                    created_at: r.get(5)?,
                    updated_at: r.get(6)?,
                },
            ))
        })
        .optional()?;
    Ok(row.and_then(|(env, u)| Env::parse(&env).map(|e| (e, u))))
}
