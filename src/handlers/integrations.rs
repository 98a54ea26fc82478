//! Integrations: the customer's templates that users install.

use super::{auth, json_body};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::store::{integrations, workflows, StoreError};
use crate::workflow;
use serde_json::{json, Value};

/// An integration as the API shows it. `full` includes every block field (for API-key
/// callers), otherwise blocks are summarised as `{id, name, type, icon}`. `mine` is the user's
/// workflows when the answer is for one user: each template workflow then says whether that
/// user has it, whether it is active, and at which version.
pub fn integration_json(i: &integrations::Integration, full: bool, mine: Option<&[workflows::Workflow]>) -> Value {
    let mut any_installed = false;
    let workflows: Vec<Value> = i
        .workflows
        .iter()
        .map(|t| {
            let blocks: Vec<Value> = t
                .blocks
                .iter()
                .map(|b| {
                    let mut v = if full {
                        serde_json::to_value(b).unwrap_or_default()
                    } else {
                        b.summary()
                    };
                    v["icon"] = b.icon.as_deref().or(i.icon.as_deref()).into();
                    v
                })
                .collect();
            let copy = mine
                .into_iter()
                .flatten()
                .find(|w| w.parent_workflow_id.as_deref() == Some(t.workflow_id.as_str()));
            any_installed |= copy.is_some();
            json!({
                "workflowId": t.workflow_id,
                "name": t.name,
                "trigger": t.trigger,
                "installed": copy.is_some(),
                "active": copy.is_some_and(|w| w.active),
                "version": i.version,
                "installedVersion": copy.and_then(|w| w.installed_version),
                "userWorkflowId": copy.map(|w| w.id.as_str()),
                "blocks": blocks,
            })
        })
        .collect();
    json!({
        "integrationId": i.id,
        "name": i.name,
        "app": i.app,
        "icon": i.icon,
        "installed": any_installed,
        "credentialType": i.credential_type,
        "credentialTypes": i.credential_types,
        "oauth": i.oauth,
        "version": i.version,
        "workflows": workflows,
        "createdAt": rfc3339(i.created_at),
        "updatedAt": rfc3339(i.updated_at),
    })
}

fn not_found(e: StoreError) -> ApiError {
    ApiError::from_store(e, "integration")
}

/// `POST /integrations`: a new integration, or a new version of the one with the same name.
pub fn create(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let def = workflow::parse_integration(&json_body(req)?.0)?;
    let secrets = ctx.app.store.secrets.clone();
    let i = ctx.write(move |c| integrations::upsert_by_name(c, &secrets, env, &def))?;
    Ok(Resp::ok(&integration_json(&i, true, None)))
}

/// The user an integration answer is for: a user token's user, or the `userId` an API key
/// names (none when it names nobody); with their workflows.
fn for_user(ctx: &Ctx, caller: &auth::Caller, req: &Req) -> Result<Option<Vec<workflows::Workflow>>, ApiError> {
    match super::workflows::scoped_user(ctx, caller, req.query("userId"))? {
        Some(user) => Ok(Some(workflows::list_for_user(&*ctx.db()?, &user.id, None)?)),
        None => Ok(None),
    }
}

/// The most integrations one page of `GET /integrations` holds (and its default).
const PAGE_MAX: u64 = 100;

/// `GET /integrations?userId`: for a user (the token's, or `userId` with an API key) each
/// integration and workflow says whether that user has it installed. Paged
/// like the other lists (`limit`, `cursor`, `nextCursor`), so no answer is unbounded; the
/// official SDKs read `data` and ignore the rest.
pub fn list(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let limit = super::query_number(req, "limit", PAGE_MAX, 1..=PAGE_MAX)? as usize;
    let after = req.query("cursor").filter(|c| !c.is_empty());
    let mut all = integrations::page(&*ctx.db()?, caller.env(), after, limit + 1)?;
    let next_cursor = (all.len() > limit).then(|| {
        all.truncate(limit);
        all.last().map(|i| i.id.clone())
    });
    let mine = for_user(ctx, &caller, req)?;
    let full = matches!(caller, auth::Caller::Key(_));
    let data: Vec<Value> = all.iter().map(|i| integration_json(i, full, mine.as_deref())).collect();
    Ok(Resp::ok(&json!({ "data": data, "nextCursor": next_cursor.flatten() })))
}

/// `GET /integrations/{id}?userId` (by id or name): `{data: integration}`, for a user as the list.
pub fn get(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let i = integrations::get(&*ctx.db()?, caller.env(), id).map_err(not_found)?;
    let mine = for_user(ctx, &caller, req)?;
    let full = matches!(caller, auth::Caller::Key(_));
    Ok(Resp::ok(
        &json!({ "data": integration_json(&i, full, mine.as_deref()) }),
    ))
}

/// `GET /integrations/{id}/versions`: every saved version, oldest first.
pub fn versions(ctx: &Ctx, _req: &Req, id: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let i = integrations::get(&*ctx.db()?, env, id).map_err(not_found)?;
    let data: Vec<Value> = integrations::versions(&*ctx.db()?, &i.id)?
        .iter()
        .map(|v| {
            json!({
                "version": v.version,
                "createdAt": rfc3339(v.created_at),
                "workflows": v.workflows.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
                "current": v.version == i.version,
            })
        })
        .collect();
    Ok(Resp::ok(&json!({ "data": data })))
}

/// `DELETE /integrations/{id}`: refused while installed, unless `?force=true`.
pub fn delete(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let force = match req.query("force") {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(_) => return Err(ApiError::Unprocessable("force must be true or false".into())),
    };
    let id = id.to_string();
    ctx.write(move |c| integrations::delete(c, env, &id, force))
        .map_err(not_found)?;
    Ok(Resp::ok(&json!({ "deleted": true })))
}

/// Creates or updates the integrations in `path` at start-up: `[{..., "env"?}]` or
/// `{"integrations": [...]}`. Returns how many were loaded.
pub fn load_file(app: &crate::App, path: &std::path::Path) -> anyhow::Result<usize> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("while reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("while parsing {}", path.display()))?;
    let items = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) if o.get("integrations").is_some_and(Value::is_array) => {
            o["integrations"].as_array().cloned().unwrap_or_default()
        }
        _ => anyhow::bail!("{}: expected an array of integrations", path.display()),
    };
    let mut defs = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let m = item
            .as_object()
            .with_context(|| format!("{}: entry {n} is not an object", path.display()))?;
        let env = match m.get("env").and_then(Value::as_str) {
            None => crate::store::Env::Development,
            Some(e) => crate::store::Env::parse(e)
                .with_context(|| format!("{}: entry {n}: unknown env {e:?}", path.display()))?,
        };
        let def = workflow::parse_integration(m).map_err(|e| anyhow::anyhow!("{}: entry {n}: {e}", path.display()))?;
        defs.push((env, def));
    }
    let count = defs.len();
    let secrets = app.store.secrets.clone();
    app.store.write(move |c| {
        for (env, def) in &defs {
            integrations::upsert_by_name(c, &secrets, *env, def)?;
        }
        Ok(())
    })?;
    Ok(count)
}
