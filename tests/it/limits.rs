//! What one caller may make ingot do: rate limits per API key and per user (429 with
//! Retry-After), caps on a user's credentials, paged integration lists, and auth declared per
//! route and checked before any handler runs.

use crate::harness::Server;
use ingot::limits::Rate;
use serde_json::json;

#[test]
fn an_api_key_over_its_rate_gets_429_with_retry_after_and_other_keys_go_on() {
    let s = Server::start_configured(|c| c.rate_per_key = Rate::parse("1,5").unwrap());
    let other = s.new_key(ingot::store::Env::Development);
    let statuses: Vec<u16> = (0..8).map(|_| s.get("/users").status).collect();
    assert_eq!(&statuses[..5], &[200; 5], "{statuses:?}");
    let limited = s.get("/users");
    assert_eq!(limited.status, 429, "{}", limited.json);
    assert!(limited.message().contains("too many requests"));
    let wait: u64 = limited.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    assert_eq!(
        s.req_as(&other, "GET", "/users", None).status,
        200,
        "another key has its own bucket"
    );
    // Open routes are not limited.
    assert_eq!(s.call("GET", "/healthz", &[], None).status, 200);
}

#[test]
fn a_users_tokens_share_one_rate_and_other_users_go_on() {
    let s = Server::start_configured(|c| c.rate_per_user = Rate::parse("0.5,3").unwrap());
    let (a, b) = (s.create_user("rate-a"), s.create_user("rate-b"));
    let (t1, t2, tb) = (s.token(&a), s.token(&a), s.token(&b));
    let statuses: Vec<u16> = [&t1, &t2, &t1, &t2]
        .iter()
        .map(|t| s.as_user(t, "GET", "/workflows", None).status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let r = s.as_user(&t1, "GET", "/session", None);
    assert_eq!(r.status, 429);
    assert!(r.header("Retry-After").is_some());
    assert_eq!(s.as_user(&tb, "GET", "/workflows", None).status, 200);
    assert_eq!(s.get("/users").status, 200, "API keys are not limited by default");
}

#[test]
fn a_users_credentials_are_capped_in_count_and_size() {
    let s = Server::start_configured(|c| {
        c.max_credentials = 3;
        c.max_credential_bytes = 100;
    });
    let user = s.create_user("capped");
    let big = s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "x".repeat(200) } }),
    );
    assert_eq!(big.status, 422);
    assert!(big.message().contains("100 bytes"), "{}", big.message());
    for i in 0..3 {
        let r = s.post(
            &format!("/users/{user}/credentials"),
            json!({ "type": "apiKey", "data": { "apiKey": format!("k{i}") } }),
        );
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let token = s.token(&user);
    let fourth = s.as_user(
        &token,
        "POST",
        &format!("/users/{user}/credentials"),
        Some(&json!({ "type": "apiKey", "data": { "apiKey": "k4" } })),
    );
    assert_eq!(fourth.status, 422, "{}", fourth.json);
    assert!(
        fourth.message().contains("most credentials allowed (3"),
        "{}",
        fourth.message()
    );
    assert_eq!(
        s.get(&format!("/users/{user}/credentials")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Another user has a cap of their own.
    let other = s.create_user("uncapped");
    assert_eq!(
        s.post(
            &format!("/users/{other}/credentials"),
            json!({ "type": "apiKey", "data": { "apiKey": "k" } })
        )
        .status,
        200
    );
}

#[test]
fn integrations_are_listed_in_pages() {
    let s = Server::start();
    let mut made: Vec<String> = (0..5)
        .map(|i| s.create_integration(json!({ "name": format!("paged{i}"), "app": "a", "workflows": [{ "name": "w", "blocks": [{ "type": "fail" }] }] })))
        .collect();
    made.sort();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s.get(&format!("/integrations?limit=2&cursor={cursor}"));
        assert_eq!(r.status, 200, "{}", r.json);
        let page = r.json["data"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|i| i["integrationId"].as_str().unwrap().to_string()));
        match r.json["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, made);
    assert_eq!(s.get("/integrations").json["data"].as_array().unwrap().len(), 5);
    assert_eq!(s.get("/integrations?limit=101").status, 422);
}

#[test]
fn every_route_declares_its_auth_and_refuses_callers_it_does_not_take() {
    use ingot::router::{Auth, Route};
    let s = Server::start();
    let user = s.create_user("authz");
    let token = s.token(&user);
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/healthz".into()),
        ("GET", "/.well-known/jwks.json".into()),
        ("GET", "/session".into()),
        ("POST", "/users".into()),
        ("POST", "/users/batch".into()),
        ("GET", "/users".into()),
        ("GET", format!("/users/{user}")),
        ("PUT", format!("/users/{user}")),
        ("DELETE", format!("/users/{user}")),
        ("GET", format!("/users/{user}/token")),
        ("PUT", format!("/users/{user}/deactivate-workflows")),
        ("DELETE", format!("/users/{user}/logs")),
        ("POST", "/headless/credentials".into()),
        ("POST", format!("/users/{user}/credentials")),
        ("GET", format!("/users/{user}/credentials")),
        ("DELETE", format!("/users/{user}/credentials/x")),
        ("GET", "/integrations".into()),
        ("POST", "/integrations".into()),
        ("GET", "/integrations/x".into()),
        ("DELETE", "/integrations/x".into()),
        ("POST", format!("/users/{user}/integrations/x/install")),
        ("GET", "/workflows".into()),
        ("GET", "/workflows/x".into()),
        ("DELETE", "/workflows/x".into()),
        ("PUT", "/workflows/activate".into()),
        ("PUT", "/workflows/deactivate".into()),
        ("GET", "/workflows/x/users".into()),
        ("GET", "/workflows/x/logs".into()),
        ("GET", "/workflows/x/errors".into()),
        ("POST", "/workflows/x/rerun/y".into()),
        ("POST", "/run/workflow".into()),
        ("POST", "/run/event".into()),
        ("GET", "/logs".into()),
        ("GET", "/settings/logging/webhook".into()),
        ("PUT", "/settings/logging/webhook".into()),
        ("POST", "/settings/logging/webhook/rotate-secret".into()),
        ("GET", "/settings/logging/eventbridge".into()),
        ("PUT", "/settings/logging/eventbridge".into()),
        ("GET", "/settings/logging/deliveries".into()),
        ("POST", "/settings/logging/deliveries/x/retry".into()),
    ];
    for (method, path) in &routes {
        let req = ingot::http::Req::new(method, path);
        let route: Route = ingot::router::route(&req.method, &req.segments).unwrap();
        let body = (*method != "GET" && *method != "DELETE").then(|| "{}".to_string());
        let bare = s.call(method, path, &[], body.as_deref());
        let as_user = s.call(method, path, &[("x-alloy-user-token", &token)], body.as_deref());
        match route.auth() {
            Auth::None => assert_ne!(bare.status, 401, "{method} {path}"),
            Auth::ApiKey => {
                assert_eq!(bare.status, 401, "{method} {path}");
                assert_eq!(as_user.status, 401, "{method} {path} takes no user token");
            }
            Auth::KeyOrUserToken => {
                assert_eq!(bare.status, 401, "{method} {path}");
                assert_ne!(
                    as_user.status, 401,
                    "{method} {path} takes a user token: {}",
                    as_user.json
                );
            }
            Auth::UserToken => {
                assert_eq!(bare.status, 401, "{method} {path}");
                assert_eq!(as_user.status, 200, "{method} {path}");
            }
        }
    }
    // Every route of the router was called above.
    assert_eq!(routes.len(), 40);
    // With both an API key and a user token, the key decides: it may act for another user.
    let other = s.create_user("authz-other");
    let auth = format!("Bearer {}", s.key);
    let both = s.call(
        "GET",
        &format!("/users/{other}/credentials"),
        &[("Authorization", &auth), ("x-alloy-user-token", &token)],
        None,
    );
    assert_eq!(both.status, 200, "{}", both.json);
    let token_only = s.call(
        "GET",
        &format!("/users/{other}/credentials"),
        &[("x-alloy-user-token", &token)],
        None,
    );
    assert_eq!(
        token_only.status, 403,
        "control: the token alone may not: {}",
        token_only.json
    );
}
