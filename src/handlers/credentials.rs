//! The Credentials API. Credential data goes in sealed and never comes back out.

use super::{auth, check_required_text, check_text, json_body, opt_str, req_object};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::outbound;
use crate::store::{credentials, users, Env, StoreError};
use serde_json::{json, Map, Value};

const MAX_TYPE: usize = 128;
const MAX_NAME: usize = 254;

fn not_found(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| ApiError::from_store(e, what)
}

/// `POST /headless/credentials`: `{userId, credential: {type, name?, data}}`
pub fn create_headless(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let body = json_body(req)?;
    let user = caller.user_ref(body.opt_str("userId")?)?.to_string();
    let credential = body.req_object("credential")?;
    store(ctx, caller.env(), user, credential)
}

/// `POST /users/{userId}/credentials`: `{type, name?, data}`
pub fn create_for_user(ctx: &Ctx, req: &Req, user: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let user = caller.user_ref(Some(user))?.to_string();
    let body = json_body(req)?;
    store(ctx, caller.env(), user, &body.0)
}

fn store(ctx: &Ctx, env: Env, user: String, credential: &Map<String, Value>) -> Result<Resp, ApiError> {
    let kind = opt_str(credential.get("type"), "type")?
        .ok_or_else(|| ApiError::Unprocessable("credential type is required".into()))?
        .to_string();
    check_required_text("type", &kind, MAX_TYPE)?;
    let name = opt_str(credential.get("name"), "name")?.map(str::to_string);
    if let Some(n) = &name {
        check_text("name", n, MAX_NAME)?;
    }
    let data = req_object(credential.get("data"), "data")?;
    let types = super::metadata::types(&*ctx.db()?, env)?;
    let t = types.iter().find(|t| t.name == kind).ok_or_else(|| {
        let known: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        ApiError::Unprocessable(format!(
            "type {kind:?} is not a credential type (known: {}; see GET /metadata/credentials)",
            known.join(", ")
        ))
    })?;
    crate::credtypes::check_data(t, data).map_err(ApiError::Unprocessable)?;
    check_header_fields(data)?;
    let plaintext = serde_json::to_vec(data).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (max_bytes, max_count) = (ctx.app.config.max_credential_bytes, ctx.app.config.max_credentials);
    if plaintext.len() > max_bytes {
        return Err(ApiError::Unprocessable(format!(
            "credential data is over the limit of {max_bytes} bytes (INGOT_MAX_CREDENTIAL_BYTES)"
        )));
    }
    let secrets = ctx.app.store.secrets.clone();
    let c = ctx
        .write(move |c| {
            // Counted inside the write, so concurrent creates cannot pass the cap together.
            let owner = users::get(c, env, &user)?;
            if credentials::count_for_user(c, &owner.id)? >= max_count {
                return Err(StoreError::Invalid(format!(
                    "the user already has the most credentials allowed ({max_count}, INGOT_MAX_CREDENTIALS_PER_USER)"
                )));
            }
            credentials::insert(c, &secrets, env, &owner.id, &kind, name.as_deref(), &plaintext)
        })
        .map_err(not_found("user"))?;
    Ok(Resp::ok(&json!({ "success": true, "credentialId": c.id })))
}

/// The fields that become a request header when a workflow runs (see `engine`) must make a
/// valid header that cannot change how the request is framed or routed. The message names
/// the field, never its value.
pub(crate) fn check_header_fields(data: &Map<String, Value>) -> Result<(), ApiError> {
    let text = |k: &str| data.get(k).and_then(Value::as_str);
    if let Some(name) = text("fieldName") {
        if !outbound::is_header_name(name) {
            return Err(ApiError::Unprocessable(
                "data.fieldName must be a header name (letters, digits and !#$%&'*+-.^_`|~)".into(),
            ));
        }
        if outbound::is_reserved_header(name) {
            return Err(ApiError::Unprocessable(format!(
                "data.fieldName {name:?} is refused: it would change how the request is framed or routed, \
                 or it is ingot's own signature"
            )));
        }
    }
    for field in ["value", "token", "apiKey", "accessToken"] {
        if text(field).is_some_and(|v| !outbound::is_header_value(v)) {
            return Err(ApiError::Unprocessable(format!(
                "data.{field} must be visible ASCII with no leading or trailing space (the value is not shown)"
            )));
        }
    }
    Ok(())
}

/// `GET /credentials?userId` (the older form of the list)
pub fn list_by_query(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let user = caller
        .user_ref(req.query("userId").filter(|u| !u.is_empty()))?
        .to_string();
    list(ctx, req, &user)
}

/// `GET /users/{userId}/credentials` and `GET /credentials/users/{userId}`
pub fn list(ctx: &Ctx, _req: &Req, user: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let user = users::get(&*ctx.db()?, caller.env(), caller.user_ref(Some(user))?).map_err(not_found("user"))?;
    let data: Vec<Value> = credentials::list(&*ctx.db()?, &user.id)?
        .iter()
        .map(|c| {
            json!({
                "credentialId": c.id,
                "type": c.kind,
                "name": c.name,
                "createdAt": rfc3339(c.created_at),
                "updatedAt": rfc3339(c.updated_at),
            })
        })
        .collect();
    Ok(Resp::ok(&json!({ "data": data })))
}

/// `DELETE /users/{userId}/credentials/{credentialId}`
pub fn delete(ctx: &Ctx, _req: &Req, user: &str, credential: &str) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let env = caller.env();
    let user = caller.user_ref(Some(user))?.to_string();
    let credential = credential.to_string();
    ctx.write(move |c| credentials::delete(c, env, &user, &credential))
        .map_err(not_found("user or credential"))?;
    Ok(Resp::ok(&json!({ "success": true })))
}
