//! The pages, in a real browser (Debian's chromium driven by playwright-core): the embedded
//! modal opened by `/embedded.js` from a page on another origin.

use crate::harness::{open_db, Server};
use crate::peers::node_modules;
use crate::receiver::Receiver;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

/// Where page screenshots are kept (a test artifact).
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn browser_script(name: &str, env: &[(&str, String)]) -> Value {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "chromium is not installed: run `bash tests/run.sh`"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(name);
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .env("NODE_PEERS", node_modules())
        .env("SCREENSHOTS", screenshots());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary line")
}

#[test]
fn the_embedded_modal_installs_cancels_explains_a_dead_token_and_stays_hidden_when_asked() {
    let s = Server::start();
    let rx = Receiver::start();
    let iid = s.create_integration(json!({
        "name": "Helpdesk", "app": "helpdesk", "credentialType": "apiKey",
        "icon": "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAxIDEiPjxyZWN0IHdpZHRoPSIxIiBoZWlnaHQ9IjEiIGZpbGw9IiMyZjYyZjAiLz48L3N2Zz4=",
        "workflows": [
            { "name": "Open ticket", "blocks": [{ "name": "Create", "type": "http", "method": "POST", "url": format!("{}/tickets", rx.url) }] },
            { "name": "Close ticket", "blocks": [{ "name": "Close", "type": "http", "method": "POST", "url": format!("{}/close", rx.url) }] }
        ]
    }));
    let fresh = s.create_user("modal-new");
    let cancels = s.create_user("modal-cancel");
    let has = s.create_user("modal-has");
    s.post(
        &format!("/users/{has}/credentials"),
        json!({ "type": "apiKey", "data": { "apiKey": "kept" } }),
    );
    let dead = s.create_user("modal-dead");
    let dead_token = s.token(&dead);
    s.req("DELETE", &format!("/users/{dead}"), None);

    let seen = browser_script(
        "modal.mjs",
        &[
            ("INGOT_URL", s.base.clone()),
            ("INTEGRATION", iid.clone()),
            ("TOKEN_NEW", s.token(&fresh)),
            ("TOKEN_CANCEL", s.token(&cancels)),
            ("TOKEN_HAS", s.token(&has)),
            ("TOKEN_DEAD", dead_token),
        ],
    );
    assert_eq!(seen["install"], json!([{ "success": true }]), "{seen}");
    assert_eq!(seen["cancel"], json!([{ "success": false }]));
    assert_eq!(seen["dead"], json!([{ "success": false }]));
    assert_eq!(seen["hidden"], json!([{ "success": true }]));
    assert_eq!(
        seen["hiddenShown"], false,
        "a hidden modal with nothing to ask never showed"
    );
    assert_eq!(seen["shownWhenNeeded"], true);

    // What the browser did is in the database: the typed key, sealed, and both workflows.
    let installed = |u: &str| {
        s.get(&format!("/workflows?userId={u}")).json["data"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(installed(&fresh), 2);
    assert_eq!(installed(&cancels), 0);
    assert_eq!(installed(&has), 2);
    let conn = open_db(&s.db_path());
    let c = ingot::store::credentials::list(&conn, &fresh).unwrap();
    assert_eq!(c.len(), 1);
    let data = ingot::store::credentials::open_data(&conn, &s.app().store.secrets, &c[0].id, &fresh).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&data).unwrap(),
        json!({ "apiKey": "desk-key-from-the-browser" })
    );
    assert!(screenshots().join("install-form.png").exists());
}

#[test]
fn the_install_pages_are_framed_only_where_allowed_and_load_nothing_inline() {
    let s = Server::start();
    let user = s.create_user("framing");
    let dev = s.token(&user);
    let head = |path: &str| ureq::get(&format!("{}{path}", s.base)).call().unwrap();
    let csp = |path: &str| head(path).header("content-security-policy").unwrap().to_string();
    assert!(
        csp(&format!("/forge-install?integrationId=x&token={dev}")).ends_with("frame-ancestors *"),
        "development: any origin"
    );
    assert!(
        csp("/forge-install?integrationId=x").ends_with("frame-ancestors 'none'"),
        "no token: none"
    );
    assert!(csp("/embedded-install?link=il_x").ends_with("frame-ancestors 'none'"));
    let page = head("/forge-install");
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let policy = page.header("content-security-policy").unwrap().to_string();
    assert!(policy.starts_with("default-src 'none'; script-src 'self';"), "{policy}");
    let prod_key = s.new_key(ingot::store::Env::Production);
    let prod_user = s
        .req_as(&prod_key, "POST", "/users", Some(&json!({ "username": "p" })))
        .json["userId"]
        .as_str()
        .unwrap()
        .to_string();
    let prod = s
        .req_as(&prod_key, "GET", &format!("/users/{prod_user}/token"), None)
        .json["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        csp(&format!("/forge-install?token={prod}")).ends_with("frame-ancestors 'none'"),
        "production: none until configured"
    );
    let configured = Server::start_configured(|c| c.frame_ancestors = Some(vec!["https://app.example.com".into()]));
    let r = ureq::get(&format!("{}/forge-install?token={dev}", configured.base))
        .call()
        .unwrap();
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .ends_with("frame-ancestors https://app.example.com"));
    let js = head("/embedded.js");
    assert_eq!(js.content_type(), "text/javascript");
    assert!(js.into_string().unwrap().contains("window.Alloy = Alloy();"));
}

#[test]
fn the_official_frontend_sdk_unchanged_installs_through_a_local_tls_front() {
    let s = Server::start();
    let iid = s.create_integration(json!({
        "name": "Helpdesk", "app": "helpdesk", "credentialType": "apiKey",
        "workflows": [{ "name": "Open ticket", "blocks": [{ "name": "Fail", "type": "fail" }] }]
    }));
    let user = s.create_user("official-sdk");
    let seen = browser_script(
        "official_sdk.mjs",
        &[
            ("INGOT_URL", s.base.clone()),
            ("INTEGRATION", iid),
            ("TOKEN_NEW", s.token(&user)),
        ],
    );
    assert_eq!(seen["install"], json!([{ "success": true }]), "{seen}");
    assert_eq!(seen["workflows"], json!(["Open ticket"]));
    assert_eq!(
        s.get(&format!("/users/{user}/credentials")).json["data"][0]["type"],
        "apiKey"
    );
}
