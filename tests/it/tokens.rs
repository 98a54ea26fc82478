//! User tokens: minting, the JWKS, `GET /session`, and what makes a token stop working.

use crate::harness::Server;
use base64::Engine;
use ingot::config::SyncMode;
use ingot::store::{signing, Secrets};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn decode_part(token: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(i).unwrap()).unwrap()).unwrap()
}

/// The server's current signing key, read from its database with its master key.
fn server_key_pair(s: &Server) -> Ed25519KeyPair {
    let secrets = Secrets::load(&s.config.master_key).unwrap();
    let conn = ingot::store::open_connection(&s.db_path(), SyncMode::Full).unwrap();
    let kid = signing::current_kid(&conn).unwrap().unwrap();
    let private = signing::private_key(&conn, &secrets, &kid).unwrap().unwrap();
    Ed25519KeyPair::from_bytes(&private).unwrap().with_key_id(&kid)
}

fn claims_for(s: &Server, user_id: &str, username: &str) -> JWTClaims<Value> {
    Claims::with_custom_claims(
        json!({ "username": username, "env": "development" }),
        Duration::from_secs(600),
    )
    .with_issuer(&s.config.public_url)
    .with_subject(user_id)
    .with_audience("ingot-modal")
}

fn session_status(s: &Server, token: &str) -> u16 {
    s.as_user(token, "GET", "/session", None).status
}

#[test]
fn a_token_is_an_eddsa_jwt_that_verifies_against_the_published_jwks() {
    let s = Server::start();
    let id = s.create_user("tina");
    let r = s.get("/users/tina/token");
    assert_eq!(r.status, 200);
    let token = r.json["token"].as_str().unwrap();
    assert!(r.json["expiresAt"].as_str().unwrap().ends_with('Z'));
    let header = decode_part(token, 0);
    assert_eq!(header["alg"], "EdDSA");
    let kid = header["kid"].as_str().unwrap();
    let jwks = s.call("GET", "/.well-known/jwks.json", &[], None);
    assert_eq!(jwks.status, 200, "the JWKS needs no auth");
    let jwk = jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("kid published")
        .clone();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let public = Ed25519PublicKey::from_bytes(&B64.decode(jwk["x"].as_str().unwrap()).unwrap()).unwrap();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([s.config.public_url.clone()])),
        allowed_audiences: Some(HashSet::from(["ingot-modal".to_string()])),
        time_tolerance: Some(Duration::from_secs(0)),
        ..Default::default()
    };
    let claims = public.verify_token::<Value>(token, Some(options)).unwrap();
    assert_eq!(claims.subject.as_deref(), Some(id.as_str()));
    assert_eq!(claims.custom["username"], "tina");
    assert_eq!(claims.custom["env"], "development");
    assert!(claims.jwt_id.is_some());
    let payload = decode_part(token, 1);
    for claim in ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "username", "env"] {
        assert!(payload.get(claim).is_some(), "missing claim {claim}");
    }
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        1800
    );
}

#[test]
fn ttl_is_honoured_between_60_and_1800_seconds() {
    let s = Server::start();
    s.create_user("ttl");
    let r = s.get("/users/ttl/token?ttl=60");
    let p = decode_part(r.json["token"].as_str().unwrap(), 1);
    assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 60);
    for bad in ["59", "1801", "0", "-5", "soon"] {
        let r = s.get(&format!("/users/ttl/token?ttl={bad}"));
        assert_eq!(r.status, 422, "ttl={bad}");
        assert!(r.message().contains("ttl"));
    }
    assert_eq!(s.get("/users/nobody/token").status, 404);
}

#[test]
fn a_disabled_user_gets_no_token() {
    let s = Server::start();
    s.create_user("off");
    s.req("PUT", "/users/off", Some(&json!({ "disabled": true })));
    let r = s.get("/users/off/token");
    assert_eq!(r.status, 403);
    assert!(r.message().contains("disabled"));
}

#[test]
fn session_answers_for_a_fresh_token() {
    let s = Server::start();
    let id = s.create_user("sam");
    let token = s.token(&id);
    let r = s.as_user(&token, "GET", "/2024-03/session", None);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["userId"], id.as_str());
    assert_eq!(r.json["username"], "sam");
    assert!(r.json["expiresAt"].is_string());
    // An API key is not a user token.
    assert_eq!(s.get("/session").status, 401);
}

