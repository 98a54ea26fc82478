//! Counts for the console's overview.

use super::{Env, Result};
use rusqlite::{params, Connection};
use std::collections::HashMap;

pub struct Counts {
    pub users: i64,
    pub active_workflows: i64,
    pub runs_since: i64,
    pub errors_since: i64,
}

/// The environment's users and active workflows, and its runs and errors since `since` (ms).
pub fn counts(conn: &Connection, env: Env, since: i64) -> Result<Counts> {
    let one = |sql: &str| -> Result<i64> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![env.as_str(), since], |r| r.get(0))?)
    };
    Ok(Counts {
        users: one("SELECT count(*) FROM users WHERE env = ?1 AND ?2 IS NOT NULL")?,
        active_workflows: one(
            "SELECT count(*) FROM workflows w JOIN users u ON u.id = w.user_id WHERE u.env = ?1 AND w.active = 1 AND ?2 IS NOT NULL",
        )?,
        runs_since: one(
            "SELECT count(*) FROM executions e JOIN users u ON u.id = e.user_id WHERE u.env = ?1 AND e.created_at >= ?2",
        )?,
        errors_since: one("SELECT count(*) FROM error_logs WHERE env = ?1 AND created_at >= ?2")?,
    })
}

/// Runs and error logs since `since`, counted per slot of `width` ms (slot = time / width).
pub fn per_slot(conn: &Connection, env: Env, since: i64, width: i64) -> Result<(HashMap<i64, i64>, HashMap<i64, i64>)> {
    let slots = |sql: &str| -> Result<HashMap<i64, i64>> {
        let mut st = conn.prepare_cached(sql)?;
        let rows = st.query_map(params![env.as_str(), since, width], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    };
    Ok((
        slots(
            "SELECT e.created_at / ?3, count(*) FROM executions e JOIN users u ON u.id = e.user_id \
             WHERE u.env = ?1 AND e.created_at >= ?2 GROUP BY 1",
        )?,
        slots("SELECT created_at / ?3, count(*) FROM error_logs WHERE env = ?1 AND created_at >= ?2 GROUP BY 1")?,
    ))
}
