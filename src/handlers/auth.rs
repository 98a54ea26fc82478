//! Who is calling: an API key (`Authorization: Bearer`) or a user token (`x-alloy-user-token`).
//!
//! [`authenticate`] is the one place credentials are checked: `dispatch` calls it with the
//! route's declared [`Auth`] before any handler runs, and handlers read the result from their
//! `Ctx` ([`key_env`], [`caller`], [`token_user`]).

use crate::error::ApiError;
use crate::http::{Ctx, Req};
use crate::ids;
use crate::limits::Subject;
use crate::router::Auth;
use crate::store::{keys, users, Env};

/// The header the embedded modal sends its user token in.
pub const USER_TOKEN_HEADER: &str = "x-alloy-user-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A server-to-server call with an API key of this environment.
    Key(Env),
    /// A frontend call on behalf of one user, with its token's expiry.
    User {
        env: Env,
        user: users::User,
        expires_at_ms: i64,
        /// The install link the token came from, spent by the install it makes.
        link: Option<String>,
    },
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

/// Checks the request's credentials as `rule` says; the caller and whose rate limit the
/// request counts against, or `None` for open routes.
pub fn authenticate(ctx: &Ctx, req: &Req, rule: Auth) -> Result<Option<(Caller, Subject)>, ApiError> {
    let by_token = req.header("authorization").is_none() && req.header(USER_TOKEN_HEADER).is_some();
    match rule {
        Auth::None => Ok(None),
        Auth::UserToken => user_caller(ctx, req).map(Some),
        Auth::KeyOrUserToken if by_token => user_caller(ctx, req).map(Some),
        Auth::ApiKey | Auth::KeyOrUserToken => {
            let (id, env) = check_api_key(ctx, req)?;
            Ok(Some((Caller::Key(env), Subject::Key(id))))
        }
    }
}

fn user_caller(ctx: &Ctx, req: &Req) -> Result<(Caller, Subject), ApiError> {
    let caller = check_user_token(ctx, req)?;
    let Caller::User { user, .. } = &caller else {
        unreachable!("check_user_token makes users")
    };
    let subject = Subject::User(user.id.clone());
    Ok((caller, subject))
}

/// The environment of the API key this request was authenticated with.
pub fn key_env(ctx: &Ctx) -> Result<Env, ApiError> {
    match ctx.caller() {
        Some(Caller::Key(env)) => Ok(*env),
        Some(Caller::User { .. }) => Err(ApiError::Unauthorized),
        None => Err(ApiError::Internal(
            "a handler wanted an API key its route does not declare".into(),
        )),
    }
}

/// Who this request was authenticated as.
pub fn caller(ctx: &Ctx) -> Result<Caller, ApiError> {
    ctx.caller()
        .cloned()
        .ok_or_else(|| ApiError::Internal("a handler wanted a caller its route does not declare".into()))
}

/// The user of the user token this request was authenticated with, and the token's expiry.
pub fn token_user(ctx: &Ctx) -> Result<(users::User, i64), ApiError> {
    match ctx.caller() {
        Some(Caller::User {
            user, expires_at_ms, ..
        }) => Ok((user.clone(), *expires_at_ms)),
        Some(Caller::Key(_)) => Err(ApiError::Unauthorized),
        None => Err(ApiError::Internal(
            "a handler wanted a user token its route does not declare".into(),
        )),
    }
}

/// Requires an API key; returns its id and environment.
fn check_api_key(ctx: &Ctx, req: &Req) -> Result<(String, Env), ApiError> {
    let presented = req
        .header("authorization")
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .filter(|key| key.starts_with("ingot_"))
        .ok_or(ApiError::Unauthorized)?;
    let (id, env) = keys::authenticate(&*ctx.db()?, presented)?.ok_or(ApiError::Unauthorized)?;
    ctx.app.note_key_use(id.clone(), ids::now_ms());
    Ok((id, env))
}

/// Requires a valid user token whose user still exists and is enabled.
fn check_user_token(ctx: &Ctx, req: &Req) -> Result<Caller, ApiError> {
    let token = req.header(USER_TOKEN_HEADER).ok_or(ApiError::Unauthorized)?;
    let cfg = &ctx.app.config;
    let verified = ctx
        .app
        .signing
        .verify(
            &*ctx.db()?,
            token.trim(),
            &cfg.public_url,
            cfg.token_leeway,
            ctx.app.clock.now_ms(),
        )
        .map_err(|e| {
            log::debug!("{e}");
            ApiError::Unauthorized
        })?;
    let user = users::find(&*ctx.db()?, verified.env, &verified.user_id)?
        .filter(|u| u.id == verified.user_id && !u.disabled)
        .ok_or(ApiError::Unauthorized)?;
    Ok(Caller::User {
        env: verified.env,
        user,
        expires_at_ms: verified.expires_at_ms,
        link: verified.link,
    })
}
