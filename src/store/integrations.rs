//! Integration templates.

use super::{conflict_on_unique, Env, Result, StoreError};
use crate::ids;
use crate::workflow::{IntegrationDef, TemplateWorkflow};
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, Clone)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub app: String,
    pub credential_type: Option<String>,
    pub version: i64,
    pub workflows: Vec<TemplateWorkflow>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, name, app, credential_type, version, workflows, created_at, updated_at";

fn from_row(r: &Row) -> rusqlite::Result<Integration> {
    let workflows: String = r.get(5)?;
    Ok(Integration {
        id: r.get(0)?,
        name: r.get(1)?,
        app: r.get(2)?,
        credential_type: r.get(3)?,
        version: r.get(4)?,
        workflows: serde_json::from_str(&workflows)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e)))?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

fn workflows_json(def: &IntegrationDef) -> String {
    serde_json::to_string(&def.workflows).expect("template workflows serialize")
}

/// Creates an integration; a taken name is a conflict.
pub fn insert(conn: &Connection, env: Env, def: &IntegrationDef) -> Result<Integration> {
    let id = ids::object_id();
    let now = ids::now_ms();
    conn.prepare_cached(
        "INSERT INTO integrations (id, env, name, app, credential_type, workflows, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        id,
        env.as_str(),
        def.name,
        def.app,
        def.credential_type,
        workflows_json(def),
        now
    ])
    .map_err(|e| conflict_on_unique(e, &format!("an integration named {:?} already exists", def.name)))?;
    get(conn, env, &id)
}

/// Creates the integration, or replaces the definition of the one with the same name (keeping
/// its id and template workflow ids, bumping its version when something changed). For loading a
/// file at start-up again and again.
pub fn upsert_by_name(conn: &Connection, env: Env, def: &IntegrationDef) -> Result<Integration> {
    let existing: Option<Integration> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM integrations WHERE env = ?1 AND name = ?2"
        ))?
        .query_row(params![env.as_str(), def.name], from_row)
        .optional()?;
    let Some(old) = existing else {
        return insert(conn, env, def);
    };
    let mut def = def.clone();
    for w in &mut def.workflows {
        if let Some(prev) = old.workflows.iter().find(|p| p.name == w.name) {
            w.workflow_id = prev.workflow_id.clone();
        }
    }
    let unchanged =
        old.app == def.app && old.credential_type == def.credential_type && same_blocks(&old.workflows, &def.workflows);
    if unchanged {
        return Ok(old);
    }
    conn.prepare_cached(
        "UPDATE integrations SET app = ?2, credential_type = ?3, workflows = ?4, version = version + 1, updated_at = ?5 WHERE id = ?1",
    )?
    .execute(params![old.id, def.app, def.credential_type, workflows_json(&def), ids::now_ms()])?;
    get(conn, env, &old.id)
}

/// Compares template workflows ignoring block ids minted afresh on each parse.
fn same_blocks(a: &[TemplateWorkflow], b: &[TemplateWorkflow]) -> bool {
    let strip = |ws: &[TemplateWorkflow]| {
        let mut v = serde_json::to_value(ws).unwrap_or_default();
        for w in v.as_array_mut().into_iter().flatten() {
            for b in w["blocks"].as_array_mut().into_iter().flatten() {
                b.as_object_mut().map(|o| o.remove("id"));
            }
        }
        v
    };
    strip(a) == strip(b)
}

pub fn list(conn: &Connection, env: Env) -> Result<Vec<Integration>> {
    page(conn, env, None, usize::MAX)
}

/// Up to `limit` integrations in id order, after the id `after`.
pub fn page(conn: &Connection, env: Env, after: Option<&str>, limit: usize) -> Result<Vec<Integration>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM integrations WHERE env = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = st.query_map(params![env.as_str(), after.unwrap_or(""), limit], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, env: Env, id: &str) -> Result<Integration> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM integrations WHERE env = ?2 AND (id = ?1 OR name = ?1)"
    ))?
    .query_row(params![id, env.as_str()], from_row)
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// How many workflows users have installed from an integration.
pub fn installed_count(conn: &Connection, id: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM workflows WHERE integration_id = ?1")?
        .query_row([id], |r| r.get(0))?)
}

/// Deletes an integration. Installed workflows make it a conflict unless `force`, which removes
/// them (and their executions) too.
pub fn delete(conn: &Connection, env: Env, id: &str, force: bool) -> Result<()> {
    let integration = get(conn, env, id)?;
    let installed = installed_count(conn, &integration.id)?;
    if installed > 0 && !force {
        return Err(StoreError::Conflict(format!(
            "integration is installed as {installed} user workflows; delete with ?force=true to remove them too"
        )));
    }
    conn.prepare_cached("DELETE FROM integrations WHERE id = ?1")?
        .execute([&integration.id])?;
    Ok(())
}
