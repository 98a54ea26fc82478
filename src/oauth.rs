//! OAuth 2.0 credentials: an integration declares its provider, a user is sent to the
//! provider's authorization page (authorization code with PKCE and a single-use `state` bound
//! to the user), ingot's callback exchanges the code and seals the tokens as the user's
//! `oauth2` credential, and `http` blocks send the access token, refreshed with the refresh
//! token before it expires and once more when the app answers 401.

use crate::store::{credentials, integrations, Env, StoreError};
use crate::workflow::DefError;
use crate::{ids, outbound, App};
use base64::Engine;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// An integration's OAuth 2.0 provider, as stored (the client secret is sealed apart).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub authorization_url: String,
    pub token_url: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub client_id: String,
    /// Extra parameters for the authorization request (`prompt`, `access_type`, `audience`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorization_params: BTreeMap<String, String>,
}

/// How long a `state` (and its PKCE verifier) waits for the provider's callback.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// An access token this close to its expiry is refreshed before it is sent.
pub const REFRESH_MARGIN_MS: i64 = 60 * 1000;
/// How long a call to the token endpoint may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);

fn url_ok(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://")) && !u.contains(char::is_whitespace) && u.len() <= 2048
}

/// Parses an integration's `oauth`: the provider and, when given, its client secret.
pub fn parse(v: Option<&Value>) -> Result<Option<(Provider, Option<String>)>, DefError> {
    let m = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(DefError::Malformed("integration.oauth must be an object".into())),
    };
    let mut copy = m.clone();
    let secret = match copy.remove("clientSecret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 4096 => Some(s),
        Some(_) => {
            return Err(DefError::Invalid(
                "integration.oauth.clientSecret must be a non-empty string".into(),
            ))
        }
    };
    let p: Provider = serde_json::from_value(Value::Object(copy)).map_err(|e| {
        DefError::Invalid(format!(
            "integration.oauth must be {{authorizationUrl, tokenUrl, scopes?, clientId, clientSecret, authorizationParams?}}: {e}"
        ))
    })?;
    for (field, u) in [("authorizationUrl", &p.authorization_url), ("tokenUrl", &p.token_url)] {
        if !url_ok(u) {
            return Err(DefError::Invalid(format!(
                "integration.oauth.{field} must be an http(s) URL"
            )));
        }
    }
    if p.client_id.is_empty() || p.scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
        return Err(DefError::Invalid(
            "integration.oauth needs a clientId, and scopes without spaces".into(),
        ));
    }
    Ok(Some((p, secret)))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh `state` and PKCE verifier, with the verifier's S256 challenge.
pub fn new_state() -> (String, String, String) {
    let state = b64(&ids::random_bytes(32));
    let verifier = b64(&ids::random_bytes(32));
    let challenge = b64(&crate::crypto::sha256(verifier.as_bytes()));
    (state, verifier, challenge)
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                crate::workflow::percent_encode(k),
                crate::workflow::percent_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The provider's authorization URL for this request. `offline_access` asks for a refresh
/// token, which OpenID providers grant only with `prompt=consent` (OpenID Connect Core §11),
/// so that prompt is added unless the integration sets its own.
pub fn authorization_url(p: &Provider, redirect_uri: &str, state: &str, challenge: &str) -> String {
    let scope = p.scopes.join(" ");
    let mut pairs: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &p.client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    if !scope.is_empty() {
        pairs.push(("scope", &scope));
    }
    if p.scopes.iter().any(|s| s == "offline_access") && !p.authorization_params.contains_key("prompt") {
        pairs.push(("prompt", "consent"));
    }
    for (k, v) in &p.authorization_params {
        pairs.push((k, v));
    }
    let sep = if p.authorization_url.contains('?') { '&' } else { '?' };
    format!("{}{sep}{}", p.authorization_url, form(&pairs))
}

/// What a token endpoint gave.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at_ms: Option<i64>,
}

/// The credential data an `oauth2` credential holds for these tokens.
pub fn credential_data(t: &Tokens) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("accessToken".into(), t.access_token.clone().into());
    if let Some(r) = &t.refresh_token {
        m.insert("refreshToken".into(), r.clone().into());
    }
    if let Some(at) = t.expires_at_ms {
        m.insert("expiresAt".into(), ids::rfc3339(at).into());
    }
    m
}

