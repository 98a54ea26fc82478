//! Who is calling: an API key (`Authorization: Bearer`) or a user token (`x-alloy-user-token`).

use crate::error::ApiError;
use crate::http::{Ctx, Req};
use crate::ids;
use crate::store::{keys, users, Env};
use crate::tokens::Verified;

/// The header the embedded modal sends its user token in.
pub const USER_TOKEN_HEADER: &str = "x-alloy-user-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A server-to-server call with an API key of this environment.
    Key(Env),
    /// A frontend call on behalf of one user.
    User { env: Env, user: users::User },
}

impl Caller {
    pub fn env(&self) -> Env {
        match self {
            Caller::Key(env) | Caller::User { env, .. } => *env,
        }
    }

    /// The user a request acts for: `requested` (from path, query or body) with an API key; with
    /// a user token the token's user, and `requested` must be absent or name that same user.
    pub fn user_ref<'a>(&'a self, requested: Option<&'a str>) -> Result<&'a str, ApiError> {
        match (self, requested) {
            (Caller::Key(_), Some(r)) => Ok(r),
            (Caller::Key(_), None) => Err(ApiError::Unprocessable("userId is required".into())),
            (Caller::User { user, .. }, None) => Ok(&user.id),
            (Caller::User { user, .. }, Some(r)) if r == user.id || r == user.username => Ok(&user.id),
            (Caller::User { .. }, Some(_)) => {
                Err(ApiError::Forbidden("a user token can only act for its own user".into()))
            }
        }
    }
}

/// Requires an API key; returns its environment.
pub fn api_key(ctx: &Ctx, req: &Req) -> Result<Env, ApiError> {
    let presented = req
        .header("authorization")
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| key.starts_with("ingot_"))
        .ok_or(ApiError::Unauthorized)?;
    let (id, env) = keys::authenticate(&*ctx.db()?, presented)?.ok_or(ApiError::Unauthorized)?;
    ctx.app.note_key_use(id, ids::now_ms());
    Ok(env)
}

/// Requires a valid user token whose user still exists and is enabled.
pub fn user_token(ctx: &Ctx, req: &Req) -> Result<(Verified, users::User), ApiError> {
    let token = req.header(USER_TOKEN_HEADER).ok_or(ApiError::Unauthorized)?;
    let cfg = &ctx.app.config;
    let verified = ctx
        .app
        .signing
        .verify(&*ctx.db()?, token.trim(), &cfg.public_url, cfg.token_leeway)
        .map_err(|e| {
            log::debug!("{e}");
            ApiError::Unauthorized
        })?;
    let user = users::find(&*ctx.db()?, verified.env, &verified.user_id)?
        .filter(|u| u.id == verified.user_id && !u.disabled)
        .ok_or(ApiError::Unauthorized)?;
    Ok((verified, user))
}

/// Accepts an API key or, failing that, a user token.
pub fn api_key_or_user_token(ctx: &Ctx, req: &Req) -> Result<Caller, ApiError> {
    if req.header("authorization").is_none() && req.header(USER_TOKEN_HEADER).is_some() {
        let (verified, user) = user_token(ctx, req)?;
        return Ok(Caller::User {
            env: verified.env,
            user,
        });
    }
    api_key(ctx, req).map(Caller::Key)
}