#[test]
fn session_refuses_expired_tampered_foreign_and_unsigned_tokens() {
    let s = Server::start();
    let id = s.create_user("eve");
    let pair = server_key_pair(&s);
    // Control: a token forged with the server's own key and sane claims is accepted, so the
    // refusals below are about the one thing each changes.
    assert_eq!(session_status(&s, &pair.sign(claims_for(&s, &id, "eve")).unwrap()), 200);

    let mut expired = claims_for(&s, &id, "eve");
    let now = Clock::now_since_epoch();
    expired.issued_at = Some(now - Duration::from_secs(700));
    expired.invalid_before = expired.issued_at;
    expired.expires_at = Some(now - Duration::from_secs(100));
    assert_eq!(session_status(&s, &pair.sign(expired).unwrap()), 401, "expired");

    let good = s.token(&id);
    let parts: Vec<&str> = good.split('.').collect();
    let payload = String::from_utf8(B64.decode(parts[1]).unwrap())
        .unwrap()
        .replace("eve", "evf");
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(payload), parts[2]);
    assert_eq!(session_status(&s, &tampered), 401, "tampered");

    let kid = decode_part(&good, 0)["kid"].as_str().unwrap().to_string();
    let stranger = Ed25519KeyPair::generate().with_key_id(&kid);
    assert_eq!(
        session_status(&s, &stranger.sign(claims_for(&s, &id, "eve")).unwrap()),
        401,
        "foreign key"
    );

    let none_header = B64.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
    assert_eq!(
        session_status(&s, &format!("{none_header}.{}.", parts[1])),
        401,
        "alg none"
    );
    let hs_header = B64.encode(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#));
    assert_eq!(
        session_status(&s, &format!("{hs_header}.{}.{}", parts[1], parts[2])),
        401,
        "alg changed"
    );

    let wrong_aud = claims_for(&s, &id, "eve").with_audience("someone-else");
    assert_eq!(session_status(&s, &pair.sign(wrong_aud).unwrap()), 401, "audience");
    let wrong_iss = claims_for(&s, &id, "eve").with_issuer("http://elsewhere");
    assert_eq!(session_status(&s, &pair.sign(wrong_iss).unwrap()), 401, "issuer");
    let mut too_long = claims_for(&s, &id, "eve");
    // From the token's own iat: a `now` read earlier would make the test pass or fail by the
    // time the calls above took.
    too_long.expires_at = Some(too_long.issued_at.unwrap() + Duration::from_secs(1801));
    assert_eq!(
        session_status(&s, &pair.sign(too_long).unwrap()),
        401,
        "lifetime over 1800 s"
    );
    assert_eq!(session_status(&s, "not-a-jwt"), 401);
    assert_eq!(session_status(&s, &good), 200);
}

#[test]
fn a_token_stops_working_when_its_user_is_disabled_or_deleted() {
    let s = Server::start();
    let id = s.create_user("gone");
    let token = s.token(&id);
    assert_eq!(session_status(&s, &token), 200);
    s.req("PATCH", &format!("/users/{id}"), Some(&json!({ "disabled": true })));
    assert_eq!(session_status(&s, &token), 401, "disabled");
    s.req("PATCH", &format!("/users/{id}"), Some(&json!({ "disabled": false })));
    assert_eq!(session_status(&s, &token), 200, "enabled again");
    s.req("DELETE", &format!("/users/{id}"), None);
    assert_eq!(session_status(&s, &token), 401, "deleted");
    // A new user with the same username is not the token's user.
    s.create_user("gone");
    assert_eq!(session_status(&s, &token), 401, "same name, new user");
}

#[test]
fn rotating_the_signing_key_keeps_old_tokens_valid_and_both_keys_published() {
    let s = Server::start();
    let id = s.create_user("rot");
    let old = s.token(&id);
    let old_kid = decode_part(&old, 0)["kid"].as_str().unwrap().to_string();
    let (new_kid, retired) = ingot::admin::rotate_signing(&s.config).unwrap();
    assert_eq!(retired, vec![old_kid.clone()]);
    let new = s.token(&id);
    assert_eq!(decode_part(&new, 0)["kid"], new_kid.as_str());
    let jwks = s.call("GET", "/.well-known/jwks.json", &[], None);
    let kids: Vec<&str> = jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    assert_eq!(session_status(&s, &old), 200);
    assert_eq!(session_status(&s, &new), 200);
}

fn published_kids(s: &Server) -> Vec<String> {
    let jwks = s.call("GET", "/.well-known/jwks.json", &[], None);
    assert_eq!(jwks.status, 200);
    jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_retired_key_verifies_its_tokens_until_they_expire_and_no_longer() {
    let s = Server::start();
    let id = s.create_user("late");
    // A token of the longest lifetime, then the key that signed it is retired at once.
    let old = s.get(&format!("/users/{id}/token?ttl=1800")).json["token"]
        .as_str()
        .unwrap()
        .to_string();
    let old_kid = decode_part(&old, 0)["kid"].as_str().unwrap().to_string();
    ingot::admin::rotate_signing(&s.config).unwrap();
    // 1800 s on: the token is at its expiry, inside the 5 s leeway, and so must its key be.
    s.app().clock.advance(1800 * 1000);
    assert!(
        published_kids(&s).contains(&old_kid),
        "retired key published to the end"
    );
    assert_eq!(session_status(&s, &old), 200, "a live token of the retired key");
    // Past lifetime and leeway the retired key is no longer published, and its token is dead.
    s.app().clock.advance(6 * 1000);
    assert!(!published_kids(&s).contains(&old_kid), "retired key withdrawn");
    assert_eq!(published_kids(&s).len(), 1, "the current key stays");
    assert_eq!(session_status(&s, &old), 401);
}

#[test]
fn users_keys_and_tokens_survive_a_restart() {
    let mut s = Server::start();
    let id = s.create_user("durable");
    let token = s.token(&id);
    s.restart();
    assert_eq!(s.get(&format!("/users/{id}")).json["username"], "durable");
    assert_eq!(session_status(&s, &token), 200);
    assert_eq!(s.get("/users/durable/token").status, 200);
}

#[test]
fn an_api_keys_last_use_is_recorded() {
    let s = Server::start();
    let listed = |s: &Server| ingot::admin::list_keys(&s.config).unwrap();
    assert!(listed(&s).iter().all(|k| k.last_used_at.is_none()), "no use yet");
    let before = ingot::ids::now_ms();
    assert_eq!(s.get("/users").status, 200);
    // The server notes uses in memory and records them every ten seconds; flush now.
    s.app().flush_key_uses();
    let keys = listed(&s);
    let used = keys
        .iter()
        .find(|k| k.last_used_at.is_some())
        .expect("the key's use was recorded");
    assert!(used.last_used_at.unwrap() >= before);
}
