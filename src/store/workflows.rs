//! Users' installed workflows.

use super::{integrations, users, Env, Result, StoreError};
use crate::ids;
use crate::workflow::Block;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: String,
    pub user_id: String,
    pub integration_id: Option<String>,
    pub parent_workflow_id: Option<String>,
    pub credential_id: Option<String>,
    pub name: String,
    pub trigger: Value,
    pub blocks: Vec<Block>,
    pub active: bool,
    pub version: i64,
    pub installed_version: Option<i64>,
    pub installed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `version` reads the integration's newest version: what an upgrade would bring the workflow to.
const COLUMNS: &str = "w.id, w.user_id, w.integration_id, w.parent_workflow_id, w.credential_id, w.name, w.trigger, \
                       w.blocks, w.active, \
                       coalesce((SELECT iv.version FROM integrations iv WHERE iv.id = w.integration_id), w.version), \
                       w.installed_version, w.installed_at, w.created_at, w.updated_at";

fn json_col<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn from_row(r: &Row) -> rusqlite::Result<Workflow> {
    Ok(Workflow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        integration_id: r.get(2)?,
        parent_workflow_id: r.get(3)?,
        credential_id: r.get(4)?,
        name: r.get(5)?,
        trigger: json_col(r, 6)?,
        blocks: json_col(r, 7)?,
        active: r.get(8)?,
        version: r.get(9)?,
        installed_version: r.get(10)?,
        installed_at: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}

/// Installs every workflow of an integration for a user: new ones are created active; ones the
/// user already has are brought to the integration's version (never duplicated).
pub fn install(
    conn: &Connection,
    env: Env,
    user_ref: &str,
    integration_id: &str,
    credential_id: Option<&str>,
    only: Option<&[String]>,
) -> Result<Vec<Workflow>> {
    let user = users::get(conn, env, user_ref)?;
    let integration = integrations::get(conn, env, integration_id)?;
    if let Some(cid) = credential_id {
        let owned: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM credentials WHERE id = ?1 AND user_id = ?2")?
            .query_row(params![cid, user.id], |r| r.get(0))
            .optional()?;
        if owned.is_none() {
            return Err(StoreError::Invalid(format!(
                "credentialId {cid} is not one of this user's credentials"
            )));
        }
    }
    let now = ids::now_ms();
    let mut ids = Vec::new();
    for t in integration
        .workflows
        .iter()
        .filter(|t| only.is_none_or(|o| o.contains(&t.workflow_id)))
    {
        let trigger = t.trigger.to_string();
        let blocks = serde_json::to_string(&t.blocks).expect("blocks serialize");
        let existing: Option<String> = conn
            .prepare_cached("SELECT id FROM workflows WHERE user_id = ?1 AND parent_workflow_id = ?2")?
            .query_row(params![user.id, t.workflow_id], |r| r.get(0))
            .optional()?;
        let id = match existing {
            Some(id) => {
                conn.prepare_cached(
                    "UPDATE workflows SET name = ?2, trigger = ?3, blocks = ?4, version = ?5, installed_version = ?5, \
                     credential_id = coalesce(?6, credential_id), updated_at = ?7 \
                     WHERE id = ?1 AND (installed_version IS NOT ?5 OR (?6 IS NOT NULL AND credential_id IS NOT ?6))",
                )?
                .execute(params![
                    id,
                    t.name,
                    trigger,
                    blocks,
                    integration.version,
                    credential_id,
                    now
                ])?;
                id
            }
            None => {
                let id = ids::object_id();
                conn.prepare_cached(
                    "INSERT INTO workflows (id, user_id, integration_id, parent_workflow_id, credential_id, name, trigger, \
                     blocks, active, version, installed_version, installed_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?9, ?10, ?10, ?10)",
                )?
                .execute(params![
                    id,
                    user.id,
                    integration.id,
                    t.workflow_id,
                    credential_id,
                    t.name,
                    trigger,
                    blocks,
                    integration.version,
                    now
                ])?;
                id
            }
        };
        ids.push(id);
    }
    ids.iter().map(|id| get(conn, env, id, None)).collect()
}

/// Brings a user's workflow to its integration's newest version (the template workflow it was
/// installed from, as that version has it). `Ok(false)` when it is there already.
pub fn upgrade(conn: &Connection, env: Env, id: &str) -> Result<bool> {
    let wf = get(conn, env, id, None)?;
    let (Some(integration_id), Some(parent)) = (&wf.integration_id, &wf.parent_workflow_id) else {
        return Err(StoreError::Invalid(
            "the workflow was not installed from an integration".into(),
        ));
    };
    let integration = integrations::get(conn, env, integration_id)?;
    if wf.installed_version == Some(integration.version) {
        return Ok(false);
    }
    let template = integration
        .workflows
        .iter()
        .find(|t| &t.workflow_id == parent)
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "the integration's newest version ({}) no longer has this workflow",
                integration.version
            ))
        })?;
    conn.prepare_cached(
        "UPDATE workflows SET name = ?2, trigger = ?3, blocks = ?4, version = ?5, installed_version = ?5, updated_at = ?6 \
         WHERE id = ?1",
    )?
    .execute(params![
        wf.id,
        template.name,
        template.trigger.to_string(),
        serde_json::to_string(&template.blocks).expect("blocks serialize"),
        integration.version,
        ids::now_ms()
    ])?;
    Ok(true)
}

