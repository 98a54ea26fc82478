//! Users' workflows: install, list, read, (de)activate, delete, and who has one.

use super::{auth, json_body};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::store::{integrations, users, workflows, Env, StoreError};
use serde_json::{json, Value};

/// The documented `Workflow` object (and a few ext fields).
pub fn workflow_json(w: &workflows::Workflow) -> Value {
    json!({
        "workflowId": w.id,
        "integrationId": w.integration_id,
        "parentWorkflowId": w.parent_workflow_id,
        "userId": w.user_id,
        "name": w.name,
        "trigger": w.trigger,
        "createdAt": rfc3339(w.created_at),
        "updatedAt": rfc3339(w.updated_at),
        "installed": w.installed_version.is_some(),
        "active": w.active,
        "version": w.version,
        "installedVersion": w.installed_version,
        "installedAt": w.installed_at.map(rfc3339),
        "credentialId": w.credential_id,
        "blocks": w.blocks.iter().map(|b| b.summary()).collect::<Vec<_>>(),
    })
}

/// The user a workflow call is scoped to: a user token's user, or with an API key the user
/// named by `requested` (404 when unknown); `None` for an API key naming nobody.
pub fn scoped_user(ctx: &Ctx, caller: &auth::Caller, requested: Option<&str>) -> Result<Option<users::User>, ApiError> {
    match (caller, requested.filter(|r| !r.is_empty())) {
        (auth::Caller::Key(_), None) => Ok(None),
        (caller, requested) => {
            let reference = caller.user_ref(requested)?;
            users::get(&*ctx.db()?, caller.env(), reference)
                .map(Some)
                .map_err(|e| ApiError::from_store(e, "user"))
        }
    }
}

fn workflow_not_found(e: StoreError) -> ApiError {
    ApiError::from_store(e, "workflow")
}

/// `POST /users/{userId}/integrations/{integrationId}/install` `{credentialId?}`
pub fn install(ctx: &Ctx, req: &Req, user: &str, integration: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let env = caller.env();
    let user = scoped_user(ctx, &caller, Some(user))?.expect("a user was named");
    integrations::get(&*ctx.db()?, env, integration).map_err(|e| ApiError::from_store(e, "integration"))?;
    let credential_id = if req.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        json_body(req)?.opt_str("credentialId")?.map(str::to_string)
    };
    let integration = integration.to_string();
    let installed = ctx
        .write(move |c| workflows::install(c, env, &user.id, &integration, credential_id.as_deref()))
        .map_err(|e| ApiError::from_store(e, "user or integration"))?;
    Ok(Resp::ok(
        &json!({ "data": installed.iter().map(workflow_json).collect::<Vec<_>>() }),
    ))
}

/// `GET /workflows?userId&integration`
pub fn list(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let user = scoped_user(ctx, &caller, req.query("userId"))?
        .ok_or_else(|| ApiError::Unprocessable("userId is required".into()))?;
    let app = req.query("integration").filter(|s| !s.is_empty());
    let found = workflows::list_for_user(&*ctx.db()?, &user.id, app)?;
    Ok(Resp::ok(
        &json!({ "data": found.iter().map(workflow_json).collect::<Vec<_>>() }),
    ))
}

/// A workflow the caller may see: with a user token, only that user's.
pub fn visible(
    ctx: &Ctx,
    caller: &auth::Caller,
    id: &str,
    requested_user: Option<&str>,
) -> Result<(Env, workflows::Workflow), ApiError> {
    let user = scoped_user(ctx, caller, requested_user)?;
    let wf = workflows::get(&*ctx.db()?, caller.env(), id, user.as_ref().map(|u| u.id.as_str()))
        .map_err(workflow_not_found)?;
    Ok((caller.env(), wf))
}

/// `GET /workflows/{workflowId}?userId`
pub fn get(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let (_, wf) = visible(ctx, &caller, id, req.query("userId"))?;
    Ok(Resp::ok(&json!({ "data": workflow_json(&wf) })))
}

/// `DELETE /workflows/{workflowId}?userId`: the workflow and its executions.
pub fn delete(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let caller = auth::Caller::Key(auth::key_env(ctx)?);
    let (_, wf) = visible(ctx, &caller, id, req.query("userId"))?;
    ctx.write(move |c| workflows::delete(c, &wf.id))
        .map_err(workflow_not_found)?;
    Ok(Resp::ok(&json!({ "deleted": true })))
}

/// `PUT /workflows/activate` and `/deactivate`: `{userId, workflowId or workflowName}`
pub fn set_active(ctx: &Ctx, req: &Req, active: bool) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let body = json_body(req)?;
    let user = scoped_user(ctx, &caller, body.opt_str("userId")?)?
        .ok_or_else(|| ApiError::Unprocessable("userId is required".into()))?;
    let (id, name) = (body.opt_str("workflowId")?, body.opt_str("workflowName")?);
    if id.is_none() && name.is_none() {
        return Err(ApiError::Unprocessable("workflowId or workflowName is required".into()));
    }
    let wf = workflows::find_for_user(&*ctx.db()?, &user.id, id, name).map_err(workflow_not_found)?;
    ctx.write(move |c| workflows::set_active(c, &wf.id, active))?;
    Ok(Resp::ok(&json!({ "activated": active })))
}

/// `GET /workflows/{workflowId}/users`: who has this workflow (a template workflow id lists
/// every user who installed it).
pub fn users(ctx: &Ctx, _req: &Req, id: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let rows = workflows::users_of(&*ctx.db()?, env, id)?;
    if rows.is_empty() && !template_exists(ctx, env, id)? {
        return Err(ApiError::NotFound("workflow not found".into()));
    }
    let data: Vec<Value> = rows
        .iter()
        .map(|(u, w)| {
            json!({
                "userId": u.id,
                "username": u.username,
                "fullName": u.full_name,
                "workflowActive": w.active,
                "installedVersion": w.installed_version,
                "installedAt": w.installed_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Resp::ok(&json!({ "data": data })))
}

fn template_exists(ctx: &Ctx, env: Env, workflow_id: &str) -> Result<bool, ApiError> {
    Ok(integrations::list(&*ctx.db()?, env)?
        .iter()
        .any(|i| i.workflows.iter().any(|w| w.workflow_id == workflow_id)))
}
