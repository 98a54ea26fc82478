//! What the modal and the SDKs read to build forms: credential types, apps, and events.

use super::auth;
use crate::credtypes::{self, CredentialType};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::store::{integrations, Env};
use crate::workflow;
use rusqlite::Connection;
use serde_json::{json, Value};

/// Every credential type of an environment: the built-ins, then those its integrations declare.
pub fn types(conn: &Connection, env: Env) -> Result<Vec<CredentialType>, ApiError> {
    let mut all = credtypes::builtins().to_vec();
    all.extend(integrations::declared_types(conn, env)?);
    Ok(all)
}

fn type_json(t: &CredentialType) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    v["builtIn"] = credtypes::builtins().iter().any(|b| b.name == t.name).into();
    v
}

/// `GET /metadata/credentials`
pub fn credentials(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let env = auth::caller(ctx)?.env();
    let data: Vec<Value> = types(&*ctx.db()?, env)?.iter().map(type_json).collect();
    Ok(Resp::ok(&json!({ "data": data })))
}

/// `GET /metadata/credentials/{app}`: the type named `app`, or the type an integration for
/// that app (by app or integration name) takes.
pub fn credential_for_app(ctx: &Ctx, _req: &Req, app: &str) -> Result<Resp, ApiError> {
    let env = auth::caller(ctx)?.env();
    let db = ctx.db()?;
    let all = types(&db, env)?;
    let for_app: Vec<_> = integrations::list(&db, env)?
        .into_iter()
        .filter(|i| i.app == app || i.name == app)
        .collect();
    let name = for_app.iter().find_map(|i| i.credential_type.as_deref()).unwrap_or(app);
    let t = all
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no credential type for app {app:?}")))?;
    let mut v = type_json(t);
    if let Some(icon) = for_app.iter().filter(|i| i.app == app).find_map(|i| i.icon.as_deref()) {
        v["icon"] = icon.into();
    }
    Ok(Resp::ok(&json!({ "data": v })))
}

/// `GET /metadata/apps` (`/apps` under older versions): the apps the environment's integrations
/// use, each with its icon, credential type and integrations.
pub fn apps(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let env = auth::caller(ctx)?.env();
    let mut apps: Vec<Value> = Vec::new();
    for i in integrations::list(&*ctx.db()?, env)? {
        let entry = json!({ "integrationId": i.id, "name": i.name });
        match apps.iter_mut().find(|a| a["app"] == i.app.as_str()) {
            Some(a) => {
                if let Some(v) = a["integrations"].as_array_mut() {
                    v.push(entry);
                }
                if a["icon"].is_null() {
                    a["icon"] = i.icon.into();
                }
            }
            None => apps.push(json!({
                "app": i.app,
                "name": i.app,
                "icon": i.icon,
                "credentialType": i.credential_type,
                "integrations": [entry],
            })),
        }
    }
    Ok(Resp::ok(&json!({ "data": apps })))
}

/// `GET /events`: the event names the environment's workflows listen to, each once.
pub fn events(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let env = auth::caller(ctx)?.env();
    let mut events: Vec<Value> = Vec::new();
    for i in integrations::list(&*ctx.db()?, env)? {
        for t in &i.workflows {
            let Some(name) = workflow::trigger_event(&t.trigger) else {
                continue;
            };
            let listener = json!({ "integrationId": i.id, "workflowId": t.workflow_id, "name": t.name });
            match events.iter_mut().find(|e| e["name"] == name) {
                Some(e) => {
                    if let Some(v) = e["workflows"].as_array_mut() {
                        v.push(listener);
                    }
                }
                None => events.push(json!({
                    "name": name,
                    "description": t.trigger.get("description").and_then(Value::as_str).unwrap_or_default(),
                    "body": t.trigger.get("body").cloned().unwrap_or(json!({})),
                    "workflows": [listener],
                })),
            }
        }
    }
    Ok(Resp::ok(&json!({ "data": events })))
}
