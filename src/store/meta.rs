//! The `meta` table: small named values about the database itself.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// The hex id of the master key that new secrets are sealed under.
pub const MASTER_KEY_ID: &str = "master_key_id";

pub fn get(conn: &Connection, key: &str) -> Result<Option<String>> {
    let mut st = conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
    Ok(st.query_row([key], |r| r.get(0)).optional()?)
}

pub fn set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    st.execute(params![key, value])?;
    Ok(())
}
