//! EventBridge delivery: `PutEvents` over the JSON 1.1 protocol, SigV4-signed (signing name
//! `events`) with the `aws-sigv4` crate, up to 10 entries a call.
//!
//! These calls carry no `X-Alloy-Signature`: they go to AWS, which authenticates them by SigV4
//! and never passes the HTTP request on. The customer receives the event from their own bus,
//! not a request from ingot, so there is nothing of ours for them to verify.

use super::{mark_target, settle, Outcome};
use crate::store::{deliveries::Delivery, error_logs, targets};
use crate::{ids, App};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use rusqlite::Connection;
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Instant, SystemTime};

pub const SOURCE: &str = "ingot.embedded";
pub const DETAIL_TYPE: &str = "Workflow Error";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const AMZ_TARGET: &str = "AWSEvents.PutEvents";
/// The most entries one `PutEvents` call takes.
pub const MAX_ENTRIES: usize = 10;

/// Error types that mean the credentials (or their permissions) are wrong.
const AUTH_ERRORS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "AccessDeniedException",
    "AccessDenied",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
];

/// The endpoint for a region, or the configured one (for a local emulator).
pub fn endpoint_for(region: &str, endpoint: Option<&str>) -> String {
    match endpoint.filter(|e| !e.is_empty()) {
        Some(e) => e.trim_end_matches('/').to_string() + "/",
        None => format!("https://events.{region}.amazonaws.com/"),
    }
}

/// The headers that sign a `PutEvents` request (`host`, `x-amz-date`, `authorization`, ...).
pub fn signed_headers(
    key_id: &str,
    secret: &str,
    region: &str,
    url: &str,
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("endpoint is not a valid URL: {e}"))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err("endpoint has no host".into()),
    };
    let identity = Credentials::new(key_id, secret, None, None, "ingot").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("events")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("could not build signing parameters: {e}"))?
        .into();
    let headers = [
        ("host", host.as_str()),
        ("content-type", CONTENT_TYPE),
        ("x-amz-target", AMZ_TARGET),
    ];
    let request = SignableRequest::new("POST", url, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| format!("could not sign the request: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("could not sign the request: {e}"))?
        .into_parts();
    let mut out: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.extend(instructions.headers().map(|(k, v)| (k.to_string(), v.to_string())));
    Ok(out)
}

/// The `PutEvents` entry for an error log.
pub fn entry(log: &error_logs::ErrorLog, bus: &str) -> Value {
    json!({
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": log.document().to_string(),
        "EventBusName": bus,
        "Time": log.created_at as f64 / 1000.0,
    })
}

/// The error type and message of a failed AWS answer, JSON (`__type`) or XML (`<Code>`).
fn aws_error(body: &str) -> (String, String) {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let kind = v["__type"]
            .as_str()
            .unwrap_or("")
            .rsplit('#')
            .next()
            .unwrap_or("")
            .to_string();
        let message = v["message"]
            .as_str()
            .or(v["Message"].as_str())
            .unwrap_or("")
            .to_string();
        return (kind, message);
    }
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    (tag("Code").unwrap_or_default(), tag("Message").unwrap_or_default())
}

