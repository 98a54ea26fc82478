//! "Environments are separate": every kind of resource made with a development key is read,
//! changed and deleted with a production key, and each attempt is exactly `404` (or, for a
//! list or a settings page, the production environment's own empty answer). The development
//! data is intact afterwards.

use crate::harness::Server;
use crate::receiver::Receiver;
use ingot::store::Env;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Development data of every kind: (user, credential, integration, workflow, execution, delivery).
struct DevData {
    user: String,
    credential: String,
    integration: String,
    workflow: String,
    execution: String,
    delivery: String,
}

fn make_dev_data(s: &Server, rx: &Receiver) -> DevData {
    let integration = s.create_integration(json!({ "name": "envs", "app": "demo", "workflows": [
        { "name": "boom", "blocks": [{ "type": "fail", "name": "Refuse", "message": "no" }] }] }));
    let user = s.create_user("dev-only");
    let credential = s.post(
        &format!("/users/{user}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "k" } }),
    );
    assert_eq!(credential.status, 200, "{}", credential.json);
    let workflow = s.install(&user, &integration).remove(0);
    rx.answer(500);
    let hook = s.req(
        "PUT",
        "/settings/logging/webhook",
        Some(&json!({ "url": format!("{}/hook", rx.url) })),
    );
    assert_eq!(hook.status, 200, "{}", hook.json);
    let run = s.post("/run/workflow", json!({ "userId": user, "workflowId": workflow }));
    assert_eq!(run.status, 200, "{}", run.json);
    let execution = s.wait_for_runs(&workflow, 1)[0]["executionId"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let d = s.get("/settings/logging/deliveries").json["data"].clone();
        if let Some(id) = d[0]["deliveryId"].as_str() {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "no delivery was written");
        std::thread::sleep(Duration::from_millis(20));
    };
    DevData {
        user,
        credential: credential.json["credentialId"].as_str().unwrap().to_string(),
        integration,
        workflow,
        execution,
        delivery,
    }
}

#[test]
fn every_resource_of_one_environment_is_404_to_the_other() {
    let s = Server::start();
    let rx = Receiver::start();
    let d = make_dev_data(&s, &rx);
    let prod = s.new_key(Env::Production);
    let (u, wf) = (d.user.as_str(), d.workflow.as_str());
    let run = json!({ "userId": u, "workflowId": wf });
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/users/{u}"), None),
        ("GET", "/users/dev-only".into(), None),
        ("PUT", format!("/users/{u}"), Some(json!({ "fullName": "x" }))),
        ("GET", format!("/users/{u}/token"), None),
        ("PUT", format!("/users/{u}/deactivate-workflows"), None),
        ("DELETE", format!("/users/{u}/logs"), None),
        ("GET", format!("/users/{u}/credentials"), None),
        ("GET", format!("/credentials/users/{u}"), None),
        (
            "POST",
            format!("/users/{u}/credentials"),
            Some(json!({ "type": "apiKey", "data": { "apiKey": "k" } })),
        ),
        (
            "POST",
            "/headless/credentials".into(),
            Some(json!({ "userId": u, "credential": { "type": "apiKey", "data": { "apiKey": "k" } } })),
        ),
        ("DELETE", format!("/users/{u}/credentials/{}", d.credential), None),
        ("GET", format!("/integrations/{}", d.integration), None),
        (
            "POST",
            format!("/users/{u}/integrations/{}/install", d.integration),
            Some(json!({})),
        ),
        ("GET", format!("/workflows/{wf}"), None),
        ("GET", format!("/workflows/{wf}?userId={u}"), None),
        ("GET", format!("/workflows?userId={u}"), None),
        ("PUT", "/workflows/deactivate".into(), Some(run.clone())),
        ("PUT", "/workflows/activate".into(), Some(run.clone())),
        ("GET", format!("/workflows/{wf}/users"), None),
        ("GET", format!("/workflows/{wf}/logs"), None),
        ("GET", format!("/workflows/{wf}/errors"), None),
        ("POST", format!("/workflows/{wf}/rerun/{}", d.execution), None),
        ("POST", "/run/workflow".into(), Some(run.clone())),
        (
            "POST",
            "/run/event".into(),
            Some(json!({ "event": "x", "userId": u, "data": {} })),
        ),
        ("POST", "/settings/logging/webhook/rotate-secret".into(), None),
        (
            "POST",
            format!("/settings/logging/deliveries/{}/retry", d.delivery),
            None,
        ),
        ("DELETE", format!("/workflows/{wf}"), None),
        ("DELETE", format!("/integrations/{}?force=true", d.integration), None),
        ("DELETE", format!("/users/{u}"), None),
    ];
    for (method, path, body) in &cases {
        let body = body
            .clone()
            .or_else(|| (method != &"GET" && method != &"DELETE").then(|| json!({})));
        let r = s.req_as(&prod, method, path, body.as_ref());
        assert_eq!(r.status, 404, "{method} {path} with a production key: {}", r.json);
    }

    // Lists and settings answer the production environment's own (empty) state.
    let empty = |path: &str, field: &str| {
        let r = s.req_as(&prod, "GET", path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.json);
        assert_eq!(r.json[field], json!([]), "{path} shows development data: {}", r.json);
    };
    empty("/users", "data");
    empty("/integrations", "data");
    empty("/settings/logging/deliveries", "data");
    empty("/logs", "notifications");
    empty(&format!("/logs?workflowId={wf}"), "notifications");
    let hook = s.req_as(&prod, "GET", "/settings/logging/webhook", None);
    assert_eq!(hook.status, 200, "{}", hook.json);
    assert_eq!(hook.json["url"], Value::Null);
    assert_eq!(hook.json["enabled"], false);
    let eb = s.req_as(&prod, "GET", "/settings/logging/eventbridge", None);
    assert_eq!(eb.status, 200, "{}", eb.json);
    assert_eq!(eb.json["accessKeyId"], Value::Null);
    // Control: the development side does see its own webhook.
    assert_eq!(
        s.get("/settings/logging/webhook").json["url"],
        format!("{}/hook", rx.url)
    );

    // Nothing the production key tried changed the development data.
    let user = s.get(&format!("/users/{u}"));
    assert_eq!(user.status, 200);
    assert!(user.json["fullName"].is_null());
    let creds = s.get(&format!("/users/{u}/credentials")).json["data"].clone();
    assert_eq!(creds.as_array().unwrap().len(), 1);
    let w = s.get(&format!("/workflows/{wf}?userId={u}"));
    assert_eq!(w.status, 200, "{}", w.json);
    assert_eq!(w.json["data"]["active"], true);
    assert_eq!(
        s.get(&format!("/workflows/{wf}/logs")).json["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.get("/logs").json["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(s.get(&format!("/integrations/{}", d.integration)).status, 200);
}

#[test]
fn a_key_is_only_good_for_the_environment_its_prefix_names() {
    let s = Server::start();
    let dev = s.key.clone();
    assert!(dev.starts_with("ingot_dev_"), "{dev}");
    let disguised = dev.replacen("ingot_dev_", "ingot_prod_", 1);
    assert_eq!(s.req_as(&disguised, "GET", "/users", None).status, 401);
    let prod = s.new_key(Env::Production);
    let disguised = prod.replacen("ingot_prod_", "ingot_dev_", 1);
    assert_eq!(s.req_as(&disguised, "GET", "/users", None).status, 401);
    assert_eq!(s.req_as(&prod, "GET", "/users", None).status, 200);
}