/// Run counts for a workflow: a user's workflow by its id, or every installed copy of a
/// template workflow by the template's id.
#[derive(Debug, Default, PartialEq)]
pub struct Analytics {
    /// Finished runs (succeeded or failed).
    pub runs: i64,
    /// Calls made to the app: `http` blocks run, across those runs.
    pub app_actions: i64,
    /// Error logs written for those workflows.
    pub errors: i64,
}

pub fn analytics(conn: &Connection, env: Env, id: &str) -> Result<Analytics> {
    const MINE: &str = "SELECT w.id FROM workflows w JOIN users u ON u.id = w.user_id \
                        WHERE u.env = ?1 AND (w.id = ?2 OR w.parent_workflow_id = ?2)";
    let count = |sql: &str| -> Result<i64> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![env.as_str(), id], |r| r.get(0))?)
    };
    Ok(Analytics {
        runs: count(&format!(
            "SELECT count(*) FROM executions WHERE workflow_id IN ({MINE}) AND status IN ('succeeded', 'failed')"
        ))?,
        app_actions: count(&format!(
            "SELECT count(*) FROM executions e, json_each(e.results) r WHERE e.workflow_id IN ({MINE}) \
             AND json_extract(r.value, '$.type') = 'http'"
        ))?,
        errors: count(&format!(
            "SELECT count(*) FROM error_logs WHERE env = ?1 AND workflow_id IN ({MINE})"
        ))?,
    })
}

/// A user's workflows, optionally only those of integrations for one app.
pub fn list_for_user(conn: &Connection, user_id: &str, app: Option<&str>) -> Result<Vec<Workflow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM workflows w LEFT JOIN integrations i ON i.id = w.integration_id \
         WHERE w.user_id = ?1 AND (?2 IS NULL OR i.app = ?2 OR i.name = ?2) ORDER BY w.id"
    ))?;
    let rows = st.query_map(params![user_id, app], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A workflow of the environment, optionally required to belong to `user_id`.
pub fn get(conn: &Connection, env: Env, id: &str, user_id: Option<&str>) -> Result<Workflow> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM workflows w JOIN users u ON u.id = w.user_id \
         WHERE w.id = ?1 AND u.env = ?2 AND (?3 IS NULL OR w.user_id = ?3)"
    ))?
    .query_row(params![id, env.as_str(), user_id], from_row)
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// A user's workflow by id or by name.
pub fn find_for_user(conn: &Connection, user_id: &str, id: Option<&str>, name: Option<&str>) -> Result<Workflow> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM workflows w WHERE w.user_id = ?1 AND (w.id = ?2 OR (?2 IS NULL AND w.name = ?3)) \
         ORDER BY w.id LIMIT 1"
    ))?
    .query_row(params![user_id, id, name], from_row)
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// A user's active workflows listening for `event`.
pub fn listening_for(conn: &Connection, user_id: &str, event: &str) -> Result<Vec<Workflow>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM workflows w WHERE w.user_id = ?1 AND w.active = 1 \
         AND json_extract(w.trigger, '$.type') = 'event' AND json_extract(w.trigger, '$.event') = ?2 ORDER BY w.id"
    ))?;
    let rows = st.query_map(params![user_id, event], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_active(conn: &Connection, id: &str, active: bool) -> Result<()> {
    conn.prepare_cached("UPDATE workflows SET active = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, active, ids::now_ms()])?;
    Ok(())
}

/// Deletes a workflow and (through the foreign key) its executions.
pub fn delete(conn: &Connection, id: &str) -> Result<()> {
    if conn
        .prepare_cached("DELETE FROM workflows WHERE id = ?1")?
        .execute([id])?
        == 0
    {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The users who have a workflow: for a template workflow id, everyone who installed it; for a
/// user's workflow id, its user. With each one's copy of the workflow.
pub fn users_of(conn: &Connection, env: Env, id: &str) -> Result<Vec<(users::User, Workflow)>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, u.id, u.username, u.full_name, u.disabled, u.created_at, u.updated_at \
         FROM workflows w JOIN users u ON u.id = w.user_id \
         WHERE u.env = ?2 AND (w.parent_workflow_id = ?1 OR w.id = ?1) ORDER BY u.id"
    ))?;
    let rows = st.query_map(params![id, env.as_str()], |r| {
        let user = users::User {
            id: r.get(14)?,
            username: r.get(15)?,
            full_name: r.get(16)?,
            disabled: r.get(17)?,
            created_at: r.get(18)?,
            updated_at: r.get(19)?,
        };
        Ok((user, from_row(r)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
