//! Where error logs go: the webhook and EventBridge settings, and the delivery log.

use super::{auth, json_body, query_number, Body};
use crate::delivery::webhook;
use crate::error::ApiError;
use crate::http::{Ctx, Req, Resp};
use crate::ids::rfc3339;
use crate::store::{deliveries, targets, Env};
use serde_json::{json, Value};

/// How long a rotated-out webhook secret keeps signing.
const PREVIOUS_SECRET_MS: i64 = 24 * 3600 * 1000;

fn webhook_json(t: Option<&targets::Target>) -> Value {
    match t {
        None => json!({ "url": null, "enabled": false, "secretHint": null, "failing": null }),
        Some(t) => json!({
            "url": t.config["url"],
            "enabled": t.enabled,
            "secretHint": t.secret_hint.as_ref().map(|h| format!("{}…{h}", webhook::SECRET_PREFIX)),
            "failing": t.failing,
            "updatedAt": rfc3339(t.updated_at),
        }),
    }
}

fn eventbridge_json(t: Option<&targets::Target>) -> Value {
    match t {
        None => json!({
            "accessKeyId": null, "secretAccessKey": null, "region": null, "eventBusName": null,
            "enabled": false, "endpoint": null, "failing": null,
        }),
        Some(t) => json!({
            "accessKeyId": t.config["accessKeyId"],
            "secretAccessKey": t.secret_hint.as_ref().map(|h| format!("****{h}")),
            "region": t.config["region"],
            "eventBusName": t.config["eventBusName"],
            "enabled": t.enabled,
            "endpoint": t.config["endpoint"],
            "failing": t.failing,
            "updatedAt": rfc3339(t.updated_at),
        }),
    }
}

/// `GET /settings/logging/webhook`
pub fn get_webhook(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    Ok(Resp::ok(&webhook_json(
        targets::get(&*ctx.db()?, env, targets::WEBHOOK)?.as_ref(),
    )))
}

/// `PUT /settings/logging/webhook` `{url, enabled}`: the first one makes the signing secret
/// and is the only answer (with rotation) that shows it in full.
pub fn put_webhook(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let body = json_body(req)?;
    let existing = targets::get(&*ctx.db()?, env, targets::WEBHOOK)?;
    let url = match (
        body.opt_str("url")?,
        existing.as_ref().and_then(|t| t.config["url"].as_str()),
    ) {
        (Some(u), _) | (None, Some(u)) => u.to_string(),
        (None, None) => return Err(ApiError::Unprocessable("url is required".into())),
    };
    (ctx.app.outbound.policy(env).check_url(&url)).map_err(|e| ApiError::Unprocessable(format!("url: {e}")))?;
    let enabled = enabled_of(&body, existing.as_ref())?;
    let secret = existing
        .as_ref()
        .and_then(|t| t.secret_sealed.as_ref())
        .is_none()
        .then(webhook::new_secret);
    let secrets = ctx.app.store.secrets.clone();
    let shown = secret.clone();
    let t = ctx.write(move |c| {
        targets::put(
            c,
            &secrets,
            env,
            targets::WEBHOOK,
            enabled,
            &json!({ "url": url }),
            secret.as_deref(),
        )
    })?;
    let mut answer = webhook_json(Some(&t));
    if let Some(s) = shown {
        answer["secret"] = s.into();
    }
    ctx.app.delivery.wake();
    Ok(Resp::ok(&answer))
}

fn enabled_of(body: &Body, existing: Option<&targets::Target>) -> Result<bool, ApiError> {
    Ok(body
        .opt_bool("enabled")?
        .unwrap_or_else(|| existing.map(|t| t.enabled).unwrap_or(true)))
}

/// `POST /settings/logging/webhook/rotate-secret`: a new secret, shown once; the old one keeps
/// signing (a second signature) for 24 hours.
pub fn rotate_webhook_secret(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    if targets::get(&*ctx.db()?, env, targets::WEBHOOK)?.is_none() {
        return Err(ApiError::NotFound("no webhook is configured".into()));
    }
    let secret = webhook::new_secret();
    let (secrets, shown) = (ctx.app.store.secrets.clone(), secret.clone());
    let until = ctx.app.clock.now_ms() + PREVIOUS_SECRET_MS;
    let t = ctx.write(move |c| targets::rotate_secret(c, &secrets, env, targets::WEBHOOK, &secret, until))?;
    let mut answer = webhook_json(Some(&t));
    answer["secret"] = shown.into();
    answer["previousSecretValidUntil"] = rfc3339(until).into();
    Ok(Resp::ok(&answer))
}

/// `GET /settings/logging/eventbridge`
pub fn get_eventbridge(ctx: &Ctx, _req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    Ok(Resp::ok(&eventbridge_json(
        targets::get(&*ctx.db()?, env, targets::EVENTBRIDGE)?.as_ref(),
    )))
}

