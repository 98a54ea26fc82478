//! Bad input gets the contract's status and a `{"message"}` naming the problem; never a 500.

use crate::harness::Server;
use serde_json::json;

#[test]
fn malformed_and_mistyped_bodies_are_400_naming_the_problem() {
    let s = Server::start();
    let auth = format!("Bearer {}", s.key);
    let h = [("Authorization", auth.as_str())];
    let r = s.call("POST", "/users", &h, Some("{\"username\": "));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("malformed JSON"), "{}", r.message());
    let r = s.call("POST", "/users", &h, Some("[1,2]"));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("object"));
    let r = s.call("POST", "/users", &h, Some(""));
    assert_eq!(r.status, 400);
    let r = s.post("/users", json!({ "username": 5 }));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("username"), "{}", r.message());
    let r = s.post("/users", json!({ "username": "x", "fullName": ["a"] }));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("fullName"));
    let r = s.req("PUT", "/users/x", Some(&json!({ "disabled": "yes" })));
    assert_eq!(r.status, 400);
    assert!(r.message().contains("disabled"));
    let r = s.post("/users/batch", json!({ "users": "all" }));
    assert_eq!(r.status, 400);
}

#[test]
fn invalid_usernames_are_422_naming_the_field() {
    let s = Server::start();
    let r = s.post("/users", json!({ "fullName": "nameless" }));
    assert_eq!(r.status, 422);
    assert!(r.message().contains("username"));
    let long: String = "é".repeat(255);
    let r = s.post("/users", json!({ "username": long }));
    assert_eq!(r.status, 422);
    assert!(r.message().contains("254"), "{}", r.message());
    let ok: String = "é".repeat(254);
    assert_eq!(
        s.post("/users", json!({ "username": ok })).status,
        200,
        "254 characters is allowed"
    );
    for bad in ["tab\there", "nl\n", "nul\u{0}x", "del\u{7f}", "c1\u{85}"] {
        let r = s.post("/users", json!({ "username": bad }));
        assert_eq!(r.status, 422, "{bad:?}");
        assert!(r.message().contains("control character"));
    }
    assert_eq!(s.post("/users", json!({ "username": "" })).status, 422);
    assert_eq!(
        s.get("/users").json["data"].as_array().unwrap().len(),
        1,
        "nothing half-written"
    );
}

#[test]
fn a_username_shaped_like_a_user_id_is_refused_everywhere_a_username_is_set() {
    let s = Server::start();
    let victim = s.create_user("victim");
    for shaped in [
        victim.clone(),
        victim.to_ascii_uppercase(),
        "0123456789abcdef01234567".into(),
    ] {
        let r = s.post("/users", json!({ "username": shaped }));
        assert_eq!(r.status, 422, "{shaped}: {}", r.json);
        assert!(r.message().contains("userId"), "{}", r.message());
        let b = s.post("/users/batch", json!({ "users": [{ "username": shaped }] }));
        assert_eq!(b.status, 200);
        assert_eq!(b.json["invalidUsers"].as_array().unwrap().len(), 1, "{}", b.json);
        let other = s.create_user("renamed-later");
        let r = s.req("PUT", &format!("/users/{other}"), Some(&json!({ "username": shaped })));
        assert_eq!(r.status, 422, "{}", r.json);
        assert_eq!(s.req("DELETE", &format!("/users/{other}"), None).status, 200);
    }
    // Names that are merely long hex-like or 24 characters of other letters are fine.
    assert_eq!(
        s.post("/users", json!({ "username": "0123456789abcdef0123456" }))
            .status,
        200
    );
    assert_eq!(
        s.post("/users", json!({ "username": "0123456789abcdef0123456g" }))
            .status,
        200
    );
}

#[test]
fn a_body_over_one_mebibyte_is_413() {
    let s = Server::start();
    let big = format!("{{\"username\":\"{}\"}}", "a".repeat(1 << 20));
    let r = s.call(
        "POST",
        "/users",
        &[("Authorization", &format!("Bearer {}", s.key))],
        Some(&big),
    );
    assert_eq!(r.status, 413);
    assert!(r.message().contains("1048576"));
}

#[test]
fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let s = Server::start();
    let r = s.get("/nothing/here");
    assert_eq!(r.status, 404);
    assert!(r.message().contains("/nothing/here"));
    let r = s.req("DELETE", "/users", None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    assert!(r.message().contains("GET, POST"));
    assert_eq!(s.req("POST", "/healthz", None).status, 405);
}

#[test]
fn missing_malformed_and_revoked_keys_are_401_with_a_bearer_challenge() {
    let s = Server::start();
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no header", vec![]),
        ("wrong scheme", vec![("Authorization", format!("Basic {}", s.key))]),
        ("garbage", vec![("Authorization", "Bearer nope".into())]),
        ("wrong secret", vec![("Authorization", format!("Bearer {}x", s.key))]),
    ];
    for (what, headers) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = s.call("GET", "/users", &h, None);
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.json, json!({ "message": "Unauthorized" }), "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
    }
    let extra = s.new_key(ingot::store::Env::Development);
    assert_eq!(s.req_as(&extra, "GET", "/users", None).status, 200);
    let id = extra.split('_').nth(2).unwrap();
    ingot::admin::revoke_key(&s.config, id).unwrap();
    assert_eq!(
        s.req_as(&extra, "GET", "/users", None).status,
        401,
        "revoked keys end at once"
    );
    assert_eq!(s.get("/users").status, 200, "other keys are untouched");
    assert!(
        ingot::admin::revoke_key(&s.config, id).is_err(),
        "revoking twice says so"
    );
}

#[test]
fn healthz_needs_no_key() {
    let s = Server::start();
    let r = s.call("GET", "/healthz", &[], None);
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ok")));
}

#[test]
fn garbage_never_gets_a_500() {
    let s = Server::start();
    let id = s.create_user("target");
    let bodies = [
        "null",
        "true",
        "\"str\"",
        "{}",
        "{\"users\":[null,{},[]]}",
        "{\"username\":{}}",
        "{\"credential\":[]}",
        "{\"type\":null,\"data\":null}",
        "\u{feff}{}",
        "{\"a\":1e999}",
        "{\"username\":\"\\ud800\"}",
    ];
    let paths = [
        "/users".to_string(),
        "/users/batch".to_string(),
        format!("/users/{id}"),
        format!("/users/{id}/credentials"),
        "/headless/credentials".to_string(),
        "/users/%ff%fe".to_string(),
    ];
    let auth = format!("Bearer {}", s.key);
    for path in &paths {
        for method in ["POST", "PUT", "PATCH", "GET", "DELETE"] {
            for body in bodies {
                let r = s.call(method, path, &[("Authorization", &auth)], Some(body));
                assert!(r.status < 500, "{method} {path} {body:?} -> {} {}", r.status, r.json);
                assert!(
                    r.status == 200 || r.json["message"].is_string(),
                    "{method} {path} {body:?}"
                );
            }
        }
    }
}
