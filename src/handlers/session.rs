//! Health, the published keys (user tokens' JWKS, the request-signing PEM), and the session
//! behind a user token.

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

/// Free bytes on the file system that holds `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// `GET /readyz`: no auth; 200 when the server can do its work, else 503 naming why: the
/// database cannot be written (a real write, at most every five seconds), a worker or
/// delivery thread has died, or the disk beside the database is nearly full.
pub fn readyz(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let app = ctx.app;
    let mut problems = Vec::new();
    if let Err(why) = app.write_probe() {
        problems.push(format!("the database cannot be written: {why}"));
    }
    let (workers, deliverers) = (app.engine.dead(), app.delivery.dead());
    if workers > 0 {
        problems.push(format!("{workers} worker threads have died"));
    }
    if deliverers > 0 {
        problems.push(format!("{deliverers} delivery threads have died"));
    }
    let min = app.config.ready_min_free_mb.saturating_mul(1 << 20);
    match free_bytes(&app.config.db) {
        Some(free) if free < min => problems.push(format!(
            "the disk is nearly full: {} MiB free beside the database, under INGOT_READY_MIN_FREE_MB ({})",
            free >> 20,
            app.config.ready_min_free_mb
        )),
        None => problems.push("the free space beside the database cannot be read".into()),
        Some(_) => {}
    }
    let mut resp = if problems.is_empty() {
        Resp::ok(&json!({ "status": "ready" }))
    } else {
        Resp::json(
            503,
            &json!({ "status": "unavailable", "message": problems.join("; "), "reasons": problems }),
        )
    };
    resp.headers.push(("Cache-Control", "no-store".into()));
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

/// `GET /security/alloy_public_key.pem`: no auth; the public key that verifies
/// `X-Alloy-Signature` on every request ingot sends, as PEM SubjectPublicKeyInfo. The first
/// fetch on a new database makes the key (see `request_signing`).
pub fn request_signing_key(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let key = ctx.app.request_signing.key(&*ctx.db()?, &ctx.app.store)?;
    let mut resp = Resp::ok(&json!({}));
    resp.body = key.public_pem().into_bytes();
    resp.content_type = "application/x-pem-file";
    // Short: a key replaced by `ingot keys rotate-request-signing` is served within minutes.
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
