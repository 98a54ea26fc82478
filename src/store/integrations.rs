//! Integration templates.

use super::{conflict_on_unique, Env, Result, Secrets, StoreError};
use crate::credtypes::CredentialType;
use crate::ids;
use crate::workflow::{IntegrationDef, TemplateWorkflow};
use rusqlite::{params, Connection, OptionalExtension, Row};

#[derive(Debug, Clone)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub app: String,
    pub credential_type: Option<String>,
    pub icon: Option<String>,
    pub credential_types: Vec<CredentialType>,
    pub oauth: Option<crate::oauth::Provider>,
    /// The newest version; `workflows` and the fields above are that version's.
    pub version: i64,
    pub workflows: Vec<TemplateWorkflow>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, name, app, credential_type, version, workflows, created_at, updated_at, icon, credential_types, oauth";

fn json_col<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn from_row(r: &Row) -> rusqlite::Result<Integration> {
    Ok(Integration {
        id: r.get(0)?,
        name: r.get(1)?,
        app: r.get(2)?,
        credential_type: r.get(3)?,
        version: r.get(4)?,
        workflows: json_col(r, 5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        icon: r.get(8)?,
        credential_types: json_col(r, 9)?,
        oauth: match r.get::<_, Option<String>>(10)? {
            Some(_) => json_col(r, 10)?,
            None => None,
        },
    })
}

fn workflows_json(def: &IntegrationDef) -> String {
    serde_json::to_string(&def.workflows).expect("template workflows serialize")
}

fn types_json(def: &IntegrationDef) -> String {
    serde_json::to_string(&def.credential_types).expect("credential types serialize")
}

fn oauth_json(def: &IntegrationDef) -> Option<String> {
    def.oauth
        .as_ref()
        .map(|p| serde_json::to_string(p).expect("a provider serializes"))
}

/// The associated data binding an integration's sealed OAuth client secret to it.
pub fn oauth_aad(integration_id: &str) -> Vec<u8> {
    format!("integration-oauth:{integration_id}").into_bytes()
}

/// Seals a client secret the definition gives; without a provider there is none to keep.
fn store_oauth_secret(conn: &Connection, secrets: &Secrets, id: &str, def: &IntegrationDef) -> Result<()> {
    if def.oauth.is_none() {
        conn.prepare_cached("UPDATE integrations SET oauth_secret_sealed = NULL WHERE id = ?1")?
            .execute([id])?;
    } else if let Some(secret) = &def.oauth_secret {
        let sealed = secrets.seal(conn, secret.as_bytes(), &oauth_aad(id))?;
        conn.prepare_cached("UPDATE integrations SET oauth_secret_sealed = ?2 WHERE id = ?1")?
            .execute(params![id, sealed])?;
    }
    Ok(())
}

/// An integration's OAuth provider and its sealed client secret, if it has a provider.
pub fn oauth(conn: &Connection, env: Env, id: &str) -> Result<Option<(crate::oauth::Provider, Option<Vec<u8>>)>> {
    let row: Option<(Option<String>, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT oauth, oauth_secret_sealed FROM integrations WHERE id = ?1 AND env = ?2")?
        .query_row(params![id, env.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((Some(p), sealed)) => {
            let p = serde_json::from_str(&p).map_err(|e| StoreError::Invalid(format!("stored OAuth provider: {e}")))?;
            Ok(Some((p, sealed)))
        }
        _ => Ok(None),
    }
}

/// Records the integration's current row as a version.
fn save_version(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO integration_versions (integration_id, version, app, credential_type, icon, credential_types, oauth, workflows, created_at) \
         SELECT id, version, app, credential_type, icon, credential_types, oauth, workflows, updated_at FROM integrations WHERE id = ?1",
    )?
    .execute([id])?;
    Ok(())
}

/// Creates an integration; a taken name is a conflict.
pub fn insert(conn: &Connection, secrets: &Secrets, env: Env, def: &IntegrationDef) -> Result<Integration> {
    if def.oauth.is_some() && def.oauth_secret.is_none() {
        return Err(StoreError::Invalid("integration.oauth.clientSecret is required".into()));
    }
    let id = ids::object_id();
    let now = ids::now_ms();
    conn.prepare_cached(
        "INSERT INTO integrations (id, env, name, app, credential_type, workflows, created_at, updated_at, icon, credential_types, oauth) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        env.as_str(),
        def.name,
        def.app,
        def.credential_type,
        workflows_json(def),
        now,
        def.icon,
        types_json(def),
        oauth_json(def),
    ])
    .map_err(|e| conflict_on_unique(e, &format!("an integration named {:?} already exists", def.name)))?;
    store_oauth_secret(conn, secrets, &id, def)?;
    save_version(conn, &id)?;
    get(conn, env, &id)
}

/// Creates the integration, or saves a new version of the one with the same name (keeping its
/// id and template workflow ids, and every earlier version) when something changed.
pub fn upsert_by_name(conn: &Connection, secrets: &Secrets, env: Env, def: &IntegrationDef) -> Result<Integration> {
    let existing: Option<Integration> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM integrations WHERE env = ?1 AND name = ?2"
        ))?
        .query_row(params![env.as_str(), def.name], from_row)
        .optional()?;
    let Some(old) = existing else {
        return insert(conn, secrets, env, def);
    };
    if def.oauth.is_some() && def.oauth_secret.is_none() && oauth(conn, env, &old.id)?.and_then(|(_, s)| s).is_none() {
        return Err(StoreError::Invalid("integration.oauth.clientSecret is required".into()));
    }
    // A client secret is kept (sealed, never shown) when a new save leaves it out.
    store_oauth_secret(conn, secrets, &old.id, def)?;
    let mut def = def.clone();
    for w in &mut def.workflows {
        if let Some(prev) = old.workflows.iter().find(|p| p.name == w.name) {
            w.workflow_id = prev.workflow_id.clone();
        }
    }
    let unchanged = old.app == def.app
        && old.credential_type == def.credential_type
        && old.icon == def.icon
        && old.credential_types == def.credential_types
        && old.oauth == def.oauth
        && same_blocks(&old.workflows, &def.workflows);
    if unchanged {
        return Ok(old);
    }
    conn.prepare_cached(
        "UPDATE integrations SET app = ?2, credential_type = ?3, workflows = ?4, version = version + 1, updated_at = ?5, \
         icon = ?6, credential_types = ?7, oauth = ?8 WHERE id = ?1",
    )?
    .execute(params![
        old.id,
        def.app,
        def.credential_type,
        workflows_json(&def),
        ids::now_ms(),
        def.icon,
        types_json(&def),
        oauth_json(&def)
    ])?;
    save_version(conn, &old.id)?;
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

