//! Webhook delivery with Standard Webhooks signing and `X-Alloy-Signature` (where it may go is
//! `outbound`'s rule).

use super::Outcome;
use crate::outbound::header_text;
use crate::store::{deliveries::Delivery, error_logs, targets};
use crate::{ids, request_signing, App};
use base64::Engine;
use ring::hmac;
use rusqlite::Connection;
use std::time::Duration;

/// The prefix of every webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(ids::random_bytes(32))
    )
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the secret's decoded bytes.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|_| "the webhook secret is not base64".to_string())?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    Ok(format!("v1,{}", b64.encode(ctx.sign().as_ref())))
}

/// Sends one delivery to the environment's webhook.
pub fn send(app: &App, db: &Connection, d: &Delivery) -> Outcome {
    let retry = |error: String| Outcome::Retry {
        status_code: None,
        error,
        retry_after: None,
    };
    let target = match targets::get(db, d.env, targets::WEBHOOK) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Outcome::Give {
                status_code: None,
                error: "no webhook is configured".into(),
            }
        }
        Err(e) => return retry(format!("could not read the webhook settings: {e}")),
    };
    // Parsed once: the URL signed is the URL sent, in the form ureq sends it.
    let Some(url) = target.config["url"].as_str().and_then(|u| url::Url::parse(u).ok()) else {
        return Outcome::Give {
            status_code: None,
            error: "the webhook has no valid url".into(),
        };
    };
    let url = url.as_str();
    let log = match error_logs::get(db, &d.error_log_id) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Outcome::Give {
                status_code: None,
                error: "the error log was erased".into(),
            }
        }
        Err(e) => return retry(format!("could not read the error log: {e}")),
    };
    // As JavaScript writes it, so that a receiver's `JSON.stringify` of the parsed body gives
    // back the bytes `X-Alloy-Signature` covers.
    let body = crate::jsjson::to_string(&log.document()).into_bytes();
    let now = app.clock.now_ms();
    let (secret, previous) = match targets::open_secrets(&app.store.secrets, &target, now) {
        Ok((Some(s), p)) => (s, p),
        Ok((None, _)) => {
            return Outcome::Give {
                status_code: None,
                error: "the webhook has no secret".into(),
            }
        }
        Err(e) => {
            log::error!("webhook secret could not be opened: {e}");
            return retry("the webhook secret could not be opened".into());
        }
    };
    let timestamp = now / 1000;
    let mut signature = match sign(&secret, &log.id, timestamp, &body) {
        Ok(s) => s,
        Err(e) => return retry(e),
    };
    if let Some(Ok(old)) = previous.map(|p| sign(&p, &log.id, timestamp, &body)) {
        signature = format!("{signature} {old}");
    }
    let alloy_signature = match app.request_signing.sign(db, &app.store, "POST", url, &body) {
        Ok(s) => s,
        Err(e) => {
            log::error!("a webhook delivery could not be signed: {e}");
            return retry("the request could not be signed".into());
        }
    };
    let sent = app
        .outbound
        .webhooks(d.env)
        .post(url)
        .set("Content-Type", "application/json")
        .set("webhook-id", &log.id)
        .set("webhook-timestamp", &timestamp.to_string())
        .set("webhook-signature", &signature)
        .set(request_signing::HEADER, &alloy_signature)
        .set("X-Alloy-WorkflowId", &log.workflow_id)
        .set("X-Alloy-UserId", &log.user_id)
        .set("X-Alloy-BlockName", &header_text(&log.block_name))
        .set("X-Alloy-BlockType", &header_text(&log.block_type))
        .set("X-Alloy-ExecutionUuid", &log.execution_id)
        .send_bytes(&body);
    match sent {
        Ok(r) if (200..300).contains(&r.status()) => Outcome::Delivered {
            status_code: r.status(),
        },
        Ok(r) => Outcome::Retry {
            status_code: Some(r.status()),
            error: format!("answered {}", r.status()),
            retry_after: None,
        },
        Err(ureq::Error::Status(410, _)) => {
            let (env, why) = (
                d.env,
                "the receiver answered 410 Gone; the webhook was disabled".to_string(),
            );
            let reason = why.clone();
            if let Err(e) = app
                .store
                .write(move |c| targets::disable(c, env, targets::WEBHOOK, &reason))
            {
                log::error!("could not disable the webhook: {e}");
            }
            log::warn!("webhook of {}: {why}", env.as_str());
            Outcome::Give {
                status_code: Some(410),
                error: why,
            }
        }
        Err(ureq::Error::Status(code, r)) => {
            let retry_after = if code == 429 || code == 503 {
                r.header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            } else {
                None
            };
            Outcome::Retry {
                status_code: Some(code),
                error: format!("answered {code}"),
                retry_after,
            }
        }
        Err(ureq::Error::Transport(t)) => retry(format!("could not reach the webhook: {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_reproduces_the_standard_webhooks_published_vector() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_is_32_random_bytes_behind_the_prefix() {
        let s = new_secret();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s.strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(new_secret(), s);
    }
}
