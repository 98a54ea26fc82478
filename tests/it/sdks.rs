//! The official SDKs, as published, pointed at ingot by their base URL alone: every method
//! each one has outside the Unified API must succeed, parse, and round-trip its data.

use crate::harness::Server;
use crate::peers::python;
use crate::receiver::Receiver;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const EVENT: &str = "contact.created";

/// An integration for app `crm` (credential type `apiKey`): `Sync` calls the receiver on an
/// event, `Report` always fails. Beside it, `contacts`, whose users connect by OAuth (the SDKs
/// ask for its authorization URL; no provider is called for that).
fn crm(s: &Server, rx: &Receiver) -> String {
    s.create_integration(json!({
        "name": "Contacts", "app": "contacts", "credentialType": "oauth2",
        "oauth": { "authorizationUrl": "https://id.example/authorize", "tokenUrl": "https://id.example/token",
                   "scopes": ["contacts.read"], "clientId": "sdk-client", "clientSecret": "sdk-client-secret" },
        "workflows": [{ "name": "Read", "blocks": [{ "name": "List", "type": "http", "url": "https://api.example/contacts" }] }]
    }));
    s.create_integration(json!({
        "name": "CRM", "app": "crm", "credentialType": "apiKey",
        "icon": "https://crm.example/icon.png",
        "workflows": [
            { "name": "Sync", "trigger": { "type": "event", "event": EVENT },
              "blocks": [{ "name": "Push", "type": "http", "method": "POST", "url": format!("{}/contacts", rx.url), "body": { "c": "{{data.contact}}" } }] },
            { "name": "Report", "blocks": [{ "name": "Boom", "type": "fail", "message": "the report failed" }] }
        ]
    }))
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(name)
}

/// Runs a script with the server's coordinates; returns its last stdout line as JSON.
fn run(mut cmd: Command, s: &Server, integration: &str) -> Value {
    let out = cmd
        .env("INGOT_URL", s.base.trim_end_matches('/'))
        .env("INGOT_KEY", &s.key)
        .env("INGOT_INTEGRATION", integration)
        .env("INGOT_EVENT", EVENT)
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?} failed:\n{stdout}\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary line")
}

#[test]
fn the_speakeasy_python_sdk_works_unchanged_for_every_method() {
    let s = Server::start();
    let rx = Receiver::start();
    let iid = crm(&s, &rx);
    let mut cmd = Command::new(python());
    cmd.arg(script("speakeasy.py"));
    let summary = run(cmd, &s, &iid);
    let called: Vec<&str> = summary["called"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    // Every operation of the SDK's own class.
    let sdk_methods = Command::new(python())
        .args(["-c", "import alloypythonsdk, inspect; print('\\n'.join(n for n, f in inspect.getmembers(alloypythonsdk.AlloyPythonSDK, inspect.isfunction) if not n.startswith('_')))"])
        .output()
        .unwrap();
    let methods = String::from_utf8(sdk_methods.stdout).unwrap();
    let missing: Vec<&str> = methods.lines().filter(|m| !called.contains(m)).collect();
    assert!(missing.is_empty(), "SDK methods not exercised: {missing:?}");
    // What the SDK made is there through the API.
    let user = summary["user"].as_str().unwrap();
    let u = s.get(&format!("/users/{user}"));
    assert_eq!(u.json["fullName"], "Speak Easier");
    assert_eq!(rx.requests().len(), 1, "the event ran Sync once");
    assert_eq!(rx.requests()[0].header("authorization"), Some("Bearer sdk-secret"));
}

/// Every method the script listed (`methods`) is among those it called (`called`).
fn every_method_called(summary: &Value) {
    let called: Vec<&Value> = summary["called"].as_array().unwrap().iter().collect();
    let missing: Vec<&Value> = summary["methods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !called.contains(m))
        .collect();
    assert!(missing.is_empty(), "SDK methods not exercised: {missing:?}");
}

#[test]
fn the_alloy_python_sdk_works_unchanged_for_every_embedded_method() {
    let s = Server::start();
    let rx = Receiver::start();
    let iid = crm(&s, &rx);
    let mut cmd = Command::new(python());
    cmd.arg(script("alloy_python_sdk.py"));
    let summary = run(cmd, &s, &iid);
    every_method_called(&summary);
    let user = summary["user"].as_str().unwrap();
    assert_eq!(s.get(&format!("/users/{user}")).json["fullName"], "Py Sdk 2");
    assert_eq!(s.get("/users/py-batch").status, 404, "deleted through the SDK");
    assert_eq!(rx.requests().len(), 2, "the event run and its rerun");
    assert_eq!(rx.requests()[0].header("authorization"), Some("Bearer py-secret"));
}

#[test]
fn the_alloy_node_sdk_works_unchanged_for_every_embedded_method() {
    let modules = crate::peers::node_modules();
    let s = Server::start();
    let rx = Receiver::start();
    let iid = crm(&s, &rx);
    // The script ends soon after it fires the event: let the run's request not wait for the
    // request-signing key to be made.
    crate::signing::warm_request_signing(&s);
    let mut cmd = Command::new("node");
    cmd.arg(script("alloy_node.js")).env("NODE_PATH", &modules);
    let summary = run(cmd, &s, &iid);
    every_method_called(&summary);
    let user = summary["user"].as_str().unwrap();
    assert_eq!(s.get(&format!("/users/{user}")).status, 404, "deleted through the SDK");
    assert_eq!(rx.requests().len(), 1, "the event ran Sync once");
    assert_eq!(rx.requests()[0].header("authorization"), Some("Bearer node-secret"));
}