/// Calls the token endpoint with the client's credentials (HTTP Basic, RFC 6749 §2.3.1),
/// signed with `X-Alloy-Signature` over the form exactly as sent. Errors name the endpoint's
/// `error` code, never a token.
fn token_request(
    app: &App,
    db: &Connection,
    env: Env,
    p: &Provider,
    secret: &str,
    pairs: &[(&str, &str)],
    now_ms: i64,
) -> Result<Tokens, String> {
    let mut url = app
        .outbound
        .policy(env)
        .check_url(&p.token_url)
        .map_err(|e| format!("the token endpoint is refused: {e}"))?;
    url.set_fragment(None);
    let body = form(pairs);
    let signature = app
        .request_signing
        .sign(db, &app.store, "POST", url.as_str(), body.as_bytes())
        .map_err(|e| {
            log::error!("a token request could not be signed: {e}");
            "the token request could not be signed".to_string()
        })?;
    let basic = b64_std(&format!(
        "{}:{}",
        crate::workflow::percent_encode(&p.client_id),
        crate::workflow::percent_encode(secret)
    ));
    let sent = app
        .outbound
        .blocks(env)
        .request_url("POST", &url)
        .timeout(TOKEN_TIMEOUT)
        .set("Authorization", &format!("Basic {basic}"))
        .set("Accept", "application/json")
        .set("Content-Type", "application/x-www-form-urlencoded")
        .set(crate::request_signing::HEADER, &signature)
        .send_bytes(body.as_bytes());
    let answer: Value = match sent {
        Ok(r) => r
            .into_json()
            .map_err(|_| "the token endpoint's answer is not JSON".to_string())?,
        Err(ureq::Error::Status(code, r)) => {
            let v: Value = r.into_json().unwrap_or(Value::Null);
            let kind = v["error"].as_str().unwrap_or("unknown_error");
            // The provider's own words, for the operator; a provider does not echo tokens.
            let said: String = v["error_description"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            return Err(format!("the token endpoint answered {code} {kind}: {said}"));
        }
        Err(ureq::Error::Transport(t)) => return Err(format!("could not reach the token endpoint: {}", t.kind())),
    };
    let access_token = answer["access_token"]
        .as_str()
        .filter(|t| outbound::is_header_value(t))
        .ok_or("the token endpoint gave no usable access_token")?
        .to_string();
    Ok(Tokens {
        access_token,
        refresh_token: answer["refresh_token"].as_str().map(str::to_string),
        expires_at_ms: answer["expires_in"].as_i64().map(|s| now_ms + s * 1000),
    })
}

fn b64_std(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Exchanges an authorization code (with its PKCE verifier).
// Each argument is its own part of the exchange (RFC 6749 §4.1.3 with PKCE); a struct to carry
// them would be built at the one call site and taken apart here.
#[allow(clippy::too_many_arguments)]
pub fn exchange_code(
    app: &App,
    db: &Connection,
    env: Env,
    p: &Provider,
    secret: &str,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<Tokens, String> {
    let now = app.clock.now_ms();
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    token_request(app, db, env, p, secret, &pairs, now)
}

/// The provider and its opened client secret for an integration, if it has one.
pub fn provider_of(
    app: &App,
    db: &Connection,
    env: Env,
    integration_id: &str,
) -> Result<Option<(Provider, String)>, StoreError> {
    let Some((p, sealed)) = integrations::oauth(db, env, integration_id)? else {
        return Ok(None);
    };
    let Some(sealed) = sealed else { return Ok(None) };
    let secret = app
        .store
        .secrets
        .open(&sealed, &integrations::oauth_aad(integration_id))?;
    let secret = String::from_utf8(secret).map_err(|_| StoreError::Invalid("the client secret is not text".into()))?;
    Ok(Some((p, secret)))
}

/// The access token to send for an `oauth2` credential of a workflow's integration: the stored
/// one, or — when it is about to expire, or `force` after a 401 — a refreshed one, written
/// back sealed. `None` when the credential is not one ingot can refresh (no provider, no
/// refresh token): the caller sends what it holds.
pub fn fresh_token(
    app: &App,
    db: &Connection,
    env: Env,
    integration_id: &str,
    credential_id: &str,
    user_id: &str,
    force: bool,
) -> Result<Option<String>, String> {
    let unreadable = |e: StoreError| {
        log::error!("the OAuth provider of integration {integration_id} could not be read: {e}");
        "Error: the integration's OAuth provider could not be read".to_string()
    };
    let refreshable = integrations::oauth(db, env, integration_id)
        .map_err(unreadable)?
        .is_some_and(|(_, sealed)| sealed.is_some());
    if !refreshable {
        return Ok(None);
    }
    // The usual case, a token that is not about to expire: sent as it is, with no lock taken
    // and no client secret opened.
    let now = app.clock.now_ms();
    if !force {
        match held(&read(app, db, credential_id, user_id)?, now) {
            None => return Ok(None),
            Some((access, _, false)) => return Ok(Some(access)),
            Some(_) => {}
        }
    }
    // One refresh at a time: a refresh token may be single-use (rotated), and two workers
    // refreshing it together would lose the credential. Read again under the lock: another
    // worker may have refreshed it meanwhile.
    let _one = app.oauth_refresh.lock().unwrap_or_else(|p| p.into_inner());
    let Some((access, refresh, expiring)) = held(&read(app, db, credential_id, user_id)?, now) else {
        return Ok(None);
    };
    if !force && !expiring {
        return Ok(Some(access));
    }
    let Some((p, secret)) = provider_of(app, db, env, integration_id).map_err(unreadable)? else {
        return Ok(None);
    };
    let mut fresh = token_request(
        app,
        db,
        env,
        &p,
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        now,
    )
    .map_err(|e| format!("Error: the access token could not be refreshed: {e}"))?;
    if fresh.refresh_token.is_none() {
        fresh.refresh_token = Some(refresh);
    }
    let plaintext = serde_json::to_vec(&credential_data(&fresh)).map_err(|e| e.to_string())?;
    let (cid, uid) = (credential_id.to_string(), user_id.to_string());
    let secrets = app.store.secrets.clone();
    app.store
        .write(move |c| credentials::replace_data(c, &secrets, &cid, &uid, &plaintext))
        .map_err(|e| format!("Error: the refreshed token could not be stored: {e}"))?;
    log::info!("refreshed the OAuth access token of credential {credential_id}");
    Ok(Some(fresh.access_token))
}

/// The access and refresh tokens a credential holds, and whether the access token expires
/// within the margin; `None` when it lacks either token.
fn held(data: &Map<String, Value>, now: i64) -> Option<(String, String, bool)> {
    let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
    let (access, refresh) = (text("accessToken")?, text("refreshToken")?);
    let expiring = text("expiresAt")
        .and_then(|t| ids::parse_rfc3339(&t))
        .is_some_and(|at| at - now < REFRESH_MARGIN_MS);
    Some((access, refresh, expiring))
}

fn read(app: &App, db: &Connection, credential_id: &str, user_id: &str) -> Result<Map<String, Value>, String> {
    let plain = credentials::open_data(db, &app.store.secrets, credential_id, user_id)
        .map_err(|e| format!("Error: credential {credential_id} could not be opened: {e}"))?;
    match serde_json::from_slice(&plain) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(format!("Error: credential {credential_id} is not an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> Provider {
        let v = json!({ "authorizationUrl": "https://id.example/auth?tenant=a", "tokenUrl": "https://id.example/token",
                        "scopes": ["openid", "offline_access"], "clientId": "c 1", "clientSecret": "s" });
        parse(Some(&v)).unwrap().unwrap().0
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_consent_for_offline_access() {
        let url = authorization_url(&provider(), "http://ingot.test/oauth/callback", "st", "ch");
        assert!(
            url.starts_with("https://id.example/auth?tenant=a&response_type=code&client_id=c%201&"),
            "{url}"
        );
        for part in [
            "redirect_uri=http%3A%2F%2Fingot.test%2Foauth%2Fcallback",
            "state=st",
            "code_challenge=ch",
            "code_challenge_method=S256",
            "scope=openid%20offline_access",
            "prompt=consent",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
    }

    #[test]
    fn a_pkce_challenge_is_the_s256_of_its_verifier() {
        let (state, verifier, challenge) = new_state();
        assert_eq!((state.len(), verifier.len()), (43, 43));
        assert_eq!(challenge, b64(&crate::crypto::sha256(verifier.as_bytes())));
        assert_ne!(new_state().0, state);
    }

    #[test]
    fn bad_providers_are_refused() {
        assert!(parse(Some(
            &json!({ "authorizationUrl": "ftp://x", "tokenUrl": "https://t", "clientId": "c" })
        ))
        .is_err());
        assert!(parse(Some(
            &json!({ "authorizationUrl": "https://a", "tokenUrl": "https://t", "clientId": "" })
        ))
        .is_err());
        assert!(parse(Some(&json!("x"))).is_err());
        let (p, secret) = parse(Some(
            &json!({ "authorizationUrl": "https://a", "tokenUrl": "https://t", "clientId": "c" }),
        ))
        .unwrap()
        .unwrap();
        assert_eq!((p.client_id.as_str(), secret), ("c", None));
    }
}
