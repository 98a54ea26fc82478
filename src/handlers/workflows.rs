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
    // A token minted from an install link spends the link with the install it makes.
    let link = match &caller {
        auth::Caller::User { link, .. } => link.clone(),
        auth::Caller::Key(_) => None,
    };
    let now = ctx.app.clock.now_ms();
    let installed = ctx
        .write(move |c| {
            let installed = workflows::install(c, env, &user.id, &integration, credential_id.as_deref(), None)?;
            if let (Some(link), Some(first)) = (&link, installed.first()) {
                let iid = first.integration_id.as_deref().unwrap_or_default();
                crate::store::installs::spend_link(c, link, iid, now)?;
            }
            Ok(installed)
        })
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

/// `GET /workflows/{workflowId}?userId`: a user's workflow, or a template workflow of the
/// environment (readable with an API key and any user token, so the modal can show it).
pub fn get(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let err = match visible(ctx, &caller, id, req.query("userId")) {
        Ok((_, wf)) => return Ok(Resp::ok(&json!({ "data": workflow_json(&wf) }))),
        Err(e) => e,
    };
    let Some((integration, template)) = integrations::template(&*ctx.db()?, caller.env(), id)? else {
        return Err(err);
    };
    let mine = match scoped_user(ctx, &caller, req.query("userId"))? {
        Some(u) => workflows::list_for_user(&*ctx.db()?, &u.id, None)?,
        None => Vec::new(),
    };
    let copy = mine
        .iter()
        .find(|w| w.parent_workflow_id.as_deref() == Some(template.workflow_id.as_str()));
    Ok(Resp::ok(&json!({ "data": {
        "workflowId": template.workflow_id,
        "integrationId": integration.id,
        "parentWorkflowId": null,
        "template": true,
        "name": template.name,
        "trigger": template.trigger,
        "createdAt": rfc3339(integration.created_at),
        "updatedAt": rfc3339(integration.updated_at),
        "installed": copy.is_some(),
        "active": copy.is_some_and(|w| w.active),
        "version": integration.version,
        "installedVersion": copy.and_then(|w| w.installed_version),
        "blocks": template.blocks.iter().map(|b| b.summary()).collect::<Vec<_>>(),
    }})))
}

/// `GET /workflows/{workflowId}/versions?userId`: the versions of the integration a user's
/// workflow came from, oldest first, each marked against the version the user has.
pub fn versions(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let (env, wf) = visible(ctx, &caller, id, req.query("userId"))?;
    let integration_id = wf
        .integration_id
        .as_deref()
        .ok_or_else(|| ApiError::Unprocessable("the workflow was not installed from an integration".into()))?;
    let integration = integrations::get(&*ctx.db()?, env, integration_id).map_err(workflow_not_found)?;
    let installed = wf.installed_version.unwrap_or(0);
    let data: Vec<Value> = integrations::versions(&*ctx.db()?, integration_id)?
        .iter()
        .filter(|v| {
            let has = |t: &crate::workflow::TemplateWorkflow| {
                Some(t.workflow_id.as_str()) == wf.parent_workflow_id.as_deref()
            };
            v.workflows.iter().any(has)
        })
        .map(|v| {
            let status = match v.version.cmp(&installed) {
                std::cmp::Ordering::Equal => "installed",
                std::cmp::Ordering::Greater if v.version == integration.version => "latest",
                std::cmp::Ordering::Greater => "newer",
                std::cmp::Ordering::Less => "older",
            };
            json!({
                "versionId": format!("{}.{}", integration.id, v.version),
                "version": v.version,
                "versionName": format!("v{}", v.version),
                "lastModified": rfc3339(v.created_at),
                "status": status,
            })
        })
        .collect();
    Ok(Resp::ok(&json!({ "data": data })))
}

/// `PUT /workflows/{workflowId}/upgrade?userId`: moves a user's workflow to its integration's
/// newest version; `upgraded` is false when it was there already.
pub fn upgrade(ctx: &Ctx, req: &Req, id: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let (env, wf) = visible(ctx, &caller, id, req.query("userId"))?;
    let upgraded = ctx
        .write(move |c| workflows::upgrade(c, env, &wf.id))
        .map_err(workflow_not_found)?;
    let (_, now) = visible(ctx, &caller, id, req.query("userId"))?;
    Ok(Resp::ok(
        &json!({ "upgraded": upgraded, "installedVersion": now.installed_version }),
    ))
}

/// `GET /workflows/{workflowId}/analytics`: totals from stored runs, for a user's workflow or
/// (by a template id) for every user's copy.
pub fn analytics(ctx: &Ctx, _req: &Req, id: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let is_users = workflows::get(&*ctx.db()?, env, id, None).is_ok();
    if !is_users && integrations::template(&*ctx.db()?, env, id)?.is_none() {
        return Err(ApiError::NotFound("workflow not found".into()));
    }
    let a = workflows::analytics(&*ctx.db()?, env, id)?;
    Ok(Resp::ok(&json!({
        "totalAppActions": a.app_actions,
        "totalWorkflowRuns": a.runs,
        "totalErrors": a.errors,
    })))
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
    Ok(integrations::template(&*ctx.db()?, env, workflow_id)?.is_some())
}
