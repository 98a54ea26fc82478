//! The Users API.

use super::{auth, check_required_text, check_text, json_body, opt_str, query_number, Body};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::store::{users, StoreError};
use crate::tokens;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The longest username, in characters.
pub const MAX_USERNAME: usize = 254;
/// The longest full name, in characters.
pub const MAX_FULL_NAME: usize = 1024;
/// The most users one batch may create.
pub const MAX_BATCH: usize = 1000;

/// The documented `User` object.
/// Serialized straight from a struct rather than through a `Value`: a page of 1000 users is
/// the biggest answer ingot gives, and building maps for it cost more than the query.
pub fn user_json(u: &users::User) -> UserJson<'_> {
    UserJson {
        user_id: &u.id,
        username: &u.username,
        full_name: u.full_name.as_deref(),
        disabled: u.disabled,
        created_at: rfc3339(u.created_at),
        updated_at: rfc3339(u.updated_at),
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserJson<'a> {
    user_id: &'a str,
    username: &'a str,
    full_name: Option<&'a str>,
    disabled: bool,
    created_at: String,
    updated_at: String,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct UserPage<'a> {
    data: Vec<UserJson<'a>>,
    next_cursor: Option<String>,
}

fn not_found(e: StoreError) -> ApiError {
    ApiError::from_store(e, "user")
}

/// A username: required text within the cap, and never shaped like a userId. Users are found
/// by id or by username, so a username that looks like another user's id would let whoever
/// names it reach that other user (a token minted for `GET /users/<id>/token`, say).
fn check_username(username: &str) -> Result<(), ApiError> {
    check_required_text("username", username, MAX_USERNAME)?;
    if crate::ids::is_object_id(&username.to_ascii_lowercase()) {
        return Err(ApiError::Unprocessable(
            "username must not be 24 hexadecimal characters: that is the shape of a userId".into(),
        ));
    }
    Ok(())
}

/// The username of a create body (`email` is accepted in its place) and the full name.
fn new_user_fields(body: &Body) -> Result<(String, Option<String>), ApiError> {
    let username = match (body.opt_str("username")?, body.opt_str("email")?) {
        (Some(u), _) | (None, Some(u)) => u,
        (None, None) => return Err(ApiError::Unprocessable("username is required".into())),
    };
    check_username(username)?;
    let full_name = body.opt_str("fullName")?;
    if let Some(f) = full_name {
        check_text("fullName", f, MAX_FULL_NAME)?;
    }
    Ok((username.to_string(), full_name.map(str::to_string)))
}

/// `POST /users`
pub fn create(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let (username, full_name) = new_user_fields(&json_body(req)?)?;
    let user = ctx.write(move |c| users::insert(c, env, &username, full_name.as_deref()))?;
    Ok(Resp::ok(
        &json!({ "userId": user.id, "username": user.username, "fullName": user.full_name }),
    ))
}

/// `POST /users/batch`: the valid rows are created together; the others come back with a reason.
pub fn create_batch(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let body = json_body(req)?;
    let rows = match body.get("users") {
        None => return Err(ApiError::Unprocessable("users is required".into())),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::BadRequest("users must be an array".into())),
    };
    if rows.len() > MAX_BATCH {
        return Err(ApiError::Unprocessable(format!(
            "users holds at most {MAX_BATCH} entries"
        )));
    }
    let mut invalid = Vec::new();
    let mut valid: Vec<(String, Option<String>)> = Vec::new();
    let mut seen = HashSet::new();
    for row in rows {
        let reject = |reason: String| {
            json!({
                "username": row.get("username").or_else(|| row.get("email")).cloned().unwrap_or(Value::Null),
                "fullName": row.get("fullName").cloned().unwrap_or(Value::Null),
                "reason": reason,
            })
        };
        let fields = match row {
            Value::Object(m) => new_user_fields(&Body(m.clone())),
            _ => Err(ApiError::BadRequest("each entry must be an object".into())),
        };
        match fields {
            Err(e) => invalid.push(reject(error_text(e))),
            Ok((username, _)) if !seen.insert(username.clone()) => invalid.push(reject(format!(
                "username {username:?} appears more than once in this batch"
            ))),
            Ok(fields) => valid.push(fields),
        }
    }
    let (created, taken) = ctx.write(move |c| {
        let mut created = Vec::new();
        let mut taken = Vec::new();
        for (username, full_name) in valid {
            match users::insert(c, env, &username, full_name.as_deref()) {
                Ok(u) => created.push(u),
                Err(StoreError::Conflict(reason)) => taken.push((username, full_name, reason)),
                Err(e) => return Err(e),
            }
        }
        Ok((created, taken))
    })?;
    for (username, full_name, reason) in taken {
        invalid.push(json!({ "username": username, "fullName": full_name, "reason": reason }));
    }
    Ok(Resp::ok(&json!({
        "message": format!("{} users created, {} invalid", created.len(), invalid.len()),
        "createdUsers": created.iter().map(|u| json!({ "userId": u.id, "username": u.username })).collect::<Vec<_>>(),
        "invalidUsers": invalid,
    })))
}

