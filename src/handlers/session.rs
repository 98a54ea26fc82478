//! Health, the published token keys, and the session behind a user token.

use super::auth;
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::store::signing;
use crate::tokens;
use serde_json::json;

/// `GET /healthz`: no auth; a liveness check that answers while the process serves. It takes
/// no read connection, so no unauthenticated caller can make it hold one.
pub fn healthz(_ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    Ok(Resp::ok(&json!({ "status": "ok" })))
}

/// The OpenAPI 3.1 document of every route (kept in the repository as `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// `GET /openapi.json`: no auth.
pub fn openapi(_ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let mut resp = Resp::ok(&json!({}));
    resp.body = OPENAPI.as_bytes().to_vec();
    resp.headers.push(("Cache-Control", "public, max-age=300".into()));
    Ok(resp)
}

/// `GET /.well-known/jwks.json`: every key that may still verify a live token.
pub fn jwks(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let since = tokens::retired_since(ctx.app.clock.now_ms(), ctx.app.config.token_leeway);
    let keys: Vec<_> = signing::published(&*ctx.db()?, since)?
        .iter()
        .map(|(kid, public)| tokens::jwk(kid, public))
        .collect();
    let mut resp = Resp::ok(&json!({ "keys": keys }));
    resp.headers.push(("Cache-Control", "public, max-age=300".into()));
    Ok(resp)
}

/// `GET /session`: who a user token belongs to, and until when.
pub fn session(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let (user, expires_at_ms) = auth::token_user(ctx)?;
    Ok(Resp::ok(&json!({
        "userId": user.id,
        "username": user.username,
        "expiresAt": rfc3339(expires_at_ms),
    })))
}

/// `POST /admin/backup`: a consistent copy of the whole database (both environments) into
/// `INGOT_BACKUP_DIR`, while serving; the newest `INGOT_BACKUP_KEEP` stay. The master key is not
/// in it. One at a time: another caller meanwhile gets 503.
pub fn backup(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    auth::key_env(ctx)?;
    static RUNNING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = RUNNING
        .try_lock()
        .map_err(|_| ApiError::Unavailable("a backup is already being written".into()))?;
    let (written, removed) = ctx.app.backup_now().map_err(|e| {
        let text = format!("{e:#}");
        if text.contains("No space") || text.contains("full") {
            ApiError::InsufficientStorage(text)
        } else {
            ApiError::Internal(text)
        }
    })?;
    Ok(Resp::ok(&json!({
        "path": written.path.display().to_string(),
        "bytes": written.bytes,
        "removed": removed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "masterKeyIncluded": false,
    })))
}
