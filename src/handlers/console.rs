//! The operator's console: an API key is exchanged for an `HttpOnly`, `SameSite=Strict`
//! session cookie scoped to the key's environment, and the console's page calls the JSON API
//! under `/console/api/…` with that cookie (and a CSRF token on every change) instead of the
//! key, which never stays in the browser. Those answers never carry CORS headers.

use super::{auth, json_body};
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::limits::Subject;
use crate::router::{self, Auth};
use crate::store::{console, keys, Env};
use serde_json::json;

const COOKIE: &str = "ingot_console";
/// The header the console's page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn cookie_of(req: &Req) -> Option<&str> {
    req.header("cookie")?
        .split(';')
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn set_cookie(ctx: &Ctx, value: &str, max_age_s: i64) -> String {
    let secure = if ctx.app.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

fn idle_ms(ctx: &Ctx) -> i64 {
    ctx.app.config.console_idle.as_millis() as i64
}

/// The session behind the request's cookie, or `401`.
fn session(ctx: &Ctx, req: &Req) -> Result<console::Session, ApiError> {
    let cookie = cookie_of(req).ok_or(ApiError::Unauthorized)?;
    let now = ctx.app.clock.now_ms();
    let s = console::find(&*ctx.db()?, cookie, now, idle_ms(ctx))?.ok_or(ApiError::Unauthorized)?;
    if console::needs_touch(&s, now) {
        let id = s.id.clone();
        ctx.write(move |c| console::touch(c, &id, now))?;
    }
    Ok(s)
}

/// A change must carry the session's CSRF token, and come from this server's own pages.
fn check_change(req: &Req, s: &console::Session) -> Result<(), ApiError> {
    let token = req.header(CSRF_HEADER).unwrap_or_default();
    if !crate::crypto::constant_time_eq(token.as_bytes(), s.csrf.as_bytes()) {
        return Err(ApiError::Forbidden("a console change needs its CSRF token".into()));
    }
    if let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) {
        let own = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        if own != Some(host) {
            return Err(ApiError::Forbidden(
                "a console change must come from the console's own origin".into(),
            ));
        }
    }
    Ok(())
}

fn session_json(s: &console::Session, idle_ms: i64) -> serde_json::Value {
    json!({
        "signedIn": true,
        "env": s.env.as_str(),
        "csrf": s.csrf,
        "keyId": s.key_id,
        "expiresAt": rfc3339((s.last_seen_at + idle_ms).min(s.created_at + console::MAX_LIFETIME_MS)),
    })
}

/// `POST /console/session` `{apiKey}`: signs in; `GET` says who is signed in; `DELETE` signs out.
pub fn session_route(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    match req.method.as_str() {
        "POST" => {
            let body = json_body(req)?;
            let presented = body.req_str("apiKey")?.trim().to_string();
            let (key_id, env) = keys::authenticate(&*ctx.db()?, &presented)?.ok_or(ApiError::Unauthorized)?;
            let now = ctx.app.clock.now_ms();
            let (cookie, s) = ctx.write(move |c| console::create(c, env, &key_id, now))?;
            let mut resp = Resp::ok(&session_json(&s, idle_ms(ctx)));
            resp.headers
                .push(("Set-Cookie", set_cookie(ctx, &cookie, console::MAX_LIFETIME_MS / 1000)));
            resp.headers.push(("Cache-Control", "no-store".into()));
            Ok(resp)
        }
        "GET" => {
            // Answered 200 either way: the page asks before it knows, and a browser logs a 401.
            let mut resp = match session(ctx, req) {
                Ok(s) => Resp::ok(&session_json(&s, idle_ms(ctx))),
                Err(ApiError::Unauthorized) => Resp::ok(&json!({ "signedIn": false })),
                Err(e) => return Err(e),
            };
            resp.headers.push(("Cache-Control", "no-store".into()));
            Ok(resp)
        }
        "DELETE" => {
            let s = session(ctx, req)?;
            check_change(req, &s)?;
            ctx.write(move |c| console::delete(c, &s.id))?;
            let mut resp = Resp::ok(&json!({ "signedOut": true }));
            resp.headers.push(("Set-Cookie", set_cookie(ctx, "", 0)));
            Ok(resp)
        }
        _ => Err(ApiError::MethodNotAllowed("GET, POST, DELETE")),
    }
}

fn key_json(k: &keys::ApiKey) -> serde_json::Value {
    json!({
        "id": k.id,
        "name": k.name,
        "env": k.env.as_str(),
        "createdAt": rfc3339(k.created_at),
        "lastUsedAt": k.last_used_at.map(rfc3339),
        "revokedAt": k.revoked_at.map(rfc3339),
    })
}

/// The console's own routes: the environment's API keys.
fn keys_route(ctx: &Ctx, req: &Req, env: Env, rest: &[String]) -> Result<Resp, ApiError> {
    match (req.method.as_str(), rest) {
        ("GET", []) => {
            let listed: Vec<_> = keys::list(&*ctx.db()?)?
                .iter()
                .filter(|k| k.env == env)
                .map(key_json)
                .collect();
            Ok(Resp::ok(&json!({ "data": listed })))
        }
        ("POST", []) => {
            let body = json_body(req)?;
            let name = body.opt_str("name")?.unwrap_or("console").to_string();
            super::check_required_text("name", &name, 100)?;
            let (k, full) = ctx.write(move |c| keys::create(c, env, &name))?;
            let mut v = key_json(&k);
            v["key"] = full.into();
            Ok(Resp::ok(&v))
        }
        ("DELETE", [id]) => {
            let owned = keys::list(&*ctx.db()?)?
                .iter()
                .any(|k| &k.id == id && k.env == env && k.revoked_at.is_none());
            if !owned {
                return Err(ApiError::NotFound("API key not found".into()));
            }
            let id = id.clone();
            ctx.write(move |c| keys::revoke(c, &id))?;
            Ok(Resp::ok(&json!({ "revoked": true })))
        }
        ("GET" | "POST", _) | ("DELETE", _) => Err(ApiError::NotFound("no such console route".into())),
        _ => Err(ApiError::MethodNotAllowed("GET, POST, DELETE")),
    }
}

/// `/console/api/{route}`: any API-key route, authenticated by the console's cookie.
pub fn api(ctx: &Ctx, req: &Req, rest: &[String]) -> Result<Resp, ApiError> {
    let s = session(ctx, req)?;
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        check_change(req, &s)?;
    }
    super::admit(ctx, &Subject::Key(s.key_id.clone()))?;
    if rest.first().map(String::as_str) == Some("keys") {
        return keys_route(ctx, req, s.env, &rest[1..]);
    }
    let route = router::route(&req.method, rest)?;
    if !matches!(route.auth(), Auth::ApiKey | Auth::KeyOrUserToken) {
        return Err(ApiError::NotFound("not a console route".into()));
    }
    ctx.set_caller(Some(auth::Caller::Key(s.env)));
    super::run(ctx, req, route)
}

/// Whether a path is the console's: its answers carry no CORS headers.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}