fn error_text(e: ApiError) -> String {
    e.public_message()
}

/// `GET /users`
pub fn list(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let limit = query_number(req, "limit", 1000, 1..=1000)? as usize;
    let filter = users::Filter {
        after: req.query("cursor").filter(|c| !c.is_empty()).map(str::to_string),
        prefix: req.query("q").filter(|q| !q.is_empty()).map(str::to_string),
        parent_workflow_id: req
            .query("parentWorkflowId")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        limit: limit + 1,
    };
    let mut found = users::list(&*ctx.db()?, env, &filter)?;
    let next = (found.len() > limit).then(|| {
        found.truncate(limit);
        found.last().map(|u| u.id.clone())
    });
    Ok(Resp::ok(&UserPage {
        data: found.iter().map(user_json).collect(),
        next_cursor: next.flatten(),
    }))
}

/// `GET /users/{userId}`
pub fn get(ctx: &Ctx, _req: &Req, user: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let u = users::get(&*ctx.db()?, env, user).map_err(not_found)?;
    Ok(Resp::ok(&user_json(&u)))
}

/// `PUT|PATCH /users/{userId}`
pub fn update(ctx: &Ctx, req: &Req, user: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let body = json_body(req)?;
    let mut patch = users::Patch::default();
    if let Some(u) = body.opt_str("username")? {
        check_username(u)?;
        patch.username = Some(u.to_string());
    }
    if body.has("fullName") {
        let f = opt_str(body.0.get("fullName"), "fullName")?;
        if let Some(f) = f {
            check_text("fullName", f, MAX_FULL_NAME)?;
        }
        patch.full_name = Some(f.map(str::to_string));
    }
    patch.disabled = body.opt_bool("disabled")?;
    let user = user.to_string();
    let u = ctx
        .write(move |c| users::update(c, env, &user, &patch))
        .map_err(not_found)?;
    Ok(Resp::ok(&user_json(&u)))
}

/// `DELETE /users/{userId}`: the user, their credentials, workflows and executions, together.
pub fn delete(ctx: &Ctx, _req: &Req, user: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let user = user.to_string();
    ctx.write(move |c| users::delete(c, env, &user)).map_err(not_found)?;
    Ok(Resp::ok(&json!({ "success": true })))
}

/// `GET /users/{userId}/token`
pub fn token(ctx: &Ctx, req: &Req, user: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let u = users::get(&*ctx.db()?, env, user).map_err(not_found)?;
    if let Some(q) = req.query("userId").filter(|q| !q.is_empty()) {
        if q != u.id && q != u.username {
            return Err(ApiError::Unprocessable(
                "the userId query names another user than the path".into(),
            ));
        }
    }
    if u.disabled {
        return Err(ApiError::Forbidden("user is disabled".into()));
    }
    let ttl = query_number(req, "ttl", tokens::MAX_TTL, tokens::MIN_TTL..=tokens::MAX_TTL)?;
    let pair = ctx
        .app
        .signing
        .current(&*ctx.db()?, &ctx.app.store.secrets)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = ctx.app.clock.now_ms();
    let (token, exp) = tokens::mint(
        &pair,
        &ctx.app.config.public_url,
        &tokens::Holder {
            user_id: &u.id,
            username: &u.username,
            env,
            link: None,
        },
        ttl,
        now,
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Resp::ok(&json!({ "token": token, "expiresAt": rfc3339(exp) })))
}

/// `PUT /users/{userId}/deactivate-workflows`
pub fn deactivate_workflows(ctx: &Ctx, _req: &Req, user: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let user = user.to_string();
    ctx.write(move |c| users::deactivate_workflows(c, env, &user))
        .map_err(not_found)?;
    Ok(Resp::ok(&json!({ "message": "Success" })))
}

/// `DELETE /users/{userId}/logs`: compliance erasure of a user's error logs.
pub fn delete_logs(ctx: &Ctx, _req: &Req, user: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let user = user.to_string();
    let n = ctx
        .write(move |c| users::delete_logs(c, env, &user))
        .map_err(not_found)?;
    Ok(Resp::ok(&json!({ "message": format!("Deleted {n} error logs") })))
}
