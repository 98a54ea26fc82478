//! Connecting a user's OAuth 2.0 account: the authorization URL, and the provider's callback
//! that turns the code into the user's sealed `oauth2` credential.

use super::{auth, workflows::scoped_user};
use crate::error::ApiError;
use crate::http::{log_detail, Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::oauth;
use crate::store::{credentials, integrations, oauth_states, Env, StoreError};
use serde_json::json;

/// Where providers send the user back.
fn redirect_uri(ctx: &Ctx) -> String {
    format!("{}/oauth/callback", ctx.app.config.public_url.trim_end_matches('/'))
}

/// The integration a request means: `integrationId`, else the one for `app` (its app or its
/// name) that has an OAuth provider.
fn integration_for(ctx: &Ctx, env: Env, req: &Req, app: Option<&str>) -> Result<integrations::Integration, ApiError> {
    if let Some(id) = req.query("integrationId").filter(|i| !i.is_empty()) {
        let i = integrations::get(&*ctx.db()?, env, id).map_err(|e| ApiError::from_store(e, "integration"))?;
        if i.oauth.is_none() {
            return Err(ApiError::Unprocessable(format!(
                "integration {} has no OAuth provider",
                i.id
            )));
        }
        return Ok(i);
    }
    let app = app
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::Unprocessable("app or integrationId is required".into()))?;
    integrations::list(&*ctx.db()?, env)?
        .into_iter()
        .find(|i| i.oauth.is_some() && (i.app == app || i.name == app))
        .ok_or_else(|| ApiError::NotFound(format!("no integration with an OAuth provider for app {app:?}")))
}

/// `GET /headless/oauthUrl?userId&app&credentialName&integrationId`, and the older
/// `GET /users/{userId}/credentials/{app}`: `{oauthUrl}` to send the user to.
pub fn url(ctx: &Ctx, req: &Req, user: Option<&str>, app: Option<&str>) -> Result<Resp, ApiError> {
    let caller = auth::caller(ctx)?;
    let env = caller.env();
    let user = scoped_user(ctx, &caller, user.or(req.query("userId")))?
        .ok_or_else(|| ApiError::Unprocessable("userId is required".into()))?;
    if user.disabled {
        return Err(ApiError::Forbidden("user is disabled".into()));
    }
    let integration = integration_for(ctx, env, req, app.or(req.query("app")))?;
    let provider = integration.oauth.clone().expect("chosen for its provider");
    let name = req
        .query("credentialName")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if let Some(n) = &name {
        super::check_text("credentialName", n, 254)?;
    }
    let (state, verifier, challenge) = oauth::new_state();
    let now = ctx.app.clock.now_ms();
    let secrets = ctx.app.store.secrets.clone();
    let (iid, st) = (integration.id.clone(), state.clone());
    ctx.write(move |c| {
        oauth_states::create(
            c,
            &secrets,
            env,
            &user.id,
            &iid,
            name.as_deref(),
            &st,
            &verifier,
            now,
            oauth::STATE_TTL_MS,
        )
    })?;
    let url = oauth::authorization_url(&provider, &redirect_uri(ctx), &state, &challenge);
    Ok(Resp::ok(&json!({
        "oauthUrl": url,
        "expiresAt": rfc3339(now + oauth::STATE_TTL_MS),
    })))
}

/// A page for the person in the browser, or JSON for a program, as the request accepts.
fn answer(req: &Req, status: u16, title: &str, text: &str) -> Resp {
    if !req.header("accept").is_some_and(|a| a.contains("text/html")) {
        return if status == 200 {
            Resp::json(200, &json!({ "connected": true, "message": text }))
        } else {
            Resp::json(status, &json!({ "message": text }))
        };
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem\">\
         <h1>{}</h1><p>{}</p></body></html>",
        esc(title),
        esc(title),
        esc(text)
    );
    let mut resp = Resp::json(status, &json!({}));
    resp.body = page.into_bytes();
    resp.content_type = "text/html; charset=utf-8";
    resp.headers.push((
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'".into(),
    ));
    resp.headers.push(("Referrer-Policy", "no-referrer".into()));
    resp.headers.push(("Cache-Control", "no-store".into()));
    resp
}

fn refused(req: &Req, e: ApiError) -> Resp {
    log_detail(&e);
    answer(req, e.status(), "Not connected", &e.public_message())
}

/// `GET /oauth/callback?code&state` (or `?error&state`): no auth but the state, which is
/// single use and bound to the user who asked. The tokens become that user's sealed `oauth2`
/// credential.
pub fn callback(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    Ok(match complete(ctx, req) {
        Ok(name) => answer(
            req,
            200,
            "Connected",
            &format!("{name} is connected. You can close this window."),
        ),
        Err(e) => refused(req, e),
    })
}

fn complete(ctx: &Ctx, req: &Req) -> Result<String, ApiError> {
    let state = req
        .query("state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the callback has no state".into()))?
        .to_string();
    let now = ctx.app.clock.now_ms();
    let secrets = ctx.app.store.secrets.clone();
    let pending = ctx
        .write(move |c| oauth_states::take(c, &secrets, &state, now))
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("no authorization with this state; start again".into()),
            e => ApiError::from_store(e, "authorization"),
        })?;
    if let Some(error) = req.query("error") {
        let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        return Err(ApiError::BadRequest(format!("the provider did not authorize: {error}")));
    }
    let code = req
        .query("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::BadRequest("the callback has no code".into()))?;
    let env = pending.env;
    let integration = integrations::get(&*ctx.db()?, env, &pending.integration_id)
        .map_err(|e| ApiError::from_store(e, "integration"))?;
    let (provider, secret) = oauth::provider_of(ctx.app, &*ctx.db()?, env, &integration.id)?
        .ok_or_else(|| ApiError::Unprocessable("the integration no longer has an OAuth provider".into()))?;
    // A call to the provider: no turn is held while it is waited on (see `admission`).
    let exchanged = {
        let db = ctx.db()?;
        ctx.outside(|| {
            oauth::exchange_code(
                ctx.app,
                &db,
                env,
                &provider,
                &secret,
                code,
                &pending.verifier,
                &redirect_uri(ctx),
            )
        })
    };
    let tokens = exchanged.map_err(|e| ApiError::BadGateway(format!("the code could not be exchanged: {e}")))?;
    let plaintext =
        serde_json::to_vec(&oauth::credential_data(&tokens)).map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = pending
        .credential_name
        .clone()
        .unwrap_or_else(|| integration.name.clone());
    let max = ctx.app.config.max_credentials;
    let secrets = ctx.app.store.secrets.clone();
    ctx.write(move |c| {
        if credentials::count_for_user(c, &pending.user_id)? >= max {
            return Err(StoreError::Invalid(format!(
                "the user already has the most credentials allowed ({max})"
            )));
        }
        credentials::insert(c, &secrets, env, &pending.user_id, "oauth2", Some(&name), &plaintext)
    })
    .map_err(|e| ApiError::from_store(e, "user"))?;
    Ok(integration.name)
}