/// `PUT /settings/logging/eventbridge`
/// `{accessKeyId, secretAccessKey, region, eventBusName, enabled, endpoint?}`; the secret may be
/// left out to keep the stored one.
pub fn put_eventbridge(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let body = json_body(req)?;
    let existing = targets::get(&*ctx.db()?, env, targets::EVENTBRIDGE)?;
    let key_id = body.req_str("accessKeyId")?.to_string();
    if key_id.is_empty() || !key_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::Unprocessable("accessKeyId must be letters and digits".into()));
    }
    let secret = body.opt_str("secretAccessKey")?.map(str::to_string);
    if secret.is_none() && existing.as_ref().and_then(|t| t.secret_sealed.as_ref()).is_none() {
        return Err(ApiError::Unprocessable("secretAccessKey is required".into()));
    }
    if secret
        .as_ref()
        .is_some_and(|s| s.len() < 8 || s.chars().any(char::is_control))
    {
        return Err(ApiError::Unprocessable(
            "secretAccessKey is not a valid secret access key".into(),
        ));
    }
    let region = body.req_str("region")?.to_string();
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ApiError::Unprocessable("region must look like us-east-1".into()));
    }
    let bus = body.opt_str("eventBusName")?.unwrap_or("default").to_string();
    super::check_required_text("eventBusName", &bus, 256)?;
    let endpoint = body.opt_str("endpoint")?.filter(|e| !e.is_empty()).map(str::to_string);
    if let Some(e) = &endpoint {
        (ctx.app.outbound.policy(env).check_url(e)).map_err(|m| ApiError::Unprocessable(format!("endpoint: {m}")))?;
    }
    let enabled = enabled_of(&body, existing.as_ref())?;
    let config = json!({ "accessKeyId": key_id, "region": region, "eventBusName": bus, "endpoint": endpoint });
    let secrets = ctx.app.store.secrets.clone();
    let t = ctx.write(move |c| {
        targets::put(
            c,
            &secrets,
            env,
            targets::EVENTBRIDGE,
            enabled,
            &config,
            secret.as_deref(),
        )
    })?;
    ctx.app.delivery.wake();
    Ok(Resp::ok(&eventbridge_json(Some(&t))))
}

fn delivery_json((d, attempts): &(deliveries::Delivery, Vec<deliveries::Attempt>)) -> Value {
    json!({
        "deliveryId": d.id,
        "target": d.target,
        "status": d.status,
        "errorLogId": d.error_log_id,
        "attempts": attempts.len(),
        "nextAttemptAt": (d.status == deliveries::PENDING).then(|| rfc3339(d.next_attempt_at)),
        "lastError": d.last_error,
        "createdAt": rfc3339(d.created_at),
        "updatedAt": rfc3339(d.updated_at),
        "attemptLog": attempts.iter().map(|a| json!({
            "attemptedAt": rfc3339(a.at),
            "statusCode": a.status_code,
            "error": a.error,
            "durationMs": a.duration_ms,
        })).collect::<Vec<_>>(),
    })
}

fn one_of<'a>(req: &'a Req, name: &str, allowed: &[&str]) -> Result<Option<&'a str>, ApiError> {
    match req.query(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v)),
        Some(_) => Err(ApiError::Unprocessable(format!(
            "{name} must be one of {}",
            allowed.join(", ")
        ))),
    }
}

/// `GET /settings/logging/deliveries?status&target&limit`
pub fn list_deliveries(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    let env: Env = auth::key_env(ctx)?;
    let status = one_of(
        req,
        "status",
        &[deliveries::PENDING, deliveries::DELIVERED, deliveries::FAILED],
    )?;
    let target = one_of(req, "target", &[targets::WEBHOOK, targets::EVENTBRIDGE])?;
    let limit = query_number(req, "limit", 100, 1..=1000)? as usize;
    let found = deliveries::list(&*ctx.db()?, env, status, target, limit)?;
    Ok(Resp::ok(
        &json!({ "data": found.iter().map(delivery_json).collect::<Vec<_>>() }),
    ))
}

/// `POST /settings/logging/deliveries/{id}/retry`: sends a failed delivery again.
pub fn retry_delivery(ctx: &Ctx, _req: &Req, id: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let id = id.to_string();
    let d = ctx
        .write(move |c| deliveries::retry(c, env, &id))
        .map_err(|e| ApiError::from_store(e, "delivery"))?;
    ctx.app.delivery.wake();
    Ok(Resp::ok(&delivery_json(&d)))
}

/// `POST /settings/logging/{webhook|eventbridge}/test`: a test event through the real path: an
/// error log of block type `test` and one delivery to that target, sent at once and recorded
/// like any other.
pub fn test_delivery(ctx: &Ctx, _req: &Req, target: &str) -> Result<Resp, ApiError> {
    let env = auth::key_env(ctx)?;
    let t = targets::get(&*ctx.db()?, env, target)?
        .ok_or_else(|| ApiError::Unprocessable(format!("the {target} is not set up yet")))?;
    if !t.enabled {
        return Err(ApiError::Unprocessable(format!(
            "the {target} is switched off; switch it on to test it"
        )));
    }
    let log = crate::store::error_logs::new_log(
        env,
        "ingot-test",
        "ingot-test",
        &crate::ids::object_id(),
        &crate::ids::uuid_v4(),
        "test",
        "Test event",
        "A test event from ingot: nothing failed.",
    );
    let target = target.to_string();
    let id = ctx.write(move |c| {
        crate::store::error_logs::insert(c, &log)?;
        deliveries::enqueue_one(c, &log, &target)
    })?;
    ctx.app.delivery.wake();
    Ok(Resp::ok(&delivery_json(&deliveries::get(&*ctx.db()?, env, &id)?)))
}