/// Sends up to ten due deliveries of one environment in one `PutEvents` call and settles each.
pub fn send_batch(app: &App, db: &Connection, due: &[Delivery]) {
    let env = due[0].env;
    let batch: Vec<&Delivery> = due.iter().filter(|d| d.env == env).take(MAX_ENTRIES).collect();
    let at = ids::now_ms();
    let started = Instant::now();
    let retry_all = |error: String| {
        for d in &batch {
            settle(
                app,
                d,
                at,
                started,
                Outcome::Retry {
                    status_code: None,
                    error: error.clone(),
                    retry_after: None,
                },
            );
        }
    };
    let target = match targets::get(db, env, targets::EVENTBRIDGE) {
        Ok(Some(t)) => t,
        Ok(None) => {
            for d in &batch {
                settle(
                    app,
                    d,
                    at,
                    started,
                    Outcome::Give {
                        status_code: None,
                        error: "EventBridge is not configured".into(),
                    },
                );
            }
            return;
        }
        Err(e) => return retry_all(format!("could not read the EventBridge settings: {e}")),
    };
    let cfg = &target.config;
    let (key_id, region, bus) = (
        cfg["accessKeyId"].as_str().unwrap_or(""),
        cfg["region"].as_str().unwrap_or(""),
        cfg["eventBusName"].as_str().unwrap_or("default"),
    );
    let secret = match targets::open_secrets(&app.store.secrets, &target, app.clock.now_ms()) {
        Ok((Some(s), _)) => s,
        Ok((None, _)) => return retry_all("no secret access key is configured".into()),
        Err(e) => {
            log::error!("EventBridge secret could not be opened: {e}");
            return retry_all("the secret access key could not be opened".into());
        }
    };
    let mut sendable = Vec::with_capacity(batch.len());
    for d in &batch {
        match error_logs::get(db, &d.error_log_id) {
            Ok(Some(log)) => sendable.push((*d, log)),
            Ok(None) => settle(
                app,
                d,
                at,
                started,
                Outcome::Give {
                    status_code: None,
                    error: "the error log was erased".into(),
                },
            ),
            Err(e) => settle(
                app,
                d,
                at,
                started,
                Outcome::Retry {
                    status_code: None,
                    error: e.to_string(),
                    retry_after: None,
                },
            ),
        }
    }
    if sendable.is_empty() {
        return;
    }
    let body = json!({ "Entries": sendable.iter().map(|(_, log)| entry(log, bus)).collect::<Vec<_>>() }).to_string();
    let url = endpoint_for(region, cfg["endpoint"].as_str());
    let settle_all = |outcome: &dyn Fn() -> Outcome| {
        for (d, _) in &sendable {
            settle(app, d, at, started, outcome());
        }
    };
    let headers = match signed_headers(key_id, &secret, region, &url, body.as_bytes(), SystemTime::now()) {
        Ok(h) => h,
        Err(e) => {
            mark_target(app, db, env, targets::EVENTBRIDGE, Some(e.clone()));
            return settle_all(&|| Outcome::Retry {
                status_code: None,
                error: e.clone(),
                retry_after: None,
            });
        }
    };
    let mut rq = app.outbound.aws(env).post(&url);
    for (k, v) in &headers {
        if k != "host" {
            rq = rq.set(k, v);
        }
    }
    match rq.send_bytes(body.as_bytes()) {
        Ok(resp) => {
            let status = resp.status();
            let mut text = String::new();
            let _ = resp.into_reader().take(1 << 20).read_to_string(&mut text);
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            mark_target(app, db, env, targets::EVENTBRIDGE, None);
            for (i, (d, _)) in sendable.iter().enumerate() {
                let e = &answer["Entries"][i];
                let outcome = match (e["ErrorCode"].as_str(), e["EventId"].as_str()) {
                    (Some(code), _) => Outcome::Retry {
                        status_code: Some(status),
                        error: format!("entry failed: {code}: {}", e["ErrorMessage"].as_str().unwrap_or("")),
                        retry_after: None,
                    },
                    (None, Some(_)) => Outcome::Delivered { status_code: status },
                    (None, None) => Outcome::Retry {
                        status_code: Some(status),
                        error: "the answer did not account for this entry".into(),
                        retry_after: None,
                    },
                };
                settle(app, d, at, started, outcome);
            }
        }
        Err(ureq::Error::Status(code, resp)) => {
            let mut text = String::new();
            let _ = resp.into_reader().take(64 * 1024).read_to_string(&mut text);
            let (kind, message) = aws_error(&text);
            let auth = AUTH_ERRORS.contains(&kind.as_str()) || code == 401 || code == 403;
            let error = if auth {
                let why = format!("EventBridge refused the credentials ({code} {kind}): {message}");
                mark_target(app, db, env, targets::EVENTBRIDGE, Some(why.clone()));
                why
            } else if kind.contains("Throttl") || code == 429 || code >= 500 {
                format!("EventBridge is throttling or unavailable ({code} {kind}); backing off")
            } else {
                format!("EventBridge answered {code} {kind}: {message}")
            };
            settle_all(&|| Outcome::Retry {
                status_code: Some(code),
                error: error.clone(),
                retry_after: None,
            });
        }
        Err(ureq::Error::Transport(t)) => {
            let error = format!("could not reach EventBridge at {url}: {t}");
            settle_all(&|| Outcome::Retry {
                status_code: None,
                error: error.clone(),
                retry_after: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_are_read_from_json_and_xml() {
        let j = r#"{"__type":"com.amazonaws.events#ThrottlingException","message":"slow down"}"#;
        assert_eq!(aws_error(j), ("ThrottlingException".into(), "slow down".into()));
        let x = "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error></Errors></ErrorResponse>";
        assert_eq!(aws_error(x), ("SignatureDoesNotMatch".into(), "no".into()));
    }

    #[test]
    fn requests_are_signed_for_the_events_service() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160); // 20150830T123600Z
        let h = signed_headers(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "http://127.0.0.1:4566/",
            b"{}",
            t,
        )
        .unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("host"), "127.0.0.1:4566");
        assert_eq!(get("x-amz-date"), "20150830T123600Z");
        let auth = get("authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/events/aws4_request"),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"),
            "{auth}"
        );
        assert!(!auth.contains("wJalr"), "the secret never travels");
        assert_eq!(
            endpoint_for("eu-west-1", None),
            "https://events.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            endpoint_for("eu-west-1", Some("http://127.0.0.1:5000")),
            "http://127.0.0.1:5000/"
        );
    }
}
