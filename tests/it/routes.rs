//! "Every route is served bare and behind any `/{YYYY-MM}/` version prefix": each route of
//! `router.rs`, called under each prefix, answers as it does bare.

use crate::harness::Server;
use crate::receiver::Receiver;
use serde_json::{json, Value};

const PREFIXES: [&str; 5] = ["", "/2023-01", "/2023-12", "/2024-03", "/2025-09"];

/// Drops what legitimately differs between two calls (fresh tokens, times of use).
fn stable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for k in ["token", "expiresAt", "lastFetched"] {
            o.remove(k);
        }
    }
    v
}

#[test]
fn every_route_answers_the_same_bare_and_behind_each_version_prefix() {
    // No retries: a delivery the receiver refuses fails at once, so it can be retried.
    let s = Server::start_configured(|c| c.retry_schedule = Vec::new());
    let rx = Receiver::start();
    rx.answer(500);
    // Reads: the same status and body under every prefix (and with doubled/trailing slashes).
    let iid = s.create_integration(json!({ "name": "routes", "app": "demo", "workflows": [
        { "name": "calls", "trigger": { "type": "event", "event": "thing.done" },
          "blocks": [{ "type": "http", "name": "Call", "url": format!("{}/x", rx.url) }] }] }));
    let user = s.create_user("router");
    let wf = s.install(&user, &iid).remove(0);
    assert_eq!(
        s.req(
            "PUT",
            "/settings/logging/webhook",
            Some(&json!({ "url": format!("{}/hook", rx.url) }))
        )
        .status,
        200
    );
    s.post("/run/workflow", json!({ "userId": user, "workflowId": wf }));
    let ex = s.wait_for_runs(&wf, 1)[0]["executionId"].as_str().unwrap().to_string();
    let token = s.token(&user);
    let reads = [
        "/healthz".to_string(),
        "/.well-known/jwks.json".into(),
        "/users".into(),
        format!("/users/{user}"),
        format!("/users/{user}/credentials"),
        format!("/credentials/users/{user}"),
        "/integrations".into(),
        format!("/integrations/{iid}"),
        format!("/workflows?userId={user}"),
        format!("/workflows/{wf}"),
        format!("/workflows/{wf}/users"),
        format!("/workflows/{wf}/logs"),
        format!("/workflows/{wf}/errors"),
        "/logs".into(),
        "/settings/logging/webhook".into(),
        "/settings/logging/eventbridge".into(),
        format!("/users/{user}/token"),
        format!("/credentials?userId={user}"),
        format!("/integrations?userId={user}"),
        format!("/integrations/{iid}?userId={user}"),
        format!("/workflows/{wf}/versions?userId={user}"),
        format!("/workflows/{wf}/analytics"),
        "/metadata/credentials".into(),
        "/metadata/credentials/httpHeaderAuth".into(),
        "/metadata/apps".into(),
        "/apps".into(),
        "/events".into(),
    ];
    for path in &reads {
        let bare = s.get(path);
        assert_eq!(bare.status, 200, "GET {path}: {}", bare.json);
        for prefix in &PREFIXES[1..] {
            let (route, query) = path.split_once('?').unwrap_or((path, ""));
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            let versioned = s.get(&format!("{prefix}/{route}/{q}"));
            assert_eq!(versioned.status, 200, "GET {prefix}{path}: {}", versioned.json);
            assert_eq!(stable(versioned.json), stable(bare.json.clone()), "GET {prefix}{path}");
        }
    }
    for prefix in PREFIXES {
        let r = s.call(
            "GET",
            &format!("{prefix}/session"),
            &[("x-alloy-user-token", &token)],
            None,
        );
        assert_eq!(r.status, 200, "{prefix}/session: {}", r.json);
    }

    // Writes: each route under a prefix of its own, in an order that leaves each one
    // something to act on; every one answers 200.
    let mut n = 0;
    let mut call = |method: &str, path: String, body: Value| -> Value {
        let prefix = PREFIXES[n % PREFIXES.len()];
        n += 1;
        let r = s.req(method, &format!("{prefix}{path}"), Some(&body));
        assert_eq!(r.status, 200, "{method} {prefix}{path}: {}", r.json);
        r.json
    };
    call("POST", "/users".into(), json!({ "username": "w1" }));
    call(
        "POST",
        "/users/batch".into(),
        json!({ "users": [{ "username": "w2" }] }),
    );
    call("PUT", "/users/w1".into(), json!({ "fullName": "W One" }));
    call("PATCH", "/users/w1".into(), json!({ "fullName": "W Uno" }));
    let c = call(
        "POST",
        format!("/users/{user}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "a" } }),
    );
    call(
        "POST",
        "/headless/credentials".into(),
        json!({ "userId": user, "credential": { "type": "apiKey", "data": { "apiKey": "b" } } }),
    );
    call(
        "DELETE",
        format!("/users/{user}/credentials/{}", c["credentialId"].as_str().unwrap()),
        json!({}),
    );
    let other = call(
        "POST",
        "/integrations".into(),
        json!({ "name": "other", "app": "o", "workflows": [
        { "name": "x", "blocks": [{ "type": "fail" }] }] }),
    );
    let other = other["integrationId"].as_str().unwrap().to_string();
    call("POST", format!("/users/w1/integrations/{other}/install"), json!({}));
    call("PUT", format!("/workflows/{wf}/upgrade?userId={user}"), json!({}));
    let link = call("GET", format!("/users/w2/integrations/{other}/install-url"), json!({}));
    let link = link["url"].as_str().unwrap().split_once("link=").unwrap().1.to_string();
    call("POST", "/install-links/redeem".into(), json!({ "link": link }));
    let started = call(
        "POST",
        "/headless/startInstallation".into(),
        json!({ "userId": "w2", "integrationId": other }),
    );
    call(
        "POST",
        "/headless/completeInstallation".into(),
        json!({ "installationId": started["installationId"], "data": [] }),
    );
    call(
        "PUT",
        "/workflows/deactivate".into(),
        json!({ "userId": user, "workflowId": wf }),
    );
    call(
        "PUT",
        "/workflows/activate".into(),
        json!({ "userId": user, "workflowId": wf }),
    );
    call(
        "POST",
        "/run/workflow".into(),
        json!({ "userId": user, "workflowId": wf }),
    );
    call(
        "POST",
        "/run/event".into(),
        json!({ "event": "thing.done", "userId": user, "data": {} }),
    );
    call("POST", format!("/workflows/{wf}/rerun/{ex}"), json!({}));
    s.wait_for_runs(&wf, 4);
    call(
        "PUT",
        "/settings/logging/webhook".into(),
        json!({ "url": format!("{}/hook2", rx.url) }),
    );
    call("POST", "/settings/logging/webhook/rotate-secret".into(), json!({}));
    call(
        "PUT",
        "/settings/logging/eventbridge".into(),
        json!({ "accessKeyId": "AKIAX", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "region": "us-east-1",
                "eventBusName": "b", "endpoint": "http://127.0.0.1:9", "enabled": false }),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let failed = loop {
        let d = s.get("/settings/logging/deliveries?status=failed").json["data"].clone();
        if let Some(id) = d[0]["deliveryId"].as_str() {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no delivery failed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    call(
        "POST",
        format!("/settings/logging/deliveries/{failed}/retry"),
        json!({}),
    );
    call("PUT", format!("/users/{user}/deactivate-workflows"), json!({}));
    call("DELETE", format!("/users/{user}/logs"), json!({}));
    call("DELETE", format!("/workflows/{wf}?userId={user}"), json!({}));
    call("DELETE", format!("/integrations/{other}?force=true"), json!({}));
    call("DELETE", "/users/w1".into(), json!({}));
}
