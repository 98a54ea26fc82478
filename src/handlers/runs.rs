//! Starting runs: `POST /run/workflow`, `POST /run/event`, and reruns.
//!
//! Every check (user, workflow, inputs, credentials) happens inside the write that queues the
//! run, so what is checked is what is queued.

use super::{auth, json_body};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::store::{executions, users, workflows, Env, StoreError};
use crate::workflow;
use rusqlite::Connection;
use serde_json::{json, Value};

/// Checks that `wf` of `user` can run with `data` now.
fn check_runnable(
    conn: &Connection,
    env: Env,
    user: &users::User,
    wf: &workflows::Workflow,
    data: &Value,
) -> Result<(), StoreError> {
    if user.disabled {
        return Err(StoreError::Invalid(
            "user is disabled; their workflows do not run".into(),
        ));
    }
    if !wf.active {
        return Err(StoreError::Invalid(format!("workflow {} is not active", wf.id)));
    }
    let missing = workflow::missing_inputs(&wf.blocks, data);
    if !missing.is_empty() {
        return Err(StoreError::Invalid(format!(
            "data lacks {} used by the workflow's placeholders",
            missing.join(", ")
        )));
    }
    for b in wf.blocks.iter().filter(|b| b.kind == "http") {
        crate::engine::credential_for(conn, env, wf, b)?;
    }
    Ok(())
}

fn run_data(body: &super::Body) -> Value {
    body.get("data").cloned().unwrap_or_else(|| json!({}))
}

/// The user a run is for: `404` when unknown, `403` when disabled.
fn runnable_user(ctx: &Ctx, env: Env, user_ref: &str) -> Result<users::User, ApiError> {
    let user = users::get(&*ctx.db()?, env, user_ref).map_err(|e| ApiError::from_store(e, "user"))?;
    if user.disabled {
        return Err(ApiError::Forbidden(
            "user is disabled; their workflows do not run".into(),
        ));
    }
    Ok(user)
}

/// `POST /run/workflow` `{userId, workflowId or workflowName, data}`
pub fn run_workflow(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let body = json_body(req)?;
    let user_ref = body.req_str("userId")?.to_string();
    let (id, name) = (
        body.opt_str("workflowId")?.map(str::to_string),
        body.opt_str("workflowName")?.map(str::to_string),
    );
    if id.is_none() && name.is_none() {
        return Err(ApiError::Unprocessable("workflowId or workflowName is required".into()));
    }
    let data = run_data(&body);
    runnable_user(ctx, env, &user_ref)?;
    let execution_id = ctx
        .write(move |c| {
            let user = users::get(c, env, &user_ref)?;
            let wf = workflows::find_for_user(c, &user.id, id.as_deref(), name.as_deref())?;
            check_runnable(c, env, &user, &wf, &data)?;
            executions::enqueue(c, &wf.id, &user.id, &data)
        })
        .map_err(|e| ApiError::from_store(e, "user or workflow"))?;
    ctx.app.engine.enqueue(env, execution_id.clone());
    Ok(Resp::ok(&json!({ "message": "success", "executionId": execution_id })))
}

/// `POST /run/event` `{event, userId, data}`: runs every active workflow of the user whose
/// trigger is that event.
pub fn run_event(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let body = json_body(req)?;
    let event = body.req_str("event")?.to_string();
    let user_ref = body.req_str("userId")?.to_string();
    let data = run_data(&body);
    runnable_user(ctx, env, &user_ref)?;
    let ev = event.clone();
    let ids = ctx
        .write(move |c| {
            let user = users::get(c, env, &user_ref)?;
            if user.disabled {
                return Err(StoreError::Invalid(
                    "user is disabled; their workflows do not run".into(),
                ));
            }
            let listening = workflows::listening_for(c, &user.id, &ev)?;
            for wf in &listening {
                check_runnable(c, env, &user, wf, &data)?;
            }
            listening
                .iter()
                .map(|wf| executions::enqueue(c, &wf.id, &user.id, &data))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| ApiError::from_store(e, "user"))?;
    for id in &ids {
        ctx.app.engine.enqueue(env, id.clone());
    }
    let message = if ids.is_empty() {
        format!("no active workflow of this user listens for {event:?}")
    } else {
        "success".to_string()
    };
    Ok(Resp::ok(&json!({ "message": message, "executionIds": ids })))
}

/// `POST /workflows/{workflowId}/rerun/{executionId}?userId`: the same inputs, a new run.
pub fn rerun(ctx: &Ctx, req: &Req, workflow_id: &str, execution_id: &str) -> Result<Resp, ApiError> {
    let caller = auth::Caller::Key(auth::key_env(ctx)?);
    let (env, wf) = super::workflows::visible(ctx, &caller, workflow_id, req.query("userId"))?;
    let old = executions::get(&*ctx.db()?, &wf.id, execution_id)?
        .ok_or_else(|| ApiError::NotFound("execution not found".into()))?;
    let new_id = ctx
        .write(move |c| {
            let user = users::get(c, env, &wf.user_id)?;
            let wf = workflows::get(c, env, &wf.id, None)?;
            check_runnable(c, env, &user, &wf, &old.inputs)?;
            executions::enqueue(c, &wf.id, &user.id, &old.inputs)
        })
        .map_err(|e| ApiError::from_store(e, "workflow"))?;
    ctx.app.engine.enqueue(env, new_id.clone());
    Ok(Resp::ok(&json!({ "message": "success", "executionUuid": new_id })))
}