/// One saved version of an integration: its number, when it was saved, and its workflows.
#[derive(Debug, Clone)]
pub struct Version {
    pub version: i64,
    pub created_at: i64,
    pub workflows: Vec<TemplateWorkflow>,
}

/// Every version of an integration, oldest first.
pub fn versions(conn: &Connection, integration_id: &str) -> Result<Vec<Version>> {
    let mut st = conn.prepare_cached(
        "SELECT version, created_at, workflows FROM integration_versions WHERE integration_id = ?1 ORDER BY version",
    )?;
    let rows = st.query_map([integration_id], |r| {
        Ok(Version {
            version: r.get(0)?,
            created_at: r.get(1)?,
            workflows: json_col(r, 2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A template workflow found by its id among the newest versions of an environment's
/// integrations, with the integration that holds it.
pub fn template(conn: &Connection, env: Env, workflow_id: &str) -> Result<Option<(Integration, TemplateWorkflow)>> {
    let found: Option<Integration> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM integrations WHERE env = ?1 AND EXISTS \
             (SELECT 1 FROM json_each(integrations.workflows) WHERE json_extract(value, '$.workflowId') = ?2)"
        ))?
        .query_row(params![env.as_str(), workflow_id], from_row)
        .optional()?;
    Ok(found.and_then(|i| {
        let t = i.workflows.iter().find(|t| t.workflow_id == workflow_id)?.clone();
        Some((i, t))
    }))
}

/// The credential types an environment's integrations declare (the built-ins aside), each once:
/// where two integrations declare the same name, the newest integration's wins.
pub fn declared_types(conn: &Connection, env: Env) -> Result<Vec<CredentialType>> {
    let mut st = conn.prepare_cached(
        "SELECT credential_types FROM integrations WHERE env = ?1 AND credential_types != '[]' ORDER BY id DESC",
    )?;
    let rows = st.query_map([env.as_str()], |r| json_col::<Vec<CredentialType>>(r, 0))?;
    let mut types: Vec<CredentialType> = Vec::new();
    for declared in rows {
        for t in declared? {
            if !types.iter().any(|k| k.name == t.name) {
                types.push(t);
            }
        }
    }
    Ok(types)
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
